"""What every figure shares: its inputs and output, the run table's derived columns, fair averages,
interpolation to common sparsity points, and colours/markers that scale to any grid.

Fair averages. A figure that averages a line over cells (tasks, models, lengths) averages every line
of a panel over the same cells: the cells all of them have. Cells some line lacks (a run missing, or
not in the grid) are dropped from every line of that panel and said so in ``Output.notes`` (printed
under the figure), so no line's mean is biased by covering easier or harder cells than another's.
"""

from __future__ import annotations

import colorsys
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sparse_frontier import paths  # noqa: E402
from sparse_frontier.analysis import cost  # noqa: E402
from sparse_frontier.analysis.cost import Architecture  # noqa: E402

#: one cell of the grid, what a sparsity curve is interpolated within: a run's group (``RunKey.GROUP_FIELDS``,
#: everything but the method: one dataset under one output budget)
CELL_KEYS = list(paths.RunKey.GROUP_FIELDS)
DEFAULTS = {
    "allow_missing": False,
    "test": "wilcoxon",
    "alpha": 0.05,
    "bootstrap_resamples": 10000,
    "cost_batch_size": 64,
    "breakdown_lengths": [16384, 32768, 65536, 131072],
    "breakdown_batch_sizes": [1, 8, 64],
    "breakdown_compression": 5,
    "breakdown_family": None,
    "pair_batch_size": 8,
    "phase_methods": {},
    "easy_tasks": ["story_retrieval", "ruler_niah"],
    "hard_tasks": ["ruler_vt", "story_filtering"],
    "ablations": {},
    "iso_panels": [],
    "task_lengths": [],
    "interpolation_tolerance": 0.03,
}
_SIZE = re.compile(r"-\d+(\.\d+)?[bmk]\b.*$", re.IGNORECASE)


def family_of(model: str) -> str:
    """A model's family from its config name: what precedes the size ("qwen2.5-72b" -> "qwen2.5")."""
    return _SIZE.sub("", model) or model


@dataclass
class Inputs:
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame | None = None
    settings: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # name -> Architecture
    families: dict = field(default_factory=dict)  # name -> family
    config: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # model -> its captured calibration table
    #: the real head of figures.patterns (sparse_frontier.pattern_capture): query/key/value [n, 1, D], scale, ...
    attention: dict = field(default_factory=dict)

    def __post_init__(self):
        self.settings = {**DEFAULTS, **(self.settings or {})}

    @classmethod
    def from_config(cls, config: dict, table: pd.DataFrame | None = None, samples=None) -> Inputs:
        models = {n: Architecture.from_config(m, n) for n, m in config["models"].items() if "architecture" in m}
        families = {n: m.get("family") or family_of(n) for n, m in config["models"].items()}
        table = table if table is not None else pd.DataFrame()
        return cls(table, samples, config.get("figures", {}), models, families, config)

    @property
    def ablation_experiments(self) -> set[str]:
        return {spec["experiment"] for spec in self.settings["ablations"].values()}


@dataclass
class Output:
    data: pd.DataFrame
    fig: Any = None
    missing: list = field(default_factory=list)
    #: what the reader must know (cells dropped, lines left out, deliberate differences): under the figure
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------- the run table
def run_name(row) -> str:
    return f"{row['task']}/{row['task_args']}/length~{row['length']}/{row['model']}/seed~{row['seed']}/{row['method']}/{row['method_args']}"


def target_sparsity(method_args: str) -> float:
    """The setting's nominal sparsity (its ``sparsity`` knob; a combination's larger one), NaN if none."""
    args = paths.parse_args(method_args)
    values = [float(args[k]) for k in ("sparsity", "prefill_sparsity", "decode_sparsity") if k in args]
    values = [v for v in values if v > 0]
    return max(values) if values else float("nan")


