"""Nothing lost, nothing wrong in silence (issue #15, items 1-4): file modes, corrupt inputs named by
file and line, damaged journals repaired without losing valid rows, one writer per journal,
predictions checked against their dataset, failures in the rule log."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sparse_frontier import predict
from sparse_frontier.io import (
    CorruptFileError,
    ResumableJsonl,
    file_digest,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from sparse_frontier.scoring import check_predictions, score_run


def with_umask(mask, write):
    old = os.umask(mask)
    try:
        write()
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_users_umask(tmp_path, mask, mode):
    paths = [tmp_path / "a.txt", tmp_path / "b.json", tmp_path / "c.jsonl"]
    with_umask(
        mask,
        lambda: (
            write_text_atomic(paths[0], "x"),
            write_json_atomic(paths[1], {"a": 1}),
            write_jsonl_atomic(paths[2], [{"id": 0}]),
        ),
    )
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == [oct(mode)] * 3


def test_scores_and_summary_are_readable_by_the_group(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "dataset.jsonl"
    write_jsonl_atomic(dataset, [{"id": 0, "prompt_tokens": 5, "gold": ["1234"]}])
    predictions = tmp_path / "predictions.jsonl"
    write_jsonl_atomic(
        predictions,
        [
            {
                "id": 0,
                "prediction": "<answer>1234</answer>",
                "output_tokens": 3,
                "prompt_tokens": 5,
                "sparsity": 0.0,
                "dataset_digest": file_digest(dataset),
            }
        ],
    )
    run = {"key": {"task": "ruler_niah"}, "task_params": {}, "experiments": ["x"]}
    with_umask(0o022, lambda: score_run(run, str(dataset), str(predictions), "s/scores.jsonl", "s/summary.json"))
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in Path("s").iterdir()} == {
        "scores.jsonl": "0o644",
        "summary.json": "0o644",
        "summary.provenance.json": "0o644",
    }


def test_a_dataset_cut_mid_line_is_named_with_its_line(tmp_path):
    path = tmp_path / "results/datasets/x/dataset.jsonl"
    write_jsonl_atomic(path, [{"id": i, "text": "word " * 300} for i in range(3)])
    path.write_bytes(path.read_bytes()[:-700])  # a copy interrupted in the third row
    with pytest.raises(CorruptFileError) as err:
        read_jsonl(path)
    message = str(err.value)
    assert f"{path}, line 3: not valid JSON" in message and "delete it and rerun" in message


def test_a_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 0}\n[1, 2]\n')
    with pytest.raises(CorruptFileError, match=r"d\.jsonl, line 2: a list, not a JSON object"):
        read_jsonl(path)


def test_damaged_journal_lines_are_reported_and_set_aside_keeping_every_valid_row(tmp_path, caplog):
    store = ResumableJsonl(tmp_path / "predictions.jsonl")
    store.append([{"id": 0, "x": "a"}])
    with open(store.partial, "a") as f:
        f.write('{"x": "a row without its id"}\n')
        f.write("\x00\x00garbage from a bad disk block\n")
    store.append([{"id": 1, "x": "b"}, {"id": 2, "x": "c"}])
    with caplog.at_level("WARNING"):
        rows = store.load()
    assert sorted(rows) == [0, 1, 2]  # the rows after the damage are kept
    assert f"{store.partial}, line 2: a row without an id" in caplog.text
    assert f"{store.partial}, line 3: not valid JSON" in caplog.text
    assert len(store.rejected.read_text().splitlines()) == 2  # nothing vanishes
    caplog.clear()
    assert sorted(store.load()) == [0, 1, 2] and not caplog.text  # repaired once, quiet after
    assert [r["id"] for r in store.finalise([0, 1, 2])] == [0, 1, 2]


def test_journal_rows_of_another_dataset_are_never_reused(tmp_path):
    store = ResumableJsonl(tmp_path / "predictions.jsonl")
    store.append([{"id": 0, "dataset_digest": "aaaa"}, {"id": 1, "dataset_digest": "bbbb"}])
    assert list(store.load("bbbb")) == [1]
    assert "aaaa" in store.rejected.read_text()


def test_the_journal_survives_the_final_file_and_rebuilds_it_without_an_engine(tmp_path, monkeypatch):
    """Snakemake deletes the outputs of a job it reruns (an input touched, a duplicate job that
    failed): the predictions come back from the journal, no sample is predicted again."""
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "dataset.jsonl"
    write_jsonl_atomic(dataset, [{"id": i, "prompt_tokens": 4, "input_ids": [1, 2, 3, 4]} for i in range(3)])
    digest = file_digest(dataset)
    store = ResumableJsonl(tmp_path / "predictions.jsonl")
    store.append([{"id": i, "prediction": str(i), "dataset_digest": digest} for i in (2, 0, 1)])
    store.finalise([0, 1, 2], digest)
    store.final.unlink()

    def no_engine(*args, **kwargs):
        raise AssertionError("no sample should be predicted again")

    monkeypatch.setattr(predict, "_start_engine", no_engine)
    run = {"key": {"samples": 3}}
    predict.run_predictions(run, str(dataset), "unused", str(store.final))
    assert [r["id"] for r in read_jsonl(store.final)] == [0, 1, 2]


def test_a_second_writer_waits_for_the_first_naming_it(tmp_path, caplog):
    store = ResumableJsonl(tmp_path / "predictions.jsonl")
    order = []
    holding = threading.Event()

    def first():
        with store.exclusive():
            holding.set()
            time.sleep(0.5)
            store.append([{"id": 0}])
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(5)
    with caplog.at_level("WARNING"), ResumableJsonl(store.final).exclusive(poll_s=0.05):
        order.append("second starts")
        assert list(store.load()) == [0]  # the first writer's work is there to resume from
    thread.join()
    assert order == ["first done", "second starts"]
    assert f"pid {os.getpid()} on host" in caplog.text and "waiting for it to finish" in caplog.text
    assert not store.lock_path.exists()  # removed by its last holder


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    store = ResumableJsonl(tmp_path / "p.jsonl")
    code = (
        "import os, sys\nfrom sparse_frontier.io import ResumableJsonl\n"
        f"with ResumableJsonl({str(store.final)!r}).exclusive():\n    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert store.lock_path.exists()  # left behind by the dead process, but not locked
    start = time.monotonic()
    with store.exclusive(poll_s=0.05):
        pass
    assert time.monotonic() - start < 1


def dataset_and_predictions(tmp_path, rows=None):
    dataset = tmp_path / "dataset.jsonl"
    write_jsonl_atomic(dataset, [{"id": i, "prompt_tokens": 10 + i} for i in range(3)])
    digest = file_digest(dataset)
    rows = rows or [{"id": i, "prompt_tokens": 10 + i, "dataset_digest": digest} for i in range(3)]
    return dataset, rows


def test_predictions_of_another_dataset_are_refused_naming_both_files(tmp_path):
    dataset, rows = dataset_and_predictions(tmp_path)
    check_predictions(read_jsonl(dataset), rows, str(dataset), "p.jsonl")  # a match passes
    foreign = [dict(r, dataset_digest="0123456789abcdef") for r in rows]
    with pytest.raises(
        ValueError, match=rf"p\.jsonl was predicted for another dataset \(digest 0123456789abcdef\) than {dataset}"
    ):
        check_predictions(read_jsonl(dataset), foreign, str(dataset), "p.jsonl")


def test_predictions_without_digest_are_still_checked_by_prompt(tmp_path):
    """Files predicted before rows carried the digest: the prompt lengths must match."""
    dataset, rows = dataset_and_predictions(tmp_path)
    old = [{k: v for k, v in r.items() if k != "dataset_digest"} for r in rows]
    check_predictions(read_jsonl(dataset), old, str(dataset), "p.jsonl")
    old[1]["prompt_tokens"] = 999
    with pytest.raises(ValueError, match=r"answers other prompts than .*samples \[1\] differ"):
        check_predictions(read_jsonl(dataset), old, str(dataset), "p.jsonl")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: rows + [dict(rows[0], id=7)], r"ids not in the dataset: \[7\]"),
        (lambda rows: rows + [rows[0]], r"ids given more than once: \[0\]"),
        (lambda rows: rows[:2], r"dataset ids without a prediction: \[2\]"),
    ],
)
def test_stray_repeated_and_missing_ids_are_refused(tmp_path, change, message):
    dataset, rows = dataset_and_predictions(tmp_path)
    with pytest.raises(ValueError, match=rf"p\.jsonl does not match {dataset}: {message}"):
        check_predictions(read_jsonl(dataset), change(rows), str(dataset), "p.jsonl")


def test_a_failing_job_writes_its_exception_to_the_rule_log(tmp_path):
    log = tmp_path / "job.log"
    code = (
        "from sparse_frontier.logs import setup_logging\n"
        f"setup_logging({str(log)!r})\n"
        "from sparse_frontier.io import read_jsonl\n"
        f"read_jsonl({str(tmp_path / 'missing.jsonl')!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "FileNotFoundError" in result.stderr
    text = log.read_text()
    assert "job failed: FileNotFoundError" in text and "missing.jsonl" in text and "Traceback" in text


def test_the_job_log_keeps_logging_after_a_library_reconfigures_logging(tmp_path):
    """vLLM calls logging.config.dictConfig when it is imported, which closes every existing handler:
    the job's log must go on (on the GPU machine the sweep logs stopped after their first lines), and
    a rerun of the job still starts a fresh log."""
    import logging
    import logging.config

    from sparse_frontier.logs import setup_logging

    log = tmp_path / "job.log"
    log.write_text("an earlier run's log\n")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging(str(log))
        logging.getLogger("job").info("engine starting")
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "loggers": {"vllm": {}}})
        logging.getLogger("job").info("run 1 of 26 done")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    text = log.read_text()
    assert "earlier run" not in text
    assert "engine starting" in text and "run 1 of 26 done" in text
