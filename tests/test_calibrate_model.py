"""Calibration on a model's own attention: capture estimation scores through vLLM, fit the table.

The real vLLM CPU engine runs the tiny random-weight model (tests/helpers.py) with the
``capture_estimation`` method on a few prompts; the captured scores become table entries whose
sizes the methods then look up for that model (no calibration on each call).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from helpers import write_tiny_config
from sparse_frontier.attention.capture import CaptureEstimation
from sparse_frontier.attention.vertical_slash import VerticalSlash, estimate_scores


def test_capture_method_writes_the_estimation_scores_and_leaves_attention_dense(tmp_path):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(300, h, 32, generator=g) for h in (4, 2, 2))
    method = CaptureEstimation(out_dir=str(tmp_path), approximation_size=64, tag="x")
    assert method.prefill(q, k, v, layer_index=3, scale=0.2) is None
    (f,) = tmp_path.glob("x-layer003-*.pt")
    rec = torch.load(f)
    want = estimate_scores(q, k, 64, 0.2)
    torch.testing.assert_close(rec["vert"], want[0])
    torch.testing.assert_close(rec["slash"], want[1])
    with pytest.raises(ValueError, match="out_dir"):
        CaptureEstimation()


def test_calibrate_on_the_tiny_model_through_vllm(tmp_path, tiny_model, monkeypatch):
    config = write_tiny_config(tmp_path, tiny_model)
    rng = random.Random(0)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "input_ids": [rng.randrange(10, 400) for _ in range(1000)]}) + "\n"
                            for i in range(2)))
    out = tmp_path / "calibration.json"
    cmd = [sys.executable, "-m", "sparse_frontier.cli", "calibrate", "--config", str(config), "--model", "tiny-llama",
           "--dataset", f"1024={data}", "--prompts", "2", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = json.loads(out.read_text())["entries"]
    assert {(e["model"], e["method"], e["length"]) for e in entries} == {
        ("tiny-llama", "vertical_slash", 1024), ("tiny-llama", "flexprefill", 1024)}
    vs = next(e for e in entries if e["method"] == "vertical_slash")
    assert vs["source"].startswith("captured: 2 prompts x 2 layer(s)")  # the tiny model has 2 layers
    sizes = [p["params"]["vertical_size"] for p in sorted(vs["points"], key=lambda p: p["sparsity"])]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]  # sparser -> fewer columns
    # a method bound to the model now takes its sizes from this table instead of calibrating per call
    monkeypatch.setenv("SPARSE_FRONTIER_CALIBRATION", str(out))
    method = VerticalSlash(sparsity=0.5).bind(model="tiny-llama")
    point = next(p for p in vs["points"] if abs(p["sparsity"] - 0.5) < 1e-9)
    assert method.sizes(1000) == (point["params"]["vertical_size"],) * 2
    bad = subprocess.run(cmd[:-3] + ["--dataset", "huge", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "LENGTH=PATH" in bad.stderr
