"""Snakemake script: gather every run summary into one tidy table."""

from sparse_frontier.analysis.aggregate import collect_summaries, write_table
from sparse_frontier.logs import setup_logging

setup_logging(snakemake.log[0])
write_table(collect_summaries(list(snakemake.input)), snakemake.output[0])
