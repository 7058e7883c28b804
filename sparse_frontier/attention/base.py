"""Base class of every attention method: parameters and hooks with dense fallbacks (registry: ``registry.py``).

The vLLM handler calls a method through three hooks, one request at a time, on contiguous tensors
(the handler gathers them from vLLM's paged cache; methods never see vLLM). Each hook returns
``None`` to mean "use the backend's own dense attention" (the fallback), so a method overrides only
the phase it changes: prefill methods ``prefill``, decode methods ``decode``, KV-compression
methods ``compress_kv``.

Shapes (T prompt tokens, S cached tokens, Hq query heads, Hkv kv heads, D head dim; RoPE already
applied; query head h uses kv head ``h // (Hq // Hkv)``, GQA without repeating K/V):

- ``prefill(query [T, Hq, D], key [T, Hkv, D], value [T, Hkv, D], *, layer_index, scale)``
  -> :class:`AttentionResult` with ``output [T, Hq, D]`` (causal attention over what the method
  keeps) and ``density [Hq]`` = computed causal query-key pairs / (T (T + 1) / 2) per query head.
- ``decode(query [Hq, D], key [Hkv, S, D], value [Hkv, S, D], *, layer_index, scale, lengths)``
  -> :class:`AttentionResult` with ``output [Hq, D]`` and ``density [Hq]`` = keys attended / valid
  keys. ``lengths [Hkv]`` (or None) is the number of valid cached tokens per kv head after KV
  compression; positions past it are padding and must be ignored. The newest token is the last
  valid position of every head.
- ``compress_kv(query [T, Hq, D], key [T, Hkv, D], value [T, Hkv, D], *, layer_index, scale)``
  -> :class:`KVSelection`: per kv head, the sorted token positions to keep after prefill.

Density is counted from what the method actually computes (the paper's way): prefill methods count
every causal pair their kernel evaluates (whole blocks cut by causality, column strips), Quest the
tokens of the pages it reads. Handlers average it over heads and layers.

Target sparsity: every sparse method has a ``sparsity`` parameter (the user's knob) and its own
hyperparameters (0 / -1 = "derive from sparsity"; explicit values win). Methods whose mapping needs
calibration look it up by model name: the handler calls ``method.bind(model=<config model name>)``
once after construction (optional; unbound methods calibrate on each call, see ``calibration/``).

What a method does is declared, not guessed from its attributes: :meth:`AttentionMethod.computes_prefill`,
:meth:`~AttentionMethod.computes_decode` and :meth:`~AttentionMethod.compacts_kv` (by default: whether
the class overrides that hook) and :meth:`~AttentionMethod.page_selector` (its page-selecting part,
a :class:`PageSelector`: Quest). The vLLM handler routes each request by these declarations.

Prefill x decode combinations: the method name ``"a+b"`` (e.g. ``vertical_slash+quest``,
``block_sparse+snapkv``) builds a ``Combined`` method (``combined.py``) from components of different phases;
its parameters are the union of theirs, and a name both define gets the component's phase as a
prefix (``prefill_sparsity``, ``decode_sparsity``, ``kv_sparsity``). Each hook goes to the component
of its phase (others fall back to dense).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from sparse_frontier.params import Parameterised


@dataclass
class AttentionResult:
    output: torch.Tensor
    #: fraction of the dense work actually computed, per query head (1 = dense)
    density: torch.Tensor


@dataclass
class KVSelection:
    #: one sorted LongTensor of kept token positions per kv head (lengths may differ per head)
    indices: list[torch.Tensor]

    def lengths(self) -> torch.Tensor:
        return torch.tensor([len(i) for i in self.indices])


class PageSelector(Protocol):
    """A decode method that picks whole pages of the cache from per-page key summaries (Quest).

    The vLLM handler keeps the element-wise min/max of every page's keys per (request, layer, kv
    head) and, per decode step, reads only the pages the method selects from them."""

    page_size: int
    #: a GQA group reads the same pages (scores summed over the group)
    share_pages: bool

    def pages_to_select(self, s: int) -> int:
        """Pages selected besides the current one when ``s`` tokens are cached."""
        ...

    def select_from_summaries(self, query, pmin, pmax, s: int) -> torch.Tensor:
        """Pages ``[Hsel, N]`` (-1 = none) for ``query [Hq, D]`` from summaries ``[Hkv, >=P, D]``."""
        ...


@dataclass
class AttentionMethod(Parameterised):
    name: ClassVar[str]
    #: which phase the method sparsifies: "none" (dense), "prefill", "decode" or "kv"
    phase: ClassVar[str] = "none"
    #: Taxonomy (paper Table 1, read by :mod:`sparse_frontier.analysis.registry_tables`): the name in
    #: figures and tables (None: the registered name), the unit of sparsification, how the budget is
    #: allocated (across heads / by threshold) and what happens to the KV cache. The defaults describe
    #: dense attention, which is right for dense and for methods that leave attention dense (the
    #: ``capture_estimation`` recorder); a sparse method sets all four.
    display_name: ClassVar[str | None] = None
    unit: ClassVar[str] = "none"
    budget_allocation: ClassVar[str] = "none"
    kv_cache: ClassVar[str] = "untouched"

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        return None

    def decode(self, query, key, value, *, layer_index: int, scale: float, lengths=None) -> AttentionResult | None:
        return None

    def compress_kv(self, query, key, value, *, layer_index: int, scale: float) -> KVSelection | None:
        return None

    # -- what the method does (the handler routes by these; a method overriding a hook says so) --
    @classmethod
    def computes_prefill(cls) -> bool:
        """Whether ``prefill`` may compute a prompt's output rows (else the backend's dense prefill)."""
        return cls.prefill is not AttentionMethod.prefill

    @classmethod
    def computes_decode(cls) -> bool:
        """Whether decode steps go through ``decode`` (it sees the tokens the request may read)."""
        return cls.decode is not AttentionMethod.decode

    @classmethod
    def compacts_kv(cls) -> bool:
        """Whether ``compress_kv`` may select the tokens kept in the cache after the prefill."""
        return cls.compress_kv is not AttentionMethod.compress_kv

    def page_selector(self) -> PageSelector | None:
        """The part of this method that selects pages from summaries (Quest), or None."""
        return None

    @classmethod
    def shares_prompt_cache(cls) -> bool:
        """Whether a request of this method may start from another request's cached prompt KV (vLLM's
        prefix caching): its prefill is the backend's dense attention and it never rewrites the
        cache, so its prompt's KV is exactly dense attention's (dense, Quest; not the sparse
        prefills, whose later layers' KV differ, nor KV compression, which rewrites the blocks)."""
        return not cls.computes_prefill() and not cls.compacts_kv()

    def bind(self, *, model: str | None = None) -> AttentionMethod:
        """Tell the method which model it serves (the config's model name), for calibration lookups."""
        self._model = model
        return self

    @property
    def model(self) -> str | None:
        return getattr(self, "_model", None)
