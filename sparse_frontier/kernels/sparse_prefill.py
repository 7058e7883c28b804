"""Triton sparse causal prefill over key blocks plus key columns (Vertical-Slash, FlexPrefill, Block-Sparse).

One program computes one query block (``BLOCK`` rows) of one query head with an online softmax
(float32 accumulators, exp2). The kept keys of a query block are

- key *blocks* of ``BLOCK`` keys, given either as block diagonals shared by every query block of a
  head (``diag [Hq, NB]``: key block = query block - d; Vertical-Slash / FlexPrefill slashes) or as
  an explicit per-query-block list (``blocks [Hq, NQB, K]``; Block-Sparse);
- key *columns* (``cols [Hq, C]`` sorted ascending, padded with a value >= T): every kept column
  <= the last row of the block, skipped where a kept block already covers it (verticals).

Causality is applied element-wise. GQA: query head ``h`` reads kv head ``h // (Hq // Hkv)``; K/V
are never repeated. Every output row is written (each row keeps at least its diagonal block).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _online_step(q, k, v, valid, m_i, l_i, acc, MASKED: tl.constexpr):
    # q is pre-scaled by softmax_scale * log2(e), so exp2 gives the softmax numerator
    s = tl.dot(q, tl.trans(k))
    if MASKED:
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:  # every pair valid: no -inf rows possible once a full block was seen
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = m_new
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _start_rows(Q, rows, row_ok, h, stride_qt, stride_qh, qk_scale, ROWS: tl.constexpr, D: tl.constexpr):
    """A program's query rows of head h, pre-scaled for exp2, and its empty online-softmax state."""
    dims = tl.arange(0, D)
    q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + dims[None, :], mask=row_ok[:, None], other=0.0)
    q = (q * qk_scale).to(q.dtype)
    m_i = tl.full([ROWS], float("-inf"), tl.float32)
    l_i = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, D], tl.float32)
    return q, m_i, l_i, acc


@triton.jit
def _store_rows(O, acc, l_i, rows, row_ok, h, stride_ot, stride_oh, D: tl.constexpr):
    """Normalise and write the rows below T (a row past T may have kept nothing: no 0 / 0)."""
    dims = tl.arange(0, D)
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        O + rows[:, None] * stride_ot + h * stride_oh + dims[None, :], out.to(O.dtype.element_ty), mask=row_ok[:, None]
    )


