"""Snakemake script: one grouped prediction job, several method settings on one vLLM engine."""

from sparse_frontier.calibrate import use_calibration_table
from sparse_frontier.logs import setup_logging
from sparse_frontier.predict import run_sweep

# vLLM's CUDA engine starts its core in a spawned process, which re-imports this script as
# __mp_main__ (without the snakemake object): only the job itself runs the body.
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    # the model's captured calibration table (rule calibrate_attention), read by the engine's workers
    use_calibration_table(snakemake.input.get("calibration"))
    run_sweep(
        runs=snakemake.params.runs,
        dataset_path=snakemake.input.dataset,
        model_location=snakemake.params.model_location,
        manifest=snakemake.output[0],
    )
