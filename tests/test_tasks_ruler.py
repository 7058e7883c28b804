import collections
import re

import pytest
from task_checks import context_of, digest, generate


@pytest.fixture(params=["smollm2", "tiny_bpe"])
def tokenizer(request, smollm2_tokenizer, tiny_tokenizer):
    return smollm2_tokenizer if request.param == "smollm2" else tiny_tokenizer


def solve_vt(question: str, context: str) -> list[str]:
    """Follow the assignments from the asked value."""
    value = re.search(r"assigned the value (\d+)", question).group(1)
    assignments = re.findall(r"VAR ([A-Z]{5}) = ([A-Z]{5}|\d+)\.", context)
    holders, changed = {value}, True
    while changed:
        changed = False
        for name, source in assignments:
            if source in holders and name not in holders:
                holders.add(name)
                changed = True
    return sorted(holders - {value})


def solve_cwe(question: str, context: str) -> list[str]:
    k = int(re.search(r"Which (\d+) words", question).group(1))
    words = re.findall(r"\d+\. ([a-z]+)", context)
    return sorted(w for w, _ in collections.Counter(words).most_common(k))


@pytest.mark.parametrize("length", [2048, 4096])
def test_vt_fits_and_the_chain_gives_the_gold(tokenizer, length):
    _, rows = generate("ruler_vt", tokenizer, length)
    for row in rows:
        question, context = context_of(tokenizer, row)
        assert solve_vt(question, context) == sorted(row["gold"]) and len(row["gold"]) == 5
        assert len(re.findall(r"VAR [A-Z]{5} =", context)) == 8 * 5


@pytest.mark.parametrize("length", [4096, 8192])
def test_cwe_fits_and_counting_gives_the_gold(tokenizer, length):
    _, rows = generate("ruler_cwe", tokenizer, length)
    for row in rows:
        question, context = context_of(tokenizer, row)
        assert solve_cwe(question, context) == sorted(row["gold"])
        counts = collections.Counter(re.findall(r"\d+\. ([a-z]+)", context))
        assert {counts[w] for w in row["gold"]} == {30}
        assert {c for w, c in counts.items() if w not in row["gold"]} == {3}  # distractors fill


def test_demo_settings_fit_1024(tokenizer):
    params = {"num_common_words": 3, "common_frequency": 8, "distractor_frequency": 2}
    _, rows = generate("ruler_cwe", tokenizer, 1024, params=params)
    question, context = context_of(tokenizer, rows[0])
    assert solve_cwe(question, context) == sorted(rows[0]["gold"])
    _, rows = generate("ruler_vt", tokenizer, 1024, params={"num_chains": 2, "num_hops": 2})
    question, context = context_of(tokenizer, rows[0])
    assert solve_vt(question, context) == sorted(rows[0]["gold"])


def test_128k_vt_prompt_fits(smollm2_tokenizer):
    _, rows = generate("ruler_vt", smollm2_tokenizer, 131072, samples=1)
    question, context = context_of(smollm2_tokenizer, rows[0])
    assert solve_vt(question, context) == sorted(rows[0]["gold"])


@pytest.mark.parametrize("name", ["ruler_vt", "ruler_cwe"])
def test_deterministic_and_samples_differ(smollm2_tokenizer, name):
    _, first = generate(name, smollm2_tokenizer, 4096, samples=3)
    _, again = generate(name, smollm2_tokenizer, 4096, samples=3)
    assert digest(first) == digest(again)
    assert len({str(r["gold"]) for r in first}) == 3


GOLD_VT = ["ABCDE", "FGHIJ", "KLMNO", "PQRST", "UVWXY"]
GOLD_CWE = ["apple", "river", "stone", "cloud"]


@pytest.mark.parametrize(
    "name, gold, answer, expected",
    [
        ("ruler_vt", GOLD_VT, "ABCDE, FGHIJ, KLMNO, PQRST, UVWXY", 1.0),
        ("ruler_vt", GOLD_VT, "1. uvwxy\n2. pqrst\n3. klmno.\n4. fghij\n5. abcde", 1.0),
        ("ruler_vt", GOLD_VT, "ABCDE, FGHIJ and ZZZZZ", 2 / 6),
        ("ruler_vt", GOLD_VT, "QQQQQ", 0.0),
        ("ruler_cwe", GOLD_CWE, " Apple, RIVER; stone\ncloud. ", 1.0),
        ("ruler_cwe", GOLD_CWE, "apple, river", 0.5),
        ("ruler_cwe", GOLD_CWE, "apple, river, stone, cloud, moon", 0.8),
        ("ruler_cwe", GOLD_CWE, "tree", 0.0),
    ],
)
def test_metrics(name, gold, answer, expected):
    from sparse_frontier.tasks import get_task_class

    assert get_task_class(name).from_params({}).score(answer, gold) == pytest.approx(expected)


def ruler_string_match_all(prediction: str, refs: list[str]) -> float:
    """RULER's per-sample string_match_all (NVIDIA/RULER scripts/eval/synthetic/constants.py), its
    VT and CWE metric: the share of references found in the prediction, both lower-cased."""
    return sum(r.lower() in prediction.lower() for r in refs) / len(refs)


@pytest.mark.parametrize(
    "name, gold, answer",
    [
        ("ruler_vt", GOLD_VT[:2], "ABCDE AND FGHIJ"),
        ("ruler_vt", GOLD_VT, "ABCDE, FGHIJ, KLMNO, PQRST AND UVWXY"),
        ("ruler_vt", GOLD_VT, "ABCDE, FGHIJ, KLMNO, PQRST, And UVWXY"),
        ("ruler_vt", GOLD_VT, "FGHIJ AND ABCDE"),
        ("ruler_cwe", GOLD_CWE, "APPLE, RIVER, STONE AND CLOUD"),
        ("ruler_cwe", GOLD_CWE, "1. Apple\n2. River\n3. Stone And Cloud"),
        ("ruler_cwe", GOLD_CWE, "RIVER AND CLOUD"),
        ("ruler_cwe", ["candle", "island"], "CANDLE AND ISLAND"),  # "and" inside a word does not split it
    ],
)
def test_list_answers_in_any_case_score_as_ruler(name, gold, answer):
    """Answers that name only gold items score what RULER gives them, whatever the case of "and"."""
    from sparse_frontier.tasks import get_task_class

    score = get_task_class(name).from_params({}).score(answer, gold)
    assert score == pytest.approx(ruler_string_match_all(answer, gold))
