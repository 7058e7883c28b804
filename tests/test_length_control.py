import hashlib
import json
import math
import re

import pytest

from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.generate import LOWER_FRACTION, fit_units, generate_samples


def test_fit_units_lands_in_the_window_in_few_evaluations():
    calls = []

    def count(n):  # 300 tokens of instructions, ~7.3 tokens per unit with tokenizer noise
        calls.append(n)
        return 300 + int(7.3 * n) + (n % 3)

    n, tokens = fit_units(count, 131072, 10**6)
    assert math.ceil(LOWER_FRACTION * 131072) <= tokens <= 131072 and tokens == count(n)
    assert len(calls) - 1 <= 4, calls  # count(0), a probe, then secant steps
    # With the slope of a previous sample, one long tokenisation is enough.
    calls.clear()
    fit_units(count, 131072, 10**6, slope=7.3)
    assert len(calls) == 2, calls


def test_fit_units_handles_a_rate_that_grows_with_n():
    # Numbered lists: later numbers take more tokens, so the first estimate overshoots.
    def count(n):
        return 200 + sum(3 + len(str(i)) for i in range(1, n + 1))

    for length in (1024, 8192, 65536):
        n, tokens = fit_units(count, length, 10**6)
        assert math.ceil(LOWER_FRACTION * length) <= tokens <= length


def test_fit_units_errors_name_the_problem():
    with pytest.raises(ValueError, match="too short.*alone take 500 tokens.*at least 527"):
        fit_units(lambda n: 500 + n, 400, 1000)
    with pytest.raises(ValueError, match=r"could not fit a prompt into \[973, 1024\]"):
        fit_units(lambda n: 100 + 200 * n, 1024, 4)  # units too coarse / too few


@pytest.fixture(params=["smollm2", "tiny_bpe"])
def tokenizer(request, smollm2_tokenizer, tiny_tokenizer):
    return smollm2_tokenizer if request.param == "smollm2" else tiny_tokenizer


@pytest.mark.parametrize("length", [1024, 2048, 4000])
def test_niah_prompts_land_in_window_and_hold_their_needles(tokenizer, length):
    task = get_task_class("ruler_niah").from_params({})
    rows = list(generate_samples(task, tokenizer, length, samples=3, seed=43))
    assert [r["id"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert math.ceil(0.95 * length) <= row["prompt_tokens"] == len(row["input_ids"]) <= length
        text = tokenizer.decode(row["input_ids"])
        context = text.split("<context>")[1].split("</context>")[0]
        # The gold answer is recoverable: solve the task from the text by looking up each key.
        question = re.search(r"values for (.*)\?", text).group(1)
        keys = re.findall(r"[a-z0-9]{8}(?:-[a-z0-9]{8}){3}", question)
        assert len(keys) == 4
        found = [re.search(re.escape(k) + r" is: ([a-z0-9-]+)\.", context).group(1) for k in keys]
        assert found == row["gold"]
        # Each key has exactly one value in the context (no distractor reuses a needle key).
        assert all(context.count(k + " is:") == 1 for k in keys)


@pytest.mark.parametrize("length", [512, 2048])
def test_niah_in_filler_holds_only_its_needles_in_order(tokenizer, length):
    """haystack: filler (RULER's niah_single): the needles are the only values in neutral text."""
    params = {"haystack": "filler", "num_queries": 2, "code_parts": 1, "value_format": "number"}
    task = get_task_class("ruler_niah").from_params(params)
    rows = list(generate_samples(task, tokenizer, length, samples=3, seed=43))
    for row in rows:
        assert math.ceil(0.95 * length) <= row["prompt_tokens"] == len(row["input_ids"]) <= length
        text = tokenizer.decode(row["input_ids"])
        context = text.split("<context>")[1].split("</context>")[0]
        keys = re.findall(r"[a-z0-9]{8}", re.search(r"values for (.*)\?", text).group(1))
        assert re.findall(r"is: (\d{7})\.", context) == row["gold"]  # only the needles, in key order
        assert [re.search(re.escape(k) + r" is: (\d{7})\.", context).group(1) for k in keys] == row["gold"]
    again = list(generate_samples(task, tokenizer, length, samples=3, seed=43))
    assert _digest(rows) == _digest(again)
    assert len({json.dumps(r["gold"]) for r in rows}) == 3


def test_niah_haystack_is_checked():
    with pytest.raises(ValueError, match="haystack.*one of: needles, filler"):
        get_task_class("ruler_niah").from_params({"haystack": "noise"})


def _digest(rows):
    return hashlib.sha256("".join(json.dumps(r, sort_keys=True) for r in rows).encode()).hexdigest()


def test_generation_is_deterministic_and_samples_differ(smollm2_tokenizer):
    task = get_task_class("ruler_niah").from_params({})
    first = list(generate_samples(task, smollm2_tokenizer, 1024, samples=3, seed=43))
    again = list(generate_samples(task, smollm2_tokenizer, 1024, samples=3, seed=43))
    other_seed = list(generate_samples(task, smollm2_tokenizer, 1024, samples=3, seed=44))
    assert _digest(first) == _digest(again)
    assert len({json.dumps(r["gold"]) for r in first}) == 3
    assert first[0]["gold"] != other_seed[0]["gold"]


def test_rows_record_question_tokens_the_prompt_without_its_context(tokenizer):
    """Table 5's "question + instructions": the chat prompt rendered with an empty context."""
    import dataclasses
    import random

    from sparse_frontier.tasks.generate import chat_prompt_ids

    task = get_task_class("ruler_niah").from_params({})
    rows = list(generate_samples(task, tokenizer, 1024, samples=2, seed=43))
    for row in rows:
        draft = task.draft(random.Random(f"{task.name}/43/{row['id']}"))  # as generate_samples seeds it
        bare = task.render(dataclasses.replace(draft, context=lambda n: ""), row["units"])
        assert row["question_tokens"] == len(chat_prompt_ids(tokenizer, bare, task.response_prefix))
        assert row["question_tokens"] < len(chat_prompt_ids(tokenizer, task.render(draft, 0), task.response_prefix))
        assert 0 < row["question_tokens"] < row["prompt_tokens"]
        text = tokenizer.decode(chat_prompt_ids(tokenizer, bare))
        assert text.count("Question: ") == 2 and "<context>\n\n</context>" in text  # asked twice, no context
