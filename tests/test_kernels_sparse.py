"""Triton kernels vs their float32 torch references (TRITON_INTERPRET=1 on CPU, small sizes)."""

from __future__ import annotations

import os

import pytest
import torch

from sparse_frontier.attention.block_sparse import block_index
from sparse_frontier.attention.reference import (
    block_list_mask,
    masked_attention,
    masked_decode,
    page_keep_mask,
    vertical_slash_mask,
)
from sparse_frontier.attention.vertical_slash import BLOCK, VerticalSlash, estimate_scores_torch, index_density
from sparse_frontier.kernels.estimation import estimate_scores_triton
from sparse_frontier.kernels.grouped_blocks import group_blocks, grouped_block_prefill
from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode
from sparse_frontier.kernels.snapkv import window_scores, window_scores_torch
from sparse_frontier.kernels.sparse_prefill import sparse_prefill

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="CPU tests need TRITON_INTERPRET=1")


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def qkv(t, hq, hkv, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t, h, d, generator=g) for h in (hq, hkv, hkv)]


def nan_filled(monkeypatch):
    """Make torch.empty_like return NaN so an output element the kernel skips cannot pass."""
    real = torch.empty_like
    monkeypatch.setattr(torch, "empty_like", lambda x, *a, **k: real(x, *a, **k).fill_(float("nan")))


