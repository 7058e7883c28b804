"""Scoring: the task's metric per sample, and a summary per run."""


rule score:
    input:
        dataset=paths.DATASET,
        predictions=paths.PREDICTIONS,
    output:
        scores=paths.SCORES,
        summary=paths.SUMMARY,
    log:
        paths.log_path(paths.SCORES),
    benchmark:
        paths.benchmark_path(paths.SCORES)
    conda:
        "../envs/pipeline.yaml"
    params:
        run=run_params,
    script:
        "../workflow/scripts/score.py"
