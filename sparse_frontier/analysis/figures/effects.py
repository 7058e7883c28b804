"""How the loss from sparsity changes with sequence length and model size (v3 Figs 4, 15-21).

Error = dense score - sparse score on the same prompts; relative error = error / dense score, both
of the means over the averaged cells (a cell with a dense score near 0 cannot blow the ratio up).
Every method's curve is read at every nominal level of the grid by interpolation
(:func:`interpolate_curves`), main-grid settings only; a panel averaged over methods keeps only the
levels inside every method's range, so each point averages the same methods. The paper's figures aggregate over methods:

- ``length_effect`` (v3 Fig 4): relative error vs sparsity, a line per length; panels: all
  methods, prefill methods, decode methods. A length where only a few methods run (128k) is left out
  of a panel averaged over methods rather than shrinking the other lengths to those methods (noted
  on the figure; it appears in the per-method view).
- ``model_size`` (v3 Figs 20-21): relative error vs sparsity, a line per model of a family; a row
  per family, columns easy / hard tasks (``figures.easy_tasks`` / ``hard_tasks``).
Extras: ``length_effect_per_method`` and ``model_size_per_method`` (a panel per method),
``length_effect_per_task`` (family x task, v3 Figs 15-16) and ``model_size_per_length``
(family x length, v3 Figs 17-18).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis.figures.common import (
    CELL_KEYS,
    Inputs,
    Output,
    common_mean,
    grid,
    interpolate_curves,
    length_label,
    main_runs,
    need,
    ordered_models,
    palette,
    prepare,
)

#: a line (length, model) holding under this share of the fullest line's cells is left out of a panel
MIN_COVERAGE = 0.6


def curves(inputs: Inputs) -> tuple[pd.DataFrame, list[str]]:
    """Main-grid curves read at nominal sparsities (computed once per inputs: six figures use them)."""
    cached = getattr(inputs, "_effect_curves", None)
    if cached is not None and cached[0] is inputs.table:
        return cached[1].copy(), list(cached[2])
    table, missing = prepare(inputs)
    table = main_runs(table)
    need(table, "the length / model-size figures")
    # every method read at every nominal level of the grid (inside its measured range): methods with
    # different level grids (Block-Sparse has no 0.3, Vertical-Slash no 0.6667) meet at common points
    points = sorted(t for t in table["target"].unique() if t > 0)
    c = interpolate_curves(table, CELL_KEYS, inputs.settings["interpolation_tolerance"], points=points)
    need(c, "the length / model-size figures (sparse runs with a dense twin)")
    inputs._effect_curves = (inputs.table, c, missing)
    return c.copy(), list(missing)


def errors(mean: pd.DataFrame) -> pd.DataFrame:
    mean["absolute_error"] = mean["dense_score"] - mean["score"]
    mean["relative_error"] = mean["absolute_error"] / mean["dense_score"].replace(0, np.nan)
    return mean


def aggregate(
    c: pd.DataFrame, views: dict, panel: list, line: str, cells: list, notes: list, what: str
) -> pd.DataFrame:
    """Per view (a name -> row filter), the mean error per (panel, line, target) over common cells.

    Which lines a panel keeps is decided over all its sparsity levels at once: a line holding under
    ``MIN_COVERAGE`` of the fullest line's cells (e.g. 128k, where two of six methods run) is left
    out of the whole panel, not kept at the few levels where only its methods have points.
    """
    parts = []
    for view, keep in views.items():
        sub = c[keep(c)]
        if sub.empty:
            continue
        # a point averaged over methods holds every method of the view: x never changes the mix
        methods = sub.groupby("target")["method"].nunique()
        partial = methods[methods < sub["method"].nunique()].index
        if len(partial):
            notes.append(
                f"{what} {view}: sparsity {', '.join(f'{t:g}' for t in partial)} left out (outside some methods' range)"
            )
            sub = sub[~sub["target"].isin(partial)]
        kept = []
        for pkey, p in sub.groupby(panel, sort=True) if panel else [((), sub)]:
            have = p.groupby(line)[cells + ["target"]].apply(lambda g: len(g.drop_duplicates()))
            thin = have[have < MIN_COVERAGE * have.max()]
            pkey = pkey if isinstance(pkey, tuple) else (pkey,)
            where = ", ".join(f"{k}={v}" for k, v in zip(panel, pkey))
            for value, n in thin.items():
                shown = length_label(value) if line == "length" else value
                notes.append(
                    f"{what} {view}{' [' + where + ']' if where else ''}: {line} {shown} left out "
                    f"(has {n} of the {have.max()} points of the fullest {line}; see the per-method view)"
                )
            kept.append(p[~p[line].isin(thin.index)])
        m = common_mean(
            pd.concat(kept), panel + ["target"], [line], cells, ["score", "dense_score"], notes, f"{what} {view}"
        )
        parts.append(m.assign(view=view))
    if not parts:
        raise ValueError(f"{what}: no sparse runs to aggregate")
    return errors(pd.concat(parts, ignore_index=True))


def _draw(
    d: pd.DataFrame,
    rows: list,
    cols: list,
    row_col: str,
    col_col: str,
    line: str,
    inputs: Inputs,
    y: str = "relative_error",
    title=None,
):
    fig, axes = grid(len(rows), len(cols), 3.4, 2.9, sharey=True)
    values = sorted(d[line].unique(), key=lambda v: inputs.models[v].params if v in inputs.models else v)
    if line == "model":
        values = ordered_models(inputs, d[line])
    colours = palette(values)
    label = {v: length_label(v) if line == "length" else str(v) for v in values}
    for r, rv in enumerate(rows):
        for c, cv in enumerate(cols):
            ax = axes[r][c]
            g = d[(d[row_col] == rv) & (d[col_col] == cv)] if row_col != col_col else d[d[col_col] == cv]
            for v in values:
                ln = g[g[line] == v].sort_values("target")
                if ln.empty:
                    continue
                ax.plot(ln["target"], ln[y], marker="o", ms=2.5, color=colours[v], label=label[v])
            ax.axhline(0, color="k", lw=0.6)
            ax.set_title(title(rv, cv) if title else f"{rv} · {cv}", fontsize=8)
            ax.set_xlabel("sparsity", fontsize=7)
            ax.grid(alpha=0.3)
        # the row's lines from every panel: a stopped run may leave the last panel empty
        drawn = {name: h for ax in axes[r] for h, name in zip(*ax.get_legend_handles_labels())}
        labels = [label[v] for v in values if label[v] in drawn]
        if labels:
            axes[r][-1].legend([drawn[lb] for lb in labels], labels, fontsize=6, title=line, title_fontsize=6)
        axes[r][0].set_ylabel(y.replace("_", " "), fontsize=8)
    return fig


PHASE_VIEWS = {
    "all methods": lambda c: c["phase"].isin(["prefill", "decode"]),
    "prefill methods": lambda c: c["phase"] == "prefill",
    "decode methods": lambda c: c["phase"] == "decode",
}


def length_effect(inputs: Inputs) -> Output:
    c, missing = curves(inputs)
    notes: list = []
    d = aggregate(c, PHASE_VIEWS, [], "length", ["method", "task", "model", "seed"], notes, "length effect")
    return Output(d, missing=missing, notes=notes)


def draw_length_effect(out: Output, inputs: Inputs):
    d = out.data.assign(one="")
    views = [v for v in PHASE_VIEWS if (d["view"] == v).any()]
    return _draw(d, [""], views, "one", "view", "length", inputs, title=lambda r, c: f"{c}: mean over tasks, models")


def draw_per_method(line: str):
    def draw(out: Output, inputs: Inputs):
        d = out.data.assign(one="")
        rows = sorted(d["family"].unique()) if "family" in d else [""]
        row_col = "family" if "family" in d else "one"
        return _draw(d, rows, sorted(d["method"].unique()), row_col, "method", line, inputs)

    return draw


def draw_family_by(col: str, line: str):
    def draw(out: Output, inputs: Inputs):
        d = out.data
        return _draw(
            d,
            sorted(d["family"].unique()),
            sorted(d[col].unique()),
            "family",
            col,
            line,
            inputs,
            title=lambda r, c: f"{r} · {length_label(c) if col == 'length' else c}",
        )

    return draw


def model_size(inputs: Inputs) -> Output:
    s = inputs.settings
    c, missing = curves(inputs)
    c = c[c["phase"].isin(["prefill", "decode"])]
    groups = {"easy tasks": s["easy_tasks"], "hard tasks": s["hard_tasks"]}
    kind = lambda x: x["task_kind"] if "task_kind" in x else x["task"]  # noqa: E731  (registered task)
    views = {name: (lambda x, t=tasks: kind(x).isin(t)) for name, tasks in groups.items()}
    if not any(kind(c).isin(t).any() for t in groups.values()):
        raise ValueError(
            f"no sparse runs on the easy tasks {groups['easy tasks']} or hard tasks {groups['hard tasks']} "
            "(config figures.easy_tasks / hard_tasks)"
        )
    notes: list = []
    d = aggregate(c, views, ["family"], "model", ["method", "task", "length", "seed"], notes, "model size")
    return Output(d, missing=missing, notes=notes)


def draw_model_size(out: Output, inputs: Inputs):
    d = out.data
    views = [v for v in ("easy tasks", "hard tasks") if (d["view"] == v).any()]
    return _draw(
        d,
        sorted(d["family"].unique()),
        views,
        "family",
        "view",
        "model",
        inputs,
        title=lambda r, c: f"{r} · {c}: mean over methods",
    )


def per_view(panel: list, line: str, cells: list, what: str):
    """A figure's data: every sparse method's error averaged per (panel, line, sparsity) over ``cells``."""

    def data(inputs: Inputs) -> Output:
        c, missing = curves(inputs)
        notes: list = []
        d = aggregate(c, {"": lambda x: x["phase"] != "none"}, panel, line, cells, notes, what)
        return Output(d, missing=missing, notes=notes)

    return data


length_effect_per_method = per_view(["method"], "length", ["task", "model", "seed"], "length effect per method")
length_effect_per_task = per_view(["family", "task"], "length", ["method", "model", "seed"], "length effect per task")
model_size_per_method = per_view(["family", "method"], "model", ["task", "length", "seed"], "model size per method")
model_size_per_length = per_view(["family", "length"], "model", ["method", "task", "seed"], "model size per length")
