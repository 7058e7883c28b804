"""End-to-end throughput through the sparse_frontier handler -> the throughput table of the GPU-hours rule.

For each model and engine (below): ONE vLLM engine (``sparse_frontier.vllm_plugin.engine.Engine``, so the
attention handler is active unless it is the stock one, with the config's engine settings) with ``max_model_len`` = longest length + most output
tokens; then for every length x output tokens x concurrency x method setting: a warm-up request, and
``concurrency x waves`` prompts of random token ids of exactly that length, ``concurrency`` of them
in vLLM at a time, the next handed over as one finishes (``Engine.stream``, as a predict job runs
``engine.batch_size`` at once), the method chosen per
request (``SamplingParams.extra_args["sparse_frontier"]``), greedy with ``ignore_eos`` so that every
answer has exactly ``output_tokens`` tokens. Vertical-Slash / FlexPrefill first get a calibration
table fitted on the model's own attention captured from a few random prompts per length (as a grid
run gets one from rule calibrate_attention; ``--no-calibrate``: they calibrate on every call, which
a grid run never does). Wall time -> samples/hour, one row per setting appended
to the table (format: ``sparse_frontier/planning/throughput_table.py``), flushed at once.

Engines (one per process, one after the other): per model, the handler with each ``--handler-graphs``
value (``on``: the handler's decode replays its own CUDA graphs, ``engine.handler_graphs``; ``off``:
eager; CUDA only, on CPU always ``off``), then with ``--stock`` stock vLLM: dense, the plugin inactive
(no method in the engine's environment, checked in every worker), rows with ``handler`` off and
``handler_graphs`` blank; one stock engine per ``--stock-graphs`` value (vLLM's CUDA graphs, the
rows' ``cuda_graphs``; default: the run's ``--cuda-graphs``, i.e. the config's): ``piecewise`` is the
handler's own mode (apples to apples, the 5% target), ``full`` vLLM's default ``FULL_AND_PIECEWISE``
(decode batches replay whole-model graphs, attention included: the strongest baseline a user has; only
stock vLLM can run it, the grid never does); on CPU every engine is eager, so one stock engine. Every
engine of a run gets the same arguments and memory plan (Quest's page summaries beside the KV cache if
any method of ``--methods`` keeps them), so they hold the same sequences (with ``full``, vLLM 0.20 also
sets aside the memory it estimates its larger graphs take, so at 64k/128k ``max`` may fit fewer). ``--concurrency max``: per length, as many sequences of length + output tokens as the
started engine's KV cache holds (``Engine.sequences_that_fit``), at most ``--max-concurrency``
(default: the config's ``engine.batch_size``, what a grid job runs at most); the number is the row's
``concurrency`` and its ``source`` says "as many as fit in the KV cache (N tokens)".

Resumable: settings already in the table (same model, TP, CUDA graphs, handler, handler graphs,
length, method, sparsity, output tokens, concurrency - for ``max`` any row so marked - and card) are
skipped, and an engine with nothing left is not started. ``--time-budget`` seconds: no engine starts
with less than ``ENGINE_START_ALLOWANCE_S`` (120 s) left, no calibration length either, and no
measurement starts when the time is up or when the previous one at that length (else the slowest so
far, scaled by length) would not fit; it exits 0 with what it wrote, and the same command continues.

Models: ``NAME`` = a model of ``--config`` with dummy weights of its architecture (``load_format=dummy``,
a config.json written from the architecture numbers: Qwen 2.5 and Llama 3.1 families; Qwen beyond 32k
gets YaRN as in the grid); ``NAME=FOLDER`` = a checkpoint folder (real weights if it has any, else dummy
weights from its config.json: the way to run Gemma 3 or any other shape). NAME is what the table
calls the model: the GPU-hours rule accepts only models of its config.

Issue #18's table on a GPU (H100 or H200; vLLM 0.20 unpacked as in ``benchmarks/device_env.sh``).
Lengths longest first, so the targets' 128k and 64k come first. ``--out`` and ``--workdir`` outside
the working tree, where a machine keeps them between calls (the calibration tables live in the
workdir); copy the CSV back after each call::

    source benchmarks/device_env.sh
    W=/tmp/sf_throughput; mkdir -p $W; [ -f $W/throughput.csv ] || cp benchmarks/results/throughput.csv $W/
    python benchmarks/throughput.py --model qwen2.5-7b --lengths 128000 65536 32768 16384 \\
        --output-tokens 256 --concurrency max --waves 1 --stock --stock-graphs piecewise full \\
        --handler-graphs on --methods dense vertical_slash=0.9 quest=0.9 snapkv=0.9 \\
        --out $W/throughput.csv --workdir $W --time-budget 420
    cp $W/throughput.csv benchmarks/results/throughput.csv   # (or to wherever results come back from)
    python benchmarks/throughput_report.py   # benchmarks/results/throughput.md and .png

On the lent machine (calls of at most 600 s) ``benchmarks/device_throughput.sh start WAIT_S ARGS`` runs
it once in its own process session, and ``... wait WAIT_S`` in the next back-to-back calls waits on it
(no engine starts twice; each call brings back the table, the answers' digests and the log; ``--then``
between argument sets queues several runs).
``--output-tokens 1 256`` adds each setting's 1-token twin: the report then shows decode alone (the
difference), what Quest and SnapKV change; at 256 tokens the dense prefill is ~90% of a 64k wave.
Stock vLLM's engines run first, so a run cut short keeps the baseline.

How long (from the committed rows' samples/h, the resource model's sequences that fit, engine starts
of 60-90 s): as many as fit is 32 / 29 / 13 / 6 at 16k / 32k / 64k / 128k on an H100 (32 / 32 / 29 /
14 on an H200). The handler engine's 16 measurements take about 9 min on an H100 (16 min on an H200),
64k and 128k 6 min (12.5); stock vLLM 2.5 min (4.5) per ``--stock-graphs`` value (full graphs are
expected a little faster: not measured yet); a warm-up prompt per setting ~1 min in all; three engine
starts (handler, stock piecewise, stock full) 3.5-4.5 min; Vertical-Slash's calibration one capture
engine per length, ~1-2 min each (4-8 min for four lengths, none if the workdir already has them). In
all **~24-29 min on an H100 (4 calls of --time-budget 420 in a 600 s limit), ~36 min on an H200**
(``full`` in ``--stock-graphs`` adds ~4 min on an H100, ~6 on an H200: without it ~20-25 / ~30). In a
15-minute slot: ``--lengths 128000 65536`` first (the targets: ~13-15 min on an H100, 2 calls; on an H200 about
21 min, or ``--max-concurrency 16`` for ~15), and the same command with all four lengths later
resumes with 32k and 16k. ``--handler-graphs on off`` adds the eager handler for comparison (another
~9 min on an H100). Other shapes: ``--model qwen2.5-7b qwen2.5-14b llama3.1-8b`` (TP from the config;
``--tp`` overrides).

On CPU (tests/test_benchmark_throughput.py, the tiny random-weight model of tests/helpers.py)::

    python benchmarks/throughput.py --model tiny=/path/to/tiny-llama --lengths 256 512 \\
        --output-tokens 4 --concurrency 2 --methods dense quest=0.9 --out /tmp/throughput.csv
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from plugin_gpu import QWEN25_7B, random_prompts, write_dummy_model  # noqa: E402

from sparse_frontier.planning.throughput_table import (  # noqa: E402
    CALIBRATED_SOURCE,
    MAX_CONCURRENCY_SOURCE,
    append_rows,
    key_of,
    read_table,
    record_answers,
)

log = logging.getLogger("throughput")
DEFAULT_METHODS = [
    "dense",
    "vertical_slash=0.9",
    "quest=0.9",
    "snapkv=0.9",
    "block_sparse=0.9",
    "flexprefill=0.9",
    "ada_snapkv=0.9",
]
LLAMA31 = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "torch_dtype": "bfloat16",
    "bos_token_id": 128000,
    "eos_token_id": 128009,
}


#: an engine is not started with less time than this left of ``--time-budget`` (a start and a first measurement)
ENGINE_START_ALLOWANCE_S = 120.0
#: what ``--stock`` measures: dense, with the plugin inactive (no method reaches the engine)
STOCK = ("dense", 0.0)


@dataclass(frozen=True)
class Variant:
    """One engine of a model: through the handler with its decode graphs ``on`` / ``off`` (``graphs``:
    what the rows record, always ``off`` on CPU), or stock vLLM (``handler`` False, ``graphs`` None);
    ``cuda_graphs``: vLLM's graph mode of the engine, what the rows record (``none`` on CPU)."""

    handler: bool
    graphs: str | None
    cuda_graphs: str

    @property
    def label(self) -> str:
        if self.handler:
            return f"handler, graphs {self.graphs}"
        return "stock vLLM" + ("" if self.cuda_graphs == "none" else f", vLLM graphs {self.cuda_graphs}")


