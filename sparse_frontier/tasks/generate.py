"""Dataset generation with exact length control in the target model's tokenizer."""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Callable, Iterator

from tqdm import tqdm

from sparse_frontier.io import write_jsonl_atomic
from sparse_frontier.tasks.base import Task

log = logging.getLogger(__name__)

LOWER_FRACTION = 0.95  # prompts must land in [0.95 L, L] tokens


def chat_prompt_ids(tokenizer, text: str, response_prefix: str = "") -> list[int]:
    """Token ids of ``text`` as one user turn through the chat template, then the generation prompt
    and ``response_prefix`` (the start of the model's reply, if the task prefills one)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no chat template; "
            "the pipeline evaluates instruction-tuned models and builds prompts with their template"
        )
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    ids = list(ids)
    if response_prefix:
        ids += tokenizer.encode(response_prefix, add_special_tokens=False)
    return ids


def fit_units(count: Callable[[int], int], length: int, max_units: int) -> tuple[int, int]:
    """Largest ``n`` (filler units) whose prompt has at most ``length`` tokens.

    ``count(n)`` is the prompt's token count with ``n`` units (monotone up to tokenizer noise).
    A secant step on a bracket [lo, hi] reaches the window in a few full tokenisations instead
    of a bisection's ~17; bisection takes over if the secant stalls. Returns (n, tokens).
    """
    lower = math.ceil(LOWER_FRACTION * length)
    lo, c_lo = 0, count(0)
    if c_lo > length:
        raise ValueError(
            f"target length {length} is too short: the instructions and question alone take "
            f"{c_lo} tokens; choose a length of at least {int(c_lo / LOWER_FRACTION) + 1}"
        )
    hi, c_hi = None, None
    probe = min(max_units, 16)
    c_probe = count(probe)
    slope = max((c_probe - c_lo) / probe, 1e-6)
    if c_probe <= length:
        lo, c_lo = probe, c_probe
    else:
        hi, c_hi = probe, c_probe
    for _ in range(60):
        if c_lo >= lower and (hi is None or hi - lo <= 1 or c_lo >= length - 2 * slope):
            return lo, c_lo
        if hi is not None and hi - lo <= 1:
            break
        target = length - slope  # aim just under the limit
        guess = lo + max(1, int((target - c_lo) / slope))
        if hi is not None:
            if guess >= hi:
                guess = (lo + hi) // 2
            guess = min(max(guess, lo + 1), hi - 1)
        guess = min(guess, max_units)
        if guess <= lo:  # max_units reached
            break
        c = count(guess)
        if c <= length:
            lo, c_lo = guess, c
        else:
            hi, c_hi = guess, c
        if hi is not None and hi > lo:
            slope = max((c_hi - c_lo) / (hi - lo), 1e-6)
    if c_lo < lower:
        raise ValueError(
            f"could not fit a prompt into [{lower}, {length}] tokens: best has {c_lo} tokens "
            f"with {lo} units (max {max_units})"
        )
    return lo, c_lo


def generate_samples(
    task: Task, tokenizer, length: int, samples: int, seed: int
) -> Iterator[dict[str, Any]]:
    """Yield ``samples`` rows, each fitted into [0.95 length, length] tokens."""
    for index in tqdm(range(samples), desc=f"{task.name} L={length}", disable=None):
        # A string seed is hashed with SHA-512 by ``random``: stable across machines and Pythons.
        rng = random.Random(f"{task.name}/{seed}/{index}")
        draft = task.draft(rng)
        cache: dict[int, list[int]] = {}

        def count(n: int) -> int:
            cache[n] = chat_prompt_ids(tokenizer, task.render(draft, n), task.response_prefix)
            return len(cache[n])

        units, tokens = fit_units(count, length, draft.max_units)
        yield {
            "id": index,
            "task": task.name,
            "target_length": length,
            "prompt_tokens": tokens,
            "units": units,
            "gold": draft.gold,
            "response_prefix": task.response_prefix,
            "input_ids": cache[units],
        }


def generate_dataset(
    task_name: str,
    task_params: dict,
    tokenizer,
    length: int,
    samples: int,
    seed: int,
    output: str,
    provenance: dict | None = None,
) -> None:
    from sparse_frontier.tasks import get_task_class

    task = get_task_class(task_name).from_params(task_params)
    rows = list(generate_samples(task, tokenizer, length, samples, seed))
    write_jsonl_atomic(output, rows)
    if provenance is not None:
        from sparse_frontier.io import write_provenance

        write_provenance(output, provenance)
    log.info("wrote %d samples to %s", len(rows), output)
