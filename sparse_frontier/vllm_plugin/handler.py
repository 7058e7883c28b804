"""The attention handler: sees every attention call of the model and routes it through the method.

Installed into the backend impl class of this process (see :mod:`adapters`); vLLM looks ``forward``
up at call time, so replacing it on the class reaches every layer of every model.

Per call, the handler finds the scheduler step the call belongs to (:mod:`step`: the batch split into
its requests from ``query_start_loc`` and ``seq_lens``, prefill or decode per request, once per
forward pass) and hands the layer's call (:mod:`layer_call`) to the router (:mod:`router`), which
calls each request's method hooks, lets the backend compute only the rest, and runs the decode paths
(:mod:`decode_paths`, :mod:`quest_paths`, :mod:`compacted`).

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
from typing import Any

from sparse_frontier.attention import get_method_class
from sparse_frontier.vllm_plugin.adapters import BackendAdapter, current_adapter, layer_index
from sparse_frontier.vllm_plugin.layer_call import LayerCall
from sparse_frontier.vllm_plugin.router import LayerRouter
from sparse_frontier.vllm_plugin.state import RequestState
from sparse_frontier.vllm_plugin.step import StepBuilder

log = logging.getLogger(__name__)

_ORIGINAL = "_sparse_frontier_original_forward"
EXTRA_ARGS_KEY = "sparse_frontier"


class AttentionHandler:
    def __init__(self):
        self.default_spec: dict[str, Any] | None = None
        self.adapter: BackendAdapter | None = None
        self.runner = None  # vLLM's model runner (attached after start-up): request ids, params
        self.states: dict[str, RequestState] = {}
        self._methods: dict[str, Any] = {}
        #: global (full-attention) layers seen: the method applies to these
        self.layers_seen: set[int] = set()
        #: sliding-window layers seen: always the backend's own attention
        self.sliding_layers_seen: set[int] = set()
        self._layer_info: dict[int, tuple[int, bool]] = {}  # id(layer) -> (index, sliding window?)
        self.steps = StepBuilder(self._request_ids, self._state)
        self.router = LayerRouter()

    # -- what the steps and the router counted ---------------------------------------------
    @property
    def mixed_calls(self) -> int:
        """Steps whose batch mixed prefill and decode requests (vLLM schedules them together)."""
        return self.steps.mixed_calls

    @property
    def cached_prompt_tokens(self) -> int:
        """Prompt tokens vLLM took from its prefix cache (not recomputed)."""
        return self.steps.cached_prompt_tokens

    @property
    def backend_rows(self) -> int:
        """Query rows of global layers the backend computed."""
        return self.router.backend_rows

    @property
    def skipped_rows(self) -> int:
        """Query rows of global layers left to the handler (the handler's work)."""
        return self.router.skipped_rows

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
    def attention(self, original, impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs):
        if attn_metadata is None or self.default_spec is None:  # profiling / warm-up run
            return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        info = self._layer_info.get(id(layer))
        if info is None:
            info = self._layer_info[id(layer)] = self._classify(layer, impl)
        index, sliding = info
        step = self.steps.step(attn_metadata, self.adapter)  # every layer keeps the step count
        if sliding or not step.touched:
            # A sliding-window layer, or every request dense: the backend's attention, untouched.
            return original(impl, layer, query, key, value, kv_cache, attn_metadata, output, *args, **kwargs)
        call = LayerCall.of(
            backend=original,
            impl=impl,
            layer=layer,
            query=query,
            key=key,
            value=value,
            kv_cache=kv_cache,
            meta=attn_metadata,
            output=output,
            extra=(args, kwargs),
            index=index,
            step=step,
            adapter=self.adapter,
        )
        self.router.route(call)
        return output

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


def handler_installed_rpc(worker=None) -> bool:
    """``LLM.collective_rpc`` target: whether this worker's process has the handler installed (stock
    vLLM runs must answer False everywhere)."""
    return HANDLER.default_spec is not None
