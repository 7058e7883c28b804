"""Figures and tables drawn from the run summaries; each returns the figure and exactly the data it plots.

One module per figure family, each with a ``data(inputs) -> Output`` (the tidy frame) and a
``draw(output, inputs) -> figure``. :data:`FIGURES` and :data:`TABLES` list them with the runs each
one reads (``runs``: a filter over the config's runs), so `snakemake <figure>` asks for those runs
only, and a figure whose runs did not change is not redrawn. Missing runs (``status == "missing"``
rows, written with ``figures.allow_missing``) are collected in ``Output.missing``: :func:`build` then
fails with the list, or, with ``allow_missing``, draws what exists and lists them under the figure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

from sparse_frontier.analysis.figures import (
    ablations,
    accuracy,
    checks,
    costs,
    effects,
    iso,
    patterns,
    per_task,
    retention,
    scaling_law,
    tables,
)
from sparse_frontier.analysis.figures.common import (  # noqa: F401
    DEFAULTS,
    Inputs,
    Output,
    fit_width,
    plan_table,
    prepare,
    run_name,
)
from sparse_frontier.io import write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figure:
    """A figure or table: how its data is made, how it is drawn (None: a table), which runs it reads."""

    data: Callable[[Inputs], Output]
    draw: Callable[[Output, Inputs], object] | None = None
    #: (prepared run frame, inputs) -> which runs it reads; None: no runs (static)
    runs: Callable | None = None
    samples: bool = False  # reads the per-sample scores too
    calibration: bool = False  # reads the models' captured calibration tables
    attention: bool = False  # reads the captured real head of figures.patterns, where the config sets one


FIGURES: dict[str, Figure] = {
    "accuracy_vs_length": Figure(accuracy.data, accuracy.draw, accuracy.runs),
    "pattern_masks": Figure(patterns.data, patterns.draw, attention=True),
    "isoflops": Figure(iso.isoflops, iso.draw, iso.runs),
    "isocost": Figure(iso.isocost, iso.draw, iso.runs),
    "max_compression": Figure(retention.data, retention.draw, retention.runs, samples=True),
    "task_comparison": Figure(per_task.data, per_task.draw, per_task.runs),
    "length_effect": Figure(effects.length_effect, effects.draw_length_effect, accuracy.runs),
    "length_effect_per_method": Figure(
        effects.length_effect_per_method, effects.draw_per_method("length"), accuracy.runs
    ),
    "length_effect_per_task": Figure(
        effects.length_effect_per_task, effects.draw_family_by("task", "length"), accuracy.runs
    ),
    "model_size": Figure(effects.model_size, effects.draw_model_size, accuracy.runs),
    "model_size_per_method": Figure(effects.model_size_per_method, effects.draw_per_method("model"), accuracy.runs),
    "model_size_per_length": Figure(
        effects.model_size_per_length, effects.draw_family_by("length", "model"), accuracy.runs
    ),
    "cost_breakdown": Figure(costs.data, costs.draw),
    "scaling_law": Figure(scaling_law.data, scaling_law.draw, scaling_law.runs),
}
TABLES: dict[str, Figure] = {
    "taxonomy": Figure(tables.taxonomy),
    "tasks": Figure(tables.tasks),
    "models": Figure(tables.models),
    "prompt_lengths": Figure(tables.prompt_lengths, runs=tables.dense_runs, samples=True),
    "pattern_params": Figure(tables.pattern_params, calibration=True),
    "main_results": Figure(accuracy.main_results, runs=accuracy.runs),
    "scaling_law_fit": Figure(scaling_law.table, runs=scaling_law.runs),
    "frontier_checks": Figure(checks.data, runs=accuracy.runs),  # the main grid, as the means
}


def spec(name: str) -> Figure:
    """The figure or table ``name`` (``ablation_<name>`` for the config's ablations)."""
    if name.startswith("ablation_"):
        which = name.removeprefix("ablation_")
        return Figure(lambda inputs: ablations.data(inputs, which), ablations.draw, ablations.runs_of(which))
    if name in FIGURES or name in TABLES:
        return FIGURES.get(name) or TABLES[name]
    raise ValueError(
        f"unknown figure or table {name!r}; available: {', '.join(sorted({**FIGURES, **TABLES}))}, ablation_<name>"
    )


def build(name: str, inputs: Inputs, draw: bool = True) -> Output:
    """Data and (with ``draw``) figure of ``name``, with missing runs checked."""
    s = spec(name)
    out = s.data(inputs)
    out.missing = missing_runs(s, inputs) if s.runs else []
    out.notes = list(dict.fromkeys(out.notes))
    if out.missing:
        listing = "\n  ".join(out.missing)
        if not inputs.settings["allow_missing"]:
            raise ValueError(
                f"{name}: {len(out.missing)} runs missing from the results (set figures.allow_missing "
                f"to draw what exists):\n  {listing}"
            )
        log.warning("%s: drawn without %d missing runs:\n  %s", name, len(out.missing), listing)
    for note in out.notes:
        log.info("%s: %s", name, note)
    if draw and s.draw is not None:
        out.fig = s.draw(out, inputs)
    return out


def missing_runs(s: Figure, inputs: Inputs) -> list[str]:
    """The ``status == "missing"`` runs this figure would read (not those of other figures)."""
    table = inputs.table
    if "status" not in table or not (table["status"] == "missing").any():
        return []
    gone, _ = prepare(inputs, table[table["status"] == "missing"].assign(status="ok"))
    return sorted({run_name(r) for _, r in gone[s.runs(gone, inputs)].iterrows()})


def footnote(out: Output, limit: int = 6) -> str:
    lines = []
    if out.missing:
        lines.append(
            f"Missing runs ({len(out.missing)}): "
            + "; ".join(out.missing[:limit])
            + (" ..." if len(out.missing) > limit else "")
        )
    lines += out.notes[:limit] + (
        [f"... and {len(out.notes) - limit} more notes (see the log)"] if len(out.notes) > limit else []
    )
    return "\n".join(lines)


def place_footnote(fig, note: str) -> None:
    """Lay the figure out with ``note`` (missing runs, dropped cells) in a strip below the plots.

    The figure grows by the note's height (5 pt type, 1.3 line spacing, plus the x labels'
    clearance), so a long note (a partial run lists its missing runs) never covers an axis."""
    width, height = fig.get_size_inches()
    strip = (note.count("\n") + 1) * 5 * 1.3 / 72 + 0.15 if note else 0.0
    fig.set_size_inches(width, height + strip)
    bottom = strip / (height + strip)
    engine = fig.get_layout_engine()
    if engine is None:
        fig.tight_layout(rect=(0, bottom, 1, 1))
    else:  # constrained: its own rectangle, above the strip
        engine.set(rect=(0, bottom, 1, 1 - bottom))
    if note:
        fig.text(0.01, 0.002, note, fontsize=5, color="firebrick", va="bottom")


def save(
    out: Output,
    name: str,
    data_path: str,
    pdf_path: str | None = None,
    png_path: str | None = None,
    md_path: str | None = None,
) -> None:
    """Write the tidy CSV and the figure (PDF + PNG) or the markdown table, atomically."""
    write_text_atomic(data_path, out.data.to_csv(index=False))
    if md_path:
        text = out.data.to_markdown(index=False)
        if out.missing:
            text += "\n\nMissing runs (" + str(len(out.missing)) + "): " + "; ".join(out.missing) + "\n"
        if out.notes:
            text += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in out.notes) + "\n"
        write_text_atomic(md_path, text + "\n")
    if out.fig is not None:
        place_footnote(out.fig, fit_width(out.fig, footnote(out), 5))
        for path in filter(None, (pdf_path, png_path)):
            tmp = f"{path}.tmp.{path.rsplit('.', 1)[-1]}"
            out.fig.savefig(tmp, dpi=150)
            os.replace(tmp, path)
        plt.close(out.fig)


