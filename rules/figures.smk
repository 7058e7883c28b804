"""Figures and tables: one rule per figure and per table, a named target each, and all_figures.

Each figure reads the run summaries it plots and no others (sparse_frontier.analysis.figures lists
which), so `snakemake isoflops` plans only those runs, static tables (taxonomy, tasks, models) and
the cost and pattern figures plan none, and a figure whose runs did not change is not redrawn.
"""

import os

from sparse_frontier.analysis.figures import FIGURES, TABLES, runs_per_figure, spec

ABLATIONS = [f"ablation_{a}" for a in config.get("figures", {}).get("ablations", {})]
SKIP = set(config.get("figures", {}).get("skip", []))
DRAWN = [f for f in list(FIGURES) + ABLATIONS if f not in SKIP]
FIGURE_RUNS = runs_per_figure(config, RUNS.runs, list(FIGURES) + list(TABLES) + ABLATIONS)
ALLOW_MISSING = config.get("figures", {}).get("allow_missing", False)


def figure_input(name):
    """The summaries a figure reads (with figures.allow_missing: those already scored), the
    per-sample scores beside them if it needs those, and the captured calibration tables."""
    wanted = FIGURE_RUNS[name]
    needs = spec(name)

    @known_params
    def get(wildcards):
        have = [s for s in wanted if os.path.exists(s)] if ALLOW_MISSING else wanted
        out = {"summaries": have}
        if needs.samples:
            out["samples"] = [s.removesuffix("summary.json") + "scores.jsonl" for s in have]
        if needs.calibration:
            out["calibration"] = [paths.CALIBRATION.format(model=m) for m in CALIBRATION_PLAN]
        return out

    return get


for _name in list(FIGURES) + ABLATIONS:
    _caption = "ablation" if _name.startswith("ablation_") else _name

    rule:
        name:
            f"plot_{_name}"
        input:
            unpack(figure_input(_name)),
        output:
            pdf=report(
                paths.FIGURE.format(figure=_name),
                caption=f"../workflow/report/{_caption}.rst",
                category="Ablations" if _name in ABLATIONS else "Figures",
            ),
            png=paths.FIGURE_PNG.format(figure=_name),
            data=paths.FIGURE_DATA.format(figure=_name),
        log:
            paths.log_path(paths.FIGURE.format(figure=_name)),
        localrule: True
        conda:
            "../envs/pipeline.yaml"
        params:
            name=_name,
            expected=FIGURE_RUNS[_name],
            samples=spec(_name).samples,
        script:
            "../workflow/scripts/plot_figure.py"

    rule:
        name:
            _name
        input:
            paths.FIGURE.format(figure=_name),
            paths.FIGURE_DATA.format(figure=_name),
        localrule: True


for _name in TABLES:

    rule:
        name:
            f"make_table_{_name}"
        input:
            unpack(figure_input(_name)),
        output:
            data=report(
                paths.TABLE.format(table=_name),
                caption=f"../workflow/report/table_{_name}.rst",
                category="Tables",
            ),
            md=paths.TABLE_MD.format(table=_name),
        log:
            paths.log_path(paths.TABLE.format(table=_name)),
        localrule: True
        conda:
            "../envs/pipeline.yaml"
        params:
            name=_name,
            expected=FIGURE_RUNS[_name],
            samples=spec(_name).samples,
        script:
            "../workflow/scripts/plot_figure.py"

    rule:
        name:
            f"table_{_name}"
        input:
            paths.TABLE.format(table=_name),
        localrule: True


# Every figure (with its CSV), every table and every declared ablation.
rule all_figures:
    input:
        [paths.FIGURE.format(figure=f) for f in DRAWN],
        [paths.FIGURE_DATA.format(figure=f) for f in DRAWN],
        [paths.TABLE.format(table=t) for t in TABLES if t not in SKIP],
    localrule: True
