import dataclasses
import re

import pytest

from sparse_frontier import paths


def test_args_are_canonical_and_round_trip():
    args = {"page_size": 16, "budget": 0.05, "share_pages": True, "mode": "max"}
    segment = paths.format_args(args)
    assert segment == "budget~0.05+mode~max+page_size~16+share_pages~true"
    assert paths.parse_args(segment) == {"budget": "0.05", "mode": "max", "page_size": "16", "share_pages": "true"}
    assert paths.format_args({}) == paths.NO_ARGS and paths.parse_args(paths.NO_ARGS) == {}
    # The same value always gives the same text (an int-valued float is written as an int).
    assert paths.format_args({"x": 2.0}) == paths.format_args({"x": 2}) == "x~2"
    assert (
        paths.format_args({"x": 1.5e-20}) == "x~1.5e-20"
        and paths.format_args({"x": 1.25e20}) == "x~125000000000000000000"
    )


def test_no_commas_in_any_path():
    """Snakemake cannot pass wildcard values with commas to remote (SLURM) jobs (snakemake#2366)."""
    key = paths.RunKey(
        task="t",
        task_args=paths.format_args({"a": 1, "b": 0.5}),
        length=1024,
        model="m",
        samples=4,
        seed=43,
        method="quest",
        method_args=paths.format_args({"x": 1, "y": True}),
        max_tokens=8,
    )
    for path in (key.dataset, key.predictions, key.scores, key.summary):
        assert "," not in path


@pytest.mark.parametrize("bad", ["a/b", "a,b", "a~b", "a+b", "a=b", "", "a b"])
def test_bad_string_values_are_rejected_with_reason(bad):
    with pytest.raises(ValueError, match="cannot be part of a path"):
        paths.format_args({"name": bad})


def test_bad_types_and_names_are_rejected():
    with pytest.raises(TypeError, match="valid types"):
        paths.format_args({"x": [1, 2]})
    with pytest.raises(ValueError, match="lower_snake_case"):
        paths.format_args({"BadName": 1})


def test_every_result_path_names_everything_that_changes_it_and_parses_back():
    key = paths.RunKey(
        task="ruler_niah",
        task_args="num_queries~4",
        length=16384,
        model="qwen2.5-7b",
        samples=100,
        seed=43,
        method="quest",
        method_args="budget~0.05+page_size~16",
        max_tokens=1024,
    )
    for template, path in [
        (paths.PREDICTIONS, key.predictions),
        (paths.SCORES, key.scores),
        (paths.SUMMARY, key.summary),
    ]:
        for value in key.wildcards().values():
            assert str(value) in path
        match = paths.template_regex(template).match(path)
        assert match, path
        assert {k: str(v) for k, v in key.wildcards().items()} == match.groupdict()
    dataset = paths.parse_path(paths.DATASET, key.dataset)
    assert dataset["length"] == "16384" and dataset["model"] == "qwen2.5-7b"


def test_logs_and_benchmarks_mirror_outputs():
    assert paths.log_path(paths.DATASET).startswith("logs/datasets/{task}/")
    assert paths.log_path(paths.DATASET).endswith("/dataset.log")
    assert paths.benchmark_path(paths.PREDICTIONS).endswith("/predictions.tsv")
    assert paths.provenance_path("a/b/predictions.jsonl") == "a/b/predictions.provenance.json"


def test_parse_path_rejects_paths_outside_the_grammar():
    with pytest.raises(ValueError, match="does not follow the path grammar"):
        paths.parse_path(paths.PREDICTIONS, "results/predictions/whatever.jsonl")


