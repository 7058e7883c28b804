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
    assert paths.format_args({"x": 1.5e-20}) == "x~1.5e-20" and paths.format_args({"x": 1.25e20}) == "x~125000000000000000000"


def test_no_commas_in_any_path():
    """Snakemake cannot pass wildcard values with commas to remote (SLURM) jobs (snakemake#2366)."""
    key = paths.RunKey(task="t", task_args=paths.format_args({"a": 1, "b": 0.5}), length=1024, model="m",
                       samples=4, seed=43, method="quest", method_args=paths.format_args({"x": 1, "y": True}),
                       max_tokens=8)
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
        task="ruler_niah", task_args="num_queries~4", length=16384, model="qwen2.5-7b",
        samples=100, seed=43, method="quest", method_args="budget~0.05+page_size~16", max_tokens=1024,
    )
    for template, path in [(paths.PREDICTIONS, key.predictions), (paths.SCORES, key.scores), (paths.SUMMARY, key.summary)]:
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
