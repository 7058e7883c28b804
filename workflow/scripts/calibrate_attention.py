"""Snakemake script: calibrate Vertical-Slash / FlexPrefill on one model's captured attention."""

from sparse_frontier.calibrate import calibrate_model
from sparse_frontier.logs import setup_logging

# vLLM's CUDA engine starts its core in a spawned process, which re-imports this script as
# __mp_main__ (without the snakemake object): only the job itself runs the body.
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run = snakemake.params.run
    calibrate_model(
        snakemake.params.model_location,
        snakemake.wildcards.model,
        {int(length): path for length, path in snakemake.params.datasets.items()},
        snakemake.output[0],
        run["engine"],
        # only the settings the grid's runs look up: the methods' defaults would add captures (their
        # approximation sizes) and fits no run of this config uses
        methods=(),
        settings=snakemake.params.settings,
        prompts_per_length=snakemake.params.prompts,
        max_new_tokens=run["key"]["max_tokens"],
        tensor_parallel_size=run["model"]["tensor_parallel_size"],
        yarn_original=run["model"].get("yarn_original_max_position_embeddings"),
    )