def variants(args, device: str, cuda_graphs: str) -> list[Variant]:
    """The engines each model runs, in order: stock vLLM if ``--stock``, once per ``--stock-graphs``
    value (default: the run's ``cuda_graphs``), then the handler with each ``--handler-graphs`` value
    (the graphs exist on CUDA only: on CPU every value is ``off``). The baseline first: a run cut short
    by its time budget still has what every speed-up is measured against. On CPU every engine is eager
    (``cuda_graphs`` ``none``), so one stock engine."""
    run = cuda_graphs if device == "cuda" else "none"
    out: list[Variant] = []
    for graphs in (args.stock_graphs or [cuda_graphs]) if args.stock else []:
        v = Variant(False, None, graphs if device == "cuda" else "none")
        if v not in out:
            out.append(v)
    for graphs in args.handler_graphs:
        v = Variant(True, graphs if device == "cuda" else "off", run)
        if v not in out:
            out.append(v)
    return out


def run_graphs(args, config: dict) -> str:
    """vLLM's graph mode of the run's handler engines: ``--cuda-graphs``, else the config's ``engine.cuda_graphs``."""
    return args.cuda_graphs or config["engine"]["cuda_graphs"]


def parse_concurrency(text: str) -> int | str:
    """``8`` -> 8; ``max`` -> "max" (as many sequences as the engine's KV cache holds, up to ``--max-concurrency``)."""
    if text == "max":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive integer nor 'max'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (or 'max')")
    return value


