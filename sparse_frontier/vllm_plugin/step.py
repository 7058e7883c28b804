"""Once per scheduler step: the batch split into its requests, their states, prefill or decode each.

A step is one forward pass (:func:`adapters.forward_pass`), not one metadata object: a model with
several KV-cache groups (vLLM's hybrid KV-cache manager: Gemma 3's global layers in one group, its
sliding-window layers in others) gets one metadata object per group, which share the batch layout
(``query_start_loc``, ``seq_lens``) but not the block table. So the request split is computed once
per step (one GPU->CPU read of the batch layout), while every cache access uses the calling layer's
own metadata (its group's block table) and its own ``kv_cache`` (:class:`~.layer_call.LayerCall`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sparse_frontier.vllm_plugin.adapters import BackendAdapter, RequestSpan, forward_pass
from sparse_frontier.vllm_plugin.env import ENV_PREFIX_CACHING
from sparse_frontier.vllm_plugin.state import RequestState


class Step:
    """One scheduler step, shared by all layers: the batch split into requests (computed once), and
    what the layers of the step can share (sub-batch metadata, the batched decode's index tensors)."""

    __slots__ = ("key", "spans", "ids", "states", "prefilling", "touched", "shared")

    def __init__(self, key, spans: list[RequestSpan], ids: list[str], states: list[RequestState], prefilling):
        self.key, self.spans, self.ids, self.states = key, spans, ids, states
        self.prefilling: list[bool] = prefilling  # per request: this step computes (the rest of) its prompt
        self.touched = any(s.touches_attention or s.kv_lengths for s in states)
        self.shared: dict[Any, Any] = {}

    def cached(self, key, make):
        """``make()``, once per step and ``key`` (the step's layers share it)."""
        value = self.shared.get(key)
        if value is None:
            value = self.shared[key] = make()
        return value


class StepBuilder:
    """The step of each attention call, built on its first layer; counts what the steps held."""

    def __init__(self, request_ids: Callable[[int], list[str]], state_for: Callable[[str], RequestState]):
        self._request_ids = request_ids  # vLLM's ids of the batch's first n requests
        self._state_for = state_for  # a request's state (made on its first step)
        self._recent: list[Step] = []
        #: steps whose batch mixed prefill and decode requests (vLLM schedules them together)
        self.mixed_calls = 0
        self.cached_prompt_tokens = 0  # prompt tokens vLLM took from its prefix cache (not recomputed)

    def step(self, meta, adapter: BackendAdapter) -> Step:
        """The step this call belongs to, built once: every layer keeps the step count (prompt, decode steps)."""
        key = forward_pass(meta)
        for step in self._recent:
            if step.key is key:
                return step
        spans = adapter.requests(meta)
        ids = self._request_ids(len(spans))
        states = [self._state_for(r) for r in ids]
        prefix_caching = os.environ.get(ENV_PREFIX_CACHING) == "1"  # per step: an engine may follow another
        prefilling = []
        for req_id, state, span in zip(ids, states, spans):
            query_len, seq_len = span.query_len, span.seq_len
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
        step = Step(key, spans, ids, states, prefilling)
        self._recent = [step] + self._recent[:3]
        return step
