"""Snakemake script: the grid's GPU-hours from a measured throughput table (sparse_frontier/planning/report.py)."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.planning.report import write_outputs

setup_logging(snakemake.log[0])
write_outputs(
    snakemake.params.grid,
    snakemake.input.throughput,
    snakemake.output.csv,
    snakemake.output.md,
    snakemake.output.runs,
    typical_output_tokens=snakemake.params.typical_output_tokens,
    card=snakemake.params.card,
    rows_card=snakemake.params.rows_card,
)
