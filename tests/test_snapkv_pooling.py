"""SnapKV / Ada-SnapKV pool importance over the candidates only, as upstream SnapKV does.

Upstream (FasterDecoding/SnapKV, ``snapkv_utils.py``) sums the window's softmax over the keys before
the window, ``attn[..., -w:, :-w]``, avg-pools that prefix (``padding=kernel_size // 2``, zero
padded), keeps its top ``capacity - w`` and the window. Pooling over all T keys instead lets the
force-kept local window, which draws most of the window's attention, lift the last
``kernel_size // 2`` candidates before it. The reference below follows upstream line by line; our
one deviation (kept here) is one selection per kv head, the window's scores reduced over its GQA
group (SnapKV: summed over the window, averaged over the group; Ada-SnapKV: max over both).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparse_frontier.attention import get_method_class

T, W, KERNEL, CAP, D = 400, 32, 7, 120, 64
SCALE = D**-0.5


def banded_qkv(hq, hkv, seed=0):
    """Random q/k/v whose last W keys echo the window's queries: a heavy local band."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(T, h, D, generator=g) for h in (hq, hkv, hkv))
    k[-W:] += 1.5 * q[-W:].view(W, hkv, hq // hkv, D).mean(2)
    return q, k, v


def upstream_selection(q, k, reduce, pool_all=False):
    """Kept key indices per kv head, upstream's way (``pool_all``: pool over all T keys, the old way)."""
    hq, hkv = q.shape[1], k.shape[1]
    keys = k.repeat_interleave(hq // hkv, 1)  # upstream's repeat_kv
    attn = torch.einsum("whd,thd->htw", q[-W:], keys).transpose(1, 2) * SCALE  # [Hq, W, T]
    causal = torch.ones(W, W, dtype=torch.bool).tril()
    attn[:, :, -W:] = attn[:, :, -W:].masked_fill(~causal, torch.finfo(attn.dtype).min)
    attn = attn.softmax(-1)
    grouped = attn.view(hkv, hq // hkv, W, T)
    if reduce == "sum":
        scores = grouped.sum(2).mean(1)
    else:
        scores = grouped.amax(2).amax(1)
    if not pool_all:
        scores = scores[:, :-W]
    pooled = F.avg_pool1d(scores[:, None], KERNEL, padding=KERNEL // 2, stride=1)[:, 0][:, : T - W]
    top = pooled.topk(CAP - W, -1).indices
    return [sorted(row.tolist() + list(range(T - W, T))) for row in top]


METHODS = {  # Ada-SnapKV with a floor of its whole capacity: each head keeps its own top, as SnapKV
    "snapkv": ({}, "sum"),
    "ada_snapkv": ({"min_head_capacity_ratio": 1.0}, "max"),
}


@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2)])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_selection_pools_the_prefix_only_as_upstream(name, hq, hkv):
    extra, reduce = METHODS[name]
    q, k, v = banded_qkv(hq, hkv)
    method = get_method_class(name).from_params(
        {
            "token_capacity": CAP,
            "approximation_window": W,
            "local_window": W,
            "kernel_size": KERNEL,
            "prefix_tokens": 0,
            **extra,
        }
    )
    got = [row.tolist() for row in method.compress_kv(q, k, v, layer_index=0, scale=SCALE).indices]
    want = upstream_selection(q, k, reduce)
    assert got == want
    # the band is heavy enough that pooling it in would keep the candidates just before it instead
    old = upstream_selection(q, k, reduce, pool_all=True)
    edge = set(range(T - W - KERNEL // 2, T - W))
    for head_old, head_new in zip(old, want):
        assert edge <= set(head_old) and not edge <= set(head_new)


def test_pooling_ignores_the_local_window_whatever_its_scores():
    """Candidates' pooled scores do not depend on the raw scores of the force-kept local window."""
    from sparse_frontier.attention.snapkv import importance

    q, k, _ = banded_qkv(4, 2)
    local = 48  # larger than the approximation window: the candidates end before the window starts
    s = importance(q, k, SCALE, W, KERNEL, "sum", local)
    raw = importance(q, k, SCALE, W, 1, "sum", local)  # kernel 1: the raw window scores
    want = F.avg_pool1d(raw[:, None, : T - local], KERNEL, padding=KERNEL // 2, stride=1)[:, 0]
    torch.testing.assert_close(s[:, : T - local], want)
    torch.testing.assert_close(s[:, T - local :], raw[:, T - local :])
