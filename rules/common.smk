"""Config validation, the run grid, path grammar and wildcard constraints shared by all rules."""

import inspect
import os

from snakemake.common import overwrite_function_params

from sparse_frontier import paths
from sparse_frontier.analysis.figures import FIGURES, TABLES, runs_per_figure, spec
from sparse_frontier.analysis.partial import records_to_check
from sparse_frontier.config import RunIndex, check_config, expand_runs, model_location
from sparse_frontier.logs import failures_logged
from sparse_frontier.predict import copy_sweep_predictions
from sparse_frontier.planning.resources import predict_resources
from sparse_frontier.sweeps import SweepIndex, sweep_resources
from sparse_frontier.calibrate import (
    calibration_datasets,
    calibration_settings,
    needs_calibration,
)
from sparse_frontier.pattern_capture import pattern_source
from sparse_frontier.tasks.qa.sources import NORMALISED, SOURCES, normalised_path

# Not Snakemake's validate: errors name file:line, key path and allowed keys in a few lines (not the
# whole schema), and a key given twice in a config file is refused instead of silently overridden.
check_config(config, workflow.configfiles)

RUNS = RunIndex(expand_runs(config))
# Grouped prediction (engine.methods_per_job > 1): the chunks of methods sharing one engine.
SWEEPS = SweepIndex(RUNS.runs, config["engine"]["methods_per_job"]) if config["engine"]["methods_per_job"] > 1 else None


wildcard_constraints:
    **paths.WILDCARD_PATTERNS,


def known_params(func):
    """Compute a function's signature once: Snakemake otherwise runs inspect.signature on every call
    (several per job; about a tenth of a dry run of the full grid)."""
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def cache_script_sources():
    """Resolve each rule's ``script:`` once, not once per job: Snakemake's DAG check reads the script
    through its source cache for every job (~15% of a full-grid dry run). Only scripts whose path has
    no wildcards are cached (the same file for every job); left alone if Snakemake's function changed,
    which tests/test_snakemake_internals.py turns into a failure.
    """
    import snakemake.script as smk_script

    original = smk_script.get_source
    expected = ["path", "sourcecache", "basedir", "wildcards", "params"]
    if getattr(original, "cached_by_sparse_frontier", False):
        return
    if list(inspect.signature(original).parameters) != expected:
        return
    cache = {}

    def get_source(path, sourcecache, basedir=None, wildcards=None, params=None):
        if "{" in str(path):
            return original(path, sourcecache, basedir, wildcards, params)
        where = getattr(basedir, "get_path_or_uri", lambda **_: basedir)(secret_free=False)
        key = (str(path), str(where), id(sourcecache))
        if key not in cache:
            cache[key] = original(path, sourcecache, basedir, wildcards, params)
        return cache[key]

    get_source.cached_by_sparse_frontier = True
    smk_script.get_source = get_source


cache_script_sources()


@known_params
def run_params(wildcards):
    """The run (plain data) a prediction/score job belongs to."""
    return RUNS.run(wildcards).as_dict()


@known_params
def dataset_run_params(wildcards):
    return RUNS.dataset_run(wildcards).as_dict()


@known_params
def model_folder(wildcards):
    return model_location(RUNS.dataset_run(wildcards).model)


@known_params
def model_inputs(wildcards):
    """The embedded model's checkpoint is built by a rule; hub ids and local folders are not."""
    location = model_folder(wildcards)
    return [location] if location.startswith("resources/") else []


@known_params
def qa_source_inputs(wildcards):
    """QA tasks read their normalised source file (rule fetch_qa_source); other tasks need none."""
    from sparse_frontier.tasks import get_task_class

    dataset = getattr(get_task_class(wildcards.task), "dataset", None)
    return [normalised_path(dataset)] if dataset else []


@known_params
def run_gpus(wildcards):
    return RUNS.run(wildcards).gpus


def predict_resource(name):
    @known_params
    def get(wildcards, attempt):
        return predict_resources(run_params(wildcards), attempt)[name]

    return get


@known_params
def sweep_runs_params(wildcards):
    """The runs (plain data) a grouped prediction job predicts, in config order."""
    return [run.as_dict() for run in SWEEPS.sweep(wildcards).runs]


@known_params
def sweep_of_run(wildcards):
    """The manifest of the grouped prediction job holding this run."""
    return SWEEPS.of_run(RUNS.run(wildcards).key).manifest


@known_params
def sweep_gpus(wildcards):
    return SWEEPS.sweep(wildcards).gpus


def sweep_resource(name):
    @known_params
    def get(wildcards, attempt):
        return sweep_resources(SWEEPS.sweep(wildcards), attempt)[name]

    return get


