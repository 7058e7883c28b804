import functools
import http.server
import json
import random
import re
import threading

import pytest
from task_checks import context_of, digest, generate

from sparse_frontier.tasks import get_task_class
from sparse_frontier.tasks.qa import sources
from sparse_frontier.tasks.qa.tasks import option_letters, token_f1
from sparse_frontier.tasks.ruler.cwe import word_list


def _document(rng, i):
    words = rng.sample(word_list(), 80)
    return f"Report {i} on the {words[0]}: " + " ".join(words[1:]) + "."


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory):
    """Small normalised files in both shapes (open and multiple choice), made here."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("qa")
    docs = [_document(rng, i) for i in range(60)]
    open_rows, mc_rows = [], []
    for i, doc in enumerate(docs):
        topic = doc.split()[4].rstrip(":")
        open_rows.append(
            {
                "document": doc,
                "question": f"What is report {i} about?",
                "options": [],
                "answers": [topic, f"the {topic}"],
            }
        )
        options = [f"the {w}" for w in rng.sample(word_list(), 3)] + [f"the {topic}"]
        rng.shuffle(options)
        mc_rows.append(
            {
                "document": doc,
                "question": f"What is report {i} about?",
                "options": options,
                "answers": ["ABCD"[options.index(f"the {topic}")]],
            }
        )
    paths = {"open": folder / "open.jsonl", "mc": folder / "mc.jsonl"}
    for key, rows in (("open", open_rows), ("mc", mc_rows)):
        paths[key].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


@pytest.fixture(params=["smollm2", "tiny_bpe"])
def tokenizer(request, smollm2_tokenizer, tiny_tokenizer):
    return smollm2_tokenizer if request.param == "smollm2" else tiny_tokenizer


def solve(question: str, context: str, options: bool) -> str:
    """Find the named document and read the topic from its first line."""
    number = re.search(r"Answer from Document (\d+)", question).group(1)
    document = re.search(rf"Document {number}:\n(.*?)(?:\n\nDocument \d+:|$)", context, re.S).group(1)
    topic = re.match(r"Report \d+ on the (\w+):", document).group(1)
    if not options:
        return topic
    listed = re.findall(r"\n([A-D])\. the (\w+)", question)
    return next(letter for letter, word in listed if word == topic)


@pytest.mark.parametrize("length", [2048, 4096])
@pytest.mark.parametrize("name", ["qa_squad", "qa_toefl", "qa_quality"])
def test_qa_fits_and_the_named_document_answers(tokenizer, qa_files, name, length):
    source = qa_files["open" if name == "qa_squad" else "mc"]
    task, rows = generate(name, tokenizer, length, samples=3, source=source)
    for row in rows:
        question, context = context_of(tokenizer, row)
        assert context.count("Document ") >= 3  # distractors are there
        answer = solve(question, context, options=name != "qa_squad")
        assert task.score(answer, row["gold"]) == 1.0


def test_same_questions_at_every_length_and_determinism(smollm2_tokenizer, qa_files):
    questions = []
    for length in (1024, 2048, 4096):
        _, rows = generate("qa_squad", smollm2_tokenizer, length, samples=4, source=qa_files["open"])
        questions.append([re.search(r"What is report \d+", context_of(smollm2_tokenizer, r)[0]).group(0) for r in rows])
    assert questions[0] == questions[1] == questions[2] and len(set(questions[0])) > 1
    _, a = generate("qa_toefl", smollm2_tokenizer, 2048, samples=3, source=qa_files["mc"])
    _, b = generate("qa_toefl", smollm2_tokenizer, 2048, samples=3, source=qa_files["mc"])
    assert digest(a) == digest(b)


def test_questions_whose_document_alone_is_too_long_are_dropped(smollm2_tokenizer, qa_files, tmp_path):
    rows = [json.loads(line) for line in qa_files["open"].read_text().splitlines()]
    rows[0]["document"] = " ".join(["lengthy"] * 3000)
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task_class("qa_squad").from_params({"single_document_limit": 1024})
    task.source_path = str(path)
    task.prepare(smollm2_tokenizer)
    assert len(task._questions) == len(rows) - 1
    assert all(q["document"] != rows[0]["document"] for q in task._questions)


# Raw files in the sources' real layouts: SQuAD v2.0's JSON (articles under "data"; unanswerable
# questions have no answers, only plausible ones) and LC-VS-RAG's JSONL (one document per line).
SQUAD = {
    "version": "v2.0",
    "data": [
        {
            "title": "Paris",
            "paragraphs": [
                {
                    "context": "Paris is in France.",
                    "qas": [
                        {
                            "question": "Where is Paris?",
                            "id": "q1",
                            "answers": [
                                {"text": "France", "answer_start": 12},
                                {"text": "in France", "answer_start": 9},
                            ],
                            "is_impossible": False,
                        },
                        {
                            "question": "Where is Paris? ",
                            "id": "q2",
                            "answers": [{"text": "France", "answer_start": 12}],
                            "is_impossible": False,
                        },
                        {
                            "question": "Where is Rome?",
                            "id": "q3",
                            "answers": [],
                            "plausible_answers": [{"text": "France", "answer_start": 12}],
                            "is_impossible": True,
                        },
                    ],
                }
            ],
        }
    ],
}
SQUAD_ROWS = [
    {
        "document": "Paris is in France.",
        "question": "Where is Paris?",
        "options": [],
        "answers": ["France", "in France"],
    }
]
TOEFL = {
    "context": "a talk",
    "context_len": 2,
    "questions": [
        "Question: why? Options: A.to eat B.to sleep C.to read D.to run ",
        "Question: which two? Options: A.x B.y C.z D.w ",
    ],
    "num_question": 2,
    "answer": ["B", "AD"],
    "dataset": "toeflqa",
}
TOEFL_ROWS = [
    {
        "document": "a talk",
        "question": "why?",
        "options": ["to eat", "to sleep", "to read", "to run"],
        "answers": ["B"],
    },
    {"document": "a talk", "question": "which two?", "options": ["x", "y", "z", "w"], "answers": ["A", "D"]},
]


def test_raw_layouts_load_through_datasets_and_normalise(tmp_path, caplog):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD))
    records = sources.load_raw("squad", local_path=str(squad), cache_dir=tmp_path / "cache")
    assert sources.normalise("squad", records) == SQUAD_ROWS
    toefl = tmp_path / "toeflqa.jsonl"
    toefl.write_text(json.dumps(TOEFL) + "\n" + json.dumps({**TOEFL, "context": "another talk"}) + "\n")
    records = sources.load_raw("toefl", local_path=f"file://{toefl}", cache_dir=tmp_path / "cache")
    assert sources.normalise("toefl", records)[:2] == TOEFL_ROWS and len(records) == 2
    assert "differs from the pinned upstream toeflqa.jsonl" in caplog.text  # a local copy is used as given
    # A local copy given in the config is read and normalised into the output.
    out = tmp_path / "toefl.jsonl"
    sources.fetch_qa_source("toefl", str(out), local_path=str(toefl), cache_dir=tmp_path / "cache")
    assert sources.load_normalised(out)[:2] == TOEFL_ROWS
    with pytest.raises(FileNotFoundError, match="QA source 'quality': the configured file .*nope.jsonl does not exist"):
        sources.load_raw("quality", local_path=str(tmp_path / "nope.jsonl"))


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """A local HTTP server standing in for the pinned upstream folder (no internet in the tests)."""
    import datasets

    folder = tmp_path / "upstream"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(sources, "UPSTREAM", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # conftest sets HF_HUB_OFFLINE=1
    monkeypatch.chdir(tmp_path)  # no resources/qa/raw/ copy here
    yield folder, server
    server.shutdown()
    server.server_close()


def test_pinned_file_is_downloaded_once_into_the_datasets_cache_then_read_offline(upstream, tmp_path, monkeypatch):
    import datasets

    folder, server = upstream
    data = (json.dumps(TOEFL) + "\n").encode()
    (folder / "toeflqa.jsonl").write_bytes(data)
    monkeypatch.setitem(
        sources.SOURCES, "toefl", sources.Source("toeflqa.jsonl", sources.git_blob_sha1(data), "lc_vs_rag")
    )
    cache = tmp_path / "cache"
    assert sources.normalise("toefl", sources.load_raw("toefl", cache_dir=cache)) == TOEFL_ROWS
    assert [p.read_bytes() for p in (cache / "downloads").iterdir() if p.suffix == ""] == [data]
    server.shutdown()  # upstream unreachable and offline mode on: the cached copy is enough
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    out = tmp_path / "toefl.jsonl"
    sources.fetch_qa_source("toefl", str(out), cache_dir=cache)
    assert sources.load_normalised(out) == TOEFL_ROWS


def test_checksums_are_checked(upstream, tmp_path):
    folder, _ = upstream
    (folder / "quality.jsonl").write_text(json.dumps(TOEFL) + "\n")  # not the pinned file
    with pytest.raises(ValueError, match=r"quality\.jsonl: checksum mismatch .*expected 870f6683.*was removed"):
        sources.load_raw("quality", cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache/downloads").iterdir() if p.suffix == ""]  # a rerun downloads again
    assert sources.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_offline_fetch_says_what_to_download_and_where(tmp_path, monkeypatch):
    """Offline (as conftest sets) with an empty cache: the error names the source, its URL and the fixes."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError) as error:
        sources.load_raw("toefl", cache_dir=tmp_path / "cache")
    message = str(error.value)
    for part in [
        "cannot fetch the 'toefl' QA source from https://raw.githubusercontent.com/PiotrNawrot/sparse-frontier/"
        "31d86c170248865183d6569c491d47f71cdd9d53/sparse_frontier/tasks/qa/data/toeflqa.jsonl",
        "offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)",
        f"datasets cache {tmp_path / 'cache/downloads'}",
        "by hand and put it at resources/qa/raw/toeflqa.jsonl",
        "qa_sources.toefl",
        "HF_DATASETS_CACHE",
    ]:
        assert part in message
    with pytest.raises(RuntimeError, match="'squad' QA source from https://.*/squad.json"):
        sources.load_raw("squad", cache_dir=tmp_path / "cache")


