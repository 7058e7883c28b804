"""The path grammar: every file the pipeline writes, named by everything that changes its content.

A run is identified by (task + its arguments, target length, model, samples, seed, method + its
settings, max output tokens). Arguments become one path segment of ``key~value`` pairs joined by
``+``, keys sorted, e.g. ``quest/budget~0.05+page_size~16``; a method without parameters gets the
segment ``none``. Not commas: Snakemake hands a remote job (SLURM) its wildcards as one
comma-separated list and cannot parse values that contain commas (snakemake/snakemake#2366). Templates use Snakemake-style ``{wildcards}`` so the rules and the package share
one definition; the package fills them with ``str.format``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

NO_ARGS = "none"
ARG_JOINER = "+"
_FORBIDDEN = re.compile(r"[/,~+=\s{}]")

DATASET = "results/datasets/{task}/{task_args}/length~{length}/{model}/samples~{samples}+seed~{seed}/dataset.jsonl"
_RUN = (
    "{task}/{task_args}/length~{length}/{model}/samples~{samples}+seed~{seed}/"
    "{method}/{method_args}/max_tokens~{max_tokens}"
)
PREDICTIONS = "results/predictions/" + _RUN + "/predictions.jsonl"
SCORES = "results/scores/" + _RUN + "/scores.jsonl"
# Grouped prediction (engine.methods_per_job > 1, sparse_frontier/sweeps.py): one job ("sweep") runs
# several method settings of one dataset and output budget with one engine. SWEEP is the job's
# manifest (its only declared output); each run's rows accumulate in SWEEP_PREDICTIONS, keyed by the
# full run and not by the chunk, so a killed or re-chunked sweep resumes what any sweep finished.
SWEEP = (
    "results/sweeps/{task}/{task_args}/length~{length}/{model}/samples~{samples}+seed~{seed}/"
    "max_tokens~{max_tokens}/sweep~{sweep}.json"
)
SWEEP_PREDICTIONS = "results/sweeps/" + _RUN + "/predictions.jsonl"
SUMMARY = "results/scores/" + _RUN + "/summary.json"
CALIBRATION = "results/calibration/{model}.json"  # rule calibrate_attention
# one query head (and its kv head) of one layer on a dataset's prompt: the pattern figure on a real model
ATTENTION_HEAD = (
    "results/attention/{task}/{task_args}/length~{length}/{model}/samples~{samples}+seed~{seed}/"
    "layer~{layer}+head~{head}+sample~{sample}.pt"
)
SCORES_TABLE = "results/tables/scores.csv"
SAMPLE_SCORES_TABLE = "results/tables/sample_scores.csv"
TABLE = "results/tables/{table}.csv"
TABLE_MD = "results/tables/{table}.md"
FIGURE = "results/figures/{figure}.pdf"
FIGURE_PNG = "results/figures/{figure}.png"
FIGURE_DATA = "results/figures/{figure}.csv"
EMBEDDED_MODEL_DIR = "resources/models/{name}"

# Regular expressions for Snakemake's wildcard_constraints, so paths parse back unambiguously.
WILDCARD_PATTERNS = {
    "task": r"[a-z][a-z0-9_]*",
    "method": r"[a-z][a-z0-9_+]*",
    "task_args": r"[^/]+",
    "method_args": r"[^/]+",
    "length": r"\d+",
    "samples": r"\d+",
    "seed": r"\d+",
    "max_tokens": r"\d+",
    "layer": r"\d+",
    "head": r"\d+",
    "sample": r"\d+",
    "sweep": r"[0-9a-f]{10}",
    "model": r"[A-Za-z0-9][A-Za-z0-9._-]*",
    "figure": r"[a-z][a-z0-9_]*",
    "table": r"[a-z][a-z0-9_]*",
}


def format_value(value: Any) -> str:
    """Render one argument value canonically (the same value always gives the same text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr without the exponent's '+' (1e+20 -> 1e20, still a valid float literal)
        return str(int(value)) if value.is_integer() else repr(value).replace("e+", "e")
    if isinstance(value, str):
        if not value or _FORBIDDEN.search(value):
            raise ValueError(
                f"argument value {value!r} cannot be part of a path: it must be non-empty and "
                "contain none of '/', ',', '~', '+', '=', '{', '}' or whitespace"
            )
        return value
    raise TypeError(
        f"argument value {value!r} has type {type(value).__name__}; valid types are bool, int, float and str"
    )


def format_args(params: Mapping[str, Any]) -> str:
    """``{"b": 2, "a": 0.5}`` -> ``"a~0.5+b~2"``; empty -> ``"none"``."""
    if not params:
        return NO_ARGS
    parts = []
    for key in sorted(params):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ValueError(f"argument name {key!r} must be lower_snake_case")
        parts.append(f"{key}~{format_value(params[key])}")
    return ARG_JOINER.join(parts)


def parse_args(segment: str) -> dict[str, str]:
    """Inverse of :func:`format_args`, values left as strings."""
    if segment == NO_ARGS:
        return {}
    out = {}
    for part in segment.split(ARG_JOINER):
        key, sep, value = part.partition("~")
        if not sep:
            raise ValueError(f"path segment {segment!r}: {part!r} is not of the form key~value")
        out[key] = value
    return out


@dataclass(frozen=True)
class RunKey:
    """Everything that identifies one prediction job (and its dataset and scores).

    The one list of a run's fields and of its parts; everything else asks this class (a field is added
    here, in the templates above and in ``WILDCARD_PATTERNS``; tests/test_paths.py checks they agree):

    - ``FIELDS``: the whole run, in path order (the run table's key columns);
    - ``DATASET_FIELDS``: what the dataset depends on (task, arguments, length, model, samples,
      seed): not the method, nor the output budget (``max_tokens`` only bounds generation);
    - ``METHOD_FIELDS``: the method and its settings;
    - ``GROUP_FIELDS``: everything but the method: one dataset under one output budget. Runs sharing
      them are comparable (same prompts, same budget): one sweep's runs (``sparse_frontier.sweeps``),
      one cell of a figure (curves interpolated per cell), a sparse sample and its dense twin;
    - ``INT_FIELDS``: the integer fields (wildcards and CSV cells are text; :meth:`typed` converts).
    """

    task: str
    task_args: str
    length: int
    model: str
    samples: int
    seed: int
    method: str
    method_args: str
    max_tokens: int

    FIELDS: ClassVar[tuple[str, ...]]
    DATASET_FIELDS: ClassVar[tuple[str, ...]] = ("task", "task_args", "length", "model", "samples", "seed")
    METHOD_FIELDS: ClassVar[tuple[str, ...]] = ("method", "method_args")
    GROUP_FIELDS: ClassVar[tuple[str, ...]]
    INT_FIELDS: ClassVar[tuple[str, ...]]

    @classmethod
    def typed(cls, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """The run fields ``mapping`` has (wildcards, a table row; other keys dropped), the integer
        ones as ``int``, in ``FIELDS`` order."""
        if not isinstance(mapping, dict):  # Snakemake's Wildcards is a list: `in` would test its values
            mapping = dict(mapping)
        return {k: int(mapping[k]) if k in cls.INT_FIELDS else mapping[k] for k in cls.FIELDS if k in mapping}

    @classmethod
    def select(cls, mapping: Mapping[str, Any], names: tuple[str, ...]) -> tuple:
        """The typed values of ``names`` in ``mapping``: e.g. ``RunKey.select(w, RunKey.DATASET_FIELDS)``
        for the wildcards of a dataset path, equal to ``dataset_key()`` of each run of that dataset."""
        typed = cls.typed(mapping)
        return tuple(typed[k] for k in names)

    @classmethod
    def from_wildcards(cls, mapping: Mapping[str, Any]) -> RunKey:
        """The run of a path's wildcards (Snakemake's, :func:`parse_path`'s) or a table row; other
        keys (``sweep``, measurements) are ignored."""
        mapping = cls.typed(mapping)
        missing = [k for k in cls.FIELDS if k not in mapping]
        if missing:
            raise KeyError(f"a run needs {', '.join(cls.FIELDS)}; missing: {', '.join(missing)}")
        return cls(**mapping)

    def wildcards(self) -> dict[str, Any]:
        """All fields (``FIELDS`` order): the wildcards of every per-run template."""
        return {k: getattr(self, k) for k in self.FIELDS}

    def dataset_wildcards(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.DATASET_FIELDS}

    def group_wildcards(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.GROUP_FIELDS}

    def dataset_key(self) -> tuple:
        """What identifies this run's dataset (shared by every method and output budget on it)."""
        return tuple(getattr(self, k) for k in self.DATASET_FIELDS)

    def group_key(self) -> tuple:
        """What the runs comparable with this one share: everything but the method and its settings."""
        return tuple(getattr(self, k) for k in self.GROUP_FIELDS)

    @property
    def dataset(self) -> str:
        return DATASET.format(**self.dataset_wildcards())

    @property
    def predictions(self) -> str:
        return PREDICTIONS.format(**self.wildcards())

    @property
    def sweep_predictions(self) -> str:
        return SWEEP_PREDICTIONS.format(**self.wildcards())

    @property
    def scores(self) -> str:
        return SCORES.format(**self.wildcards())

    @property
    def summary(self) -> str:
        return SUMMARY.format(**self.wildcards())


RunKey.FIELDS = tuple(f.name for f in fields(RunKey))
RunKey.GROUP_FIELDS = tuple(k for k in RunKey.FIELDS if k not in RunKey.METHOD_FIELDS)
RunKey.INT_FIELDS = tuple(f.name for f in fields(RunKey) if f.type in (int, "int"))


def template_regex(template: str) -> re.Pattern:
    """The template as a regular expression with the wildcard constraints (as Snakemake matches it)."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        name = m.group(1)
        out += re.escape(template[pos : m.start()]) + f"(?P<{name}>{WILDCARD_PATTERNS[name]})"
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + "$")


def parse_path(template: str, path: str) -> dict[str, str]:
    """Wildcards of ``path`` under ``template``; a clear error if it does not follow the grammar."""
    match = template_regex(template).match(path)
    if not match:
        raise ValueError(f"{path!r} does not follow the path grammar {template!r}")
    return match.groupdict()


def log_path(template: str) -> str:
    """Log file of the job writing ``template`` (same wildcards): ``logs/<path>.log``."""
    stem = re.sub(r"\.[a-z]+$", "", template)
    return "logs/" + stem.removeprefix("results/") + ".log"


def benchmark_path(template: str) -> str:
    """Snakemake benchmark TSV of the job writing ``template``."""
    stem = re.sub(r"\.[a-z]+$", "", template)
    return "benchmarks/runs/" + stem.removeprefix("results/") + ".tsv"


def provenance_path(output: str) -> str:
    """Sidecar holding config, versions, commit and hardware of an output file."""
    return re.sub(r"\.[a-z]+$", ".provenance.json", output)


def missing_runs_record(output: str) -> str:
    """Sidecar of a table or figure drawn with ``figures.allow_missing`` while runs were missing: it
    lists them, and a complete run takes it as an input, so that the output is drawn again
    (:mod:`sparse_frontier.analysis.partial`)."""
    return re.sub(r"\.[a-z]+$", ".missing_runs.json", output)
