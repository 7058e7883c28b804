"""Snakemake script: capture one query head of one layer on a dataset prompt (the pattern figure)."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.pattern_capture import capture_head

# vLLM's CUDA engine starts its core in a spawned process, which re-imports this script as
# __mp_main__ (without the snakemake object): only the job itself runs the body.
if __name__ == "__main__":
    setup_logging(snakemake.log[0])
    run = snakemake.params.run
    key = run["key"]
    capture_head(
        snakemake.params.model_location,
        snakemake.input.dataset,
        snakemake.output[0],
        run["engine"],
        layer=int(snakemake.wildcards.layer),
        head=int(snakemake.wildcards.head),
        sample=int(snakemake.wildcards.sample),
        max_model_len=key["length"] + key["max_tokens"],
        tensor_parallel_size=run["model"]["tensor_parallel_size"],
        yarn_original=run["model"].get("yarn_original_max_position_embeddings"),
        seed=key["seed"],
        model_name=key["model"],
    )
