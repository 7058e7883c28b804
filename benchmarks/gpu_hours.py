"""GPU-hours of a config's whole grid, from measured H100 throughput extrapolated by the resource model.

Measured inputs (H100 80GB, vLLM 0.20.0, Qwen2.5-7B shape with dummy weights, dense attention):
``benchmarks/results/plugin_gpu.json`` (16k prompts, 256 output tokens, 1 and 32 requests at once, stock
and through our handler) and the stock-vLLM table of ``../shared/spec/vllm.md`` (8 at once, and 32k).
Everything else is *extrapolated*: ``sparse_frontier.resources.predict_seconds`` (prefill FLOPs at a
fixed rate per GPU, decode steps bound by bytes moved or a per-step floor, engine start per job) gives
every run's time; its ratio to the measurement at the setting the grid uses (piecewise CUDA graphs, 8 at
once) scales all runs. Sparse methods are counted at dense speed (their end-to-end speed was not
measured; the handler's dense overhead was, ratio 0.98-1.09). GPU-hours = time x tensor_parallel_size.

Usage: python benchmarks/gpu_hours.py [--config config/config.yaml] [--out benchmarks/results/gpu_hours]
writes OUT.csv (per model) and OUT.md (per model, the calibration, how it was computed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparse_frontier.config import expand_runs, load_config  # noqa: E402
from sparse_frontier.resources import START_S, predict_seconds  # noqa: E402

#: stock vLLM 0.20 on the H100, Qwen2.5-7B shape, 256 output tokens (../shared/spec/vllm.md)
SPEC_VLLM = [
    {"mode": "eager", "length": 16384, "concurrency": 1, "samples_per_hour": 803},
    {"mode": "eager", "length": 16384, "concurrency": 8, "samples_per_hour": 3476},
    {"mode": "eager", "length": 16384, "concurrency": 32, "samples_per_hour": 6003},
    {"mode": "piecewise", "length": 16384, "concurrency": 1, "samples_per_hour": 1627},
    {"mode": "piecewise", "length": 16384, "concurrency": 8, "samples_per_hour": 4999},
    {"mode": "piecewise", "length": 16384, "concurrency": 32, "samples_per_hour": 6393},
    {"mode": "eager", "length": 32768, "concurrency": 1, "samples_per_hour": 630},
    {"mode": "eager", "length": 32768, "concurrency": 8, "samples_per_hour": 2244},
    {"mode": "eager", "length": 32768, "concurrency": 32, "samples_per_hour": 2619},
]
CALIBRATION = {"mode": "piecewise", "length": 16384, "concurrency": 8}  # the grid's engine setting


def measurements(plugin_json: Path) -> list[dict]:
    rows = [dict(r, source="shared/spec/vllm.md (stock)") for r in SPEC_VLLM]
    for entry in json.loads(plugin_json.read_text()):
        if entry.get("model") != "qwen7b" or entry.get("tp", 1) != 1:
            continue
        for c in (1, 32):
            value = entry.get(f"samples_per_hour_c{c}_handler")
            if value:
                rows.append({"mode": entry["mode"], "length": 16384, "concurrency": c, "samples_per_hour": value,
                             "source": "plugin_gpu.json (handler)"})  # fmt: skip
    return rows


def start_seconds(model: dict) -> float:
    """Engine start of one job in the resource model (not scaled: it was not part of the measurement)."""
    return START_S + model["architecture"]["params"] * 2 / 1e9


def modelled_seconds_per_sample(model: dict, engine: dict, length: int, concurrency: int, out_tokens: int) -> float:
    """The resource model's steady-state time per sample (engine start left out, as in the measurement)."""
    samples = 100 * concurrency
    key = {"length": length, "max_tokens": out_tokens, "samples": samples}
    return (predict_seconds(model, key, dict(engine, batch_size=concurrency)) - start_seconds(model)) / samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--measured", default=str(REPO / "benchmarks/results/plugin_gpu.json"))
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/gpu_hours"))
    parser.add_argument("--typical-output-tokens", type=int, default=256,
                        help="output tokens of a typical answer (the measured setting); the grid's budget is the upper bound")  # fmt: skip
    args = parser.parse_args(argv)

    config = load_config(args.config)
    engine = config["engine"]
    qwen7b = dict(config["models"]["qwen2.5-7b"], name="qwen2.5-7b")
    rows = measurements(Path(args.measured))
    for r in rows:
        r["modelled_samples_per_hour"] = 3600 / modelled_seconds_per_sample(qwen7b, engine, r["length"], r["concurrency"], 256)
        r["measured_over_modelled"] = r["samples_per_hour"] / r["modelled_samples_per_hour"]
    calib = [r for r in rows if all(r[k] == v for k, v in CALIBRATION.items())]
    if not calib:
        raise ValueError(f"no measurement at the calibration setting {CALIBRATION}; measured: {rows}")
    factor = calib[0]["modelled_samples_per_hour"] / calib[0]["samples_per_hour"]  # time multiplier

    per_model = defaultdict(lambda: {"runs": 0, "samples": 0, "gpu_hours_budget": 0.0, "gpu_hours_typical": 0.0})
    for run in expand_runs(config):
        key, tp = run.key.wildcards(), int(run.model["tensor_parallel_size"])
        m = per_model[run.key.model]
        m["runs"] += 1
        m["samples"] += key["samples"]
        start = start_seconds(run.model)
        m["gpu_hours_budget"] += (factor * (predict_seconds(run.model, key, engine) - start) + start) * tp / 3600
        typical = dict(key, max_tokens=min(key["max_tokens"], args.typical_output_tokens))
        m["gpu_hours_typical"] += (factor * (predict_seconds(run.model, typical, engine) - start) + start) * tp / 3600
        m["tensor_parallel_size"] = tp
        m["measured"] = "partly (16k/32k dense, 256 out)" if run.key.model == "qwen2.5-7b" else "no (extrapolated)"

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["model", "tensor_parallel_size", "runs", "samples", "gpu_hours_budget", "gpu_hours_typical", "measured"]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for name, m in per_model.items():
            writer.writerow({"model": name, **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in m.items()}})
    total_b = sum(m["gpu_hours_budget"] for m in per_model.values())
    total_t = sum(m["gpu_hours_typical"] for m in per_model.values())
    lines = [
        "# GPU-hours of the grid (H100 80GB)",
        "",
        f"Written by `benchmarks/gpu_hours.py --config {Path(args.config).relative_to(REPO) if Path(args.config).is_relative_to(REPO) else args.config}`; "
        "method in the script's docstring. *Measured*: only the Qwen2.5-7B shape, dense, 16k (and 32k eager), "
        "256 output tokens. *Extrapolated*: every other model, length, method and output length, by the "
        "resource model (`sparse_frontier/resources.py`) scaled by "
        f"{factor:.2f} so that it reproduces the measurement at {CALIBRATION} "
        "(engine starts, 2-4 min per job, added unscaled)"
        "(the grid's engine setting). Sparse methods at dense speed. "
        f"'budget' = every answer uses the grid's full output budget (upper bound); 'typical' = "
        f"{args.typical_output_tokens} output tokens per answer. Every job also pays one engine start.",
        "",
        "| model | TP | runs | samples | GPU-h (budget) | GPU-h (typical) | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in per_model.items():
        lines.append(f"| {name} | {m['tensor_parallel_size']} | {m['runs']} | {m['samples']} | "
                     f"{m['gpu_hours_budget']:,.0f} | {m['gpu_hours_typical']:,.0f} | {m['measured']} |")  # fmt: skip
    lines += [f"| **total** | | {sum(m['runs'] for m in per_model.values())} | "
              f"{sum(m['samples'] for m in per_model.values())} | **{total_b:,.0f}** | **{total_t:,.0f}** | |", "",
              "Upstream: about 16,000 H100-hours (4 nodes x 8 H100, 21 days) for 7,065 configurations.", "",
              "## Calibration: measured vs the resource model (Qwen2.5-7B shape, 256 output tokens)", "",
              "| CUDA graphs | length | at once | measured samples/h | modelled samples/h | measured / modelled | source |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['mode']} | {r['length']} | {r['concurrency']} | {r['samples_per_hour']:,.0f} | "
                     f"{r['modelled_samples_per_hour']:,.0f} | {r['measured_over_modelled']:.2f} | {r['source']} |")  # fmt: skip
    lines += ["", "The model has no CUDA-graph term: eager runs are slower than it at low concurrency, and "
              "its decode floor (10 ms/step) is between the eager and piecewise measurements."]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
