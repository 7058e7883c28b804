"""The vLLM plugin: entry point, attention handler, per-backend adapters, engine runner.

vLLM calls :func:`register` (entry point group ``vllm.general_plugins``) once in every process it
starts (main, engine core, workers). The run's attention method reaches those processes through the
environment variable :data:`ENV_METHOD`, set before the engine starts and inherited by every child
process; without it the plugin does nothing, so installing the package never changes stock vLLM.
"""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)

ENV_METHOD = "SPARSE_FRONTIER_ATTENTION"
#: "1" when the engine's prefix caching is on (a sweep of dense-prefill methods): a request's first
#: step may then be a single prompt token on top of cached ones (attention.chunk_shares_prompts)
ENV_PREFIX_CACHING = "SPARSE_FRONTIER_PREFIX_CACHING"


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


def register() -> None:
    """vLLM entry point: install the attention handler if this run asked for one (re-entrant)."""
    spec = requested_method()
    if spec is None:
        return
    from sparse_frontier.vllm_plugin.handler import install

    install(spec)