def parse_method(text: str) -> tuple[str, float]:
    """``quest=0.9`` -> ("quest", 0.9); ``dense`` -> ("dense", 0.0); checked against the registry."""
    from sparse_frontier.attention import get_method_class

    name, _, sparsity = text.partition("=")
    value = float(sparsity) if sparsity else 0.0
    cls = get_method_class(name)  # names the valid methods if unknown
    cls.from_params({"sparsity": value} if name != "dense" else {})  # validates the value
    return name, value


def setting_spec(method: str, sparsity: float) -> dict:
    """The per-request method setting of a measured (method, sparsity)."""
    return {"method": method, "params": {"sparsity": sparsity} if method != "dense" else {}}


def dummy_hf_config(name: str, model: dict) -> dict:
    """config.json of a dummy-weight model with ``model``'s architecture (Qwen 2.5 or Llama 3.1 family)."""
    arch = model.get("architecture")
    if name.startswith("qwen2.5"):
        base = dict(QWEN25_7B, max_position_embeddings=model.get("max_position_embeddings", 32768))
    elif name.startswith("llama3"):
        base = dict(LLAMA31, head_dim=(arch or {}).get("head_dim", 128))
    else:
        base = None
    if base is None or arch is None:
        raise ValueError(
            f"no dummy shape for model {name!r} (Qwen 2.5 and Llama 3.1 only): give "
            f"{name}=FOLDER with the checkpoint's config.json"
        )
    base.update(
        hidden_size=arch["hidden"],
        intermediate_size=arch["mlp"],
        num_hidden_layers=arch["layers"],
        num_attention_heads=arch["heads"],
        num_key_value_heads=arch["kv_heads"],
        vocab_size=arch["vocabulary"],
    )
    if "max_window_layers" in base:
        base["max_window_layers"] = arch["layers"]
    return base


