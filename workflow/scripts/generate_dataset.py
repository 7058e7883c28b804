"""Snakemake script: generate one task's dataset for one model tokenizer and length."""

from sparse_frontier.logs import setup_logging
from sparse_frontier.models import load_tokenizer
from sparse_frontier.paths import RunKey
from sparse_frontier.tasks.generate import generate_dataset

setup_logging(snakemake.log[0])
run = snakemake.params.run
key = run["key"]
generate_dataset(
    task_name=key["task"],
    task_params=run["task_params"],
    tokenizer=load_tokenizer(snakemake.params.model_location),
    length=key["length"],
    samples=key["samples"],
    seed=key["seed"],
    output=snakemake.output[0],
    max_tokens=key["max_tokens"],  # checked with the length against the checkpoint, before generating
    provenance={k: key[k] for k in RunKey.DATASET_FIELDS} | {"task_params": run["task_params"], "model": run["model"]},
)
