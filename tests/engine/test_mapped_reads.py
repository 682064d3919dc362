"""Segments are read through a read-only mapping of the file (a sealed one whole, the active one
up to what was written when it was last mapped): the same bytes, the same checks, the same
corruption reports as a ``pread``, and nothing left mapped after close."""

from __future__ import annotations

import os

import pytest

from engine.errors import CorruptionError
from engine.index import unpack_location
from kvtest_helpers import find_record, flip_byte


def fill(ns, count: int = 120) -> dict[str, str]:
    values = {f"key{i:03d}": f"value-{i}-" + "x" * 90 for i in range(count)}
    for key, value in values.items():
        ns.put(key, value)
    return values


def segment_of(store, ns, key: str):
    seg_no, _offset, _size = unpack_location(store.lookup(ns.number, key.encode()))
    return store._segments[seg_no]


def test_sealed_segments_are_mapped_and_read_back_exactly(open_store):
    # No read cache: every read below goes to the segment, through its mapping or pread.
    store = open_store(fsync="no", segment_bytes=4096, read_cache_bytes=0)
    ns = store.namespace()
    values = fill(ns)
    sealed = [seg for seg in store._segments.values() if seg.sealed]
    assert len(sealed) >= 3, "the test needs several sealed segments"
    assert all(seg.view is not None and len(seg.view) == seg.size for seg in sealed)
    assert store._active.view is None  # still growing: read with pread
    assert segment_of(store, ns, "key000").sealed
    for key, value in values.items():
        assert ns.get(key) == value
        assert ns.get_with_metadata(key)[0] == value
    assert ns.get([f"key{i:03d}" for i in range(100)]) == {
        f"key{i:03d}": values[f"key{i:03d}"] for i in range(100)}


def test_a_reopened_store_maps_every_segment_but_the_last(open_store, tmp_path):
    store = open_store(fsync="no", segment_bytes=4096, read_cache_bytes=0)
    values = fill(store.namespace())
    store.close()
    store = open_store(fsync="no", segment_bytes=4096, read_cache_bytes=0)
    numbers = sorted(store._segments)
    assert [store._segments[n].view is not None for n in numbers] == \
        [True] * (len(numbers) - 1) + [False]
    ns = store.namespace()
    assert all(ns.get(key) == value for key, value in values.items())


def test_a_flipped_byte_in_a_sealed_segment_is_caught_through_the_mapping(open_store):
    # The mapping shares the page cache with the file, so damage written through another
    # descriptor is what the next read sees, and the checksum catches it.
    store = open_store(fsync="no", segment_bytes=4096, read_cache_bytes=0)
    ns = store.namespace()
    values = fill(ns)
    assert segment_of(store, ns, "key005").view is not None
    path, record = find_record(store.path, b"key005")
    for offset, mask in ((record.offset + 40, 0x10), (record.end - 1, 0x01)):
        flip_byte(path, offset, mask)
        with pytest.raises(CorruptionError) as info:
            ns.get("key005")
        assert info.value.offset == record.offset
        assert ns.get("key004") == values["key004"] and ns.get("key006") == values["key006"]
        flip_byte(path, offset, mask)
        assert ns.get("key005") == values["key005"]


def test_compaction_and_close_unmap_what_they_retire(open_store):
    store = open_store(fsync="no", segment_bytes=4096, read_cache_bytes=0)
    ns = store.namespace()
    values = fill(ns)
    for i in range(0, 120, 2):  # half the keys dead: compaction has something to drop
        ns.delete(f"key{i:03d}")
        values.pop(f"key{i:03d}")
    before = [seg for seg in store._segments.values() if seg.sealed]
    store.compact()
    assert all(seg.seg_no not in store._segments for seg in before)
    after = [seg for seg in store._segments.values() if seg.sealed]
    assert after and all(seg.view is not None for seg in after)  # its outputs are mapped too
    assert all(ns.get(key) == value for key, value in values.items())
    store.close()
    assert all(seg.view is None and seg.fd == -1 for seg in before + after)


def test_a_segment_holding_only_its_header_is_not_mapped(tmp_path):
    # mmap refuses an empty length; a sealed segment with no record is read with pread.
    from engine.segment import SEGMENT_HEADER_SIZE, SegmentFile

    seg = SegmentFile.create(str(tmp_path), 1)
    seg.seal()
    try:
        assert seg.size == SEGMENT_HEADER_SIZE and seg.view is None
        assert seg.read(SEGMENT_HEADER_SIZE, 10) == b""
        assert len(seg.read(0, SEGMENT_HEADER_SIZE)) == SEGMENT_HEADER_SIZE
    finally:
        seg.close()
    assert os.path.exists(seg.path)


def test_the_active_segment_is_mapped_as_it_grows_and_reads_past_the_mapping_use_pread(
        open_store):
    store = open_store(fsync="no", read_cache_bytes=0)  # 64 MiB segments: one active segment
    ns = store.namespace()
    step = store._active.MAP_STEP
    value = os.urandom(3000)
    count = step // 3000 + 200  # past one step, and some records beyond the mapping
    for i in range(count):
        ns.put(f"k{i:05d}", value + i.to_bytes(4, "big"))
    active = store._active
    assert not active.sealed and active.view is not None
    mapped = len(active.view)
    assert step <= mapped < active.size  # a prefix of what was written, never more
    first, last = segment_of(store, ns, "k00000"), store.lookup(ns.number, f"k{count - 1:05d}".encode())
    assert first is active and unpack_location(last)[1] >= mapped  # the last one is not mapped
    for i in range(count):
        assert ns.get(f"k{i:05d}", type="bytes") == value + i.to_bytes(4, "big")
    # Damage inside the mapped part is what the next read sees.
    path, record = find_record(store.path, b"k00007")
    assert record.end <= mapped
    flip_byte(path, record.offset + 100, 0x01)
    with pytest.raises(CorruptionError):
        ns.get("k00007")
    flip_byte(path, record.offset + 100, 0x01)
    assert ns.get("k00007", type="bytes") == value + (7).to_bytes(4, "big")


def test_a_reopened_active_segment_is_mapped_as_far_as_recovery_kept_it(open_store):
    store = open_store(fsync="no", read_cache_bytes=0)
    ns = store.namespace()
    value = os.urandom(3000)
    for i in range(store._active.MAP_STEP // 3000 + 10):
        ns.put(f"k{i:05d}", value)
    store.close()
    store = open_store(fsync="no", read_cache_bytes=0)
    active = store._active
    assert active.view is not None and len(active.view) == active.size
    assert store.namespace().get("k00003", type="bytes") == value


def test_a_mapping_the_system_refuses_costs_only_speed(open_store, monkeypatch, caplog):
    # Address space or the map count can run out; the write that triggered the mapping already
    # succeeded, so it must still be acknowledged and readable (with pread).
    import engine.segment as segment_module

    store = open_store(fsync="no", read_cache_bytes=0)
    ns = store.namespace()
    value = os.urandom(3000)

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(segment_module.mmap, "mmap", refuse)
    count = store._active.MAP_STEP // 3000 + 50
    for i in range(count):
        ns.put(f"k{i:05d}", value)
    monkeypatch.undo()
    assert store._active.view is None
    # Logged, and tried again once per step of writes, not on every put.
    assert 1 <= caplog.text.count("could not map") <= 2
    assert all(ns.get(f"k{i:05d}", type="bytes") == value for i in range(0, count, 97))
    store.close()
    store = open_store(fsync="no", read_cache_bytes=0)
    assert store.namespace().get(f"k{count - 1:05d}", type="bytes") == value
