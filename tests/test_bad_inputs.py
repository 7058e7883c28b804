"""What a user sees for the config and environment mistakes they actually make (issue #15, items 5, 7,
8): each message names the file and line or the entry, the bad value and what is valid, in a few lines."""

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparse_frontier import cli, paths
from sparse_frontier.config import ConfigError, RunIndex, expand_runs, load_config, read_config_file, validate_config

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CONFIG = """\
name: tiny
engine: {{device: cpu, dtype: float32}}
models:
  {model}:
    source: {source}
tasks:
  niah:
    task: ruler_niah
    params: {{num_queries: 2, code_parts: 2}}
methods:
  dense:
    method: dense
  quest_50:
    method: quest
    params: {{sparsity: {sparsity}}}
experiments:
  tiny:
    models: [{model}]
    tasks: [niah]
    methods: [dense, quest_50]
    lengths: [512]
    samples: 2
    seeds: [43]
    max_output_tokens: 8
"""


@pytest.fixture
def write(tmp_path):
    """Writes a tiny config (CONFIG with edits, or given text) and returns its path."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 4096}))

    def write(text=None, name="tiny.yaml", model_name="tiny-llama", sparsity="0.5", **replace):
        text = text or CONFIG.format(model=model_name, source=model, sparsity=sparsity)
        for old, new in replace.items():
            assert old in text
            text = text.replace(old, new)
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def short(message: str) -> str:
    assert len(message.splitlines()) < 15, message
    return message


def check_config_cli(path, capsys) -> str:
    """``sparse-frontier check-config PATH``: exit status 2 and the message on stderr, no traceback."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check-config", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return short(err)


# -- item 7: the config file itself ---------------------------------------------------------------


def test_a_tab_in_the_config_names_file_line_and_column(write, capsys):
    path = write(**{"    method: dense": "\tmethod: dense"})
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    message = short(str(err.value))
    assert message.startswith(f"{path}:12:1: not valid YAML") and "tab: indent with spaces" in message
    assert "\\tmethod: dense" in message  # the line itself, the tab made visible
    assert f"{path}:12:1:" in check_config_cli(path, capsys)


def test_a_key_written_twice_is_refused_with_both_lines(write, capsys):
    # the user copies the dense entry to make a Quest one and forgets to rename it
    path = write(**{"  quest_50:\n": "  dense:\n"})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = short(str(err.value))
    assert message.startswith(f"{path}:13:3: key 'dense' is given twice in one mapping (first at line 11)")
    assert "dense" in check_config_cli(path, capsys)
    # a key twice in a JSON config too
    json_path = write(text='{"name": "a", "name": "b"}', name="tiny.json")
    with pytest.raises(ConfigError, match=rf"{json_path}: key 'name' is given twice"):
        read_config_file(json_path)


def test_yaml_merge_keys_may_still_override(write):
    path = write(text="base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n", name="merge.yaml")
    assert read_config_file(path)["other"] == {"x": 3, "y": 2}


def test_unknown_top_level_key_suggests_the_right_one_in_a_few_lines(write, capsys):
    path = write(**{"\nmethods:": "\nmethod:"})
    message = check_config_cli(path, capsys)
    assert f"{path}:10: (top level): unknown key 'method' (did you mean 'methods'?)" in message
    assert "allowed keys there: name, engine, models, tasks, methods, experiments" in message
    assert "'methods' is a required property" in message


def test_typos_inside_a_methods_entry_name_the_entry_and_the_valid_names(write):
    path = write(**{"    params: {sparsity": "    parmas: {sparsity"})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert short(str(err.value)) == (
        f"invalid config: {path}:15: methods.quest_50: unknown key 'parmas' (did you mean 'params'?)\n"
        "  allowed keys there: method, params"
    )
    path = write(**{"{sparsity:": "{sparsty:"})
    with pytest.raises(ValueError) as err:
        expand_runs(load_config(path))
    message = short(str(err.value))
    assert message.startswith(
        "methods entry 'quest_50': attention method 'quest': unknown parameter(s) sparsty; "
        "valid parameters: sparsity, token_budget"
    )
    assert message.endswith("did you mean sparsity?")
    path = write(**{"device: cpu": "device: tpu"})
    with pytest.raises(
        ConfigError, match=rf"{path}:2: engine.device: 'tpu' is not allowed\n  allowed values: cpu, cuda$"
    ):
        load_config(path)


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml"])
def test_defaults_are_filled_exactly_as_snakemake_validate_fills_them(name):
    from snakemake.utils import validate

    raw = yaml.safe_load((REPO / "config" / name).read_text())
    theirs, ours = copy.deepcopy(raw), copy.deepcopy(raw)
    validate(theirs, str(REPO / "workflow/schemas/config.schema.yaml"))
    assert validate_config(ours) == theirs != raw


def test_snakemake_reports_config_errors_in_a_few_lines(write, tmp_path):
    def dry_run(*args, cwd=tmp_path):
        cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", *args]
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0
        return short(result.stdout + result.stderr)

    twice = dry_run("--configfile", str(write(**{"  quest_50:\n": "  dense:\n"})))
    assert "key 'dense' is given twice in one mapping (first at line 11)" in twice and "tiny.yaml:13:3" in twice
    typo = dry_run("--configfile", str(write(**{"\nmethods:": "\nmethod:"})))
    assert "tiny.yaml:10: (top level): unknown key 'method' (did you mean 'methods'?)" in typo
    assert "additionalProperties" not in typo  # not the schema
    # the default config (no --configfile): read by us before Snakemake's reader, which names no line
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("name: x\nmodels:\n\ta: 1\n")
    assert "config/config.yaml:3:1: not valid YAML" in dry_run()


