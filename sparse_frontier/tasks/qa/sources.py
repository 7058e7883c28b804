"""QA sources: fetch the raw files, check them, and normalise them to one JSONL layout.

Normalised rows: ``{"document": str, "question": str, "options": [str], "answers": [str]}``; open
questions (SQuAD) have no options and their gold answers in ``answers``; multiple-choice questions
have ``answers`` holding option letters (one or more).

The raw files are the ones upstream shipped in its repository (SQuAD v2.0 dev as its JSON; QuALITY
and TOEFL-QA as packaged by the LC-VS-RAG study), fetched from a pinned commit and checked against
the git blob SHA-1 of that commit's tree. None of them is on the Hugging Face hub in that form, so
they are read with the ``datasets`` JSON loader: the pinned URL is downloaded once into the datasets
download cache (``$HF_DATASETS_CACHE/downloads``, keyed by the URL alone: a commit's file never
changes, so a cached copy is used without asking the server, also in offline mode,
``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) and parsed by ``load_dataset("json", ...)`` into
the datasets cache. A local copy (``qa_sources.<dataset>`` in the config, or
``resources/qa/raw/<file>``) goes through the same loader and replaces the download.
"""

from __future__ import annotations

import hashlib
import logging
import re
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


def download_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where downloaded sources are kept: ``<cache_dir>/downloads``, by default the datasets one."""
    if cache_dir is not None:
        return Path(cache_dir) / "downloads"
    from datasets import config

    return Path(config.DOWNLOADED_DATASETS_PATH)


def _offline_mode() -> bool:
    from datasets import config

    return bool(config.HF_HUB_OFFLINE)


def raw_data_file(dataset: str, local_path: str | None = None, cache_dir: str | Path | None = None) -> str:
    """The raw file on this machine: ``local_path`` if given, else resources/qa/raw/<file> if present,
    else the pinned upstream file from the datasets download cache (downloaded and checked once)."""
    source = get_source(dataset)
    default = Path(RAW_DIR) / source.filename
    if local_path and local_path.startswith("file://"):
        local_path = local_path[len("file://") :]
    if local_path or default.exists():
        path = Path(local_path or default)
        if not path.exists():
            raise FileNotFoundError(f"QA source {dataset!r}: the configured file {path} does not exist")
        if git_blob_sha1(path.read_bytes()) != source.git_blob_sha1:
            log.warning(
                "%s differs from the pinned upstream %s (git blob %s); using it as given",
                path,
                source.filename,
                source.git_blob_sha1,
            )
        return str(path)
    from datasets import DownloadConfig
    from datasets.utils.file_utils import cached_path

    downloads = download_cache_dir(cache_dir)
    # use_etag=False: the URL names a commit, so a cached copy is current and no request is made.
    download = DownloadConfig(cache_dir=str(downloads), use_etag=False)
    try:
        cached = cached_path(source.url, download_config=download)
    except Exception as err:  # offline mode, no network, HTTP errors: all end here
        why = (
            f"offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) and it is not in the datasets cache {downloads}"
            if _offline_mode()
            else "this machine may be offline"
        )
        raise RuntimeError(
            f"cannot fetch the {dataset!r} QA source from {source.url} ({type(err).__name__}: {err}); "
            f"{why}. Download {source.url} by hand and put it at {default} (or set qa_sources.{dataset} "
            f"in the config to its path), or fill the datasets cache (HF_DATASETS_CACHE) where there is "
            f"internet, e.g. `snakemake resources/qa/{dataset}.jsonl` on a login node sharing it; then "
            f"rerun."
        ) from err
    digest = git_blob_sha1(Path(cached).read_bytes())
    if digest != source.git_blob_sha1:
        for stale in (Path(cached), Path(cached + ".json")):
            stale.unlink(missing_ok=True)  # so that a rerun downloads it afresh
        raise ValueError(
            f"{source.url}: checksum mismatch (git blob {digest}, expected {source.git_blob_sha1}); "
            f"the downloaded copy was removed from {downloads}"
        )
    return cached


def load_raw(dataset: str, local_path: str | None = None, cache_dir: str | Path | None = None) -> list[dict]:
    """The raw records through ``datasets``' JSON loader: SQuAD's articles (its ``data`` field) or
    LC-VS-RAG's lines. ``cache_dir`` defaults to the datasets cache (``HF_DATASETS_CACHE``)."""
    source = get_source(dataset)
    data_file = raw_data_file(dataset, local_path, cache_dir)
    from datasets import load_dataset  # ~1 s to import: only when a source is loaded

    field = "data" if source.layout == "squad" else None
    records = load_dataset(
        "json",
        data_files=data_file,
        field=field,
        split="train",
        cache_dir=None if cache_dir is None else str(cache_dir),
    )
    return records.to_list()


def normalise_squad(data: dict) -> list[dict]:
    """Answerable questions only (as RULER); duplicate (question, document) pairs dropped."""
    rows, seen = [], set()
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers") or []]
                key = (qa["question"].strip().lower(), paragraph["context"])
                if qa.get("is_impossible") or not answers or key in seen:
                    continue
                seen.add(key)
                rows.append(
                    {
                        "document": paragraph["context"],
                        "question": qa["question"].strip(),
                        "options": [],
                        "answers": answers,
                    }
                )
    return rows


_OPTION = re.compile(r"(?:^|\s)([A-H])\.")


def split_options(question: str) -> tuple[str, list[str]]:
    """ "Question: why? Options: A.one B.two" -> ("why?", ["one", "two"])."""
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
            rows.append({"document": item["context"], "question": text, "options": options, "answers": answers})
    return rows


def normalise(dataset: str, records: list[dict]) -> list[dict]:
    """Raw records as ``load_raw`` gives them -> normalised rows."""
    if get_source(dataset).layout == "squad":
        return normalise_squad({"data": records})
    return normalise_lc_vs_rag(records)


def fetch_qa_source(
    dataset: str, output: str, local_path: str | None = None, cache_dir: str | Path | None = None
) -> None:
    """Write the normalised JSONL of ``dataset`` to ``output``."""
    rows = normalise(dataset, load_raw(dataset, local_path, cache_dir))
    if not rows:
        raise ValueError(f"QA source {dataset!r} has no usable questions")
    write_jsonl_atomic(output, rows)
    log.info("%s: %d questions on %d documents -> %s", dataset, len(rows), len({r["document"] for r in rows}), output)


def load_normalised(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"normalised QA file {path} is missing: build it with `snakemake {path}` (rule fetch_qa_source)"
        )
    rows = read_jsonl(path)
    for i, row in enumerate(rows):
        missing = {"document", "question", "options", "answers"} - set(row)
        if missing:
            raise ValueError(f"{path}:{i + 1}: missing field(s) {', '.join(sorted(missing))}")
    return rows
