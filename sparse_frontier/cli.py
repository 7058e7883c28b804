"""``sparse-frontier``: run one pipeline step by hand, outside Snakemake, or inspect the registries.

Each step takes the config and the output path it should produce (the path grammar names the run),
exactly as the workflow's rules do, e.g.::

    sparse-frontier runs --config config/demo.yaml
    sparse-frontier check-config config/demo.yaml
    sparse-frontier predict --config config/demo.yaml results/predictions/.../predictions.jsonl
    sparse-frontier sweep --config grouped.yaml results/sweeps/.../sweep~<id>.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sparse_frontier import paths
from sparse_frontier.logs import setup_logging


def _load(config_path: str):
    """The config and its runs; any config error is a ConfigError naming the file (``main`` prints it
    without a traceback)."""
    from sparse_frontier.config import ConfigError, expand_runs, load_config
    from sparse_frontier.pattern_capture import pattern_source

    config = load_config(config_path)
    try:
        runs = expand_runs(config)
        pattern_source(config, runs)  # figures.patterns names a dataset of the grid
        return config, runs
    except ValueError as err:  # a methods/tasks entry, a model name, figures.patterns
        raise ConfigError(f"{config_path}: {err}") from None


def _run_for(config_path: str, template: str, output: str):
    from sparse_frontier.config import RunIndex

    index = RunIndex(_load(config_path)[1])
    wildcards = paths.parse_path(template, output)
    return index.dataset_run(wildcards) if template == paths.DATASET else index.run(wildcards)


def cmd_list(args) -> None:
    from sparse_frontier.attention import METHODS
    from sparse_frontier.tasks import TASKS

    registry = TASKS if args.command == "tasks" else METHODS
    for name in registry.names():
        cls = registry.get(name)
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        print(f"{name}: {fields or '(no parameters)'}")


def cmd_runs(args) -> None:
    for run in _load(args.config)[1]:
        print(run.key.predictions)


def cmd_check_config(args) -> None:
    for path in args.configs:
        print(f"{path}: valid, {len(_load(path)[1])} runs")


def cmd_convert_model(args) -> None:
    from sparse_frontier.models import convert_gguf_to_hf, embedded_gguf

    convert_gguf_to_hf(embedded_gguf(args.name), args.output)


def cmd_prepare(args) -> None:
    from sparse_frontier.config import model_location
    from sparse_frontier.models import load_tokenizer
    from sparse_frontier.tasks.generate import generate_dataset

    run = _run_for(args.config, paths.DATASET, args.output).as_dict()
    key = run["key"]
    generate_dataset(
        key["task"],
        run["task_params"],
        load_tokenizer(model_location(run["model"])),
        key["length"],
        key["samples"],
        key["seed"],
        args.output,
        provenance=run,
        max_tokens=key["max_tokens"],
    )


def cmd_predict(args) -> None:
    from sparse_frontier.config import model_location
    from sparse_frontier.predict import run_predictions

    run = _run_for(args.config, paths.PREDICTIONS, args.output)
    run_predictions(run.as_dict(), run.key.dataset, model_location(run.model), args.output)


def _sweep_index(config_path: str):
    from sparse_frontier.sweeps import SweepIndex

    config, runs = _load(config_path)
    return SweepIndex(runs, config["engine"]["methods_per_job"])


def cmd_sweeps(args) -> None:
    for sweep in _sweep_index(args.config).sweeps:
        print(sweep.manifest, " ".join(f"{r.key.method}/{r.key.method_args}" for r in sweep.runs))


def cmd_sweep(args) -> None:
    from sparse_frontier.config import model_location
    from sparse_frontier.predict import run_sweep

    sweep = _sweep_index(args.config).sweep(paths.parse_path(paths.SWEEP, args.output))
    run_sweep(
        [r.as_dict() for r in sweep.runs], sweep.runs[0].key.dataset, model_location(sweep.runs[0].model), args.output
    )


def cmd_calibrate(args) -> None:
    from sparse_frontier.calibrate import calibrate_model, calibration_settings, needs_calibration
    from sparse_frontier.config import model_location

    config, all_runs = _load(args.config)
    if args.model not in config["models"]:
        raise SystemExit(f"unknown model {args.model!r}; the config defines: {sorted(config['models'])}")
    model = config["models"][args.model]
    datasets = {}
    for item in args.dataset:
        length, sep, path = item.partition("=")
        if not sep or not length.isdigit():
            raise SystemExit(f"--dataset {item!r}: expected LENGTH=PATH, e.g. 16384=results/datasets/.../dataset.jsonl")
        datasets[int(length)] = path
    # engines sized like the model's sparse predict jobs (their output budget), as rule calibrate_attention does
    runs = [r for r in all_runs if r.key.model == args.model]
    budgets = [r.key.max_tokens for r in runs if needs_calibration(r.key.method)]
    # the settings the model's runs look up (each approximation_size ...; at every --dataset length),
    # else the methods' defaults
    settings = calibration_settings(runs).get(args.model)
    if settings is not None:
        settings = [{"method": s["method"], "fixed": s["fixed"]} for s in settings]
    calibrate_model(
        args.model_location or model_location(dict(model, name=args.model)),
        args.model,
        datasets,
        args.output,
        config["engine"],
        settings=settings,
        prompts_per_length=args.prompts,
        max_new_tokens=max(budgets, default=1),
        tensor_parallel_size=model["tensor_parallel_size"],
        yarn_original=model.get("yarn_original_max_position_embeddings"),
    )


def cmd_score(args) -> None:
    from sparse_frontier.scoring import score_run

    run = _run_for(args.config, paths.SCORES, args.output)
    score_run(run.as_dict(), run.key.dataset, run.key.predictions, args.output, run.key.summary)


def cmd_compare_scores(args) -> None:
    import pandas as pd

    from sparse_frontier.analysis.figures.checks import compare_scores

    tables = []
    for path in (args.a, args.b):
        if not Path(path).is_file():
            raise SystemExit(
                f"sparse-frontier compare-scores: no results table at {path!r} (collect_scores writes results/tables/scores.csv)"
            )
        tables.append(pd.read_csv(path))
    both = compare_scores(*tables, method=args.method)
    if both.empty:
        raise SystemExit(
            f"sparse-frontier compare-scores: {args.a} and {args.b} share no {args.method!r} cell "
            "(same task, task arguments, length, model, seed and method arguments)"
        )
    shown = both.drop(columns=["method"]).round(4)
    text = (
        f"# {args.method}: {args.a} (a) vs {args.b} (b)\n\n{shown.to_markdown(index=False)}\n\n"
        f"Within 1 combined SE: {int((both['in_se'] <= 1).sum())} of {len(both)} cells; within 2: "
        f"{int((both['in_se'] <= 2).sum())}.\n"
    )
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sparse-frontier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered tasks and their parameters").set_defaults(func=cmd_list)
    sub.add_parser("methods", help="list registered attention methods").set_defaults(func=cmd_list)
    p = sub.add_parser("runs", help="list the prediction files a config asks for")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("check-config", help="read and validate config files (file:line errors), expanding their runs")
    p.add_argument("configs", nargs="+", metavar="CONFIG")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("sweeps", help="list the grouped prediction jobs (engine.methods_per_job) and their methods")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_sweeps)
    p = sub.add_parser("convert-model", help="build an embedded model's HF checkpoint")
    p.add_argument("name")
    p.add_argument("output")
    p.set_defaults(func=cmd_convert_model)
    for name, func, what in [
        ("prepare", cmd_prepare, "dataset.jsonl"),
        ("predict", cmd_predict, "predictions.jsonl"),
        ("sweep", cmd_sweep, "sweep manifest (every run of one grouped prediction job)"),
        ("score", cmd_score, "scores.jsonl"),
    ]:
        p = sub.add_parser(name, help=f"write one {what} (path in the pipeline's grammar)")
        p.add_argument("--config", required=True)
        p.add_argument("output")
        p.set_defaults(func=func)
    p = sub.add_parser(
        "calibrate",
        help="calibrate Vertical-Slash/FlexPrefill on a model's own attention "
        "(captured on dataset prompts) into a calibration table",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True, help="model name in the config")
    p.add_argument("--model-location", help="checkpoint folder (default: the config's source)")
    p.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="LENGTH=PATH",
        help="a dataset generated for this model at LENGTH (repeat per length)",
    )
    p.add_argument("--prompts", type=int, default=4, help="prompts per length (default 4)")
    p.add_argument("output", help="calibration table (JSON) to write or extend")
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser(
        "compare-scores",
        help="the cells two results tables share (e.g. a GPU run and the CPU demo): scores, SEs, "
        "difference in combined SEs",
    )
    p.add_argument("a", help="a results table (results/tables/scores.csv)")
    p.add_argument("b", help="another results table")
    p.add_argument("--method", default="dense", help="which method's cells (default dense)")
    p.add_argument("--out", help="also write the markdown here")
    p.set_defaults(func=cmd_compare_scores)
    args = parser.parse_args(argv)
    setup_logging(args.log)
    from sparse_frontier.config import ConfigError

    try:
        args.func(args)
    except ConfigError as err:  # the message says where and what; a traceback would bury it
        parser.exit(2, f"sparse-frontier {args.command}: {err}\n")


if __name__ == "__main__":  # spawn-safe entry for vLLM's worker processes
    sys.exit(main())
