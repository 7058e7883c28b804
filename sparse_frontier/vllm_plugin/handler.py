"""The attention handler: sees every attention call of the model and routes it through the method.

Installed into the backend impl class of this process (see :mod:`adapters`); vLLM looks ``forward``
up at call time, so replacing it on the class reaches every layer of every model.

Per call, the handler splits the batch into its requests (``query_start_loc``, ``seq_lens``,
``block_table``), tells prefill from decode per request, and calls the request's method hooks:

1. a request whose method computes its prefill (``computes_prefill``) gets its rows of the output from the method;
2. the backend's own dense attention runs for the requests the handler does not compute (dense
   requests, dense prefills of decode-side methods, decode steps of prefill-only methods), exactly
   as stock vLLM computes them: on the whole batch when no request is handled, else on each
   contiguous run of unhandled requests (:meth:`BackendAdapter.sub_batch`), so a handled request
   never pays for dense attention it then discards;
3. one that compacts its KV (``compacts_kv``) gets its kept tokens compacted to the front of its cache blocks,
   per kv head, with the kept length recorded per (request, layer, kv head);
4. a decode step of a request with a compressed cache or a ``decode`` hook is computed here from
   the tokens it may read (compacted prefix + tokens generated since), never the evicted ones.

Which method a request uses comes from its ``SamplingParams.extra_args["sparse_frontier"]`` (so one
engine serves many settings) or, if absent, from the run-wide default in the environment.

Sliding-window layers (Gemma 2/3: five of every six layers attend to the last 1024 tokens) are left
to the backend untouched, whatever the method: sparse methods apply to the global (full-attention)
layers only, as in the paper. They are not hooked, not compressed, and not counted in the measured
sparsity, which is averaged over the global layers (``layers`` in the statistics; ``sliding_layers``
counts the others).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from typing import Any

import torch

from sparse_frontier.attention import get_method_class
from sparse_frontier.attention.ops import decode_attention
from sparse_frontier.kernels import use_triton
from sparse_frontier.vllm_plugin.adapters import BackendAdapter, current_adapter, forward_pass, layer_index
from sparse_frontier.vllm_plugin.env import ENV_PREFIX_CACHING

log = logging.getLogger(__name__)

_ORIGINAL = "_sparse_frontier_original_forward"
EXTRA_ARGS_KEY = "sparse_frontier"


class RequestState:
    """What the handler knows about one live request: method, cache lengths, measured density.

    Densities are recorded only for (global layer, step) pairs the method computed; every other
    pair of a global layer ran the backend's dense attention and counts as density 1. Sliding-window
    layers are outside the method's reach and outside the average.
    """

    def __init__(self, method):
        self.method = method
        self.touches_attention = method.computes_prefill() or method.computes_decode() or method.compacts_kv()
        self.pager = method.page_selector()  # its page-selecting (Quest) part, or None
        self.shares_prompt_cache = type(method).shares_prompt_cache()
        self.prompt_len: int | None = None
        self.decode_steps = 0
        self.kv_lengths: dict[int, torch.Tensor] = {}  # layer -> kept tokens per kv head (host)
        # the same on the cache's device, and its longest head: what the batched decode reads per layer
        self.kv_lengths_device: dict[int, torch.Tensor] = {}
        self.kv_longest: dict[int, int] = {}
        self.prefill_density: dict[int, float] = {}
        self.kv_density: dict[int, float] = {}
        self.decode_density: dict[int, float] = defaultdict(float)  # summed over handled steps
        self.decode_handled: dict[int, int] = defaultdict(int)
        self.pages: dict[int, list[torch.Tensor]] = {}  # layer -> [page min, page max] per kv head

    def start_prefill(self, prompt_len: int) -> None:
        """A (re)prefill starts from a full cache and fresh measurements."""
        self.prompt_len = prompt_len
        self.decode_steps = 0
        for record in (
            self.kv_lengths,
            self.kv_lengths_device,
            self.kv_longest,
            self.prefill_density,
            self.kv_density,
            self.decode_density,
            self.decode_handled,
            self.pages,
        ):
            record.clear()

    def summary(self, num_layers: int, sliding_layers: int = 0) -> dict[str, Any]:
        """Per-request statistics; densities are averaged over the ``num_layers`` global layers."""

        def layer_mean(values: dict[int, float]) -> float:
            if not num_layers:  # only sliding-window layers: the method had nothing to sparsify
                return 1.0
            return (sum(values.values()) + (num_layers - len(values))) / num_layers

        prefill = layer_mean(self.prefill_density) if self.prompt_len else None
        decode = None
        if self.decode_steps:
            per_layer = {
                layer: (total + self.decode_steps - self.decode_handled[layer]) / self.decode_steps
                for layer, total in self.decode_density.items()
            }
            decode = layer_mean(per_layer)
        kv = sum(self.kv_density.values()) / len(self.kv_density) if self.kv_density else None
        out = {
            "layers": num_layers,  # global layers: the ones the method applies to and is averaged over
            "sliding_layers": sliding_layers,  # sliding-window layers: stock attention, not counted
            "prompt_tokens": self.prompt_len,
            "decode_steps": self.decode_steps,
            "prefill_sparsity": None if prefill is None else 1.0 - prefill,
            "decode_sparsity": None if decode is None else 1.0 - decode,
            "kv_sparsity": None if kv is None else 1.0 - kv,
        }
        phase = self.method.phase
        if phase == "prefill":
            out["sparsity"] = out["prefill_sparsity"]
        elif phase in ("decode", "kv"):
            out["sparsity"] = out["decode_sparsity"]
        elif phase == "none":
            out["sparsity"] = out["prefill_sparsity"] or 0.0
        else:  # a prefill x decode combination: both phases count equally
            parts = [s for s in (out["prefill_sparsity"], out["decode_sparsity"]) if s is not None]
            out["sparsity"] = sum(parts) / len(parts) if parts else None
        return out


class _Step:
    """One scheduler step, shared by all layers: the batch split into requests (computed once), and
    what the layers of the step can share (sub-batch metadata, the batched decode's index tensors)."""

    __slots__ = ("key", "requests", "ids", "states", "prefilling", "touched", "shared")

    def __init__(self, key, requests, ids, states, prefilling):
        self.key, self.requests, self.ids, self.states = key, requests, ids, states
        self.prefilling = prefilling  # per request: this step computes (the rest of) its prompt
        self.touched = any(s.touches_attention or s.kv_lengths for s in states)
        self.shared: dict[Any, Any] = {}

    def cached(self, key, make):
        value = self.shared.get(key)
        if value is None:
            value = self.shared[key] = make()
        return value


class AttentionHandler:
    def __init__(self):
        self.default_spec: dict[str, Any] | None = None
        self.adapter: BackendAdapter | None = None
        self.runner = None  # vLLM's model runner (attached after start-up): request ids, params
        self.states: dict[str, RequestState] = {}
        self._methods: dict[str, Any] = {}
        #: steps whose batch mixed prefill and decode requests (vLLM schedules them together)
        self.mixed_calls = 0
        self.cached_prompt_tokens = 0  # prompt tokens vLLM took from its prefix cache (not recomputed)
        #: global (full-attention) layers seen: the method applies to these
        self.layers_seen: set[int] = set()
        #: sliding-window layers seen: always the backend's own attention
        self.sliding_layers_seen: set[int] = set()
        self._recent_steps: list[_Step] = []
        self._layer_info: dict[int, tuple[int, bool]] = {}  # id(layer) -> (index, sliding window?)
        self._summaries = None  # Quest page summaries per layer, indexed like the cache blocks (CUDA)
        #: query rows of global layers the backend computed / left to the handler (the handler's work)
        self.backend_rows = 0
        self.skipped_rows = 0

    # -- configuration ---------------------------------------------------------------------
    def configure(self, spec: dict[str, Any], adapter: BackendAdapter) -> None:
        self.default_spec = spec
        self.adapter = adapter
        log.info("sparse_frontier: attention handler active (default %s, %s)", spec, adapter.family)
        self.method_for_spec(spec)  # validate now, in every process, not at the first request

    def method_for_spec(self, spec: dict[str, Any]):
        key = json.dumps(spec, sort_keys=True)
        if key not in self._methods:
            method = get_method_class(spec["method"]).from_params(spec.get("params", {}))
            # The model name lets a method find its calibrated hyperparameters for this model.
            self._methods[key] = method.bind(model=spec.get("model"))
        return self._methods[key]

    def _request_ids(self, n: int) -> list[str]:
        if self.runner is None:
            return [f"#{i}" for i in range(n)]
        return list(self.runner.input_batch.req_ids[:n])

    def _state(self, req_id: str) -> RequestState:
        state = self.states.get(req_id)
        if state is None:
            spec = self.default_spec
            if self.runner is not None and req_id in self.runner.requests:
                params = self.runner.requests[req_id].sampling_params
                extra = (params.extra_args or {}) if params is not None else {}
                spec = extra.get(EXTRA_ARGS_KEY, spec)
            state = self.states[req_id] = RequestState(self.method_for_spec(spec))
        return state

    # -- the call --------------------------------------------------------------------------
    def _step(self, meta) -> _Step:
        """The step this call belongs to (one GPU->CPU read of the batch layout per step).

        A step is one forward pass (:func:`adapters.forward_pass`), not one metadata object: a model
        with several KV-cache groups (vLLM's hybrid KV-cache manager: Gemma 3's global layers in one
        group, its sliding-window layers in others) gets one metadata object per group, which share
        the batch layout (``query_start_loc``, ``seq_lens``) but not the block table. So the
        request split is computed once per step, while every cache access below uses the calling
        layer's own metadata (its group's block table) and its own ``kv_cache``.
        """
        key = forward_pass(meta)
        for step in self._recent_steps:
            if step.key is key:
                return step
        requests = self.adapter.requests(meta)
        ids = self._request_ids(len(requests))
        states = [self._state(r) for r in ids]
        prefix_caching = os.environ.get(ENV_PREFIX_CACHING) == "1"  # per step: an engine may follow another
        prefilling = []
        for req_id, state, (_, query_len, seq_len) in zip(ids, states, requests):
            # A prompt vLLM partly took from its prefix cache arrives as its last tokens on top of
            # cached ones (at least one token: a single one looks like a decode step, but comes on
            # the request's first step).
            prefill = query_len == seq_len or query_len > 1 or (prefix_caching and state.prompt_len is None)
            cached = seq_len - query_len if prefill else 0
            if cached and not state.shares_prompt_cache:
                raise RuntimeError(
                    f"request {req_id} ({state.method.name}): {query_len} new prompt tokens on top of {cached} "
                    "cached ones (chunked prefill or prefix caching), but its method computes its own prefill or "
                    "rewrites the cache, so it needs the whole prompt in one step: only dense-prefill methods "
                    "(dense, Quest) may share cached prompts (engine_arguments(prefix_caching=...))"
                )
            self.cached_prompt_tokens += cached
            if prefill:
                state.start_prefill(seq_len)
            else:
                state.decode_steps += 1
            prefilling.append(prefill)
        if len(set(prefilling)) == 2:
            self.mixed_calls += 1
        step = _Step(key, requests, ids, states, prefilling)
        self._recent_steps = [step] + self._recent_steps[:3]
        return step

    def attention(self, original, impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs):
        if attn_metadata is None or self.default_spec is None:  # profiling / warm-up run
            return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        info = self._layer_info.get(id(layer))
        if info is None:
            info = self._layer_info[id(layer)] = self._classify(layer, impl)
        index, sliding = info
        step = self._step(attn_metadata)  # every layer keeps the step count (prompt, decode steps)
        if sliding or not step.touched:
            # A sliding-window layer, or every request dense: the backend's attention, untouched.
            return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        heads, kv_heads, dim = impl.num_heads, impl.num_kv_heads, impl.head_size
        out = output.view(output.shape[0], heads, dim)
        q = query.view(query.shape[0], heads, dim)
        k = key.view(key.shape[0], kv_heads, dim)
        v = value.view(value.shape[0], kv_heads, dim)
        views = self._block_views(kv_cache, q)  # CUDA: batched decode straight from the blocks
        handled = [False] * len(step.requests)  # requests whose output rows the handler computes
        prefills, decodes, quest_batch, compact_batch = [], [], [], []
        for row, (state, (start, query_len, seq_len)) in enumerate(zip(step.states, step.requests)):
            if not (state.touches_attention or state.kv_lengths):
                continue
            method, pager, compacted = state.method, state.pager, state.kv_lengths.get(index) is not None
            if step.prefilling[row]:
                res = None
                if method.computes_prefill():
                    res = method.prefill(
                        q[start : start + query_len],
                        k[start : start + query_len],
                        v[start : start + query_len],
                        layer_index=index,
                        scale=impl.scale,
                    )
                prefills.append((row, state, res))
                handled[row] = res is not None
            elif not compacted and pager is not None:
                if views is not None and pager.page_size == views[0].shape[1]:
                    quest_batch.append((row, state, pager, start, seq_len))
                else:
                    decodes.append((self._decode_paged, row, state, start, seq_len))
                handled[row] = True
            elif views is not None and compacted and not method.computes_decode():
                compact_batch.append((row, state, start, seq_len))
                handled[row] = True
            elif compacted or method.computes_decode():
                decodes.append((self._decode, row, state, start, seq_len))
                handled[row] = True
        self._run_backend(
            original, impl, layer, query, key, value, kv_cache, attn_metadata, output, step, handled, args, kwargs
        )
        for row, state, res in prefills:
            start, length, seq_len = step.requests[row]
            if res is not None:
                out[start : start + length] = res.output.to(out.dtype)
                state.prefill_density[index] = float(res.density.float().mean())
            # after the backend: compaction rewrites the cache that a dense prefill reads
            self._after_prefill(
                state, index, impl, layer, q, k, v, kv_cache, attn_metadata, row, start, length, views, seq_len
            )
        for decode, row, state, start, seq_len in decodes:
            decode(state, index, impl, layer, q, k, out, kv_cache, attn_metadata, row, start, seq_len)
        if quest_batch:
            self._decode_quest_batch(quest_batch, index, impl, q, k, out, views, attn_metadata, step)
        if compact_batch:
            self._decode_compact_batch(compact_batch, index, impl, q, out, views, attn_metadata, step)
        return output

    def _run_backend(
        self, original, impl, layer, query, key, value, kv_cache, meta, output, step, handled, args, kwargs
    ):
        """The backend's attention for every request the handler does not compute."""
        requests = step.requests
        runs, first = [], None  # contiguous runs [first, stop) of unhandled requests
        for row, done in enumerate(handled + [True]):
            if not done and first is None:
                first = row
            elif done and first is not None:
                runs.append((first, row))
                first = None
        rows = sum(requests[b - 1][0] + requests[b - 1][1] - requests[a][0] for a, b in runs)
        self.backend_rows += rows
        self.skipped_rows += sum(r[1] for r in requests) - rows
        if runs == [(0, len(requests))]:
            original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs)
            return
        subs = step.cached(
            ("sub", id(meta), tuple(runs)),
            lambda: [self.adapter.sub_batch(meta, requests, a, b, impl, layer, query) for a, b in runs],
        )
        if any(sub is None for sub in subs):  # cannot split this batch: all of it (handled rows are written after)
            original(impl, layer, query, key, value, kv_cache, meta, output, *args, **kwargs)
            return
        for (a, b), sub in zip(runs, subs):
            r0, r1 = requests[a][0], requests[b - 1][0] + requests[b - 1][1]
            original(impl, layer, query[r0:r1], key[r0:r1], value[r0:r1], kv_cache, sub, output[r0:r1], *args, **kwargs)

    @property
    def summaries(self):
        if self._summaries is None:  # imported late: Triton only where the batched CUDA path runs
            from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

            self._summaries = SummaryPool()
        return self._summaries

    def _block_views(self, kv_cache, q):
        views = self.adapter.cache.block_views(kv_cache)
        return views if views is not None and use_triton(q) else None

    def _decode_quest_batch(self, batch, index, impl, q, k, out, views, meta, step):
        """Every Quest decode request of the step at once (pages read through the block table)."""
        from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

        page = views[0].shape[1]
        pool = self.summaries.get(index, views[0])
        # The same requests on every global layer of the step: their index tensors are made once.
        plan = step.cached(
            ("quest", id(meta), tuple(b[0] for b in batch)), lambda: self._quest_plan(batch, q.device, meta, page, impl)
        )
        tokens, last_blocks, fresh, groups = plan
        SummaryPool.add_keys(pool, k[tokens], last_blocks, fresh)
        for quest, pick_tokens, states in groups:  # one set of launches per page-sharing mode
            _write_rows(
                out,
                pick_tokens,
                lambda into: quest.decode(q[pick_tokens], views[0], views[1], pool, impl.scale, out=into),
            )
            for state, density in zip(states, quest.density):
                state.decode_density[index] += density
                state.decode_handled[index] += 1

    @staticmethod
    def _quest_plan(batch, dev, meta, page, impl):
        from sparse_frontier.vllm_plugin.paged_decode import QuestStep

        tokens = _token_rows([b[3] for b in batch], dev)
        seq = torch.tensor([b[4] for b in batch], device=dev)
        tables = meta.block_table[torch.tensor([b[0] for b in batch], device=dev)]
        last_blocks = tables.gather(1, ((seq - 1) // page)[:, None]).squeeze(1).long()
        groups = []
        for share in sorted({b[2].share_pages for b in batch}):
            pick = [i for i, b in enumerate(batch) if b[2].share_pages == share]
            n_select = [batch[i][2].pages_to_select(batch[i][4]) for i in pick]
            idx = torch.tensor(pick, device=dev)
            quest = QuestStep(
                tables[idx],
                [batch[i][4] for i in pick],
                n_select,
                page,
                share,
                impl.num_heads // impl.num_kv_heads,
                impl.num_kv_heads,
            )
            rows = tokens if len(pick) == len(batch) else _token_rows([batch[i][3] for i in pick], dev)
            groups.append((quest, rows, [batch[i][1] for i in pick]))
        return tokens, last_blocks, (seq - 1) % page == 0, groups

    def _decode_compact_batch(self, batch, index, impl, q, out, views, meta, step):
        """Every decode request of the step whose cache was compacted (SnapKV, Ada-SnapKV) at once."""
        from sparse_frontier.vllm_plugin.paged_decode import compacted_attention

        page = views[0].shape[1]
        dev = q.device

        def plan():  # the step's index tensors, shared by its layers
            seq = torch.tensor([b[3] for b in batch], device=dev, dtype=torch.int32)
            return (
                _token_rows([b[2] for b in batch], dev),
                meta.block_table[torch.tensor([b[0] for b in batch], device=dev)].to(torch.int32).contiguous(),
                torch.tensor([b[1].prompt_len for b in batch], device=dev, dtype=torch.int32),
                seq,
                seq[:, None].expand(len(batch), impl.num_kv_heads).contiguous(),
            )

        tokens, tables, prompts, seq, lengths = step.cached(("compact", id(meta), tuple(b[0] for b in batch)), plan)
        kept = torch.stack([b[1].kv_lengths_device[index] for b in batch])  # [R, Hkv], on the device
        longest = max(b[1].kv_longest[index] for b in batch)
        width = -(-longest // page) + max(-(-b[3] // page) - b[1].prompt_len // page for b in batch)
        _write_rows(
            out,
            tokens,
            lambda into: compacted_attention(
                q[tokens], views[0], views[1], tables, kept, prompts, seq, page, impl.scale, width, lengths, into
            ),
        )
        for _, state, _, seq_len in batch:  # tokens read: the kept prompt tokens + every generated one
            kept_mean = state.kv_density[index] * state.prompt_len
            state.decode_density[index] += (kept_mean + seq_len - state.prompt_len) / seq_len
            state.decode_handled[index] += 1

    def _classify(self, layer, impl) -> tuple[int, bool]:
        """(layer index, whether it is a sliding-window layer), once per layer object."""
        index = layer_index(layer)
        window = self.adapter.sliding_window(layer, impl)
        if window is not None and not self.sliding_layers_seen:
            log.info(
                "sparse_frontier: layer %d has a %d-token sliding window: sliding-window layers run "
                "the backend's attention, methods apply to the global layers only",
                index,
                window,
            )
        (self.sliding_layers_seen if window is not None else self.layers_seen).add(index)
        return index, window is not None

    def _after_prefill(
        self, state, index, impl, layer, q, k, v, kv_cache, meta, row, start, length, views=None, seq_len=None
    ):
        """A prefill's cache-side work: Quest page summaries, KV compaction. ``seq_len`` > ``length``:
        the prompt's first tokens came from vLLM's prefix cache (dense-prefill methods only)."""
        method, end = state.method, start + length
        pager = state.pager
        if pager is not None:
            keys = k[start:end]
            if seq_len is not None and seq_len > length:  # the whole prompt's keys, from the cache
                positions = torch.arange(seq_len, device=kv_cache.device)
                keys = self.adapter.cache.gather(kv_cache, meta.block_table[row], positions, layer)[0].transpose(0, 1)
            if views is not None and pager.page_size == views[0].shape[1]:
                from sparse_frontier.vllm_plugin.paged_decode import SummaryPool

                SummaryPool.write_prompt(
                    self.summaries.get(index, views[0]), keys, meta.block_table[row], pager.page_size
                )
            else:
                from sparse_frontier.kernels.quest import page_summaries

                pmin, pmax = page_summaries(keys.transpose(0, 1)[None], pager.page_size)
                state.pages[index] = [pmin[0].contiguous(), pmax[0].contiguous()]
        if method.compacts_kv():
            selection = method.compress_kv(
                q[start:end], k[start:end], v[start:end], layer_index=index, scale=impl.scale
            )
            if selection is not None:
                self._compact(selection, k[start:end], v[start:end], kv_cache, meta, row, layer, index, state)

    def _compact(self, selection, keys, values, kv_cache, meta, row, layer, index, state):
        """Move each kv head's kept tokens to positions [0, kept) of the request's blocks."""
        positions = [p.to(torch.long) for p in selection.indices]
        lengths = torch.tensor([len(p) for p in positions])
        longest = int(lengths.max())
        kept_k = keys.new_zeros(len(positions), longest, keys.shape[-1])
        kept_v = torch.zeros_like(kept_k)
        for h, pos in enumerate(positions):
            kept_k[h, : len(pos)] = keys[pos, h]
            kept_v[h, : len(pos)] = values[pos, h]
        targets = [torch.arange(int(n), device=keys.device) for n in lengths]
        self.adapter.cache.scatter_per_head(kv_cache, meta.block_table[row], targets, kept_k, kept_v, layer)
        state.kv_lengths[index] = lengths
        state.kv_lengths_device[index] = lengths.to(keys.device, torch.int32)  # as the kernels read it
        state.kv_longest[index] = longest
        state.kv_density[index] = float(lengths.float().mean()) / keys.shape[0]

    def _decode(self, state, index, impl, layer, q, k, out, kv_cache, meta, row, token, seq_len):
        method = state.method
        lengths = state.kv_lengths.get(index)
        block_row, device = meta.block_table[row], kv_cache.device
        if lengths is None:
            positions = torch.arange(seq_len, device=device)
            keys, values = self.adapter.cache.gather(kv_cache, block_row, positions, layer)
            valid = None
        else:
            # The compacted prefix of each head, then every token generated since the prefill.
            recent = torch.arange(state.prompt_len, seq_len, device=device)
            positions = [torch.cat([torch.arange(int(n), device=device), recent]) for n in lengths]
            keys, values = self.adapter.cache.gather_per_head(kv_cache, block_row, positions, layer)
            valid = (lengths + len(recent)).to(device)
        density = 1.0 if valid is None else float(valid.float().mean()) / seq_len
        res = None
        if method.computes_decode():
            res = method.decode(q[token], keys, values, layer_index=index, scale=impl.scale, lengths=valid)
        if res is not None:
            out[token] = res.output.to(out.dtype)
            density *= float(res.density.float().mean())
        else:
            out[token] = decode_attention(q[token], keys, values, impl.scale, valid).to(out.dtype)
        state.decode_density[index] += density
        state.decode_handled[index] += 1

    def _decode_paged(self, state, index, impl, layer, q, k, out, kv_cache, meta, row, token, seq_len):
        """Page-selecting decode (Quest): read the page summaries and the selected pages only."""
        method = state.pager
        page = method.page_size
        pmin, pmax = state.pages[index]
        new_key, slot = k[token], (seq_len - 1) // page
        if slot >= pmin.shape[1]:  # the new token opens a page
            state.pages[index] = [torch.cat([pmin, new_key[:, None]], 1), torch.cat([pmax, new_key[:, None]], 1)]
        else:
            pmin[:, slot] = torch.minimum(pmin[:, slot], new_key)
            pmax[:, slot] = torch.maximum(pmax[:, slot], new_key)
        pmin, pmax = state.pages[index]
        pages = method.select_from_summaries(q[token], pmin, pmax, seq_len)  # [Hsel, N], -1 = none
        group = impl.num_heads // impl.num_kv_heads
        offsets = torch.arange(page, device=pages.device)
        positions = []
        for chosen in pages:
            chosen = chosen[chosen >= 0].long()
            pos = (chosen[:, None] * page + offsets).flatten()
            positions.append(pos[pos < seq_len])
        shared = len(positions) == impl.num_kv_heads
        heads = None if shared else [h // group for h in range(len(positions))]
        keys, values = self.adapter.cache.gather_per_head(kv_cache, meta.block_table[row], positions, layer, heads)
        read = torch.tensor([len(p) for p in positions], device=keys.device)
        out[token] = decode_attention(q[token], keys, values, impl.scale, read).to(out.dtype)
        per_query_head = read.repeat_interleave(group) if shared else read
        state.decode_density[index] += float(per_query_head.float().mean()) / seq_len
        state.decode_handled[index] += 1

    # -- statistics --------------------------------------------------------------------------
    def take_stats(self) -> dict[str, dict[str, Any]]:
        """Per-request summaries; requests vLLM no longer holds are returned once, then dropped."""
        summaries = {
            req_id: state.summary(len(self.layers_seen), len(self.sliding_layers_seen))
            for req_id, state in self.states.items()
        }
        live = set(self.runner.requests) if self.runner is not None else set()
        self.states = {r: s for r, s in self.states.items() if r in live}
        return summaries


def _token_rows(rows: list[int], device):
    """Query rows of a batch of decode requests: a slice when they are consecutive (the usual case:
    a view, so reading and writing them costs no gather), else an index tensor."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return slice(rows[0], rows[0] + len(rows))
    return torch.tensor(rows, device=device)


def _write_rows(out: torch.Tensor, rows, compute) -> None:
    """``out[rows] = compute(into)``: consecutive rows of the right dtype are computed in place (the
    kernel writes the layer's output rows), others through a buffer."""
    if isinstance(rows, slice) and out[rows].is_contiguous():
        compute(out[rows])
    else:
        out[rows] = compute(None).to(out.dtype)


HANDLER = AttentionHandler()


def install(spec: dict[str, Any]) -> None:
    """Route the backend's attention through :data:`HANDLER` (idempotent per process)."""
    adapter = current_adapter()
    impl = adapter.load_impl()
    if not hasattr(impl, _ORIGINAL):
        original = impl.forward

        def forward(self, layer, query, key, value, kv_cache, attn_metadata, output=None, *args, **kwargs):
            return HANDLER.attention(
                original, self, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs
            )

        setattr(impl, _ORIGINAL, original)
        impl.forward = forward
    HANDLER.configure(spec, adapter)


def attach_runner_rpc(worker) -> int:
    """``LLM.collective_rpc`` target: give the handler the worker's model runner; returns the TP rank."""
    HANDLER.runner = worker.model_runner
    return int(getattr(worker, "rank", 0))


def take_stats_rpc(worker=None) -> dict[str, dict[str, Any]]:
    """``LLM.collective_rpc`` target: per-request statistics of this worker (one TP rank)."""
    return HANDLER.take_stats()
