import copy
from pathlib import Path

import pytest
import yaml

from sparse_frontier.config import ConfigError, RunIndex, expand_runs, model_location, validate_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")


def load(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    validate_config(config)  # fills defaults, as rules/common.smk does
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
    # the ablations (tests/test_config_ablations.py) add 100 settings x 9 tasks (each knob's values at
    # five sparsities); their dense and default-value runs are the main grid's own files
    paper_runs = expand_runs(paper)
    assert len(paper_runs) == 14499 + 900 == 15399
    assert sum(1 for r in paper_runs if all(e.startswith("ablation_") for e in r.experiments)) == 900
    runs = expand_runs(demo_config)
    assert {r.key.length for r in runs} == {1024} and len(runs) == 2 * 14
    # the demo runs dense, every sparse method at three levels and a prefill + decode combination
    methods = {r.key.method for r in runs}
    assert methods == {
        "dense",
        "vertical_slash",
        "flexprefill",
        "block_sparse",
        "quest",
        "snapkv",
        "ada_snapkv",
        "vertical_slash+quest",
    }
    assert all(r.gpus == 0 for r in runs)  # CPU demo asks for no GPU
    assert {r.gpus for r in paper_runs} == {1, 2, 4}  # tensor-parallel sizes


def test_defaults_are_filled(demo):
    assert demo["engine"]["cuda_graphs"] == "piecewise"
    assert demo["models"]["smollm2-135m"]["tensor_parallel_size"] == 1


def test_unknown_keys_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["engine"]["dtpye"] = "float32"
    with pytest.raises(
        ConfigError,
        match=r"engine: unknown key 'dtpye' \(did you mean 'dtype'\?\)\n  allowed keys there: device, dtype",
    ):
        validate_config(bad)
    bad = copy.deepcopy(demo)
    bad["experiments"]["demo"]["lenghts"] = [1024]
    with pytest.raises(ConfigError, match=r"experiments.demo: unknown key 'lenghts' \(did you mean 'lengths'\?\)"):
        validate_config(bad)


def test_bad_values_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["engine"]["device"] = "tpu"
    with pytest.raises(ConfigError, match=r"engine.device: 'tpu' is not allowed\n  allowed values: cpu, cuda"):
        validate_config(bad)


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
    bad["experiments"]["demo"]["methods"] = ["quest_90"]
    with pytest.raises(ValueError, match=r"unknown method 'quest_90'.*defines: ada_snapkv, block_sparse, dense"):
        expand_runs(bad)


def test_unknown_task_and_method_parameters_are_rejected(demo):
    bad = copy.deepcopy(demo)
    bad["tasks"]["niah"]["params"] = {"num_querys": 4}
    with pytest.raises(
        ValueError, match=r"num_querys.*valid parameters: answer_prefill, num_queries, code_parts, code_part_length"
    ):
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
    with pytest.raises(ValueError, match="exceeds model 'smollm2-135m'.*up to 8144"):
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


def _methods_config(demo, methods, task_defaults=None):
    config = copy.deepcopy(demo)
    config["methods"] = methods
    config["tasks"]["vt"] = {"task": "ruler_vt", "params": {"num_chains": 2, "num_hops": 2, "answer_prefill": True}}
    config["experiments"]["demo"].update(methods=list(methods), tasks=["niah", "vt"], lengths=[1024])
    if task_defaults is not None:
        config["tasks"]["niah"]["method_defaults"] = task_defaults
    return config


def test_list_valued_method_parameters_expand_into_one_setting_per_value(demo):
    config = _methods_config(
        demo,
        {
            "dense": {"method": "dense"},
            "quest": {"method": "quest", "params": {"page_size": [16, 32], "sparsity": [0.5, 0.9]}},
            "snap": {"method": "snapkv", "params": {"sparsity": [0.8], "kernel_size": 7}},
        },
    )
    validate_config(config)
    runs = [r for r in expand_runs(config) if r.key.task == "ruler_niah"]
    quest = [(r.method_params["page_size"], r.method_params["sparsity"]) for r in runs if r.key.method == "quest"]
    assert quest == [(16, 0.5), (16, 0.9), (32, 0.5), (32, 0.9)]  # the product, in the order given
    assert len({r.key.method_args for r in runs}) == len(runs) == 6  # each its own path segment
    assert "page_size~32+" in next(r.key.method_args for r in runs if r.method_params.get("page_size") == 32)
    snap = [r for r in runs if r.key.method == "snapkv"]
    assert len(snap) == 1 and snap[0].method_params["kernel_size"] == 7 and snap[0].method_params["sparsity"] == 0.8
    # a list of one value is the same run as the scalar (the main grid's files are shared)
    scalar = _methods_config(demo, {"snap": {"method": "snapkv", "params": {"sparsity": 0.8, "kernel_size": 7}}})
    assert {r.key for r in expand_runs(scalar) if r.key.task == "ruler_niah"} == {snap[0].key}


def test_bad_parameter_lists_are_rejected_with_the_entry_and_parameter(demo):
    empty = _methods_config(demo, {"q": {"method": "quest", "params": {"sparsity": []}}})
    with pytest.raises(ValueError, match=r"methods entry 'q': parameter 'sparsity' is an empty list"):
        expand_runs(empty)
    with pytest.raises(ConfigError, match="sparsity"):
        validate_config(empty)
    twice = _methods_config(demo, {"q": {"method": "quest", "params": {"sparsity": [0.5, 0.5]}}})
    with pytest.raises(ValueError, match=r"methods entry 'q': parameter 'sparsity' lists 0.5 more than once"):
        expand_runs(twice)
    nested = _methods_config(demo, {"q": {"method": "quest", "params": {"sparsity": [[0.5]]}}})
    with pytest.raises(ValueError, match=r"methods entry 'q': parameter 'sparsity' lists \[0.5\]; each value"):
        expand_runs(nested)
    bad_value = _methods_config(demo, {"q": {"method": "quest", "params": {"sparsity": [0.5, 1.5]}}})
    with pytest.raises(ValueError, match=r"methods entry 'q': .*sparsity=1.5 is invalid"):
        expand_runs(bad_value)
    # task parameters and method_defaults cannot take several values
    task_list = copy.deepcopy(demo)
    task_list["tasks"]["niah"]["params"]["num_queries"] = [1, 2]
    with pytest.raises(
        ValueError, match=r"tasks entry 'niah': parameter 'num_queries' is a list .*cannot take several"
    ):
        expand_runs(task_list)
    with pytest.raises(ConfigError):
        validate_config(task_list)
    defaults_list = _methods_config(
        demo, {"dense": {"method": "dense"}}, {"vertical_slash": {"approximation_size": [256, 512]}}
    )
    with pytest.raises(
        ValueError,
        match=r"tasks entry 'niah': method_defaults.vertical_slash: parameter 'approximation_size' is a list",
    ):
        expand_runs(defaults_list)


def test_task_method_defaults_fill_only_what_the_method_entry_leaves_unset(demo):
    methods = {
        "dense": {"method": "dense"},
        "vs": {"method": "vertical_slash", "params": {"sparsity": 0.9}},
        "vs_window": {"method": "vertical_slash", "params": {"sparsity": 0.9, "approximation_size": [128, 256]}},
        "vs_quest": {"method": "vertical_slash+quest", "params": {"prefill_sparsity": 0.9, "decode_sparsity": 0.9}},
        "quest": {"method": "quest", "params": {"sparsity": 0.9}},
    }
    config = _methods_config(demo, methods, {"vertical_slash": {"approximation_size": 512}, "quest": {"page_size": 32}})
    validate_config(config)
    runs = expand_runs(config)

    def values(task, method, name):
        return sorted(r.method_params[name] for r in runs if r.key.task == task and r.key.method == method)

    assert values("ruler_niah", "vertical_slash", "approximation_size") == [128, 256, 512]  # explicit values win
    assert values("ruler_vt", "vertical_slash", "approximation_size") == [128, 256]  # no defaults: vs is vs_window 256
    assert values("ruler_niah", "vertical_slash+quest", "approximation_size") == [512]  # the component named
    assert values("ruler_niah", "vertical_slash+quest", "page_size") == [32]
    assert values("ruler_niah", "quest", "page_size") == [32] and values("ruler_vt", "quest", "page_size") == [16]
    niah_vs = next(r for r in runs if r.key.task == "ruler_niah" and r.key.method == "vertical_slash+quest")
    assert "approximation_size~512" in niah_vs.key.method_args
    # a default aimed at the whole combination uses the combination's own (prefixed) names
    config["tasks"]["niah"]["method_defaults"] = {"vertical_slash+quest": {"decode_sparsity": 0.8}}
    runs = expand_runs(config)
    assert values("ruler_niah", "vertical_slash+quest", "decode_sparsity") == [0.9]  # set by the entry: kept
    config["methods"]["vs_quest"]["params"] = {"prefill_sparsity": 0.9}
    runs = expand_runs(config)
    assert values("ruler_niah", "vertical_slash+quest", "decode_sparsity") == [0.8]


def test_bad_task_method_defaults_name_the_task_entry_and_the_valid_choices(demo):
    config = _methods_config(demo, {"dense": {"method": "dense"}}, {"vertical_slahs": {"approximation_size": 512}})
    validate_config(config)
    with pytest.raises(
        ValueError,
        match=r"tasks entry 'niah': method_defaults names unknown method 'vertical_slahs'; "
        r"valid: .*quest.*vertical_slash",
    ):
        expand_runs(config)
    config["tasks"]["niah"]["method_defaults"] = {"vertical_slash": {"approximation_sise": 512}}
    with pytest.raises(
        ValueError,
        match=r"tasks entry 'niah': method_defaults.vertical_slash: .*unknown parameter\(s\) "
        r"approximation_sise; valid parameters: .*approximation_size",
    ):
        expand_runs(config)
    config["tasks"]["niah"]["method_defaults"] = {"vertical_slash": {"approximation_size": 0}}
    with pytest.raises(
        ValueError, match=r"tasks entry 'niah': method_defaults.vertical_slash: .*approximation_size=0 is invalid"
    ):
        expand_runs(config)
    config["tasks"]["niah"]["method_defaults"] = {"vertical_slash": {"approximation_size": 512}, "oops": 3}
    with pytest.raises(ConfigError):
        validate_config(config)
