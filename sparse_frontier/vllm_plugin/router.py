"""Per call of a global layer: who computes each request's rows, and the work after the backend.

For a step where some request's method touches attention (:class:`~.layer_call.LayerCall`):

1. a prefill whose method computes its prefill (:meth:`AttentionMethod.computes_prefill`) gets its
   output rows from ``prefill`` (which may return None: then the backend computes them);
2. a decode step goes to the first decode path that claims it (:mod:`.quest_paths`,
   :mod:`.compacted`, :mod:`.decode_paths`);
3. the backend's own dense attention runs for the requests the handler does not compute (dense
   requests, dense prefills of decode-side methods, decode steps of prefill-only methods), exactly
   as stock vLLM computes them: on the whole batch when no request is handled, else on each
   contiguous run of unhandled requests (:meth:`BackendAdapter.sub_batch`), so a handled request
   never pays for dense attention it then discards;
4. after the backend (a dense prefill reads the cache first): the prefill rows the method computed
   are written, Quest's page summaries are built and a KV-compressing method's kept tokens are
   compacted to the front of the request's blocks (:func:`~.compacted.compact_kv`);
5. the decode paths compute their requests' rows.

Who computes what (steps 1-2's claims, the backend's runs) is the same on every global layer of a step
unless a layer's caches differ (a layer some request's cache was not compacted on; block views), so it
is worked out once per step and such layer differences, not once per layer.
"""

from __future__ import annotations

from typing import NamedTuple

from sparse_frontier.attention.base import AttentionResult
from sparse_frontier.vllm_plugin.adapters import RequestSpan
from sparse_frontier.vllm_plugin.compacted import CompactedDecode, compact_kv
from sparse_frontier.vllm_plugin.decode_graphs import DecodeGraphs
from sparse_frontier.vllm_plugin.decode_paths import DecodePath, GatherDecode
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall, PrefillRow
from sparse_frontier.vllm_plugin.quest_paths import BatchedQuestDecode, PagedQuestDecode, QuestSummaries
from sparse_frontier.vllm_plugin.state import RequestState


class Routes(NamedTuple):
    """Who computes each request's rows on a step's layers (one per step and layer difference)."""

    prefills: list[tuple[int, RequestState, RequestSpan]]  # (row, state, span) of the prefills a method touches
    claimed: list[tuple[DecodePath, list[DecodeRow]]]  # the decode rows each path claimed, in run order
    handled: list[bool]  # per request: the handler computes its rows (prefills: if the method returns them)


