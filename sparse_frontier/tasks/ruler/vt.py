"""RULER variable tracking: which variables end up holding a value through chained assignments."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from sparse_frontier.tasks.base import Draft, Task, answer_items, check_int, iou
from sparse_frontier.tasks.registry import register_task
from sparse_frontier.tasks.ruler.filler import filler, place_at_depths, sorted_depths


def assignment(variable: str, value: str) -> str:
    return f"VAR {variable} = {value}."


@register_task
@dataclass
class RulerVt(Task):
    """``num_chains`` chains of ``num_hops`` assignments; the first chain is asked about, the others
    distract. Statements keep their chain order and sit at random depths in neutral filler."""

    name = "ruler_vt"
    display_name = "VT"
    dispersion = "high"
    scope = "low"
    natural = False
    description = (
        'The text below contains assignments of the form "VAR NAME = VALUE.", where VALUE is a '
        "number or the name of another variable. A variable assigned another variable holds that "
        "variable's value."
    )

    num_chains: int = 8
    num_hops: int = 4

    def __post_init__(self):
        self.check(isinstance(self.answer_prefill, bool), "answer_prefill", "true or false")
        check_int(self, "num_chains", 1, 64)
        check_int(self, "num_hops", 1, 32)

    def draft(self, rng: random.Random) -> Draft:
        names: list[str] = []
        while len(names) < self.num_chains * (self.num_hops + 1):
            name = "".join(rng.choices(string.ascii_uppercase, k=5))
            if name not in names:
                names.append(name)
        values: list[int] = []
        while len(values) < self.num_chains:
            value = rng.randrange(10000, 100000)
            if value not in values:
                values.append(value)
        chains = []
        for c in range(self.num_chains):
            chain = names[c * (self.num_hops + 1) : (c + 1) * (self.num_hops + 1)]
            statements = [assignment(chain[0], str(values[c]))]
            statements += [assignment(b, a) for a, b in zip(chain, chain[1:])]
            chains.append(statements)
        # Interleave the chains at random while keeping each chain's own order.
        order = [c for c in range(self.num_chains) for _ in range(self.num_hops + 1)]
        rng.shuffle(order)
        position = [0] * self.num_chains
        statements = []
        for c in order:
            statements.append(chains[c][position[c]])
            position[c] += 1
        depths = sorted_depths(rng, len(statements))

        def context(n: int) -> str:
            return " ".join(place_at_depths(filler(n), statements, depths))

        return Draft(
            question=f"Which variables are assigned the value {values[0]}, directly or through other variables?",
            answer_format="List the names of all such variables, separated by commas.",
            gold=names[: self.num_hops + 1],
            context=context,
            max_units=1_000_000,
        )

    def score(self, answer: str, gold: list[str]) -> float:
        """Intersection over union of the named variables and the gold chain."""
        return iou([a.upper() for a in answer_items(answer)], [g.upper() for g in gold])
