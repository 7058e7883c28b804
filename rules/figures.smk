"""Figures and tables: one rule per figure and per table, a named target each, and all_figures.

Each figure reads the run summaries it plots and no others (sparse_frontier.analysis.figures lists
which), so `snakemake isoflops` plans only those runs, static tables (taxonomy, tasks, models) and
the cost and pattern figures plan none, and a figure whose runs did not change is not redrawn.
"""

from sparse_frontier.analysis.figures import FIGURES, TABLES, spec

for _name in list(FIGURES) + ABLATIONS:
    _caption = "ablation" if _name.startswith("ablation_") else _name

    rule:
        name:
            f"plot_{_name}"
        input:
            unpack(figure_input(_name, paths.FIGURE.format(figure=_name))),
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
            unpack(figure_input(_name, paths.TABLE.format(table=_name))),
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
