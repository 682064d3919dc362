"""Hint files: loading them rebuilds exactly the state a scan would, and a bad one is ignored."""

from __future__ import annotations

import os

import pytest

from engine import hints
from compaction_helpers import internal_state, snapshot
from kvtest_helpers import flip_byte


def _compacted_store(open_store, clock, *, large: bool = False):
    store = open_store(fsync="no", segment_bytes=8192)
    ns = store.namespace()
    for round_ in range(2):
        for i in range(300):
            ns.put(f"key/{i:04d}", f"{round_}:{i}" * (3 + i % 7),
                   metadata={"i": i, "r": round_} if i % 3 == 0 else None,
                   expiration=clock.now_s + 3600 + i if i % 5 == 0 else None)
    for i in range(0, 300, 7):
        ns.delete(f"key/{i:04d}")
    if large:
        ns.put("big", "x" * 40_000)  # a location with size 0: the header is read for the size
    other = store.create_namespace("other")
    store.namespace("other").put("é", "unicode", metadata={"k": "ü"})
    flushed = store.create_namespace("flushed")
    store.namespace("flushed").put("gone", "1")
    store.flush_namespace(flushed.id)
    gone = store.create_namespace("gone")
    store.delete_namespace(gone.id)
    store.compact()
    ns.put("after", "compaction")  # the active segment has no hint and is scanned
    expected = snapshot(store)
    store.close()
    return expected, other


def _hint_paths(directory) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if n.endswith(hints.HINT_SUFFIX))


@pytest.mark.parametrize("large", [False, True])
def test_hint_load_and_scan_build_identical_state(open_store, clock, tmp_path, large):
    expected, _ = _compacted_store(open_store, clock, large=large)
    data = tmp_path / "data"
    assert _hint_paths(data)
    with_hints = open_store(fsync="no", segment_bytes=8192)
    assert with_hints.recovery.hints_loaded == len(_hint_paths(data))
    assert not with_hints.recovery.hint_problems
    state = internal_state(with_hints)
    assert snapshot(with_hints) == expected
    with_hints.close()
    for path in _hint_paths(data):
        os.rename(path, path + ".aside")
    scanned = open_store(fsync="no", segment_bytes=8192)
    assert scanned.recovery.hints_loaded == 0
    assert internal_state(scanned) == state
    assert snapshot(scanned) == expected
    scanned.close()
    for name in os.listdir(data):
        if name.endswith(".aside"):
            os.rename(data / name, data / name[:-len(".aside")])
    again = open_store(fsync="no", segment_bytes=8192)
    assert again.recovery.hints_loaded >= 1
    assert internal_state(again) == state


