"""`snakemake --profile slurm all_figures` works from the repository root as README and docs/hpc.md say.

Snakemake 9 looks a profile *name* up in the current directory, then the user's and the site's
config folders (``snakemake.cli.get_profile_dir``); ``profiles/slurm`` would only be found as a path.
The repository root therefore holds a relative symlink ``slurm -> profiles/slurm``, tracked by git
(so a fresh clone has it); ``--profile profiles/slurm`` keeps working.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from snakemake.cli import get_profile_dir

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def in_git_checkout() -> bool:
    return shutil.which("git") is not None and (REPO / ".git").exists()


def test_slurm_is_a_relative_symlink_to_the_profile():
    link = REPO / "slurm"
    assert link.is_symlink(), "the repository root needs the symlink slurm -> profiles/slurm"
    assert os.readlink(link) == "profiles/slurm"  # relative: works wherever the repository is cloned
    assert (link / "config.yaml").samefile(PROFILE)


@pytest.mark.skipif(not in_git_checkout(), reason="not a git checkout")
def test_git_tracks_the_symlink_so_a_fresh_clone_has_it():
    entry = git("ls-files", "-s", "--", "slurm").split()
    assert entry, "slurm is not tracked: `git add slurm`"
    assert entry[0] == "120000", f"slurm is tracked as {entry[0]}, not as a symlink"
    assert git("cat-file", "-p", entry[1]) == "profiles/slurm"


def test_profile_name_and_path_resolve_to_profiles_slurm(monkeypatch):
    monkeypatch.chdir(REPO)
    for name in ("slurm", "profiles/slurm", "profiles/slurm/config.yaml"):
        found = get_profile_dir(name)
        assert found is not None, name
        assert found[1].resolve() == PROFILE.resolve(), (name, found)


def fresh_copy(dest: Path) -> Path:
    """The working tree as a fresh clone would check it out once committed: tracked and untracked
    (not ignored) files, symlinks as symlinks; no .snakemake, results, logs or .venv."""
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        src, dst = REPO / name, dest / name
        if not src.is_symlink() and not src.exists():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dst)
    return dest


@pytest.mark.skipif(not in_git_checkout(), reason="not a git checkout")
def test_dry_run_with_profile_slurm_from_a_fresh_checkout(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the SLURM executor plugin is not installed")
    clone = fresh_copy(tmp_path / "clone")
    assert (clone / "slurm").is_symlink()
    env = dict(os.environ, PYTHONPATH=str(clone), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    code = (
        "from sparse_frontier import paths; from sparse_frontier.config import expand_runs, load_config; "
        "r = next(r for r in expand_runs(load_config('config/config.yaml')) if r.key.method == 'dense'); "
        "print(paths.PREDICTIONS.format(**r.key.wildcards()))"
    )
    target = subprocess.run(
        [sys.executable, "-c", code], cwd=clone, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    snakemake = str(BIN / "snakemake")
    quiet = subprocess.run(
        [snakemake, "--profile", "slurm", target, "-n", "-q"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert quiet.returncode == 0, (quiet.stdout + quiet.stderr)[-5000:]
    # the profile was read: its default resources for the light rules, its set-resources for predict
    full = subprocess.run(
        [snakemake, "--profile", "slurm", "-n", target], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    out = full.stdout + full.stderr
    assert full.returncode == 0, out[-5000:]
    predict = out.split("rule predict:")[1].split("\n\n")[0]
    assert "tasks_per_gpu=0" in predict and "cpus_per_gpu=8" in predict, predict
    assert "mem_mb=8000" in out.split("rule generate_dataset:")[1].split("\n\n")[0]
    assert not (clone / "results").exists()  # a dry run writes nothing
