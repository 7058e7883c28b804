"""Config validation, the run grid, path grammar and wildcard constraints shared by all rules."""

from snakemake.utils import validate

from sparse_frontier import paths
from sparse_frontier.config import RunIndex, expand_runs, model_location
from sparse_frontier.resources import predict_resources

validate(config, "../workflow/schemas/config.schema.yaml")

RUNS = RunIndex(expand_runs(config))


wildcard_constraints:
    **paths.WILDCARD_PATTERNS,


def run_params(wildcards):
    """The run (plain data) a prediction/score job belongs to."""
    return RUNS.run(wildcards).as_dict()


def dataset_run_params(wildcards):
    return RUNS.dataset_run(wildcards).as_dict()


def model_folder(wildcards):
    return model_location(RUNS.dataset_run(wildcards).model)


def model_inputs(wildcards):
    """The embedded model's checkpoint is built by a rule; hub ids and local folders are not."""
    location = model_folder(wildcards)
    return [location] if location.startswith("resources/") else []


def predict_resource(name):
    def get(wildcards, attempt):
        return predict_resources(run_params(wildcards), attempt)[name]

    return get


def demo_inputs(wildcards):
    if config["name"] != "demo":
        raise ValueError(
            f"the demo target runs config/demo.yaml, but the config in use is {config['name']!r}: "
            "snakemake --configfile config/demo.yaml --profile profiles/local demo"
        )
    return [paths.SCORES_TABLE] + rules.all_figures.input
