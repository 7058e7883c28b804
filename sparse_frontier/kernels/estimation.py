"""Vertical-Slash / FlexPrefill estimation in Triton: the last ``n`` queries' causal softmax against
all keys, reduced to column sums (verticals) and diagonal sums (slashes) without materialising the
logits or the probabilities as torch tensors.

Reference: :func:`sparse_frontier.attention.vertical_slash.estimate_scores` (float32 torch: logits,
softmax, column sums, strided diagonal sums), which is memory-bound on ``[G, n, T]`` float32 tensors
written and read about six times per kv group. Here, per query head:

1. ``_row_stats``: each estimation row's max and sum of exponentials (online softmax over key blocks,
   split along the keys so that every SM has work, the splits merged in log-sum-exp);
2. ``_probs``: per key block, the normalised probabilities of all ``n`` rows: their column sums are
   the vertical scores (no atomics: a program owns its key block), and each probability is stored at
   ``diag[i, o]`` with ``o`` = query position - key position, so row ``i`` of ``diag`` is that
   query's probabilities by offset (written once, coalesced along the offsets);
3. ``_diag_sums``: slash score of offset ``o`` = the sum over rows of ``diag[:, o]`` where the key
   exists (``o <= T - n + i``): a contiguous column sum.

Products are bf16/fp16 x bf16/fp16 in tensor cores with float32 accumulation (exact products, as the
reference's TF32 matmul); exponentials are base 2. Scores match the reference to float32 rounding.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """float32 inputs: full-precision products (the reference's float32 matmul), not TF32."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _row_stats(
    Q,
    K,
    M,
    L,
    T,
    N,
    SPAN,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    qk_scale,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    IEEE: tl.constexpr,
):
    """Max and sum of exponentials of each row over the keys of split ``program_id(2)`` (SPAN keys)."""
    h = tl.program_id(1)
    split = tl.program_id(2)
    hq = tl.num_programs(1)
    rows = tl.program_id(0) * BM + tl.arange(0, BM)  # estimation rows (query T - N + row)
    dims = tl.arange(0, D)
    qpos = T - N + rows
    ok_q = rows < N
    q = tl.load(Q + qpos[:, None] * stride_qt + h * stride_qh + dims[None, :], mask=ok_q[:, None], other=0.0)
    kv = h // GROUP
    m = tl.full([BM], float("-inf"), tl.float32)
    l = tl.zeros([BM], tl.float32)
    for k0 in range(split * SPAN, tl.minimum(split * SPAN + SPAN, T), BN):
        keys = k0 + tl.arange(0, BN)
        k = tl.load(K + keys[None, :] * stride_kt + kv * stride_kh + dims[:, None], mask=keys[None, :] < T, other=0.0)
        s = _dot(q, k, IEEE) * qk_scale
        s = tl.where((keys[None, :] <= qpos[:, None]) & (keys[None, :] < T), s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, 1))
        base = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows that saw no key yet stay at l = 0
        l = l * tl.exp2(m - base) + tl.sum(tl.exp2(s - base[:, None]), 1)
        m = m_new
    out = (split * hq + h) * N + rows
    tl.store(M + out, m, mask=ok_q)
    tl.store(L + out, l, mask=ok_q)


