"""Quest's decode in the handler: the page summaries, and the two paths that read selected pages only.

For a page-selecting method (:meth:`AttentionMethod.page_selector`: Quest, alone or as the decode
part of a combination) the handler keeps the element-wise min/max of every page's keys per
(request, layer, kv head), built from the prompt's keys at prefill and updated with each new key. A
decode step reads these summaries, asks the method which pages to attend, and reads only those:

- :class:`PagedQuestDecode`, per request in PyTorch (CPU, or a page size other than the cache's
  block): summaries in ``RequestState.pages``, the selected pages gathered from the paged cache;
- :class:`BatchedQuestDecode` (CUDA, pages = cache blocks): every such request of the step in one
  set of Triton launches per layer (:mod:`.paged_decode`: summaries in a per-layer pool indexed like
  the cache blocks; page scores, per-request top-k, sparse paged decode), its index tensors made
  once per step; with ``engine.handler_graphs`` replayed from the handler's own CUDA graphs
  (:mod:`.decode_graphs`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from sparse_frontier.attention.ops import decode_attention
from sparse_frontier.kernels.torch_paths import page_summaries
from sparse_frontier.vllm_plugin.decode_graphs import DecodeGraphs
from sparse_frontier.vllm_plugin.decode_paths import DecodePath, PerRequestPath, token_rows, write_rows
from sparse_frontier.vllm_plugin.env import handler_graphs
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall, PrefillRow
from sparse_frontier.vllm_plugin.state import RequestState


class QuestSummaries:
    """Where Quest's page summaries live: per request and layer (``RequestState.pages``), or, for
    the batched decode, in a per-layer pool indexed like the cache blocks (made on first use, so
    Triton loads only where the batched CUDA path runs)."""

    def __init__(self):
        self._pool = None

    @staticmethod
    def pooled(call: LayerCall, state: RequestState) -> bool:
        """Whether ``state``'s summaries are in the pool: block views and pages of the cache's block size."""
        return call.views is not None and state.pager.page_size == call.page

    def pool(self, call: LayerCall):
        """The layer's pool ``(page min, page max)``, each ``[num_blocks, Hkv, D]``."""
        if self._pool is None:
            from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

            self._pool = SummaryPool()
        return self._pool.get(call.index, call.views[0])

    def write_prompt(self, call: LayerCall, prefill: PrefillRow) -> None:
        """The prompt's page summaries, from its keys (all of them from the cache when vLLM's prefix
        cache gave its first tokens: dense-prefill methods only)."""
        state, span, page = prefill.state, prefill.span, prefill.state.pager.page_size
        keys = call.k[span.start : span.stop]
        if span.seq_len > span.query_len:
            positions = torch.arange(span.seq_len, device=call.kv_cache.device)
            keys = call.adapter.cache.gather(call.kv_cache, call.block_row(prefill.row), positions, call.layer)[0]
            keys = keys.transpose(0, 1)
        if self.pooled(call, state):
            from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

            SummaryPool.write_prompt(self.pool(call), keys, call.block_row(prefill.row), page)
        else:
            pmin, pmax = page_summaries(keys.transpose(0, 1)[None], page)
            state.pages[call.index] = [pmin[0].contiguous(), pmax[0].contiguous()]


