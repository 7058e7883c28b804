"""The paper's hyperparameter ablations in config/config.yaml: declared, coherent, and each knob matters.

Paper (../shared/spec/paper.md, figures 5-11): Block-Sparse block size 16/32/64; Quest page size
16/32/64; Ada-SnapKV minimum head capacity 0.1/0.2/0.3/0.5/0.99; FlexPrefill min budget 128/256/512;
SnapKV approximation window 64/128/256/512 and pooling kernel 5/7/13/21; Vertical-Slash approximation
window 128/256/512/1024. Qwen2.5-7B at 16k.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import math
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import validate

from sparse_frontier.attention import get_method_class
from sparse_frontier.attention.reference import kv_selection_mask, page_keep_mask
from sparse_frontier.config import resolve_method

REPO = Path(__file__).resolve().parent.parent
PAPER = {  # ablation -> (method, parameter, values)
    "block_size": ("block_sparse", "chunk_size", [16, 32, 64]),
    "page_size": ("quest", "page_size", [16, 32, 64]),
    "min_head_capacity": ("ada_snapkv", "min_head_capacity_ratio", [0.1, 0.2, 0.3, 0.5, 0.99]),
    "min_budget": ("flexprefill", "min_budget", [128, 256, 512]),
    "snapkv_window": ("snapkv", "approximation_window", [64, 128, 256, 512]),
    "snapkv_kernel": ("snapkv", "kernel_size", [5, 7, 13, 21]),
    "vs_window": ("vertical_slash", "approximation_size", [128, 256, 512, 1024]),
}


@pytest.fixture(scope="module")
def paper():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    return config


def ablation_settings(config, name):
    """(experiment, parameter, [(method, resolved params)] of the non-dense methods)."""
    spec = config["figures"]["ablations"][name]
    exp = config["experiments"][spec["experiment"]]
    settings = [resolve_method(config["methods"][m]) for m in exp["methods"]]
    return exp, spec["parameter"], [s for s in settings if s[0] != "dense"]


def test_every_paper_ablation_is_declared_with_its_values(paper):
    assert set(paper["figures"]["ablations"]) == set(PAPER)
    for name, (method, parameter, values) in PAPER.items():
        exp, param, settings = ablation_settings(paper, name)
        assert param == parameter, name
        assert exp["models"] == ["qwen2.5-7b"] and exp["lengths"] == [16384], name
        assert "dense" in exp["methods"], f"{name}: dense is every line's compression-1 point"
        assert {m for m, _ in settings} == {method}, name
        assert sorted(p[param] for _, p in settings) == values, name
        # one knob at a time: apart from the ablated parameter, the settings are identical
        rest = {tuple(sorted((k, v) for k, v in p.items() if k != param)) for _, p in settings}
        assert len(rest) == 1, f"{name}: settings differ in more than {param}: {rest}"
        assert dict(next(iter(rest)))["sparsity"] == 0.9, name  # the 1/10 budget (spec gives none)


def qkv(t, hq, hkv, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(t, h, d, generator=g) for h in (hq, hkv, hkv))
    k[:, 0] *= 3  # heads of different peakiness, so Ada-SnapKV's shared budget is uneven
    return q, k, v


def kept_set(method, seed=0) -> torch.Tensor:
    """What the method keeps on random inputs: the prefill mask, Quest's read tokens or the kept KV."""
    if method.phase == "prefill":
        q, k, v = qkv(2048, 4, 2, 32, seed)
        return method.build_mask(q, k, v, scale=32**-0.5)
    if method.phase == "decode":
        s = 4096
        q, (k, v) = torch.randn(4, 32), torch.randn(2, 2, s, 32)
        pages = method.select(q[None], k[None], torch.tensor([[s, s]]))[0]
        return page_keep_mask(pages, s, method.page_size, 2)
    q, k, v = qkv(16384, 4, 2, 32, seed)  # 16k: Ada-SnapKV's floor exceeds prefix + local window there
    sel = method.compress_kv(q, k, v, layer_index=0, scale=32**-0.5)
    return kv_selection_mask(sel.indices, 16384, 2)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_each_ablation_value_changes_the_kept_set(paper, name, monkeypatch):
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "torch")
    _, param, settings = ablation_settings(paper, name)
    kept = {}
    for method, params in settings:
        m = get_method_class(method).from_params(params)
        kept[params[param]] = kept_set(m)
    values = sorted(kept)
    for i, a in enumerate(values):
        for b in values[i + 1 :]:
            assert not torch.equal(kept[a], kept[b]), f"{name}: {param}={a} and {param}={b} keep the same set"
    if name == "min_head_capacity":
        cap = math.floor(0.1 * 16384 + 1e-9)
        lengths = kept[0.1].view(2, 2, -1)[:, 0].sum(-1)  # per kv head
        assert lengths.min() >= math.ceil(0.1 * cap) and lengths.sum() == 2 * cap
