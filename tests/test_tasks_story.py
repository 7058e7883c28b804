import re

import pytest
from task_checks import context_of, digest, generate

from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.story.narrative import ITEM_PATTERN


@pytest.fixture(params=["smollm2", "tiny_bpe"])
def tokenizer(request, smollm2_tokenizer, tiny_tokenizer):
    return smollm2_tokenizer if request.param == "smollm2" else tiny_tokenizer


def parse_chapters(context: str) -> dict[int, dict]:
    """Read the story back: per chapter the place, the person met, items bought and sold."""
    chapters = {}
    for block in re.split(r"\n\n(?=Chapter \d+\n)", context.strip()):
        header, body = block.split("\n", 1)
        number = int(header.split()[1])
        sentences = re.split(r"(?<=[.?!\"])\s+(?=[A-Z\"])", body)
        bought = [m for s in sentences if "bought" in s for m in ITEM_PATTERN.findall(s)]
        sold = [m for s in sentences if "sold" in s for m in ITEM_PATTERN.findall(s)]
        chapters[number] = {
            "location": re.search(r"arrived at (.+?)\.", body).group(1),
            "character": re.search(r"There \w+ met (\w+),", body).group(1),
            "bought": bought,
            "sold": sold,
        }
    return chapters


# The tiny test tokenizer (512 tokens of vocabulary) spends >1024 tokens on the shortest story, so
# 1024 is checked with SmolLM2 alone (the demo's setting) below.
LENGTHS = [2048, 4096]


@pytest.mark.parametrize("length", LENGTHS)
def test_retrieval_answers_are_in_the_named_chapters(tokenizer, length):
    task, rows = generate("story_retrieval", tokenizer, length, params={"num_questions": 4})
    for row in rows:
        question, context = context_of(tokenizer, row)
        chapters = parse_chapters(context)
        asked = re.findall(r"\d+\. (Where|Whom|What) did \w+ \w+ in chapter (\d+)", question)
        assert len(asked) == 4
        field = {"Where": "location", "Whom": "character", "What": "bought"}
        solved = []
        for kind, k in asked:
            value = chapters[int(k)][field[kind]]
            solved.append(value[0] if isinstance(value, list) else value)
        assert solved == row["gold"]
        assert task.score("\n".join(f"{i}. {g}" for i, g in enumerate(solved, 1)), row["gold"]) == 1.0


@pytest.mark.parametrize("length", LENGTHS)
def test_multihop_gold_is_the_purchase_before(tokenizer, length):
    _, rows = generate("story_multihop", tokenizer, length)
    for row in rows:
        question, context = context_of(tokenizer, row)
        named = ITEM_PATTERN.search(question).group(0)
        purchases = [item for k, ch in sorted(parse_chapters(context).items()) for item in ch["bought"]]
        assert purchases.count(named) == 1 and len(purchases) == len(set(purchases))
        assert purchases[purchases.index(named) - 1] == row["gold"] and purchases.index(named) > 0


@pytest.mark.parametrize("length", LENGTHS)
def test_filtering_gold_is_the_chapters_without_purchases(tokenizer, length):
    _, rows = generate("story_filtering", tokenizer, length, params={"num_without_purchase": 2})
    for row in rows:
        _, context = context_of(tokenizer, row)
        chapters = parse_chapters(context)
        assert sorted(k for k, ch in chapters.items() if not ch["bought"]) == row["gold"]
        # Nothing is sold that the text never shows being bought.
        bought = {i for ch in chapters.values() for i in ch["bought"]}
        assert all(i in bought for ch in chapters.values() for i in ch["sold"])


@pytest.mark.parametrize(
    "name, params",
    [
        ("story_retrieval", {"num_questions": 2}),
        ("story_multihop", {}),
        ("story_filtering", {"num_without_purchase": 2}),
    ],
)
def test_demo_settings_fit_1024(smollm2_tokenizer, name, params):
    generate(name, smollm2_tokenizer, 1024, samples=3, params=params)


def test_default_story_tasks_fit_16k_and_a_128k_story(smollm2_tokenizer):
    _, rows = generate("story_retrieval", smollm2_tokenizer, 16384, samples=1)
    assert len(rows[0]["gold"]) == 16
    _, rows = generate("story_filtering", smollm2_tokenizer, 131072, samples=1)
    _, context = context_of(smollm2_tokenizer, rows[0])
    chapters = parse_chapters(context)
    assert len(chapters) > 500 and sorted(k for k, ch in chapters.items() if not ch["bought"]) == rows[0]["gold"]


@pytest.mark.parametrize("name", ["story_retrieval", "story_multihop", "story_filtering"])
def test_deterministic_and_samples_differ(smollm2_tokenizer, name):
    _, first = generate(name, smollm2_tokenizer, 4096, samples=3)
    _, again = generate(name, smollm2_tokenizer, 4096, samples=3)
    assert digest(first) == digest(again)
    assert len({str(r["input_ids"]) for r in first}) == 3


@pytest.mark.parametrize(
    "name, gold, answer, expected",
    [
        (
            "story_retrieval",
            ["the harbour market", "Ada", "ornate brass compass"],
            "1. The Harbour Market\n2. ada.\n3. an ornate brass compass",
            1.0,
        ),
        (
            "story_retrieval",
            ["the harbour market", "Ada", "ornate brass compass"],
            "2) Ada\n1) the copper mines\n3) tin flute",
            1 / 3,
        ),
        ("story_retrieval", ["the harbour market", "Ada", "ornate brass compass"], "no idea", 0.0),
        ("story_multihop", "ornate brass compass", " An Ornate brass compass. ", 1.0),
        ("story_multihop", "ornate brass compass", "ornate brass lantern", 0.0),
        ("story_filtering", [3, 7, 12], "Chapters 3, 7 and 12", 1.0),
        ("story_filtering", [3, 7, 12], "1. Chapter 3\n2. Chapter 7", 2 / 3),
        ("story_filtering", [3, 7, 12], "5", 0.0),
    ],
)
def test_metrics(name, gold, answer, expected):
    assert get_task_class(name).from_params({}).score(answer, gold) == pytest.approx(expected)
