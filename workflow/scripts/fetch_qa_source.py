"""Snakemake script: fetch (or read from the configured local path) one QA source, normalised."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.tasks.qa.sources import fetch_qa_source

setup_logging(snakemake.log[0])
fetch_qa_source(
    dataset=snakemake.wildcards.dataset,
    output=snakemake.output[0],
    local_path=snakemake.params.local_path,
)
