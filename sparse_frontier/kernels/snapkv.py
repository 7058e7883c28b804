"""SnapKV / Ada-SnapKV key importance: softmax attention of the last W queries, reduced per key.

Two passes, never materialising the ``[Hq, W, T]`` probabilities (3.7 GB at 128k for Qwen-7B):
1. ``_window_lse``: per window query, the log-sum-exp of its causal logits (online, log2 domain);
2. ``_window_scores``: per key block, ``exp2(logit - lse)`` reduced over the window queries and the
   GQA group: sum over the window and mean over the group (SnapKV), or max over both (Ada-SnapKV).
Output ``[Hkv, T]`` float32. Query ``[W, Hq, D]`` are the window's queries (positions T-W .. T-1),
key ``[T, Hkv, D]``; GQA without repeating K.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparse_frontier.kernels.estimation import _dot
from sparse_frontier.kernels.torch_paths import window_scores_torch  # noqa: F401  (this module's name too)


@triton.jit
def _window_lse(
    Q,
    K,
    LSE,
    T,
    W,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    HQ: tl.constexpr,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    IEEE: tl.constexpr,
):
    mb = tl.program_id(0)
    h = tl.program_id(1)
    rows = mb * BM + tl.arange(0, BM)
    row_ok = rows < W
    pos = T - W + rows
    dims = tl.arange(0, D)
    q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + dims[None, :], mask=row_ok[:, None], other=0.0)
    q = (q * qk_scale).to(q.dtype)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    end = tl.minimum(T - W + mb * BM + BM, T)
    for n0 in range(0, end, BN):
        keys = n0 + tl.arange(0, BN)
        k = tl.load(
            K + keys[:, None] * stride_kt + (h // GROUP) * stride_kh + dims[None, :],
            mask=(keys < T)[:, None],
            other=0.0,
        )
        s = _dot(q, tl.trans(k), IEEE)
        s = tl.where(keys[None, :] <= pos[:, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp2(m_i - m_safe) + tl.sum(tl.exp2(s - m_safe[:, None]), 1)
        m_i = m_new
    tl.store(LSE + h * W + rows, m_i + tl.log2(l_i), mask=row_ok)


@triton.jit
def _window_scores(
    Q,
    K,
    LSE,
    OUT,
    T,
    W,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    USE_MAX: tl.constexpr,
    IEEE: tl.constexpr,
):
    nb = tl.program_id(0)
    kvh = tl.program_id(1)
    keys = nb * BN + tl.arange(0, BN)
    key_ok = keys < T
    dims = tl.arange(0, D)
    k = tl.load(K + keys[:, None] * stride_kt + kvh * stride_kh + dims[None, :], mask=key_ok[:, None], other=0.0)
    acc = tl.zeros([BN], tl.float32)
    first = tl.maximum(nb * BN - (T - W), 0) // BM * BM  # window rows that can see this key block
    for g in tl.static_range(GROUP):
        h = kvh * GROUP + g
        for m0 in range(first, W, BM):
            rows = m0 + tl.arange(0, BM)
            row_ok = rows < W
            q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + dims[None, :], mask=row_ok[:, None], other=0.0)
            q = (q * qk_scale).to(q.dtype)
            lse = tl.load(LSE + h * W + rows, mask=row_ok, other=0.0)
            s = _dot(q, tl.trans(k), IEEE)
            ok = row_ok[:, None] & key_ok[None, :] & (keys[None, :] <= (T - W + rows)[:, None])
            p = tl.where(ok, tl.exp2(s - lse[:, None]), 0.0)
            if USE_MAX:
                acc = tl.maximum(acc, tl.max(p, 0))
            else:
                acc += tl.sum(p, 0)
    if not USE_MAX:
        acc = acc / GROUP
    tl.store(OUT + kvh * T + keys, acc, mask=key_ok)


def window_scores(q_win: torch.Tensor, key: torch.Tensor, scale: float, reduce: str) -> torch.Tensor:
    """Importance ``[Hkv, T]``: ``reduce="sum"`` (SnapKV) or ``"max"`` (Ada-SnapKV)."""
    if reduce not in ("sum", "max"):
        raise ValueError(f"reduce={reduce!r}; valid: sum, max")
    w, hq, d = q_win.shape
    t, hkv = key.shape[:2]
    q_win, key = q_win.contiguous(), key.contiguous()
    lse = torch.empty(hq, w, dtype=torch.float32, device=key.device)
    out = torch.empty(hkv, t, dtype=torch.float32, device=key.device)
    qk_scale = scale * 1.4426950408889634
    bm, bn = 64, 64
    # float32 inputs: full-precision products as the reference; TF32 noise flips near-tied keys in or out
    ieee = key.dtype == torch.float32
    _window_lse[(triton.cdiv(w, bm), hq)](
        q_win,
        key,
        lse,
        t,
        w,
        qk_scale,
        q_win.stride(0),
        q_win.stride(1),
        key.stride(0),
        key.stride(1),
        HQ=hq,
        GROUP=hq // hkv,
        D=d,
        BM=bm,
        BN=bn,
        IEEE=ieee,
    )
    _window_scores[(triton.cdiv(t, bn), hkv)](
        q_win,
        key,
        lse,
        out,
        t,
        w,
        qk_scale,
        q_win.stride(0),
        q_win.stride(1),
        key.stride(0),
        key.stride(1),
        GROUP=hq // hkv,
        D=d,
        BM=bm,
        BN=bn,
        USE_MAX=reduce == "max",
        IEEE=ieee,
    )
    return out
