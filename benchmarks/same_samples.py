"""Per-sample agreement of two runs of one config on the samples they share (e.g. the GPU run's 100
samples and the CPU demo's 8, which are its first 8: samples are seeded by id).

    python benchmarks/same_samples.py GPU_RESULTS CPU_RESULTS --length 1024 [--out FILE.md]

Each argument is a run's ``results/`` folder; for every (dataset, method setting) both scored, the
number of shared samples with the same score and both means over those samples.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from sparse_frontier.paths import SCORES, RunKey, parse_path


def per_sample(results: Path, length: int) -> dict[tuple, float]:
    """(task, task args, method, method args, sample id) -> score, from every ``scores.jsonl`` at ``length``
    (paths read with the pipeline's grammar, ``paths.SCORES``)."""
    out = {}
    for f in results.glob(f"scores/*/*/length~{length}/*/*/*/*/*/scores.jsonl"):
        key = RunKey.from_wildcards(parse_path(SCORES, f"results/{f.relative_to(results).as_posix()}"))
        for line in open(f):
            row = json.loads(line)
            out[(key.task, key.task_args, key.method, key.method_args, str(row["id"]))] = float(row["score"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="a run's results/ folder (e.g. the GPU run)")
    ap.add_argument("b", type=Path, help="another run's results/ folder (e.g. the CPU demo)")
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    a, b = per_sample(args.a, args.length), per_sample(args.b, args.length)
    cells = collections.defaultdict(lambda: [0, 0, 0.0, 0.0])
    for key in sorted(set(a) & set(b)):
        c = cells[key[:4]]
        c[0] += 1
        c[1] += a[key] == b[key]
        c[2] += a[key]
        c[3] += b[key]
    if not cells:
        raise SystemExit(f"{args.a} and {args.b} share no scored sample at length {args.length}")
    lines = [
        f"# Per-sample agreement at length {args.length}: {args.a} (a) vs {args.b} (b)",
        "",
        "| task | task args | method | method args | shared samples | same score | mean a | mean b |",
        "|---|---|---|---|---|---|---|---|",
    ]
    same = total = 0
    for (task, task_args, method, method_args), (n, k, sa, sb) in sorted(cells.items()):
        lines.append(f"| {task} | {task_args} | {method} | {method_args} | {n} | {k} | {sa / n:.3f} | {sb / n:.3f} |")
        same, total = same + k, total + n
    lines += ["", f"Same score: {same} of {total} shared sample-settings."]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
