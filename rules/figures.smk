"""Figures and tables: one rule per figure and per table, a named target each, and all_figures."""

from sparse_frontier.analysis.figures import FIGURES, TABLES

#: what a figure or table reads ("table", "samples") -> the file
ANALYSIS_INPUTS = {"table": paths.SCORES_TABLE, "samples": paths.SAMPLE_SCORES_TABLE}


for _name, (_, _needs) in FIGURES.items():

    rule:
        name:
            f"plot_{_name}"
        input:
            **{k: ANALYSIS_INPUTS[k] for k in _needs},
        output:
            pdf=report(
                paths.FIGURE.format(figure=_name),
                caption=f"../workflow/report/{_name}.rst",
                category="Figures",
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
        script:
            "../workflow/scripts/plot_figure.py"

    rule:
        name:
            _name
        input:
            paths.FIGURE.format(figure=_name),
            paths.FIGURE_DATA.format(figure=_name),
        localrule: True


for _name, (_, _needs) in TABLES.items():

    rule:
        name:
            f"make_table_{_name}"
        input:
            **{k: ANALYSIS_INPUTS[k] for k in _needs},
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
        script:
            "../workflow/scripts/plot_figure.py"

    rule:
        name:
            f"table_{_name}"
        input:
            paths.TABLE.format(table=_name),
        localrule: True


ABLATIONS = [f"ablation_{a}" for a in config.get("figures", {}).get("ablations", {})]
SKIP = set(config.get("figures", {}).get("skip", []))
DRAWN = [f for f in list(FIGURES) + ABLATIONS if f not in SKIP]


rule plot_ablation:
    """Hyperparameter ablations declared in config figures.ablations (results/figures/ablation_<name>)."""
    input:
        table=paths.SCORES_TABLE,
    output:
        pdf=report(
            paths.FIGURE.replace("{figure}", "ablation_{ablation}"),
            caption="../workflow/report/ablation.rst",
            category="Ablations",
        ),
        png=paths.FIGURE_PNG.replace("{figure}", "ablation_{ablation}"),
        data=paths.FIGURE_DATA.replace("{figure}", "ablation_{ablation}"),
    log:
        paths.log_path(paths.FIGURE.replace("{figure}", "ablation_{ablation}")),
    localrule: True
    conda:
        "../envs/pipeline.yaml"
    params:
        name=lambda wildcards: f"ablation_{wildcards.ablation}",
    script:
        "../workflow/scripts/plot_figure.py"


# Every figure (with its CSV), every table and every declared ablation.
rule all_figures:
    input:
        [paths.FIGURE.format(figure=f) for f in DRAWN],
        [paths.FIGURE_DATA.format(figure=f) for f in DRAWN],
        [paths.TABLE.format(table=t) for t in TABLES if t not in SKIP],
    localrule: True
