"""The paper's tables: taxonomy (Table 1), tasks (Table 2), prompt lengths (Table 5), pattern
parameters (Table 6), models, main results and the scaling-law fit (Tables 3, 4, 7).

Taxonomy, tasks and models come from the registries and the config alone (no runs); the pattern
parameters from each method's own resolution of its target at each length (and the model's captured
calibration table where the grid has one); prompt lengths from the dense runs' per-sample rows.
"""

from __future__ import annotations

import pandas as pd

from sparse_frontier.analysis.figures.common import Inputs, Output, fixed, labelled_samples, plan_table, prepare


@fixed
def taxonomy(inputs: Inputs) -> Output:
    """Table 1: unit, budget allocation and KV-cache management of every registered sparse method."""
    from sparse_frontier.analysis.registry_tables import method_taxonomy

    return Output(method_taxonomy())


@fixed
def tasks(inputs: Inputs) -> Output:
    """Table 2: dispersion, scope and naturalness of every registered task."""
    from sparse_frontier.analysis.registry_tables import task_taxonomy

    return Output(task_taxonomy())


@fixed
def models(inputs: Inputs) -> Output:
    """The models of the grid: family, source, architecture, tensor-parallel size and lengths run."""
    rows = []
    lengths: dict[str, set] = {}
    for exp in inputs.config.get("experiments", {}).values():
        for m in exp["models"]:
            lengths.setdefault(m, set()).update(int(x) for x in exp["lengths"])
    for name, entry in inputs.config.get("models", {}).items():
        a = entry.get("architecture", {})
        rows.append(
            dict(
                model=name,
                family=inputs.families.get(name),
                source=entry.get("source"),
                params=a.get("params"),
                layers=a.get("layers"),
                hidden=a.get("hidden"),
                heads=a.get("heads"),
                kv_heads=a.get("kv_heads"),
                head_dim=a.get("head_dim"),
                mlp=a.get("mlp"),
                vocabulary=a.get("vocabulary"),
                sliding_window=a.get("sliding_window"),
                global_every=a.get("global_every"),
                tensor_parallel_size=entry.get("tensor_parallel_size"),
                lengths=" ".join(str(x) for x in sorted(lengths.get(name, ()))),
            )
        )
    return Output(pd.DataFrame(rows))


def dense_runs(frame: pd.DataFrame, inputs: Inputs) -> pd.Series:
    return frame["method"] == "dense"


def prompt_lengths(inputs: Inputs) -> Output:
    """Table 5: question + instruction tokens per task (the prompt without its context, chat template
    included; the paper: 184-458 with the Qwen tokenizer), per model, with the whole prompts' share
    inside the [0.95 L, L] window."""
    if inputs.samples is None:
        raise ValueError("prompt_lengths needs the per-sample scores of the dense runs")
    table, missing = prepare(inputs)
    s = labelled_samples(inputs.samples, table)
    s = s[s["method"] == "dense"].drop_duplicates(["task", "model", "length", "seed", "id"])
    notes = []
    if "question_tokens" not in s or s["question_tokens"].isna().all():
        s = s.assign(question_tokens=float("nan"))
        notes.append(
            "question_tokens unknown: the datasets were generated before it was recorded; regenerate "
            "them (snakemake --forcerun generate_dataset) for the question + instruction lengths"
        )
    window = s.assign(inside=(s["prompt_tokens"] >= 0.95 * s["length"]) & (s["prompt_tokens"] <= s["length"]))
    out = (
        window.groupby(["task", "model"])
        .agg(
            samples=("question_tokens", "size"),
            question_tokens_mean=("question_tokens", "mean"),
            question_tokens_std=("question_tokens", "std"),
            question_tokens_min=("question_tokens", "min"),
            question_tokens_max=("question_tokens", "max"),
            prompts_in_window=("inside", "mean"),
        )
        .reset_index()
    )
    return Output(out, missing=missing, notes=notes)


@fixed
def pattern_params(inputs: Inputs) -> Output:
    """Table 6: the hyperparameters each main-grid setting resolves to per model and length
    (verticals/slashes, alpha/min_budget, top_chunks, token budgets), by the methods themselves."""
    from sparse_frontier.hyperparameters import resolved_table

    plan = plan_table(inputs.config, inputs)
    plan = plan[plan["main"] & (plan["method"] != "dense")]
    settings = plan[["method", "method_args", "target", "model", "length"]].drop_duplicates(
        ["method", "target", "model", "length"]
    )
    out = resolved_table(settings, inputs.calibration or None)
    return Output(out.sort_values(["method", "model", "length", "target"]).reset_index(drop=True))