def split_missing(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    if "status" not in table or table.empty:
        return table, []
    gone = table["status"] == "missing"
    return table[~gone].copy(), [run_name(r) for _, r in table[gone].iterrows()]


def method_phases(methods) -> dict[str, str]:
    from sparse_frontier.attention import get_method_class

    return {m: get_method_class(m).phase for m in set(methods)}


def prepare(inputs: Inputs, table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The runs that exist, with derived columns, and the names of the missing ones.

    Added: ``method_phase`` (registry: none/prefill/decode/kv/combined), ``phase`` (cost phase:
    prefill/decode, dense "none", combinations "combined"), ``family``, ``params``, ``target``
    (nominal sparsity; dense 0; a setting without a sparsity knob its measured sparsity rounded to
    0.01), ``compression`` (measured) and ``target_compression``, ``main`` (in an experiment that is
    not an ablation), ``label``.
    """
    table, missing = split_missing(inputs.table if table is None else table)
    if table.empty:
        return table, missing
    table = table.copy()
    if "method_phase" not in table:
        raw = table["phase"] if "phase" in table else table["method"].map(method_phases(table["method"]))
        table["method_phase"] = raw
    table["phase"] = table["method_phase"].map(lambda p: cost.METHOD_PHASE.get(p, p))
    table["family"] = table["model"].map(lambda m: inputs.families.get(m) or family_of(m))
    table["params"] = table["model"].map(lambda m: inputs.models[m].params if m in inputs.models else np.nan)
    measured = table["sparsity"].astype(float).fillna(0.0).clip(0, 1 - 1e-9)
    target = table["method_args"].map(target_sparsity)
    target = target.where(target.notna(), measured.round(2)).where(table["method"] != "dense", 0.0)
    table["sparsity"] = measured.where(table["method"] != "dense", 0.0)
    table["target"] = target.round(4)
    table["compression"] = 1.0 / (1.0 - table["sparsity"])
    table["target_compression"] = 1.0 / (1.0 - table["target"].clip(upper=1 - 1e-9))
    ablations = inputs.ablation_experiments
    experiments = table["experiments"].fillna("") if "experiments" in table else pd.Series("", index=table.index)
    table["main"] = experiments.map(lambda e: not e or any(x not in ablations for x in e.split(",")))
    table["label"] = [m if m == "dense" else f"{m} {t:g}" for m, t in zip(table["method"], table["target"])]
    table["task_kind"] = table["task"]
    table["task"] = task_labels(table, inputs.config)
    return table, missing


def task_labels(table: pd.DataFrame, config: dict) -> pd.Series:
    """The task each run is drawn and averaged under: its registered task, or, where the table holds
    that task with several argument sets (the demo's one- and two-needle NIAH), the config's name
    for each entry (else ``task (args)``), so that figures keep the variants apart. ``task_kind``
    keeps the registered task (retrieval type, easy / hard task lists)."""
    variants = table.groupby("task")["task_args"].nunique()
    several = set(variants[variants > 1].index)
    if not several:
        return table["task"]
    from sparse_frontier.config import task_entry_names

    try:
        names = task_entry_names(config) if config.get("tasks") else {}
    except ValueError:  # a config whose tasks no longer resolve: fall back to the arguments
        names = {}
    return pd.Series(
        [names.get((t, a), f"{t} ({a})") if t in several else t for t, a in zip(table["task"], table["task_args"])],
        index=table.index,
    )


def labelled_samples(samples: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The per-sample scores under the task names of the prepared ``table`` (:func:`task_labels`)."""
    if "task_kind" not in table or (table["task"] == table["task_kind"]).all():
        return samples
    labels = dict(zip(zip(table["task_kind"], table["task_args"]), table["task"]))
    return samples.assign(task=[labels.get(key, key[0]) for key in zip(samples["task"], samples["task_args"])])


def main_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Runs of the main grid: ablation-only settings never join the main method lines."""
    return table[table["main"]]


def phase_runs(inputs: Inputs, table: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Dense runs plus the runs of the phase's methods (config figures.phase_methods, or all)."""
    chosen = inputs.settings["phase_methods"].get(phase)
    keep = table["phase"] == phase
    if chosen:
        keep &= table["method"].isin(chosen)
    return table[keep | (table["method"] == "dense")]


def arch(inputs: Inputs, model: str) -> Architecture:
    if model not in inputs.models:
        raise ValueError(f"model {model!r} has no architecture in the config; models with one: {sorted(inputs.models)}")
    return inputs.models[model]


def need(table: pd.DataFrame, what: str) -> None:
    if table.empty:
        raise ValueError(f"no runs for {what} in the results table")


# ---------------------------------------------------------------- fair averages and interpolation
def common_mean(
    df: pd.DataFrame,
    panel: Sequence[str],
    line: Sequence[str],
    cells: Sequence[str],
    values: Sequence[str],
    notes: list,
    what: str = "",
    min_coverage: float = 0.0,
    with_cells: bool = False,
) -> pd.DataFrame:
    """Mean of ``values`` per (panel, line) over the ``cells`` every line of the panel has.

    ``min_coverage``: a line holding fewer than this share of the cells of the panel's fullest line
    is left out of the panel (and said so) rather than shrinking every other line to its few cells
    (e.g. 128k, where only a few methods run, in a figure averaged over methods).
    Returns one row per (panel, line) with the means, ``cells`` (how many were averaged) and, when
    ``score_se`` is among the columns, the standard error of the mean (independent cells).
    ``with_cells``: also a column ``common_cells``, the set of cells averaged (tuples), so a figure can
    say which of them a panel's mean covers when a line's gap shrank it.
    """
    panel, line, cells = list(panel), list(line), list(cells)
    rows = []
    groups = df.groupby(panel, sort=True, dropna=False) if panel else [((), df)]
    for pkey, p in groups:
        pkey = pkey if isinstance(pkey, tuple) else (pkey,)
        have = {lk: set(map(tuple, g[cells].to_numpy())) for lk, g in p.groupby(line, sort=True, dropna=False)}
        # the sparsity level is left out of the message: the same cells go missing at every level
        where = ", ".join(f"{k}={v}" for k, v in zip(panel, pkey) if k != "target")
        fullest = max(map(len, have.values()))
        thin = [lk for lk, c in have.items() if len(c) < min_coverage * fullest]
        for lk in thin:
            notes.append(
                f"{what}{' [' + where + ']' if where else ''}: {', '.join(map(str, line))}={lk} left out "
                f"(has {len(have[lk])} of the {fullest} cells of the fullest line)"
            )
            del have[lk]
        union = set().union(*have.values())
        common = set.intersection(*have.values())
        if len(common) < len(union):
            lacking = [lk for lk, c in have.items() if c != union]
            notes.append(
                f"{what}{' [' + where + ']' if where else ''}: averaged over the {len(common)} of "
                f"{len(union)} ({', '.join(cells)}) cells that all {len(have)} lines have "
                f"({len(lacking)} lines lack some)"
            )
        if not common:
            continue
        keep = pd.Series([tuple(r) in common for r in p[cells].to_numpy()], index=p.index)
        for lk, g in p[keep].groupby(line, sort=True, dropna=False):
            if lk not in have:
                continue
            lk = lk if isinstance(lk, tuple) else (lk,)
            row = dict(zip(panel, pkey), **dict(zip(line, lk)), **{v: g[v].mean() for v in values}, cells=len(g))
            if "score_se" in g:
                row["score_se"] = float(np.sqrt((g["score_se"] ** 2).sum()) / len(g))
            if "samples" in g:
                row["samples"] = int(g["samples"].sum())
            if with_cells:
                row["common_cells"] = common
            rows.append(row)
    return pd.DataFrame(rows)


def interpolate_curves(
    table: pd.DataFrame,
    curve: Sequence[str],
    tolerance: float,
    by: Sequence[str] = ("method",),
    points: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Each method's score curve per cell read at its nominal sparsities (the paper interpolates linearly).

    ``table`` holds the sparse runs and dense runs of the same cells; ``curve`` the cell columns
    (e.g. task, model, length). For every (method, cell), the points (measured sparsity, score),
    with dense at sparsity 0, are interpolated linearly at each nominal ``target`` of that method, so
    curves of runs whose measured sparsity missed the target a little average at common points.
    A target more than ``tolerance`` beyond the measured range is left out (NaN, then missing).
    ``by``: what tells curves of one cell apart (the method; an ablation adds the varied value).
    ``points``: read every curve at these sparsities instead of its own nominal ones (so methods
    with different level grids meet at common points; each keeps the points inside its range).
    Returns sparse rows with ``score``, ``score_se`` and ``dense_score`` at ``sparsity == target``.
    """
    curve, by = list(curve), list(by)
    dense = table[table["method"] == "dense"].drop_duplicates(curve).set_index(curve)
    sparse = table[table["method"] != "dense"]
    out = []
    for key, g in sparse.groupby(by + curve, sort=False):
        cell = key[len(by) :] if len(curve) > 1 else key[len(by)]
        if cell not in dense.index:
            continue
        d = dense.loc[cell]
        x = np.concatenate([[0.0], g["sparsity"].to_numpy(float)])
        y = np.concatenate([[d["score"]], g["score"].to_numpy(float)])
        se = np.concatenate([[d.get("score_se", 0.0)], g["score_se"].to_numpy(float)]) if "score_se" in g else None
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if points is not None:
            g = g.iloc[[0] * len(points)].assign(target=np.asarray(points, float), sparsity=np.nan)
        t = g["target"].to_numpy(float)
        inside = (t >= x.min() - tolerance) & (t <= x.max() + tolerance)
        rows = g.assign(
            score=np.where(inside, np.interp(t, x, y), np.nan),
            dense_score=float(d["score"]),
            measured_sparsity=g["sparsity"].to_numpy(float) if points is None else np.nan,
            sparsity=t,
            compression=1.0 / (1.0 - np.clip(t, 0, 1 - 1e-9)),
        )
        if se is not None:
            nearest = np.abs(x[:, None] - t[None, :]).argmin(0)
            rows["score_se"] = se[order][nearest]
        out.append(rows)
    if not out:
        return sparse.iloc[:0].assign(dense_score=np.nan, measured_sparsity=np.nan)
    return pd.concat(out, ignore_index=True).dropna(subset=["score"])


# ---------------------------------------------------------------- drawing
def grid(rows, cols, w=3.8, h=3.2, **kw):
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False, **kw)
    return fig, axes


def length_label(x: int) -> str:
    """16384 -> 16k; 128000 (the paper's "128k", as upstream ran it) -> 128k."""
    x = int(x)
    if x % 1000 == 0 and x >= 1000:  # before 1024: 128000 is also 125 x 1024
        return f"{x // 1000}k"
    if x % 1024 == 0:
        return f"{x // 1024}k"
    return str(x)


def palette(names: Sequence) -> dict:
    """Distinct colours for any number of names: the colourblind-safe set up to 10, evenly spaced hues beyond."""
    names = list(dict.fromkeys(names))
    import seaborn as sns

    if len(names) <= 10:
        colours = sns.color_palette("colorblind", max(len(names), 1))
    else:
        colours = [colorsys.hls_to_rgb(i / len(names), 0.45 + 0.15 * (i % 2), 0.65) for i in range(len(names))]
    return dict(zip(names, colours))


MARKER_CYCLE = "osD^vP*Xhp<>dH8"


def markers(names: Sequence) -> dict:
    """A marker per name for any number of names (the cycle repeats past 15, with colour telling apart)."""
    return {n: MARKER_CYCLE[i % len(MARKER_CYCLE)] for i, n in enumerate(dict.fromkeys(names))}


def shade(colour, level: float) -> tuple:
    """``colour`` lighter for small ``level`` in [0, 1] and darker for large (sparser settings darker)."""
    h, l, s = colorsys.rgb_to_hls(*colour[:3])
    return colorsys.hls_to_rgb(h, min(0.85, max(0.2, l + 0.35 - 0.5 * level)), s)


def ordered_models(inputs: Inputs, models) -> list[str]:
    return sorted(
        set(models),
        key=lambda m: (inputs.families.get(m) or family_of(m), inputs.models[m].params if m in inputs.models else 0, m),
    )


def fit_width(fig, text: str, fontsize: float) -> str:
    """``text`` wrapped to the figure's width (a character ~0.6 em wide), line by line: a title or
    note of a narrow figure (one task column) otherwise runs off both edges."""
    chars = max(20, int(fig.get_size_inches()[0] * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def suptitle(fig, text: str, fontsize: float = 9) -> None:
    fig.suptitle(fit_width(fig, text, fontsize), fontsize=fontsize)


def log_ticks(ax, values: Sequence[float]) -> None:
    ax.set_xscale("log")
    ticks = sorted({float(v) for v in values})
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.minorticks_off()


def fixed(fn: Callable) -> Callable:
    """Mark a data function as needing no runs (static tables and figures)."""
    fn.needs_runs = False
    return fn


def note_rows(out: Output) -> list[str]:
    return list(dict.fromkeys(out.notes))


def se_bound(samples: int | float) -> float:
    """The paper's bound on the standard error of a mean of scores in [0, 1] (appendix D.1): 0.5 / sqrt(N)."""
    return 0.5 / math.sqrt(samples) if samples else float("nan")


def plan_table(config: dict, inputs: Inputs | None = None, runs=None) -> pd.DataFrame:
    """The config's runs as a prepared frame (target sparsity standing in for the measured one)."""
    from sparse_frontier.config import expand_runs

    runs = expand_runs(config) if runs is None else runs
    inputs = inputs or Inputs.from_config(config)
    rows = pd.DataFrame([r.key.wildcards() for r in runs], columns=list(paths.RunKey.FIELDS))
    rows["experiments"] = [",".join(r.experiments) for r in runs]
    rows["summary"] = [r.key.summary for r in runs]
    rows["sparsity"] = float("nan")
    table, _ = prepare(inputs, rows)
    return table
