"""Hyperparameter ablations (v1 Figs 5-10, v3 Fig 11): score vs compression, a line per value.

``figures.ablations.<name>`` names the experiment holding the runs (Qwen-7B at 16k in the paper grid)
and the method parameter varied. Each value's curve (its settings at several sparsities, dense at
1x) is read at the nominal sparsities per task, as the other curve figures; a panel per task and one
for the mean over tasks (over the tasks every value has).
"""

from __future__ import annotations

import pandas as pd

from sparse_frontier import paths
from sparse_frontier.analysis.figures.common import (
    CELL_KEYS,
    Inputs,
    Output,
    common_mean,
    grid,
    interpolate_curves,
    log_ticks,
    need,
    palette,
    prepare,
)


def spec(inputs: Inputs, name: str) -> dict:
    found = inputs.settings["ablations"].get(name)
    if found is None:
        raise ValueError(
            f"unknown ablation {name!r}; config figures.ablations defines: {sorted(inputs.settings['ablations'])}"
        )
    return found


def runs_of(name: str):
    def runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
        experiment = spec(inputs, name)["experiment"]
        return frame["experiments"].fillna("").str.split(",").map(lambda e: experiment in e)

    return runs


def data(inputs: Inputs, name: str) -> Output:
    sp = spec(inputs, name)
    param = sp["parameter"]
    table, missing = prepare(inputs)
    table = table[runs_of(name)(table, inputs)]
    need(table, f"ablation {name!r} (experiment {sp['experiment']!r})")
    value = [
        paths.parse_args(a).get(param) if m != "dense" else "dense"
        for m, a in zip(table["method"], table["method_args"])
    ]
    table = table.assign(value=value)
    if table.loc[table["method"] != "dense", "value"].isna().all():
        raise ValueError(f"ablation {name!r}: no run of experiment {sp['experiment']!r} has parameter {param!r}")
    table = table[table["value"].notna()]
    curves = interpolate_curves(table, CELL_KEYS, inputs.settings["interpolation_tolerance"], by=["method", "value"])
    need(curves, f"ablation {name!r} (sparse runs with a dense twin)")
    notes: list = []
    per_task = common_mean(
        curves,
        ["task", "target"],
        ["method", "value"],
        ["model", "length", "seed"],
        ["score", "dense_score", "compression"],
        notes,
        f"ablation {name}",
    )
    overall = common_mean(
        curves,
        ["target"],
        ["method", "value"],
        ["task", "model", "length", "seed"],
        ["score", "dense_score", "compression"],
        notes,
        f"ablation {name}",
    ).assign(task="mean over tasks")
    out = pd.concat([per_task, overall], ignore_index=True).assign(parameter=param)
    return Output(out, missing=missing, notes=notes)


def draw(out: Output, inputs: Inputs):
    d = out.data
    param = d["parameter"].iloc[0]
    tasks = sorted(t for t in d["task"].unique() if t != "mean over tasks") + ["mean over tasks"]
    fig, axes = grid(1, len(tasks), 3.0, 2.8, sharey=True)
    values = sorted(
        d["value"].unique(), key=lambda v: (float(v) if str(v).replace(".", "", 1).isdigit() else float("inf"), str(v))
    )
    colours = palette(values)
    for ax, task in zip(axes[0], tasks):
        g = d[d["task"] == task]
        for v in values:
            line = g[g["value"] == v].sort_values("compression")
            if line.empty:
                continue
            x = [1.0] + line["compression"].tolist()
            y = [line["dense_score"].iloc[0]] + line["score"].tolist()
            ax.plot(x, y, marker="o", ms=2.5, color=colours[v], label=f"{param}={v}")
        log_ticks(ax, [1, 2, 5, 10])
        ax.set_title(task, fontsize=8)
        ax.set_xlabel("compression ratio", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    return fig
