"""QA tasks: a question about one named document among numbered distractor documents."""

from __future__ import annotations

import collections
import logging
import random
import re
import string
from dataclasses import dataclass
from typing import Any, ClassVar

from sparse_frontier.tasks.base import Draft, Task, answer_items, chat_prompt_ids, check_int
from sparse_frontier.tasks.qa.sources import load_normalised, normalised_path
from sparse_frontier.tasks.registry import register_task

log = logging.getLogger(__name__)
LETTERS = string.ascii_uppercase


def _tokens(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = _tokens(prediction), _tokens(gold)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if not pred or not ref or common == 0:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def option_letters(answer: str, options: list[str]) -> set[str]:
    """Letters named in an answer: "B", "(b)", "B. text", "B and D", "BD", "Option C", or an
    option's full text."""
    valid = LETTERS[: len(options)].lower()
    found = set()
    for item in answer_items(answer):
        item = re.sub(r"^(?:options?|answer)\s*:?\s*", "", item)
        if re.fullmatch(f"[{valid}]+", item) and len(item) <= len(options):
            found |= {c.upper() for c in item}
            continue
        m = re.match(rf"^\(?([{valid}])(?:[).:\]]|\s|$)", item)
        if m:
            found.add(m.group(1).upper())
            continue
        for i, option in enumerate(options):
            if _tokens(item) == _tokens(option):
                found.add(LETTERS[i])
    return found


class _QaTask(Task):
    dataset: ClassVar[str]
    multiple_choice: ClassVar[bool]
    #: The normalised file; the workflow builds it at the default place, tests point it elsewhere.
    source_path: str | None = None

    def _validate(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        check_int(self, "single_document_limit", 256, 1_000_000)

    @property
    def source(self) -> str:
        return self.source_path or normalised_path(self.dataset)

    def _question_text(self, row: dict, document: int) -> str:
        text = f"{row['question']} (Answer from Document {document}.)"
        if row["options"]:
            text += "\nOptions:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(row["options"]))
        return text

    def prepare(self, tokenizer) -> None:
        """Load the questions and keep those whose single-document prompt fits the limit, so the
        same questions serve every length."""
        rows = load_normalised(self.source)
        self._documents = sorted({r["document"] for r in rows})
        self._doc_index = {d: i for i, d in enumerate(self._documents)}
        self._doc_words = [d.split() for d in self._documents]
        kept = []
        for row in rows:
            draft = self._draft_for(row, random.Random(0), only_target=True)
            if (
                len(chat_prompt_ids(tokenizer, self.render(draft, 0), self.response_prefix))
                <= self.single_document_limit
            ):
                kept.append(row)
        if not kept:
            raise ValueError(
                f"task {self.name!r}: no question of {self.source} fits {self.single_document_limit} "
                "tokens with its document alone"
            )
        log.info(
            "%s: %d of %d questions fit %d tokens alone", self.name, len(kept), len(rows), self.single_document_limit
        )
        self._questions = kept

    def draft(self, rng: random.Random) -> Draft:
        if not hasattr(self, "_questions"):
            raise RuntimeError(f"task {self.name!r}: call prepare(tokenizer) before drafting")
        row = self._questions[rng.randrange(len(self._questions))]
        return self._draft_for(row, rng)

    def _draft_for(self, row: dict, rng: random.Random, only_target: bool = False) -> Draft:
        target = self._doc_index[row["document"]]
        others = [] if only_target else [i for i in range(len(self._documents)) if i != target]
        rng.shuffle(others)
        depth = rng.random()
        cumulative = [0]
        for i in others:
            cumulative.append(cumulative[-1] + len(self._doc_words[i]))

        def layout(n: int) -> tuple[list[str], int]:
            """Documents for ``n`` distractor words (the last one trimmed) and the target's number."""
            docs = []
            for k, i in enumerate(others):
                if cumulative[k] >= n:
                    break
                docs.append(" ".join(self._doc_words[i][: n - cumulative[k]]))
            position = round(depth * len(docs))
            docs.insert(position, row["document"])
            return docs, position + 1

        def context(n: int) -> str:
            docs, _ = layout(n)
            return "\n\n".join(f"Document {k}:\n{d}" for k, d in enumerate(docs, 1))

        gold: Any = list(row["answers"])
        if self.multiple_choice:
            gold = {"answers": gold, "options": list(row["options"])}
        return Draft(
            question=lambda n: self._question_text(row, layout(n)[1]),
            answer_format=self.answer_format,
            gold=gold,
            context=context,
            max_units=cumulative[-1],
        )


_DESCRIPTION = "Below are numbered documents. Answer the question using the document it names."


@register_task
@dataclass
class QaSquad(_QaTask):
    """SQuAD v2.0 dev (answerable questions): an open question; metric: best token F1."""

    name = "qa_squad"
    display_name = "SQuAD"
    dispersion = "low"
    scope = "low"
    natural = True
    description = _DESCRIPTION
    dataset = "squad"
    multiple_choice = False
    answer_format = "Answer with a short phrase taken from the document."

    single_document_limit: int = 8192

    def __post_init__(self):
        self._validate()

    def score(self, answer: str, gold: list[str]) -> float:
        """Highest token F1 over the gold answers (SQuAD's normalisation)."""
        return max(token_f1(answer, g) for g in gold)


class _MultipleChoice(_QaTask):
    multiple_choice = True
    answer_format = "Answer with the letter(s) of the correct option(s) only, e.g. B (or B, D if several are correct)."

    def score(self, answer: str, gold: dict) -> float:
        """1 if the named option letters are exactly the gold letters, else 0."""
        return float(option_letters(answer, gold["options"]) == set(gold["answers"]))


@register_task
@dataclass
class QaQuality(_MultipleChoice):
    """QuALITY (as packaged by LC-VS-RAG): a multiple-choice question about a long document."""

    name = "qa_quality"
    display_name = "QuALITY"
    dispersion = "low"
    scope = "low"
    natural = True
    description = _DESCRIPTION
    dataset = "quality"

    single_document_limit: int = 8192

    def __post_init__(self):
        self._validate()


@register_task
@dataclass
class QaToefl(_MultipleChoice):
    """TOEFL-QA (as packaged by LC-VS-RAG): a multiple-choice question about a transcript."""

    name = "qa_toefl"
    display_name = "TOEFL"
    dispersion = "low"
    scope = "low"
    natural = True
    description = _DESCRIPTION
    dataset = "toefl"

    single_document_limit: int = 8192

    def __post_init__(self):
        self._validate()
