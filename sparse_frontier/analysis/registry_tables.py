"""The paper's taxonomy tables from the registries: methods (Table 1) and tasks (Table 2).

Each method and task class carries its own row as class attributes (``display_name``, ``unit``,
``budget_allocation``, ``kv_cache`` on :class:`~sparse_frontier.attention.base.AttentionMethod`;
``display_name``, ``dispersion``, ``scope``, ``natural`` on :class:`~sparse_frontier.tasks.base.Task`),
so a newly registered method or task appears in the tables without editing this module.

Which methods are rows: the registered *sparse* methods, i.e. of phase ``prefill``, ``decode`` or
``kv`` (KV compression counts as the paper's decode phase) with a ``sparsity`` parameter (the knob
every sparse method has, ``attention/base.py``). Dense (phase ``none``), ``a+b`` combinations (phase
``combined``) and helper methods without a ``sparsity`` knob (``capture_estimation``, the tests'
plugin methods) are not rows.

A registered sparse method or task that does not set its taxonomy attributes still gets a row (the
tables must not break because a new method was added): its name falls back to the registered name,
each missing entry reads ``"unspecified"``, and a warning names the class and the attributes to set.
``strict=True`` raises one ValueError naming every such class instead.
"""

from __future__ import annotations

import logging

import pandas as pd

log = logging.getLogger(__name__)

MISSING = "unspecified"
METHOD_COLUMNS = ["phase", "method", "name", "unit", "budget allocation", "KV cache"]
TASK_COLUMNS = ["task", "name", "family", "dispersion", "scope", "natural", "group"]
#: the paper's phases: KV compression (SnapKV, Ada-SnapKV) is a decode-phase method
PAPER_PHASE = {"prefill": "prefill", "kv": "decode", "decode": "decode"}
#: row order of Table 1: prefill, then KV eviction, then decode over the full cache (as the paper)
PHASE_ORDER = {"prefill": 0, "kv": 1, "decode": 2}
#: task families (the package under sparse_frontier/tasks) in the paper's order, with display names
FAMILIES = {"ruler": "RULER", "qa": "QA", "story": "Story"}
GROUPS = ("retrieval", "multi-hop", "aggregation")


#: Table 1's row order within a phase (the paper's); other registered methods follow in registration order
PAPER_METHOD_ORDER = ("vertical_slash", "flexprefill", "block_sparse", "snapkv", "ada_snapkv", "quest")


def _registered(registry) -> list[type]:
    # registration order (the import order of the package), which the paper's order follows within a family
    return registry.classes()


def _paper_rank(cls) -> int:
    return PAPER_METHOD_ORDER.index(cls.name) if cls.name in PAPER_METHOD_ORDER else len(PAPER_METHOD_ORDER)


def _unset(cls, base: type, attrs) -> list[str]:
    """Attributes of ``attrs`` that no class between ``cls`` and ``base`` (exclusive) defines."""
    own = [k for k in cls.__mro__ if k is not base and issubclass(k, base)]
    return [a for a in attrs if not any(a in vars(k) for k in own) or getattr(cls, a) is None]


def _problem(kind: str, cls, missing: list[str]) -> str:
    return (
        f"{kind} {cls.name!r} ({cls.__module__}.{cls.__qualname__}) sets no taxonomy attribute(s) {', '.join(missing)}"
    )


def _report(problems: list[str], strict: bool) -> None:
    """All classes lacking attributes at once: one ValueError (strict) or one warning each."""
    if problems and strict:
        raise ValueError("; ".join(problems) + ": set them as class attributes")
    for problem in problems:
        log.warning("%s: set them as class attributes; its table row reads %r", problem, MISSING)


def is_sparse_method(cls) -> bool:
    """A Table 1 row: phase prefill / decode / kv and a ``sparsity`` knob (see the module docstring)."""
    import dataclasses

    return cls.phase in PAPER_PHASE and any(f.name == "sparsity" for f in dataclasses.fields(cls))


