"""KV compression in the handler (SnapKV, Ada-SnapKV): compaction after the prefill, batched decode after.

After a request's prefill (and after the backend's dense prefill read the cache), ``compress_kv``
gives the positions each kv head keeps; :func:`compact_kv` moves them to positions ``[0, kept)`` of
the request's cache blocks and records the kept length per (request, layer, kv head). Tokens
generated later are written by vLLM at their logical positions (>= the prompt length), so a decode
step reads ``[0, kept)`` plus ``[prompt_len, seq_len)`` and nothing evicted: per request by
:class:`~.decode_paths.GatherDecode` (CPU, or a method with a ``decode`` hook), or for every such
request of the step at once by :class:`CompactedDecode` (CUDA: pages read through the block table,
the evicted gap skipped; with ``engine.handler_graphs`` replayed from the handler's own CUDA graphs,
:mod:`.decode_graphs`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from sparse_frontier.vllm_plugin.decode_graphs import DecodeGraphs
from sparse_frontier.vllm_plugin.decode_paths import DecodePath, token_rows, write_rows
from sparse_frontier.vllm_plugin.env import handler_graphs
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall, PrefillRow
from sparse_frontier.vllm_plugin.state import RequestState


def compact_kv(call: LayerCall, prefill: PrefillRow) -> None:
    """The method's kept tokens of this prompt, per kv head, moved to the front of its cache blocks."""
    state, span, index = prefill.state, prefill.span, call.index
    rows = slice(span.start, span.stop)
    keys, values = call.k[rows], call.v[rows]
    selection = state.method.compress_kv(call.q[rows], keys, values, layer_index=index, scale=call.impl.scale)
    if selection is None:
        return
    positions = [p.to(torch.long) for p in selection.indices]
    lengths = torch.tensor([len(p) for p in positions])
    longest = int(lengths.max())
    kept_k = keys.new_zeros(len(positions), longest, keys.shape[-1])
    kept_v = torch.zeros_like(kept_k)
    for h, pos in enumerate(positions):
        kept_k[h, : len(pos)] = keys[pos, h]
        kept_v[h, : len(pos)] = values[pos, h]
    targets = [torch.arange(int(n), device=keys.device) for n in lengths]
    call.adapter.cache.scatter_per_head(call.kv_cache, call.block_row(prefill.row), targets, kept_k, kept_v, call.layer)
    state.kv_lengths[index] = lengths
    state.kv_lengths_device[index] = lengths.to(keys.device, torch.int32)  # as the kernels read it
    state.kv_longest[index] = longest
    state.kv_density[index] = float(lengths.float().mean()) / keys.shape[0]


class CompactedPlan(NamedTuple):
    """The step's index tensors for its compacted-cache requests (int32, on the device), shared by its layers."""

    tokens: slice | torch.Tensor  # their query rows
    tables: torch.Tensor  # block-table rows
    prompts: torch.Tensor  # prompt lengths
    seq: torch.Tensor  # tokens in the cache
    lengths: torch.Tensor  # ``seq`` per (request, kv head)


class CompactedDecode(DecodePath):
    """Every decode request of the step whose cache was compacted and whose method has no decode hook, at once."""

    def __init__(self, graphs: DecodeGraphs):
        self.graphs = graphs
        self.buckets: dict[tuple, object] = {}  # the graphs' static buffers, by bucket

    def claims(self, call: LayerCall, state: RequestState) -> bool:
        return call.views is not None and state.compacted(call.index) and not state.computes_decode

    def run(self, call: LayerCall, rows: list[DecodeRow]) -> None:
        index = call.index
        plan = call.step.cached(("compact", id(call.meta), tuple(r.row for r in rows)), lambda: self._plan(call, rows))
        if isinstance(plan, CompactedPlan):
            self._launch(call, rows, plan)
        else:  # the handler's graphs
            plan.run(call, rows, self.graphs)
        for r in rows:  # tokens read: the kept prompt tokens + every generated one
            state, seq_len = r.state, r.span.seq_len
            kept_mean = state.kv_density[index] * state.prompt_len
            state.record_decode(index, (kept_mean + seq_len - state.prompt_len) / seq_len)

    @staticmethod
    def _launch(call: LayerCall, rows: list[DecodeRow], plan: CompactedPlan) -> None:
        from sparse_frontier.vllm_plugin.paged_decode import compacted_attention

        page, index = call.page, call.index
        kept = torch.stack([r.state.kv_lengths_device[index] for r in rows])  # [R, Hkv], on the device
        longest = max(r.state.kv_longest[index] for r in rows)
        width = -(-longest // page) + max(-(-r.span.seq_len // page) - r.state.prompt_len // page for r in rows)
        key_cache, value_cache = call.views
        write_rows(
            call.out,
            plan.tokens,
            lambda into: compacted_attention(
                call.q[plan.tokens],
                key_cache,
                value_cache,
                plan.tables,
                kept,
                plan.prompts,
                plan.seq,
                page,
                call.impl.scale,
                width,
                plan.lengths,
                into,
            ),
        )

    def _plan(self, call: LayerCall, rows: list[DecodeRow]):
        """The step's :class:`CompactedPlan`, or with the handler's graphs its requests padded to a bucket."""
        if handler_graphs():
            from sparse_frontier.vllm_plugin.decode_graphs import GraphedCompacted

            return GraphedCompacted(self.buckets, call, rows)
        dev = call.q.device
        seq = torch.tensor([r.span.seq_len for r in rows], device=dev, dtype=torch.int32)
        return CompactedPlan(
            token_rows([r.span.start for r in rows], dev),
            call.meta.block_table[torch.tensor([r.row for r in rows], device=dev)].to(torch.int32).contiguous(),
            torch.tensor([r.state.prompt_len for r in rows], device=dev, dtype=torch.int32),
            seq,
            seq[:, None].expand(len(rows), call.impl.num_kv_heads).contiguous(),
        )
