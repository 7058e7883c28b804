"""Quest decode: page scoring, page selection and sparse paged decode (split over pages).

Layout: query ``[B, Hq, D]``, cache ``key/value [B, Hkv, S, D]`` (any strides with unit last dim),
``lengths [B, Hkv]`` valid tokens per head. Page summaries ``pmin/pmax [B, Hkv, P, D]`` (element-wise
key min/max per page; a paged system keeps them up to date as tokens arrive, see
:func:`page_summaries`). With ``share`` the query heads of a GQA group sum their page scores and
read the same pages, so one program loads each selected K/V page once for the whole group.
Everything stays on the device: scores -> ``topk`` -> page ids -> kernel, no host syncs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sparse_frontier.kernels.topk import order_keys, top_k_mask
from sparse_frontier.kernels.torch_paths import (  # noqa: F401  (page_summaries: this module's name too)
    page_scores_torch,
    page_summaries,
    select_pages_torch,
)


@triton.jit
def _page_score_kernel(
    Q,
    PMIN,
    PMAX,
    NPAGES,
    OUT,
    BLOCK_TABLE,
    P,
    stride_qb,
    stride_qh,
    stride_pb,
    stride_ph,
    stride_pp,
    stride_ob,
    stride_oh,
    stride_bt,
    HKV: tl.constexpr,
    GROUP: tl.constexpr,
    GP: tl.constexpr,
    SHARE: tl.constexpr,
    D: tl.constexpr,
    BLOCK_P: tl.constexpr,
    TILES: tl.constexpr,
    IEEE: tl.constexpr,
    PAGED: tl.constexpr,
):
    # PAGED: PMIN/PMAX are pools [num_blocks, Hkv, D] indexed like vLLM's cache (stride_pp per block),
    # page p of request b is block BLOCK_TABLE[b, p].
    # sum_d max(q_d min_d, q_d max_d) = max . relu(q) + min . (q - relu(q)): two tensor-core products
    # for all query heads of the group at once. A program scores TILES tiles of BLOCK_P pages in a
    # loop, so the summary loads of the next tile are in flight while this one is multiplied.
    pid_p = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HKV
    kvh = bh % HKV
    dims = tl.arange(0, D)
    heads = tl.arange(0, GP)
    h_ok = heads < GROUP
    n_valid = tl.load(NPAGES + b * HKV + kvh)
    q = tl.load(
        Q + b * stride_qb + (kvh * GROUP + heads)[None, :] * stride_qh + dims[:, None], mask=h_ok[None, :], other=0.0
    )
    q_pos = tl.maximum(q, 0.0).to(PMIN.dtype.element_ty)
    q_neg = tl.minimum(q, 0.0).to(PMIN.dtype.element_ty)
    for t in range(TILES):
        pages = (pid_p * TILES + t) * BLOCK_P + tl.arange(0, BLOCK_P)
        ok = pages < n_valid
        if PAGED:
            blk = tl.load(BLOCK_TABLE + b * stride_bt + pages, mask=ok, other=0).to(tl.int64)
            off = kvh * stride_ph + blk[:, None] * stride_pp + dims[None, :]
        else:
            off = b * stride_pb + kvh * stride_ph + pages[:, None] * stride_pp + dims[None, :]
        mn = tl.load(PMIN + off, mask=ok[:, None], other=0.0)
        mx = tl.load(PMAX + off, mask=ok[:, None], other=0.0)
        if IEEE:
            s = tl.dot(mx, q_pos, input_precision="ieee") + tl.dot(mn, q_neg, input_precision="ieee")  # [BLOCK_P, GP]
        else:
            s = tl.dot(mx, q_pos) + tl.dot(mn, q_neg)
        if SHARE:
            total = tl.sum(tl.where(h_ok[None, :], s, 0.0), 1)
            tl.store(OUT + b * stride_ob + kvh * stride_oh + pages, tl.where(ok, total, float("-inf")), mask=pages < P)
        else:
            dst = OUT + b * stride_ob + (kvh * GROUP + heads)[None, :] * stride_oh + pages[:, None]
            tl.store(dst, tl.where(ok[:, None], s, float("-inf")), mask=(pages < P)[:, None] & h_ok[None, :])


@triton.jit
def _sparse_decode_kernel(
    Q,
    K,
    V,
    PAGES,
    LENS,
    M_OUT,
    L_OUT,
    ACC_OUT,
    BLOCK_TABLE,
    KEPT,
    START,
    NSEL,
    PER_SPLIT,
    NSPLIT,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_kh,
    stride_ks,
    stride_vb,
    stride_vh,
    stride_vs,
    stride_bt,
    qk_scale,
    HSEL: tl.constexpr,
    HQ: tl.constexpr,
    GROUP: tl.constexpr,
    HP: tl.constexpr,
    HPP: tl.constexpr,
    D: tl.constexpr,
    PAGE: tl.constexpr,
    TILE: tl.constexpr,
    PAGED: tl.constexpr,
    GAP: tl.constexpr,
):
    # GAP (a compacted cache): tokens [KEPT[b, kvh], START[b]) of a head are not valid.
    # PAGED: K/V are vLLM cache blocks [num_blocks, PAGE, Hkv, D] (stride_kb = per block) and page p of
    # request b lives in block BLOCK_TABLE[b, p]; else K/V are [B, Hkv, S, D] (stride_kb = per request).
    split = tl.program_id(0)
    bs = tl.program_id(1)
    b = bs // HSEL
    hsel = bs % HSEL
    qh = hsel * HP + tl.arange(0, HPP)  # query heads served by this program
    h_ok = tl.arange(0, HPP) < HP
    kvh = (hsel * HP) // GROUP
    dims = tl.arange(0, D)
    q = tl.load(Q + b * stride_qb + qh[:, None] * stride_qh + dims[None, :], mask=h_ok[:, None], other=0.0)
    q = (q * qk_scale).to(q.dtype)
    length = tl.load(LENS + b * (HQ // GROUP) + kvh)
    if GAP:
        kept = tl.load(KEPT + b * (HQ // GROUP) + kvh)
        start_tok = tl.load(START + b)
    m_i = tl.full([HPP], float("-inf"), tl.float32)
    l_i = tl.zeros([HPP], tl.float32)
    acc = tl.zeros([HPP, D], tl.float32)
    slot = tl.arange(0, TILE) // PAGE
    within = tl.arange(0, TILE) % PAGE
    start = split * PER_SPLIT
    stop = tl.minimum(start + PER_SPLIT, NSEL)
    if PAGED:
        kb = K + kvh * stride_kh
        vb = V + kvh * stride_vh
    else:
        kb = K + b * stride_kb + kvh * stride_kh
        vb = V + b * stride_vb + kvh * stride_vh
    for p0 in range(start, stop, TILE // PAGE):
        idx = p0 + slot
        page = tl.load(PAGES + (b * HSEL + hsel) * NSEL + idx, mask=idx < stop, other=-1)
        tok = page * PAGE + within
        ok = (page >= 0) & (tok < length)
        if GAP:
            ok = ok & ((tok < kept) | (tok >= start_tok))
        if PAGED:
            blk = tl.load(BLOCK_TABLE + b * stride_bt + page, mask=ok, other=0).to(tl.int64)
            k_off = blk * stride_kb + within * stride_ks
            v_off = blk * stride_vb + within * stride_vs
        else:
            k_off = tok * stride_ks
            v_off = tok * stride_vs
        k = tl.load(kb + k_off[:, None] + dims[None, :], mask=ok[:, None], other=0.0)
        v = tl.load(vb + v_off[:, None] + dims[None, :], mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k))
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    row = (b * HQ + qh) * NSPLIT + split
    tl.store(M_OUT + row, m_i, mask=h_ok)
    tl.store(L_OUT + row, l_i, mask=h_ok)
    tl.store(ACC_OUT + row[:, None] * D + dims[None, :], acc, mask=h_ok[:, None])


@triton.jit
def _select_kernel(SCORES, CURRENT, KROW, OUT, P, KOUT, stride_s, stride_o, BLOCK_P: tl.constexpr):
    """Top ``KOUT`` pages of one row (the current page forced in), ascending page ids, -1 padded.

    Exact (:func:`sparse_frontier.kernels.topk.top_k_mask`; ties in page order). One program per
    (request, head) row.
    """
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK_P)
    inside = offs < P
    s = tl.load(SCORES + row * stride_s + offs, mask=inside, other=float("-inf"))
    cur = tl.load(CURRENT + row)
    s = tl.where(offs == cur, float("inf"), s)
    valid = inside & (s > float("-inf"))
    key = order_keys(s, valid)
    n_valid = tl.sum(valid.to(tl.int32), 0)
    k = tl.minimum(tl.load(KROW + row), n_valid)  # this row's budget (<= KOUT, the output width)
    chosen = top_k_mask(key, valid, k)
    pos = tl.cumsum(chosen.to(tl.int32), 0) - 1
    tl.store(OUT + row * stride_o + pos, offs.to(tl.int32), mask=chosen)
    tl.store(OUT + row * stride_o + offs, tl.full([BLOCK_P], -1, tl.int32), mask=(offs >= k) & (offs < KOUT))


@triton.jit
def _combine_kernel(M, L, ACC, OUT, NSPLIT, D: tl.constexpr, BLOCK_S: tl.constexpr):
    """Merge the per-split partial softmaxes of one (request, query head) into its output row."""
    row = tl.program_id(0)
    sp = tl.arange(0, BLOCK_S)
    ok = sp < NSPLIT
    dims = tl.arange(0, D)
    m = tl.load(M + row * NSPLIT + sp, mask=ok, other=float("-inf"))
    l = tl.load(L + row * NSPLIT + sp, mask=ok, other=0.0)
    acc = tl.load(ACC + (row * NSPLIT + sp)[:, None] * D + dims[None, :], mask=ok[:, None], other=0.0)
    mmax = tl.max(m, 0)
    w = tl.where(m > float("-inf"), tl.exp2(m - mmax), 0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.sum(l * w, 0)
    tl.store(OUT + row * D + dims, out.to(OUT.dtype.element_ty))


def page_scores(
    query,
    pmin,
    pmax,
    npages,
    share: bool,
    use_kernel: bool,
    block_table=None,
    block_p: int | None = None,
    tiles: int | None = None,
    num_warps: int = 4,
    num_stages: int | None = None,
) -> torch.Tensor:
    """Quest page scores ``[B, Hsel, P]`` (float32, -inf past each head's pages).

    ``pmin``/``pmax``: ``[B, Hkv, P, D]``, or with ``block_table [B, P]`` pools ``[num_blocks, Hkv, D]``
    holding each cache block's summary (page p of request b = block ``block_table[b, p]``).
    Kernel launch: ``tiles`` tiles of ``block_p`` pages per program (defaults measured on an H200,
    ``benchmarks/kernel_breakdown.py``).
    """
    b, hq, d = query.shape
    if not use_kernel:
        return page_scores_torch(query, pmin, pmax, npages, share, block_table)
    paged = block_table is not None
    hkv = pmin.shape[1]
    p = block_table.shape[1] if paged else pmin.shape[2]
    g = hq // hkv
    out = torch.empty(b, hkv if share else hq, p, dtype=torch.float32, device=query.device)
    pmin, pmax = pmin.contiguous(), pmax.contiguous()
    if paged:  # pool [blocks, Hkv, D]: per-block stride in the page slot
        strides = (0, pmin.stride(1), pmin.stride(0))
        bt, stride_bt = block_table.to(torch.int32).contiguous(), block_table.shape[1]
    else:
        strides = (pmin.stride(0), pmin.stride(1), pmin.stride(2))
        bt, stride_bt = out, 0  # unused
    block_p = block_p or 64
    if tiles is None:  # loop over up to 8 tiles per program while >= 2 programs per SM remain
        tiles = 1
        while tiles < 8 and triton.cdiv(p, block_p * tiles * 2) * b * hkv >= 264:
            tiles *= 2
    grid = (triton.cdiv(p, block_p * tiles), b * hkv)
    _page_score_kernel[grid](
        query,
        pmin,
        pmax,
        npages.to(torch.int32).contiguous(),
        out,
        bt,
        p,
        query.stride(0),
        query.stride(1),
        *strides,
        out.stride(0),
        out.stride(1),
        stride_bt,
        HKV=hkv,
        GROUP=g,
        GP=max(16, triton.next_power_of_2(g)),
        SHARE=share,
        D=d,
        BLOCK_P=block_p,
        TILES=tiles,
        IEEE=pmin.dtype == torch.float32,
        PAGED=paged,
        num_warps=num_warps,
        **({} if num_stages is None else {"num_stages": num_stages}),
    )
    return out


def select_pages(
    scores: torch.Tensor,
    current: torch.Tensor,
    n_select,
    use_kernel: bool = False,
    row_k: torch.Tensor | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Top ``n_select`` pages plus each head's current page: ``[B, Hsel, min(max n_select + 1, P)]`` (-1 = none).

    ``n_select``: an int, or a ``[B]`` tensor of per-request budgets (requests of one batch may run
    different sparsities). The same set either way; the kernel lists pages in ascending order,
    ``topk`` by score (per-request budgets: kernel only). ``row_k``: the kernel's pages per row
    (``min(n_select + 1, P)`` per request, repeated per head, int32 on the device), made once per
    decode step by the caller; ``n_select`` is then the widest budget (an int).
    """
    if not use_kernel:
        return select_pages_torch(scores, current, n_select)
    b, h, p = scores.shape
    per_row = torch.is_tensor(n_select)
    widest = int(n_select.max()) if per_row else n_select
    k = min(widest + 1, p)
    out = torch.empty(b, h, k, dtype=torch.int32, device=scores.device)
    if row_k is not None:
        krow = row_k
    elif per_row:
        krow = (n_select.to(device=scores.device, dtype=torch.int32) + 1).clamp(max=p).repeat_interleave(h)
    else:
        krow = torch.full((b * h,), k, dtype=torch.int32, device=scores.device)
    block = max(16, triton.next_power_of_2(p))
    _select_kernel[(b * h,)](
        scores.contiguous(),
        current.to(torch.int32).contiguous(),
        krow,
        out,
        p,
        k,
        p,
        k,
        BLOCK_P=block,
        num_warps=num_warps or (4 if block <= 2048 else (8 if block <= 8192 else 16)),
    )
    return out


def sparse_decode(
    query,
    key,
    value,
    pages,
    lengths,
    page: int,
    scale: float,
    share: bool,
    splits: int | None = None,
    block_table: torch.Tensor | None = None,
    tile: int | None = None,
    num_stages: int | None = None,
    kept: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
):
    """Attention of ``query [B, Hq, D]`` over the tokens of ``pages [B, Hsel, N]``: ``[B, Hq, D]``
    (written into ``out`` if given: a contiguous ``[B, Hq, D]`` tensor of any float dtype, e.g. the
    attention layer's own output rows, which saves a copy and a cast).

    ``key``/``value``: ``[B, Hkv, S, D]``, or with ``block_table [B, max_blocks]`` vLLM's paged cache
    ``[num_blocks, page, Hkv, D]`` (a Quest page is one cache block: ``page`` = the block size).
    ``kept [B, Hkv]`` + ``start [B]``: a compacted cache, where tokens ``[kept, start)`` of a head are
    not valid (the evicted tail of the prompt; generated tokens follow from ``start``).
    """
    b, hq, d = query.shape
    paged = block_table is not None
    hkv = key.shape[2] if paged else key.shape[1]
    if paged and key.shape[1] != page:
        raise ValueError(f"paged decode needs page size = cache block size; got page {page}, blocks of {key.shape[1]}")
    g = hq // hkv
    hsel, nsel = pages.shape[1], pages.shape[2]
    hp = g if share else 1
    tile = max(tile or 64, page)
    if splits is None:  # enough programs to fill the GPU (~4 per SM on 132 SMs) without tiny splits
        splits = max(1, min(triton.cdiv(nsel * page, 512), triton.cdiv(528, b * hsel)))
    per_split = triton.cdiv(triton.cdiv(nsel, splits), tile // page) * (tile // page)
    splits = triton.cdiv(nsel, per_split)
    m = torch.empty(b, hq, splits, dtype=torch.float32, device=query.device)
    l = torch.empty_like(m)
    acc = torch.empty(b, hq, splits, d, dtype=torch.float32, device=query.device)
    if paged:  # [blocks, page, Hkv, D]: per block, per token, per head
        strides = (key.stride(0), key.stride(2), key.stride(1), value.stride(0), value.stride(2), value.stride(1))
        bt, stride_bt = block_table.to(torch.int32).contiguous(), block_table.shape[1]
    else:
        strides = (key.stride(0), key.stride(1), key.stride(2), value.stride(0), value.stride(1), value.stride(2))
        bt, stride_bt = m, 0  # unused
    gap = kept is not None
    kept_ = kept.to(device=query.device, dtype=torch.int32).contiguous() if gap else m
    start_ = start.to(device=query.device, dtype=torch.int32).contiguous() if gap else m
    _sparse_decode_kernel[(splits, b * hsel)](
        query,
        key,
        value,
        pages.contiguous(),
        lengths.to(torch.int32).contiguous(),
        m,
        l,
        acc,
        bt,
        kept_,
        start_,
        nsel,
        per_split,
        splits,
        query.stride(0),
        query.stride(1),
        *strides,
        stride_bt,
        scale * 1.4426950408889634,
        HSEL=hsel,
        HQ=hq,
        GROUP=g,
        HP=hp,
        HPP=max(16, triton.next_power_of_2(hp)),
        D=d,
        PAGE=page,
        TILE=tile,
        PAGED=paged,
        GAP=gap,
        num_warps=4,
        num_stages=num_stages or 3,
    )
    if out is None:
        out = torch.empty(b, hq, d, dtype=query.dtype, device=query.device)
    elif tuple(out.shape) != (b, hq, d) or not out.is_contiguous():
        raise ValueError(
            f"out must be a contiguous [{b}, {hq}, {d}] tensor, got {tuple(out.shape)} "
            f"(contiguous: {out.is_contiguous()})"
        )
    _combine_kernel[(b * hq,)](m, l, acc, out, splits, D=d, BLOCK_S=max(2, triton.next_power_of_2(splits)))
    return out
