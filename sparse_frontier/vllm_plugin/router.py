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
"""

from __future__ import annotations

from sparse_frontier.attention.base import AttentionResult
from sparse_frontier.vllm_plugin.adapters import RequestSpan
from sparse_frontier.vllm_plugin.compacted import CompactedDecode, compact_kv
from sparse_frontier.vllm_plugin.decode_paths import DecodePath, GatherDecode
from sparse_frontier.vllm_plugin.layer_call import DecodeRow, LayerCall, PrefillRow
from sparse_frontier.vllm_plugin.quest_paths import BatchedQuestDecode, PagedQuestDecode, QuestSummaries
from sparse_frontier.vllm_plugin.state import RequestState


class LayerRouter:
    """Routes each layer call's requests (one per handler: it holds Quest's summary pool and the row counts)."""

    def __init__(self):
        self.summaries = QuestSummaries()
        batched_quest, paged_quest = BatchedQuestDecode(self.summaries), PagedQuestDecode()
        compacted, gather = CompactedDecode(), GatherDecode()
        #: a decode step goes to the first path that claims it
        self.claim_order: tuple[DecodePath, ...] = (batched_quest, paged_quest, compacted, gather)
        #: the order the paths run in after the backend
        self.run_order: tuple[DecodePath, ...] = (paged_quest, gather, batched_quest, compacted)
        #: query rows of global layers the backend computed / left to the handler (the handler's work)
        self.backend_rows = 0
        self.skipped_rows = 0

    def route(self, call: LayerCall) -> None:
        """Fill ``call.output`` for every request of the step (the method's rows, the backend's for the rest)."""
        step = call.step
        handled = [False] * len(step.spans)  # requests whose output rows the handler computes
        prefills: list[PrefillRow] = []
        claimed: dict[DecodePath, list[DecodeRow]] = {path: [] for path in self.claim_order}
        for row, (state, span, prefilling) in enumerate(zip(step.states, step.spans, step.prefilling)):
            if not (state.touches_attention or state.kv_lengths):
                continue
            if prefilling:
                result = self._prefill(call, state, span)
                prefills.append(PrefillRow(row, state, span, result))
                handled[row] = result is not None
                continue
            for path in self.claim_order:
                if path.claims(call, state):
                    claimed[path].append(DecodeRow(row, state, span))
                    handled[row] = True
                    break
        self._run_backend(call, handled)
        for prefill in prefills:
            self._after_prefill(call, prefill)
        for path in self.run_order:
            if claimed[path]:
                path.run(call, claimed[path])

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
        runs, first = [], None  # contiguous runs [first, stop) of unhandled requests
        for row, done in enumerate(handled + [True]):
            if not done and first is None:
                first = row
            elif done and first is not None:
                runs.append((first, row))
                first = None
        rows = sum(spans[b - 1].stop - spans[a].start for a, b in runs)
        self.backend_rows += rows
        self.skipped_rows += sum(s.query_len for s in spans) - rows
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
