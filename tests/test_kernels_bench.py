"""benchmarks/kernels.py runs end to end at tiny sizes on CPU (Triton interpreter) and checks itself."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_dry_run_writes_checked_tables(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "benchmarks/kernels.py", str(tmp_path), "--device", "cpu", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "kernels.csv")))
    methods = {(r["kind"], r["method"]) for r in rows}
    assert {
        ("prefill", "vertical_slash"),
        ("prefill", "flexprefill"),
        ("prefill", "block_sparse"),
        ("decode", "quest"),
        ("kv", "snapkv"),
        ("prefill", "dense"),
        ("decode", "dense"),
    } <= methods
    checked = [r for r in rows if r["rel_err"]]
    assert checked and all(float(r["rel_err"]) < 1e-4 for r in checked)
    assert not [r for r in rows if r["note"].startswith("error")]
    assert (tmp_path / "kernels.md").read_text().startswith("# Kernel benchmarks")
