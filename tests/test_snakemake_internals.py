"""The two Snakemake internals rules/common.smk leans on for dry-run speed still look as patched.

rules/common.smk (1) hands Snakemake each input function's signature once
(``snakemake.common.overwrite_function_params``; Snakemake otherwise inspects it on every call) and
(2) caches ``snakemake.script.get_source`` per script path (the DAG check reads every job's script).
Together they take about a quarter off a dry run of the paper grid. Both touch Snakemake's private
API, so a new Snakemake version must fail here, loudly, instead of silently running the slow path or
breaking a rule: on failure, check the new version's functions and update or drop the patches.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import snakemake
import snakemake.common
import snakemake.script

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WHY = f"Snakemake {snakemake.__version__} changed an internal that rules/common.smk patches (see this file's docstring)"


def test_function_params_are_read_through_the_attribute_we_set():
    def f(wildcards, attempt):
        return attempt

    snakemake.common.overwrite_function_params(f, inspect.signature(f).parameters)
    assert snakemake.common.get_function_params(f) is getattr(f, snakemake.common.FUNC_OVERWRITE_PARAMS_ATTR), WHY
    assert list(snakemake.common.get_function_params(f)) == ["wildcards", "attempt"], WHY


def test_get_source_has_the_signature_the_cache_wraps():
    params = list(inspect.signature(snakemake.script.get_source).parameters)
    assert params == ["path", "sourcecache", "basedir", "wildcards", "params"], f"{WHY}: get_source{params}"


def test_the_workflow_installs_the_source_cache(tmp_path):
    """Loading the Snakefile (a dry run of the demo) replaces get_source: the patch is not skipped."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, snakemake.script\n"
        "from snakemake.cli import main\n"
        "try:\n"
        f"    main(['table_taxonomy', '-n', '-q', '--cores', '1', '-s', r'{REPO / 'Snakefile'}',\n"
        f"          '-d', r'{tmp_path / 'run'}', '--configfile', r'{REPO / 'config/demo.yaml'}'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('PATCHED', getattr(snakemake.script.get_source, 'cached_by_sparse_frontier', False))\n"
    )
    result = subprocess.run([str(BIN / "python"), str(probe)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "PATCHED True" in result.stdout, WHY + "\n" + result.stdout[-2000:] + result.stderr[-3000:]
