"""A real SLURM: a one-node cluster on this host runs a tiny config through `snakemake --profile profiles/slurm`.

Needs Debian's slurm-wlm and munge (`.ci/run` installs them). The fixture reuses a cluster that already
answers `sinfo`; otherwise it starts munged (if no munge daemon answers), slurmctld and slurmd with a
/etc/slurm/slurm.conf written for this host (its real CPU count and memory from `slurmd -C`; state in a
temporary folder; removed afterwards),
and stops what it started. Skipped only when `sbatch` is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_tiny_config

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slurm

#: Nested `srun` inside a job drops SLURM_* variables (SLURM_CONF too), so the config must sit where every
#: SLURM command looks by default.
CONF_PATH = Path("/etc/slurm/slurm.conf")
MARK = "# written by tests/test_hpc_slurm.py"
SLURM_CONF = (
    MARK
    + """
ClusterName=sftest
SlurmctldHost={host}
AuthType=auth/munge
CredType=cred/munge
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to `squeue --states=all` (the status command without accounting)
MinJobAge=3600
{node}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(cmd: list[str], env=None) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, env=env).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _node_line() -> str:
    """`NodeName=... CPUs=... RealMemory=...` of this host, as slurmd itself detects it."""
    detected = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = detected.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    memory = int(int(fields["RealMemory"]) * 0.9)  # slurmd refuses a node claiming more than it has
    return f"NodeName={fields['NodeName']} CPUs={fields['CPUs']} RealMemory={memory} State=UNKNOWN"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """Environment in which sbatch/squeue reach a running one-node cluster."""
    if shutil.which("sbatch") is None:
        pytest.skip("sbatch not found: install slurm-wlm and munge (apt-get install -y slurm-wlm munge; .ci/run does)")
    if _answers(["sinfo", "-h"]):
        yield dict(os.environ)  # a cluster is already configured here
        return
    root = tmp_path_factory.mktemp("slurm")
    started: list[int] = []
    if not _answers(["sh", "-c", "munge -n | unmunge"]):
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        started.append(int(Path("/run/munge/munged.pid").read_text()))
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    conf = CONF_PATH
    if conf.exists() and MARK not in conf.read_text():
        pytest.fail(f"{conf} exists but its cluster does not answer `sinfo`: start it, or move the file away")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname().split(".")[0],
            user=os.environ.get("USER") or "root",
            ctld_port=_free_port(),
            d_port=_free_port(),
            root=root,
            node=_node_line(),
        )
    )
    env = dict(os.environ)
    try:
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon], env=env, check=True)
            for _ in range(50):
                pidfile = root / f"{daemon}.pid"
                if pidfile.exists() and pidfile.read_text().strip():
                    started.append(int(pidfile.read_text()))
                    break
                time.sleep(0.2)
        for _ in range(60):
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed"):
                break
            time.sleep(1)
        else:
            logs = "\n".join(
                (root / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log") if (root / f).exists()
            )
            pytest.fail(f"the local SLURM cluster did not come up (sinfo: {out.stdout!r} {out.stderr!r})\n{logs}")
        yield env
    finally:
        for pid in reversed(started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        conf.unlink(missing_ok=True)


def _snakemake(workdir: Path, env, *args, timeout=1200) -> str:
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return result.stdout + result.stderr


def _predictions(workdir: Path) -> dict[str, list[tuple]]:
    out = {}
    for path in sorted((workdir / "results/predictions").rglob("predictions.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        out[str(path.relative_to(workdir))] = [(r["id"], r["prediction"], r["output_tokens"]) for r in rows]
    return out


def test_tiny_config_through_sbatch_matches_a_local_run(slurm_cluster, tmp_path, tiny_model):
    config = write_tiny_config(tmp_path, tiny_model, lengths=(512, 1024), samples=2, max_output_tokens=6)
    target = "results/tables/scores.csv"
    env = dict(slurm_cluster, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    partition = (
        subprocess.run(["sinfo", "-h", "-o", "%P"], env=env, capture_output=True, text=True, check=True)
        .stdout.split()[0]
        .rstrip("*")
    )
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    # profiles/slurm as shipped, plus the test-only site settings: this cluster's partition, no account
    # (no accounting daemon here) and squeue as the status command (no sacct without accounting).
    slurm_args = [
        target,
        "--profile",
        str(REPO / "profiles/slurm"),
        "--configfile",
        str(config),
        "--default-resources",
        f"slurm_partition={partition}",
        "mem_mb=2000",
        "runtime=30",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--latency-wait",
        "5",
        "--jobs",
        "2",
        "--retries",
        "0",
        "--slurm-keep-successful-logs",
    ]
    # (each job reruns Snakemake with its wildcards in --target-jobs, split on commas: snakemake#2366,
    # which is why the path grammar joins arguments with '+')
    log = _snakemake(on_slurm, env, *slurm_args)
    slurm_logs = list((on_slurm / ".snakemake/slurm_logs").rglob("*.log"))
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == 2 + 2 + 2, log[-3000:]  # datasets, predictions, scores (the table is a localrule)
    # every job ran inside SLURM: each kept its SLURM log under .snakemake/slurm_logs
    assert {p.parent.parent.name for p in slurm_logs} >= {"rule_generate_dataset", "rule_predict", "rule_score"}
    _snakemake(local, env, target, "--profile", str(REPO / "profiles/local"), "--configfile", str(config))
    slurm_predictions, local_predictions = _predictions(on_slurm), _predictions(local)
    assert len(slurm_predictions) == 2 and slurm_predictions == local_predictions
    assert (on_slurm / target).read_text() == (local / target).read_text()
