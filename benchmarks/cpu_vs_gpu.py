"""Rerun a GPU run's first samples on this CPU and put the two predictions side by side.

The GPU runs bfloat16 with the Triton kernels and the plugin's paged paths; the CPU runs float32
with the torch reference paths. Where a method's accuracy looks wrong on the GPU (e.g. Quest
collapsing at 8k), the same outputs from the CPU show it is the method, not the GPU code.

    python benchmarks/cpu_vs_gpu.py RESULTS_DIR MODEL_DIR --task-args num_queries~1 --length 8000 \\
        --run dense/none --run quest/page_size~16+share_pages~true+sparsity~0.8+token_budget~0 \\
        --samples 4 --out benchmarks/results/gpu_demo/cpu_vs_gpu_quest_8k.md

RESULTS_DIR: a GPU run's ``results/`` (e.g. unpacked from ``gpu_demo/resume/results.tar.gz``), MODEL_DIR:
the converted checkpoint. Each ``--run`` is a ``method/method_args`` path part of the sweep; every
run of one call shares one CPU engine (the dataset's).
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import yaml

from sparse_frontier.paths import parse_args
from sparse_frontier.scoring import score_rows


def typed(segment: str) -> dict:
    """A path segment's arguments with their YAML types (numbers, booleans), as the config gives them."""
    return {k: yaml.safe_load(v) for k, v in parse_args(segment).items()}


def scores(task: str, task_args: dict, samples: list[dict], texts: list[str]) -> list[float]:
    preds = [{"id": s["id"], "prediction": t, "output_tokens": 0, "sparsity": None} for s, t in zip(samples, texts)]
    return [r["score"] for r in score_rows(task, task_args, samples, preds)]


def one(pattern: str) -> str:
    found = sorted(glob.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected one file for {pattern}, found {len(found)}: {found[:4]}")
    return found[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--task", default="ruler_niah")
    ap.add_argument("--task-args", default="", help="a part of the dataset's task arguments, e.g. num_queries~1")
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("--model-name", default="smollm2-135m")
    ap.add_argument("--run", action="append", required=True, help="method/method_args, as in the sweep's paths")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=43)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from sparse_frontier.vllm_plugin.engine import Engine

    where = f"{args.task}/*{args.task_args}*/length~{args.length}/{args.model_name}/samples~*+seed~{args.seed}"
    dataset = one(str(args.results / "datasets" / where / "dataset.jsonl"))
    samples = [json.loads(line) for line in open(dataset)][: args.samples]
    task_args = typed(Path(dataset).parents[3].name)
    specs = []
    for run in args.run:
        method, _, method_args = run.partition("/")
        params = typed(method_args or "none")
        specs.append({"method": method, "params": params, "model": args.model_name})
    engine = {"device": "cpu", "dtype": "float32", "batch_size": 4, "cpu_kvcache_space_gib": 2, "cpu_threads": 2}
    longest = max(int(s["prompt_tokens"]) for s in samples)
    llm = Engine(
        str(args.model),
        max_model_len=max(args.length, longest) + args.max_tokens,
        engine=engine,
        method=specs[0],
        seed=args.seed,
        request_methods=specs[1:],
    )
    lines = [
        f"# CPU (float32, torch paths) vs GPU predictions: {args.task} {args.task_args} at {args.length}",
        "",
        f"Dataset `{Path(dataset).relative_to(args.results.parent)}`, its first {len(samples)} samples; GPU predictions from the run's sweep files;",
        f"`python benchmarks/cpu_vs_gpu.py` (greedy, {args.max_tokens} tokens, seed {args.seed}).",
        "",
        "| run | sample | gold | CPU score | GPU score | CPU prediction | GPU prediction |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, spec in zip(args.run, specs):
        started = time.time()
        gens = llm.generate([s["input_ids"] for s in samples], args.max_tokens, args.seed, method=spec)
        gpu_file = one(
            str(args.results / "sweeps" / where / run / f"max_tokens~{args.max_tokens}" / "predictions.jsonl")
        )
        gpu = {str(r["id"]): r for r in map(json.loads, open(gpu_file))}
        theirs = [gpu[str(s["id"])]["prediction"] for s in samples]
        ours = [g.text for g in gens]
        cpu_scores = scores(args.task, task_args, samples, ours)
        gpu_scores = scores(args.task, task_args, samples, theirs)
        for s, a, b, sa, sb in zip(samples, ours, theirs, cpu_scores, gpu_scores):
            cells = [run, s["id"], ", ".join(map(str, s["gold"])), f"{sa:g}", f"{sb:g}"]
            cells += ["`" + t.replace("\n", "\\n").replace("|", "/")[:80] + "`" for t in (a, b)]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        print(f"{run}: {time.time() - started:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
