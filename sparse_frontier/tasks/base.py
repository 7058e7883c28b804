"""Task base class, the shared prompt format and answer parsing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sparse_frontier.params import Parameterised

ANSWER_INSTRUCTIONS = (
    "First think about the question inside <explanation>...</explanation>, "
    "then give only the final answer inside <answer>...</answer>."
)
_ANSWER_TAG = re.compile(r"<\s*answer\s*>(.*?)(?:<\s*/\s*answer\s*>|$)", re.IGNORECASE | re.DOTALL)


@dataclass
class Draft:
    """One sample before length fitting: the context is a function of how many filler units it has.

    ``context(n)`` must be deterministic and grow with ``n``; the generator searches the ``n`` that
    puts the whole chat prompt inside the target length window. ``question`` and ``gold`` may also be
    functions of ``n`` when they depend on what the context holds (e.g. which chapters exist).
    """

    question: str | Callable[[int], str]
    answer_format: str
    gold: Any
    context: Callable[[int], str]
    max_units: int

    def question_at(self, units: int) -> str:
        return self.question(units) if callable(self.question) else self.question

    def gold_at(self, units: int) -> Any:
        return self.gold(units) if callable(self.gold) else self.gold


@dataclass
class Task(Parameterised):
    """A long-context task: drafts samples from a seeded RNG and scores predictions.

    Subclasses are dataclasses whose fields are the task's arguments (they appear in paths).
    """

    name: ClassVar[str]
    description: ClassVar[str]

    #: Taxonomy (paper Table 2, read by :mod:`sparse_frontier.analysis.registry_tables`): the name in
    #: figures and tables; ``dispersion`` how hard the needed information is to find ("low"/"high");
    #: ``scope`` how much of it is needed ("low"/"high"); ``natural`` whether the text is natural
    #: language (False: synthetic RULER text). Every registered task sets all four.
    display_name: ClassVar[str | None] = None
    dispersion: ClassVar[str | None] = None
    scope: ClassVar[str | None] = None
    natural: ClassVar[bool | None] = None

    #: Start the model's reply with "<answer>" (as RULER starts it with an answer prefix): for small
    #: models that never produce the tag on their own. Changes results, so it is a path argument.
    answer_prefill: bool = False

    @property
    def response_prefix(self) -> str:
        """Text placed after the chat template's generation prompt; scoring prepends it again."""
        return "<answer>" if self.answer_prefill else ""

    def prepare(self, tokenizer) -> None:
        """Called once per dataset before drafting (QA tasks load and filter their source here)."""

    def draft(self, rng) -> Draft:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, answer: str, gold: Any) -> float:  # pragma: no cover - abstract
        """Score in [0, 1] of the text inside the answer tag against the gold answer."""
        raise NotImplementedError

    def render(self, draft: Draft, units: int) -> str:
        """The user message: description, question before and after the context, answer format."""
        question = draft.question_at(units)
        return (
            f"{self.description}\n\n"
            f"Question: {question}\n\n"
            f"<context>\n{draft.context(units)}\n</context>\n\n"
            f"Question: {question}\n\n"
            f"{draft.answer_format} {ANSWER_INSTRUCTIONS}"
        )


def chat_prompt_ids(tokenizer, text: str, response_prefix: str = "") -> list[int]:
    """Token ids of ``text`` as one user turn through the chat template, then the generation prompt
    and ``response_prefix`` (the start of the model's reply, if the task prefills one)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no chat template; "
            "the pipeline evaluates instruction-tuned models and builds prompts with their template"
        )
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    ids = list(ids)
    if response_prefix:
        ids += tokenizer.encode(response_prefix, add_special_tokens=False)
    return ids


def check_int(task: Task, field: str, low: int, high: int) -> None:
    """Validate an integer parameter (bools are not integers here)."""
    value = getattr(task, field)
    task.check(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        field,
        f"an integer in [{low}, {high}]",
    )


_LIST_SPLIT = re.compile(r"[,;\n]+|\band\b", re.IGNORECASE)  # "ABCDE AND FGHIJ" is two items, as RULER scores it
_NUMBERING = re.compile(r"^\s*(?:[-*\u2022]|\(?\d+[.)\]:]|\d+\s)\s*")


def answer_items(answer: str) -> list[str]:
    """Split a list answer into normalised items: commas, semicolons, newlines or "and" (any case) separate;
    list numbering ("1.", "2)", "-"), case, surrounding punctuation and quotes are ignored."""
    items = []
    for part in _LIST_SPLIT.split(answer):
        part = _NUMBERING.sub("", part.strip())
        part = re.sub(r"^[\W_]+|[\W_]+$", "", part).lower()
        part = re.sub(r"\s+", " ", part)
        if part:
            items.append(part)
    return items


def iou(predicted, gold) -> float:
    """Intersection over union of two sets (1.0 when both are empty)."""
    predicted, gold = set(predicted), set(gold)
    union = predicted | gold
    return len(predicted & gold) / len(union) if union else 1.0


def extract_answer(prediction: str) -> str | None:
    """Text of the first ``<answer>`` tag (an unclosed tag runs to the end); None if absent."""
    match = _ANSWER_TAG.search(prediction)
    return match.group(1).strip() if match else None
