"""Target sparsity -> method hyperparameters, by calibration on *measured* sparsity.

Where no formula exists (Vertical-Slash sizes, FlexPrefill alpha/min_budget) a method looks its
hyperparameters up in a small table keyed by (model, method, length, fixed parameters), so a grid
run never recalibrates (:mod:`.table`: the file, lookup with interpolation, writing entries). Entries
come from :func:`calibrate`: each calibrated method fits its own points (its ``calibrate(samples,
length, sparsities)``: the parameters whose measured density on attention inputs -- real scores
captured from a model, or :mod:`~sparse_frontier.attention.synthetic` ones -- meets each target),
with the searches of :mod:`.search`. The levels fitted are the paper's (:mod:`sparse_frontier.levels`).

Lookup: the smallest tabulated length L with ``0.9 L <= T <= L`` (prompts land in [0.95 L, L]);
sparsities between tabulated points are interpolated linearly. Without an entry the method
calibrates on the call itself (:func:`online`: the same fit on that call's density, logged once per
setting), which meets the target per call but costs a few host syncs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sparse_frontier.attention.calibration.search import fit_points, search_float, search_int
from sparse_frontier.attention.calibration.table import (
    TABLE,
    Uncalibrated,
    entries,
    lookup,
    online,
    resolving,
    table_path,
    write_entries,
)
from sparse_frontier.levels import CALIBRATION_SPARSITIES, FLEXPREFILL_SPARSITIES, PAPER_SPARSITIES

__all__ = [
    "CALIBRATION_SPARSITIES",
    "FLEXPREFILL_SPARSITIES",
    "PAPER_SPARSITIES",
    "TABLE",
    "Uncalibrated",
    "calibrate",
    "entries",
    "fit_points",
    "lookup",
    "online",
    "resolving",
    "search_float",
    "search_int",
    "table_path",
    "write_entries",
]


def calibrate(method, samples: Iterable[tuple[Any, Any]], length: int, sparsities: Iterable[float]) -> list[dict]:
    """Points ``{sparsity, measured, params}`` for ``method`` (its fixed parameters as set), fitted by
    the method itself (``method.calibrate``) on ``samples`` (its estimation inputs, e.g. the ``(vert,
    slash)`` score pairs of many layers/prompts at ``length``): per target, the parameters whose
    *mean measured density* over all of them is closest to it, as the paper's table did for a model."""
    if not hasattr(method, "calibrate"):
        raise ValueError(f"method {method.name!r} needs no calibration (its budget has a formula)")
    return method.calibrate(list(samples), length, list(sparsities))