def method_taxonomy(strict: bool = False) -> pd.DataFrame:
    """Table 1: one row per registered sparse method, prefill methods first, then decode.

    Columns ``phase`` ("prefill" / "decode"), ``method`` (registered name), ``name`` (display name),
    ``unit``, ``budget allocation``, ``KV cache``. Within the decode phase the KV-eviction methods
    come before Quest (which keeps the full cache), as in the paper; within a phase, the paper's order
    (:data:`PAPER_METHOD_ORDER`), then registration order. Missing attributes: see the module docstring (``strict`` raises).
    """
    from sparse_frontier.attention import METHODS
    from sparse_frontier.attention.base import AttentionMethod

    attrs = ("display_name", "unit", "budget_allocation", "kv_cache")
    classes = [c for c in _registered(METHODS) if is_sparse_method(c)]
    # paper order within a phase; stable, so methods the paper lacks keep their registration order
    classes.sort(key=lambda c: (PHASE_ORDER[c.phase], _paper_rank(c)))
    rows, problems = [], []
    for cls in classes:
        missing = _unset(cls, AttentionMethod, attrs)
        if missing:
            problems.append(_problem("method", cls, missing))
        value = {a: (MISSING if a in missing else getattr(cls, a)) for a in attrs}
        name = cls.name if "display_name" in missing else cls.display_name
        rows.append(
            (PAPER_PHASE[cls.phase], cls.name, name, value["unit"], value["budget_allocation"], value["kv_cache"])
        )
    _report(problems, strict)
    return pd.DataFrame(rows, columns=METHOD_COLUMNS)


def task_group(dispersion: str, scope: str) -> str:
    """The retrieval type from the two axes (spec/tasks.md): high scope = "aggregation" (CWE, Story
    Filtering), high dispersion = "multi-hop" (VT, Story Multi-hop), both low = "retrieval"."""
    if MISSING in (dispersion, scope):
        return MISSING
    if scope == "high":
        return "aggregation"
    return "multi-hop" if dispersion == "high" else "retrieval"


def _family(cls) -> str:
    parts = cls.__module__.split(".")
    return parts[2] if parts[:2] == ["sparse_frontier", "tasks"] and len(parts) > 3 else "other"


def task_taxonomy(strict: bool = False) -> pd.DataFrame:
    """Table 2: one row per registered task, in the paper's order (RULER, QA, Story; within a family
    retrieval, multi-hop, aggregation, then registration order).

    Columns ``task`` (registered name), ``name`` (display name), ``family`` (RULER / QA / Story: the
    task's package), ``dispersion`` and ``scope`` ("low" / "high"), ``natural`` ("yes" / "no"),
    ``group`` (:func:`task_group`: retrieval / multi-hop / aggregation, for the per-task figure).
    Missing attributes: see the module docstring (``strict`` raises).
    """
    from sparse_frontier.tasks import TASKS
    from sparse_frontier.tasks.base import Task

    attrs = ("display_name", "dispersion", "scope", "natural")
    rows, problems = [], []
    for cls in _registered(TASKS):
        missing = _unset(cls, Task, attrs)
        if missing:
            problems.append(_problem("task", cls, missing))
        dispersion = MISSING if "dispersion" in missing else cls.dispersion
        scope = MISSING if "scope" in missing else cls.scope
        natural = MISSING if "natural" in missing else ("yes" if cls.natural else "no")
        family = _family(cls)
        rows.append(
            (
                cls.name,
                cls.name if "display_name" in missing else cls.display_name,
                FAMILIES.get(family, family),
                dispersion,
                scope,
                natural,
                task_group(dispersion, scope),
            )
        )
    _report(problems, strict)
    frame = pd.DataFrame(rows, columns=TASK_COLUMNS)
    family_rank = {name: i for i, name in enumerate(FAMILIES.values())}
    group_rank = {g: i for i, g in enumerate(GROUPS)}
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            family_rank.get(frame["family"][i], len(family_rank)),
            group_rank.get(frame["group"][i], len(group_rank)),
            i,
        ),
    )
    return frame.iloc[order].reset_index(drop=True)
