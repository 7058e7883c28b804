"""The scaling law: acc = sigmoid(a log(params) + b log(length) + g log(compression) + delta_task).

Fitted as a binomial GLM with logit link on per-run mean scores (statsmodels), weighted by samples;
one fit per phase and model family (the paper fits Qwen; families differ in architecture and
training, so one law across them would mostly fit their offsets). Validation holds out the largest
value of each axis in turn; the compression fold holds out the largest *nominal* level
(``target_compression``), since measured compressions scatter around it and a fold on the largest
measured value would hold out a single run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

AXES = {"params": "log_params", "length": "log_length", "compression": "log_compression"}
#: the column whose largest value each fold holds out (nominal compression when the table has it)
FOLD_COLUMNS = {"params": "params", "length": "length", "compression": "target_compression"}


def fitted_axes(runs: pd.DataFrame) -> list[str]:
    """Axes with more than one value (a constant axis is collinear with the task offsets)."""
    return [a for a in AXES if runs[a].nunique() > 1]


def design(runs: pd.DataFrame, tasks: list[str], axes=tuple(AXES)) -> pd.DataFrame:
    """Columns log_<axis> for the fitted axes and one indicator per task (its offset)."""
    x = pd.DataFrame({AXES[a]: np.log(runs[a].to_numpy(float)) for a in axes}, index=runs.index)
    for task in tasks:
        x[f"task[{task}]"] = (runs["task"] == task).astype(float)
    return x


def fit(runs: pd.DataFrame):
    """Fit on rows with task, params, length, compression, score, samples; returns the results object."""
    tasks = sorted(runs["task"].unique())
    axes = fitted_axes(runs)
    model = sm.GLM(
        runs["score"].clip(0, 1).to_numpy(float),
        design(runs, tasks, axes),
        family=sm.families.Binomial(),
        var_weights=runs["samples"].to_numpy(float),
    )
    result = model.fit()
    result.tasks, result.axes = tasks, axes
    return result


def predict(result, runs: pd.DataFrame) -> np.ndarray:
    unknown = sorted(set(runs["task"]) - set(result.tasks))
    if unknown:
        raise ValueError(f"tasks {unknown} were not in the fit; fitted tasks: {result.tasks}")
    return np.asarray(result.predict(design(runs, result.tasks, result.axes)))


def r_squared(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    return float(1 - np.sum((y - y_hat) ** 2) / np.sum((y - y.mean()) ** 2))


def coefficients(result) -> pd.DataFrame:
    ci = result.conf_int()
    return pd.DataFrame(
        {
            "term": result.params.index,
            "estimate": result.params.values,
            "se": result.bse.values,
            "ci_low": ci[0].values,
            "ci_high": ci[1].values,
        }
    )


def holdout_validation(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the largest value of each axis in turn; per task Spearman rho (p) and MAE.

    Returns (per-task metrics, held-out predictions).
    """
    metrics, predictions = [], []
    for axis in AXES:
        column = FOLD_COLUMNS[axis] if FOLD_COLUMNS[axis] in runs else axis
        if runs[column].nunique() < 2:
            continue  # nothing left to fit on when the axis has a single value
        largest = runs[column].max()
        test, train = runs[runs[column] == largest], runs[runs[column] != largest]
        if train["task"].nunique() < runs["task"].nunique():
            continue
        result = fit(train)
        if axis not in result.axes:
            continue  # the training part has one value of the axis: it cannot extrapolate along it
        pred = test.assign(predicted=predict(result, test), held_out=axis)
        predictions.append(pred)
        for task, rows in pred.groupby("task"):
            rho, p = (np.nan, np.nan)
            if len(rows) >= 3 and rows["score"].nunique() > 1 and rows["predicted"].nunique() > 1:
                rho, p = stats.spearmanr(rows["predicted"], rows["score"])
            metrics.append(
                {
                    "held_out": axis,
                    "held_out_value": largest,
                    "task": task,
                    "n": len(rows),
                    "spearman_rho": rho,
                    "spearman_p": p,
                    "mae": float(np.mean(np.abs(rows["predicted"] - rows["score"]))),
                }
            )
    return pd.DataFrame(metrics), (pd.concat(predictions) if predictions else pd.DataFrame())