@triton.jit
def _probs(
    Q,
    K,
    M,
    L,
    VERT,
    DIAG,
    T,
    N,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    qk_scale,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    IEEE: tl.constexpr,
):
    h = tl.program_id(1)
    # keys in descending order along the tile, so that offsets (query - key) ascend along it and a
    # row's probabilities are stored contiguously (ascending stores coalesce; descending ones did not)
    k0 = tl.program_id(0) * BN
    cols = tl.arange(0, BN)
    keys = k0 + (BN - 1) - cols
    dims = tl.arange(0, D)
    ok_k = keys < T
    kv = h // GROUP
    k = tl.load(K + keys[None, :] * stride_kt + kv * stride_kh + dims[:, None], mask=ok_k[None, :], other=0.0)
    vert = tl.zeros([BN], tl.float32)
    for r0 in range(0, N, BM):
        rows = r0 + tl.arange(0, BM)
        ok_q = rows < N
        qpos = T - N + rows
        q = tl.load(Q + qpos[:, None] * stride_qt + h * stride_qh + dims[None, :], mask=ok_q[:, None], other=0.0)
        m = tl.load(M + h * N + rows, mask=ok_q, other=0.0)
        inv_l = 1.0 / tl.load(L + h * N + rows, mask=ok_q, other=1.0)
        s = _dot(q, k, IEEE) * qk_scale
        seen = (keys[None, :] <= qpos[:, None]) & ok_k[None, :] & ok_q[:, None]
        p = tl.where(seen, tl.exp2(s - m[:, None]) * inv_l[:, None], 0.0)
        vert += tl.sum(p, 0)
        # offset of column c = qpos - k0 - (BN - 1) + c: written as row base + arange so the compiler
        # sees each row's stores as contiguous
        start = (rows.to(tl.int64) * T + (qpos - k0 - (BN - 1)))[:, None]
        tl.store(DIAG + h.to(tl.int64) * N * T + start + cols[None, :], p, mask=seen)
    tl.store(VERT + h * T + keys, vert, mask=ok_k)


@triton.jit
def _diag_sums(DIAG, SLASH, T, N, BR: tl.constexpr, BO: tl.constexpr):
    h = tl.program_id(1)
    offs = tl.program_id(0) * BO + tl.arange(0, BO)
    acc = tl.zeros([BO], tl.float32)
    for r0 in range(0, N, BR):
        rows = r0 + tl.arange(0, BR)
        there = (rows[:, None] < N) & (offs[None, :] <= T - N + rows[:, None])  # the key exists
        x = tl.load(
            DIAG + h.to(tl.int64) * N * T + rows[:, None].to(tl.int64) * T + offs[None, :], mask=there, other=0.0
        )
        acc += tl.sum(x, 0)
    tl.store(SLASH + h * T + offs, acc, mask=offs < T)


def estimate_scores_triton(
    query: torch.Tensor, key: torch.Tensor, n: int, scale: float, span: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical scores ``[Hq, T]`` and slash scores ``[Hq, T]`` (by offset) of the last ``n`` queries,
    as :func:`~sparse_frontier.attention.vertical_slash.estimate_scores`. ``query [T, Hq, D]``,
    ``key [T, Hkv, D]``. One kv group at a time: its by-offset buffer ``[G, n, T]`` float32 is the
    reference's own working set. ``span``: keys per split of the row statistics (a multiple of 64)."""
    t, hq, d = query.shape
    hkv = key.shape[1]
    group = hq // hkv
    n = min(n, t)
    vert = torch.empty(hq, t, device=query.device, dtype=torch.float32)
    slash = torch.empty_like(vert)
    splits = triton.cdiv(t, span)
    parts = torch.empty(2, splits, hq, n, device=query.device, dtype=torch.float32)
    diag = torch.empty(group, n, t, device=query.device, dtype=torch.float32)
    bm, bn, bo = 64, 64, 128
    common = dict(GROUP=group, D=d, BM=bm, BN=bn, IEEE=query.dtype == torch.float32, num_warps=4)
    qk_scale = scale * LOG2E
    _row_stats[(triton.cdiv(n, bm), hq, splits)](
        query,
        key,
        parts[0],
        parts[1],
        t,
        n,
        span,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        qk_scale,
        **common,
    )
    m = parts[0].amax(0)  # a split's max is -inf where a row sees none of its keys (exp2 -> 0 below)
    stats = torch.stack([m, (parts[1] * torch.exp2(parts[0] - m)).sum(0)])
    for kv in range(hkv):  # heads kv*G .. kv*G+G-1 read kv head kv: offsets make it head 0 of the slices
        heads = slice(kv * group, (kv + 1) * group)
        q, k = query[:, heads], key[:, kv : kv + 1]
        _probs[(triton.cdiv(t, bn), group)](
            q,
            k,
            stats[0, heads],
            stats[1, heads],
            vert[heads],
            diag,
            t,
            n,
            q.stride(0),
            q.stride(1),
            k.stride(0),
            k.stride(1),
            qk_scale,
            **common,
        )
        _diag_sums[(triton.cdiv(t, bo), group)](diag, slash[heads], t, n, BR=32, BO=bo, num_warps=4)
    return vert, slash
