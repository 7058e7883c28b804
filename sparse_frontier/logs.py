"""Logging set-up for pipeline steps: everything to the job's log file (and stderr), failures included."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def setup_logging(log_file: str | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and ``log_file``; an uncaught exception is written there too (with its
    traceback), so the rule log Snakemake points to after a failure says what went wrong."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        # A fresh log per run, then appended to: logging.config.dictConfig (vLLM calls it when it is
        # imported) closes every existing handler, and a closed handler in mode "w" drops every
        # later record rather than reopen and truncate its file; in mode "a" it reopens.
        open(log_file, "w").close()
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    if log_file:
        sys.excepthook = _log_then(sys.__excepthook__, log_file)


def _log_then(previous, log_file: str):
    def hook(kind, error, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            _write_failure(log_file, error, traceback)
        previous(kind, error, traceback)

    return hook


def _write_failure(log_file: str, error: BaseException, traceback=None) -> None:
    import traceback as tb

    text = "".join(tb.format_exception(type(error), error, traceback or error.__traceback__))
    with open(log_file, "a") as f:
        f.write(f"job failed: {type(error).__name__}: {error}\n{text}")


@contextmanager
def failures_logged(log_file: str) -> Iterator[None]:
    """For code run inside Snakemake's own process (``run:`` blocks): a failure is written to the
    rule log, then raised as usual."""
    try:
        yield
    except Exception as error:
        _write_failure(log_file, error)
        raise
