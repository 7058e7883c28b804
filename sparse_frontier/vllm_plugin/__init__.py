"""The vLLM plugin: entry point, attention handler, per-backend adapters, engine runner, run environment (env).

The handler (``handler``) builds each scheduler step once (``step``, ``state``) and routes each layer's
call (``layer_call``, ``router``) through the decode paths (``decode_paths``, ``quest_paths``, ``compacted``),
whose batched CUDA decode may replay the handler's own CUDA graphs (``decode_graphs``).

vLLM calls :func:`register` (entry point group ``vllm.general_plugins``) once in every process it
starts (main, engine core, workers). The run's attention method reaches those processes through the
environment variable :data:`ENV_METHOD`, set before the engine starts and inherited by every child
process; without it the plugin does nothing, so installing the package never changes stock vLLM.
"""

from __future__ import annotations

from sparse_frontier.vllm_plugin.env import ENV_HANDLER_GRAPHS, ENV_METHOD, ENV_PREFIX_CACHING, requested_method

__all__ = ["ENV_HANDLER_GRAPHS", "ENV_METHOD", "ENV_PREFIX_CACHING", "register", "requested_method"]


def register() -> None:
    """vLLM entry point: install the attention handler if this run asked for one (re-entrant)."""
    spec = requested_method()
    if spec is None:
        return
    from sparse_frontier.vllm_plugin.handler import install

    install(spec)
