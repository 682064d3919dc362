"""Compaction reads sealed inputs through their hint files: dead records are never read, live
ones are copied as stored after their checksum is checked (opened only to re-encrypt them), and
the result is the one a scan of the inputs gives."""

from __future__ import annotations

import os

import pytest

from engine import StoreError, hints
from compaction_helpers import internal_state, snapshot
from kvtest_helpers import find_record, flip_byte

SEGMENT = 4096


def _churn(store, clock) -> None:
    """Overwrites, deletes, metadata, expirations (some past), large values, namespaces."""
    ns = store.namespace()
    for round_ in range(3):
        for i in range(120):
            ns.put(f"k{i:03d}", f"{round_}-{i}" * 6, metadata={"r": round_} if i % 5 == 0 else None,
                   expiration=clock.now_s + 61 if i % 11 == 0 else None)
    for i in range(0, 120, 3):
        ns.delete(f"k{i:03d}")
    ns.put("large", os.urandom(70_000))
    gone = store.create_namespace("gone")
    store.namespace("gone").put("a", "b")
    store.delete_namespace(gone.id)
    store.create_namespace("kept")
    store.namespace("kept").put("x", "y", metadata={"m": 1})
    clock.advance(120_000)  # the keys with a 61 s expiration are now expired


def _hinted_sealed(store) -> int:
    return sum(1 for seg in store._segments.values() if seg.sealed
               and os.path.exists(os.path.join(store.path, hints.hint_name(seg.seg_no))))


@pytest.mark.parametrize("encryption", [True, False])
def test_compaction_through_hints_keeps_exactly_what_a_scan_keeps(open_store, clock,
                                                                   encryption):
    store = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    _churn(store, clock)
    assert store.wait_for_hints(60)
    hinted = _hinted_sealed(store)
    assert hinted >= 5
    before = snapshot(store)
    summary = store.compact()
    assert summary["segments_from_hints"] == hinted
    assert summary["records_dropped"] > 0
    assert snapshot(store) == before
    store._check()
    state = internal_state(store)
    store.close()
    reopened = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    assert snapshot(reopened) == before
    assert internal_state(reopened)["keys"] == state["keys"]


def test_a_damaged_live_record_stops_compaction_even_when_its_segment_has_a_hint(open_store,
                                                                                 clock):
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    _churn(store, clock)
    assert store.wait_for_hints(60)
    path, record = find_record(store.path, b"k001")  # live: never overwritten or deleted last
    assert store.namespace().get("k001") == "2-1" * 6
    flip_byte(path, record.offset + record.size - 1)
    seg_no = int(os.path.basename(path)[:8])
    assert os.path.exists(os.path.join(store.path, hints.hint_name(seg_no)))
    before_files = set(os.listdir(store.path))
    with pytest.raises(StoreError, match="corrupt record"):
        store.compact()
    after = set(os.listdir(store.path))
    assert before_files <= after  # every input still there (it sealed the active segment)
    assert not [name for name in after if name.endswith(".tmp")]
    assert store.namespace().get("k002") == "2-2" * 6


def test_an_unreadable_hint_means_that_input_is_scanned(open_store, clock):
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    _churn(store, clock)
    assert store.wait_for_hints(60)
    hinted = _hinted_sealed(store)
    first = min(seg.seg_no for seg in store._segments.values() if seg.sealed)
    flip_byte(os.path.join(store.path, hints.hint_name(first)), 40)
    before = snapshot(store)
    summary = store.compact()
    assert summary["segments_from_hints"] == hinted - 1
    assert snapshot(store) == before


def test_rotating_the_key_then_compacting_through_hints_retires_the_old_key(open_store, clock):
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    _churn(store, clock)
    old_key = store._codec.key_id
    new_key = store.rotate_key()
    assert store.wait_for_hints(60)
    before = snapshot(store)
    summary = store.compact()
    assert summary["segments_from_hints"] >= 5  # re-encrypted from hint-listed records
    assert snapshot(store) == before
    usage = store.key_usage()
    assert usage[old_key]["segments"] == [] and usage[old_key]["live_records"] == 0
    assert usage[new_key]["live_records"] > 0
