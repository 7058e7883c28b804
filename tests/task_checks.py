"""Shared checks for the task tests: generate, check the window, hash for determinism."""

from __future__ import annotations

import hashlib
import json
import math

from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.generate import generate_samples


def generate(name, tokenizer, length, samples=2, seed=43, params=None, source=None):
    task = get_task_class(name).from_params(params or {})
    if source is not None:
        task.source_path = str(source)
    rows = list(generate_samples(task, tokenizer, length, samples=samples, seed=seed))
    for row in rows:
        assert math.ceil(0.95 * length) <= row["prompt_tokens"] == len(row["input_ids"]) <= length
    return task, rows


def context_of(tokenizer, row) -> tuple[str, str]:
    """(question, context) as the model reads them."""
    text = tokenizer.decode(row["input_ids"])
    question = text.split("Question: ", 1)[1].split("<context>")[0]
    return question.strip(), text.split("<context>")[1].split("</context>")[0]


def digest(rows) -> str:
    return hashlib.sha256("".join(json.dumps(r, sort_keys=True) for r in rows).encode()).hexdigest()
