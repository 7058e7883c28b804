"""Cost model: hand-computed cases and the paper's breakdown numbers (v3 Appendix B)."""

import math
from pathlib import Path

import pytest
import yaml

from sparse_frontier.analysis import cost
from sparse_frontier.analysis.cost import Architecture

REPO = Path(__file__).resolve().parent.parent
TINY = Architecture(layers=2, hidden=4, heads=2, kv_heads=1, head_dim=2, mlp=8, vocabulary=10, params=1e3)


def paper_models():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return {n: Architecture.from_config(m, n) for n, m in config["models"].items() if n.startswith("qwen2.5-")}


def test_prefill_flops_by_hand():
    f = cost.prefill_flops(TINY, length=3)
    # emb 2*3*4; attn 2*(2*3*4*(2*4+2*2*1) + 1*2*3^2*(4*2+3)); mlp 2*2*3*8*(3*4+1); logits 2*3*4*10
    assert f["embedding"] == 24
    assert f["attention"] == 2 * (288 + 198) == 972
    assert f["mlp"] == 1248 and f["logits"] == 240
    assert f["total"] == 24 + 972 + 1248 + 240
    half = cost.prefill_flops(TINY, length=3, density=0.5, batch=4)
    assert half["attention_core"] == 4 * 0.5 * 2 * 198
    assert half["mlp"] == 4 * 1248


def test_decode_memory_by_hand():
    m = cost.decode_memory(TINY, length=5, density=0.5, batch=2)
    assert m["weights"] == 2 * (4 * 16 + 3 * 4 * 8) + 4 * 10 + 4 == 364
    assert m["kv"] == 2 * (2 * 2 * 2 * 1 * 5 * 0.5) == 40
    assert m["total"] == 404


def test_index_and_page_summary_costs_by_hand():
    # B N h [2 d_h L q + 5 L q + 2 L log2 L + (L/64)(kv + ks)] with L=64, q=2, kv=ks=1
    per_head = 2 * 2 * 64 * 2 + 5 * 64 * 2 + 2 * 64 * 6 + 1 * 2
    assert cost.vertical_slash_index_flops(TINY, 64, queries=2, verticals=1, slashes=1) == 2 * 2 * per_head
    assert cost.quest_page_summary_elements(TINY, 64, page_size=16, batch=3) == 3 * 2 * 1 * 2 * 2 * 64 / 16


def test_sliding_window_layers_cap_keys_and_ignore_density():
    swa = Architecture(**{**TINY.__dict__, "layers": 6, "sliding_window": 4, "global_every": 6})
    assert (swa.global_layers, swa.local_layers) == (1, 5)
    m = cost.decode_memory(swa, length=100, density=0.1)
    assert m["kv"] == pytest.approx(1 * 4 * 100 * 0.1 + 5 * 4 * 4)


@pytest.mark.parametrize(
    "name, layers, global_layers", [("gemma3-4b", 34, 5), ("gemma3-12b", 48, 8), ("gemma3-27b", 62, 10)]
)
def test_gemma3_global_layers_are_every_sixth_counting_from_one(name, layers, global_layers):
    """Layers 6, 12, 18, ... are global: floor(layers / 6), as in Gemma 3's own config and the
    resource planner (34 layers -> 6, 12, 18, 24, 30)."""
    from transformers import Gemma3TextConfig

    from sparse_frontier.planning.resources import global_layers as planned_global_layers

    entry = yaml.safe_load((REPO / "config/config.yaml").read_text())["models"][name]
    arch = Architecture.from_config(entry, name)
    assert arch.layers == layers
    assert (arch.global_layers, arch.local_layers) == (global_layers, layers - global_layers)
    assert planned_global_layers(entry["architecture"]) == global_layers
    hf = Gemma3TextConfig(num_hidden_layers=layers)  # the checkpoints' default 5:1 pattern
    assert hf.layer_types.count("full_attention") == global_layers


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="density"):
        cost.prefill_flops(TINY, 10, density=1.5)
    with pytest.raises(ValueError, match="phase 'both'"):
        cost.phase_cost(TINY, "both", 10, 1.0)
    with pytest.raises(ValueError, match="kv_heads"):
        Architecture(layers=1, hidden=4, heads=3, kv_heads=2, head_dim=2, mlp=8, vocabulary=10, params=1)
    with pytest.raises(ValueError, match="architecture"):
        Architecture.from_config({"source": "x"}, "m")


def test_paper_attention_share_of_prefill():
    """v3: 40% / 68% / 80% at 16k / 64k / 128k, averaged over Qwen 2.5 7B-72B."""
    models = paper_models()
    assert len(models) == 4
    for length, paper in [(16384, 0.40), (65536, 0.68), (131072, 0.80)]:
        mean = sum(cost.attention_share(a, length) for a in models.values()) / len(models)
        assert mean == pytest.approx(paper, abs=0.01)


def test_paper_kv_share_of_decode_traffic():
    """v3: KV share 7-35% at batch 1 and 80-97% at batch 64 over 16k-128k (Qwen means)."""
    models = paper_models().values()

    def mean(length, batch):
        return sum(cost.kv_share(a, length, batch) for a in models) / len(models)

    assert mean(16384, 1) == pytest.approx(0.07, abs=0.02) and mean(131072, 1) == pytest.approx(0.35, abs=0.03)
    assert mean(16384, 64) == pytest.approx(0.80, abs=0.02) and mean(131072, 64) == pytest.approx(0.97, abs=0.01)
    assert all(math.isclose(cost.kv_share(a, 16384, 64, density=0.0), 0.0) for a in models)
