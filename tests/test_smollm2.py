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
    for experiment in config["experiments"].values():  # every demo task and method, 2 samples
        experiment.update(lengths=[1024], samples=2, max_output_tokens=24)
    path = tmp_path / "demo-small.yaml"
    path.write_text(yaml.safe_dump(config))
    from sparse_frontier.config import expand_runs, load_config

    expected_runs = len(expand_runs(load_config(path)))  # method entries with lists expand to several runs
    assert expected_runs == 2 * 14
    snakemake("demo", "--cores", "2", "--directory", str(tmp_path), "--configfile", str(path), timeout=1800)
    checkpoint = tmp_path / "resources/models/smollm2-135m-instruct"
    hf_config = json.loads((checkpoint / "config.json").read_text())
    assert hf_config["num_hidden_layers"] == 30 and "quantization_config" not in hf_config
    table = pd.read_csv(tmp_path / "results/tables/scores.csv")
    assert len(table) == expected_runs and (table["samples"] == 2).all()
    preds = next((tmp_path / "results/predictions").rglob("predictions.jsonl")).read_text().splitlines()
    assert all(json.loads(p)["attention_layers"] == 30 for p in preds)
    assert (tmp_path / "results/figures/task_comparison.png").stat().st_size > 10_000  # the frontier
    # the pattern figure's head (figures.patterns) is SmolLM2's own: the queries and keys vLLM handed
    # the plugin equal those transformers computes from the same checkpoint for that layer and head
    capture = next((tmp_path / "results/attention").rglob("*.pt"))
    check_captured_head(checkpoint, capture, config["figures"]["patterns"], tmp_path)
    assert (tmp_path / "results/figures/pattern_masks.png").stat().st_size > 10_000


def check_captured_head(checkpoint, capture, patterns, workdir):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    record = torch.load(capture)
    prompt = json.loads((Path(workdir) / record["dataset"]).read_text().splitlines()[patterns.get("sample", 0)])[
        "input_ids"
    ]
    assert record["prompt_tokens"] == len(prompt) == record["query"].shape[0]
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    attn = model.model.layers[patterns["layer"]].self_attn
    seen = {}
    attn.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(h=kwargs.get("hidden_states", args[0] if args else None)), with_kwargs=True
    )
    with torch.no_grad():
        model(torch.tensor([prompt]))
        h = seen["h"]
        n, d = len(prompt), model.config.head_dim if hasattr(model.config, "head_dim") else 64
        q = attn.q_proj(h).view(1, n, -1, d).transpose(1, 2)
        k = attn.k_proj(h).view(1, n, -1, d).transpose(1, 2)
        cos, sin = model.model.rotary_emb(h, torch.arange(n)[None])
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
    head, kv = record["head"], record["kv_head"]
    assert kv == head // (q.shape[1] // k.shape[1])
    torch.testing.assert_close(record["query"][:, 0], q[0, head], atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(record["key"][:, 0], k[0, kv], atol=2e-3, rtol=2e-3)
    assert record["scale"] == pytest.approx(d**-0.5)
