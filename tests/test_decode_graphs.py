"""The handler's decode graphs on the CPU: the bucketed static-buffer work (what a graph replays; here it
runs eagerly, the Triton kernels in the interpreter) vs the unpadded batched path, over steps whose
request counts straddle the buckets' edges. The replay itself is compared on the GPU
(tests/test_kernels_gpu.py)."""

from __future__ import annotations

import os

import pytest
import torch
from paged_fixtures import DECODE_SPECS, handler_decode_steps

from sparse_frontier.vllm_plugin.decode_graphs import NULL_BLOCK, bucket_rows, bucket_width

needs_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="CPU tests need TRITON_INTERPRET=1"
)

PROMPTS = [128, 47, 200, 63, 95]  # the first opens a page on its first decode step, the fourth fills one
#: requests decoding per step: 5, 3, 2, 1, 4 and 3 of them (buckets 8, 4, 2, 1, 4, 4: padded, exact, reused
#: full, then reused with a padding row that held a real request's row the step before)
SCHEDULE = [[0, 1, 2, 3, 4], [0, 2, 3], [0, 3], [3], [0, 1, 2, 3], [1, 2, 4]]


def test_buckets_cover_their_sizes_with_little_padding():
    assert [bucket_rows(n) for n in (1, 2, 3, 5, 8, 9, 200, 256, 257)] == [1, 2, 4, 8, 8, 16, 256, 256, 512]
    assert [bucket_width(n) for n in (1, 3, 16, 17, 20, 21, 33, 819)] == [1, 4, 16, 20, 20, 24, 40, 896]
    for n in range(1, 5000):
        assert n <= bucket_width(n) <= max(16, n * 1.25)
        assert bucket_width(bucket_width(n)) == bucket_width(n)  # a bucket is its own bucket


@needs_interpreter
@pytest.mark.parametrize("name", sorted(DECODE_SPECS))
def test_bucketed_decode_equals_the_unpadded_path(monkeypatch, name):
    """Every step's rows and the measured sparsities are the unpadded path's, padding or not."""
    spec = DECODE_SPECS[name]
    bucketed, stats_b, handler, _ = handler_decode_steps(monkeypatch, PROMPTS, spec, SCHEDULE, "eager")
    unpadded, stats_u, _, _ = handler_decode_steps(monkeypatch, PROMPTS, spec, SCHEDULE, "off")
    for got, want in zip(bucketed, unpadded):
        assert ((got - want).norm() / want.norm()) < 1e-5
        assert not torch.any(got == 3.0)  # every decode row is the handler's
    assert stats_b == stats_u
    assert not handler.router.graphs.graphs  # nothing captured on the CPU
    # the buffers of each bucket the steps used (Quest: share mode, rows; compacted: rows)
    path = handler.router.claim_order[0 if name.startswith("quest") else 2]
    assert sorted(key[2 if name.startswith("quest") else 1] for key in path.buckets) == [1, 2, 4, 8]


@needs_interpreter
@pytest.mark.parametrize("name", ["quest", "quest_unshared", "snapkv"])
def test_padding_rows_touch_only_the_null_block(monkeypatch, name):
    """Padding rows fold their key into the null block's summary and read only that block: every real
    block's summary and the whole cache end as with the unpadded path."""
    spec = DECODE_SPECS[name]
    _, _, bucketed, cache_b = handler_decode_steps(monkeypatch, PROMPTS, spec, SCHEDULE, "eager")
    _, _, unpadded, cache_u = handler_decode_steps(monkeypatch, PROMPTS, spec, SCHEDULE, "off")
    assert torch.equal(cache_b, cache_u)
    if name.startswith("quest"):
        real = torch.arange(cache_b.shape[1]) != NULL_BLOCK
        for got, want in zip(bucketed.router.summaries._pool.pools[0], unpadded.router.summaries._pool.pools[0]):
            assert torch.equal(got[real], want[real])
