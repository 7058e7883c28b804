"""RULER needle-in-a-haystack with several queries: find the values of given keys."""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from sparse_frontier.tasks.base import Draft, Task
from sparse_frontier.tasks.registry import register_task
from sparse_frontier.tasks.ruler.filler import filler, place_at_depths

_ALPHABET = string.ascii_lowercase + string.digits
_WORDS_PER_SENTENCE = 9  # "One of the special magic values for KEY is: VALUE."


def random_code(rng: random.Random, parts: int, part_length: int) -> str:
    return "-".join("".join(rng.choices(_ALPHABET, k=part_length)) for _ in range(parts))


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", text.lower())


@register_task
@dataclass
class RulerNiah(Task):
    """``num_queries`` needles (key -> value sentences) hidden among distractors of the same form, or
    (``haystack: filler``) in neutral filler text, as RULER's single-needle tasks hide theirs in noise."""

    name = "ruler_niah"
    display_name = "NIAH"
    dispersion = "low"
    scope = "low"
    natural = False
    description = (
        "Some special magic values are hidden in the text below. Each sentence of the form "
        '"One of the special magic values for KEY is: VALUE." gives the value of one key.'
    )

    num_queries: int = 4
    code_parts: int = 4
    code_part_length: int = 8
    #: "code" (upstream: 4 x 8 characters of [a-z0-9]) or "number" (7 digits, RULER's easier variant)
    value_format: str = "code"
    #: "needles" (upstream: the haystack is other key -> value sentences, so the key must be matched) or
    #: "filler" (neutral sentences: the needles are the only values in the text, RULER's niah_single)
    haystack: str = "needles"

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        self.check(self.value_format in ("code", "number"), "value_format", "one of: code, number")
        self.check(self.haystack in ("needles", "filler"), "haystack", "one of: needles, filler")
        self.check(
            isinstance(self.num_queries, int) and 1 <= self.num_queries <= 64, "num_queries", "an integer in [1, 64]"
        )
        self.check(isinstance(self.code_parts, int) and 1 <= self.code_parts <= 8, "code_parts", "an integer in [1, 8]")
        self.check(
            isinstance(self.code_part_length, int) and 2 <= self.code_part_length <= 16,
            "code_part_length",
            "an integer in [2, 16]",
        )

    @staticmethod
    def sentence(key: str, value: str) -> str:
        return f"One of the special magic values for {key} is: {value}."

    def _code(self, rng: random.Random) -> str:
        return random_code(rng, self.code_parts, self.code_part_length)

    def _value(self, rng: random.Random) -> str:
        if self.value_format == "number":
            return str(rng.randrange(1_000_000, 10_000_000))
        return self._code(rng)

    def draft(self, rng: random.Random) -> Draft:
        needles = [(self._code(rng), self._value(rng)) for _ in range(self.num_queries)]
        depths = sorted(rng.random() for _ in range(self.num_queries))
        used = {key for key, _ in needles}
        # Distractors come from their own stream: the first n are the same for every n, so the
        # length search only changes how many there are, never which.
        distractor_seed = rng.getrandbits(64)
        max_units = 2_000_000

        cache: list[str] = []
        stream = random.Random(distractor_seed)

        def distractors(n: int) -> list[str]:
            while len(cache) < n:
                key = self._code(stream)
                if key not in used:
                    used.add(key)
                    cache.append(self.sentence(key, self._value(stream)))
            return cache[:n]

        def filler_context(n: int) -> str:
            # n counts filler sentences (~10 tokens: inside the 5% length window from 512 tokens up)
            return " ".join(place_at_depths(filler(n), [self.sentence(k, v) for k, v in needles], depths))

        def context(n: int) -> str:
            # n counts filler *words*, so the prompt can be sized finer than a whole sentence
            # (a sentence is ~70 tokens: wider than the 5% window at short lengths).
            full, rest = divmod(n, _WORDS_PER_SENTENCE)
            sentences = list(distractors(full + (1 if rest else 0)))
            if rest:
                sentences[-1] = " ".join(sentences[-1].split()[:rest])
            # Insert from the deepest needle so earlier insert positions stay valid.
            for (key, value), depth in sorted(zip(needles, depths), key=lambda p: -p[1]):
                sentences.insert(round(depth * len(sentences)), self.sentence(key, value))
            return " ".join(sentences)

        keys = [key for key, _ in needles]
        listed = ", ".join(keys[:-1]) + (" and " if len(keys) > 1 else "") + keys[-1]
        return Draft(
            question=f"What are the special magic values for {listed}?",
            answer_format=(f"Give the {self.num_queries} values in the order of the keys, separated by commas."),
            gold=[value for _, value in needles],
            context=filler_context if self.haystack == "filler" else context,
            max_units=max_units,
        )

    def score(self, answer: str, gold: list[str]) -> float:
        """Fraction of the gold values present in the answer (order and punctuation ignored)."""
        found = _normalise(answer)
        return sum(_normalise(value) in found for value in gold) / len(gold)
