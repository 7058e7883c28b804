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


@pytest.mark.slow  # a tiny-model engine capturing scores, ~15 s
def test_calibrate_on_the_tiny_model_through_vllm(tmp_path, tiny_model, monkeypatch):
    config = write_tiny_config(tmp_path, tiny_model)
    rng = random.Random(0)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": i, "input_ids": [rng.randrange(10, 400) for _ in range(1000)]}) + "\n" for i in range(2)
        )
    )
    out = tmp_path / "calibration.json"
    cmd = [
        sys.executable,
        "-m",
        "sparse_frontier.cli",
        "calibrate",
        "--config",
        str(config),
        "--model",
        "tiny-llama",
        "--dataset",
        f"1024={data}",
        "--prompts",
        "2",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    entries = json.loads(out.read_text())["entries"]
    assert {(e["model"], e["method"], e["length"]) for e in entries} == {
        ("tiny-llama", "vertical_slash", 1024),
        ("tiny-llama", "flexprefill", 1024),
    }
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


class _ScoresEngine:
    """Stands in for vLLM in :func:`calibrate._capture`: runs the requested method's prefill on
    random queries/keys of each prompt's length for two layers (what the plugin would do per layer)."""

    def __init__(self, model_location, **kwargs):
        pass

    def generate(self, prompts, max_tokens, seed, method):
        from sparse_frontier.attention import get_method_class

        recorder = get_method_class(method["method"]).from_params(method["params"])
        for i, prompt in enumerate(prompts):
            g = torch.Generator().manual_seed(i)
            q, k = torch.randn(len(prompt), 4, 32, generator=g), torch.randn(len(prompt), 2, 32, generator=g)
            for layer in range(2):
                recorder.prefill(q, k, k, layer_index=layer, scale=32**-0.5)


def test_calibration_fits_every_approximation_size_the_grid_uses(tmp_path, monkeypatch):
    """A task whose method_defaults give Vertical-Slash approximation_size 512 (NIAH, Story Retrieval
    in the paper config) gets table entries at 512 beside the 256 of the other tasks, fitted on the
    scores captured with 512 queries (shared with FlexPrefill's); each run's lookup finds its own."""
    import yaml

    from sparse_frontier import calibrate
    from sparse_frontier.attention import get_method_class
    from sparse_frontier.config import expand_runs, load_config

    path = write_tiny_config(tmp_path, tmp_path / "no-model", lengths=(1024,))
    config = yaml.safe_load(path.read_text())
    config["tasks"]["niah"]["method_defaults"] = {"vertical_slash": {"approximation_size": 512}}
    config["tasks"]["vt"] = {"task": "ruler_vt"}
    config["methods"].update(
        {
            "vs_90": {"method": "vertical_slash", "params": {"sparsity": 0.9}},
            "fp_90": {"method": "flexprefill", "params": {"sparsity": 0.9}},
            "vs_quest": {"method": "vertical_slash+quest", "params": {"prefill_sparsity": 0.8, "decode_sparsity": 0.9}},
            "vs_sized": {
                "method": "vertical_slash",
                "params": {"vertical_size": 64, "slash_size": 64},
            },  # looks nothing up
        }
    )
    config["experiments"]["tiny"].update(
        tasks=["niah", "vt"], methods=["dense", "vs_90", "fp_90", "vs_quest", "vs_sized"]
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    runs = expand_runs(load_config(path))

    settings = calibrate.calibration_settings(runs)["tiny-llama"]
    assert sorted((s["method"], s["fixed"]["approximation_size"], tuple(s["lengths"])) for s in settings) == [
        ("flexprefill", 512, (1024,)),
        ("vertical_slash", 256, (1024,)),
        ("vertical_slash", 512, (1024,)),
    ]

    captures = []

    def run_capture(args_file):
        args = json.loads(args_file.read_text())
        captures.append(args["sizes"])
        calibrate._capture(**args)
        return 0

    monkeypatch.setattr("sparse_frontier.vllm_plugin.engine.Engine", _ScoresEngine)
    monkeypatch.setattr(calibrate, "_run_capture", run_capture)
    rng = random.Random(0)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": i, "input_ids": [rng.randrange(10, 400) for _ in range(1000)]}) + "\n" for i in range(2)
        )
    )
    out, work = tmp_path / "calibration.json", tmp_path / "work"
    entries = calibrate.calibrate_model(
        "unused",
        "tiny-llama",
        {1024: str(data)},
        str(out),
        {},
        prompts_per_length=2,
        settings=settings,
        work_dir=str(work),
    )
    assert captures == [[256, 512]]  # one capture per size, 512 shared by FlexPrefill and Vertical-Slash
    vs = {e["fixed"]["approximation_size"]: e for e in entries if e["method"] == "vertical_slash"}
    assert sorted(vs) == [256, 512] and {e["method"] for e in entries} == {"vertical_slash", "flexprefill"}
    assert vs[512]["fixed"] == VerticalSlash(approximation_size=512).calibration_key()
    assert vs[256]["points"] != vs[512]["points"]  # each fitted on its own estimation scores

    monkeypatch.setenv("SPARSE_FRONTIER_CALIBRATION", str(out))
    checked = {}
    for run in runs:
        method = get_method_class(run.key.method).from_params(dict(run.method_params)).bind(model="tiny-llama")
        part = getattr(method, "components", {}).get("prefill", method)
        if not isinstance(part, VerticalSlash) or part.vertical_size:
            continue
        entry = vs[part.approximation_size]
        point = next(p for p in entry["points"] if abs(p["sparsity"] - part.sparsity) < 1e-9)
        # from the table: no scores are passed, so calibrating on the call would fail
        assert part.sizes(1000) == (point["params"]["vertical_size"],) * 2, run.key
        checked[run.key.task, run.key.method] = part.approximation_size
    assert checked == {
        ("ruler_niah", "vertical_slash"): 512,
        ("ruler_niah", "vertical_slash+quest"): 512,
        ("ruler_vt", "vertical_slash"): 256,
        ("ruler_vt", "vertical_slash+quest"): 256,
    }

    # the methods' defaults alone (the calibration before) leave the 512 runs without an entry
    alone = calibrate.calibrate_model(
        "unused",
        "tiny-llama",
        {1024: str(data)},
        str(tmp_path / "defaults.json"),
        {},
        prompts_per_length=2,
        work_dir=str(work),
    )
    assert sorted(e["fixed"]["approximation_size"] for e in alone if e["method"] == "vertical_slash") == [256]
    # the defaults are always fitted; a setting's lengths limit it to those lengths
    only = [{"method": "vertical_slash", "fixed": {"approximation_size": 512}, "lengths": [2048]}]
    few = calibrate.calibrate_model(
        "unused",
        "tiny-llama",
        {1024: str(data)},
        str(tmp_path / "few.json"),
        {},
        methods=["vertical_slash"],
        settings=only,
        prompts_per_length=2,
        work_dir=str(work),
    )
    assert [(e["method"], e["fixed"]["approximation_size"]) for e in few] == [("vertical_slash", 256)]
    # a rerun in the same work folder captures only the sizes not captured yet
    calibrate.calibrate_model(
        "unused",
        "tiny-llama",
        {1024: str(data)},
        str(tmp_path / "more.json"),
        {},
        prompts_per_length=2,
        work_dir=str(work),
        settings=settings + [{"method": "vertical_slash", "fixed": {"approximation_size": 128}}],
    )
    assert captures == [[256, 512], [128]]
    with pytest.raises(ValueError, match=r"cannot calibrate \['quest'\]"):
        calibrate.calibrate_model("unused", "m", {}, str(out), {}, settings=[{"method": "quest", "fixed": {}}])