def _template_fields(template: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\{(\w+)\}", template))


def test_the_run_fields_are_listed_once_and_the_templates_agree():
    """Adding a field to RunKey is one place plus the templates that name it: every list of run
    fields (datasets, sweeps, the run table, figure cells, dense pairs) is RunKey's."""
    key = paths.RunKey
    assert key.FIELDS == tuple(f.name for f in dataclasses.fields(key))
    for part in (key.DATASET_FIELDS, key.METHOD_FIELDS, key.GROUP_FIELDS, key.INT_FIELDS):
        assert set(part) <= set(key.FIELDS) and list(part) == [f for f in key.FIELDS if f in part]  # FIELDS order
    assert key.GROUP_FIELDS == tuple(f for f in key.FIELDS if f not in key.METHOD_FIELDS)
    assert set(key.DATASET_FIELDS) < set(key.GROUP_FIELDS)  # the group adds the output budget
    assert key.INT_FIELDS == tuple(f for f in key.FIELDS if paths.WILDCARD_PATTERNS[f] == r"\d+")
    for template in (paths.PREDICTIONS, paths.SCORES, paths.SUMMARY, paths.SWEEP_PREDICTIONS):
        assert _template_fields(template) == key.FIELDS, template
    assert _template_fields(paths.DATASET) == key.DATASET_FIELDS
    assert _template_fields(paths.SWEEP) == key.GROUP_FIELDS + ("sweep",)
    assert _template_fields(paths.ATTENTION_HEAD) == key.DATASET_FIELDS + ("layer", "head", "sample")
    assert set(key.FIELDS) <= set(paths.WILDCARD_PATTERNS)


def test_the_users_of_run_fields_ask_runkey():
    from sparse_frontier.analysis import aggregate, stats
    from sparse_frontier.analysis.figures import common

    assert aggregate.KEY_COLUMNS == list(paths.RunKey.FIELDS)
    assert common.CELL_KEYS == list(paths.RunKey.GROUP_FIELDS)
    assert stats.PAIR_KEYS == [*paths.RunKey.GROUP_FIELDS, "id"]


def _snakemake_wildcards(mapping):
    """Snakemake's own Wildcards (a list with names: ``in`` tests its values, not its names)."""
    pytest.importorskip("snakemake")
    try:
        from snakemake.iocontainers import Wildcards  # where Snakemake 9.27 keeps it
    except ImportError:
        from snakemake.io import Wildcards
    return Wildcards(fromdict=dict(mapping))


def test_from_wildcards_round_trips_through_every_template():
    key = paths.RunKey(
        task="ruler_niah",
        task_args="num_queries~4",
        length=16384,
        model="qwen2.5-7b",
        samples=100,
        seed=43,
        method="quest",
        method_args="budget~0.05+page_size~16",
        max_tokens=1024,
    )
    assert paths.RunKey.from_wildcards(key.wildcards()) == key
    for path, template in [
        (key.predictions, paths.PREDICTIONS),
        (key.summary, paths.SUMMARY),
        (key.sweep_predictions, paths.SWEEP_PREDICTIONS),
    ]:
        text = paths.parse_path(template, path)  # strings, as Snakemake hands them
        assert paths.RunKey.from_wildcards(text) == key
        assert paths.RunKey.from_wildcards(_snakemake_wildcards(text)) == key
        assert paths.RunKey.from_wildcards(dict(text, sweep="0123456789", score=1.0)) == key  # extras ignored
    dataset = paths.parse_path(paths.DATASET, key.dataset)
    assert paths.RunKey.select(dataset, paths.RunKey.DATASET_FIELDS) == key.dataset_key()
    assert paths.RunKey.select(_snakemake_wildcards(dataset), paths.RunKey.DATASET_FIELDS) == key.dataset_key()
    assert key.dataset == paths.DATASET.format(**key.dataset_wildcards())
    sweep = paths.parse_path(paths.SWEEP, paths.SWEEP.format(**key.group_wildcards(), sweep="0123456789"))
    assert paths.RunKey.select(sweep, paths.RunKey.GROUP_FIELDS) == key.group_key()
    assert paths.RunKey.typed(dataset) == key.dataset_wildcards()
    with pytest.raises(KeyError, match="missing: method, method_args, max_tokens"):
        paths.RunKey.from_wildcards(dataset)
