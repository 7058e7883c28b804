"""Batched decode from a vLLM-layout paged cache (the handler's CUDA path) vs per-request oracles.

Runs the Triton kernels in the interpreter (TRITON_INTERPRET=1) on a FlashAttention-layout cache
``[num_blocks, block, Hkv, D]`` with shuffled block tables and requests of different lengths.
"""

from __future__ import annotations

import os

import pytest
import torch
from paged_fixtures import BLOCK, DECODE_SPECS, HKV, HQ, D, handler_decode_run, paged_cache

from sparse_frontier.attention.quest import Quest
from sparse_frontier.attention.reference import masked_decode, page_keep_mask
from sparse_frontier.kernels.quest import page_summaries
from sparse_frontier.vllm_plugin.paged_decode import SummaryPool, compacted_decode, compacted_pages, quest_decode

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="CPU tests need TRITON_INTERPRET=1")


@pytest.mark.parametrize("share", [True, False])
def test_batched_quest_equals_per_request_quest(share):
    lengths = [130, 47, 200]
    cache_k, cache_v, tables, keys, values = paged_cache(lengths)
    g = torch.Generator().manual_seed(1)
    query = torch.randn(len(lengths), HQ, D, generator=g)
    methods = [Quest(sparsity=s, share_pages=share) for s in (0.8, 0.5, 0.9)]
    # summaries: the prompt (all but the last token) at "prefill", then the last token as a decode step
    pool = SummaryPool().get(0, cache_k)
    for r, s in enumerate(lengths):
        SummaryPool.write_prompt(pool, keys[r][:, : s - 1].transpose(0, 1), tables[r], BLOCK)
    last = torch.stack([keys[r][:, s - 1] for r, s in enumerate(lengths)])
    seq = torch.tensor(lengths)
    blocks = tables[torch.arange(len(lengths)), (seq - 1) // BLOCK]
    SummaryPool.add_keys(pool, last, blocks, (seq - 1) % BLOCK == 0)
    n_select = torch.tensor([max(1, round((1 - m.sparsity) * s / BLOCK)) for m, s in zip(methods, lengths)])
    out, density = quest_decode(query, cache_k, cache_v, pool, tables, seq, n_select, BLOCK, 0.125, share)
    for r, (m, s) in enumerate(zip(methods, lengths)):
        # the per-request path: summaries of the request's whole cache, Quest's own selection
        pmin, pmax = page_summaries(keys[r][None], BLOCK)
        pages = m.select_from_summaries(query[r], pmin[0], pmax[0], s)
        keep = page_keep_mask(pages, s, BLOCK, HQ // HKV if share else 1)
        want = masked_decode(query[r], keys[r], values[r], keep, 0.125)
        assert ((out[r] - want).norm() / want.norm()) < 1e-5
        torch.testing.assert_close(density[r], keep.float().mean(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernels", ["torch", "triton"])
def test_compacted_pages_list_each_page_once(monkeypatch, kernels):
    monkeypatch.setenv("SPARSE_FRONTIER_KERNELS", kernels)
    kept = torch.tensor([[5, 40], [0, 33]])
    pages = compacted_pages(kept, torch.tensor([40, 33]), torch.tensor([50, 70]), 16, 8)
    assert pages[0, 0].tolist() == [
        0,
        2,
        3,
        -1,
        -1,
        -1,
        -1,
        -1,
    ]  # kept page 0; page 2 holds token 40, the first generated
    assert pages[0, 1].tolist() == [0, 1, 2, 3, -1, -1, -1, -1]  # kept tokens reach into page 2: listed once
    assert pages[1, 0].tolist() == [2, 3, 4, -1, -1, -1, -1, -1]
    assert pages[1, 1].tolist() == [0, 1, 2, 3, 4, -1, -1, -1]


def test_batched_compacted_decode_equals_masked_oracle():
    lengths = [90, 61]  # seq_len; prompts of 70 and 40 tokens, then generated tokens
    prompts = torch.tensor([70, 40])
    cache_k, cache_v, tables, keys, values = paged_cache(lengths, seed=2)
    kept = torch.tensor([[20, 35], [40, 3]])  # per kv head (Ada-SnapKV: different lengths)
    g = torch.Generator().manual_seed(3)
    query = torch.randn(2, HQ, D, generator=g)
    width = int(((kept + BLOCK - 1) // BLOCK).max()) + max(
        -(-s // BLOCK) - p // BLOCK for s, p in zip(lengths, prompts.tolist())
    )
    out, density = compacted_decode(
        query, cache_k, cache_v, tables, kept, prompts, torch.tensor(lengths), BLOCK, 0.125, width
    )
    for r, s in enumerate(lengths):
        pos = torch.arange(s)
        keep_kv = (pos[None] < kept[r][:, None]) | (pos[None] >= prompts[r])  # [Hkv, S]
        keep = keep_kv.repeat_interleave(HQ // HKV, 0)
        want = masked_decode(query[r], keys[r], values[r], keep, 0.125)
        assert ((out[r] - want).norm() / want.norm()) < 1e-5
        torch.testing.assert_close(density[r], keep_kv.float().mean(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(DECODE_SPECS))
def test_handler_batched_decode_equals_the_per_request_path(monkeypatch, name):
    """The handler's batched CUDA-layout decode (index tensors made once per step, densities from
    what the kernels read) gives the per-request path's outputs and measured sparsities, and the
    backend never runs for the decode step (only for the dense prefills)."""
    lengths = [130, 47, 200]
    batched, stats_b, backend_b = handler_decode_run(monkeypatch, "triton", lengths, DECODE_SPECS[name])
    single, stats_s, backend_s = handler_decode_run(monkeypatch, "torch", lengths, DECODE_SPECS[name])
    assert ((batched - single).norm() / single.norm()) < 1e-5
    assert not torch.any(batched == 3.0)  # every decode row is the handler's
    for r in stats_s:
        assert stats_b[r]["decode_sparsity"] == pytest.approx(stats_s[r]["decode_sparsity"], abs=1e-6)
        assert stats_b[r]["decode_sparsity"] > 0.2 and stats_b[r]["decode_steps"] == 1
    assert backend_b == backend_s == [[0, 129, 175, 374]]  # the prefill step only


@pytest.mark.parametrize("name", ["quest", "snapkv"])
def test_handler_batched_decode_around_a_dense_request(monkeypatch, name):
    """A dense request between two handled ones: the handled rows are not consecutive (gathered and
    scattered, not written in place) and the backend computes the dense row alone."""
    lengths = [130, 47, 200]
    batched, stats_b, backend_b = handler_decode_run(monkeypatch, "triton", lengths, DECODE_SPECS[name], dense=[1])
    single, stats_s, backend_s = handler_decode_run(monkeypatch, "torch", lengths, DECODE_SPECS[name], dense=[1])
    assert ((batched - single).norm() / single.norm()) < 1e-5
    assert torch.all(batched[1] == 3.0) and not torch.any(batched[[0, 2]] == 3.0)
    assert stats_b["r47"]["decode_sparsity"] == 0.0
    for r in ("r130", "r200"):
        assert stats_b[r]["decode_sparsity"] == pytest.approx(stats_s[r]["decode_sparsity"], abs=1e-6)
        assert stats_b[r]["decode_sparsity"] > 0.2
    assert backend_b == backend_s == [[0, 129, 175, 374], [0, 1]]  # prefills, then the dense decode row alone