# ---------------------------------------------------------------- which runs each figure reads
def runs_per_figure(config: dict, runs=None, names=None) -> dict[str, list[str]]:
    """name -> the run summaries it reads (empty for static figures and tables)."""
    inputs = Inputs.from_config(config)
    plan = plan_table(config, inputs, runs)
    names = names or (list(FIGURES) + list(TABLES) + [f"ablation_{a}" for a in inputs.settings["ablations"]])
    out = {}
    for name in names:
        s = spec(name)
        out[name] = plan.loc[s.runs(plan, inputs), "summary"].tolist() if s.runs else []
    return out


def load_inputs(
    config: dict,
    summaries: list[str] = (),
    expected: list[str] = (),
    samples: bool = False,
    calibration: dict | None = None,
    attention: dict | None = None,
) -> Inputs:
    """Inputs from run summaries (and their per-sample scores), with the expected-but-absent runs as
    ``status == "missing"`` rows when the config allows missing runs."""
    from sparse_frontier.analysis.aggregate import add_phase, collect_sample_scores, collect_summaries, with_missing

    summaries = list(summaries)
    table, sample_table = pd.DataFrame(), None
    if summaries:
        table = add_phase(collect_summaries(summaries))
        if samples:
            sample_table = collect_sample_scores(summaries)
    if expected and config.get("figures", {}).get("allow_missing"):
        table = with_missing(table, list(expected))
    inputs = Inputs.from_config(config, table, sample_table)
    inputs.calibration = calibration or {}
    inputs.attention = attention or {}
    return inputs


def load_tables(config: dict, table_path: str, samples_path: str | None = None) -> Inputs:
    """Inputs from the collected tables (results/tables/scores.csv and sample_scores.csv), for notebooks."""
    table = pd.read_csv(table_path)
    samples = pd.read_csv(samples_path) if samples_path else None
    return Inputs.from_config(config, table, samples)
