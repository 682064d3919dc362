"""verify_store finds every damaged byte with its segment and offset; repair keeps good records."""

from __future__ import annotations

import os

import pytest

from engine import Store, StoreLockedError
from engine.verify import repair, verify_store
from compaction_helpers import snapshot
from kvtest_helpers import find_record, flip_byte, segment_paths


def _build(path, *, compact: bool) -> dict:
    with Store.open(str(path), fsync="no", segment_bytes=4096) as store:
        ns = store.namespace()
        for round_ in range(2):
            for i in range(120):
                ns.put(f"k{i:03d}", f"{round_}-{i}" * 8, metadata={"i": i} if i % 4 == 0 else None)
        for i in range(0, 120, 6):
            ns.delete(f"k{i:03d}")
        if compact:
            store.compact()
            ns.put("tail", "t")
        return snapshot(store)


@pytest.mark.parametrize("compact", [False, True])
def test_clean_store_verifies_ok(tmp_path, compact):
    expected = _build(tmp_path / "data", compact=compact)
    report = verify_store(str(tmp_path / "data"))
    assert report.ok, report
    assert report.live_keys == len(expected["default"])
    assert report.segments == len(segment_paths(tmp_path / "data"))
    assert report.hints_checked == report.segments - 1  # every sealed segment has one
    assert report.records >= report.live_keys


def test_verify_refuses_an_open_store(tmp_path):
    store = Store.open(str(tmp_path / "data"))
    try:
        with pytest.raises(StoreLockedError):
            verify_store(str(tmp_path / "data"))
    finally:
        store.close()


@pytest.mark.parametrize("compact", [False, True])
def test_bit_flip_in_a_segment_is_found_at_its_offset(tmp_path, compact):
    data = tmp_path / "data"
    _build(data, compact=compact)
    path, record = find_record(data, b"k007")
    flip_byte(path, record.offset + record.size - 3, 0x10)
    report = verify_store(str(data))
    assert not report.ok
    assert [(c.segment, c.offset) for c in report.corrupt] == \
        [(int(os.path.basename(path)[:8]), record.offset)]
    if compact:  # the hint still matches the (intact) header, key and sequence number
        assert not report.hint_problems


def test_bit_flip_in_a_hint_is_found(tmp_path):
    data = tmp_path / "data"
    _build(data, compact=True)
    hint = sorted(n for n in os.listdir(data) if n.endswith(".hint"))[0]
    flip_byte(str(data / hint), 40, 0x04)
    report = verify_store(str(data))
    assert not report.ok
    assert not report.corrupt
    assert len(report.hint_problems) == 1 and f"segment {int(hint[:8])}" in report.hint_problems[0]


def test_repair_keeps_good_records_and_the_originals(tmp_path):
    data = tmp_path / "data"
    expected = _build(data, compact=False)
    path, record = find_record(data, b"k013")
    flip_byte(path, record.offset + record.size - 1)
    original = open(path, "rb").read()

    dry = repair(str(data))
    assert dry.dry_run and dry.backup_dir is None
    assert open(path, "rb").read() == original  # a dry run changes nothing

    done = repair(str(data), confirm=True)
    assert done.rewritten_segments == [int(os.path.basename(path)[:8])]
    assert done.tombstones_written == 1
    backup = done.backup_dir
    assert os.path.basename(backup).startswith("repair-")
    assert open(os.path.join(backup, os.path.basename(path)), "rb").read() == original
    assert verify_store(str(data)).ok
    with Store.open(str(data), fsync="no") as store:
        assert not store.recovery.corrupt
        got = snapshot(store)["default"]
        # the damaged newest version of k013 is gone, and no older version came back
        want = dict(expected["default"])
        del want[b"k013"]
        assert got == want


def test_repair_of_a_healthy_store_does_nothing(tmp_path):
    data = tmp_path / "data"
    _build(data, compact=True)
    before = sorted(os.listdir(data))
    result = repair(str(data), confirm=True)
    assert result.backup_dir is None
    assert sorted(os.listdir(data)) == before
