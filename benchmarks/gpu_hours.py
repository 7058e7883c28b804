"""GPU-hours of a config's grid from the measured throughput table (thin wrapper; the logic and the
method are in ``sparse_frontier/planning/`` (``estimate.py``, ``report.py``), the workflow's rule is ``estimate_gpu_hours``).

Usage: python benchmarks/gpu_hours.py [--committed [DIR]] [--config config/config.yaml]
           [--throughput benchmarks/results/throughput.csv] [--out benchmarks/results/gpu_hours]
           [--card H100|H200] [--rows-card H200] [--methods-per-job N]
writes OUT.csv (per model and total), OUT.md (the same, and every measured row against the resource
model) and OUT_runs.csv (per model, length and method: GPU-hours, measured or extrapolated, rows used).
Inside the workflow: ``snakemake estimate_gpu_hours`` (results/tables/gpu_hours.*).

The committed ``benchmarks/results/gpu_hours*`` are the six estimates of ``COMMITTED`` (per card, from
H100 or H200 rows, one job per run or grouped 8 methods per job); ``--committed [DIR]`` writes all six
(default: benchmarks/results). After new rows in the throughput table, or a change of the estimate's
code that should not change them, run it and ``git status``; tests/test_hpc_gpu_hours.py fails while
a committed estimate is not what the committed table and config give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparse_frontier.config import load_config  # noqa: E402
from sparse_frontier.planning.estimate import TYPICAL_OUTPUT_TOKENS  # noqa: E402
from sparse_frontier.planning.report import write_outputs  # noqa: E402

#: The committed estimates, benchmarks/results/NAME.{csv,md} and NAME_runs.csv, and their arguments.
COMMITTED = {
    "gpu_hours": [],
    "gpu_hours_grouped8": ["--methods-per-job", "8"],
    "gpu_hours_h200": ["--card", "H200"],
    "gpu_hours_h200_grouped8": ["--card", "H200", "--methods-per-job", "8"],
    "gpu_hours_h100_from_h200": ["--card", "H100", "--rows-card", "H200"],
    "gpu_hours_h100_from_h200_grouped8": ["--card", "H100", "--rows-card", "H200", "--methods-per-job", "8"],
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--committed",
        nargs="?",
        const=str(REPO / "benchmarks/results"),
        default=None,
        metavar="DIR",
        help="write the six committed estimates (COMMITTED) into DIR (default: benchmarks/results)",
    )
    parser.add_argument("--config", default=str(REPO / "config/config.yaml"))
    parser.add_argument("--throughput", default=None, help="default: the config's gpu_hours.throughput")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/gpu_hours"))
    parser.add_argument(
        "--typical-output-tokens",
        type=int,
        default=None,
        help=f"default: the config's gpu_hours.typical_output_tokens ({TYPICAL_OUTPUT_TOKENS})",
    )
    parser.add_argument(
        "--card", default=None, help="the GPU whose hours are estimated (default: the config's gpu_hours.card)"
    )
    parser.add_argument(
        "--rows-card",
        default=None,
        help="estimate --card's hours from this card's rows, converted by the resource model "
        "(default: the config's gpu_hours.rows_card, else --card's own rows)",
    )
    parser.add_argument(
        "--methods-per-job",
        type=int,
        default=None,
        help="engine.methods_per_job to estimate with (default: the config's; docs/hpc.md, Grouping)",
    )
    args = parser.parse_args(argv)
    if args.committed is not None:
        given = [
            f"--{k.replace('_', '-')}"
            for k in ("throughput", "card", "rows_card", "methods_per_job", "typical_output_tokens")
            if getattr(args, k) is not None
        ]
        if given or args.out != parser.get_default("out"):
            parser.error(
                f"--committed writes its six estimates with their own settings; drop {' '.join(given or ['--out'])}"
            )
        for name, extra in COMMITTED.items():
            out = Path(args.committed) / name
            estimate(parser, parser.parse_args(["--config", args.config, *extra, "--out", str(out)]))
            print(f"wrote {out}.csv, {out}.md, {out}_runs.csv")
        return
    print(estimate(parser, args))


def estimate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """Write one estimate (OUT.csv, OUT.md, OUT_runs.csv) and return its markdown."""
    config = load_config(args.config)
    if args.methods_per_job is not None:
        if args.methods_per_job < 1:
            parser.error(f"--methods-per-job must be 1 or more, got {args.methods_per_job}")
        config["engine"]["methods_per_job"] = args.methods_per_job
    settings = config["gpu_hours"]  # schema defaults filled in by load_config
    table = args.throughput or settings["throughput"]
    if not Path(table).is_absolute() and not Path(table).exists():
        table = str(REPO / table)
    typical = args.typical_output_tokens or settings["typical_output_tokens"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_outputs(
        config,
        table,
        out.with_suffix(".csv"),
        out.with_suffix(".md"),
        out.with_name(out.name + "_runs.csv"),
        typical_output_tokens=typical,
        card=args.card or settings["card"],
        rows_card=args.rows_card or settings["rows_card"],
    )
    return out.with_suffix(".md").read_text()


if __name__ == "__main__":
    main()