def card_name(device: str) -> str:
    if device == "cuda":
        # nvidia-smi, not torch: CUDA initialised in this process would force vLLM to spawn its workers
        try:
            names = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=60
            ).stdout.split("\n")
            if names[0].strip():
                return names[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
        import torch

        return torch.cuda.get_device_name(0)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return "cpu: " + line.split(":", 1)[1].strip()
    return "cpu: " + (platform.processor() or platform.machine())


def versions() -> dict:
    import torch
    import vllm

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 (not installed or broken: recorded as blank)
        triton_version = None
    return {"torch": torch.__version__, "vllm": vllm.__version__, "triton": triton_version}


def has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) or any(folder.glob("*.pt"))


def measure_model(args, name: str, where: str | None, config: dict, deadline: float, variant: Variant) -> int:
    """Every missing setting of one model and engine variant with one engine; returns the rows written."""
    model = dict(config["models"].get(name, {}))
    if where is None and name not in config["models"]:
        raise ValueError(
            f"unknown model {name!r}: give a model of {args.config} ({', '.join(config['models'])}) or NAME=FOLDER"
        )
    device = args.device or ("cuda" if _cuda() else "cpu")
    engine = dict(config["engine"], device=device)
    engine["dtype"] = args.dtype or ("float32" if device == "cpu" else engine["dtype"])
    engine["cuda_graphs"] = cuda_graphs = variant.cuda_graphs  # "full" only for stock vLLM (Engine checks)
    engine["handler_graphs"] = variant.graphs == "on"
    handler = "on" if variant.handler else "off"
    tp = args.tp or int(model.get("tensor_parallel_size", 1))
    card = card_name(device)
    all_methods = [parse_method(m) for m in args.methods]
    methods = all_methods if variant.handler else [STOCK]
    cap = args.max_concurrency or int(engine["batch_size"])
    plan = [
        (length, out, conc, method, sparsity)
        for length in args.lengths
        for out in args.output_tokens
        for conc in args.concurrency
        for method, sparsity in methods
    ]

    def row_key(length, out, conc, method, sparsity):
        return key_of(
            {
                "model": name,
                "tensor_parallel_size": tp,
                "cuda_graphs": cuda_graphs,
                "handler": handler,
                "handler_graphs": variant.graphs,
                "length": length,
                "method": method,
                "sparsity": sparsity,
                "output_tokens": out,
                "concurrency": 1 if conc == "max" else conc,
                "card": card,
            }
        )

    rows = read_table(args.out) if Path(args.out).exists() and Path(args.out).stat().st_size else []
    done = {key_of(r) for r in rows}
    # "max": done if a row of the setting says its concurrency was as many as fit (whatever number that was)
    done_max = {key_of(dict(r, concurrency=1)) for r in rows if MAX_CONCURRENCY_SOURCE in str(r["source"])}
    todo = [p for p in plan if row_key(*p) not in (done_max if p[2] == "max" else done)]
    log.info("%s (%s): %d of %d settings to measure on %s", name, variant.label, len(todo), len(plan), card)
    if not todo:
        return 0
    if time.time() + ENGINE_START_ALLOWANCE_S > deadline:
        log.warning("%s (%s): time budget reached before the engine start (run again to continue)", name, variant.label)
        return 0

    # the model: dummy weights of a config shape, or a folder (dummy weights if it holds none)
    if where is None:
        folder = write_dummy_model(Path(args.workdir) / name, dummy_hf_config(name, model))
        dummy = True
    else:
        folder = Path(where)
        dummy = not has_weights(folder)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    from sparse_frontier.calibrate import needs_calibration
    from sparse_frontier.vllm_plugin.engine import Engine

    if dummy:
        engine["load_format"] = "dummy"
    calibrated = set()
    if args.calibrate and variant.handler:
        calibrated = calibrate(args, name, folder, model, engine, tp, vocab, todo, deadline)
    max_model_len = max(args.lengths) + max(args.output_tokens)
    # vLLM's max_num_seqs; each setting keeps `concurrency` in flight
    engine["batch_size"] = max(cap if c == "max" else c for c in args.concurrency)
    start = time.perf_counter()
    # Every method of the run (not only those left): the same memory plan (Quest's summaries beside
    # the KV cache) in every engine of the run, stock included, so "max" resolves alike in each.
    specs = [setting_spec(m, s) for m, s in all_methods]
    eng = Engine(
        str(folder),
        max_model_len,
        engine,
        {"method": "dense", "params": {}, "model": name},
        tensor_parallel_size=tp,
        seed=0,
        yarn_original=model.get("yarn_original_max_position_embeddings"),
        request_methods=specs,
        handler=variant.handler,
    )
    engine_start = time.perf_counter() - start
    kv_tokens = eng.kv_cache_tokens()
    log.info(
        "%s (%s): engine started in %.1f s (max_model_len %d, TP %d, KV cache %d tokens, %s)",
        name,
        variant.label,
        engine_start,
        max_model_len,
        tp,
        kv_tokens,
        engine,
    )

    def resolve(length: int, out: int, conc: int | str) -> int:
        if conc != "max":
            return conc
        fit = eng.sequences_that_fit(length + out)
        if fit < 1:
            raise RuntimeError(f"no sequence of {length} + {out} tokens fits the KV cache ({kv_tokens} tokens)")
        return min(cap, fit)

    def generate(prompts, out, spec, conc):
        """Wall seconds and mean measured sparsity of ``prompts``, ``conc`` of them in vLLM at a time
        (the next handed over as one finishes, as a predict job's Engine.stream does)."""
        t0 = time.perf_counter()
        generations = list(eng.stream(((p, spec) for p in prompts), out, 0, pending=conc, ignore_eos=True))
        wall = time.perf_counter() - t0
        lengths = [g.output_tokens for _, g in generations]
        if lengths != [out] * len(prompts):
            raise RuntimeError(f"{spec}: expected {out} output tokens per answer, got {lengths}")
        measured = [g.attention["sparsity"] for _, g in generations if g.attention.get("sparsity") is not None]
        answers = [g.token_ids for _, g in sorted(generations, key=lambda pg: pg[0])]
        return wall, (sum(measured) / len(measured) if measured else None), answers

    meta = dict(
        versions(),
        card=card,
        date=datetime.date.today().isoformat(),
        source="benchmarks/throughput.py" + (" (dummy weights)" if dummy else ""),
    )
    last: dict[int, float] = {}
    written = 0
    for i, (length, out, conc_arg, method, sparsity) in enumerate(todo):
        if time.time() + expected_seconds(last, length) > deadline:
            log.warning(
                "%s (%s): time budget reached, %d settings left (run again to continue)",
                name,
                variant.label,
                len(todo) - i,
            )
            break
        if args.calibrate and variant.handler and needs_calibration(method) and (method, length) not in calibrated:
            log.warning(
                "%s: %s at %d has no calibration table yet (time budget): left for the next run", name, method, length
            )
            continue
        conc = resolve(length, out, conc_arg)
        spec = dict(setting_spec(method, sparsity), model=name) if variant.handler else None
        t0 = time.perf_counter()
        rng = random.Random(f"{name}/{length}/{method}/{sparsity}/{out}/{conc}")
        if not args.no_warmup:  # compile/autotune this method's kernels at this length before timing
            generate(random_prompts(1, length, vocab, rng.randrange(1 << 30)), 2, spec, 1)
        prompts = random_prompts(conc * args.waves, length, vocab, rng.randrange(1 << 30))
        wall, measured, answers = generate(prompts, out, spec, conc)
        measured = [] if measured is None else [measured]
        source = meta["source"] + (f", {CALIBRATED_SOURCE}" if (method, length) in calibrated else "")
        if conc_arg == "max":
            source += f", {MAX_CONCURRENCY_SOURCE} ({kv_tokens} tokens)"
        row = dict(
            meta,
            source=source,
            model=name,
            tensor_parallel_size=tp,
            cuda_graphs=cuda_graphs,
            handler=handler,
            handler_graphs=variant.graphs,
            length=length,
            prompt_tokens=length,
            method=method,
            sparsity=sparsity,
            measured_sparsity=round(sum(measured) / len(measured), 4) if measured else None,
            output_tokens=out,
            concurrency=conc,
            samples=len(prompts),
            wall_s=round(wall, 4),
            samples_per_hour=round(len(prompts) / wall * 3600, 1),
            engine_start_s=round(engine_start, 1),
        )
        append_rows(args.out, [row])
        record_answers(args.out, row, answers)
        written += 1
        last[length] = time.perf_counter() - t0
        log.info(
            "%s (%s) L=%d out=%d x%d %s@%g: %.1f samples/h (measured sparsity %s)",
            name,
            variant.label,
            length,
            out,
            conc,
            method,
            sparsity,
            row["samples_per_hour"],
            row["measured_sparsity"],
        )
    return written