class PagedQuestDecode(PerRequestPath):
    """Per request: update its summaries with the new key, select pages, gather and attend to those."""

    def claims(self, call: LayerCall, state: RequestState) -> bool:
        return state.pager is not None and not state.compacted(call.index)

    def decode_one(self, call: LayerCall, decode: DecodeRow) -> None:
        state, index, token, seq_len = decode.state, call.index, decode.span.start, decode.span.seq_len
        pager, impl = state.pager, call.impl
        page = pager.page_size
        pmin, pmax = state.pages[index]
        new_key, slot = call.k[token], (seq_len - 1) // page
        if slot >= pmin.shape[1]:  # the new token opens a page
            state.pages[index] = [torch.cat([pmin, new_key[:, None]], 1), torch.cat([pmax, new_key[:, None]], 1)]
        else:
            pmin[:, slot] = torch.minimum(pmin[:, slot], new_key)
            pmax[:, slot] = torch.maximum(pmax[:, slot], new_key)
        pmin, pmax = state.pages[index]
        pages = pager.select_from_summaries(call.q[token], pmin, pmax, seq_len)  # [Hsel, N], -1 = none
        group = impl.num_heads // impl.num_kv_heads
        offsets = torch.arange(page, device=pages.device)
        positions = []
        for chosen in pages:
            chosen = chosen[chosen >= 0].long()
            pos = (chosen[:, None] * page + offsets).flatten()
            positions.append(pos[pos < seq_len])
        shared = len(positions) == impl.num_kv_heads
        heads = None if shared else [h // group for h in range(len(positions))]
        keys, values = call.adapter.cache.gather_per_head(
            call.kv_cache, call.block_row(decode.row), positions, call.layer, heads
        )
        read = torch.tensor([len(p) for p in positions], device=keys.device)
        call.out[token] = decode_attention(call.q[token], keys, values, impl.scale, read).to(call.out.dtype)
        per_query_head = read.repeat_interleave(group) if shared else read
        state.record_decode(index, float(per_query_head.float().mean()) / seq_len)


class QuestGroup(NamedTuple):
    """The step's Quest requests of one page-sharing mode: one set of kernel launches per layer."""

    quest: object  # paged_decode.QuestStep: index tensors and densities
    tokens: slice | torch.Tensor  # their query rows
    states: list[RequestState]


class QuestPlan(NamedTuple):
    """The step's index tensors for its Quest requests, shared by its global layers."""

    tokens: slice | torch.Tensor  # query rows of every request
    last_blocks: torch.Tensor  # the block each new key goes to
    fresh: torch.Tensor  # whether the new key opens its block
    groups: list[QuestGroup]


class BatchedQuestDecode(DecodePath):
    """Every Quest decode request of the step at once (pages read through the block table)."""

    def __init__(self, summaries: QuestSummaries, graphs: DecodeGraphs):
        self.summaries, self.graphs = summaries, graphs
        self.buckets: dict[tuple, object] = {}  # the graphs' static buffers, by bucket

    def claims(self, call: LayerCall, state: RequestState) -> bool:
        return state.pager is not None and not state.compacted(call.index) and self.summaries.pooled(call, state)

    def run(self, call: LayerCall, rows: list[DecodeRow]) -> None:
        from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

        pool = self.summaries.pool(call)
        # The same requests on every global layer of the step: their index tensors are made once.
        plan = call.step.cached(("quest", id(call.meta), tuple(r.row for r in rows)), lambda: self._plan(call, rows))
        if isinstance(plan, list):  # the handler's graphs: one replay per page-sharing mode
            for group in plan:
                group.run(call, pool, self.graphs)
                for state, density in zip(group.states, group.density):
                    state.record_decode(call.index, density)
            return
        SummaryPool.add_keys(pool, call.k[plan.tokens], plan.last_blocks, plan.fresh)
        key_cache, value_cache = call.views
        for group in plan.groups:  # one set of launches per page-sharing mode
            write_rows(
                call.out,
                group.tokens,
                lambda into, g=group: g.quest.decode(
                    call.q[g.tokens], key_cache, value_cache, pool, call.impl.scale, out=into
                ),
            )
            for state, density in zip(group.states, group.quest.density):
                state.record_decode(call.index, density)

    def _plan(self, call: LayerCall, rows: list[DecodeRow]):
        """The step's :class:`QuestPlan`, or with the handler's graphs one padded group per page-sharing mode."""
        if handler_graphs():
            from sparse_frontier.vllm_plugin.decode_graphs import GraphedQuestGroup

            shares = sorted({r.state.pager.share_pages for r in rows})
            return [
                GraphedQuestGroup(self.buckets, call, [r for r in rows if r.state.pager.share_pages == s], s)
                for s in shares
            ]
        from sparse_frontier.vllm_plugin.paged_decode import QuestStep

        dev, page, impl = call.q.device, call.page, call.impl
        tokens = token_rows([r.span.start for r in rows], dev)
        seq = torch.tensor([r.span.seq_len for r in rows], device=dev)
        tables = call.meta.block_table[torch.tensor([r.row for r in rows], device=dev)]
        last_blocks = tables.gather(1, ((seq - 1) // page)[:, None]).squeeze(1).long()
        groups = []
        for share in sorted({r.state.pager.share_pages for r in rows}):
            pick = [i for i, r in enumerate(rows) if r.state.pager.share_pages == share]
            picked = [rows[i] for i in pick]
            quest = QuestStep(
                tables[torch.tensor(pick, device=dev)],
                [r.span.seq_len for r in picked],
                [r.state.pager.pages_to_select(r.span.seq_len) for r in picked],
                page,
                share,
                impl.num_heads // impl.num_kv_heads,
                impl.num_kv_heads,
            )
            group_tokens = tokens if len(pick) == len(rows) else token_rows([r.span.start for r in picked], dev)
            groups.append(QuestGroup(quest, group_tokens, [r.state for r in picked]))
        return QuestPlan(tokens, last_blocks, (seq - 1) % page == 0, groups)
