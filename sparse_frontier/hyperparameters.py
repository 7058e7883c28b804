"""The concrete hyperparameters a method setting uses at a prompt length (the paper's Table 6).

A setting is given as it appears in paths and tables: the method name and its arguments (the
``method_args`` path segment, values as strings, or a mapping). :func:`resolved` builds the method
with its own class and asks it what it uses at ``length`` tokens, so nothing here re-derives a
formula:

====================  =====================================================================
method                keys of the returned dict
====================  =====================================================================
dense                 (none)
vertical_slash        ``verticals``, ``slashes`` (``VerticalSlash.sizes``), ``source``
flexprefill           ``alpha``, ``min_budget`` (``FlexPrefill.settings``), ``source``
block_sparse          ``top_chunks`` (``BlockSparse.top``), ``chunk_size``
quest                 ``token_budget`` (= ``pages`` x ``page_size``; ``quest.budget_pages``),
                      ``pages``, ``page_size``
snapkv                ``token_capacity`` (``SnapKV.capacity``)
ada_snapkv            ``token_capacity``, ``min_head_capacity`` (tokens every kv head keeps at
                      least), ``min_head_capacity_ratio``
``a+b`` combination   each component's keys prefixed with its method name
                      (``vertical_slash_verticals``, ``quest_token_budget``, ...); ``source`` and
                      ``note`` unprefixed
====================  =====================================================================

``note`` (only when there is something to say) explains a value that could not be resolved (None).

Vertical-Slash and FlexPrefill read their values from a calibration table per (model, length)
(:mod:`sparse_frontier.attention.calibration`). A predict job uses the model's captured table
(``results/calibration/{model}.json``, rule ``calibrate_attention``) when the grid captures one,
else the built-in ``calibration_table.json`` (or the file ``SPARSE_FRONTIER_CALIBRATION`` names);
pass the captured table as ``calibration`` to resolve what those jobs use. ``source`` says which
table answered, or ``"method parameters"`` when the method needed none (explicit sizes, or
sparsity 0 = dense). Without an entry (another model, a length or sparsity outside the table) a
job would calibrate on each call's own attention, which no table can tell in advance: the values
are then None with a ``note``.

Lengths: ``length`` is the prompt's token count; the grid's prompts land in [0.95 L, L] and tables
report the target length L itself (calibration entries cover [0.9 L, L]; the formulas of
Block-Sparse, Quest and SnapKV move by at most 5% inside the window). Quest's budget is counted at
the first decode step's cache (``length`` tokens; it grows by one token a step).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparse_frontier import paths
from sparse_frontier.attention import calibration, get_method_class, quest
from sparse_frontier.attention.block_sparse import BlockSparse
from sparse_frontier.attention.combined import Combined
from sparse_frontier.attention.dense import Dense
from sparse_frontier.attention.snapkv import AdaSnapKV, SnapKV
from sparse_frontier.attention.vertical_slash import FlexPrefill, VerticalSlash

BUILT_IN = "built-in calibration table"
PARAMETERS = "method parameters"

_BOOLS = {"true": True, "false": False}
_PARSERS = {"int": int, "float": float, "str": str, "bool": lambda v: _BOOLS[v.lower()]}


def typed_params(method: str, method_args: str | Mapping[str, Any]) -> dict[str, Any]:
    """``method_args`` (the path segment, e.g. ``"chunk_size~16+sparsity~0.9"``, or a mapping whose
    values may be strings) as typed, validated parameters of the method's class (``from_params``)."""
    cls = get_method_class(method)
    args = paths.parse_args(method_args) if isinstance(method_args, str) else dict(method_args)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed = {}
    for name, value in args.items():
        field = fields.get(name)
        if field is None or not isinstance(value, str):
            typed[name] = value  # from_params names an unknown parameter with the valid ones
            continue
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        if kind not in _PARSERS and field.default is not dataclasses.MISSING:
            kind = type(field.default).__name__
        try:
            typed[name] = _PARSERS.get(kind, str)(value)
        except (ValueError, KeyError):
            raise ValueError(
                f"method {method!r}: {name}={value!r} is not a valid {kind}"
                + (" (true or false)" if kind == "bool" else "")
            ) from None
    return dataclasses.asdict(cls.from_params(typed))


def _table(calibration_table) -> tuple[list | None, str]:
    """(entries, source description) of a given table: a loaded ``{"entries": [...]}``, a list of
    entries, or a path to a table file; None: the table this process uses."""
    if calibration_table is None:
        path = calibration.table_path()
        own = BUILT_IN if path.resolve() == calibration.TABLE.resolve() else f"calibration table {path}"
        return None, own
    if isinstance(calibration_table, (str, Path)):
        with open(calibration_table) as f:
            return json.load(f)["entries"], f"calibration table {calibration_table}"
    if isinstance(calibration_table, Mapping):
        return list(calibration_table["entries"]), "given calibration table"
    return list(calibration_table), "given calibration table"