@triton.jit
def _sparse_prefill_kernel(
    Q,
    K,
    V,
    O,
    DIAG,
    DIAG_VALID,
    COVER,
    BLOCKS,
    BLOCK_CNT,
    COLS,
    COL_CNT,
    T,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_ot,
    stride_oh,
    NB,
    MAXK,
    MAXC,
    GROUP: tl.constexpr,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    COL_BLOCK: tl.constexpr,
    KCHUNKS: tl.constexpr,
    DIAG_MODE: tl.constexpr,
    HAS_COLS: tl.constexpr,
):
    # Query blocks in reverse order: the longest rows (most kept blocks) start first.
    qb = tl.num_programs(0) - 1 - tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP
    rows = qb * BLOCK + tl.arange(0, BLOCK)
    dims = tl.arange(0, D)
    row_ok = rows < T
    q, m_i, l_i, acc = _start_rows(Q, rows, row_ok, h, stride_qt, stride_qh, qk_scale, BLOCK, D)
    kbase = K + kvh * stride_kh
    vbase = V + kvh * stride_kh
    offs = tl.arange(0, BLOCK)

    if DIAG_MODE:
        # Diagonals are sorted with 0 (the diagonal block) first; DIAG_VALID counts those <= qb, so
        # every off-diagonal block here is full and strictly below the diagonal: no mask, and a
        # branch-free loop the compiler can pipeline.
        # KCHUNKS > 1: that many kept diagonals per step, their key blocks gathered into one wider
        # tile (fewer online-softmax rescales per key; the leftover blocks go one at a time).
        n_valid = tl.load(DIAG_VALID + h * NB + qb)
        first = 1
        if KCHUNKS > 1:
            chunk = tl.arange(0, KCHUNKS)
            n_full = (n_valid - 1) // KCHUNKS * KCHUNKS
            for i in range(1, 1 + n_full, KCHUNKS):
                kb = qb - tl.load(DIAG + h * NB + i + chunk)
                keys = tl.reshape(kb[:, None] * BLOCK + offs[None, :], [KCHUNKS * BLOCK])
                k = tl.load(kbase + keys[:, None] * stride_kt + dims[None, :])
                v = tl.load(vbase + keys[:, None] * stride_kt + dims[None, :])
                m_i, l_i, acc = _online_step(q, k, v, rows, m_i, l_i, acc, MASKED=False)
            first = 1 + n_full
        for i in range(first, n_valid):
            kb = qb - tl.load(DIAG + h * NB + i)
            keys = kb * BLOCK + offs
            k = tl.load(kbase + keys[:, None] * stride_kt + dims[None, :])
            v = tl.load(vbase + keys[:, None] * stride_kt + dims[None, :])
            m_i, l_i, acc = _online_step(q, k, v, rows, m_i, l_i, acc, MASKED=False)
        keys = qb * BLOCK + offs
        key_ok = keys < T
        k = tl.load(kbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
        v = tl.load(vbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
        valid = (keys[None, :] <= rows[:, None]) & key_ok[None, :]
        m_i, l_i, acc = _online_step(q, k, v, valid, m_i, l_i, acc, MASKED=True)
    else:
        # KCHUNKS listed key blocks per step: small blocks (16) gathered into one wider tile.
        # (Block ids are loaded once per chunk and expanded to keys with a reshape: a load with
        # repeated addresses (one per key) miscompiled on Triton 3.6 / sm_90, rows 8-15 wrong.)
        n_blocks = tl.load(BLOCK_CNT + h * NB + qb)
        chunk = tl.arange(0, KCHUNKS)
        for i in range(0, n_blocks, KCHUNKS):
            kb = tl.load(BLOCKS + (h * NB + qb) * MAXK + i + chunk, mask=i + chunk < n_blocks, other=-1)
            keys = tl.reshape(kb[:, None] * BLOCK + offs[None, :], [KCHUNKS * BLOCK])
            in_list = tl.reshape((kb >= 0)[:, None] & (offs >= 0)[None, :], [KCHUNKS * BLOCK])
            key_ok = in_list & (keys < T)
            k = tl.load(kbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
            v = tl.load(vbase + keys[:, None] * stride_kt + dims[None, :], mask=key_ok[:, None], other=0.0)
            valid = (keys[None, :] <= rows[:, None]) & key_ok[None, :]
            m_i, l_i, acc = _online_step(q, k, v, valid, m_i, l_i, acc, MASKED=True)

    if HAS_COLS:
        n_cols = tl.load(COL_CNT + h * NB + qb)
        for c0 in range(0, n_cols, COL_BLOCK):
            coffs = c0 + tl.arange(0, COL_BLOCK)
            in_list = coffs < n_cols
            cols = tl.load(COLS + h * MAXC + coffs, mask=in_list, other=0)
            # a column inside a kept block diagonal is already computed there
            d = qb - cols // BLOCK
            covered = tl.load(COVER + h * NB + d, mask=in_list & (d >= 0) & (d < NB), other=0) != 0
            take = in_list & (cols < T) & (~covered)
            k = tl.load(kbase + cols[:, None] * stride_kt + dims[None, :], mask=take[:, None], other=0.0)
            v = tl.load(vbase + cols[:, None] * stride_kt + dims[None, :], mask=take[:, None], other=0.0)
            valid = take[None, :] & (cols[None, :] <= rows[:, None])
            m_i, l_i, acc = _online_step(q, k, v, valid, m_i, l_i, acc, MASKED=True)

    _store_rows(O, acc, l_i, rows, row_ok, h, stride_ot, stride_oh, D)


def _check(query, key, value):
    if query.dim() != 3 or key.shape != value.shape or key.shape[0] != query.shape[0]:
        raise ValueError(
            f"expected query [T, Hq, D] and key/value [T, Hkv, D]; got {tuple(query.shape)}, "
            f"{tuple(key.shape)}, {tuple(value.shape)}"
        )
    hq, hkv, d = query.shape[1], key.shape[1], query.shape[2]
    if hq % hkv:
        raise ValueError(f"query heads {hq} must be a multiple of kv heads {hkv}")
    if d not in (16, 32, 64, 128, 256):
        raise ValueError(f"head dim {d} is not supported; valid: 16, 32, 64, 128, 256")
    return hq // hkv


def sparse_prefill(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    block: int,
    *,
    diag: torch.Tensor | None = None,
    cover: torch.Tensor | None = None,
    blocks: torch.Tensor | None = None,
    block_count: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
    col_count: torch.Tensor | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    kchunks: int | None = None,
) -> torch.Tensor:
    """Causal attention over kept key blocks (+ columns); returns ``[T, Hq, D]`` in query's dtype.

    Give either ``diag [Hq, NB]`` (sorted kept block diagonals, padded with NB; diagonal 0 must be
    kept, it is computed unconditionally) + ``cover [Hq, NB]`` (bool/int8: diagonal d kept) or ``blocks [Hq, NB, K]`` + ``block_count [Hq, NB]``;
    optionally ``cols [Hq, C]`` (sorted, padded with >= T) + ``col_count [Hq, NB]`` (columns <= the
    block's last row, i.e. ``searchsorted``). NB = ceil(T / block). Integer tensors are int32.
    ``num_warps`` / ``num_stages`` / ``kchunks`` (listed blocks, or kept diagonals, gathered per
    step; default 64 // block for lists, 1 for diagonals) override the tuned defaults (benchmarks
    sweep them).
    """
    group = _check(query, key, value)
    query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
    t, hq, d = query.shape
    nb = triton.cdiv(t, block)
    diag_mode = diag is not None
    if diag_mode == (blocks is not None):
        raise ValueError("give exactly one of diag (block diagonals) or blocks (per-query-block list)")
    has_cols = cols is not None
    dev = query.device
    dummy = torch.zeros(1, dtype=torch.int32, device=dev)
    if diag_mode:
        cover_i8 = cover.to(torch.int8).contiguous()
        diag = diag.to(torch.int32).contiguous()
        # per (head, query block): how many kept diagonals exist there (those <= the block index)
        diag_valid = torch.searchsorted(
            diag, torch.arange(nb, device=dev, dtype=torch.int32).expand(hq, nb).contiguous(), right=True
        )
        diag_valid = diag_valid.to(torch.int32)
        blocks_, block_count_, maxk = dummy, dummy, 1
    else:
        cover_i8 = (
            cover.to(torch.int8).contiguous()
            if cover is not None
            else torch.zeros(hq, nb, dtype=torch.int8, device=dev)
        )
        blocks_, block_count_ = blocks.to(torch.int32).contiguous(), block_count.to(torch.int32).contiguous()
        maxk = blocks_.shape[-1]
        diag, diag_valid = dummy, dummy
    if has_cols:
        cols_, col_count_ = cols.to(torch.int32).contiguous(), col_count.to(torch.int32).contiguous()
        maxc = cols_.shape[-1]
    else:
        cols_, col_count_, maxc = dummy, dummy, 1
    out = torch.empty_like(query)
    qk_scale = scale * 1.4426950408889634  # log2(e): the kernel uses exp2
    _sparse_prefill_kernel[(nb, hq)](
        query,
        key,
        value,
        out,
        diag,
        diag_valid,
        cover_i8,
        blocks_,
        block_count_,
        cols_,
        col_count_,
        t,
        qk_scale,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        out.stride(0),
        out.stride(1),
        nb,
        maxk,
        maxc,
        GROUP=group,
        D=d,
        BLOCK=block,
        COL_BLOCK=64,
        KCHUNKS=kchunks or (1 if diag_mode else max(1, 64 // block)),
        DIAG_MODE=diag_mode,
        HAS_COLS=has_cols,
        num_warps=num_warps or (4 if block <= 64 else 8),
        num_stages=num_stages or 3,
    )
    return out
