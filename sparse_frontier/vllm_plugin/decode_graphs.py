"""The handler's own CUDA graphs for the batched decode paths, so host time per layer call stops mattering.

vLLM runs piecewise (:mod:`.engine`): everything but attention replays from its graphs, and the
handler's attention runs eagerly between the pieces. A layer's batched decode is ~5 Triton launches
plus torch index ops and Python, ~0.3 ms of host time per layer call (benchmarks/results/
handler_overhead.md), more than its GPU work. vLLM's full-graph mode cannot hold it (routing is per
request and data-dependent; vLLM captures with dummy requests), so the handler captures its own: per
(decode path, layer, bucket), on the bucket's first use, a graph of the path's kernel work that reads
and writes only static buffers.

- Once per step (``Step.cached``): the path's index tensors (block-table rows, sequence lengths,
  per-row budgets, ...) are written into the bucket's static buffers, which the step's layers share.
- Per layer: the query rows (and Quest's new keys) are copied into the static inputs, the graph is
  replayed, the static output rows are copied into the layer's output: four small launches.

Why buckets: a graph fixes its kernels' grids and arguments, but the number of requests and the page
widths change from step to step, so they are rounded up (:func:`bucket_rows`, :func:`bucket_width`).
Padding rows point at vLLM's null block (:data:`NULL_BLOCK`) with one token in their cache, so their
reads and Quest's summary fold touch only that block and its pool row; extra page columns are -1
(masked, no K/V loads). Split counts and grids follow the bucket, so the real rows' bits depend on the
bucket only: where no graph replays (CPU, a capture in progress, past the cap) the same bucketed work
runs eagerly and gives the replay's bits. With graphs off (``engine.handler_graphs: false``) the paths
launch unpadded, as before (the same up to float rounding: their splits differ).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch

from sparse_frontier.vllm_plugin.decode_paths import token_rows
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall

log = logging.getLogger(__name__)

#: vLLM's null block: BlockPool pops block 0 from its free queue at start-up and never gives it to a
#: request (0.20 and 0.32); block tables hold it only for skipped sliding-window tokens, never in the
#: full-attention layers the handler computes. Padding rows read it and fold their key into its summary.
NULL_BLOCK = 0
#: graphs, and bytes of their shared pool, captured at most; past either, new buckets run eagerly (same bits)
MAX_GRAPHS = 2048
MAX_POOL_BYTES = 4 << 30


def bucket_rows(n: int) -> int:
    """Requests a graph holds: the next power of two (1, 2, 4, ..., 256, ...), as vLLM's capture sizes."""
    return 1 << max(0, n - 1).bit_length()


