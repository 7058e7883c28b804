"""benchmarks/throughput.py on CPU with the tiny random-weight model: rows, resume, time budget, one engine per model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_frontier.planning.throughput_table import read_table

REPO = Path(__file__).resolve().parent.parent
TINY_ARCH = {
    "layers": 2,
    "hidden": 128,
    "heads": 2,
    "kv_heads": 1,
    "head_dim": 64,
    "mlp": 256,
    "vocabulary": 512,
    "params": 2.0e5,
}


def bench(*args, timeout=600):
    cmd = [sys.executable, str(REPO / "benchmarks/throughput.py"), *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result.stdout + result.stderr


@pytest.mark.slow  # several tiny-model engines, ~30 s
def test_cpu_throughput_rows_resume_and_time_budget(tmp_path, tiny_model):
    out = tmp_path / "throughput.csv"
    common = ["--lengths", 256, 512, "--output-tokens", 4, "--concurrency", 2, "--out", out, "--workdir", tmp_path]
    log = bench("--model", f"tiny={tiny_model}", "--methods", "dense", "quest=0.9", *common)
    assert "engine started" in log
    rows = read_table(out, {"tiny": {"architecture": TINY_ARCH}})
    assert [(r["length"], r["method"], r["sparsity"]) for r in rows] == [
        (256, "dense", 0.0),
        (256, "quest", 0.9),
        (512, "dense", 0.0),
        (512, "quest", 0.9),
    ]
    for r in rows:
        assert r["model"] == "tiny" and r["handler"] == "on" and r["cuda_graphs"] == "none"
        assert (
            r["output_tokens"] == 4
            and r["concurrency"] == 2
            and r["samples"] == 2
            and r["prompt_tokens"] == r["length"]
        )
        assert r["samples_per_hour"] == pytest.approx(2 / r["wall_s"] * 3600, rel=0.01)
        assert r["card"].startswith("cpu") and r["torch"] and r["vllm"] and r["engine_start_s"] > 0
        assert r["source"] == "benchmarks/throughput.py"  # real (random) weights: not the dummy loader
    quest = [r for r in rows if r["method"] == "quest"]
    assert all(0.5 < r["measured_sparsity"] < 1 for r in quest)
    assert all(r["measured_sparsity"] == 0 for r in rows if r["method"] == "dense")

    # time budget spent: nothing new is measured, no engine starts, exit 0
    log = bench(
        "--model", f"tiny={tiny_model}", "--methods", "dense", "quest=0.9", "snapkv=0.9", "--time-budget", 0, *common
    )
    assert "engine started" not in log and len(read_table(out)) == 4

    # two models: each in its own process; the one with nothing left starts no engine
    log = bench(
        "--model",
        f"tiny={tiny_model}",
        f"tiny2={tiny_model}",
        "--methods",
        "dense",
        "--time-budget",
        500,
        *common[:1],
        256,
        *common[3:],
    )
    assert "tiny: 0 of 1 settings" in log and "tiny2: 1 of 1 settings" in log and log.count("engine started") == 1
    rows = read_table(out)
    assert len(rows) == 5 and rows[-1]["model"] == "tiny2" and rows[-1]["length"] == 256


@pytest.mark.slow  # engines capturing and measuring, ~35 s
def test_vertical_slash_is_measured_with_a_captured_calibration_table(tmp_path, tiny_model):
    """As a grid run: the table is fitted on the model's own captured attention first (one capture
    engine per length), the benchmark's engine reads it, so no call calibrates itself; a rerun for a
    new setting reuses the table."""
    out = tmp_path / "throughput.csv"
    common = [
        "--lengths",
        256,
        "--output-tokens",
        2,
        "--concurrency",
        2,
        "--out",
        out,
        "--workdir",
        tmp_path,
        "--no-warmup",
    ]
    log = bench("--model", f"tiny={tiny_model}", "--methods", "vertical_slash=0.5", *common)
    assert "calibrating ['vertical_slash'] at [256]" in log and "calibrating on each call" not in log
    table = json.loads((tmp_path / "tiny-calibration.json").read_text())
    assert {(e["model"], e["method"], e["length"]) for e in table["entries"]} == {("tiny", "vertical_slash", 256)}
    (row,) = read_table(out)
    assert "calibration table captured on its own attention" in row["source"] and row["measured_sparsity"] > 0
    log = bench("--model", f"tiny={tiny_model}", "--methods", "vertical_slash=0.6", *common)
    assert "calibrating" not in log and len(read_table(out)) == 2


def test_bad_arguments_name_the_value(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/throughput.py"),
        "--model",
        "qwen2.5-7b",
        "--lengths",
        "256",
        "--methods",
        "questt=0.9",
        "--out",
        str(tmp_path / "t.csv"),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "questt" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(autouse=True, scope="module")
def _importable():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmarks_throughput", REPO / "benchmarks/throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["benchmarks_throughput"] = module
    yield


def test_dummy_shapes_follow_the_config_architecture():
    from benchmarks_throughput import QWEN25_7B, dummy_hf_config

    from sparse_frontier.config import load_config

    config = load_config(REPO / "config/config.yaml")
    qwen = dummy_hf_config("qwen2.5-7b", config["models"]["qwen2.5-7b"])
    assert {k: qwen[k] for k in QWEN25_7B} == QWEN25_7B  # the shape plugin_gpu.py measured
    llama = dummy_hf_config("llama3.1-70b", config["models"]["llama3.1-70b"])
    assert (llama["num_hidden_layers"], llama["num_attention_heads"], llama["num_key_value_heads"]) == (80, 64, 8)
    assert llama["model_type"] == "llama" and llama["rope_scaling"]["rope_type"] == "llama3"
    with pytest.raises(ValueError, match="gemma3-4b=FOLDER"):
        dummy_hf_config("gemma3-4b", config["models"]["gemma3-4b"])
