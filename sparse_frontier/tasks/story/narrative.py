"""Our narrative generator: a protagonist travels chapter by chapter, meets people and trades items.

Every chapter has a location, a character met, an event, a few lines of conversation, one purchase
(unless the task removes it) and sometimes the sale of an item bought earlier. Item names combine an
adjective, a material and an object type, and are unique within a story. Chapter ``k`` depends only
on the story seed and ``k``, so a longer story extends a shorter one; the length search adds
chapters, then neutral scenery sentences at the end of the last chapter for the fine adjustment.
All wording here is written for this project.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
import re
from dataclasses import dataclass, field

PROTAGONISTS = ("Elena", "Tobias", "Marisol", "Ivo", "Greta", "Anselm", "Noor", "Caspian")
CHARACTERS = (
    "Bruno, a ferryman",
    "Ada, a clockmaker",
    "Felix, a beekeeper",
    "Lotte, a cartographer",
    "Omar, a glassblower",
    "Pia, a fisherwoman",
    "Rafael, a bookbinder",
    "Sanne, a shepherd",
    "Tomas, a lamplighter",
    "Una, a botanist",
    "Viktor, a locksmith",
    "Wren, a street musician",
    "Yara, a stonemason",
    "Zeno, a retired sailor",
    "Hilde, an innkeeper",
    "Jasper, a tailor",
    "Katya, a potter",
    "Leon, a blacksmith",
    "Mina, a weaver",
    "Nils, a carpenter",
    "Odile, a baker",
    "Pavel, a miller",
    "Quinn, a courier",
    "Rosa, a herbalist",
)
LOCATIONS = (
    "the harbour market",
    "an abandoned lighthouse",
    "a mountain monastery",
    "the salt flats",
    "a riverside tavern",
    "the old observatory",
    "a desert caravanserai",
    "the floating gardens",
    "a snowed-in village",
    "the copper mines",
    "a lakeside chapel",
    "the royal archives",
    "a crowded railway station",
    "the cliffside orchards",
    "a forgotten library",
    "the silk bazaar",
    "a fishing hamlet",
    "the glass conservatory",
    "a windmill on the moor",
    "the canal district",
    "a hilltop fortress",
    "the spice warehouses",
    "a birch forest camp",
    "the lantern festival grounds",
)
ADJECTIVES = (
    "tiny",
    "ornate",
    "battered",
    "gleaming",
    "ancient",
    "folding",
    "polished",
    "heavy",
    "delicate",
    "crooked",
    "painted",
    "engraved",
    "weathered",
    "miniature",
    "sturdy",
    "curious",
)
MATERIALS = (
    "brass",
    "oak",
    "silver",
    "porcelain",
    "leather",
    "copper",
    "glass",
    "ivory",
    "iron",
    "walnut",
    "jade",
    "pewter",
    "bronze",
    "cedar",
    "marble",
    "tin",
)
OBJECTS = (
    "compass",
    "teapot",
    "music box",
    "lantern",
    "hourglass",
    "flute",
    "chess set",
    "mirror",
    "inkwell",
    "telescope",
    "bell",
    "snuffbox",
    "candlestick",
    "locket",
    "spyglass",
    "dagger",
    "jewellery box",
    "sundial",
    "kaleidoscope",
    "figurine",
)
EVENTS = (
    "A sudden storm drove everyone indoors for the afternoon.",
    "A parade of drummers passed through the streets at noon.",
    "The bells rang for a wedding nobody had announced.",
    "A runaway goat caused a small commotion near the well.",
    "Rumours spread that a famous poet had arrived in disguise.",
    "The whole place went dark for an hour when the lamps failed.",
    "Travellers argued loudly about the price of bread.",
    "A fire in a nearby barn was put out before it could spread.",
    "Children were racing paper boats along the gutters.",
    "A troupe of acrobats performed on a makeshift stage.",
)
TALK = (
    '"Have you come far?" {c} asked. "Far enough," {p} replied.',
    "{c} said that the winters here were longer than anyone remembered.",
    '"You look like someone who collects stories," {c} said with a grin.',
    "{p} asked about the road ahead, and {c} shrugged without answering.",
    '"Stay for supper if you like," {c} offered, and {p} gladly agreed.',
    "{c} complained about the noise of the night before.",
    '"Nothing here is what it seems," {c} whispered.',
    "{p} and {c} talked for a long while about distant cities.",
)
SCENERY = (
    "The evening light turned the rooftops a pale orange.",
    "A cold wind came down from the hills.",
    "Somewhere a dog barked twice and fell silent.",
    "Smoke curled from a dozen chimneys.",
    "The streets grew quiet as night settled in.",
    "Clouds drifted slowly across a washed-out sky.",
    "The smell of wet earth hung in the air.",
    "Birds gathered on the wires above the square.",
)
BUY = (
    "{p} bought {i} from {c}.",
    "Before leaving, {p} bought {i} at a small stall.",
    "{p} could not resist and bought {i}.",
)
SELL = (
    "{p} sold the {i} to a passing trader.",
    "Short of money, {p} sold the {i}.",
)

ITEM_PATTERN = re.compile(
    r"\b(?:"
    + "|".join(ADJECTIVES)
    + r") (?:"
    + "|".join(MATERIALS)
    + r") (?:"
    + "|".join(sorted(OBJECTS, key=len, reverse=True))
    + r")\b"
)


@dataclass
class Chapter:
    number: int
    location: str
    character: str  # "Name, a role"
    event: str
    talk: list[str]
    bought: str | None
    sold: str | None
    scenery: list[str] = field(default_factory=list)
    buy_template: str = BUY[0]
    sell_template: str = SELL[0]

    @property
    def character_name(self) -> str:
        return self.character.split(",")[0]

    def sentences(self, protagonist: str) -> list[str]:
        p, c = protagonist, self.character_name
        out = [f"{p} arrived at {self.location}.", f"There {p} met {self.character}.", self.event]
        out += [line.format(p=p, c=c) for line in self.talk]
        if self.bought:  # the filtering task removes some purchases entirely
            article = "an" if self.bought[0] in "aeiou" else "a"
            out.append(self.buy_template.format(p=p, c=c, i=f"{article} {self.bought}"))
        if self.sold:
            out.append(self.sell_template.format(p=p, i=self.sold))
        return out + self.scenery


class Story:
    """Chapters of one story, generated lazily from ``seed`` (chapter k never depends on length)."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        self.protagonist = rng.choice(PROTAGONISTS)
        self._rng = random.Random(rng.getrandbits(64))
        self._items: list[str] = []  # every purchase in order, unique
        self._held: list[str] = []  # bought and not yet sold
        self._chapters: list[Chapter] = []
        self._cumulative = [0]  # sentences in the first k chapters

    def _new_item(self) -> str:
        while True:
            item = f"{self._rng.choice(ADJECTIVES)} {self._rng.choice(MATERIALS)} {self._rng.choice(OBJECTS)}"
            if item not in self._items:
                return item

    def chapter(self, k: int) -> Chapter:
        """Chapter ``k`` (1-based)."""
        while len(self._chapters) < k:
            rng, number = self._rng, len(self._chapters) + 1
            item = self._new_item()
            sold = None
            if self._held and rng.random() < 0.3:
                sold = self._held.pop(rng.randrange(len(self._held)))
            chapter = Chapter(
                number=number,
                location=rng.choice(LOCATIONS),
                character=rng.choice(CHARACTERS),
                event=rng.choice(EVENTS),
                talk=rng.sample(TALK, rng.randint(1, 3)),
                bought=item,
                sold=sold,
                scenery=rng.sample(SCENERY, rng.randint(0, 2)),
            )
            chapter.buy_template = rng.choice(BUY)
            chapter.sell_template = rng.choice(SELL)
            self._items.append(item)
            self._held.append(item)
            self._chapters.append(chapter)
        return self._chapters[k - 1]

    def layout(self, n: int, min_chapters: int) -> tuple[int, int]:
        """(chapters, extra scenery sentences) for ``n`` units: a unit is one sentence beyond the
        first ``min_chapters`` chapters; the remainder that cannot make a whole chapter becomes
        scenery at the end of the last one."""
        cumulative = self._cumulative
        while len(cumulative) <= min_chapters:
            cumulative.append(cumulative[-1] + self.sentence_count(len(cumulative)))
        budget = n + cumulative[min_chapters]
        while cumulative[-1] <= budget:  # generate until one chapter too many
            cumulative.append(cumulative[-1] + self.sentence_count(len(cumulative)))
        chapters = bisect.bisect_right(cumulative, budget) - 1
        return chapters, budget - cumulative[chapters]

    def sentence_count(self, k: int) -> int:
        ch = self.chapter(k)
        return 4 + len(ch.talk) + (ch.sold is not None) + len(ch.scenery)

    def text(self, chapters: int, extra: int, skipped: tuple[int, ...] = ()) -> str:
        """The story's first ``chapters`` chapters; purchases of the ``skipped`` chapters removed (and
        the later sale of such an item with them, since it was never bought)."""
        removed = [self.chapter(k).bought for k in skipped]
        blocks = []
        for k in range(1, chapters + 1):
            ch = self.chapter(k)
            shown = dataclasses.replace(
                ch, bought=None if k in skipped else ch.bought, sold=None if ch.sold in removed else ch.sold
            )
            body = shown.sentences(self.protagonist)
            if k == chapters:
                body += [SCENERY[i % len(SCENERY)] for i in range(extra)]
            blocks.append(f"Chapter {k}\n" + " ".join(body))
        return "\n\n".join(blocks)
