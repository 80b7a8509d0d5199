"""The SQLite index: where it lives, when it is reused and when it is rebuilt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim.emulators.gladly import GladlyStore
from sim.emulators.gladly.store import INDEX_NAME
from sim.emulators.timeutil import format_ns, parse_rfc3339_ns
from sim.synth.dataset import DatasetLayout

from .conftest import build_dataset


@pytest.fixture
def own_dataset(tmp_path: Path) -> DatasetLayout:
    return build_dataset(tmp_path / "ds")


def test_index_is_built_next_to_the_data_and_reused(own_dataset: DatasetLayout) -> None:
    store = GladlyStore(own_dataset.root)
    store.close()
    index = own_dataset.gladly / INDEX_NAME
    assert store.index_path == index and index.is_file()
    built_at = index.stat().st_mtime_ns
    GladlyStore(own_dataset.root).close()
    assert index.stat().st_mtime_ns == built_at


def test_index_is_rebuilt_when_a_job_file_changes(own_dataset: DatasetLayout) -> None:
    GladlyStore(own_dataset.root).close()
    items = own_dataset.job_file("job-b", "conversation_items.jsonl")
    with items.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "item-new", "conversationId": "conv-2", "customerId": "cust-1",
                             "timestamp": "2024-06-01T12:00:00Z", "content": {"type": "SMS"}}) + "\n")
    store = GladlyStore(own_dataset.root)
    assert store.item("item-new") is not None
    store.close()


def test_index_is_rebuilt_when_a_job_disappears(own_dataset: DatasetLayout) -> None:
    GladlyStore(own_dataset.root).close()
    shutil.rmtree(own_dataset.job_dir("job-big"))
    store = GladlyStore(own_dataset.root)
    assert store.item("big-00000") is None
    assert "job-big" not in store.jobs
    store.close()


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Gladly dataset folder"):
        GladlyStore(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-02-21T07:15:19.07272933Z", 1550733319_072729330),
        ("2019-07-01T11:46:45.010Z", 1561981605_010000000),
        ("2019-07-01T13:46:45+02:00", 1561981605_000000000),
        ("2019-07-01T11:46:45", None),
        ("2019-02-30T00:00:00Z", None),
        (None, None),
    ],
)
def test_rfc3339_parsing(text: str | None, expected: int | None) -> None:
    assert parse_rfc3339_ns(text) == expected


def test_format_round_trips() -> None:
    assert format_ns(parse_rfc3339_ns("2019-02-21T07:15:19.07272933Z") or 0) == "2019-02-21T07:15:19.07272933Z"
    assert format_ns(parse_rfc3339_ns("2019-02-21T07:15:19Z") or 0) == "2019-02-21T07:15:19.000Z"
