"""Searches shared by the methods' fits: the parameter value whose measured density meets a target."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


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
    """Value in [lo, hi] (bisection, ``steps`` halvings, 4 decimals) where the non-decreasing density meets ``target``."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if density(mid) >= target:
            hi = mid
        else:
            lo = mid
    return round((lo + hi) / 2, 4)


def fit_points(
    sparsities: Iterable[float], fit: Callable[[float], tuple], density: Callable[..., float], names: Sequence[str]
) -> list[dict]:
    """Calibration points ``{sparsity, measured, params}``: per target sparsity s, the parameter values
    ``fit(1 - s)`` (a tuple, in the order of ``names``), the sparsity ``1 - density(*values)`` they
    measure (4 decimals) and the values by name."""
    points = []
    for s in sparsities:
        values = fit(1.0 - s)
        points.append({"sparsity": s, "measured": round(1.0 - density(*values), 4), "params": dict(zip(names, values))})
    return points
