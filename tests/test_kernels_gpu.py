"""Triton kernels compiled for a real GPU vs their float32 references (skipped without CUDA).

The CPU tests run the same kernels in the Triton interpreter, which does not exercise the
compiler's pipelining, layouts or bf16 tensor-core paths; these tests do, at sizes where a
multi-stage pipeline and many programs are in play. Run on the GPU machine with
``pytest -m gpu tests/test_kernels_gpu.py``.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch
from triton.runtime.jit import JITFunction, KernelInterface

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (kernels compiled for the device)"),
]

KERNEL_MODULES = [
    f"sparse_frontier.kernels.{m}"
    for m in ("block_select", "estimation", "grouped_blocks", "quest", "snapkv", "sparse_prefill", "topk")
]
KERNEL_MODULES.append("sparse_frontier.vllm_plugin.paged_decode")
QUEST = {"_page_score_kernel", "_select_kernel", "_sparse_decode_kernel", "_combine_kernel"}
SNAPKV = {"_window_lse", "_window_scores", "_compacted_pages_kernel", "_sparse_decode_kernel", "_combine_kernel"}
HANDLER_KERNELS = {
    "quest": QUEST | {"_fold_keys_kernel"},
    "quest_unshared": QUEST | {"_fold_keys_kernel"},
    "snapkv": SNAPKV,
    "ada_snapkv": SNAPKV,
}


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def binaries(kernel: JITFunction) -> int:
    """How many compiled binaries the kernel holds, over all devices."""
    return sum(len(entry[0]) for entry in kernel.device_caches.values())


@pytest.fixture
def launched(monkeypatch):
    """The kernels the test launches compiled, by name. Only a JITFunction's ``run`` compiles and
    launches; under TRITON_INTERPRET=1 the kernels are InterpretedFunctions and never reach it."""
    seen = {}
    run = JITFunction.run

    def recording(self, *args, **kwargs):
        seen[self.__name__] = self
        return run(self, *args, **kwargs)

    monkeypatch.setattr(JITFunction, "run", recording)
    return seen


def assert_compiled(launched, names):
    missing = set(names) - set(launched)
    assert not missing, f"not launched as compiled kernels: {sorted(missing)}; launched: {sorted(launched)}"
    for name in names:
        assert binaries(launched[name]) > 0, f"{name} launched without a compiled binary"


def test_kernels_are_compiled_not_interpreted():
    """On a GPU the kernels are decorated as JITFunctions: TRITON_INTERPRET=1 (read by Triton when a
    kernel is decorated) would run every GPU test below in the slow interpreter instead."""
    kernels = {
        name: obj
        for module in KERNEL_MODULES
        for name, obj in vars(importlib.import_module(module)).items()
        if isinstance(obj, KernelInterface)
    }
    assert len(kernels) >= 12, sorted(kernels)
    interpreted = sorted(name for name, obj in kernels.items() if not isinstance(obj, JITFunction))
    assert not interpreted, f"{interpreted} interpreted; TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r}"


def qkv(t, hq, hkv, d, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(t, h, d, generator=g, device="cuda").to(dtype) for h in (hq, hkv, hkv)]


@pytest.mark.parametrize("name", ["quest", "quest_unshared", "snapkv", "ada_snapkv"])
@pytest.mark.parametrize("dense", [(), (1,)])
def test_handler_batched_decode_on_gpu(monkeypatch, launched, name, dense):
    """The handler's batched decode compiled for the GPU (summary fold and page-list kernels, rows in
    place or gathered around a dense request) vs its per-request path on the same CUDA tensors."""
    from paged_fixtures import DECODE_SPECS, handler_decode_run

    lengths = [130, 47, 200]
    spec = DECODE_SPECS[name]
    batched, stats_b, _ = handler_decode_run(monkeypatch, "triton", lengths, spec, dense=dense, device="cuda")
    assert_compiled(launched, HANDLER_KERNELS[name])
    single, stats_s, _ = handler_decode_run(monkeypatch, "torch", lengths, spec, dense=dense, device="cuda")
    assert rel_err(batched, single) < 2e-3  # float32 inputs; the kernels' dots may use TF32
    for r in stats_s:
        assert stats_b[r]["decode_sparsity"] == pytest.approx(stats_s[r]["decode_sparsity"], abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("t,n", [(4096, 256), (5000, 512), (300, 256)])
def test_estimation_kernels_on_gpu(launched, dtype, t, n):
    from sparse_frontier.attention.vertical_slash import estimate_scores_torch
    from sparse_frontier.kernels.estimation import estimate_scores_triton

    q, k, _ = qkv(t, 28, 4, 128, dtype)
    want_v, want_s = estimate_scores_torch(q, k, n, 128**-0.5)
    got_v, got_s = estimate_scores_triton(q, k, n, 128**-0.5)
    assert rel_err(got_v, want_v) < 1e-5 and rel_err(got_s, want_s) < 1e-5
    assert_compiled(launched, {"_row_stats", "_probs", "_diag_sums"})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block,kchunks", [(16, 1), (16, 2), (16, 4), (16, 8), (32, 2), (64, 1)])
@pytest.mark.parametrize("stages", [2, 3])
def test_block_sparse_kernel_on_gpu(launched, dtype, block, kchunks, stages):
    from sparse_frontier.attention.block_sparse import block_index
    from sparse_frontier.attention.reference import block_list_mask, masked_attention
    from sparse_frontier.kernels.sparse_prefill import sparse_prefill

    t, hq, hkv, d = 1000, 4, 2, 128
    q, k, v = qkv(t, hq, hkv, d, dtype)
    blocks, counts = block_index(q, k, block, 5)
    out = sparse_prefill(q, k, v, d**-0.5, block, blocks=blocks, block_count=counts, kchunks=kchunks, num_stages=stages)
    ref = masked_attention(q.float(), k.float(), v.float(), block_list_mask(t, blocks, counts, block), d**-0.5)
    assert rel_err(out, ref) < 1e-2
    assert_compiled(launched, {"_sparse_prefill_kernel", "_block_select_kernel"})


@pytest.mark.parametrize("t,block,top", [(8192, 16, 60), (131072, 16, 421), (5000, 64, 9)])
def test_block_index_kernel_selects_what_torch_topk_selects(monkeypatch, launched, t, block, top):
    """The selection kernel against masked_fill + torch.topk + sort on the same float32 scores, at
    sizes where rows are thousands of blocks wide (one program holds 2^k of them in registers)."""
    from sparse_frontier.attention.block_sparse import block_index

    q, k, _ = qkv(t, 7, 1, 128, torch.bfloat16, seed=3)
    blocks, counts = block_index(q, k, block, top)
    assert_compiled(launched, {"_block_select_kernel"})
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", "torch")
    torch_blocks, torch_counts = block_index(q, k, block, top)
    assert torch.equal(counts, torch_counts)
    # equal float32 scores at a row's threshold may go either way in torch.topk: allow a rare row
    assert (blocks != torch_blocks).any(-1).float().mean().item() < 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group,gqa", [(2, 1), (4, 2), (8, 7)])
def test_grouped_block_kernel_on_gpu(launched, dtype, group, gqa):
    """Tiles of G query blocks over their union, compiled (pipelined loads, tensor cores, the
    member-bit masks) vs the masked reference; T not a multiple of the tile."""
    from sparse_frontier.attention.block_sparse import block_index
    from sparse_frontier.attention.reference import block_list_mask, masked_attention
    from sparse_frontier.kernels.grouped_blocks import grouped_block_prefill

    t, hkv, d, block = 1000, 2, 128, 16
    q, k, v = qkv(t, hkv * gqa, hkv, d, dtype)
    blocks, counts = block_index(q, k, block, 5)
    out = grouped_block_prefill(q, k, v, d**-0.5, block, blocks, counts, group=group)
    ref = masked_attention(q.float(), k.float(), v.float(), block_list_mask(t, blocks, counts, block), d**-0.5)
    assert rel_err(out, ref) < 1e-2
    assert_compiled(launched, {"_grouped_blocks_kernel"})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("kchunks", [1, 2])
def test_vertical_slash_kernel_on_gpu(launched, dtype, stages, kchunks):
    from sparse_frontier.attention.reference import masked_attention, vertical_slash_mask
    from sparse_frontier.attention.vertical_slash import BLOCK, VerticalSlash
    from sparse_frontier.kernels.sparse_prefill import sparse_prefill

    t, hq, hkv, d = 1500, 4, 2, 128
    q, k, v = qkv(t, hq, hkv, d, dtype, seed=1)
    cols, cover = VerticalSlash(vertical_size=40, slash_size=30).index(q, k, d**-0.5)
    nb = cover.shape[1]
    idx = torch.arange(nb, device="cuda")
    diag = torch.where(cover, idx, nb).sort(-1).values
    col_count = torch.searchsorted(
        cols, (idx * BLOCK + BLOCK - 1).clamp(max=t - 1).expand(hq, nb).contiguous(), right=True
    )
    out = sparse_prefill(
        q,
        k,
        v,
        d**-0.5,
        BLOCK,
        diag=diag,
        cover=cover,
        cols=cols,
        col_count=col_count,
        num_stages=stages,
        kchunks=kchunks,
    )
    ref = masked_attention(q.float(), k.float(), v.float(), vertical_slash_mask(t, cover, cols, BLOCK), d**-0.5)
    assert rel_err(out, ref) < 1e-2
    assert_compiled(launched, {"_row_stats", "_probs", "_diag_sums", "_sparse_prefill_kernel"})


@pytest.mark.parametrize("batch,p,n_select", [(1, 8192, 410), (8, 8192, 819), (3, 300, 7)])
def test_quest_select_and_decode_on_gpu(launched, batch, p, n_select):
    from sparse_frontier.attention.reference import masked_decode, page_keep_mask
    from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode

    hq, hkv, d, page = 28, 4, 128, 16
    s = p * page - 5
    g = torch.Generator(device="cuda").manual_seed(2)
    q = torch.randn(batch, hq, d, generator=g, device="cuda").bfloat16()
    kc, vc = torch.randn(2, batch, hkv, s, d, generator=g, device="cuda").bfloat16()
    lens = torch.full((batch, hkv), s, device="cuda")
    pmin, pmax = page_summaries(kc, page, lens)
    npages = (lens + page - 1) // page
    torch_scores = page_scores(q, pmin, pmax, npages, True, use_kernel=False)
    kernel_scores = page_scores(q, pmin, pmax, npages, True, use_kernel=True)
    assert rel_err(kernel_scores, torch_scores) < 1e-3
    current = npages - 1
    ref_pages = select_pages(kernel_scores, current, n_select)
    pages = select_pages(kernel_scores, current, n_select, use_kernel=True)
    forced = kernel_scores.scatter(2, current[..., None], float("inf"))
    for r, k_, sc in zip(ref_pages.flatten(0, 1), pages.flatten(0, 1), forced.flatten(0, 1)):
        assert torch.equal(sc[k_[k_ >= 0].long()].sort().values, sc[r[r >= 0].long()].sort().values)
    out = sparse_decode(q, kc, vc, pages, lens, page, d**-0.5, True)
    for i in range(batch):
        keep = page_keep_mask(pages[i], s, page, hq // hkv)
        assert rel_err(out[i], masked_decode(q[i].float(), kc[i].float(), vc[i].float(), keep, d**-0.5)) < 1e-2
    assert_compiled(launched, QUEST)


@pytest.mark.parametrize("share", [True, False])
def test_paged_quest_decode_on_gpu(launched, share):
    """The handler's fused path: pages read through a shuffled block table of a vLLM-layout cache."""
    from sparse_frontier.kernels.quest import page_scores, page_summaries, select_pages, sparse_decode

    g = torch.Generator(device="cuda").manual_seed(4)
    b, hq, hkv, d, page, s = 2, 28, 4, 128, 16, 4000
    q = torch.randn(b, hq, d, generator=g, device="cuda").bfloat16()
    kc, vc = torch.randn(2, b, hkv, s, d, generator=g, device="cuda").bfloat16()
    lens = torch.full((b, hkv), s, device="cuda")
    npages = (lens + page - 1) // page
    pmin, pmax = page_summaries(kc, page, lens)
    current = (npages - 1).repeat_interleave(1 if share else hq // hkv, 1)
    pages = select_pages(page_scores(q, pmin, pmax, npages, share, True), current, 20, use_kernel=True)
    per_req = -(-s // page)
    table = torch.randperm(b * per_req + 7, generator=g, device="cuda")[: b * per_req].reshape(b, per_req)
    cache_k = torch.zeros(b * per_req + 7, page, hkv, d, device="cuda", dtype=torch.bfloat16)
    cache_v = torch.zeros_like(cache_k)
    pad = per_req * page - s
    for i in range(b):
        cache_k[table[i]] = (
            torch.nn.functional.pad(kc[i], (0, 0, 0, pad)).reshape(hkv, per_req, page, d).permute(1, 2, 0, 3)
        )
        cache_v[table[i]] = (
            torch.nn.functional.pad(vc[i], (0, 0, 0, pad)).reshape(hkv, per_req, page, d).permute(1, 2, 0, 3)
        )
    want = sparse_decode(q, kc, vc, pages, lens, page, d**-0.5, share)
    got = sparse_decode(q, cache_k, cache_v, pages, lens, page, d**-0.5, share, block_table=table)
    assert rel_err(got, want) < 1e-3
    assert_compiled(launched, QUEST)


@pytest.mark.parametrize("reduce", ["sum", "max"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-3)])
def test_snapkv_window_scores_on_gpu(launched, reduce, dtype, tol):
    """float32 inputs score to float32 rounding (IEEE products, not TF32, whose noise swaps near-tied
    keys between the kernel and the torch path); bf16 within its own rounding of the scaled queries."""
    from sparse_frontier.kernels.snapkv import window_scores, window_scores_torch

    q, k, _ = qkv(5000, 28, 4, 128, dtype, seed=3)
    got = window_scores(q[-256:], k, 128**-0.5, reduce)
    want = window_scores_torch(q[-256:], k, 128**-0.5, reduce)
    assert rel_err(got, want) < tol
    assert_compiled(launched, {"_window_lse", "_window_scores"})


@pytest.mark.parametrize("lengths", [[1, 17, 300], [4096, 4099]])
def test_vllm_fa3_baselines_match_the_paged_reference(lengths):
    """The benchmarks' dense baselines (benchmarks/kernels.py): vLLM 0.20's FA3, paged decode eager
    and replayed from a CUDA graph (split cap 32), paged and contiguous causal prefill, vs the float32
    reference read through the same block table (skipped without vLLM's FA3, saying why)."""
    from sparse_frontier.vllm_plugin import fa3

    reason = fa3.unavailable()
    if reason:
        pytest.skip(f"vLLM's FlashAttention 3: {reason}")
    hq, hkv, d, scale = 28, 4, 128, 128**-0.5
    g = torch.Generator(device="cuda").manual_seed(5)
    keys = [torch.randn(s, hkv, d, generator=g, device="cuda").bfloat16() for s in lengths]
    values = [torch.randn(s, hkv, d, generator=g, device="cuda").bfloat16() for s in lengths]
    kv_cache, table = fa3.paged_cache(keys, values, generator=torch.Generator().manual_seed(5), spare=3)
    args = fa3.decode_args(table, lengths)
    q = torch.randn(len(lengths), hq, d, generator=g, device="cuda").bfloat16()
    ref = fa3.paged_reference(q, kv_cache, args, scale)
    out = fa3.paged(q, kv_cache, torch.empty_like(q), args, scale, fa3.schedule(args, hq, hkv, d, q.dtype))
    assert rel_err(out, ref) < 1e-2
    sched = fa3.schedule(args, hq, hkv, d, q.dtype, fa3.CUDA_GRAPH_SPLITS)
    out = torch.zeros_like(q)
    call = lambda: fa3.paged(q, kv_cache, out, args, scale, sched, fa3.CUDA_GRAPH_SPLITS)  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    out.zero_()
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, ref) < 1e-2
    # prefill: every token a query, causal; paged as vLLM runs it, and the varlen kernel on contiguous K/V
    prefill = fa3.paged_args(table, lengths, lengths)
    q = torch.randn(sum(lengths), hq, d, generator=g, device="cuda").bfloat16()
    ref = fa3.paged_reference(q, kv_cache, prefill, scale)
    out = fa3.paged(q, kv_cache, torch.empty_like(q), prefill, scale, fa3.schedule(prefill, hq, hkv, d, q.dtype))
    assert rel_err(out, ref) < 1e-2
    cu = prefill.cu_seqlens_q
    out = fa3.varlen(
        q,
        torch.cat(keys),
        torch.cat(values),
        torch.empty_like(q),
        cu_seqlens_q=cu,
        max_seqlen_q=max(lengths),
        cu_seqlens_k=cu,
        max_seqlen_k=max(lengths),
        scale=scale,
    )
    assert rel_err(out, ref) < 1e-2


