"""Hint files built from the write path: the store records each record's hint entry as it
appends it, so sealing a segment needs no second read of it.  The result must be exactly the
hint a scan of the sealed segment builds; a segment this process did not write all of (one
reopened as the active segment) is still scanned."""

from __future__ import annotations

import os

import pytest

from engine import hints
from engine.hints import parse_hint
from compaction_helpers import snapshot, write_history

SEGMENT = 8192


def _write_every_kind_of_record(store, clock) -> None:
    """``write_history`` (puts with metadata and expirations, overwrites, deletes, namespaces),
    then compressible and large values, bulk writes and deletes, batched puts (the server's
    pipeline path) and more catalog records."""
    write_history(store, clock)
    ns = store.namespace()
    ns.put("compressible", "abc" * 2000)
    ns.put("large", os.urandom(70_000))  # written as separate buffers (writev)
    ns.bulk_put([{"key": f"bulk/{i}", "value": "v" * i, "metadata": {"b": i}} for i in range(60)])
    ns.bulk_delete([f"bulk/{i}" for i in range(0, 60, 3)])
    store.begin_batch()
    try:
        for i in range(80):
            store.put_one(ns.number, f"batched/{i}".encode(), b"b" * 40, durable=False)
    finally:
        store.end_batch()
    store.put_many(ns.number, [(f"many/{i}".encode(), b"m" * i, 0, b'{"i":%d}' % i if i % 2 else b"")
                               for i in range(70)])
    other = store.create_namespace("another")
    store.rename_namespace(other.id, "renamed")
    store.namespace("renamed").put("é", "unicode", metadata={"k": "ü"})
    store.delete_namespace(other.id)


def _sealed(store) -> list:
    return sorted((seg for seg in store._segments.values() if seg.sealed),
                  key=lambda seg: seg.seg_no)


def _hint_file(store, seg_no: int) -> bytes:
    with open(os.path.join(store.path, hints.hint_name(seg_no)), "rb") as f:
        return f.read()


def _columns(hint) -> tuple:
    return (hint.keys, list(hint.locations), list(hint.seqs), bytes(hint.flags),
            bytes(hint.key_ids), hint.expire_ms, hint.metadata)


@pytest.mark.parametrize("encryption", [False, True])
def test_hints_from_the_write_path_are_what_a_scan_builds(open_store, clock, encryption):
    store = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    _write_every_kind_of_record(store, clock)
    assert store.wait_for_hints(60)
    sealed = _sealed(store)
    assert len(sealed) >= 4
    assert store.seal_hints_written == len(sealed)
    assert store.seal_hint_scans == 0  # none of them was read again
    for seg in sealed:
        written = _hint_file(store, seg.seg_no)
        _writer, size, scanned = hints.sealed_segment_hint(seg, store._codec)
        assert size == seg.size
        if not encryption:
            assert written == scanned, seg.seg_no  # byte for byte
        else:  # sealed under fresh nonces: compare what they say
            assert _columns(parse_hint(written, seg.seg_no, size, store._codec)) == \
                _columns(parse_hint(scanned, seg.seg_no, size, store._codec)), seg.seg_no


def test_a_store_reopened_from_its_hints_matches_the_one_that_wrote_them(open_store, clock,
                                                                        tmp_path):
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    _write_every_kind_of_record(store, clock)
    expected = snapshot(store)
    assert store.wait_for_hints(60)
    store.close()
    reopened = open_store(fsync="no", segment_bytes=SEGMENT)
    assert reopened.recovery.hints_loaded == len(_sealed(reopened))
    assert reopened.recovery.segments_scanned == 1
    assert snapshot(reopened) == expected


def test_a_reopened_active_segment_is_scanned_when_it_seals(open_store, clock):
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    ns = store.namespace()
    ns.put("before", "x" * 100)  # the active segment now holds records of this process only
    store.close()
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    first_active = store._active.seg_no
    ns = store.namespace()
    for i in range(300):  # enough to seal the reopened segment and a few more
        ns.put(f"k{i:04d}", "y" * 100)
    assert store.wait_for_hints(60)
    assert store._segments[first_active].sealed
    assert store.seal_hint_scans == 1  # only the reopened one
    assert store.seal_hints_written == len(_sealed(store))
    written = parse_hint(_hint_file(store, first_active), first_active,
                         store._segments[first_active].size, store._codec)
    assert b"".join(written.keys).count(b"before") == 1


def test_segments_sealed_while_hints_are_paused_keep_their_entries_within_a_budget(
        open_store):
    # Compaction pauses the hint writer; writes meanwhile must not pile up hint entries.
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    ns = store.namespace()
    with store.hints_paused():
        first = store._active.seg_no
        i = 0
        while store._active.seg_no < first + 3:  # three sealed, all kept: within the budget
            ns.put(f"k{i:05d}", "v" * 100)
            i += 1
        assert sorted(store._sealed_hints) == [first, first + 1, first + 2]
        one = store._sealed_hints[first].nbytes
        store.pending_hint_bytes = 2 * one + one // 2  # room for two segments' entries
        while store._active.seg_no < first + 6:  # three more sealed while paused
            ns.put(f"k{i:05d}", "v" * 100)
            i += 1
        assert sorted(store._sealed_hints) == [first + 4, first + 5]  # the newest two
    assert store.wait_for_hints(60)
    assert store.seal_hints_written == 6
    assert store.seal_hint_scans == 4  # the four that gave their entries up were scanned
    assert not store._sealed_hints
    store.close()
    reopened = open_store(fsync="no", segment_bytes=SEGMENT)
    assert reopened.recovery.segments_scanned == 1
    assert reopened.namespace().get("k00000") == "v" * 100


