"""Paired significance of sparse vs dense, and the largest compression that keeps performance."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from sparse_frontier.paths import RunKey

TESTS = ("wilcoxon", "bootstrap")
#: what pairs a sparse sample with its dense twin: the same prompt (sample ``id`` of the same
#: dataset) under the same output budget, i.e. the run's group (everything but the method) and the id
PAIR_KEYS = [*RunKey.GROUP_FIELDS, "id"]


def paired_pvalue(dense, sparse, test: str = "wilcoxon", resamples: int = 10000, seed: int = 0) -> float:
    """One-sided p-value of H1 "sparse scores lower than dense" on paired per-sample scores."""
    dense, sparse = np.asarray(dense, float), np.asarray(sparse, float)
    if dense.shape != sparse.shape or dense.size == 0:
        raise ValueError(
            f"paired test needs equally many (> 0) scores, got {dense.size} dense and {sparse.size} sparse"
        )
    diff = dense - sparse
    if test == "wilcoxon":
        if not np.any(diff):
            return 1.0  # identical scores: no evidence of a loss (scipy refuses all-zero differences)
        return float(stats.wilcoxon(dense, sparse, alternative="greater", zero_method="zsplit").pvalue)
    if test == "bootstrap":
        rng = np.random.default_rng(seed)
        means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
        # share of resampled mean losses that are not losses (+1 smoothing keeps p > 0)
        return float((np.sum(means <= 0) + 1) / (resamples + 1))
    raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")


def pair_with_dense(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-sample rows of every sparse run joined with the dense score of the same prompt."""
    dense = samples[samples["method"] == "dense"][PAIR_KEYS + ["score"]].rename(columns={"score": "dense_score"})
    sparse = samples[samples["method"] != "dense"]
    return sparse.merge(dense, on=PAIR_KEYS, how="inner")


def significance_table(samples: pd.DataFrame, test: str, alpha: float, resamples: int = 10000) -> pd.DataFrame:
    """One row per sparse run: compression, mean scores, p-value and whether performance is retained."""
    paired = pair_with_dense(samples)
    keys = list(RunKey.FIELDS)
    rows = []
    for key, run in paired.groupby(keys, sort=True):
        sparsity = float(run["sparsity"].mean())
        rows.append(
            dict(
                zip(keys, key),
                sparsity=sparsity,
                compression=1.0 / max(1.0 - sparsity, 1e-9),
                dense_score=run["dense_score"].mean(),
                sparse_score=run["score"].mean(),
                pairs=len(run),
                p_value=paired_pvalue(run["dense_score"], run["score"], test, resamples),
            )
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["retained"] = out["p_value"] >= alpha
    return out


def max_retained_compression(levels: pd.DataFrame, alpha: float) -> tuple[float, bool]:
    """Largest compression still not significantly worse than dense, for one (model, length, task, method).

    ``levels``: rows with ``compression`` and ``p_value``. Walking up from dense (compression 1,
    p = 1), the p-value is interpolated linearly in log-compression between measured levels and the
    answer is where it first drops below ``alpha``. Returns (compression, censored) where censored
    means every measured level was retained (the true maximum may be higher).
    """
    pts = levels.sort_values("compression")[["compression", "p_value"]].to_numpy(float)
    prev_c, prev_p = 1.0, 1.0
    for c, p in pts:
        if p < alpha:
            if c <= prev_c:
                return prev_c, False
            t = (prev_p - alpha) / (prev_p - p)
            return float(np.exp(np.log(prev_c) + t * (np.log(c) - np.log(prev_c)))), False
        prev_c, prev_p = c, p
    return float(prev_c), True
