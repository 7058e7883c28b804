"""Aggregation: every run summary of the config into one tidy table."""


localrules:
    collect_scores,


rule collect_scores:
    input:
        [run.key.summary for run in RUNS.runs],
    output:
        paths.SCORES_TABLE,
    log:
        paths.log_path(paths.SCORES_TABLE),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../workflow/scripts/collect_scores.py"
