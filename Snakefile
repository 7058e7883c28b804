"""sparse-frontier: sparse attention in real LLMs, from dataset generation to the paper's figures.

Run the CPU demo with `make demo`; on a cluster: `snakemake --profile profiles/slurm all_figures`.
"""

from snakemake.utils import min_version

from sparse_frontier.config import read_config_file

min_version("9.0")


# The paper grid unless the command line names another config (--configfile config/demo.yaml).
# Read strictly first: Snakemake's reader names no line of a malformed file.
if not config:
    read_config_file("config/config.yaml")

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/datasets.smk"
include: "rules/calibrate.smk"
include: "rules/predict.smk"
include: "rules/score.smk"
include: "rules/aggregate.smk"
include: "rules/figures.smk"
include: "rules/estimate.smk"


rule all:
    """Every run's scores, the tidy table and every figure."""
    default_target: True
    input:
        paths.SCORES_TABLE,
        rules.all_figures.input,


rule demo:
    """The CPU demo (config/demo.yaml): the scores table and every figure."""
    input:
        demo_inputs,
