"""Tables and figures drawn from part of their runs (``figures.allow_missing``) must not pass for
complete ones.

Snakemake does not run the jobs of missing intermediate files (here: the summaries of runs not yet
scored) for an output that exists and is newer than every input it has: so a table or figure drawn
with ``allow_missing`` would hide the unscored runs from every later ``snakemake all``, which would
then schedule none of them. Each such output therefore gets a record beside it
(:func:`paths.missing_runs_record`), written after it and listing the runs it lacks. Without
``allow_missing`` the workflow adds an existing record to the output's inputs (:func:`records_to_check`):
being newer than the output, it makes Snakemake draw it again, and the missing runs with it. A
complete drawing then empties the record and dates it before the output; it is kept rather than
deleted, since a changed set of inputs would make Snakemake draw the output once more.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sparse_frontier import paths
from sparse_frontier.io import write_json_atomic


def record_missing_runs(output: str, expected: Iterable[str], present: Iterable[str]) -> list[str]:
    """After ``output`` was written from the summaries ``present`` of the ``expected`` ones: record
    the missing ones beside it, one second newer than the output, if there are any; else empty an
    existing record and date it one second before the output. Returns the missing summaries."""
    have = set(present)
    missing = [s for s in expected if s not in have]
    record = Path(paths.missing_runs_record(output))
    if not missing and not record.exists():
        return missing
    write_json_atomic(record, {"output": output, "missing_runs": len(missing), "missing": missing})
    written = os.stat(output).st_mtime + (1 if missing else -1)
    os.utime(record, (written, written))
    return missing


def records_to_check(output: str, allow_missing: bool) -> list[str]:
    """The input the workflow adds to the job writing ``output``: its missing-runs record, where one
    exists and the run is not itself drawing with ``allow_missing``."""
    record = paths.missing_runs_record(output)
    return [record] if not allow_missing and os.path.exists(record) else []