def expected_seconds(last: dict[int, float], length: int) -> float:
    """What the next measurement at ``length`` is expected to take: the last one at that length, else
    the slowest so far scaled by the length ratio (0 before the first)."""
    if length in last:
        return last[length]
    return max((seconds * length / measured for measured, seconds in last.items()), default=0.0)


def calibrate(args, name, folder, model, engine, tp, vocab, todo, deadline=float("inf")) -> set[tuple[str, int]]:
    """Vertical-Slash / FlexPrefill settings get a calibration table fitted on the model's own captured
    attention (:func:`sparse_frontier.calibrate.calibrate_model` on a few random prompts of each
    length), as a grid run has from rule calibrate_attention: without one the methods calibrate on
    every call, a binary search per layer and prompt that a grid run never pays. The table lives in
    the work folder and is reused by later runs. One length at a time, in the order of ``--lengths``,
    none started past ``deadline`` (their settings are left for the next run). Returns the (method,
    length) pairs the table covers."""
    from sparse_frontier.attention import calibration
    from sparse_frontier.calibrate import calibrate_model, needs_calibration, use_calibration_table
    from sparse_frontier.io import write_jsonl_atomic

    wanted = list(dict.fromkeys(length for length, _, _, method, _ in todo if needs_calibration(method)))
    methods = sorted({method for *_, method, _ in todo if needs_calibration(method)})
    if not wanted:
        return set()
    table = Path(args.workdir) / f"{name}-calibration.json"
    use_calibration_table(str(table))  # before the benchmark's engine starts: its workers read it
    have = (
        {(e["method"], e["length"]) for e in calibration.entries() if e["model"] == name} if table.exists() else set()
    )
    missing = [length for length in wanted if any((m, length) not in have for m in methods)]
    if missing:
        log.info("%s: calibrating %s at %s on its own captured attention", name, methods, missing)
    covered = [length for length in wanted if length not in missing]
    for length in missing:
        if time.time() + ENGINE_START_ALLOWANCE_S > deadline:
            log.warning("%s: time budget reached before calibrating at %d (run again to continue)", name, length)
            break
        path = Path(args.workdir) / f"{name}-calibration-prompts-{length}.jsonl"
        prompts = random_prompts(
            args.calibration_prompts, length, vocab, random.Random(f"{name}/{length}").randrange(1 << 30)
        )
        write_jsonl_atomic(path, [{"id": i, "input_ids": p} for i, p in enumerate(prompts)])
        calibrate_model(
            str(folder),
            name,
            {length: str(path)},
            str(table),
            engine,
            prompts_per_length=args.calibration_prompts,
            max_new_tokens=max(args.output_tokens),
            methods=methods,
            tensor_parallel_size=tp,
            yarn_original=model.get("yarn_original_max_position_embeddings"),
        )
        covered.append(length)
    return {(m, length) for m in methods for length in covered}


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("--model", nargs="+", required=True, help="NAME (a config model, dummy weights) or NAME=FOLDER")
    parser.add_argument("--lengths", nargs="+", type=int, required=True, help="prompt lengths in tokens, in order")
    parser.add_argument("--output-tokens", nargs="+", type=int, default=[256], help="tokens per answer (ignore_eos)")
    parser.add_argument(
        "--concurrency",
        nargs="+",
        type=parse_concurrency,
        default=[8],
        help="prompts handed to vLLM at once; max: as many as the engine's KV cache holds (per length), "
        "up to --max-concurrency",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="the most sequences --concurrency max runs at once (default: the config's engine.batch_size)",
    )
    parser.add_argument("--waves", type=int, default=1, help="batches of `concurrency` prompts per measurement")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="METHOD[=SPARSITY] ...")
    parser.add_argument(
        "--handler-graphs",
        nargs="+",
        choices=["on", "off"],
        default=["on"],
        help="the handler's decode graphs (engine.handler_graphs), one engine each; CUDA only (CPU: off)",
    )
    parser.add_argument(
        "--stock",
        action="store_true",
        help="also measure stock vLLM (dense, plugin inactive, handler=off rows) in an engine of its own",
    )
    parser.add_argument(
        "--stock-graphs",
        nargs="+",
        choices=["piecewise", "none", "full"],
        default=None,
        help="vLLM's CUDA graphs of the stock engines, one engine each (implies --stock; default: the run's "
        "--cuda-graphs); full: vLLM's own default FULL_AND_PIECEWISE, stock vLLM only; CUDA only (CPU: eager)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/throughput.csv"))
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"), help="models and engine settings")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; no measurement starts after it")
    parser.add_argument("--tp", type=int, default=None, help="tensor-parallel size (default: the config model's)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    parser.add_argument("--dtype", default=None, help="default: the config's (float32 on CPU)")
    parser.add_argument("--cuda-graphs", choices=["piecewise", "none"], default=None, help="default: the config's")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up request before each setting")
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="Vertical-Slash/FlexPrefill without a captured calibration table (they then calibrate on every call)",
    )
    parser.add_argument("--calibration-prompts", type=int, default=2, help="random prompts per length to calibrate on")
    parser.add_argument("--workdir", default="/tmp/sparse_frontier_throughput", help="where dummy models are written")
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)  # a child: the engine of that index
    args = parser.parse_args(argv)
    args.stock = args.stock or bool(args.stock_graphs)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    deadline = args.deadline or (time.time() + args.time_budget if args.time_budget is not None else float("inf"))
    for m in args.methods:
        try:
            parse_method(m)
        except ValueError as err:
            parser.error(f"--methods {m}: {err}")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        parser.error(f"--max-concurrency must be 1 or more, got {args.max_concurrency}")
    device = args.device or ("cuda" if _cuda() else "cpu")
    from sparse_frontier.config import load_config

    config = load_config(args.config)
    engines = [(spec, v) for spec in args.model for v in variants(args, device, run_graphs(args, config))]
    if len(engines) > 1 and args.only is None:  # one engine per process: each (model, variant) in its own child
        argv = list(sys.argv[1:] if argv is None else argv)
        for index, (spec, variant) in enumerate(engines):
            if time.time() >= deadline:
                log.warning("time budget reached before %s (%s)", spec, variant.label)
                break
            cmd = [
                sys.executable,
                __file__,
                *argv,
                "--device",
                device,
                "--only",
                str(index),
                "--deadline",
                repr(deadline),
            ]
            code = subprocess.run(cmd).returncode
            if code:
                raise SystemExit(f"{spec} ({variant.label}): the measurement process failed with exit code {code}")
        return
    spec, variant = engines[args.only or 0]
    name, _, where = spec.partition("=")
    measure_model(args, name, where or None, config, deadline, variant)


if __name__ == "__main__":
    main()
