"""Snakemake script: run one prediction job in vLLM with the sparse_frontier plugin."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.predict import run_predictions

setup_logging(snakemake.log[0])
run_predictions(
    run=snakemake.params.run,
    dataset_path=snakemake.input.dataset,
    model_location=snakemake.params.model_location,
    output=snakemake.output[0],
)
