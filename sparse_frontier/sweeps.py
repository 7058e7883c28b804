"""Grouped prediction: one engine serves several method settings of the same dataset (a "sweep").

With ``engine.methods_per_job: N`` (N > 1) the runs that differ only in their method (same model,
task + arguments, length, samples, seed and output budget, i.e. the same dataset and engine:
``paths.RunKey.GROUP_FIELDS``, ``RunKey.group_key()``) are
split into chunks of at most N methods, in the config's method order; each chunk is one GPU job
(rule ``predict_sweep``) that loads the model once and predicts every method of the chunk, the method
chosen per request. Chunks are formed inside each group only, so a chunk (and its id) depends on
its own group's methods, never on unrelated runs. Rows go to ``paths.SWEEP_PREDICTIONS``, one
resumable file per run, whose path does not depend on the chunking (docs/hpc.md, "Grouping").
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sparse_frontier import paths
from sparse_frontier.config import Run


@dataclass(frozen=True)
class Sweep:
    """One grouped prediction job: runs of one group, in config order."""

    runs: tuple[Run, ...]

    @property
    def id(self) -> str:
        """Ten hex digits naming the chunk's method settings (its group is in the rest of the path)."""
        methods = "\n".join("/".join(getattr(r.key, k) for k in paths.RunKey.METHOD_FIELDS) for r in self.runs)
        return hashlib.sha256(methods.encode()).hexdigest()[:10]

    def wildcards(self) -> dict[str, Any]:
        return dict(self.runs[0].key.group_wildcards(), sweep=self.id)

    @property
    def manifest(self) -> str:
        return paths.SWEEP.format(**self.wildcards())

    @property
    def gpus(self) -> int:
        return self.runs[0].gpus


def plan_sweeps(runs: Iterable[Run], methods_per_job: int) -> list[Sweep]:
    """Chunks of at most ``methods_per_job`` runs of each group (one dataset and output budget). In
    each group, the runs whose methods share cached prompts (dense-prefill methods: dense, Quest) come
    first, then the others, each part in the order of ``runs``: a chunk holding two or more of the
    first turns prefix caching on, so each prompt's KV is computed once for all of them, while the
    other methods' requests in it get a cache of their own (``attention.chunk_shares_prompts``,
    ``vllm_plugin.engine.Engine``). One chunk may so hold every method of a dataset: one engine start.

    ``expand_runs`` lists a group's runs in its experiment's method order (a run shared by several
    experiments keeps its first place), so chunks otherwise follow the config's method order.
    """
    if methods_per_job < 1:
        raise ValueError(f"methods_per_job must be 1 or more, got {methods_per_job!r}")
    from sparse_frontier.attention import shares_prompts

    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key.group_key(), []).append(run)
    chunks = []
    for members in groups.values():
        if methods_per_job > 1:  # sharing runs first (a stable sort keeps each part's order)
            members = sorted(members, key=lambda run: not shares_prompts([run.key.method]))
        chunks += [
            Sweep(tuple(members[start : start + methods_per_job])) for start in range(0, len(members), methods_per_job)
        ]
    return chunks


class SweepIndex:
    """Look sweeps up by the wildcards of their manifest, or the sweep of a run."""

    def __init__(self, runs: Iterable[Run], methods_per_job: int):
        self.sweeps = plan_sweeps(runs, methods_per_job)
        self._by_id: dict[tuple, Sweep] = {}
        self._of_run: dict[paths.RunKey, Sweep] = {}
        for sweep in self.sweeps:
            self._by_id[sweep.runs[0].key.group_key() + (sweep.id,)] = sweep
            for run in sweep.runs:
                self._of_run[run.key] = sweep

    def sweep(self, wildcards: Mapping[str, Any]) -> Sweep:
        ident = paths.RunKey.select(wildcards, paths.RunKey.GROUP_FIELDS)
        sweep = self._by_id.get(ident + (wildcards["sweep"],))
        if sweep is None:
            raise ValueError(f"no sweep {wildcards['sweep']!r} of {ident} in the config (methods_per_job changed?)")
        return sweep

    def of_run(self, key: paths.RunKey) -> Sweep:
        return self._of_run[key]


def sweep_resources(sweep: Sweep, attempt: int) -> dict[str, int]:
    """``mem_mb``, ``runtime`` and ``threads`` of a sweep: the most memory (and threads) of its runs,
    the sum of their runtimes.

    The sum counts an engine start per method (the sweep loads the model once): an upper bound.
    """
    from sparse_frontier.planning.resources import predict_resources

    per_run = [predict_resources(run.as_dict(), attempt) for run in sweep.runs]
    return {
        "mem_mb": max(r["mem_mb"] for r in per_run),
        "runtime": math.ceil(sum(r["runtime"] for r in per_run)),
        "threads": max(r["threads"] for r in per_run),
    }
