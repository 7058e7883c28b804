"""Shared pieces of the synthetic RULER tasks: neutral filler and placing statements at depths."""

from __future__ import annotations

import random

# Our own neutral sentences: no numbers, no capitalised names, nothing a question could ask about.
FILLER_SENTENCES = (
    "The kettle on the stove began to whistle softly.",
    "A light rain fell over the quiet fields.",
    "Somebody had left the garden gate open again.",
    "The old clock in the hallway kept its slow rhythm.",
    "Far away a train rolled across the valley.",
    "The bakery on the corner smelled of fresh bread.",
    "Leaves gathered in small piles along the fence.",
    "The river moved lazily under the stone bridge.",
)


def filler(n: int) -> list[str]:
    """The first ``n`` filler sentences (a fixed cycle, so the text for ``n`` is a prefix of ``n+1``)."""
    k = len(FILLER_SENTENCES)
    return [FILLER_SENTENCES[i % k] for i in range(n)]


def place_at_depths(sentences: list[str], inserts: list[str], depths: list[float]) -> list[str]:
    """``inserts`` placed into ``sentences`` at relative ``depths`` (sorted, in [0, 1]), in order."""
    out = list(sentences)
    # From the deepest insert backwards so earlier positions stay valid; ties keep insert order.
    for text, depth in sorted(zip(inserts, depths), key=lambda p: -p[1]):
        out.insert(round(depth * len(sentences)), text)
    return out


def sorted_depths(rng: random.Random, k: int) -> list[float]:
    return sorted(rng.random() for _ in range(k))
