"""Collect every run's summary into one tidy table (one row per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sparse_frontier.io import write_text_atomic

#: Columns identifying a run, in path-grammar order; the rest are measurements.
KEY_COLUMNS = ["task", "task_args", "length", "model", "samples", "seed", "method", "method_args", "max_tokens"]


def collect_summaries(summary_paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in summary_paths:
        row = json.loads(Path(path).read_text())
        row["experiments"] = ",".join(row.get("experiments", []))
        rows.append(row)
    if not rows:
        raise ValueError("no run summaries to collect: the config's experiments produced no runs")
    table = pd.DataFrame(rows)
    measured = [c for c in table.columns if c not in KEY_COLUMNS]
    return table[KEY_COLUMNS + measured].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, path: str) -> None:
    write_text_atomic(path, table.to_csv(index=False))