# -- item 5: parameter types ----------------------------------------------------------------------


def test_a_number_given_as_a_string_names_entry_method_parameter_and_type(write, capsys):
    path = write(sparsity='"0.5"')
    with pytest.raises(ValueError) as err:
        expand_runs(load_config(path))
    assert str(err.value) == (
        "methods entry 'quest_50': attention method 'quest': parameter sparsity='0.5' is a "
        "string; it must be a number (float), e.g. sparsity: 0.5"
    )
    assert f"{path}: methods entry 'quest_50'" in check_config_cli(path, capsys)
    path = write(**{"num_queries: 2": 'num_queries: "2"'})
    with pytest.raises(
        ValueError,
        match=r"^tasks entry 'niah': task 'ruler_niah': parameter num_queries='2' is a "
        r"string; it must be a whole number \(int\), e.g. num_queries: 2$",
    ):
        expand_runs(load_config(path))


def _registered():
    from sparse_frontier.attention import METHODS, get_method_class
    from sparse_frontier.tasks import TASKS

    classes = [METHODS.get(n) for n in METHODS.names()] + [TASKS.get(n) for n in TASKS.names()]
    return classes + [get_method_class("vertical_slash+quest")]


WRONG = {int: "8", float: "0.5", bool: "true", str: 5}


@pytest.mark.parametrize("cls", _registered(), ids=lambda c: c.name)
def test_every_parameter_of_every_method_and_task_is_type_checked(cls):
    import typing

    hints = typing.get_type_hints(cls)
    checked = [f for f in dataclasses.fields(cls) if f.init and hints[f.name] in WRONG]
    assert checked or not dataclasses.fields(cls)
    for f in checked:
        kind = hints[f.name]
        start = re.escape(f"{cls.kind} '{cls.name}': parameter {f.name}={WRONG[kind]!r} is a ")
        with pytest.raises(ValueError, match=rf"^{start}(string|whole number); it must be .*\({kind.__name__}\)"):
            cls.from_params({f.name: WRONG[kind]})


def test_an_int_is_a_float_but_a_bool_is_no_number():
    from sparse_frontier.attention import get_method_class

    quest = get_method_class("quest")
    assert quest.from_params({"sparsity": 0}).sparsity == 0
    with pytest.raises(ValueError, match=r"token_budget=True is a boolean; it must be a whole number \(int\)"):
        quest.from_params({"token_budget": True})
    with pytest.raises(ValueError, match=r"token_budget=512.5 is a number with a fraction; .*, e.g. token_budget: 0$"):
        quest.from_params({"token_budget": 512.5})
    with pytest.raises(ValueError, match=r"share_pages=1 is a whole number; it must be true or false \(bool\)"):
        quest.from_params({"share_pages": 1})


# -- item 8: names, the environment, model folders, run lookup -----------------------------------


@pytest.mark.parametrize("name", ["../x", "Qwen/Qwen2.5-7B", "my model", ".hidden"])
def test_a_model_name_that_is_no_folder_name_is_refused(write, name, capsys):
    path = write(model_name=f'"{name}"')
    with pytest.raises(ConfigError) as err:
        expand_runs(load_config(path))
    assert short(str(err.value)) == (
        f"models entry {name!r}: a model's name is a folder of its result paths, so it may hold only letters, "
        f"digits, '.', '_' and '-', starting with a letter or digit (pattern {paths.WILDCARD_PATTERNS['model']}); "
        "the checkpoint's location goes in its source"
    )
    assert f"{path}: models entry" in check_config_cli(path, capsys)


def test_garbage_in_the_attention_variable_names_the_variable(monkeypatch):
    from sparse_frontier import vllm_plugin

    monkeypatch.setenv("SPARSE_FRONTIER_ATTENTION", "garbage")
    with pytest.raises(ValueError) as err:
        vllm_plugin.requested_method()
    assert str(err.value).startswith("environment variable SPARSE_FRONTIER_ATTENTION='garbage' is not valid JSON")
    assert 'a JSON object with a \'method\' key, e.g. {"method": "quest"' in str(err.value)


def test_a_model_folder_without_tokenizer_names_the_folder_and_the_files(tmp_path):
    from sparse_frontier.models import load_tokenizer

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_text("")
    with pytest.raises(FileNotFoundError) as err:
        load_tokenizer(str(tmp_path))
    message = short(str(err.value))
    assert message.startswith(f"model folder {tmp_path} has no tokenizer: it needs tokenizer.json")
    assert "it holds config.json, model.safetensors" in message
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has vocab.json but not merges.txt"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"model folder {tmp_path}/nowhere does not exist"):
        load_tokenizer(str(tmp_path / "nowhere"))


def test_a_run_not_in_the_config_lists_the_nearest_it_knows(write, capsys):
    path = write()
    index = RunIndex(expand_runs(load_config(path)))
    known = next(r for r in index.runs if r.key.method == "quest").key.predictions
    asked = known.replace("sparsity~0.5", "sparsity~0.6").replace("length~512", "length~1024")
    with pytest.raises(SystemExit):
        cli.main(["predict", "--config", str(path), asked])
    message = short(capsys.readouterr().err)
    assert message.startswith(
        f"sparse-frontier predict: no experiment in the config asks for the run {asked}; the nearest it asks for:\n"
    )
    nearest = message.splitlines()[1:3]
    assert nearest == [f"  {known}", "    (length 512, not 1024; method_args sparsity~0.5, not sparsity~0.6)"]
    dataset = paths.parse_path(paths.PREDICTIONS, asked)
    with pytest.raises(
        ConfigError, match=r"asks for the dataset .*length~1024.*\n  .*length~512.*\n    \(length 512, not 1024\)"
    ):
        index.dataset_run(dataset)