def bucket_width(n: int) -> int:
    """Page columns a graph holds: the next power of two up to 16, then the next quarter octave (at
    most 25% more columns, so a slowly growing budget changes bucket rarely and pads little)."""
    if n <= 16:
        return bucket_rows(n)
    step = 1 << ((n - 1).bit_length() - 3)
    return -(-n // step) * step


class DecodeGraphs:
    """The handler's captured graphs by key, in one memory pool of their own (never vLLM's). A graph's
    only allocations are temporaries of its replay (scores, page lists, partial softmaxes; its inputs
    and outputs are static buffers made outside capture), so graphs replayed one after another on one
    stream may share that memory in any order."""

    def __init__(self, max_graphs: int = MAX_GRAPHS, max_pool_bytes: int = MAX_POOL_BYTES):
        self.graphs: dict[tuple, Any] = {}
        self.max_graphs, self.max_pool_bytes = max_graphs, max_pool_bytes
        #: reserved memory the captures added (their pool's segments; approximate)
        self.pool_bytes = 0
        self._pool = None
        self._full_logged = False

    def run(self, key: tuple, work: Callable[[], None], device: torch.device) -> None:
        """``work()`` (kernel launches on static buffers only): replayed from its graph, captured on the
        key's first use; eagerly where there is no graph."""
        graph = self.graphs.get(key)
        if graph is not None:
            graph.replay()
        elif self._may_capture(device):
            self._capture(key, work, device)
        else:
            work()

    def _may_capture(self, device: torch.device) -> bool:
        # Inside another capture (vLLM's own) the work is recorded into that graph instead.
        if device.type != "cuda" or torch.cuda.is_current_stream_capturing():
            return False
        if len(self.graphs) < self.max_graphs and self.pool_bytes < self.max_pool_bytes:
            return True
        if not self._full_logged:
            log.warning(
                "sparse_frontier: %d decode graphs (%.0f MiB) reached the cap (%d graphs, %.0f MiB): new buckets "
                "run eagerly",
                len(self.graphs),
                self.pool_bytes / 2**20,
                self.max_graphs,
                self.max_pool_bytes / 2**20,
            )
            self._full_logged = True
        return False

    def _capture(self, key: tuple, work: Callable[[], None], device: torch.device) -> None:
        # Warm-up on a side stream (PyTorch's advice before capturing): compiles the kernels and
        # computes this call's rows, which stand (the capture records without running).
        stream = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            work()
        stream.wait_stream(side)
        # The capture synchronizes the device (mid-forward that only waits for the queued work), then
        # records on its own stream into our pool. thread_local: a CUDA call of another thread of
        # vLLM's during the capture neither fails it nor is recorded.
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_reserved(device)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # torch.cuda.graph's entry runs gc.collect() and empty_cache(): in a vLLM worker's heap a
        # collection takes long, and a capture happens per (layer, bucket); vLLM skips both for
        # its own captures the same way.
        with (
            mock.patch("gc.collect", lambda *a: 0),
            mock.patch("torch.cuda.empty_cache", lambda: None),
            torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"),
        ):
            work()
        self.pool_bytes += max(0, torch.cuda.memory_reserved(device) - before)
        self.graphs[key] = graph
        count = len(self.graphs)
        if count & (count - 1) == 0:  # 1, 2, 4, ...: a line per doubling, not per layer
            log.info(
                "sparse_frontier: %d decode graphs captured (pool %.0f MiB), latest %s",
                count,
                self.pool_bytes / 2**20,
                key[:3],
            )


def _packed(device: torch.device, shapes: dict[str, tuple[int, ...]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One int32 buffer and its views of ``shapes``: a step's host-made index tensors go in one copy."""
    flat = torch.zeros(sum(math.prod(s) for s in shapes.values()), dtype=torch.int32, device=device)
    views, at = {}, 0
    for name, shape in shapes.items():
        views[name] = flat[at : at + math.prod(shape)].view(shape)
        at += math.prod(shape)
    return flat, views


def _read_rows(static: torch.Tensor, source: torch.Tensor, rows) -> None:
    """``static[:len] = source[rows]`` in one launch."""
    if isinstance(rows, slice):
        static.copy_(source[rows])
    else:
        torch.index_select(source, 0, rows, out=static)


def _write_rows(out: torch.Tensor, rows, static: torch.Tensor) -> None:
    """``out[rows] = static`` in one launch."""
    if isinstance(rows, slice):
        out[rows].copy_(static)
    else:
        out.index_copy_(0, rows, static.to(out.dtype))


class _Bucket:
    """A bucket's static buffers: ``rows`` requests of ``table_width`` block-table columns, the layer's
    query and output rows; ``owner``: the step plan whose index tensors they hold now."""

    def __init__(self, call: LayerCall, rows: int, index_shapes: dict[str, tuple[int, ...]]):
        dev, impl = call.q.device, call.impl
        self.rows = rows
        self.index, views = _packed(dev, index_shapes)
        for name, view in views.items():
            setattr(self, name, view)
        self.tables = torch.full((rows, call.meta.block_table.shape[1]), NULL_BLOCK, dtype=torch.int32, device=dev)
        self.q = torch.zeros(rows, impl.num_heads, impl.head_size, dtype=call.q.dtype, device=dev)
        self.out = torch.zeros(rows, impl.num_heads, impl.head_size, dtype=call.out.dtype, device=dev)
        self.owner = None

    def fill(self, owner, index: torch.Tensor, block_table: torch.Tensor, table_rows, count: int) -> None:
        """A step's index tensors (host int32, packed as ``index_shapes``) and its requests' block-table rows;
        padding rows get the null block only."""
        self.index.copy_(index)
        self.tables[:count].copy_(block_table[table_rows])
        self.tables[count:].fill_(NULL_BLOCK)
        self.owner = owner


def _shape_key(call: LayerCall) -> tuple:
    """What a bucket's buffers and a graph's kernels depend on besides the bucket itself."""
    impl = call.impl
    return (
        call.meta.block_table.shape[1],
        impl.num_heads,
        impl.num_kv_heads,
        impl.head_size,
        call.page,
        call.q.dtype,
        call.k.dtype,
        call.out.dtype,
        call.q.device,
    )


def _layer_key(call: LayerCall, *tensors: torch.Tensor) -> tuple:
    """A graph bakes in the layer's cache (and pool) addresses and its scale."""
    return (call.index, call.impl.scale, *(t.data_ptr() for t in call.views), *(t.data_ptr() for t in tensors))


class GraphedQuestGroup:
    """One page-sharing mode's Quest requests of a step, padded to a bucket: per layer, the summary
    fold of their new keys, page scores, top-k and the sparse decode, replayed from one graph."""

    def __init__(self, buckets: dict, call: LayerCall, rows: list[DecodeRow], share: bool):
        dev, impl, page = call.q.device, call.impl, call.page
        hkv = impl.num_kv_heads
        hsel = hkv if share else impl.num_heads
        table_width = call.meta.block_table.shape[1]
        self.count, self.share = len(rows), share
        self.states = [r.state for r in rows]
        self.tokens = token_rows([r.span.start for r in rows], dev)
        self.table_rows = token_rows([r.row for r in rows], dev)
        size = bucket_rows(self.count)
        shapes = {"npages": (size, hkv), "lengths": (size, hkv), "current": (size, hsel), "row_k": (size * hsel,)}
        shapes["fresh"] = (size,)
        bucket_key = ("quest", share, size, *_shape_key(call))
        self.bucket = buckets.get(bucket_key)
        if self.bucket is None:
            self.bucket = buckets[bucket_key] = _Bucket(call, size, shapes)
            self.bucket.keys = torch.zeros(size, hkv, impl.head_size, dtype=call.k.dtype, device=dev)
            self.bucket.last_blocks = torch.full((size,), NULL_BLOCK, dtype=torch.int32, device=dev)
        # Padding rows: one token (in the null block), one page to select.
        seq = torch.tensor([r.span.seq_len for r in rows] + [1] * (size - self.count))
        n_select = [r.state.pager.pages_to_select(r.span.seq_len) for r in rows]
        budget = torch.tensor(n_select + [0] * (size - self.count))
        npages = (seq + page - 1) // page
        self.index = torch.cat(
            [
                npages[:, None].expand(size, hkv).flatten(),
                seq[:, None].expand(size, hkv).flatten(),
                (npages - 1)[:, None].expand(size, hsel).flatten(),
                (budget + 1).clamp(max=table_width)[:, None].expand(size, hsel).flatten(),
                ((seq - 1) % page == 0).int(),
            ]
        ).int()
        # where each new key goes: block-table entry (row, last page) of the static tables
        self.last_at = (torch.arange(size) * table_width + (seq - 1) // page).to(dev)
        #: select_pages' output width (the most pages a row reads), bucketed
        self.widest = bucket_width(min(max(n_select) + 1, table_width)) - 1
        from sparse_frontier.vllm_plugin.paged_decode import quest_density

        self.density = [quest_density(r.span.seq_len, n, page) for r, n in zip(rows, n_select)]
        self.key = ("quest", share, size, min(self.widest + 1, table_width), *_shape_key(call))

    def run(self, call: LayerCall, pool, graphs: DecodeGraphs) -> None:
        from sparse_frontier.vllm_plugin.paged_decode import SummaryPool, quest_attention

        b, count = self.bucket, self.count
        if b.owner is not self:  # the step's first layer (or another group's layers came between)
            b.fill(self, self.index, call.meta.block_table, self.table_rows, count)
            torch.index_select(b.tables.view(-1), 0, self.last_at, out=b.last_blocks)
        _read_rows(b.q[:count], call.q, self.tokens)
        _read_rows(b.keys[:count], call.k, self.tokens)
        key_cache, value_cache = call.views
        page, share, widest, scale = call.page, self.share, self.widest, call.impl.scale

        def work():
            SummaryPool.add_keys(pool, b.keys, b.last_blocks, b.fresh)
            quest_attention(
                b.q,
                key_cache,
                value_cache,
                pool,
                b.tables,
                b.npages,
                b.current,
                b.lengths,
                b.row_k,
                widest,
                page,
                share,
                scale,
                b.out,
            )

        graphs.run(self.key + _layer_key(call, *pool), work, call.q.device)
        _write_rows(call.out, self.tokens, b.out[:count])


class GraphedCompacted:
    """A step's compacted-cache decode requests, padded to a bucket: per layer, the pages of each head's
    kept and generated tokens and the sparse decode, replayed from one graph per page-width bucket."""

    def __init__(self, buckets: dict, call: LayerCall, rows: list[DecodeRow]):
        dev, impl, page = call.q.device, call.impl, call.page
        hkv = impl.num_kv_heads
        self.count = len(rows)
        self.tokens = token_rows([r.span.start for r in rows], dev)
        self.table_rows = token_rows([r.row for r in rows], dev)
        size = bucket_rows(self.count)
        bucket_key = ("compacted", size, *_shape_key(call))
        self.bucket = buckets.get(bucket_key)
        if self.bucket is None:
            self.bucket = buckets[bucket_key] = _Bucket(
                call, size, {"prompts": (size,), "seq": (size,), "lengths": (size, hkv)}
            )
            self.bucket.kept = torch.zeros(size, hkv, dtype=torch.int32, device=dev)
        # Padding rows: an empty prompt, one generated token (in the null block), nothing kept.
        prompts = torch.tensor([r.state.prompt_len for r in rows] + [0] * (size - self.count))
        seq = torch.tensor([r.span.seq_len for r in rows] + [1] * (size - self.count))
        self.index = torch.cat([prompts, seq, seq[:, None].expand(size, hkv).flatten()]).int()
        #: page slots of the generated tokens, at most (a layer adds its longest kept head's)
        self.recent_pages = max(-(-r.span.seq_len // page) - r.state.prompt_len // page for r in rows)
        self.key = ("compacted", size, *_shape_key(call))

    def run(self, call: LayerCall, rows: list[DecodeRow], graphs: DecodeGraphs) -> None:
        from sparse_frontier.vllm_plugin.paged_decode import compacted_attention

        b, count, index, page = self.bucket, self.count, call.index, call.page
        if b.owner is not self:
            b.fill(self, self.index, call.meta.block_table, self.table_rows, count)
            b.kept[count:].zero_()
        torch.stack([r.state.kv_lengths_device[index] for r in rows], out=b.kept[:count])
        _read_rows(b.q[:count], call.q, self.tokens)
        longest = max(r.state.kv_longest[index] for r in rows)
        width = bucket_width(-(-longest // page) + self.recent_pages)
        key_cache, value_cache = call.views
        scale = call.impl.scale

        def work():
            compacted_attention(
                b.q, key_cache, value_cache, b.tables, b.kept, b.prompts, b.seq, page, scale, width, b.lengths, b.out
            )

        graphs.run(self.key + (width,) + _layer_key(call), work, call.q.device)
        _write_rows(call.out, self.tokens, b.out[:count])
