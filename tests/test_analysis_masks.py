"""The pattern figure's masks are what each registered method itself keeps on the toy example.

Tolerance on |measured - target| sparsity, per method, from the granularity of its budget at the
example's size (1024 prompt tokens, 64 decode steps):
- SnapKV / Ada-SnapKV 0.002: capacity = floor((1 - s) T), one token is 1/1024.
- Block-Sparse 0.02: one more key block per query block adds up to 0.03 of the causal pairs, the
  formula picks the closest count, so within half of that.
- Quest 0.02: the budget is rounded to whole pages (+-8 tokens) and the current, partial page is read
  on top (up to 16 tokens); 16 tokens are 0.015 of the cache.
- Vertical-Slash 0.02: its sizes are searched against the target (one more column strip is ~0.001,
  but the first chosen cover of block diagonals bounds how close the columns can bring it).
- FlexPrefill 0.06: one budget for columns and slashes alike and mass thresholds that jump (the sinks'
  slash mass is spread over hundreds of offsets, so any alpha > 0 keeps many), so on this example its
  density moves in steps of up to ~0.1 (one more slash may add a whole 64-wide block diagonal).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparse_frontier.analysis.masks import (
    DECODE,
    PREFILL,
    SCALE,
    SINKS,
    SLASH_OFFSET,
    pattern_masks,
    toy_qkv,
)
from sparse_frontier.attention import get_method_class
from sparse_frontier.attention.block_sparse import block_density
from sparse_frontier.attention.reference import build_mask, kv_selection_mask, masked_attention, masked_decode
from sparse_frontier.kernels.quest import page_summaries

TOKENS, STEPS, TARGETS = 1024, 64, (0.5, 0.7, 0.9)
TOLERANCE = {
    "snapkv": 0.002,
    "ada_snapkv": 0.002,
    "block_sparse": 0.02,
    "quest": 0.02,
    "vertical_slash": 0.02,
    "flexprefill": 0.06,
}


@pytest.fixture(scope="module")
def masks():
    return pattern_masks(TARGETS)


@pytest.fixture(scope="module")
def example():
    return toy_qkv(TOKENS + STEPS, seed=0)


@pytest.fixture(autouse=True)
def torch_paths(monkeypatch):
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "torch")


def build(m):
    return get_method_class(m.method).from_params(m.params)


def test_one_mask_per_method_and_target_with_the_documented_shapes(masks):
    assert [(m.method, m.target_sparsity) for m in masks] == [(n, s) for n in PREFILL + DECODE for s in TARGETS]
    for m in masks:
        assert m.mask.dtype == bool
        if m.phase == "prefill":
            assert m.method in PREFILL and m.mask.shape == (TOKENS, TOKENS)
            assert not np.triu(m.mask, 1).any()  # causal
            assert m.mask.diagonal().all()  # every query keeps itself
        else:
            assert m.method in DECODE and m.mask.shape == (STEPS, TOKENS + STEPS)
            for step, row in enumerate(m.mask):
                assert row[TOKENS + step] and not row[TOKENS + step + 1 :].any()  # the new token, nothing later


@pytest.mark.parametrize("method", list(TOLERANCE))
def test_measured_sparsity_near_target(masks, method):
    for m in masks:
        if m.method == method:
            assert abs(m.measured_sparsity - m.target_sparsity) <= TOLERANCE[method], m


def test_prefill_masks_are_the_methods_own(masks, example):
    q, k, v = (x[:TOKENS] for x in example)
    for m in (m for m in masks if m.phase == "prefill"):
        method = build(m)
        own = method.build_mask(q, k, v, scale=SCALE)
        assert torch.equal(own[0], torch.from_numpy(m.mask))
        assert torch.equal(build_mask(m.method, q, k, v, scale=SCALE, **m.params), own)
        # the prefill hook (CPU path of the kernel) computes exactly these pairs and counts them the same
        res = method.prefill(q, k, v, layer_index=0, scale=SCALE)
        assert torch.allclose(res.output.float(), masked_attention(q, k, v, own, SCALE), atol=1e-5)
        assert res.density.item() == pytest.approx(1 - m.measured_sparsity, abs=1e-6)
        if m.method == "block_sparse":
            assert m.params == {"sparsity": m.target_sparsity}  # the knob itself, formula -> top_chunks
            assert 1 - m.measured_sparsity == pytest.approx(block_density(TOKENS, 16, method.top(TOKENS)))


def test_vertical_slash_sizes_are_the_closest_of_their_neighbours(masks, example):
    q, k, v = (x[:TOKENS] for x in example)
    cls = get_method_class("vertical_slash")
    for m in (m for m in masks if m.method == "vertical_slash"):
        assert m.params["local_window"] == 1
        err = abs(m.measured_sparsity - m.target_sparsity)
        for dv in (-1, 1):  # one column more or less is no closer to the target
            params = dict(m.params, vertical_size=m.params["vertical_size"] + dv)
            mask = cls.from_params(params).build_mask(q, k, v, scale=SCALE)[0]
            assert abs(1 - mask.sum().item() / (TOKENS * (TOKENS + 1) / 2) - m.target_sparsity) >= err - 1e-12


def test_quest_keeps_the_pages_it_selects_at_each_step(masks, example):
    q, k, v = example
    for m in (m for m in masks if m.method == "quest"):
        quest = build(m)
        assert m.params == {"sparsity": m.target_sparsity}
        reads = []
        for step in range(STEPS):
            s = TOKENS + step + 1
            row = torch.from_numpy(m.mask[step, :s])
            pages = quest.select(q[s - 1][None], k[:s].transpose(0, 1)[None], torch.tensor([[s]]))[0][0]
            # the handler's path from page summaries picks the same pages
            pmin, pmax = page_summaries(k[:s].transpose(0, 1)[None], quest.page_size)
            again = quest.select_from_summaries(q[s - 1], pmin[0], pmax[0], s)[0]
            assert set(pages.tolist()) == set(again.tolist())
            kept_pages = set(torch.arange(s)[row].div(quest.page_size, rounding_mode="floor").tolist())
            assert kept_pages == {p for p in pages.tolist() if p >= 0}
            assert row.sum().item() == min(s, sum(min(quest.page_size, s - p * quest.page_size) for p in kept_pages))
            # Quest's decode hook attends exactly these tokens and reports this density
            res = quest.decode(q[s - 1], k[:s].transpose(0, 1), v[:s].transpose(0, 1), layer_index=0, scale=SCALE)
            out = masked_decode(q[s - 1], k[:s].transpose(0, 1), v[:s].transpose(0, 1), row[None], SCALE)
            assert torch.allclose(res.output.float(), out, atol=1e-5)
            reads.append(res.density.item())
        assert m.measured_sparsity == pytest.approx(1 - np.mean(reads), abs=1e-9)


def test_kv_masks_are_the_methods_own_selection(masks, example):
    q, k, v = (x[:TOKENS] for x in example)
    for m in (m for m in masks if m.method in ("snapkv", "ada_snapkv")):
        sel = build(m).compress_kv(q, k, v, layer_index=0, scale=SCALE)
        kept = kv_selection_mask(sel.indices, TOKENS, 1)[0].numpy()
        assert (m.mask[:, :TOKENS] == kept).all()  # the same kept prompt tokens at every step
        assert (m.mask[:, TOKENS:] == np.tri(STEPS, dtype=bool)).all()  # plus every token decoded since
        assert m.measured_sparsity == pytest.approx(1 - sel.lengths().sum().item() / TOKENS)
        assert kept[:4].all() and kept[-m.params["local_window"] :].all()  # prefix and local window


def test_deterministic(masks):
    again = pattern_masks(TARGETS)
    for a, b in zip(masks, again):
        fields = ("method", "target_sparsity", "measured_sparsity", "params")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert np.array_equal(a.mask, b.mask)
    other = pattern_masks((0.7,), seed=1, methods=("snapkv",))[0]
    seed0 = next(m for m in masks if m.method == "snapkv" and m.target_sparsity == 0.7)
    assert not np.array_equal(other.mask, seed0.mask)


def test_toy_example_has_sinks_verticals_local_and_slash_structure():
    q, k, _ = toy_qkv(TOKENS)
    logits = (q[:, 0] @ k[:, 0].T) * SCALE
    probs = logits.masked_fill(~torch.ones(TOKENS, TOKENS, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    rows = torch.arange(SLASH_OFFSET + 64, TOKENS)
    assert probs[rows, :SINKS].sum(1).mean() > 0.5  # sinks take most of the mass
    local = probs[rows, rows] > probs[rows, rows - 200]  # the diagonal beats a distant ordinary key
    assert local.float().mean() > 0.95
    slash = probs[rows, rows - SLASH_OFFSET] > probs[rows, rows - SLASH_OFFSET - 1]
    assert slash.float().mean() > 0.9


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="no pattern for method.*nope.*valid: vertical_slash"):
        pattern_masks(methods=("nope",))
    with pytest.raises(ValueError, match=r"target sparsities must lie in \(0, 1\)"):
        pattern_masks((0.5, 1.0))


def test_a_given_head_is_used_as_is(masks, example):
    """``qkv`` (a captured head) gives the toy example's masks when handed the toy head itself, and a
    head of another size and scale changes them."""
    given = pattern_masks(TARGETS, qkv=example, scale=SCALE)
    for a, b in zip(masks, given):
        assert (a.method, a.target_sparsity, a.params) == (b.method, b.target_sparsity, b.params)
        assert np.array_equal(a.mask, b.mask)
    q, k, v = (t[: 512 + STEPS, :, :64] for t in example)  # a head of dimension 64: scale 1/8 by default
    small = pattern_masks((0.7,), methods=("block_sparse", "quest"), qkv=(q, k, v))
    assert [m.mask.shape for m in small] == [(512, 512), (STEPS, 512 + STEPS)]


def test_a_given_head_is_checked():
    q, k, v = toy_qkv(400)
    with pytest.raises(ValueError, match=r"one head's \[n, 1, D\].*\(400, 1, 128\), \(399, 1, 128\)"):
        pattern_masks(qkv=(q, k[1:], v))
    with pytest.raises(ValueError, match="prompt must have >= 256 tokens.*tokens=236"):
        pattern_masks(qkv=(q[:300], k[:300], v[:300]))
