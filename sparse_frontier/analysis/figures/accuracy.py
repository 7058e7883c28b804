"""Mean score by length per model (the demo's opening view) and the main-results table.

``accuracy_vs_length``: a panel per model (a row per family), x = target length, y = mean score over
tasks (every line of a panel over the same tasks), a line per main-grid setting: colour = method,
shade = sparsity (darker = sparser), dense in black. Scales to any number of settings.
``main_results``: the same means as a table, with each task's score and the paper's standard-error
bound 0.5 / sqrt(N) (appendix D.1) beside the measured standard error.
"""

from __future__ import annotations

import pandas as pd

from sparse_frontier.analysis.figures.common import (
    Inputs,
    Output,
    common_mean,
    grid,
    length_label,
    main_runs,
    need,
    ordered_models,
    palette,
    prepare,
    se_bound,
    shade,
)

LINE = ["method", "target"]


def runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
    return frame["main"]


def lengths_with_every_task(table: pd.DataFrame, notes: list) -> pd.DataFrame:
    """The rows at the lengths that have every (task, seed) cell of the panel's fullest length.

    A run stopped part-way (``figures.allow_missing``) lacks whole datasets, a different task at each
    length; shrinking every point to the tasks all lengths share could leave none. A length lacking
    a task no method ran there is left out instead (and said so), so each line's points stay means
    over the same tasks.
    """
    keep = pd.Series(True, index=table.index)
    for model, p in table.groupby("model", sort=True):
        cells = {length: set(map(tuple, g[["task", "seed"]].to_numpy())) for length, g in p.groupby("length")}
        fullest = max(cells.values(), key=len)
        for length, have in sorted(cells.items()):
            if not fullest <= have:
                keep &= ~((table["model"] == model) & (table["length"] == length))
                lacking = sorted(t for t, _ in fullest - have)
                notes.append(
                    f"accuracy vs length [model={model}]: length {length_label(length)} left out "
                    f"(no run of {', '.join(map(str, lacking))} there)"
                )
    return table[keep]


def data(inputs: Inputs) -> Output:
    table, missing = prepare(inputs)
    table = main_runs(table)
    need(table, "accuracy_vs_length")
    notes: list = []
    table = lengths_with_every_task(table, notes)
    mean = common_mean(
        table,
        ["family", "model"],
        LINE + ["length"],
        ["task", "seed"],
        ["score", "sparsity"],
        notes,
        "accuracy vs length",
    )
    if mean.empty:
        raise ValueError(
            "accuracy_vs_length: no (task, seed) cell that every method and level has at any length; "
            + "; ".join(notes)
        )
    return Output(mean, missing=missing, notes=notes)


def draw(out: Output, inputs: Inputs):
    d = out.data
    families = sorted(d["family"].unique())
    per_family = {f: ordered_models(inputs, d.loc[d["family"] == f, "model"]) for f in families}
    cols = max(len(m) for m in per_family.values())
    # the legend gets a column of its own: a figure legend would sit over a single panel's title
    fig, axes = grid(
        len(families),
        cols + 1,
        3.6 * (cols + 0.55) / (cols + 1),
        3.0,
        sharey=True,
        gridspec_kw={"width_ratios": [1] * cols + [0.55]},
    )
    for row in axes:
        row[-1].axis("off")
    methods = sorted(m for m in d["method"].unique() if m != "dense")
    colours = palette(methods)
    top = float(d["target"].max()) or 1.0
    for r, family in enumerate(families):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(per_family[family]):
                ax.axis("off")
                continue
            model = per_family[family][c]
            g = d[d["model"] == model]
            for (method, target), line in g.groupby(LINE):
                line = line.sort_values("length")
                style = (
                    dict(color="k", lw=2.0, zorder=3)
                    if method == "dense"
                    else dict(color=shade(colours[method], target / top), lw=0.9)
                )
                ax.plot(line["length"], line["score"], marker="o", ms=2, **style)
            ticks = sorted(g["length"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [length_label(x) for x in ticks])
            ax.minorticks_off()
            ax.set(title=model, xlabel="target length", ylim=(-0.03, 1.03))
            ax.title.set_fontsize(8)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel("mean score over tasks", fontsize=8)
    handles = [axes[0][0].plot([], [], color="k", lw=2, label="dense")[0]]
    handles += [axes[0][0].plot([], [], color=colours[m], lw=2, label=m)[0] for m in methods]
    axes[0][-1].legend(
        handles=handles,
        loc="upper left",
        fontsize=7,
        title="method\n(darker = sparser)",
        title_fontsize=7,
        frameon=False,
    )
    return fig


def main_results(inputs: Inputs) -> Output:
    table, missing = prepare(inputs)
    table = main_runs(table)
    need(table, "main_results")
    notes: list = []
    panel = ["family", "model", "length"]
    mean = common_mean(table, panel, ["phase"] + LINE, ["task", "seed"], ["score", "sparsity"], notes, "main results")
    mean = mean.rename(columns={"score": "mean_over_tasks"})
    mean["se_bound"] = [se_bound(n) for n in mean["samples"]]
    per_task = table.pivot_table(index=panel + LINE, columns="task", values="score", aggfunc="mean").reset_index()
    out = mean.merge(per_task, on=panel + LINE, how="left")
    return Output(out, missing=missing, notes=notes)
