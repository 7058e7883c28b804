"""A SYNTHETIC results table of a whole config's grid (every run it asks for), made here, not by a model.

Used to build every figure and table at the scale users run (config/config.yaml: ~15k runs, ablations
included). Scores follow a known logit-linear law in log params, log length and log compression with
per-task offsets; a sparse run's per-sample successes are a subset of its dense twin's (the same
uniform draw per sample), so paired tests see real losses. Options make the table as real runs leave
it: measured sparsity jittered around the target, runs missing (marked ``status == "missing"`` as
``collect_scores`` does with ``figures.allow_missing``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparse_frontier.analysis.aggregate import KEY_COLUMNS
from sparse_frontier.attention import get_method_class
from sparse_frontier.config import expand_runs

ALPHA, BETA = 0.6, -0.35  # synthetic law: log params (billions), log length (k tokens)
#: loss per log compression: prefill methods lose more than decode ones, as in the paper
GAMMA = {"prefill": 0.55, "decode": 0.35, "kv": 0.45, "combined": 0.7, "none": 0.0}
TASK_OFFSET = {
    "ruler_niah": 2.0,
    "ruler_vt": 0.2,
    "ruler_cwe": -0.6,
    "qa_squad": 0.8,
    "qa_quality": 0.6,
    "qa_toefl": 1.0,
    "story_retrieval": 1.4,
    "story_multihop": -0.2,
    "story_filtering": -0.9,
}


def nominal_sparsity(params: dict) -> float:
    for name in ("sparsity", "decode_sparsity", "prefill_sparsity"):
        if params.get(name):
            return float(params[name])
    return 0.0


def law(task: str, params: float, length: int, sparsity: float, phase: str) -> float:
    eta = (
        ALPHA * np.log(params / 1e9)
        + BETA * np.log(length / 1024)
        + TASK_OFFSET.get(task, 0.0)
        - GAMMA[phase] * np.log(1.0 / (1.0 - sparsity)) * (1.0 + 0.3 * np.log(32768 / length))
    )
    return float(1.0 / (1.0 + np.exp(-eta)))


def whole_grid(
    config: dict,
    *,
    jitter: float = 0.0,
    missing: float = 0.0,
    missing_datasets=None,
    seed: int = 0,
    samples: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(runs table, per-sample table) of every run of ``config``, as ``collect_scores`` writes them.

    ``jitter``: standard deviation of measured sparsity around each run's target. ``missing``: the
    fraction of runs left out (kept as ``status == "missing"`` rows in the runs table, absent from
    the per-sample table). ``missing_datasets``: ``f(task, length) -> bool``, every run of the
    datasets it picks left out, as a run stopped part-way leaves it (a sweep job holds every method
    of one dataset).
    """
    rng = np.random.default_rng(seed)
    runs = expand_runs(config)
    phases = {m: get_method_class(m).phase for m in {r.key.method for r in runs}}
    draws: dict[tuple, np.ndarray] = {}  # one uniform per sample of each dataset: the pairing
    gone = rng.random(len(runs)) < missing
    if missing_datasets is not None:
        gone |= np.array([bool(missing_datasets(r.key.task, r.key.length)) for r in runs])
    run_rows, parts = [], []
    for run, is_gone in zip(runs, gone):
        k = run.key
        data_id = (k.task, k.task_args, k.length, k.model, k.samples, k.seed)
        if data_id not in draws:
            draws[data_id] = rng.random(k.samples)
        u = draws[data_id]
        target = nominal_sparsity(run.method_params)
        measured = float(np.clip(target + (rng.normal(0, jitter) if target and jitter else 0.0), 0.0, 0.99))
        phase = phases[k.method]
        score = (u < law(k.task, run.model["architecture"]["params"], k.length, measured, phase)).astype(float)
        key = k.wildcards()
        row = {**key, "experiments": ",".join(run.experiments), "phase": phase}
        if is_gone:
            run_rows.append({**row, "status": "missing"})
            continue
        q_tokens = 180 + 30 * (len(k.task) % 9)
        run_rows.append(
            {
                **row,
                "score": score.mean(),
                "score_std": score.std(ddof=1),
                "score_se": score.std(ddof=1) / np.sqrt(k.samples),
                "missing_answers": 0,
                "sparsity": measured,
                "prompt_tokens": 0.975 * k.length,
                "question_tokens": q_tokens,
                "output_tokens": 40.0,
                "status": "ok",
            }
        )
        if samples:
            parts.append((key, score, measured, q_tokens))
    table = pd.DataFrame(run_rows)
    table = table[KEY_COLUMNS + [c for c in table.columns if c not in KEY_COLUMNS]]
    if not samples:
        return table, None
    n = np.array([len(p[1]) for p in parts])
    columns = {c: np.repeat(np.array([p[0][c] for p in parts], dtype=object), n) for c in KEY_COLUMNS}
    for c in ("length", "samples", "seed", "max_tokens"):
        columns[c] = columns[c].astype(int)
    sample_table = pd.DataFrame(
        {
            **columns,
            "id": np.concatenate([np.arange(m) for m in n]),
            "score": np.concatenate([p[1] for p in parts]),
            "answer_found": True,
            "sparsity": np.repeat([p[2] for p in parts], n),
            "prompt_tokens": (0.975 * columns["length"]).astype(int),
            "question_tokens": np.repeat([p[3] for p in parts], n),
            "output_tokens": 40,
        }
    )
    return table, sample_table
