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


@triton.jit
def _page_score_kernel(
    Q, PMIN, PMAX, NPAGES, OUT,
    P, stride_qb, stride_qh, stride_pb, stride_ph, stride_pp, stride_ob, stride_oh,
    HKV: tl.constexpr, GROUP: tl.constexpr, SHARE: tl.constexpr, D: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid_p = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HKV
    kvh = bh % HKV
    pages = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    dims = tl.arange(0, D)
    n_valid = tl.load(NPAGES + b * HKV + kvh)
    ok = pages < n_valid
    off = b * stride_pb + kvh * stride_ph + pages[:, None] * stride_pp + dims[None, :]
    mn = tl.load(PMIN + off, mask=ok[:, None], other=0.0).to(tl.float32)
    mx = tl.load(PMAX + off, mask=ok[:, None], other=0.0).to(tl.float32)
    total = tl.zeros([BLOCK_P], tl.float32)
    for g in tl.static_range(GROUP):
        q = tl.load(Q + b * stride_qb + (kvh * GROUP + g) * stride_qh + dims).to(tl.float32)
        s = tl.sum(tl.maximum(q[None, :] * mn, q[None, :] * mx), 1)
        if SHARE:
            total += s
        else:
            tl.store(OUT + b * stride_ob + (kvh * GROUP + g) * stride_oh + pages, tl.where(ok, s, float("-inf")), mask=pages < P)
    if SHARE:
        tl.store(OUT + b * stride_ob + kvh * stride_oh + pages, tl.where(ok, total, float("-inf")), mask=pages < P)


@triton.jit
def _sparse_decode_kernel(
    Q, K, V, PAGES, LENS, M_OUT, L_OUT, ACC_OUT,
    NSEL, PER_SPLIT, NSPLIT,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
    qk_scale,
    HSEL: tl.constexpr, HQ: tl.constexpr, GROUP: tl.constexpr, HP: tl.constexpr, HPP: tl.constexpr,
    D: tl.constexpr, PAGE: tl.constexpr, TILE: tl.constexpr,
):
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
    m_i = tl.full([HPP], float("-inf"), tl.float32)
    l_i = tl.zeros([HPP], tl.float32)
    acc = tl.zeros([HPP, D], tl.float32)
    slot = tl.arange(0, TILE) // PAGE
    within = tl.arange(0, TILE) % PAGE
    start = split * PER_SPLIT
    stop = tl.minimum(start + PER_SPLIT, NSEL)
    kb = K + b * stride_kb + kvh * stride_kh
    vb = V + b * stride_vb + kvh * stride_vh
    for p0 in range(start, stop, TILE // PAGE):
        idx = p0 + slot
        page = tl.load(PAGES + (b * HSEL + hsel) * NSEL + idx, mask=idx < stop, other=-1)
        tok = page * PAGE + within
        ok = (page >= 0) & (tok < length)
        k = tl.load(kb + tok[:, None] * stride_ks + dims[None, :], mask=ok[:, None], other=0.0)
        v = tl.load(vb + tok[:, None] * stride_vs + dims[None, :], mask=ok[:, None], other=0.0)
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


def page_summaries(key: torch.Tensor, page: int, lengths: torch.Tensor | None = None):
    """Element-wise min and max of the keys of each page: ``[B, Hkv, P, D]`` each (tokens past ``lengths`` ignored)."""
    b, hkv, s, d = key.shape
    p = -(-s // page)
    pad = p * page - s
    k = key
    valid = torch.arange(p * page, device=key.device)
    if lengths is not None or pad:
        lens = lengths if lengths is not None else torch.full((b, hkv), s, device=key.device)
        ok = (valid[None, None, :] < lens[..., None])[..., None]
        k = torch.nn.functional.pad(key, (0, 0, 0, pad))
        big = torch.finfo(key.dtype).max
        kmin = torch.where(ok, k, big).reshape(b, hkv, p, page, d).amin(3)
        kmax = torch.where(ok, k, -big).reshape(b, hkv, p, page, d).amax(3)
        return kmin, kmax
    k = k.reshape(b, hkv, p, page, d)
    return k.amin(3), k.amax(3)


def page_scores(query, pmin, pmax, npages, share: bool, use_kernel: bool) -> torch.Tensor:
    """Quest page scores ``[B, Hsel, P]`` (float32, -inf past each head's pages)."""
    b, hq, d = query.shape
    hkv, p = pmin.shape[1], pmin.shape[2]
    g = hq // hkv
    if use_kernel:
        out = torch.empty(b, hkv if share else hq, p, dtype=torch.float32, device=query.device)
        pmin, pmax = pmin.contiguous(), pmax.contiguous()
        grid = (triton.cdiv(p, 64), b * hkv)
        _page_score_kernel[grid](
            query, pmin, pmax, npages.to(torch.int32).contiguous(), out,
            p, query.stride(0), query.stride(1), pmin.stride(0), pmin.stride(1), pmin.stride(2),
            out.stride(0), out.stride(1),
            HKV=hkv, GROUP=g, SHARE=share, D=d, BLOCK_P=64,
        )
        return out
    q = query.float().reshape(b, hkv, g, 1, d)
    s = torch.maximum(q * pmin.float()[:, :, None], q * pmax.float()[:, :, None]).sum(-1)  # [B, Hkv, G, P]
    s = s.sum(2) if share else s.reshape(b, hq, p)
    ok = torch.arange(p, device=query.device) < npages.repeat_interleave(1 if share else g, 1)[..., None]
    return s.masked_fill(~ok, float("-inf"))


def select_pages(scores: torch.Tensor, current: torch.Tensor, n_select: int) -> torch.Tensor:
    """Top ``n_select`` pages plus each head's current page: ``[B, Hsel, min(n_select + 1, P)]`` (-1 = none)."""
    s = scores.scatter(2, current[..., None].long(), float("inf"))
    k = min(n_select + 1, s.shape[-1])
    val, idx = s.topk(k, -1)
    return torch.where(val > float("-inf"), idx, -1).int()


def sparse_decode(query, key, value, pages, lengths, page: int, scale: float, share: bool, splits: int | None = None):
    """Attention of ``query [B, Hq, D]`` over the tokens of ``pages [B, Hsel, N]``: ``[B, Hq, D]``."""
    b, hq, d = query.shape
    hkv = key.shape[1]
    g = hq // hkv
    hsel, nsel = pages.shape[1], pages.shape[2]
    hp = g if share else 1
    tile = max(64, page)
    if splits is None:  # enough programs to fill the GPU (~4 per SM on 132 SMs) without tiny splits
        splits = max(1, min(triton.cdiv(nsel * page, 512), triton.cdiv(528, b * hsel)))
    per_split = triton.cdiv(triton.cdiv(nsel, splits), tile // page) * (tile // page)
    splits = triton.cdiv(nsel, per_split)
    m = torch.empty(b, hq, splits, dtype=torch.float32, device=query.device)
    l = torch.empty_like(m)
    acc = torch.empty(b, hq, splits, d, dtype=torch.float32, device=query.device)
    _sparse_decode_kernel[(splits, b * hsel)](
        query, key, value, pages.contiguous(), lengths.to(torch.int32).contiguous(), m, l, acc,
        nsel, per_split, splits,
        query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2),
        scale * 1.4426950408889634,
        HSEL=hsel, HQ=hq, GROUP=g, HP=hp, HPP=max(16, triton.next_power_of_2(hp)),
        D=d, PAGE=page, TILE=tile, num_warps=4,
    )
    mmax = m.amax(-1, keepdim=True)
    w = torch.exp2(m - mmax).nan_to_num(0.0)
    return ((acc * w[..., None]).sum(2) / (l * w).sum(-1, keepdim=True)).to(query.dtype)