@pytest.mark.parametrize("name", ["quest", "quest_unshared", "snapkv", "ada_snapkv"])
def test_handler_decode_graphs_replay_the_eager_bits(monkeypatch, launched, name):
    """The handler's decode graphs on Qwen2.5-7B's heads in bf16: captured on each bucket's first use and
    replayed over steps of growing sequences (summary folds, a page opened mid-run) and a request count
    going 5 -> 3 -> 2 (buckets 8, 4, 2), they give bitwise the rows of the same bucketed work run eagerly,
    the same densities, and the unpadded path's rows up to bf16 rounding (its splits differ)."""
    from paged_fixtures import DECODE_SPECS, handler_decode_steps

    prompts = [4095, 2000, 3001, 1024, 777]  # the first opens a page on its second decode step
    schedule = [[0, 1, 2, 3, 4]] * 3 + [[0, 2, 3]] * 3 + [[1, 3]] * 2
    spec, shape = DECODE_SPECS[name], dict(device="cuda", heads=(28, 4, 128), dtype=torch.bfloat16)
    replayed, stats_r, handler, cache_r = handler_decode_steps(monkeypatch, prompts, spec, schedule, "replay", **shape)
    assert len(handler.router.graphs.graphs) >= 3  # one per bucket at least (a width bucket may add some)
    assert_compiled(launched, HANDLER_KERNELS[name])
    eager, stats_e, _, cache_e = handler_decode_steps(monkeypatch, prompts, spec, schedule, "eager", **shape)
    unpadded, stats_u, _, _ = handler_decode_steps(monkeypatch, prompts, spec, schedule, "off", **shape)
    for got, want, plain in zip(replayed, eager, unpadded):
        assert torch.equal(got, want)
        assert rel_err(got, plain) < 1e-2
    assert stats_r == stats_e == stats_u
    assert torch.equal(cache_r, cache_e)
