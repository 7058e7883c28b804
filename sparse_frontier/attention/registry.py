"""The method registry: name -> method class, the string the config and paths use.

Method modules register their classes here (``@register_method``); importing
:mod:`sparse_frontier.attention` imports every method module, so its ``get_method_class`` knows them
all. A name ``a+b`` builds, on first use, the combination of registered methods of different phases
(:func:`~sparse_frontier.attention.combined.combine`). Decided from the classes as well: which
methods' requests may share a prompt's cached KV (:func:`shares_prompts`, :func:`chunk_shares_prompts`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sparse_frontier.attention.base import AttentionMethod
from sparse_frontier.attention.combined import combine
from sparse_frontier.params import Registry

METHODS = Registry("attention method")


def register_method(cls: type[AttentionMethod]) -> type[AttentionMethod]:
    return METHODS.register(cls)


def get_method_class(name: str) -> type[AttentionMethod]:
    if "+" in name and name not in METHODS.names():
        return METHODS.register(combine([METHODS.get(part) for part in name.split("+")]))
    return METHODS.get(name)


def shares_prompts(methods: Iterable[str]) -> bool:
    """Whether requests of these methods may share a prompt's cached KV (vLLM's prefix caching): every
    one has a dense prefill that leaves the cache as it is (``AttentionMethod.shares_prompt_cache``).
    The sweeps put such runs first in a dataset's chunks (``sweeps.plan_sweeps``)."""
    return all(get_method_class(name).shares_prompt_cache() for name in methods)


def chunk_shares_prompts(specs: Iterable[Mapping[str, Any]]) -> bool:
    """Whether one job of these method settings (``{"method": name, "params": {...}}``) shares each
    prompt's cached KV between some of its requests: two or more distinct settings of methods that
    :func:`shares_prompts`. The engine turns prefix caching on for such a job and gives each request
    of the job's other methods a cache of its own (``vllm_plugin.engine.Engine``: a unique
    ``cache_salt``); the GPU-hours estimate pays the sharing settings' prefill once (``planning.jobs``)."""
    sharing = {json.dumps(dict(s), sort_keys=True) for s in specs if shares_prompts([s["method"]])}
    return len(sharing) > 1
