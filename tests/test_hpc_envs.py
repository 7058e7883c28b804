"""The conda environments for HPC users are pinned and agree with requirements/cpu.txt where they share a package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent
ENVS = sorted((REPO / "envs").glob("*.yaml"))
#: packages whose version vLLM's CUDA build decides (its own pins), so vllm-cuda.yaml leaves them out
FROM_VLLM = {"numpy", "transformers", "torch", "triton", "tokenizers", "huggingface-hub"}


def _name(spec: str) -> str:
    return re.split(r"[=<>!~\[ ;]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements/cpu.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.split("+")[0]  # torch 2.13.0+cpu = torch 2.13.0
    return pins


def _pip_entries(path: Path) -> list[str]:
    env = yaml.safe_load(path.read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, f"{path.name}: expected one pip section"
    return [e for e in pip[0] if not e.startswith(("--", "-e "))]


def test_there_are_environments_for_the_light_rules_and_prediction():
    assert {p.name for p in ENVS} >= {"pipeline.yaml", "vllm-cuda.yaml"}
    rules = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', rules):
        assert (REPO / env).exists(), env


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_every_pip_entry_is_pinned_and_agrees_with_the_lock(path):
    lock = _lock()
    entries = _pip_entries(path)
    assert entries
    for entry in entries:
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", entry), f"{path.name}: {entry!r} is not pinned"
        name, version = _name(entry), entry.split("==")[1]
        if name in lock:
            assert version == lock[name], f"{path.name}: {name}=={version} but requirements/cpu.txt has {lock[name]}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_the_package_dependencies_are_pinned_in_each_environment(path):
    deps = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    pinned = {_name(e) for e in _pip_entries(path)}
    exempt = FROM_VLLM if "vllm==" in path.read_text() else set()
    assert deps - exempt <= pinned, f"{path.name}: unpinned package dependencies {sorted(deps - exempt - pinned)}"


def test_the_checker_catches_a_disagreeing_pin(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dependencies:\n  - pip:\n      - pandas==1.0.0\n")
    with pytest.raises(AssertionError, match="pandas==1.0.0 but requirements/cpu.txt has 2.3.3"):
        test_every_pip_entry_is_pinned_and_agrees_with_the_lock(bad)
