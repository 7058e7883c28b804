"""The calibration table: (model, method, length, fixed parameters) -> points ``{sparsity, measured, params}``.

It lives in ``sparse_frontier/attention/calibration_table.json`` (``SPARSE_FRONTIER_CALIBRATION``
names another file). :func:`lookup` reads it; a method that finds no entry calibrates on the call
(:func:`online`). :func:`resolving` lets :mod:`sparse_frontier.hyperparameters` ask a method what it
would use under a given table without calibrating on a call.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

TABLE = Path(__file__).parent.parent / "calibration_table.json"
_warned: set = set()
#: within :func:`resolving`: (entries to read, or None for the table file; list noting each lookup)
_RESOLVING: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("calibration_resolving", default=None)
T = TypeVar("T")


def table_path() -> Path:
    return Path(os.environ.get("SPARSE_FRONTIER_CALIBRATION", TABLE))


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> list[dict]:
    with open(path) as f:
        return json.load(f)["entries"]


def entries() -> list[dict]:
    """The entries of the table this process uses (:func:`table_path`), or those :func:`resolving` gave."""
    resolving_ = _RESOLVING.get()
    if resolving_ is not None:
        given, consulted = resolving_
        consulted.append(True)
        if given is not None:
            return given
    path = table_path()
    if not path.exists():
        return []
    return _load(str(path), path.stat().st_mtime)


class Uncalibrated(LookupError):
    """Within :func:`resolving`, a method found no table entry and would calibrate on the call."""


@contextlib.contextmanager
def resolving(given: list | None = None, consulted: list | None = None):
    """Within (this thread or task): lookups read ``given`` entries (None: the table file) and append
    to ``consulted``; a method that finds no entry raises :class:`Uncalibrated` instead of
    calibrating on the call (:func:`online`)."""
    token = _RESOLVING.set((given, consulted if consulted is not None else []))
    try:
        yield
    finally:
        _RESOLVING.reset(token)


def lookup(model: str | None, method: str, t: int, sparsity: float, key: dict) -> dict | None:
    """Tabulated parameters for (model, method, length containing ``t``, fixed ``key``), or None."""
    if model is None:
        return None
    rows = [
        e
        for e in entries()
        if e["model"] == model and e["method"] == method and e["fixed"] == key and 0.9 * e["length"] <= t <= e["length"]
    ]
    if not rows:
        return None
    row = min(rows, key=lambda e: e["length"])
    points = sorted(row["points"], key=lambda p: p["sparsity"])
    for p in points:
        if abs(p["sparsity"] - sparsity) < 1e-9:
            return p["params"]
    lower = [p for p in points if p["sparsity"] < sparsity]
    upper = [p for p in points if p["sparsity"] > sparsity]
    if not lower or not upper:
        return None
    a, b = lower[-1], upper[0]
    w = (sparsity - a["sparsity"]) / (b["sparsity"] - a["sparsity"])
    out = {}
    for name, va in a["params"].items():
        v = va + w * (b["params"][name] - va)
        out[name] = round(v) if isinstance(va, int) else v
    return out


def online(fit: Callable[[], T], what: str) -> T:
    """Calibrate on the call (no table entry for ``what``): ``fit()``, with a warning once per setting.
    Within :func:`resolving` raises :class:`Uncalibrated` instead."""
    if _RESOLVING.get() is not None:
        raise Uncalibrated(what)
    if what not in _warned:
        _warned.add(what)
        log.warning("no calibration entry for %s: calibrating on each call (see attention/calibration)", what)
    return fit()


def write_entries(new: list[dict], path: Path | None = None) -> None:
    """Add/replace entries (same model, method, length, fixed) in the table file, atomically."""
    path = Path(path or table_path())
    old = json.loads(path.read_text())["entries"] if path.exists() else []
    keyf = lambda e: (e["model"], e["method"], e["length"], json.dumps(e["fixed"], sort_keys=True))  # noqa: E731
    merged = {keyf(e): e for e in old}
    merged.update({keyf(e): e for e in new})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"entries": sorted(merged.values(), key=keyf)}, indent=1) + "\n")
    tmp.replace(path)
