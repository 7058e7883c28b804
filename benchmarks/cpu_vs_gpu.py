"""Rerun a GPU run's first samples on this CPU and put the two predictions side by side.

The GPU runs bfloat16 with the Triton kernels and the plugin's paged paths; the CPU runs float32
with the torch reference paths. Where a method's accuracy looks wrong on the GPU (e.g. Quest
collapsing at 8k), the same outputs from the CPU show it is the method, not the GPU code.

    python benchmarks/cpu_vs_gpu.py --config config/gpu-demo.yaml ROOT MODEL_DIR \\
        results/sweeps/.../dense/none/max_tokens~48/predictions.jsonl \\
        results/sweeps/.../quest/page_size~16+share_pages~true+sparsity~0.8+token_budget~0/max_tokens~48/predictions.jsonl \\
        --samples 4 --out benchmarks/results/gpu_demo/cpu_vs_gpu_8k.md

ROOT: the folder holding the GPU run's ``results/`` (e.g. unpacked from ``gpu_demo/resume/results.tar.gz``);
MODEL_DIR: the converted checkpoint. Each run is a sweep prediction path of the config (the pipeline's
grammar), all on one dataset: they share one CPU engine, and the config gives their settings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sparse_frontier import paths
from sparse_frontier.config import RunIndex, expand_runs, load_config
from sparse_frontier.predict import method_spec
from sparse_frontier.scoring import score_rows


def scores(run, samples: list[dict], texts: list[str]) -> list[float]:
    preds = [{"id": s["id"], "prediction": t, "output_tokens": 0, "sparsity": None} for s, t in zip(samples, texts)]
    return [r["score"] for r in score_rows(run.key.task, run.task_params, samples, preds)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("root", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("runs", nargs="+", help="sweep prediction paths (results/sweeps/...), one dataset")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from sparse_frontier.vllm_plugin.engine import Engine

    index = RunIndex(expand_runs(load_config(args.config)))
    runs = [index.run(paths.parse_path(paths.SWEEP_PREDICTIONS, p)) for p in args.runs]
    if len({r.key.dataset for r in runs}) != 1:
        raise SystemExit(f"the runs must share one dataset; they read {sorted({r.key.dataset for r in runs})}")
    key = runs[0].key
    samples = [json.loads(line) for line in open(args.root / key.dataset)][: args.samples]
    specs = [method_spec(r.as_dict()) for r in runs]
    engine = {"device": "cpu", "dtype": "float32", "batch_size": 4, "cpu_kvcache_space_gib": 2, "cpu_threads": 2}
    longest = max(int(s["prompt_tokens"]) for s in samples)
    llm = Engine(
        str(args.model),
        max_model_len=max(key.length, longest) + key.max_tokens,
        engine=engine,
        method=specs[0],
        seed=key.seed,
        request_methods=specs[1:],
    )
    lines = [
        f"# CPU (float32, torch paths) vs GPU predictions: {key.task} {key.task_args} at {key.length}",
        "",
        f"Dataset `{key.dataset}`, its first {len(samples)} samples; GPU predictions from the run's sweep files;",
        f"`python benchmarks/cpu_vs_gpu.py` (greedy, {key.max_tokens} tokens, seed {key.seed}).",
        "",
        "| run | sample | gold | CPU score | GPU score | CPU prediction | GPU prediction |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, spec in zip(runs, specs):
        started = time.time()
        gens = llm.generate([s["input_ids"] for s in samples], key.max_tokens, key.seed, method=spec)
        gpu = {str(r["id"]): r for r in map(json.loads, open(args.root / run.key.sweep_predictions))}
        theirs = [gpu[str(s["id"])]["prediction"] for s in samples]
        ours = [g.text for g in gens]
        name = f"{run.key.method}/{run.key.method_args}"
        for s, a, b, sa, sb in zip(samples, ours, theirs, scores(run, samples, ours), scores(run, samples, theirs)):
            cells = [name, s["id"], ", ".join(map(str, s["gold"])), f"{sa:g}", f"{sb:g}"]
            cells += ["`" + t.replace("\n", "\\n").replace("|", "/")[:80] + "`" for t in (a, b)]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        print(f"{name}: {time.time() - started:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
