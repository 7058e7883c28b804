"""Prefill x decode combinations: ``"a+b"`` is one method whose hooks go to the component of their phase.

Parameters are the union of the components'; a name both define gets the component's phase as a
prefix (``vertical_slash+quest`` has ``prefill_sparsity`` and ``decode_sparsity``), so paths stay
short and unambiguous: ``vertical_slash+quest/approximation_size~256+decode_sparsity~0.9+...``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from sparse_frontier.attention.base import AttentionMethod, AttentionResult, KVSelection, PageSelector

HOOK_OF_PHASE = {"prefill": "prefill", "decode": "decode", "kv": "compress_kv"}


@dataclass
class Combined(AttentionMethod):
    phase = "combined"
    #: (component class, {combined field name: component field name})
    parts: ClassVar[tuple] = ()

    def __post_init__(self):
        self.components = {}
        for cls, names in self.parts:
            params = {inner: getattr(self, outer) for outer, inner in names.items()}
            try:
                self.components[cls.phase] = cls(**params)
            except ValueError as err:
                prefix = {v: k for k, v in names.items()}
                raise ValueError(f"{self.name!r} (fields may carry a phase prefix: {prefix}): {err}") from None

    def bind(self, *, model: str | None = None) -> Combined:
        super().bind(model=model)
        for c in self.components.values():
            c.bind(model=model)
        return self

    # -- declarations: those of the component of each phase --
    @classmethod
    def _part_class(cls, phase: str) -> type[AttentionMethod] | None:
        return next((part for part, _ in cls.parts if part.phase == phase), None)

    @classmethod
    def computes_prefill(cls) -> bool:
        part = cls._part_class("prefill")
        return part is not None and part.computes_prefill()

    @classmethod
    def computes_decode(cls) -> bool:
        # With a KV part too: the decode steps over its compacted cache go through this decode hook
        # (dense over the kept tokens when there is no decode part), the handler's per-request path,
        # as they always have (the batched compacted decode serves KV methods alone).
        decode, kv = cls._part_class("decode"), cls._part_class("kv")
        return (decode is not None and decode.computes_decode()) or (kv is not None and kv.compacts_kv())

    @classmethod
    def compacts_kv(cls) -> bool:
        part = cls._part_class("kv")
        return part is not None and part.compacts_kv()

    def page_selector(self) -> PageSelector | None:
        part = self._part("decode")
        return part.page_selector() if part is not None else None

    def _part(self, phase):
        return self.components.get(phase)

    def prefill(self, query, key, value, *, layer_index: int, scale: float) -> AttentionResult | None:
        part = self._part("prefill")
        return part.prefill(query, key, value, layer_index=layer_index, scale=scale) if part else None

    def decode(self, query, key, value, *, layer_index: int, scale: float, lengths=None) -> AttentionResult | None:
        part = self._part("decode")
        return part.decode(query, key, value, layer_index=layer_index, scale=scale, lengths=lengths) if part else None

    def compress_kv(self, query, key, value, *, layer_index: int, scale: float) -> KVSelection | None:
        part = self._part("kv")
        return part.compress_kv(query, key, value, layer_index=layer_index, scale=scale) if part else None


def combine(classes: Sequence[type[AttentionMethod]]) -> type[Combined]:
    """The combination of these method classes (of different phases), named ``"+".join`` of their names."""
    parts = [c.name for c in classes]
    name = "+".join(parts)
    phases = [c.phase for c in classes]
    bad = [c.name for c in classes if c.phase not in HOOK_OF_PHASE]
    if bad or len(set(phases)) != len(phases) or len(parts) < 2:
        raise ValueError(
            f"method {name!r}: a combination joins with '+' two or three sparse methods of different "
            f"phases (one of prefill, decode, kv); got phases {dict(zip(parts, phases))}"
        )
    counts: dict[str, int] = {}
    for c in classes:
        for f in dataclasses.fields(c):
            counts[f.name] = counts.get(f.name, 0) + 1
    fields, mapping = [], []
    for c in classes:
        names = {}
        for f in dataclasses.fields(c):
            outer = f.name if counts[f.name] == 1 else f"{c.phase}_{f.name}"
            names[outer] = f.name
            fields.append((outer, f.type, dataclasses.field(default=f.default)))
        mapping.append((c, names))
    # taxonomy: each component's entry, in the order named (a combination is no row of Table 1)
    taxonomy = {
        attr: " + ".join(getattr(c, attr) or c.name for c in classes)
        for attr in ("display_name", "unit", "budget_allocation", "kv_cache")
    }
    cls = dataclasses.make_dataclass(
        "Combined_" + "_".join(parts),
        fields,
        bases=(Combined,),
        namespace={"name": name, "parts": tuple(mapping), **taxonomy},
    )
    cls.__doc__ = f"Combination of {', '.join(parts)} (prefix = phase where names clash)."
    return cls