def _calibrated(method, length: int, names: tuple[str, str], ask, calibration_table) -> dict[str, Any]:
    """Values the method reads from a calibration table (``ask(t)`` -> a pair), or None + note."""
    entries, source = _table(calibration_table)
    consulted: list = []
    try:
        with calibration.resolving(entries, consulted):
            values = ask(length)
    except calibration.Uncalibrated:
        if method.model is None:
            why = "no model given, so no calibration entry applies"
        else:
            why = (
                f"the {source} has no {method.name} entry for model {method.model!r} covering length "
                f"{length} and sparsity {method.sparsity} with {method.calibration_key()}"
            )
        return {
            names[0]: None,
            names[1]: None,
            "source": source,
            "note": why + "; a run would calibrate on each call's own attention",
        }
    return {names[0]: values[0], names[1]: values[1], "source": source if consulted else PARAMETERS}


def _resolve_part(method, length: int, calibration_table) -> dict[str, Any]:
    if isinstance(method, Dense):
        return {}
    if isinstance(method, VerticalSlash):
        return _calibrated(method, length, ("verticals", "slashes"), method.sizes, calibration_table)
    if isinstance(method, FlexPrefill):
        return _calibrated(method, length, ("alpha", "min_budget"), method.settings, calibration_table)
    if isinstance(method, BlockSparse):
        return {"top_chunks": method.top(length), "chunk_size": method.chunk_size}
    if isinstance(method, quest.Quest):
        pages = quest.budget_pages(method.sparsity, method.token_budget, length, method.page_size)
        return {"token_budget": pages * method.page_size, "pages": pages, "page_size": method.page_size}
    if isinstance(method, AdaSnapKV):
        cap = method.capacity(length)
        # The floor of AdaSnapKV.compress_kv (an inline expression there, no method to ask).
        least = method.prefix_tokens + method.local_window
        floor = min(cap, max(math.ceil(method.min_head_capacity_ratio * cap), least))
        return {
            "token_capacity": cap,
            "min_head_capacity": floor,
            "min_head_capacity_ratio": method.min_head_capacity_ratio,
        }
    if isinstance(method, SnapKV):
        return {"token_capacity": method.capacity(length)}
    return {"note": f"no hyperparameters to resolve for method {method.name!r}"}


def resolved(
    method: str,
    method_args: str | Mapping[str, Any],
    length: int,
    model: str | None = None,
    calibration: Mapping | list | str | Path | None = None,
) -> dict[str, Any]:
    """The hyperparameters ``method`` with ``method_args`` uses at a ``length``-token prompt of
    ``model`` (keys: see the module docstring). ``calibration``: the calibration table the run uses
    (loaded ``{"entries": [...]}``, a list of entries or a path); None: this process's table (the
    built-in one unless ``SPARSE_FRONTIER_CALIBRATION`` names another). Unresolvable values are
    None with a ``note``; invalid settings raise ValueError naming the bad value."""
    length = int(length)
    instance = get_method_class(method).from_params(typed_params(method, method_args)).bind(model=model)
    if not isinstance(instance, Combined):
        return _resolve_part(instance, length, calibration)
    out: dict[str, Any] = {}
    sources, notes = [], []
    for part in instance.components.values():
        values = _resolve_part(part, length, calibration)
        for key, value in values.items():
            if key == "source":
                sources.append(value)
            elif key == "note":
                notes.append(f"{part.name}: {value}")
            else:
                out[f"{part.name}_{key}"] = value
    if sources:
        out["source"] = "; ".join(dict.fromkeys(sources))
    if notes:
        out["note"] = "; ".join(notes)
    return out


def resolved_table(settings, calibration_tables: Mapping[str, Any] | None = None):
    """``settings`` (a DataFrame with columns method, method_args, model, length; others are kept)
    with one column per resolved value (see :func:`resolved`), ``source`` and ``note`` last.

    ``calibration_tables``: ``{model: table}`` (each as :func:`resolved` takes it), the captured
    tables the grid's runs use; a model without one resolves with this process's table, as its
    predict jobs would."""
    import pandas as pd

    missing = [c for c in ("method", "method_args", "model", "length") if c not in settings.columns]
    if missing:
        raise ValueError(
            f"resolved_table: settings lack column(s) {missing}; it needs method, method_args, model and length"
        )
    tables = calibration_tables or {}
    rows = [
        resolved(r.method, r.method_args, int(r.length), r.model, tables.get(r.model))
        for r in settings.itertuples(index=False)
    ]
    names = list(dict.fromkeys(k for row in rows for k in row if k not in ("source", "note")))
    names += [k for k in ("source", "note") if any(k in row for row in rows)]
    taken = [n for n in names if n in settings.columns]
    if taken:
        raise ValueError(f"resolved_table: settings already have column(s) {taken}")
    out = settings.copy()
    for name in names:  # object columns: integers stay integers beside None
        out[name] = pd.Series([row.get(name) for row in rows], dtype=object).to_numpy()
    return out