@known_params
def demo_inputs(wildcards):
    if config["name"] != "demo":
        raise ValueError(
            f"the demo target runs config/demo.yaml, but the config in use is {config['name']!r}: "
            "snakemake --configfile config/demo.yaml --profile profiles/local demo"
        )
    return [paths.SCORES_TABLE] + rules.all_figures.input


# -- calibration on captured attention (rules/calibrate.smk) ---------------------------------
CALIBRATION = config["calibration"]  # schema defaults filled in by validate()
# {model: {length: dataset}}: only models with runs of a calibrated method
CALIBRATION_PLAN = calibration_datasets(RUNS.runs, config) if CALIBRATION["capture"] else {}
# {model: [{method, fixed, lengths}]}: each calibrated setting its runs look up (e.g. Vertical-Slash
# at approximation_size 256 and 512), fitted by its calibrate_attention job
CALIBRATION_SETTINGS = calibration_settings(RUNS.runs) if CALIBRATION["capture"] else {}


@known_params
def calibration_input(wildcards):
    """The model's captured calibration table for runs that need one, else nothing."""
    if CALIBRATION_PLAN and needs_calibration(wildcards.method):
        return paths.CALIBRATION.format(model=wildcards.model)
    return []


@known_params
def sweep_calibration_input(wildcards):
    """The same for a grouped prediction job: needed if any of its runs needs it."""
    if CALIBRATION_PLAN and any(needs_calibration(r.key.method) for r in SWEEPS.sweep(wildcards).runs):
        return paths.CALIBRATION.format(model=wildcards.model)
    return []


@known_params
def calibration_datasets_of(wildcards):
    return list(CALIBRATION_PLAN[wildcards.model].values())


def calibration_dataset_wildcards(wildcards):
    """Wildcards of the model's longest calibration dataset (it sizes the job)."""
    lengths = CALIBRATION_PLAN[wildcards.model]
    return paths.parse_path(paths.DATASET, lengths[max(lengths)])


@known_params
def calibration_run(wildcards):
    """A run of that dataset (plain data): the model entry, engine and output budget."""
    return RUNS.dataset_run(calibration_dataset_wildcards(wildcards)).as_dict()


def calibration_resource(name):
    @known_params
    def get(wildcards, attempt):
        return predict_resources(calibration_run(wildcards), attempt)[name]

    return get


@known_params
def calibration_gpus(wildcards):
    return RUNS.dataset_run(calibration_dataset_wildcards(wildcards)).gpus


# The pattern figure's real head (figures.patterns), or None for the toy head.
PATTERN_SOURCE = pattern_source(config, RUNS.runs)


@known_params
def dataset_gpus(wildcards):
    return RUNS.dataset_run(wildcards).gpus


def dataset_resource(name):
    """A job on one prompt of a dataset (capture_attention_head) is sized like its predict jobs."""

    @known_params
    def get(wildcards, attempt):
        return predict_resources(dataset_run_params(wildcards), attempt)[name]

    return get


@known_params
def calibration_model_inputs(wildcards):
    return model_inputs(calibration_dataset_wildcards(wildcards))


@known_params
def calibration_model_location(wildcards):
    return model_folder(calibration_dataset_wildcards(wildcards))


# -- figures and tables (rules/figures.smk): the runs each one reads ---------------------------
ABLATIONS = [f"ablation_{a}" for a in config.get("figures", {}).get("ablations", {})]
SKIP = set(config.get("figures", {}).get("skip", []))
DRAWN = [f for f in list(FIGURES) + ABLATIONS if f not in SKIP]
FIGURE_RUNS = runs_per_figure(config, RUNS.runs, list(FIGURES) + list(TABLES) + ABLATIONS)
ALLOW_MISSING = config.get("figures", {}).get("allow_missing", False)


def figure_input(name, output):
    """The summaries a figure reads (with figures.allow_missing: those already scored), the
    per-sample scores beside them if it needs those, the captured calibration tables, and the
    missing-runs record of an ``output`` drawn before from part of its runs (sparse_frontier/analysis/partial.py).
    """
    wanted = FIGURE_RUNS[name]
    needs = spec(name)

    @known_params
    def get(wildcards):
        have = [s for s in wanted if os.path.exists(s)] if ALLOW_MISSING else wanted
        out = {"summaries": have}
        if needs.samples:
            out["samples"] = [s.removesuffix("summary.json") + "scores.jsonl" for s in have]
        if needs.calibration:
            out["calibration"] = [paths.CALIBRATION.format(model=m) for m in CALIBRATION_PLAN]
        if needs.attention and PATTERN_SOURCE:
            out["attention"] = PATTERN_SOURCE["path"]
        out["partial"] = records_to_check(output, ALLOW_MISSING)
        return out

    return get
