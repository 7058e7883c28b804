"""Target sparsity -> method hyperparameters, by calibration on *measured* sparsity.

Where no formula exists (Vertical-Slash sizes, FlexPrefill alpha/min_budget) a method looks its
hyperparameters up in a small table keyed by (model, method, length, fixed parameters), so a grid
run never recalibrates. Entries come from :func:`calibrate_table` (measured density of the method's
own index on attention inputs: real Q/K captured from a model, or :mod:`synthetic` inputs) and live
in ``calibration_table.json`` beside this file (``SPARSE_FRONTIER_CALIBRATION`` names another file).

Lookup: the smallest tabulated length L with ``0.9 L <= T <= L`` (prompts land in [0.95 L, L]);
sparsities between tabulated points are interpolated linearly. Without an entry the method
calibrates on the call itself (binary search on that call's density, logged once per setting),
which meets the target per call but costs a few host syncs.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger(__name__)

TABLE = Path(__file__).with_name("calibration_table.json")
_warned: set = set()


def table_path() -> Path:
    return Path(os.environ.get("SPARSE_FRONTIER_CALIBRATION", TABLE))


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> list[dict]:
    with open(path) as f:
        return json.load(f)["entries"]


def entries() -> list[dict]:
    path = table_path()
    if not path.exists():
        return []
    return _load(str(path), path.stat().st_mtime)


def lookup(model: Optional[str], method: str, t: int, sparsity: float, key: dict) -> Optional[dict]:
    """Tabulated parameters for (model, method, length containing ``t``, fixed ``key``), or None."""
    if model is None:
        return None
    rows = [
        e for e in entries()
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


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("no calibration entry for %s: calibrating on each call (see calibration.py)", what)


def search_int(density: Callable[[int], float], target: float, lo: int, hi: int) -> int:
    """Integer n in [lo, hi] whose (non-decreasing) density is closest to ``target``."""
    a, b = lo, hi
    while a < b:  # smallest n with density(n) >= target
        mid = (a + b) // 2
        if density(mid) >= target:
            b = mid
        else:
            a = mid + 1
    if a > lo and abs(density(a - 1) - target) < abs(density(a) - target):
        return a - 1
    return a


def search_float(density: Callable[[float], float], target: float, lo=0.0, hi=1.0, steps=20) -> float:
    for _ in range(steps):
        mid = (lo + hi) / 2
        if density(mid) >= target:
            hi = mid
        else:
            lo = mid
    return round((lo + hi) / 2, 4)


def online_size(density: Callable[[int], float], target: float, t: int, what: str) -> int:
    _warn_once(what)
    return search_int(density, target, 1, t)


def online_alpha(density: Callable[[float, int], float], target: float, min_budget: int, t: int, what: str):
    """FlexPrefill: alpha for ``target`` density; if alpha 0 is still too dense, lower min_budget."""
    _warn_once(what)
    if min_budget:
        return search_float(lambda a: density(a, min_budget), target), min_budget
    if density(0.0, 512) <= target:
        return search_float(lambda a: density(a, 512), target), 512
    return 0.0, search_int(lambda n: density(0.0, n), target, 1, 512)


def calibrate(
    method, samples: Iterable[tuple[Any, Any]], length: int, sparsities: Iterable[float]
) -> list[dict]:
    """Points ``{sparsity, measured, params}`` for ``method`` (its fixed parameters as set).

    ``samples``: ``(vert, slash)`` score pairs (from :func:`vertical_slash.estimate_scores`) of
    many layers/samples at ``length``; the chosen parameters make the *mean measured density* over
    all of them closest to the target, as the paper's table did for a model.
    """
    from sparse_frontier.attention.vertical_slash import FlexPrefill, VerticalSlash, index_density

    samples = list(samples)

    def mean_density(select) -> float:
        total = 0.0
        for vert, slash in samples:
            cols, cover = select(vert, slash)
            total += index_density(cover, cols, vert.shape[1]).mean().item()
        return total / len(samples)

    points = []
    for s in sparsities:
        target = 1.0 - s
        if isinstance(method, VerticalSlash):
            dens = lambda n: mean_density(lambda v, sl: method.select_raw(v, sl, n, n))  # noqa: E731
            n = search_int(dens, target, 1, length)
            params, measured = {"vertical_size": n, "slash_size": n}, dens(n)
        elif isinstance(method, FlexPrefill):
            dens = lambda a, mb: mean_density(lambda v, sl: method.select_raw(v, sl, a, mb))  # noqa: E731
            alpha, mb = online_alpha(dens, target, method.min_budget, length, what="offline calibration")
            params, measured = {"alpha": alpha, "min_budget": mb}, dens(alpha, mb)
        else:
            raise ValueError(f"method {method.name!r} needs no calibration (its budget has a formula)")
        points.append({"sparsity": s, "measured": round(1.0 - measured, 4), "params": params})
    return points


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