@pytest.mark.parametrize(
    "t,n,hq,hkv,d,span",
    [
        (100, 32, 4, 2, 64, 4096),
        (300, 64, 4, 1, 64, 4096),
        (77, 100, 2, 2, 128, 4096),
        (257, 128, 6, 2, 64, 4096),
        (130, 70, 2, 1, 64, 64),
        (300, 64, 4, 2, 64, 128),
    ],
)
def test_estimation_kernels_match_the_torch_scores(monkeypatch, t, n, hq, hkv, d, span):
    """Vertical (by key) and slash (by offset) scores of the last n queries: lengths off the 64-block
    grid, n above and below the block and above T, GQA 1-4, head dims 64/128; every buffer starts as
    NaN, so an output not written or a by-offset entry read where no key exists cannot pass. Small
    key splits of the row statistics put rows in front of splits they see no key of."""
    q, k, _ = qkv(t, hq, hkv, d, seed=t)
    want_v, want_s = estimate_scores_torch(q, k, n, d**-0.5)
    for name in ("empty", "empty_like"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _real=real, **kw: _real(*a, **kw).fill_(float("nan")))
    got_v, got_s = estimate_scores_triton(q, k, n, d**-0.5, span=span)
    assert not got_v.isnan().any() and not got_s.isnan().any()
    torch.testing.assert_close(got_v, want_v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_s, want_s, rtol=1e-5, atol=1e-6)
    rows = min(n, t)  # each estimation row is a softmax: both score vectors of a head sum to the rows
    torch.testing.assert_close(got_s.sum(-1), torch.full((hq,), float(rows)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kchunks", [None, 2, 4])  # kept diagonals per step (None: the default, one)
@pytest.mark.parametrize(
    "t,hq,hkv,d,nv,ns",
    [
        (200, 4, 2, 64, 6, 9),
        (257, 4, 1, 128, 12, 80),
        (130, 6, 6, 64, 3, 2),
        (64, 2, 1, 64, 1, 1),
        (700, 2, 1, 64, 4, 300),
    ],
)
def test_vertical_slash_kernel_matches_reference(monkeypatch, kchunks, t, hq, hkv, d, nv, ns):
    q, k, v = qkv(t, hq, hkv, d)
    scale = d**-0.5
    cols, cover = VerticalSlash(vertical_size=nv, slash_size=ns).index(q, k, scale)
    nb = cover.shape[1]
    idx = torch.arange(nb)
    diag = torch.where(cover, idx, nb).sort(-1).values
    col_count = torch.searchsorted(
        cols, (idx * BLOCK + BLOCK - 1).clamp(max=t - 1).expand(hq, nb).contiguous(), right=True
    )
    nan_filled(monkeypatch)
    out = sparse_prefill(q, k, v, scale, BLOCK, diag=diag, cover=cover, cols=cols, col_count=col_count, kchunks=kchunks)
    mask = vertical_slash_mask(t, cover, cols, BLOCK)
    assert not out.isnan().any()
    assert rel_err(out, masked_attention(q, k, v, mask, scale)) < 1e-5
    # the closed-form density counts exactly the pairs of the mask
    torch.testing.assert_close(index_density(cover, cols, t), mask.sum((1, 2)).float() / (t * (t + 1) / 2))


@pytest.mark.parametrize(
    "t,hq,hkv,d,block,top", [(100, 4, 2, 64, 16, 3), (150, 2, 1, 128, 32, 2), (97, 3, 3, 64, 16, 4)]
)
def test_block_sparse_kernel_matches_reference(monkeypatch, t, hq, hkv, d, block, top):
    q, k, v = qkv(t, hq, hkv, d, seed=1)
    blocks, counts = block_index(q, k, block, top)
    nan_filled(monkeypatch)
    out = sparse_prefill(q, k, v, 0.1, block, blocks=blocks, block_count=counts)
    assert not out.isnan().any()
    assert rel_err(out, masked_attention(q, k, v, block_list_mask(t, blocks, counts, block), 0.1)) < 1e-5


@pytest.mark.parametrize(
    "t,hq,hkv,d,block,top,group,kchunks",
    [
        (100, 4, 2, 64, 16, 3, 4, 4),
        (150, 2, 1, 64, 32, 2, 2, 2),
        (97, 3, 3, 64, 16, 4, 8, 1),
        (300, 2, 1, 32, 16, 6, 4, 4),
    ],
)
def test_grouped_block_kernel_matches_reference(monkeypatch, t, hq, hkv, d, block, top, group, kchunks):
    """Tiles of `group` query blocks over the union of their kept key blocks, each row masked to its own
    block's list: the same attention as the per-block lists (partial last tile, GQA 1-3, a chunk
    step wider and narrower than a tile's union)."""
    q, k, v = qkv(t, hq, hkv, d, seed=2)
    blocks, counts = block_index(q, k, block, top)
    nan_filled(monkeypatch)
    out = grouped_block_prefill(q, k, v, 0.1, block, blocks, counts, group=group, kchunks=kchunks)
    assert not out.isnan().any()
    assert rel_err(out, masked_attention(q, k, v, block_list_mask(t, blocks, counts, block), 0.1)) < 1e-5


def test_group_blocks_unions_the_members_lists_with_a_bit_per_member():
    nb = 6  # padding value
    blocks = torch.tensor([[[0, 6, 6], [0, 1, 6], [0, 2, 6], [0, 3, 6], [1, 4, 6]]], dtype=torch.int32)
    counts = torch.tensor([[1, 2, 2, 2, 2]], dtype=torch.int32)
    union, bits, n = group_blocks(blocks, counts, nb, group=2)
    assert n.tolist() == [[2, 3, 2]]  # {0,1}, {0,2,3}, {1,4} (the last tile has one member)
    assert union[0, 0, :2].tolist() == [0, 1] and bits[0, 0, :2].tolist() == [0b11, 0b10]
    assert union[0, 1, :3].tolist() == [0, 2, 3] and bits[0, 1, :3].tolist() == [0b11, 0b01, 0b10]
    assert union[0, 2, :2].tolist() == [1, 4] and bits[0, 2, :2].tolist() == [0b01, 0b01]
    assert (union[0, 0, 2:] == nb).all() and (bits[0, 0, 2:] == 0).all()
    # heads in chunks (here one at a time, of different union widths): the same tables
    two = torch.cat([blocks, torch.tensor([[[0, 1, 2]] * 5], dtype=torch.int32)])
    two_counts = torch.cat([counts, torch.tensor([[3] * 5], dtype=torch.int32)])
    whole = group_blocks(two, two_counts, nb, group=2)
    for a, b in zip(whole, group_blocks(two, two_counts, nb, group=2, entries=1)):
        assert torch.equal(a, b)
    assert torch.equal(whole[0][:1, :, : union.shape[-1]], union) and whole[2][1].tolist() == [3, 3, 3]


def test_grouped_block_prefill_names_a_bad_group():
    q, k, v = qkv(32, 2, 1, 32)
    blocks, counts = block_index(q, k, 16, 2)
    for group in (3, 16):
        with pytest.raises(ValueError, match=f"group {group} with 16-token blocks: valid are powers of 2"):
            grouped_block_prefill(q, k, v, 0.1, 16, blocks, counts, group=group)


def full_square_block_index(q, k, block, top):
    """Block-Sparse's selection stated plainly: every query block scored against every key block."""
    t, hq, d = q.shape
    nb, g = -(-t // block), hq // k.shape[1]
    pad = nb * block - t
    n = torch.full((nb,), float(block))
    n[-1] = block - pad
    pq = torch.nn.functional.pad(q, (0, 0, 0, 0, 0, pad)).reshape(nb, block, hq, d).sum(1) / n[:, None, None]
    pk = torch.nn.functional.pad(k, (0, 0, 0, 0, 0, pad)).reshape(nb, block, -1, d).sum(1) / n[:, None, None]
    pk = pk.repeat_interleave(g, 1)
    i = torch.arange(nb)
    s = torch.einsum("bhd,chd->hbc", pq, pk)
    s = s.masked_fill((i[None] == 0) | (i[None] == i[:, None]) | (i[None] == i[:, None] - 1), float("inf"))
    s = s.masked_fill(i[None] > i[:, None], float("-inf"))
    chosen = s.topk(min(top, nb), -1).indices
    return torch.where(chosen <= i[:, None], chosen, nb).sort(-1).values.int()


@pytest.mark.parametrize("kernels", ["torch", "triton"])
@pytest.mark.parametrize("row_chunk", [1024, 5])
@pytest.mark.parametrize(
    "t,hq,hkv,block,top", [(17, 4, 2, 16, 3), (1000, 6, 2, 16, 5), (1000, 4, 1, 16, 40), (700, 4, 4, 32, 3)]
)
def test_block_index_equals_the_full_square_selection(monkeypatch, kernels, row_chunk, t, hq, hkv, block, top):
    """The index scores the causal triangle in row chunks and skips rows that keep everything: the same
    blocks as scoring the whole square (chunks of 5 rows: many chunk edges, rows below and above ``top``),
    with torch's top-k and with the selection kernel."""
    from sparse_frontier.attention import block_sparse

    monkeypatch.setattr(block_sparse, "ROW_CHUNK", row_chunk)
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", kernels)
    q, k, _ = qkv(t, hq, hkv, 32, seed=4)
    blocks, counts = block_index(q, k, block, top)
    assert torch.equal(blocks, full_square_block_index(q, k, block, top))
    assert torch.equal(counts[0], torch.clamp(torch.arange(-(-t // block)) + 1, max=top).int())


def test_block_select_kernel_keeps_a_top_k_set_under_ties():
    """Scores with many ties: each row keeps exactly k causal blocks, ascending, the forced three among
    them, and no dropped block scores above a kept one (ties at the threshold go in block order)."""
    from sparse_frontier.kernels.block_select import select_blocks

    g = torch.Generator().manual_seed(0)
    h, row0, rows, k = 3, 9, 40, 10
    scores = torch.randint(0, 4, (h, rows, row0 + rows), generator=g).float()
    out = torch.full((h, rows, k), -7, dtype=torch.int32)
    select_blocks(scores, row0, k, out)
    for hh in range(h):
        for r in range(rows):
            qi, kept = row0 + r, out[hh, r].tolist()
            assert kept == sorted(set(kept)) and len(kept) == k and kept[-1] <= qi
            assert {0, qi - 1, qi} <= set(kept)
            free = [c for c in range(qi + 1) if c not in (0, qi - 1, qi)]
            dropped = [scores[hh, r, c].item() for c in free if c not in kept]
            taken = [scores[hh, r, c].item() for c in free if c in kept]
            assert not dropped or max(dropped) <= min(taken)  # (row 9 keeps all its 10 blocks)
            ties = [c for c in free if scores[hh, r, c] == min(taken)]
            assert [c for c in ties if c in kept] == ties[: len([c for c in ties if c in kept])]


def test_block_select_names_bad_arguments():
    from sparse_frontier.kernels.block_select import select_blocks

    out = torch.empty(1, 4, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="float32"):
        select_blocks(torch.zeros(1, 4, 10, dtype=torch.float16), 5, 3, out)
    with pytest.raises(ValueError, match="need >= 9 key blocks"):
        select_blocks(torch.zeros(1, 4, 8), 5, 3, out)
    with pytest.raises(ValueError, match=r"out must be int32 \[1, 4, 3\]"):
        select_blocks(torch.zeros(1, 4, 10), 5, 3, out.long())


def test_sparse_prefill_fp16_close_to_fp32_reference():
    q, k, v = qkv(128, 2, 1, 64, seed=2)
    blocks, counts = block_index(q, k, 16, 3)
    out = sparse_prefill(q.half(), k.half(), v.half(), 0.125, 16, blocks=blocks, block_count=counts)
    assert out.dtype == torch.float16
    assert rel_err(out, masked_attention(q, k, v, block_list_mask(128, blocks, counts, 16), 0.125)) < 2e-3


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize(
    "b,hq,hkv,d,s,page,budget", [(2, 4, 2, 64, 200, 16, 3), (1, 8, 2, 128, 97, 32, 1), (3, 2, 2, 64, 64, 16, 10)]
)
def test_quest_kernels_match_reference(share, b, hq, hkv, d, s, page, budget):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(b, hq, d, generator=g)
    kc, vc = torch.randn(2, b, hkv, s, d, generator=g)
    lens = torch.randint(s // 2, s + 1, (b, hkv), generator=g)
    lens[0, 0] = s
    pmin, pmax = page_summaries(kc, page, lens)
    npages = (lens + page - 1) // page
    torch_scores = page_scores(q, pmin, pmax, npages, share, use_kernel=False)
    kernel_scores = page_scores(q, pmin, pmax, npages, share, use_kernel=True)
    finite = torch.isfinite(torch_scores)
    assert torch.equal(finite, torch.isfinite(kernel_scores))
    torch.testing.assert_close(kernel_scores[finite], torch_scores[finite], rtol=1e-5, atol=1e-4)
    # a program looping over several page tiles (the last one past the pages) gives the same scores
    looped = page_scores(q, pmin, pmax, npages, share, use_kernel=True, block_p=16, tiles=3)
    assert torch.equal(looped, kernel_scores)
    rep = hq // hkv if share else 1
    current = (npages - 1).repeat_interleave(1 if share else hq // hkv, 1)
    pages = select_pages(torch_scores, current, budget)
    assert (pages == current[..., None]).any(-1).all()  # the current page is always read
    out = sparse_decode(q, kc, vc, pages, lens, page, 0.1, share)
    for i in range(b):
        keep = page_keep_mask(pages[i], s, page, rep) & (
            torch.arange(s)[None] < lens[i].repeat_interleave(hq // hkv)[:, None]
        )
        assert rel_err(out[i], masked_decode(q[i], kc[i], vc[i], keep, 0.1)) < 1e-5


@pytest.mark.parametrize("p,n_select", [(13, 4), (200, 37), (64, 63), (5, 10), (3000, 150)])
def test_select_kernel_picks_the_topk_set(p, n_select):
    g = torch.Generator().manual_seed(p)
    scores = torch.randn(3, 4, p, generator=g)
    scores[0, 1, p // 2 :] = float("-inf")  # a head with fewer valid pages than the budget
    scores[1, 2] = scores[1, 2].round()  # many exact ties: any tie-break, but the same count
    scores[2, 0, :3] = -0.0
    current = torch.randint(0, p, (3, 4), generator=g)
    current[0, 1] = p // 2 - 1
    ref = select_pages(scores, current, n_select)
    got = select_pages(scores, current, n_select, use_kernel=True)
    assert got.shape == ref.shape
    forced = scores.scatter(2, current[..., None], float("inf"))
    for r, k, row_scores in zip(ref.flatten(0, 1), got.flatten(0, 1), forced.flatten(0, 1)):
        kept = k[k >= 0].long()
        assert (k[len(kept) :] == -1).all() and (kept.diff() > 0).all()  # ascending, padded at the end
        # the same scores as topk's set (pages of equal score may be swapped)
        assert torch.equal(row_scores[kept].sort().values, row_scores[r[r >= 0].long()].sort().values)
    assert (got == current[..., None]).any(-1).all()  # the current page is always read


@pytest.mark.parametrize("share", [True, False])
def test_paged_sparse_decode_reads_through_the_block_table(share):
    g = torch.Generator().manual_seed(5)
    b, hq, hkv, d, page, s = 2, 4, 2, 64, 16, 90
    q = torch.randn(b, hq, d, generator=g)
    kc, vc = torch.randn(2, b, hkv, s, d, generator=g)
    lens = torch.tensor([[s, s], [70, 70]])
    npages = (lens + page - 1) // page
    pmin, pmax = page_summaries(kc, page, lens)
    current = (npages - 1).repeat_interleave(1 if share else hq // hkv, 1)
    pages = select_pages(page_scores(q, pmin, pmax, npages, share, use_kernel=False), current, 2)
    # scatter each request's pages into shuffled blocks of a vLLM-style cache [blocks, page, Hkv, D]
    per_req = -(-s // page)
    perm = torch.randperm(b * per_req + 3, generator=g)
    table = perm[: b * per_req].reshape(b, per_req)
    cache_k = torch.full((b * per_req + 3, page, hkv, d), float("nan"))
    cache_v = cache_k.clone()
    padded = (
        torch.nn.functional.pad(kc, (0, 0, 0, per_req * page - s)),
        torch.nn.functional.pad(vc, (0, 0, 0, per_req * page - s)),
    )
    for i in range(b):
        cache_k[table[i]] = padded[0][i].reshape(hkv, per_req, page, d).permute(1, 2, 0, 3)
        cache_v[table[i]] = padded[1][i].reshape(hkv, per_req, page, d).permute(1, 2, 0, 3)
    cache_k, cache_v = cache_k.nan_to_num(0.0), cache_v.nan_to_num(0.0)
    want = sparse_decode(q, kc, vc, pages, lens, page, 0.1, share)
    got = sparse_decode(q, cache_k, cache_v, pages, lens, page, 0.1, share, block_table=table)
    assert rel_err(got, want) < 1e-6
    with pytest.raises(ValueError, match="page size"):
        sparse_decode(q, cache_k, cache_v, pages, lens, 32, 0.1, share, block_table=table)
    # the summaries as the plugin keeps them: pools [blocks, Hkv, D] in the cache's block order
    pool_min, pool_max = torch.zeros(2, b * per_req + 3, hkv, d)
    for i in range(b):
        pool_min[table[i]] = pmin[i].transpose(0, 1)
        pool_max[table[i]] = pmax[i].transpose(0, 1)
    contiguous = page_scores(q, pmin, pmax, npages, share, use_kernel=True)
    for launch in ({}, {"block_p": 16, "tiles": 3}):  # one tile per program, and a loop past the pages
        paged = page_scores(q, pool_min, pool_max, npages, share, use_kernel=True, block_table=table, **launch)
        torch.testing.assert_close(paged, contiguous, rtol=1e-6, atol=1e-6)


def test_page_summaries_bound_every_key():
    kc = torch.randn(1, 2, 50, 64)
    pmin, pmax = page_summaries(kc, 16)
    pages = torch.arange(50) // 16
    assert (kc >= pmin[:, :, pages]).all() and (kc <= pmax[:, :, pages]).all()


@pytest.mark.parametrize("reduce", ["sum", "max"])
@pytest.mark.parametrize("t,w,hq,hkv,d", [(150, 40, 4, 2, 64), (90, 90, 2, 1, 128), (200, 70, 3, 3, 64)])
def test_snapkv_window_scores_match_torch(reduce, t, w, hq, hkv, d):
    q, k, _ = qkv(t, hq, hkv, d, seed=4)
    ref = window_scores_torch(q[-w:], k, d**-0.5, reduce)
    got = window_scores(q[-w:], k, d**-0.5, reduce)
    assert rel_err(got, ref) < 1e-5
    if reduce == "sum":  # each window row is a distribution: the group mean of sums equals w
        torch.testing.assert_close(ref.sum(1), torch.full((hkv,), float(w)), rtol=1e-4, atol=1e-3)
