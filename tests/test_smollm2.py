"""Slow: the embedded default model end to end, as the demo runs it (GGUF -> HF -> vLLM CPU)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_workflow import REPO, snakemake

pytestmark = pytest.mark.slow


def test_smollm2_demo_pipeline(tmp_path):
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    for experiment in config["experiments"].values():  # every demo task, one short length, 2 samples
        experiment.update(lengths=[1024], samples=2, max_output_tokens=24)
    expected_runs = sum(len(e["tasks"]) * len(e["methods"]) for e in config["experiments"].values())
    path = tmp_path / "demo-small.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake("demo", "--cores", "2", "--directory", str(tmp_path), "--configfile", str(path), timeout=1800)
    checkpoint = tmp_path / "resources/models/smollm2-135m-instruct"
    hf_config = json.loads((checkpoint / "config.json").read_text())
    assert hf_config["num_hidden_layers"] == 30 and "quantization_config" not in hf_config
    table = pd.read_csv(tmp_path / "results/tables/scores.csv")
    assert len(table) == expected_runs and (table["samples"] == 2).all()
    preds = next((tmp_path / "results/predictions").rglob("predictions.jsonl")).read_text().splitlines()
    assert all(json.loads(p)["attention_layers"] == 30 for p in preds)
    assert (tmp_path / "results/figures/accuracy_vs_length.png").stat().st_size > 10_000
