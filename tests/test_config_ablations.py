"""The paper's hyperparameter ablations in config/config.yaml: declared, coherent, and each knob matters.

Paper (../shared/spec/paper.md, figures 5-11): Block-Sparse block size 16/32/64; Quest page size
16/32/64; Ada-SnapKV minimum head capacity 0.1/0.2/0.3/0.5/0.99; FlexPrefill min budget 128/256/512;
SnapKV approximation window 64/128/256/512 and pooling kernel 5/7/13/21; Vertical-Slash approximation
window 128/256/512/1024. Qwen2.5-7B at 16k, each value's curve over sparsity 0-0.9 (dense is 0).
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from sparse_frontier.attention import get_method_class
from sparse_frontier.attention.reference import kv_selection_mask, page_keep_mask

PAPER = {  # ablation -> (method, parameter, values)
    "block_size": ("block_sparse", "chunk_size", [16, 32, 64]),
    "page_size": ("quest", "page_size", [16, 32, 64]),
    "min_head_capacity": ("ada_snapkv", "min_head_capacity_ratio", [0.1, 0.2, 0.3, 0.5, 0.99]),
    "min_budget": ("flexprefill", "min_budget", [128, 256, 512]),
    "snapkv_window": ("snapkv", "approximation_window", [64, 128, 256, 512]),
    "snapkv_kernel": ("snapkv", "kernel_size", [5, 7, 13, 21]),
    "vs_window": ("vertical_slash", "approximation_size", [128, 256, 512, 1024]),
}
#: the main grid's own value is a line of the ablation (its runs shared), except FlexPrefill's
#: min_budget, whose grid value 0 means "from the calibration" (the paper's lines fix it)
NO_DEFAULT_LINE = {"min_budget"}


def ablation_runs(config, runs, name):
    """(experiment, parameter, the experiment's runs)."""
    spec = config["figures"]["ablations"][name]
    return (
        config["experiments"][spec["experiment"]],
        spec["parameter"],
        [r for r in runs if spec["experiment"] in r.experiments],
    )


def test_every_paper_ablation_is_declared_with_its_values(paper, runs):
    assert set(paper["figures"]["ablations"]) == set(PAPER)
    for name, (method, parameter, values) in PAPER.items():
        exp, param, mine = ablation_runs(paper, runs, name)
        assert param == parameter, name
        assert exp["models"] == ["qwen2.5-7b"] and exp["lengths"] == [16384], name
        assert {r.key.model for r in mine} == {"qwen2.5-7b"} and {r.key.length for r in mine} == {16384}, name
        by_task = defaultdict(list)
        for r in mine:
            by_task[r.key.task].append(r)
        assert len(by_task) == 9, name
        for task, rs in by_task.items():
            assert sum(r.key.method == "dense" for r in rs) == 1, f"{name}: dense is every line's compression-1 point"
            sparse = [r.method_params for r in rs if r.key.method != "dense"]
            assert {r.key.method for r in rs} == {"dense", method}, name
            assert sorted({p[param] for p in sparse}) == values, (name, task)
            # a curve per value: every value at the same sparsities, several of them in (0, 0.9]
            levels = {v: sorted(p["sparsity"] for p in sparse if p[param] == v) for v in values}
            first = levels[values[0]]
            assert all(lv == first for lv in levels.values()), (name, task, levels)
            assert len(first) >= 4 and 0 < first[0] and first[-1] == 0.9, (name, first)
            # one knob at a time: apart from the ablated parameter and the sparsity, the settings are identical
            rest = {tuple(sorted((k, v) for k, v in p.items() if k not in (param, "sparsity"))) for p in sparse}
            assert len(rest) == 1, f"{name}: settings differ in more than {param}: {rest}"
            # the default-value line is the main grid's runs (shared files, not run twice)
            grid = [
                r
                for r in runs
                if "qwen" in r.experiments
                and r.key.model == "qwen2.5-7b"
                and r.key.length == 16384
                and r.key.task == task
                and r.key.method == method
            ]
            grid_values = {r.method_params[param] for r in grid}
            assert len(grid_values) == 1, (name, task, grid_values)
            default = grid_values.pop()
            if name in NO_DEFAULT_LINE:
                assert default not in values
                continue
            assert default in values, (name, task, default)
            line = [r for r in rs if r.key.method == method and r.method_params[param] == default]
            assert line and all("qwen" in r.experiments for r in line), (name, task)


def test_vertical_slash_window_lines_keep_their_values_on_the_tasks_with_a_512_default(paper, runs):
    _, param, mine = ablation_runs(paper, runs, "vs_window")
    for task in ("ruler_niah", "story_retrieval", "ruler_vt"):
        values = sorted({r.method_params[param] for r in mine if r.key.task == task and r.key.method != "dense"})
        assert values == [128, 256, 512, 1024], task


def settings_at(config, runs, name, sparsity=0.9, task="ruler_vt"):
    """(parameter, [(method, params)] of the ablation's sparse settings at one sparsity on one task)."""
    _, param, mine = ablation_runs(config, runs, name)
    chosen = [
        (r.key.method, dict(r.method_params))
        for r in mine
        if r.key.task == task and r.key.method != "dense" and r.method_params["sparsity"] == sparsity
    ]
    return param, chosen


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
def test_each_ablation_value_changes_the_kept_set(paper, runs, name, monkeypatch):
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "torch")
    param, settings = settings_at(paper, runs, name)
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
