"""Dataset generation with exact length control in the target model's tokenizer."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

from sparse_frontier.io import write_jsonl_atomic, write_provenance
from sparse_frontier.models import check_model
from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.base import Draft, Task, chat_prompt_ids

log = logging.getLogger(__name__)

LOWER_FRACTION = 0.95  # prompts must land in [0.95 L, L] tokens


#: Where inside the window the search aims (fraction of the way from 0.95 L up to L): high enough
#: to use the budget, low enough that a slightly-off estimate still lands inside in one tokenisation.
AIM = 0.6


def fit_units(count: Callable[[int], int], length: int, max_units: int, slope: float | None = None) -> tuple[int, int]:
    """An ``n`` (filler units) whose prompt has between ``ceil(0.95 length)`` and ``length`` tokens.

    ``count(n)`` is the prompt's token count with ``n`` units (monotone up to tokenizer noise); each
    call tokenises a whole prompt, which is what costs time at 128k, so the search makes as few as it
    can: a secant step from the best two points toward a target inside the window, safeguarded by the
    bracket [lo, hi] (bisection when the secant would leave it). ``slope`` (tokens per unit, e.g.
    from the previous sample of the same task) lets the first long count land in the window directly.
    Returns (n, tokens).
    """
    lower = math.ceil(LOWER_FRACTION * length)
    target = lower + AIM * (length - lower)
    c0 = count(0)
    if c0 > length:
        raise ValueError(
            f"target length {length} is too short: the instructions and question alone take "
            f"{c0} tokens; choose a length of at least {int(c0 / LOWER_FRACTION) + 1}"
        )
    if c0 >= lower:
        return 0, c0
    points = [(0, c0)]  # every evaluated (n, tokens), for the secant
    lo, c_lo, hi = 0, c0, None
    if slope is None:  # a short probe for a first estimate
        probe = min(max_units, 16)
        c = count(probe)
        points.append((probe, c))
        if c <= length:
            lo, c_lo = probe, c
        else:
            hi = probe
        slope = max((c - c0) / probe, 1e-6)
    for _ in range(60):
        if lower <= c_lo <= length:
            return lo, c_lo
        if hi is not None and hi - lo <= 1:
            break
        # Secant through the two evaluated points nearest the target (the local tokens per unit).
        near = sorted(points, key=lambda p: abs(p[1] - target))[:2]
        if len(near) == 2 and near[0][0] != near[1][0]:
            (n1, t1), (n2, t2) = near
            slope = max((t2 - t1) / (n2 - n1), 1e-6)
        guess = lo + max(1, round((target - c_lo) / slope))
        if hi is not None and not lo < guess < hi:
            guess = (lo + hi) // 2
        guess = min(guess, max_units)
        if guess <= lo:  # max_units reached
            break
        c = count(guess)
        points.append((guess, c))
        if c <= length:
            lo, c_lo = guess, c
        else:
            hi = guess
    if not lower <= c_lo <= length:
        raise ValueError(
            f"could not fit a prompt into [{lower}, {length}] tokens: best has {c_lo} tokens "
            f"with {lo} units (max {max_units})"
        )
    return lo, c_lo


def without_context(draft: Draft) -> Draft:
    """The draft with an empty context (its question and answer format unchanged)."""
    return dataclasses.replace(draft, context=lambda n: "")


def generate_samples(task: Task, tokenizer, length: int, samples: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield ``samples`` rows, each fitted into [0.95 length, length] tokens.

    Row fields: ``id``, ``task``, ``target_length``, ``prompt_tokens`` (the whole prompt's tokens =
    ``len(input_ids)``), ``question_tokens`` (see below), ``units`` (filler units in the context),
    ``gold``, ``response_prefix`` and ``input_ids``.

    ``question_tokens`` (the paper's Table 5, "question + instructions"): the token count of the
    same chat-templated prompt with an empty context, i.e. the task description, the question
    (asked twice, before and after the context, as the prompt format does), the answer format and
    instructions, the ``<context>`` tags, the chat template's tokens and the response prefix. Not
    the prompt with zero filler units: that one still holds what every context needs (NIAH's
    needles, the QA target document, CWE's list, VT's chains, the first story chapters).
    The question is the one of the fitted prompt (some questions depend on the context's size).
    """
    task.prepare(tokenizer)
    slope = None  # tokens per unit of the previous sample: samples of one task are alike
    for index in tqdm(range(samples), desc=f"{task.name} L={length}", disable=None):
        # A string seed is hashed with SHA-512 by ``random``: stable across machines and Pythons.
        rng = random.Random(f"{task.name}/{seed}/{index}")
        draft = task.draft(rng)
        cache: dict[int, list[int]] = {}

        def count(n: int) -> int:
            cache[n] = chat_prompt_ids(tokenizer, task.render(draft, n), task.response_prefix)
            return len(cache[n])

        units, tokens = fit_units(count, length, draft.max_units, slope)
        if units > 0:
            slope = max((tokens - len(cache[0])) / units, 1e-6)
        bare = task.render(without_context(draft), units)  # Table 5: the prompt without its context
        question_tokens = len(chat_prompt_ids(tokenizer, bare, task.response_prefix))
        yield {
            "id": index,
            "task": task.name,
            "target_length": length,
            "prompt_tokens": tokens,
            "question_tokens": question_tokens,
            "units": units,
            "gold": draft.gold_at(units),
            "response_prefix": task.response_prefix,
            "input_ids": cache[units],
        }


def check_length(model: dict, length: int, max_tokens: int = 0) -> None:
    """Refuse, at job time, a length the model's checkpoint cannot hold (the planning check, again,
    now that the checkpoint is here; a hub model's config.json is fetched if it is not cached)."""
    name = model.get("name", model["source"])
    limit = check_model(name, model, download=True)
    if limit.tokens is None:
        log.warning("model %r: context length unknown (%s); length %d not checked", name, limit.source, length)
    limit.check(length, max_tokens, f"dataset of model {name!r}")


def generate_dataset(
    task_name: str,
    task_params: dict,
    tokenizer,
    length: int,
    samples: int,
    seed: int,
    output: str,
    provenance: dict | None = None,
    model: dict | None = None,
    max_tokens: int = 0,
) -> None:
    """Write ``samples`` prompts of ``length`` tokens to ``output``. ``model`` (the run's config entry,
    by default ``provenance["model"]``) is first checked against its checkpoint: a length the model
    cannot hold (with ``max_tokens`` of output) is refused before anything is generated."""
    model = model if model is not None else (provenance or {}).get("model")
    if model is not None and model.get("source"):
        check_length(model, length, max_tokens)
    task = get_task_class(task_name).from_params(task_params)
    rows = list(generate_samples(task, tokenizer, length, samples, seed))
    write_jsonl_atomic(output, rows)
    if provenance is not None:
        write_provenance(output, provenance)
    log.info("wrote %d samples to %s", len(rows), output)