class LayerRouter:
    """Routes each layer call's requests (one per handler: it holds Quest's summary pool, the handler's
    decode graphs and the row counts)."""

    def __init__(self):
        self.summaries = QuestSummaries()
        self.graphs = DecodeGraphs()
        batched_quest, paged_quest = BatchedQuestDecode(self.summaries, self.graphs), PagedQuestDecode()
        compacted, gather = CompactedDecode(self.graphs), GatherDecode()
        #: a decode step goes to the first path that claims it
        self.claim_order: tuple[DecodePath, ...] = (batched_quest, paged_quest, compacted, gather)
        #: the order the paths run in after the backend
        self.run_order: tuple[DecodePath, ...] = (paged_quest, gather, batched_quest, compacted)
        #: query rows of global layers the backend computed / left to the handler (the handler's work)
        self.backend_rows = 0
        self.skipped_rows = 0

    def route(self, call: LayerCall) -> None:
        """Fill ``call.output`` for every request of the step (the method's rows, the backend's for the rest)."""
        routes = call.step.cached(("routes", *self._layer_difference(call)), lambda: self._routes(call))
        handled = routes.handled
        prefills: list[PrefillRow] = []
        if routes.prefills:  # the method's rows, or None (the backend's), per layer
            handled = list(handled)
            for row, state, span in routes.prefills:
                result = self._prefill(call, state, span)
                prefills.append(PrefillRow(row, state, span, result))
                handled[row] = result is not None
        self._run_backend(call, handled)
        for prefill in prefills:
            self._after_prefill(call, prefill)
        for path, rows in routes.claimed:
            path.run(call, rows)

    @staticmethod
    def _layer_difference(call: LayerCall) -> tuple:
        """What the claims of a step's decode rows depend on besides the step: the layer's block views
        (page size) and which requests' caches were compacted on this layer (only requests that
        compacted some layer are asked: none in a Quest or dense step)."""
        step = call.step
        compacting = step.cached(
            "compacting", lambda: [s for s, p in zip(step.states, step.prefilling) if not p and s.kv_lengths]
        )
        views = None if call.views is None else call.page
        return views, tuple(state.compacted(call.index) for state in compacting)

    def _routes(self, call: LayerCall) -> Routes:
        step = call.step
        handled = [False] * len(step.spans)  # requests whose output rows the handler computes
        prefills = []
        claimed: dict[DecodePath, list[DecodeRow]] = {path: [] for path in self.claim_order}
        for row, (state, span, prefilling) in enumerate(zip(step.states, step.spans, step.prefilling)):
            if not (state.touches_attention or state.kv_lengths):
                continue
            if prefilling:
                prefills.append((row, state, span))
                continue
            for path in self.claim_order:
                if path.claims(call, state):
                    claimed[path].append(DecodeRow(row, state, span))
                    handled[row] = True
                    break
        return Routes(prefills, [(path, claimed[path]) for path in self.run_order if claimed[path]], handled)

    @staticmethod
    def _prefill(call: LayerCall, state: RequestState, span: RequestSpan) -> AttentionResult | None:
        if not state.computes_prefill:
            return None
        rows = slice(span.start, span.stop)
        return state.method.prefill(
            call.q[rows], call.k[rows], call.v[rows], layer_index=call.index, scale=call.impl.scale
        )

    def _after_prefill(self, call: LayerCall, prefill: PrefillRow) -> None:
        """A prefill's rows, then its cache-side work (after the backend: compaction rewrites the
        cache that a dense prefill reads)."""
        state, span, result = prefill.state, prefill.span, prefill.result
        if result is not None:
            call.out[span.start : span.stop] = result.output.to(call.out.dtype)
            state.prefill_density[call.index] = float(result.density.float().mean())
        if state.pager is not None:
            self.summaries.write_prompt(call, prefill)
        if state.compacts_kv:
            compact_kv(call, prefill)

    def _run_backend(self, call: LayerCall, handled: list[bool]) -> None:
        """The backend's attention for every request the handler does not compute."""
        spans, meta = call.step.spans, call.meta
        runs, rows, total = call.step.cached(("runs", tuple(handled)), lambda: self._backend_runs(spans, handled))
        self.backend_rows += rows
        self.skipped_rows += total - rows
        if runs == [(0, len(spans))]:
            call.run_backend()
            return
        subs = call.step.cached(
            ("sub", id(meta), tuple(runs)),
            lambda: [call.adapter.sub_batch(meta, spans, a, b, call.impl, call.layer, call.query) for a, b in runs],
        )
        if any(sub is None for sub in subs):  # cannot split this batch: all of it (handled rows are written after)
            call.run_backend()
            return
        for (a, b), sub in zip(runs, subs):
            call.run_backend(sub, slice(spans[a].start, spans[b - 1].stop))

    @staticmethod
    def _backend_runs(spans: list[RequestSpan], handled: list[bool]) -> tuple[list[tuple[int, int]], int, int]:
        """Contiguous runs ``[first, stop)`` of unhandled requests, their query rows, all query rows."""
        runs, first = [], None
        for row, done in enumerate(handled + [True]):
            if not done and first is None:
                first = row
            elif done and first is not None:
                runs.append((first, row))
                first = None
        rows = sum(spans[b - 1].stop - spans[a].start for a, b in runs)
        return runs, rows, sum(s.query_len for s in spans)
