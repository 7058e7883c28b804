"""Snakemake script: one grouped prediction job, several method settings on one vLLM engine."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.predict import run_sweep

setup_logging(snakemake.log[0])
run_sweep(
    runs=snakemake.params.runs,
    dataset_path=snakemake.input.dataset,
    model_location=snakemake.params.model_location,
    manifest=snakemake.output[0],
)
