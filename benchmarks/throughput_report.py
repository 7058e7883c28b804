"""The throughput table as a method x length table and plot (thin wrapper; the logic is in
``sparse_frontier/planning/throughput_report.py``).

Usage: python benchmarks/throughput_report.py [CSV] [OUTDIR] [--card H100]
writes OUTDIR/throughput.md (samples/h per method and length, per card and engine setting, the
speed-ups over dense through the handler and over stock vLLM - and, where measured (``throughput.py
--stock-graphs full``), over stock vLLM with its default full CUDA graphs, shown in the piecewise
groups -, and issue #18's targets: pass, miss, or not evaluated with the rows missing) and
OUTDIR/throughput.png (samples/h vs length, one line per method, dense and stock vLLM included). Defaults: benchmarks/results/throughput.csv, benchmarks/results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sparse_frontier.planning.throughput_report import write_report  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(REPO / "benchmarks/results/throughput.csv"))
    parser.add_argument("out_dir", nargs="?", default=str(REPO / "benchmarks/results"))
    parser.add_argument("--card", default=None, help="only rows of this card (a case-insensitive part of its name)")
    args = parser.parse_args(argv)
    table = Path(args.csv).resolve()
    shown = table.relative_to(REPO) if table.is_relative_to(REPO) else table  # the report names it so
    print(write_report(table, args.out_dir, args.card, shown=str(shown)).read_text())


if __name__ == "__main__":
    main()