# ---------------------------------------------------------------- spilled entries

def _spill_files(store) -> list[str]:
    return sorted(n for n in os.listdir(store.path) if n.endswith(hints.SPILL_SUFFIX))


@pytest.mark.parametrize("encryption", [False, True])
def test_entries_spilled_to_disk_make_the_same_hint_as_a_scan(open_store, clock, monkeypatch,
                                                             encryption):
    # A few rows per chunk, so every segment's entries go through its spill file.
    monkeypatch.setattr(hints, "SPILL_BYTES", 3 * hints._ROW_SIZE)
    store = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    _write_every_kind_of_record(store, clock)
    assert store._live_hint.spill.chunks > 0  # the active segment's are on disk now
    assert len(store._live_hint.rows) < 3 * hints._ROW_SIZE
    assert store.wait_for_hints(60)
    sealed = _sealed(store)
    assert store.seal_hints_written == len(sealed) and store.seal_hint_scans == 0
    for seg in sealed:
        _writer, size, scanned = hints.sealed_segment_hint(seg, store._codec)
        written = parse_hint(_hint_file(store, seg.seg_no), seg.seg_no, size, store._codec)
        assert _columns(written) == _columns(parse_hint(scanned, seg.seg_no, size,
                                                        store._codec)), seg.seg_no
    # Sealed segments' spill files are gone once their hint is written; only the active one's
    # remains, and closing removes it.
    assert _spill_files(store) == [hints.spill_name(store._active.seg_no)]
    expected = snapshot(store)
    store.close()
    assert _spill_files(store) == []
    reopened = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    assert snapshot(reopened) == expected


def _spilled_store(open_store, monkeypatch, count: int, key: str):
    """A store whose active segment has spilled ``count`` puts' entries; and its spill file's
    name and bytes."""
    monkeypatch.setattr(hints, "SPILL_BYTES", 2 * hints._ROW_SIZE)
    store = open_store(fsync="no", segment_bytes=1 << 20)
    ns = store.namespace()
    for i in range(count):
        ns.put(key.format(i), "v")
    [name] = _spill_files(store)
    with open(os.path.join(store.path, name), "rb") as f:
        return store, name, f.read()


def test_spill_chunks_of_an_encrypted_store_hold_no_plaintext_key(open_store, monkeypatch):
    store, name, data = _spilled_store(open_store, monkeypatch, 50, "secret-key-{:03d}")
    assert len(data) > 1000
    assert b"secret-key" not in data
    assert oct(os.stat(os.path.join(store.path, name)).st_mode & 0o777) == "0o600"


def test_a_damaged_spill_file_means_a_scan_not_a_wrong_hint(open_store, monkeypatch):
    monkeypatch.setattr(hints, "SPILL_BYTES", 4 * hints._ROW_SIZE)
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    ns = store.namespace()
    with store.hints_paused():
        first = store._active.seg_no
        i = 0
        while store._active.seg_no == first:
            ns.put(f"k{i:05d}", "v" * 100)
            i += 1
        path = os.path.join(store.path, hints.spill_name(first))
        with open(path, "r+b") as f:  # flip a byte inside the first chunk's ciphertext
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 0xFF]))
    assert store.wait_for_hints(60)
    assert store.seal_hint_scans == 1  # the damaged spill was not trusted
    seg = store._segments[first]
    written = parse_hint(_hint_file(store, first), first, seg.size, store._codec)
    _writer, size, scanned = hints.sealed_segment_hint(seg, store._codec)
    assert _columns(written) == _columns(parse_hint(scanned, first, size, store._codec))


def test_a_spill_file_left_by_a_killed_process_is_removed_at_open(open_store, monkeypatch):
    store, name, leftover = _spilled_store(open_store, monkeypatch, 20, "k{}")
    store.close()
    with open(os.path.join(store.path, name), "wb") as f:  # as kill -9 would leave it
        f.write(leftover)
    reopened = open_store(fsync="no", segment_bytes=1 << 20)
    assert _spill_files(reopened) == []
    assert reopened.namespace().get("k19") == "v"


def test_a_spill_file_that_cannot_be_written_keeps_the_entries_in_memory(open_store):
    # Not an error: the entries stay in memory, as they did before spill files.
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    ns = store.namespace()
    columns = store._live_hint
    assert columns.spill.chunks == 0
    columns.spill_at = 2 * hints._ROW_SIZE
    columns.spill.path = os.path.join(store.path, "no-such-directory", "spill")
    in_memory = len(columns.rows)
    for i in range(5):
        ns.put(f"k{i}", "v")
    assert columns.spill_at > SEGMENT  # gave up spilling
    assert columns.spilled == 0
    assert len(columns.rows) == in_memory + 5 * hints._ROW_SIZE
    while store._active.seg_no == columns.seg_no:
        ns.put(f"fill{len(columns.rows)}", "x" * 200)
    assert store.wait_for_hints(60)
    assert store.seal_hint_scans == 0
    assert os.path.exists(os.path.join(store.path, hints.hint_name(columns.seg_no)))
