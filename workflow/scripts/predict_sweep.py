"""Snakemake script: one grouped prediction job, several method settings on one vLLM engine."""

from sparse_frontier.calibrate import use_calibration_table
from sparse_frontier.logs import setup_logging
from sparse_frontier.predict import run_sweep

setup_logging(snakemake.log[0])
# the model's captured calibration table (rule calibrate_attention), read by the engine's workers
use_calibration_table(snakemake.input.get("calibration"))
run_sweep(
    runs=snakemake.params.runs,
    dataset_path=snakemake.input.dataset,
    model_location=snakemake.params.model_location,
    manifest=snakemake.output[0],
)
