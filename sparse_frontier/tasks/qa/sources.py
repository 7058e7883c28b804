"""QA sources: fetch the raw files, check them, and normalise them to one JSONL layout.

Normalised rows: ``{"document": str, "question": str, "options": [str], "answers": [str]}``; open
questions (SQuAD) have no options and their gold answers in ``answers``; multiple-choice questions
have ``answers`` holding option letters (one or more).

The raw files are the ones upstream shipped in its repository (SQuAD v2.0 dev as its JSON; QuALITY
and TOEFL-QA as packaged by the LC-VS-RAG study), fetched from a pinned commit and checked against
the git blob SHA-1 of that commit's tree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sparse_frontier.io import read_jsonl, write_jsonl_atomic

log = logging.getLogger(__name__)

UPSTREAM = (
    "https://raw.githubusercontent.com/PiotrNawrot/sparse-frontier/"
    "31d86c170248865183d6569c491d47f71cdd9d53/sparse_frontier/tasks/qa/data/"
)
NORMALISED = "resources/qa/{dataset}.jsonl"
RAW_DIR = "resources/qa/raw"


@dataclass(frozen=True)
class Source:
    filename: str
    git_blob_sha1: str  # of the file in the pinned upstream commit
    layout: str  # "squad" or "lc_vs_rag"

    @property
    def url(self) -> str:
        return UPSTREAM + self.filename


SOURCES = {
    "squad": Source("squad.json", "c6fa1a89a12c90b7fbfa8f6fb437cfff27af41ca", "squad"),
    "quality": Source("quality.jsonl", "870f6683a7c747486ceb17656a08caf9691980f4", "lc_vs_rag"),
    "toefl": Source("toeflqa.jsonl", "d9563ca108b63ccaff535c30f70b2d7e6f445126", "lc_vs_rag"),
}


def get_source(dataset: str) -> Source:
    if dataset not in SOURCES:
        raise ValueError(f"unknown QA dataset {dataset!r}; available: {', '.join(sorted(SOURCES))}")
    return SOURCES[dataset]


def normalised_path(dataset: str) -> str:
    get_source(dataset)
    return NORMALISED.format(dataset=dataset)


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content (what the pinned tree lists)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _download(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def read_raw(dataset: str, local_path: str | None = None, download=_download) -> bytes:
    """The raw file: ``local_path`` if given, else resources/qa/raw/<file> if present, else a download."""
    source = get_source(dataset)
    default = Path(RAW_DIR) / source.filename
    if local_path or default.exists():
        path = Path(local_path or default)
        if not path.exists():
            raise FileNotFoundError(f"QA source {dataset!r}: the configured file {path} does not exist")
        data = path.read_bytes()
        if git_blob_sha1(data) != source.git_blob_sha1:
            log.warning("%s differs from the pinned upstream %s (git blob %s); using it as given",
                        path, source.filename, source.git_blob_sha1)
        return data
    try:
        data = download(source.url)
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(
            f"cannot download the {dataset!r} QA source ({err}); this machine may be offline. "
            f"Download {source.url} by hand and put it at {default} (or set qa_sources.{dataset} in "
            f"the config to its path), then rerun."
        ) from err
    digest = git_blob_sha1(data)
    if digest != source.git_blob_sha1:
        raise ValueError(
            f"{source.url}: checksum mismatch (git blob {digest}, expected {source.git_blob_sha1})"
        )
    return data


def normalise_squad(data: dict) -> list[dict]:
    """Answerable questions only (as RULER); duplicate (question, document) pairs dropped."""
    rows, seen = [], set()
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers", [])]
                key = (qa["question"].strip().lower(), paragraph["context"])
                if qa.get("is_impossible") or not answers or key in seen:
                    continue
                seen.add(key)
                rows.append({"document": paragraph["context"], "question": qa["question"].strip(),
                             "options": [], "answers": answers})
    return rows


_OPTION = re.compile(r"(?:^|\s)([A-H])\.")


def split_options(question: str) -> tuple[str, list[str]]:
    """"Question: why? Options: A.one B.two" -> ("why?", ["one", "two"])."""
    question = re.sub(r"^\s*Question:\s*", "", question)
    head, sep, tail = question.partition("Options:")
    if not sep:
        return question.strip(), []
    parts = _OPTION.split(" " + tail)
    options = [text.strip() for text in parts[2::2]]
    letters = parts[1::2]
    if letters != [chr(ord("A") + i) for i in range(len(letters))]:
        raise ValueError(f"cannot read the options of {question[:120]!r}: letters {letters}")
    return head.strip(), options


def normalise_lc_vs_rag(lines: list[dict]) -> list[dict]:
    rows, seen = [], set()
    for item in lines:
        if len(item["questions"]) != len(item["answer"]):
            raise ValueError(f"{len(item['questions'])} questions but {len(item['answer'])} answers")
        for question, answer in zip(item["questions"], item["answer"]):
            text, options = split_options(question)
            key = (text.lower(), item["context"])
            if key in seen:
                continue
            seen.add(key)
            answers = list(answer.strip()) if options else [answer]
            rows.append({"document": item["context"], "question": text, "options": options,
                         "answers": answers})
    return rows


def normalise(dataset: str, data: bytes) -> list[dict]:
    text = data.decode("utf-8")
    if get_source(dataset).layout == "squad":
        return normalise_squad(json.loads(text))
    return normalise_lc_vs_rag([json.loads(line) for line in text.splitlines() if line.strip()])


def fetch_qa_source(dataset: str, output: str, local_path: str | None = None) -> None:
    """Write the normalised JSONL of ``dataset`` to ``output``."""
    rows = normalise(dataset, read_raw(dataset, local_path))
    if not rows:
        raise ValueError(f"QA source {dataset!r} has no usable questions")
    write_jsonl_atomic(output, rows)
    log.info("%s: %d questions on %d documents -> %s", dataset, len(rows),
             len({r["document"] for r in rows}), output)


def load_normalised(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"normalised QA file {path} is missing: build it with `snakemake {path}` (rule "
            "fetch_qa_source)"
        )
    rows = read_jsonl(path)
    for i, row in enumerate(rows):
        missing = {"document", "question", "options", "answers"} - set(row)
        if missing:
            raise ValueError(f"{path}:{i + 1}: missing field(s) {', '.join(sorted(missing))}")
    return rows
