"""Score predictions with the task's metric: per-sample rows plus a run summary."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from sparse_frontier.io import file_digest, read_jsonl, write_json_atomic, write_jsonl_atomic, write_provenance
from sparse_frontier.tasks import extract_answer, get_task_class


def check_predictions(dataset: list[dict], predictions: list[dict], dataset_path: str, predictions_path: str) -> None:
    """Refuse predictions that do not answer exactly this dataset's prompts, naming both files: rows
    recorded for another dataset file (digest), other prompts (token counts), stray, repeated or
    missing ids."""
    fix = f"delete {predictions_path} and rerun to predict this dataset again"
    digest = file_digest(dataset_path)
    foreign = sorted({p["dataset_digest"] for p in predictions if p.get("dataset_digest", digest) != digest})
    if foreign:
        raise ValueError(
            f"{predictions_path} was predicted for another dataset (digest {', '.join(foreign)}) than "
            f"{dataset_path} (digest {digest}): the dataset was regenerated since, or the predictions "
            f"come from elsewhere; {fix}"
        )
    ids = [p.get("id") for p in predictions]
    repeated = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    known = {s["id"]: s for s in dataset}
    stray = [i for i in ids if i not in known]
    missing = [i for i in known if i not in set(ids)]
    problems = []
    if stray:
        problems.append(f"ids not in the dataset: {stray[:10]}")
    if repeated:
        problems.append(f"ids given more than once: {repeated[:10]}")
    if missing:
        problems.append(f"dataset ids without a prediction: {missing[:10]}")
    if problems:
        raise ValueError(f"{predictions_path} does not match {dataset_path}: {'; '.join(problems)}; {fix}")
    changed = [
        p["id"]
        for p in predictions
        if p.get("prompt_tokens", known[p["id"]]["prompt_tokens"]) != known[p["id"]]["prompt_tokens"]
    ]
    if changed:
        raise ValueError(
            f"{predictions_path} answers other prompts than {dataset_path}: the prompt lengths of samples "
            f"{changed[:10]} differ; {fix}"
        )


def score_rows(
    task_name: str, task_params: Mapping[str, Any], dataset: list[dict], predictions: list[dict]
) -> list[dict]:
    """One row per sample; a prediction without an ``<answer>`` tag scores 0 and is flagged."""
    task = get_task_class(task_name).from_params(task_params)
    by_id = {p["id"]: p for p in predictions}
    missing = [s["id"] for s in dataset if s["id"] not in by_id]
    if missing:
        raise ValueError(f"predictions lack samples {missing[:10]} of the dataset")
    rows = []
    for sample in dataset:
        pred = by_id[sample["id"]]
        answer = extract_answer(sample.get("response_prefix", "") + pred["prediction"])
        rows.append(
            {
                "id": sample["id"],
                "score": 0.0 if answer is None else float(task.score(answer, sample["gold"])),
                "answer_found": answer is not None,
                "answer": answer,
                "prompt_tokens": sample["prompt_tokens"],
                # Question + instructions (Table 5; tasks/generate.py). Datasets generated before the
                # field existed lack it: then null here and in the summary, and they still score.
                "question_tokens": sample.get("question_tokens"),
                "output_tokens": pred["output_tokens"],
                "sparsity": pred["sparsity"],
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    scores = [r["score"] for r in rows]
    n = len(scores)
    sparsities = [r["sparsity"] for r in rows if r["sparsity"] is not None]
    questions = [r["question_tokens"] for r in rows if r.get("question_tokens") is not None]
    return {
        "samples": n,
        "score": statistics.fmean(scores),
        "score_std": statistics.stdev(scores) if n > 1 else 0.0,
        "score_se": statistics.stdev(scores) / math.sqrt(n) if n > 1 else 0.0,
        "missing_answers": sum(not r["answer_found"] for r in rows),
        "sparsity": statistics.fmean(sparsities) if sparsities else None,
        "prompt_tokens": statistics.fmean(r["prompt_tokens"] for r in rows),
        "question_tokens": statistics.fmean(questions) if questions else None,
        "output_tokens": statistics.fmean(r["output_tokens"] for r in rows),
    }


def score_run(
    run: Mapping[str, Any], dataset_path: str, predictions_path: str, scores_path: str, summary_path: str
) -> None:
    key = run["key"]
    dataset, predictions = read_jsonl(dataset_path), read_jsonl(predictions_path)
    check_predictions(dataset, predictions, dataset_path, predictions_path)
    rows = score_rows(key["task"], run["task_params"], dataset, predictions)
    write_jsonl_atomic(scores_path, rows)
    summary = {**key, **summarise(rows), "experiments": list(run["experiments"])}
    write_provenance(summary_path, dict(run))
    write_json_atomic(summary_path, summary)
