import copy
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sparse_frontier.config import RunIndex, expand_runs, model_location

REPO = Path(__file__).resolve().parent.parent
SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def load(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    validate(config, SCHEMA)  # fills defaults, as the Snakefile does
    return config


@pytest.fixture
def demo():
    return load("demo.yaml")


def test_shipped_configs_validate_and_expand():
    paper, demo_config = load("config.yaml"), load("demo.yaml")
    # the paper's main experiments are disjoint (exclusions are separate experiments): no run is shared
    main = {n: e for n, e in paper["experiments"].items() if not n.startswith("ablation_")}
    grid = sum(
        len(e["models"]) * len(e["tasks"]) * len(e["methods"]) * len(e["lengths"]) * len(e["seeds"])
        for e in main.values()
    )
    assert len(expand_runs(dict(paper, experiments=main))) == grid == 14499
    # the ablations (tests/test_config_ablations.py) add 20 settings x 9 tasks; their dense and
    # default-value runs are the main grid's own files
    paper_runs = expand_runs(paper)
    assert len(paper_runs) == 14499 + 180 == 14679
    assert sum(1 for r in paper_runs if all(e.startswith("ablation_") for e in r.experiments)) == 180
    runs = expand_runs(demo_config)
    assert {r.key.length for r in runs} == {1024, 2048}
    assert all(r.gpus == 0 for r in runs)  # CPU demo asks for no GPU
    assert {r.gpus for r in paper_runs} == {1, 2, 4}  # tensor-parallel sizes


def test_defaults_are_filled(demo):
    assert demo["engine"]["cuda_graphs"] == "piecewise"
    assert demo["models"]["smollm2-135m"]["tensor_parallel_size"] == 1


def test_unknown_keys_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["engine"]["dtpye"] = "float32"
    with pytest.raises(WorkflowError, match="dtpye"):
        validate(bad, SCHEMA)
    bad = copy.deepcopy(demo)
    bad["experiments"]["demo"]["lenghts"] = [1024]
    with pytest.raises(WorkflowError, match="lenghts"):
        validate(bad, SCHEMA)


def test_bad_values_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["engine"]["device"] = "tpu"
    with pytest.raises(WorkflowError, match="tpu"):
        validate(bad, SCHEMA)


def _walk(node, where="config"):
    if isinstance(node, dict):
        if "type" in node or "$ref" in node or "properties" in node:
            yield where, node
        for key, child in node.get("properties", {}).items():
            yield from _walk(child, f"{where}.{key}")
        for name in ("additionalProperties", "items"):
            if isinstance(node.get(name), dict):
                yield from _walk(node[name], f"{where}[{name}]")
        for key, child in node.get("$defs", {}).items():
            yield from _walk(child, f"$defs.{key}")


def test_every_schema_key_has_a_description_and_objects_are_closed():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    nodes = list(_walk(schema))
    assert len(nodes) > 30
    for where, node in nodes:
        assert "$ref" in node or node.get("description"), f"{where} has no description"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"


def test_unknown_names_in_experiments_name_the_valid_ones(demo):
    bad = copy.deepcopy(demo)
    bad["experiments"]["demo"]["methods"] = ["quest"]
    with pytest.raises(ValueError, match=r"unknown method 'quest'.*defines: dense"):
        expand_runs(bad)


def test_unknown_task_and_method_parameters_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["tasks"]["niah"]["params"] = {"num_querys": 4}
    with pytest.raises(ValueError, match=r"num_querys.*valid parameters: answer_prefill, num_queries, code_parts, code_part_length"):
        expand_runs(bad)
    bad["tasks"]["niah"]["params"] = {"num_queries": 0}
    with pytest.raises(ValueError, match=r"num_queries=0 is invalid; it must be an integer in \[1, 64\]"):
        expand_runs(bad)
    bad = copy.deepcopy(demo)
    bad["methods"]["dense"]["method"] = "sparse_magic"
    with pytest.raises(ValueError, match="unknown attention method 'sparse_magic'; available: .*dense"):
        expand_runs(bad)


def test_lengths_beyond_the_model_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["experiments"]["demo"]["lengths"] = [8192]
    with pytest.raises(ValueError, match="exceeds model 'smollm2-135m'.*up to 8128"):
        expand_runs(bad)


def test_runs_shared_by_experiments_appear_once_and_are_found_by_wildcards(demo):
    config = copy.deepcopy(demo)
    alone = len(expand_runs(config))
    config["experiments"]["again"] = copy.deepcopy(config["experiments"]["demo"])
    runs = expand_runs(config)
    assert len(runs) == alone
    shared = [r for r in runs if "demo" in r.experiments]
    assert shared and all(r.experiments == ("demo", "again") for r in shared)
    index = RunIndex(runs)
    wildcards = {k: str(v) for k, v in runs[0].key.wildcards().items()}
    assert index.run(wildcards) is runs[0]
    assert index.dataset_run(wildcards).key.dataset == runs[0].key.dataset
    with pytest.raises(ValueError, match="no experiment"):
        index.run(dict(wildcards, length="999"))


def test_model_location():
    assert model_location({"source": "embedded:smollm2-135m-instruct"}) == "resources/models/smollm2-135m-instruct"
    assert model_location({"source": "Qwen/Qwen2.5-7B-Instruct"}) == "Qwen/Qwen2.5-7B-Instruct"
