import pytest

from sparse_frontier.scoring import score_rows, summarise
from sparse_frontier.tasks import extract_answer, get_task_class

GOLD = [
    "aaaa1111-bbbb2222-cccc3333-dddd4444",
    "eeee5555-ffff6666-gggg7777-hhhh8888",
    "iiii9999-jjjj0000-kkkk1111-llll2222",
    "mmmm3333-nnnn4444-oooo5555-pppp6666",
]


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("<explanation>x</explanation><answer>A, B</answer>", "A, B"),
        ("<ANSWER >  spaced  </ answer>", "spaced"),
        ("blah <answer>unclosed to the end", "unclosed to the end"),
        ("<answer>first</answer><answer>second</answer>", "first"),
        ("no tag at all", None),
    ],
)
def test_extract_answer(prediction, expected):
    assert extract_answer(prediction) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        (", ".join(GOLD), 1.0),
        ("1. " + GOLD[3].upper() + "\n2. " + GOLD[0] + ".", 0.5),  # case, numbering, punctuation
        (GOLD[1], 0.25),
        ("zzzz0000-zzzz0000-zzzz0000-zzzz0000", 0.0),
        ("", 0.0),
    ],
)
def test_niah_metric_is_the_fraction_of_values_found(answer, expected):
    task = get_task_class("ruler_niah").from_params({})
    assert task.score(answer, GOLD) == pytest.approx(expected)


def test_missing_tags_score_zero_and_are_counted():
    dataset = [{"id": i, "gold": GOLD, "prompt_tokens": 1000} for i in range(4)]
    texts = [f"<answer>{', '.join(GOLD)}</answer>", f"<answer>{GOLD[0]}</answer>", ", ".join(GOLD), "garbage"]
    predictions = [{"id": i, "prediction": t, "output_tokens": 10, "sparsity": 0.0} for i, t in enumerate(texts)]
    rows = score_rows("ruler_niah", {}, dataset, predictions)
    assert [r["score"] for r in rows] == [1.0, 0.25, 0.0, 0.0]
    assert [r["answer_found"] for r in rows] == [True, True, False, False]
    summary = summarise(rows)
    assert summary["samples"] == 4 and summary["missing_answers"] == 2
    assert summary["score"] == pytest.approx(1.25 / 4)
    assert summary["score_se"] > 0


def test_predictions_missing_a_sample_are_an_error():
    dataset = [{"id": 0, "gold": GOLD, "prompt_tokens": 10}, {"id": 1, "gold": GOLD, "prompt_tokens": 10}]
    with pytest.raises(ValueError, match=r"lack samples \[1\]"):
        score_rows("ruler_niah", {}, dataset, [{"id": 0, "prediction": "", "output_tokens": 0, "sparsity": 0.0}])


def test_question_tokens_are_copied_and_averaged_and_may_be_absent():
    dataset = [{"id": i, "gold": GOLD, "prompt_tokens": 1000, "question_tokens": 200 + 10 * i} for i in range(2)]
    predictions = [{"id": i, "prediction": "<answer>x</answer>", "output_tokens": 3, "sparsity": 0.5} for i in range(2)]
    rows = score_rows("ruler_niah", {}, dataset, predictions)
    assert [r["question_tokens"] for r in rows] == [200, 210]
    summary = summarise(rows)
    assert summary["question_tokens"] == pytest.approx(205) and summary["prompt_tokens"] == 1000
    # A dataset written before the field existed still scores: the field is null, not a crash.
    old = [{k: v for k, v in s.items() if k != "question_tokens"} for s in dataset]
    rows = score_rows("ruler_niah", {}, old, predictions)
    assert [r["question_tokens"] for r in rows] == [None, None]
    assert summarise(rows)["question_tokens"] is None


def test_score_run_writes_question_tokens_per_sample_and_in_the_summary(tmp_path):
    import json

    from sparse_frontier.io import write_jsonl_atomic
    from sparse_frontier.scoring import score_run

    dataset = [{"id": i, "gold": GOLD, "prompt_tokens": 1000, "question_tokens": 300} for i in range(2)]
    predictions = [
        {"id": i, "prediction": f"<answer>{GOLD[0]}</answer>", "output_tokens": 3, "sparsity": 0.0} for i in range(2)
    ]
    write_jsonl_atomic(tmp_path / "dataset.jsonl", dataset)
    write_jsonl_atomic(tmp_path / "predictions.jsonl", predictions)
    key = {"task": "ruler_niah", "method": "dense", "length": 1024}
    run = {"key": key, "task_params": {}, "experiments": ["e"]}
    score_run(
        run,
        str(tmp_path / "dataset.jsonl"),
        str(tmp_path / "predictions.jsonl"),
        str(tmp_path / "scores.jsonl"),
        str(tmp_path / "summary.json"),
    )
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [r["question_tokens"] for r in rows] == [300, 300]
    assert json.loads((tmp_path / "summary.json").read_text())["question_tokens"] == 300
