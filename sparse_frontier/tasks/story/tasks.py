"""The three story tasks on one narrative generator: retrieval, multi-hop and filtering."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from sparse_frontier.tasks.base import Draft, Task, answer_items, check_int, iou
from sparse_frontier.tasks.registry import register_task
from sparse_frontier.tasks.story.narrative import Story

DESCRIPTION = (
    "Below is a story told in numbered chapters. In each chapter the protagonist arrives somewhere, "
    "meets someone and usually buys an item; sometimes an item bought earlier is sold."
)


def normalise(text: str) -> str:
    """Lower case, no punctuation, no leading article: "The Harbour market." -> "harbour market"."""
    text = re.sub(r"[^a-z0-9 ]", " ", text.lower())
    text = " ".join(text.split())
    return re.sub(r"^(?:the|a|an) ", "", text)


class _StoryTask(Task):
    min_chapters: int = 2

    def _story(self, rng: random.Random) -> tuple[Story, int]:
        return Story(rng.getrandbits(64)), rng.getrandbits(64)

    def _context(self, story: Story, skipped=lambda chapters: ()):
        def context(n: int) -> str:
            chapters, extra = story.layout(n, self.min_chapters)
            return story.text(chapters, extra, skipped(chapters))

        return context


@register_task
@dataclass
class StoryRetrieval(_StoryTask):
    """``num_questions`` factoid questions about where the protagonist went, whom they met and what
    they bought in given chapters."""

    name = "story_retrieval"
    display_name = "Story Retrieval"
    dispersion = "low"
    scope = "low"
    natural = True
    description = DESCRIPTION

    num_questions: int = 16

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        check_int(self, "num_questions", 1, 64)
        self.min_chapters = math.ceil(self.num_questions / 3)

    def _asked(self, story: Story, chapters: int, seed: int) -> list[tuple[int, str]]:
        pairs = [(k, aspect) for k in range(1, chapters + 1) for aspect in ("location", "character", "item")]
        return sorted(random.Random(seed).sample(pairs, self.num_questions))

    def draft(self, rng: random.Random) -> Draft:
        story, seed = self._story(rng)
        p = story.protagonist
        wording = {
            "location": "Where did {p} arrive in chapter {k}?",
            "character": "Whom did {p} meet in chapter {k}? Give the name.",
            "item": "What did {p} buy in chapter {k}?",
        }

        def asked(n: int) -> list[tuple[int, str]]:
            return self._asked(story, story.layout(n, self.min_chapters)[0], seed)

        def question(n: int) -> str:
            lines = [f"{i}. " + wording[a].format(p=p, k=k) for i, (k, a) in enumerate(asked(n), 1)]
            return "Answer these questions about the story:\n" + "\n".join(lines)

        def gold(n: int) -> list[str]:
            out = []
            for k, aspect in asked(n):
                ch = story.chapter(k)
                out.append({"location": ch.location, "character": ch.character_name, "item": ch.bought}[aspect])
            return out

        return Draft(
            question=question,
            answer_format=(
                f"Answer the {self.num_questions} questions in order, one per line, numbered like "
                "the questions, each with only the place, name or item."
            ),
            gold=gold,
            context=self._context(story),
            max_units=1_000_000,
        )

    def score(self, answer: str, gold: list[str]) -> float:
        """Fraction of questions whose answer (matched by its number, else by position) names the gold."""
        numbered = {}
        for line in answer.splitlines():
            m = re.match(r"\s*\(?(\d+)[.):\]]\s*(.*)", line)
            if m:
                numbered.setdefault(int(m.group(1)), m.group(2))
        if numbered:
            answers = [numbered.get(i, "") for i in range(1, len(gold) + 1)]
        else:
            answers = [line for line in re.split(r"[\n;]+", answer) if line.strip()]
        answers += [""] * (len(gold) - len(answers))
        correct = sum(bool(normalise(g)) and normalise(g) in normalise(a) for a, g in zip(answers, gold))
        return correct / len(gold)


@register_task
@dataclass
class StoryMultihop(_StoryTask):
    """Which item was bought immediately before a named one: needs the order of all purchases."""

    name = "story_multihop"
    display_name = "Story Multi-hop"
    dispersion = "high"
    scope = "low"
    natural = True
    description = DESCRIPTION

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        self.min_chapters = 2

    def draft(self, rng: random.Random) -> Draft:
        story, _ = self._story(rng)
        depth = rng.random()  # where the asked chapter sits, relative to the story's length

        def asked(n: int) -> int:
            chapters = story.layout(n, self.min_chapters)[0]
            return min(chapters, 2 + int(depth * (chapters - 1)))

        return Draft(
            question=lambda n: (
                f"Which item did {story.protagonist} buy immediately before buying the "
                f"{story.chapter(asked(n)).bought}?"
            ),
            answer_format="Give only the name of that item.",
            gold=lambda n: story.chapter(asked(n) - 1).bought,
            context=self._context(story),
            max_units=1_000_000,
        )

    def score(self, answer: str, gold: str) -> float:
        """Exact match after case, punctuation and a leading article are ignored."""
        return float(normalise(answer) == normalise(gold))


@register_task
@dataclass
class StoryFiltering(_StoryTask):
    """The purchases of ``num_without_purchase`` chapters are removed; which chapters have none?"""

    name = "story_filtering"
    display_name = "Story Filtering"
    dispersion = "low"
    scope = "high"
    natural = True
    description = DESCRIPTION

    num_without_purchase: int = 3

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        check_int(self, "num_without_purchase", 1, 32)
        self.min_chapters = self.num_without_purchase + 2

    def draft(self, rng: random.Random) -> Draft:
        story, seed = self._story(rng)

        def skipped(chapters: int) -> tuple[int, ...]:
            return tuple(sorted(random.Random(seed).sample(range(1, chapters + 1), self.num_without_purchase)))

        return Draft(
            question=f"In which chapters did {story.protagonist} not buy anything?",
            answer_format="List the chapter numbers separated by commas.",
            gold=lambda n: list(skipped(story.layout(n, self.min_chapters)[0])),
            context=self._context(story, skipped),
            max_units=1_000_000,
        )

    def score(self, answer: str, gold: list[int]) -> float:
        """Intersection over union of the named chapter numbers and the gold chapters."""
        named = [int(m) for item in answer_items(answer) for m in re.findall(r"\d+", item)]
        return iou(named, gold)
