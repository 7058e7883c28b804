"""Snakemake script: gather every run summary into the tidy run table and the per-sample table."""

from sparse_frontier.analysis.aggregate import (
    add_phase,
    collect_sample_scores,
    collect_summaries,
    with_missing,
    write_table,
)
from sparse_frontier.analysis.partial import record_missing_runs
from sparse_frontier.logs import setup_logging

setup_logging(snakemake.log[0])
summaries = list(snakemake.input.summaries)
table = add_phase(collect_summaries(summaries))
if snakemake.params.allow_missing:  # runs not done yet become visible "missing" rows
    table = with_missing(table, snakemake.params.expected)
write_table(table, snakemake.output.table)
write_table(collect_sample_scores(summaries), snakemake.output.samples)
record_missing_runs(snakemake.output.table, snakemake.params.expected, summaries)
