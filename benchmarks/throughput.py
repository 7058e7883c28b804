"""End-to-end throughput through the sparse_frontier handler -> the throughput table of the GPU-hours rule.

For each model: ONE vLLM engine (``sparse_frontier.vllm_plugin.engine.Engine``, so the attention handler
is active, with the config's engine settings) with ``max_model_len`` = longest length + most output
tokens; then for every length x output tokens x concurrency x method setting: a warm-up request, and
``concurrency x waves`` prompts of random token ids of exactly that length, ``concurrency`` of them
in vLLM at a time, the next handed over as one finishes (``Engine.stream``, as a predict job runs
``engine.batch_size`` at once), the method chosen per
request (``SamplingParams.extra_args["sparse_frontier"]``), greedy with ``ignore_eos`` so that every
answer has exactly ``output_tokens`` tokens. Vertical-Slash / FlexPrefill first get a calibration
table fitted on the model's own attention captured from a few random prompts per length (as a grid
run gets one from rule calibrate_attention; ``--no-calibrate``: they calibrate on every call, which
a grid run never does). Wall time -> samples/hour, one row per setting appended
to the table (format: ``sparse_frontier/planning/throughput_table.py``), flushed at once. Resumable: settings already
in the table (same model, TP, CUDA graphs, length, method, sparsity, output tokens, concurrency and
card) are skipped, and a model with nothing left starts no engine. ``--time-budget`` seconds: no new
measurement starts when the time is up (nor one whose previous measurement at that length would not
fit); it exits 0 with what it wrote. With several models, each runs in its own process (one engine per
process), one after the other.

Models: ``NAME`` = a model of ``--config`` with dummy weights of its architecture (``load_format=dummy``,
a config.json written from the architecture numbers: Qwen 2.5 and Llama 3.1 families; Qwen beyond 32k
gets YaRN as in the grid); ``NAME=FOLDER`` = a checkpoint folder (real weights if it has any, else dummy
weights from its config.json: the way to run Gemma 3 or any other shape). NAME is what the table
calls the model: the GPU-hours rule accepts only models of its config.

On the GPU machine (H100; vLLM 0.20 unpacked as in ``benchmarks/device_env.sh``)::

    source benchmarks/device_env.sh
    python benchmarks/throughput.py --model qwen2.5-7b \\
        --lengths 16384 32768 65536 128000 --output-tokens 256 --concurrency 8 --waves 2 \\
        --methods dense vertical_slash=0.9 quest=0.9 snapkv=0.9 block_sparse=0.9 flexprefill=0.9 ada_snapkv=0.9 \\
        --out benchmarks/results/throughput.csv --time-budget 540

(block_sparse and flexprefill are not part of the 128k grid; measuring them there is harmless.) Run the
same command again to continue where a time budget stopped it. More shapes: ``--model qwen2.5-7b
qwen2.5-14b llama3.1-8b`` (TP from the config; ``--tp`` overrides).

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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from plugin_gpu import QWEN25_7B, random_prompts, write_dummy_model  # noqa: E402

from sparse_frontier.planning.throughput_table import CALIBRATED_SOURCE, append_rows, key_of, read_table  # noqa: E402

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


def measure_model(args, name: str, where: str | None, config: dict, deadline: float) -> int:
    """Every missing setting of one model with one engine; returns the rows written."""
    model = dict(config["models"].get(name, {}))
    if where is None and name not in config["models"]:
        raise ValueError(
            f"unknown model {name!r}: give a model of {args.config} ({', '.join(config['models'])}) or NAME=FOLDER"
        )
    device = args.device or ("cuda" if _cuda() else "cpu")
    engine = dict(config["engine"], device=device)
    engine["dtype"] = args.dtype or ("float32" if device == "cpu" else engine["dtype"])
    engine["cuda_graphs"] = args.cuda_graphs or engine["cuda_graphs"]
    cuda_graphs = engine["cuda_graphs"] if device == "cuda" else "none"
    tp = args.tp or int(model.get("tensor_parallel_size", 1))
    card = card_name(device)
    methods = [parse_method(m) for m in args.methods]
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
                "handler": "on",
                "length": length,
                "method": method,
                "sparsity": sparsity,
                "output_tokens": out,
                "concurrency": conc,
                "card": card,
            }
        )

    done = (
        {key_of(r) for r in read_table(args.out)}
        if Path(args.out).exists() and Path(args.out).stat().st_size
        else set()
    )
    todo = [p for p in plan if row_key(*p) not in done]
    log.info("%s: %d of %d settings to measure on %s", name, len(todo), len(plan), card)
    if not todo or time.time() >= deadline:
        return 0

    # the model: dummy weights of a config shape, or a folder (dummy weights if it holds none)
    if where is None:
        folder = write_dummy_model(Path(args.workdir) / name, dummy_hf_config(name, model))
        dummy = True
    else:
        folder = Path(where)
        dummy = not has_weights(folder)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    from sparse_frontier.vllm_plugin.engine import Engine

    if dummy:
        engine["load_format"] = "dummy"
    calibrated = set()
    if args.calibrate:
        calibrated = calibrate(args, name, folder, model, engine, tp, vocab, todo)
    max_model_len = max(args.lengths) + max(args.output_tokens)
    engine["batch_size"] = max(args.concurrency)  # vLLM's max_num_seqs; each setting keeps `concurrency` in flight
    start = time.perf_counter()
    specs = [setting_spec(m, s) for *_, m, s in todo]
    eng = Engine(
        str(folder),
        max_model_len,
        engine,
        {"method": "dense", "params": {}, "model": name},
        tensor_parallel_size=tp,
        seed=0,
        yarn_original=model.get("yarn_original_max_position_embeddings"),
        request_methods=specs,
    )
    engine_start = time.perf_counter() - start
    log.info(
        "%s: engine started in %.1f s (max_model_len %d, TP %d, %s)", name, engine_start, max_model_len, tp, engine
    )

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
        return wall, (sum(measured) / len(measured) if measured else None)

    meta = dict(
        versions(),
        card=card,
        date=datetime.date.today().isoformat(),
        source="benchmarks/throughput.py" + (" (dummy weights)" if dummy else ""),
    )
    last: dict[int, float] = {}
    written = 0
    for i, (length, out, conc, method, sparsity) in enumerate(todo):
        if time.time() + last.get(length, 0.0) > deadline:
            log.warning("%s: time budget reached, %d settings left (run again to continue)", name, len(todo) - i)
            break
        spec = dict(setting_spec(method, sparsity), model=name)
        t0 = time.perf_counter()
        rng = random.Random(f"{name}/{length}/{method}/{sparsity}/{out}/{conc}")
        if not args.no_warmup:  # compile/autotune this method's kernels at this length before timing
            generate(random_prompts(1, length, vocab, rng.randrange(1 << 30)), 2, spec, 1)
        prompts = random_prompts(conc * args.waves, length, vocab, rng.randrange(1 << 30))
        wall, measured = generate(prompts, out, spec, conc)
        measured = [] if measured is None else [measured]
        source = meta["source"] + (f", {CALIBRATED_SOURCE}" if (method, length) in calibrated else "")
        row = dict(
            meta,
            source=source,
            model=name,
            tensor_parallel_size=tp,
            cuda_graphs=cuda_graphs,
            handler="on",
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
        written += 1
        last[length] = time.perf_counter() - t0
        log.info(
            "%s L=%d out=%d x%d %s@%g: %.1f samples/h (measured sparsity %s)",
            name,
            length,
            out,
            conc,
            method,
            sparsity,
            row["samples_per_hour"],
            row["measured_sparsity"],
        )
    return written


def calibrate(args, name, folder, model, engine, tp, vocab, todo) -> set[tuple[str, int]]:
    """Vertical-Slash / FlexPrefill settings get a calibration table fitted on the model's own captured
    attention (:func:`sparse_frontier.calibrate.calibrate_model` on a few random prompts of each
    length), as a grid run has from rule calibrate_attention: without one the methods calibrate on
    every call, a binary search per layer and prompt that a grid run never pays. The table lives in
    the work folder and is reused by later runs. Returns the (method, length) pairs it covers."""
    from sparse_frontier.attention import calibration
    from sparse_frontier.calibrate import calibrate_model, needs_calibration, use_calibration_table
    from sparse_frontier.io import write_jsonl_atomic

    wanted = sorted({length for length, _, _, method, _ in todo if needs_calibration(method)})
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
        datasets = {}
        for length in missing:
            path = Path(args.workdir) / f"{name}-calibration-prompts-{length}.jsonl"
            prompts = random_prompts(
                args.calibration_prompts, length, vocab, random.Random(f"{name}/{length}").randrange(1 << 30)
            )
            write_jsonl_atomic(path, [{"id": i, "input_ids": p} for i, p in enumerate(prompts)])
            datasets[length] = str(path)
        log.info("%s: calibrating %s at %s on its own captured attention", name, methods, missing)
        calibrate_model(
            str(folder),
            name,
            datasets,
            str(table),
            engine,
            prompts_per_length=args.calibration_prompts,
            max_new_tokens=max(args.output_tokens),
            methods=methods,
            tensor_parallel_size=tp,
            yarn_original=model.get("yarn_original_max_position_embeddings"),
        )
    return {(m, length) for m in methods for length in wanted}


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
    parser.add_argument("--lengths", nargs="+", type=int, required=True, help="prompt lengths in tokens")
    parser.add_argument("--output-tokens", nargs="+", type=int, default=[256], help="tokens per answer (ignore_eos)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[8], help="prompts handed to vLLM at once")
    parser.add_argument("--waves", type=int, default=1, help="batches of `concurrency` prompts per measurement")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="METHOD[=SPARSITY] ...")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    deadline = args.deadline or (time.time() + args.time_budget if args.time_budget is not None else float("inf"))
    for m in args.methods:
        try:
            parse_method(m)
        except ValueError as err:
            parser.error(f"--methods {m}: {err}")
    if len(args.model) > 1:  # one engine per process: each model in its own child
        argv = list(sys.argv[1:] if argv is None else argv)
        cut = argv.index("--model")
        rest = argv[:cut] + [a for a in argv[cut + 1 + len(args.model) :]]
        for spec in args.model:
            if time.time() >= deadline:
                log.warning("time budget reached before %s", spec)
                break
            cmd = [sys.executable, __file__, "--model", spec, *rest, "--deadline", repr(deadline)]
            code = subprocess.run(cmd).returncode
            if code:
                raise SystemExit(f"{spec}: the measurement process failed with exit code {code}")
        return
    from sparse_frontier.config import load_config

    config = load_config(args.config)
    name, _, where = args.model[0].partition("=")
    measure_model(args, name, where or None, config, deadline)


if __name__ == "__main__":
    main()
