"""The per-task method comparison (v1 Fig 4): score vs compression, one panel per task.

As the paper: prefill methods (Vertical-Slash, FlexPrefill, Block-Sparse) and decode methods
(SnapKV, Ada-SnapKV, Quest) in separate rows; tasks grouped by their retrieval type; main-grid
settings only (ablation settings never join these lines); the lengths every method runs (16k-64k in the paper grid;
``figures.task_lengths`` to choose), averaged over models and lengths. Each method's curve per (task,
model, length) is read at its nominal sparsities by linear interpolation of the measured ones
(:func:`interpolate_curves`); every line of a panel averages the same cells; the band is the
standard error of that mean. Combinations (``a+b``) get a row of their own.
"""

from __future__ import annotations

import pandas as pd

from sparse_frontier.analysis.figures.common import (
    CELL_KEYS,
    Inputs,
    Output,
    common_mean,
    grid,
    interpolate_curves,
    length_label,
    log_ticks,
    need,
    palette,
    prepare,
    suptitle,
)

ROWS = {"prefill": "prefill methods", "decode": "decode methods", "combined": "prefill + decode"}


def task_groups() -> dict[str, str]:
    """task -> retrieval type, from each task class's dispersion and scope (paper Table 2)."""
    from sparse_frontier.analysis.registry_tables import task_taxonomy

    frame = task_taxonomy()
    return dict(zip(frame["task"], frame["group"]))


def ordered_tasks(groups_of: dict[str, str]) -> list[tuple[str, str]]:
    """(group, task) in the paper's order of retrieval types, tasks of a group together
    (``groups_of``: task as drawn -> its retrieval type)."""
    order = list(dict.fromkeys(task_groups().values()))
    return sorted(
        ((g, t) for t, g in groups_of.items()),
        key=lambda gt: (order.index(gt[0]) if gt[0] in order else len(order), gt[1]),
    )


def task_lengths(frame: pd.DataFrame, inputs: Inputs) -> list[int]:
    """``figures.task_lengths``, or the lengths where every main-grid sparse method runs (the paper's
    16k-64k: at 128k only Vertical-Slash and Quest run, and averaging over lengths must not differ
    between methods)."""
    if inputs.settings["task_lengths"]:
        return [int(x) for x in inputs.settings["task_lengths"]]
    sparse = frame[frame["main"] & (frame["method"] != "dense")]
    methods = sparse.groupby("length")["method"].agg(frozenset)
    every = frozenset(sparse["method"])
    return sorted(int(L) for L, m in methods.items() if m == every)


def runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
    return frame["main"] & frame["length"].isin(task_lengths(frame, inputs))


#: the cells a (task, method, level) point averages
AVERAGED_OVER = ["model", "length", "seed"]


def data(inputs: Inputs) -> Output:
    table, missing = prepare(inputs)
    lengths = task_lengths(table, inputs)
    table = table[runs(table, inputs)]
    need(table, f"task_comparison at lengths {lengths} (figures.task_lengths)")
    curves = interpolate_curves(table, CELL_KEYS, inputs.settings["interpolation_tolerance"])
    need(curves, "task_comparison (sparse runs with a dense twin)")
    curves["row"] = curves["phase"].map(lambda p: "combined" if p == "combined" else p)
    notes: list = []
    mean = common_mean(
        curves,
        ["row", "task"],
        ["method", "target"],
        AVERAGED_OVER,
        ["score", "dense_score", "compression"],
        notes,
        "per-task",
        with_cells=True,
    )
    groups, kinds = task_groups(), dict(zip(table["task"], table["task_kind"]))
    mean["group"] = mean["task"].map(lambda t: groups.get(kinds.get(t, t), "other"))
    mean["lengths"] = " ".join(length_label(x) for x in lengths)
    # a panel whose lines lack a length (e.g. a level beyond a method's reach there) averages fewer
    at = AVERAGED_OVER.index("length")
    mean["panel_lengths"] = mean.pop("common_cells").map(
        lambda cells: " ".join(length_label(x) for x in sorted({c[at] for c in cells}))
    )
    return Output(mean, missing=missing, notes=notes)


def draw(out: Output, inputs: Inputs):
    d = out.data
    rows = [r for r in ROWS if (d["row"] == r).any()]
    tasks = ordered_tasks(dict(zip(d["task"], d["group"])))
    fig, axes = grid(len(rows), len(tasks), 3.0, 2.8, sharey=True)
    colours = palette(sorted(d["method"].unique()))
    for r, row in enumerate(rows):
        for c, (group, task) in enumerate(tasks):
            ax = axes[r][c]
            g = d[(d["row"] == row) & (d["task"] == task)]
            for method, line in g.groupby("method"):
                line = line.sort_values("compression")
                x = [1.0] + line["compression"].tolist()
                y = [line["dense_score"].iloc[0]] + line["score"].tolist()
                se = [0.0] + line["score_se"].fillna(0).tolist()
                ax.plot(x, y, marker="o", ms=2.5, lw=1.2, color=colours[method], label=method)
                ax.fill_between(
                    x, [a - b for a, b in zip(y, se)], [a + b for a, b in zip(y, se)], color=colours[method], alpha=0.18
                )
            if not g.empty:
                ax.scatter([1.0], [g["dense_score"].iloc[0]], color="k", s=12, zorder=3, label="dense")
                log_ticks(ax, [1, 2, 5, 10, 20])
            title = f"{task}\n({group})" if r == 0 else task
            if not g.empty and g["panel_lengths"].iloc[0] != g["lengths"].iloc[0]:
                title += f" ({g['panel_lengths'].iloc[0].replace(' ', ', ')} only)"
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("compression ratio", fontsize=7)
            ax.grid(alpha=0.3)
        axes[r][0].set_ylabel(f"{ROWS[row]}\nscore (mean ± SE)", fontsize=8)
        axes[r][-1].legend(fontsize=6)
    lengths = d["lengths"].iloc[0].replace(" ", ", ")
    suptitle(fig, f"Per-task comparison, main grid at {lengths}, mean over models and lengths")
    return fig
