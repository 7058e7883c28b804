"""Figures and tables: one rule per figure, a named target per figure, and all_figures."""

FIGURES = ["accuracy_vs_length"]


localrules:
    plot_accuracy_vs_length,
    accuracy_vs_length,
    all_figures,


rule plot_accuracy_vs_length:
    input:
        table=paths.SCORES_TABLE,
    output:
        pdf=report(
            paths.FIGURE.format(figure="accuracy_vs_length"),
            caption="../workflow/report/accuracy_vs_length.rst",
            category="Figures",
        ),
        png=paths.FIGURE_PNG.format(figure="accuracy_vs_length"),
        data=paths.FIGURE_DATA.format(figure="accuracy_vs_length"),
    log:
        paths.log_path(paths.FIGURE.format(figure="accuracy_vs_length")),
    conda:
        "../envs/pipeline.yaml"
    params:
        figure="accuracy_vs_length",
    script:
        "../workflow/scripts/plot_figure.py"


rule accuracy_vs_length:
    """Named target: the accuracy-vs-length figure."""
    input:
        rules.plot_accuracy_vs_length.output,


rule all_figures:
    input:
        [paths.FIGURE.format(figure=f) for f in FIGURES],
        [paths.FIGURE_DATA.format(figure=f) for f in FIGURES],
