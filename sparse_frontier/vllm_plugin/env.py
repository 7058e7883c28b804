"""What a run asks of the plugin, through the environment its engine's processes inherit.

Shared by the entry point (:func:`sparse_frontier.vllm_plugin.register`), the handler and the engine
runner, so none of them imports another for it.
"""

from __future__ import annotations

import json
import os

ENV_METHOD = "SPARSE_FRONTIER_ATTENTION"
#: "1" when the engine's prefix caching is on (a sweep of dense-prefill methods): a request's first
#: step may then be a single prompt token on top of cached ones (attention.chunk_shares_prompts)
ENV_PREFIX_CACHING = "SPARSE_FRONTIER_PREFIX_CACHING"
#: "1": the batched CUDA decode paths replay the handler's own CUDA graphs (``engine.handler_graphs``,
#: :mod:`.decode_graphs`); unset or "0": they launch their kernels eagerly, unpadded
ENV_HANDLER_GRAPHS = "SPARSE_FRONTIER_HANDLER_GRAPHS"


def handler_graphs() -> bool:
    """Whether this process's run asked for the handler's decode graphs (read per step: an engine may follow another)."""
    return os.environ.get(ENV_HANDLER_GRAPHS) == "1"


def requested_method() -> dict | None:
    """The method this process's run asked for: ``{"method": name, "params": {...}}`` or None."""
    raw = os.environ.get(ENV_METHOD)
    if not raw:
        return None
    example = '{"method": "quest", "params": {"sparsity": 0.9}}'
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"environment variable {ENV_METHOD}={raw[:200]!r} is not valid JSON ({err.msg} at character "
            f"{err.pos}); it must be a JSON object with a 'method' key, e.g. {example}, or unset for stock vLLM"
        ) from None
    if not isinstance(spec, dict) or "method" not in spec:
        raise ValueError(
            f"environment variable {ENV_METHOD}={raw[:200]!r} must be a JSON object with a 'method' key, "
            f"e.g. {example}, or unset for stock vLLM"
        )
    return spec
