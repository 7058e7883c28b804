"""Collect every run's summary into one tidy table (one row per run)."""

from __future__ import annotations

import pandas as pd

from sparse_frontier.io import read_json, write_text_atomic
from sparse_frontier.paths import RunKey

#: Columns identifying a run, in path-grammar order (``RunKey.FIELDS``); the rest are measurements.
KEY_COLUMNS = list(RunKey.FIELDS)


def collect_summaries(summary_paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in summary_paths:
        row = read_json(path)
        row["experiments"] = ",".join(row.get("experiments", []))
        rows.append(row)
    if not rows:
        raise ValueError("no run summaries to collect: the config's experiments produced no runs")
    table = pd.DataFrame(rows)
    measured = [c for c in table.columns if c not in KEY_COLUMNS]
    return table[KEY_COLUMNS + measured].sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, path: str) -> None:
    write_text_atomic(path, table.to_csv(index=False))


def add_phase(table: pd.DataFrame) -> pd.DataFrame:
    """The phase each method sparsifies (prefill / decode / kv / none), from the method registry."""
    from sparse_frontier.attention import get_method_class

    return table.assign(phase=[get_method_class(m).phase for m in table["method"]])


def with_missing(table: pd.DataFrame, expected_summaries: list[str]) -> pd.DataFrame:
    """Mark every run of the config that has no summary yet as a row with ``status == "missing"``."""
    from sparse_frontier import paths

    have = set(map(tuple, table[KEY_COLUMNS].astype(str).to_numpy())) if not table.empty else set()
    rows = []
    for path in expected_summaries:
        key = paths.parse_path(paths.SUMMARY, path)
        if tuple(str(key[c]) for c in KEY_COLUMNS) not in have:
            rows.append({**key, "status": "missing"})
    missing = pd.DataFrame(rows, columns=KEY_COLUMNS + ["status"])
    for c in RunKey.INT_FIELDS:
        missing[c] = missing[c].astype(int)
    return pd.concat([table.assign(status="ok"), missing], ignore_index=True)


def collect_sample_scores(summary_paths: list[str]) -> pd.DataFrame:
    """Per-sample scores of every run (the ``scores.jsonl`` beside each summary) with the run's keys."""
    from sparse_frontier import paths
    from sparse_frontier.io import read_jsonl

    parts = []
    for path in summary_paths:
        key = paths.parse_path(paths.SUMMARY, path)
        rows = pd.DataFrame(read_jsonl(path.removesuffix("summary.json") + "scores.jsonl"))
        parts.append(rows.assign(**key))
    if not parts:
        raise ValueError("no run summaries to collect: the config's experiments produced no runs")
    table = pd.concat(parts, ignore_index=True)
    for c in RunKey.INT_FIELDS:
        table[c] = table[c].astype(int)
    measured = [c for c in table.columns if c not in KEY_COLUMNS]
    return table[KEY_COLUMNS + measured].sort_values(KEY_COLUMNS + ["id"], kind="stable").reset_index(drop=True)
