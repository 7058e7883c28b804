"""Aggregation: every run summary of the config into the tidy run table and the per-sample table."""

import os


localrules:
    collect_scores,


SUMMARIES = [run.key.summary for run in RUNS.runs]


rule collect_scores:
    input:
        # with figures.allow_missing: only the runs already scored (the rest become "missing" rows)
        summaries=lambda wildcards: ([s for s in SUMMARIES if os.path.exists(s)] if ALLOW_MISSING else SUMMARIES),
        # a table drawn before from part of the runs is drawn again (sparse_frontier/analysis/partial.py)
        partial=lambda wildcards: records_to_check(paths.SCORES_TABLE, ALLOW_MISSING),
    output:
        table=paths.SCORES_TABLE,
        samples=paths.SAMPLE_SCORES_TABLE,
    log:
        paths.log_path(paths.SCORES_TABLE),
    conda:
        "../envs/pipeline.yaml"
    params:
        allow_missing=ALLOW_MISSING,
        expected=SUMMARIES,
    script:
        "../workflow/scripts/collect_scores.py"
