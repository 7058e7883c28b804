"""RULER common words extraction: the most frequent words of a long numbered word list.

``words.txt`` is our list of about 7.9k common English words (nouns, adjectives and verbs of 3-12
letters), generated once from the word lists shipped in the MIT-licensed ``wonderwords`` 3.0.1
package (its profanity list removed), so the task needs neither that package nor a download.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

from sparse_frontier.tasks.base import Draft, Task, answer_items, check_int, iou
from sparse_frontier.tasks.registry import register_task

WORDS_FILE = Path(__file__).with_name("words.txt")


@functools.lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    words = tuple(w for w in WORDS_FILE.read_text().split() if w)
    if len(words) < 1000:
        raise ValueError(f"{WORDS_FILE} holds only {len(words)} words; the task needs thousands")
    return words


@register_task
@dataclass
class RulerCwe(Task):
    """``num_common_words`` words repeated ``common_frequency`` times among distractor words repeated
    ``distractor_frequency`` times; the number of distractors is what the length search sizes."""

    name = "ruler_cwe"
    display_name = "CWE"
    dispersion = "low"
    scope = "high"
    natural = False
    description = "Below is a numbered list of words. Some words occur in it more often than others."

    num_common_words: int = 10
    common_frequency: int = 30
    distractor_frequency: int = 3

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        check_int(self, "num_common_words", 1, 100)
        check_int(self, "distractor_frequency", 1, 100)
        check_int(self, "common_frequency", self.distractor_frequency + 1, 1000)

    def draft(self, rng: random.Random) -> Draft:
        words = list(word_list())
        rng.shuffle(words)
        common = words[: self.num_common_words]
        distractors = words[self.num_common_words :]
        shuffle_seed = rng.getrandbits(64)

        def context(n: int) -> str:
            entries = [w for w in common for _ in range(self.common_frequency)]
            entries += [w for w in distractors[:n] for _ in range(self.distractor_frequency)]
            random.Random(shuffle_seed).shuffle(entries)
            return " ".join(f"{i}. {w}" for i, w in enumerate(entries, 1))

        k = self.num_common_words
        return Draft(
            question=f"Which {k} words occur most often in the numbered list?",
            answer_format=f"List the {k} words separated by commas.",
            gold=common,
            context=context,
            max_units=len(distractors),
        )

    def score(self, answer: str, gold: list[str]) -> float:
        """Intersection over union of the listed words and the gold common words."""
        return iou(answer_items(answer), [g.lower() for g in gold])
