"""The scaling law: acc = sigmoid(a log(params) + b log(length) + g log(compression) + delta_task).

Fitted as a binomial GLM with logit link on per-run mean scores (statsmodels), weighted by samples;
one fit per phase. Validation holds out the largest value of each axis in turn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

AXES = {"params": "log_params", "length": "log_length", "compression": "log_compression"}


def design(runs: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Columns log_params, log_length, log_compression and one indicator per task (its offset)."""
    x = pd.DataFrame(
        {
            "log_params": np.log(runs["params"].to_numpy(float)),
            "log_length": np.log(runs["length"].to_numpy(float)),
            "log_compression": np.log(runs["compression"].to_numpy(float)),
        },
        index=runs.index,
    )
    for task in tasks:
        x[f"task[{task}]"] = (runs["task"] == task).astype(float)
    return x


def fit(runs: pd.DataFrame):
    """Fit on rows with task, params, length, compression, score, samples; returns the results object."""
    tasks = sorted(runs["task"].unique())
    model = sm.GLM(
        runs["score"].clip(0, 1).to_numpy(float),
        design(runs, tasks),
        family=sm.families.Binomial(),
        var_weights=runs["samples"].to_numpy(float),
    )
    result = model.fit()
    result.tasks = tasks
    return result


def predict(result, runs: pd.DataFrame) -> np.ndarray:
    unknown = sorted(set(runs["task"]) - set(result.tasks))
    if unknown:
        raise ValueError(f"tasks {unknown} were not in the fit; fitted tasks: {result.tasks}")
    return np.asarray(result.predict(design(runs, result.tasks)))


def r_squared(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    return float(1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean()) ** 2))


def coefficients(result) -> pd.DataFrame:
    ci = result.conf_int()
    return pd.DataFrame(
        {"term": result.params.index, "estimate": result.params.values, "se": result.bse.values,
         "ci_low": ci[0].values, "ci_high": ci[1].values}
    )


def holdout_validation(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the largest value of each axis in turn; per task Spearman rho (p) and MAE.

    Returns (per-task metrics, held-out predictions).
    """
    metrics, predictions = [], []
    for axis in AXES:
        if runs[axis].nunique() < 2:
            continue  # nothing left to fit on when the axis has a single value
        largest = runs[axis].max()
        test, train = runs[runs[axis] == largest], runs[runs[axis] != largest]
        if train["task"].nunique() < runs["task"].nunique():
            continue
        result = fit(train)
        pred = test.assign(predicted=predict(result, test), held_out=axis)
        predictions.append(pred)
        for task, rows in pred.groupby("task"):
            rho, p = (np.nan, np.nan)
            if len(rows) >= 3 and rows["score"].nunique() > 1 and rows["predicted"].nunique() > 1:
                rho, p = stats.spearmanr(rows["predicted"], rows["score"])
            metrics.append(
                {"held_out": axis, "held_out_value": largest, "task": task, "n": len(rows),
                 "spearman_rho": rho, "spearman_p": p, "mae": float(np.mean(np.abs(rows["predicted"] - rows["score"])))}
            )
    return pd.DataFrame(metrics), (pd.concat(predictions) if predictions else pd.DataFrame())
