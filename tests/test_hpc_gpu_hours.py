"""benchmarks/gpu_hours.py: the grid's GPU-hours table, and the resource model against the H100 measurements."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("gpu_hours", REPO / "benchmarks/gpu_hours.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_hours_table(tmp_path):
    gpu_hours = _module()
    gpu_hours.main(["--out", str(tmp_path / "gpu_hours")])
    rows = list(csv.DictReader(open(tmp_path / "gpu_hours.csv")))
    assert len(rows) == 9 and sum(int(r["runs"]) for r in rows) == 14499
    for r in rows:
        assert 0 < float(r["gpu_hours_typical"]) < float(r["gpu_hours_budget"])
    by = {r["model"]: float(r["gpu_hours_budget"]) for r in rows}
    assert by["qwen2.5-72b"] > by["qwen2.5-32b"] > by["qwen2.5-14b"] > by["qwen2.5-7b"]
    md = (tmp_path / "gpu_hours.md").read_text()
    assert "Extrapolated" in md and "| piecewise | 16384 | 8 | 4,999 |" in md


def test_uncalibrated_model_is_within_2x_of_every_measurement_at_8_or_more_at_once():
    from sparse_frontier.config import load_config

    gpu_hours = _module()
    config = load_config(REPO / "config/config.yaml")
    model = dict(config["models"]["qwen2.5-7b"], name="qwen2.5-7b")
    rows = gpu_hours.measurements(REPO / "benchmarks/results/plugin_gpu.json")
    assert len(rows) >= 10
    for r in rows:
        if r["concurrency"] >= 8:
            per_sample = gpu_hours.modelled_seconds_per_sample(model, config["engine"], r["length"], r["concurrency"], 256)
            assert 0.5 < r["samples_per_hour"] * per_sample / 3600 < 2, r
