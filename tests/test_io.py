import json

import pytest

from sparse_frontier.io import ResumableJsonl, read_jsonl, write_jsonl_atomic, write_provenance


def test_resumable_jsonl_appends_resumes_and_finalises(tmp_path):
    store = ResumableJsonl(tmp_path / "out" / "predictions.jsonl")
    assert store.load() == {}
    store.append([{"id": 2, "x": "b"}, {"id": 0, "x": "a"}])
    assert sorted(store.load()) == [0, 2]
    assert not store.final.exists()  # never a final file before every sample is done
    with pytest.raises(RuntimeError, match=r"1 samples still missing: \[1\]"):
        store.finalise([0, 1, 2])
    store.append([{"id": 1, "x": "c"}])
    rows = store.finalise([0, 1, 2])
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert read_jsonl(store.final) == rows
    assert store.partial.exists()  # the journal stays: a deleted final file is rebuilt from it


def test_torn_last_line_of_a_killed_writer_is_dropped(tmp_path):
    store = ResumableJsonl(tmp_path / "predictions.jsonl")
    store.append([{"id": 0, "x": "a"}])
    with open(store.partial, "a") as f:
        f.write('{"id": 1, "x": "hal')  # killed mid-write
    assert list(store.load()) == [0]
    store.append([{"id": 1, "x": "b"}])  # the rerun's row is readable, not glued to the torn one
    assert store.load()[1]["x"] == "b"


def test_duplicate_ids_keep_the_first_row(tmp_path):
    store = ResumableJsonl(tmp_path / "p.jsonl")
    store.append([{"id": 0, "x": "first"}, {"id": 0, "x": "second"}])
    assert store.finalise([0]) == [{"id": 0, "x": "first"}]


def test_atomic_write_and_provenance(tmp_path):
    path = tmp_path / "d" / "dataset.jsonl"
    write_jsonl_atomic(path, [{"id": 0}])
    assert read_jsonl(path) == [{"id": 0}]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    write_provenance(path, {"task": "ruler_niah"})
    record = json.loads((tmp_path / "d" / "dataset.provenance.json").read_text())
    assert record["config"] == {"task": "ruler_niah"}
    assert {"git_commit", "python", "versions", "machine", "created"} <= set(record["environment"])
    assert "torch" in record["environment"]["versions"]