@pytest.mark.parametrize("where", ["header", "middle", "checksum", "truncate", "version"])
def test_damaged_hint_falls_back_to_scanning(open_store, clock, tmp_path, where):
    expected, _ = _compacted_store(open_store, clock)
    data = tmp_path / "data"
    path = _hint_paths(data)[0]
    size = os.path.getsize(path)
    if where == "header":
        flip_byte(path, 13)
    elif where == "middle":
        flip_byte(path, size // 2, 0x01)
    elif where == "checksum":
        flip_byte(path, size - 1)
    elif where == "version":
        flip_byte(path, 8, 0x02)
    else:
        os.truncate(path, size - 10)
    store = open_store(fsync="no", segment_bytes=8192)
    assert len(store.recovery.hint_problems) == 1
    assert str(int(os.path.basename(path)[:8])) in store.recovery.hint_problems[0]
    assert snapshot(store) == expected
    store._check()


def test_hint_for_a_segment_of_another_size_is_not_trusted(open_store, clock, tmp_path):
    expected, _ = _compacted_store(open_store, clock)
    data = tmp_path / "data"
    path = _hint_paths(data)[0]
    seg = path[:-len(hints.HINT_SUFFIX)] + ".seg"
    with open(seg, "ab") as f:
        f.write(b"\0" * 7)  # not a record: the scan reports it, the hint must not hide it
    store = open_store(fsync="no", segment_bytes=8192)
    assert store.recovery.hint_problems and "describes" in store.recovery.hint_problems[0]
    assert snapshot(store) == expected


def test_hint_without_its_segment_is_removed(open_store, clock, tmp_path):
    _compacted_store(open_store, clock)
    data = tmp_path / "data"
    stray = data / hints.hint_name(99)
    stray.write_bytes(b"stale")
    (data / (hints.hint_name(98) + ".tmp")).write_bytes(b"half")
    store = open_store(fsync="no", segment_bytes=8192)
    assert not stray.exists()
    assert not (data / (hints.hint_name(98) + ".tmp")).exists()
    assert store.recovery.compaction_notes


def test_hint_round_trip_keeps_every_field():
    from engine.index import pack_location
    writer = hints.HintWriter(7)
    writer.add(b"\0\1b", pack_location(7, 100, 40), 9, 0, 0, b"")
    writer.add(b"\0\1a", pack_location(7, 16, 84), 3, 0, 123456, b'{"m":1}')
    writer.add(b"\0\0" + b"f" * 32, pack_location(7, 140, 70_000), 1, 0x08, 0, b"")
    hint = hints.parse_hint(writer.encode(70_140), 7, 70_140)
    assert hint.keys == [b"\0\0" + b"f" * 32, b"\0\1a", b"\0\1b"]
    assert [hint.offset(i) for i in range(3)] == [140, 16, 100]
    assert [hint.size(i) for i in range(3)] == [0, 84, 40]
    assert list(hint.seqs) == [1, 3, 9]
    assert hint.flags == bytes([0x08, 0, 0])
    assert hint.expire_ms == {1: 123456}
    assert hint.metadata == {1: b'{"m":1}'}
    with pytest.raises(hints.HintError, match="name says"):
        hints.parse_hint(writer.encode(70_140), 8, 70_140)
    with pytest.raises(hints.HintError, match="describes"):
        hints.parse_hint(writer.encode(70_140), 7, 70_141)


def test_hints_whose_keys_overlap_are_merged_by_sequence_number(open_store, tmp_path):
    """Two hinted segments holding versions of the same keys (compaction never produces this,
    but a hint must not depend on it): the newer version wins, as with a scan."""
    from engine import record as rec
    from engine.index import pack_location
    from engine.segment import SegmentFile, scan

    # Plaintext: the hint is built below from the raw records (test_encryption.py covers
    # encrypted hints).
    store = open_store(fsync="no", segment_bytes=4096, encryption=False)
    ns = store.namespace()
    for i in range(100):
        ns.put(f"k{i}", "old", metadata={"v": 1})
    store.compact()
    for i in range(0, 100, 2):
        ns.put(f"k{i}", "new", metadata={"v": 2} if i % 4 else None)
    ns.delete("k1")
    sealed = store._active.seg_no
    store._rotate()  # seal it: a hint is only ever read for a sealed segment
    store.close()
    data = tmp_path / "data"
    path = str(data / f"{sealed:08d}.seg")
    seg = SegmentFile.open_existing(path, sealed, writable=False)
    writer = hints.HintWriter(sealed)
    for item in scan(seg, False):
        ikey, meta = rec.decode_index_key_meta(item.payload)
        size = rec.HEADER_SIZE + item.header.payload_len
        writer.add(ikey, pack_location(sealed, item.offset, size), item.header.seq,
                   item.header.flags, item.header.expire_ms, meta)
    writer.write(str(data / hints.hint_name(sealed)), seg.size)
    seg.close()

    hinted = open_store(fsync="no", segment_bytes=4096, encryption=False)
    assert hinted.recovery.hints_loaded >= 2 and not hinted.recovery.hint_problems
    state, seen = internal_state(hinted), snapshot(hinted)
    hinted.close()
    for name in os.listdir(data):
        if name.endswith(hints.HINT_SUFFIX):
            os.unlink(data / name)
    scanned = open_store(fsync="no", segment_bytes=4096, encryption=False)
    assert internal_state(scanned) == state
    assert snapshot(scanned) == seen
    assert seen["default"][b"k0"][0] == b"new" and b"k1" not in seen["default"]