def test_missing_normalised_file_names_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch_qa_source"):
        sources.load_normalised(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="unknown QA dataset 'trivia'; available: quality, squad, toefl"):
        sources.normalised_path("trivia")


@pytest.mark.parametrize(
    "answer, expected",
    [("Eiffel Tower", 1.0), ("the eiffel tower!", 1.0), ("tower", 2 / 3), ("Louvre", 0.0), ("", 0.0)],
)
def test_squad_metric_is_the_best_token_f1(answer, expected):
    task = get_task_class("qa_squad").from_params({})
    assert task.score(answer, ["Eiffel Tower", "The Eiffel Tower in Paris"]) == pytest.approx(expected)
    assert token_f1("x b c", "b c d") == pytest.approx(2 / 3)


OPTIONS = ["to eat", "to sleep", "to read", "to run"]


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("B", ["B"], 1.0),
        ("(b)", ["B"], 1.0),
        ("B. to sleep", ["B"], 1.0),
        ("Option B", ["B"], 1.0),
        ("to sleep", ["B"], 1.0),
        ("B, D", ["B", "D"], 1.0),
        ("BD", ["B", "D"], 1.0),
        ("B and D", ["B", "D"], 1.0),
        ("B", ["B", "D"], 0.0),
        ("C", ["B"], 0.0),
        ("B, C", ["B"], 0.0),
    ],
)
def test_multiple_choice_metric_is_exact_match_of_letters(answer, gold, expected):
    task = get_task_class("qa_toefl").from_params({})
    assert task.score(answer, {"answers": gold, "options": OPTIONS}) == expected
    assert option_letters("A", OPTIONS) == {"A"}
