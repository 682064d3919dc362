"""Recovery and fault injection on real segment files: torn writes, bit rot, expired data, the
directory lock and malformed segment headers."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

from engine import (CorruptionError, NamespaceNotFoundError, Store, StoreError, StoreLockedError)
from kvtest_helpers import (REPO_ROOT, RECORD_HEADER_SIZE, FakeClock, copy_key_check, disk_records,
                            find_record, flip_byte, needs_writes_after_reopen, read_file,
                            segment_paths, shared_keys)

SMALL_SEGMENTS = 4096


def _open(path, clock, **kwargs) -> Store:
    return Store.open(str(path), clock=clock, **kwargs)


def _snapshot(directory) -> dict[str, bytes]:
    return {name: read_file(os.path.join(directory, name)) for name in sorted(os.listdir(directory))}


def _assert_state(ns, expected: dict) -> None:
    for key, value in expected.items():
        assert ns.get(key) == value, key


# --------------------------------------------------------------------------- (a) torn tail


def _store_with_last_record(path, clock) -> tuple[dict, str, object]:
    """A one-segment store whose last record is the key ``last``; returns
    ``(expected state without it, segment path, the last record)``."""
    expected = {}
    with _open(path, clock) as store:
        ns = store.namespace()
        for i in range(10):
            value = f"value-{i}-" + "v" * i
            ns.put(f"key{i}", value, metadata={"i": i} if i % 2 else None,
                   expiration_ttl=3600 if i % 3 == 0 else None)
            expected[f"key{i}"] = value
        ns.put("last", "L" * 64, metadata={"m": 1})
    seg = segment_paths(path)[-1]
    last = disk_records(seg)[-1]
    assert last.key == b"last"
    return expected, seg, last


def test_truncated_trailing_record_is_ignored_at_every_byte_offset(tmp_path, clock):
    expected, seg, last = _store_with_last_record(tmp_path / "src", clock)
    pristine = read_file(seg)
    assert len(pristine) == last.end
    for cut in range(last.offset, last.end):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        seg_copy = directory / os.path.basename(seg)
        seg_copy.write_bytes(pristine[:cut])
        keys = copy_key_check(tmp_path / "src", directory)
        store = _open(directory, clock, **keys)
        try:
            ns = store.namespace()
            assert ns.get("last") is None, cut
            _assert_state(ns, expected)
            assert [k["name"] for k in ns.list()["keys"]] == sorted(expected)
            assert store.recovery.corrupt == []
            if cut == last.offset:
                assert store.recovery.truncated == []  # the record is wholly absent: no damage
            else:
                [torn] = store.recovery.truncated
                assert (torn.seg_no, torn.offset, torn.length, torn.torn_tail) == \
                    (1, last.offset, cut - last.offset, True), cut
            assert os.path.getsize(seg_copy) == last.offset  # the torn bytes are cut off
            store._check()
        finally:
            store.close()
        shutil.rmtree(directory)


@needs_writes_after_reopen
def test_writes_after_dropping_a_torn_tail_survive_the_next_reopen(tmp_path, clock):
    expected, seg, last = _store_with_last_record(tmp_path / "src", clock)
    pristine = read_file(seg)
    for cut in range(last.offset, last.end):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        seg_copy = directory / os.path.basename(seg)
        seg_copy.write_bytes(pristine[:cut])
        keys = copy_key_check(tmp_path / "src", directory)
        with _open(directory, clock, **keys) as store:
            store.namespace().put("after", f"new-{cut}")
        with _open(directory, clock, **keys) as store:
            ns = store.namespace()
            assert store.recovery.truncated == [] and store.recovery.corrupt == [], cut
            assert ns.get("after") == f"new-{cut}"
            assert ns.get("last") is None
            _assert_state(ns, expected)
        # the new record sits exactly where the torn one began: no hole, no garbage
        records = disk_records(str(seg_copy))
        assert records[-1].key == b"after" and records[-1].offset == last.offset
        shutil.rmtree(directory)


def test_torn_tail_of_a_large_record_is_dropped(tmp_path, clock):
    src = tmp_path / "src"
    with _open(src, clock) as store:
        ns = store.namespace()
        ns.put("small", "s")
        ns.put("big", os.urandom(200_000))  # written with writev, located by its header
    seg = segment_paths(src)[-1]
    big = disk_records(seg)[-1]
    pristine = read_file(seg)
    for cut in (big.offset + 1, big.offset + RECORD_HEADER_SIZE, big.offset + 4096,
                big.offset + big.size // 2, big.end - 1):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / os.path.basename(seg)).write_bytes(pristine[:cut])
        keys = copy_key_check(src, directory)
        with _open(directory, clock, **keys) as store:
            assert store.namespace().get("big") is None
            assert store.namespace().get("small") == "s"
            assert [d.offset for d in store.recovery.truncated] == [big.offset]


def test_torn_tail_in_the_last_of_several_segments_leaves_sealed_segments_alone(tmp_path, clock):
    expected = {}
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        ns = store.namespace()
        for i in range(80):
            expected[f"key{i:03d}"] = f"value{i}-" + "x" * 100
            ns.put(f"key{i:03d}", expected[f"key{i:03d}"])
    segs = segment_paths(tmp_path)
    assert len(segs) >= 3
    sealed = {path: read_file(path) for path in segs[:-1]}
    last = disk_records(segs[-1])[-1]
    os.truncate(segs[-1], last.offset + 10)
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        [torn] = store.recovery.truncated
        assert (torn.seg_no, torn.offset) == (len(segs), last.offset)
        lost = last.key.decode()
        assert store.namespace().get(lost) is None
        del expected[lost]
        _assert_state(store.namespace(), expected)
    assert {path: read_file(path) for path in segs[:-1]} == sealed


def test_torn_tombstone_brings_back_the_unacknowledged_delete(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        store.namespace().put("key", "value")
        store.namespace().delete("key")
    seg = segment_paths(tmp_path)[-1]
    tomb = disk_records(seg)[-1]
    assert tomb.flags & 0x01
    os.truncate(seg, tomb.end - 1)
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") == "value"
        assert len(store.recovery.truncated) == 1


# --------------------------------------------------------------------------- (b) sealed segments


def _store_in_small_segments(path, clock, count: int = 60) -> dict:
    expected = {}
    with _open(path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        ns = store.namespace()
        for i in range(count):
            key = f"key{i:03d}"
            expected[key] = f"value-{i}-" + "x" * 150
            ns.put(key, expected[key], metadata={"i": i})
    return expected


# offsets inside a record: checksum, magic, flags, payload length (low and high byte), seq,
# expiration, namespace number, key, value (last byte)
_FLIP_POSITIONS = [("checksum", 0, 0x01), ("magic", 8, 0x01), ("flags", 10, 0x01),
                   ("payload_len", 12, 0x01), ("payload_len_high", 15, 0x80), ("seq", 16, 0x01),
                   ("expiration", 24, 0x01), ("namespace", 32, 0x01), ("key", 38, 0x01),
                   ("value", -1, 0x01)]


def test_flipped_byte_in_a_sealed_segment_is_reported_and_never_served(tmp_path, clock):
    src = tmp_path / "src"
    expected = _store_in_small_segments(src, clock)
    segs = segment_paths(src)
    assert len(segs) >= 3
    users = [r for r in disk_records(segs[0]) if not r.is_catalog]
    targets = [users[0], users[len(users) // 2], users[-1]]  # the last one ends the segment
    assert targets[-1].end == os.path.getsize(segs[0])
    for target in targets:
        key = target.key.decode()
        for name, position, mask in _FLIP_POSITIONS:
            directory = tmp_path / f"{key}-{name}"
            shutil.copytree(src, directory)
            for name in os.listdir(directory):  # this is about the scan: no hint to load
                if name.endswith(".hint"):
                    os.unlink(directory / name)
            seg = segment_paths(directory)[0]
            flip_byte(seg, target.offset + position if position >= 0 else target.end - 1, mask)
            with _open(directory, clock, segment_bytes=SMALL_SEGMENTS,
                       **shared_keys(src)) as store:
                ns = store.namespace()
                assert store.recovery.truncated == [], (key, name)
                [damage] = store.recovery.corrupt
                assert (damage.seg_no, damage.offset) == (1, target.offset), (key, name)
                assert damage.length >= target.size or damage.offset + damage.length == \
                    os.path.getsize(seg)
                assert not damage.torn_tail
                try:
                    assert ns.get(key) is None, (key, name)
                except CorruptionError:
                    pass
                others = {k: v for k, v in expected.items() if k != key}
                _assert_state(ns, others)
                listed = [k["name"] for k in ns.list()["keys"]]
                assert set(listed) - {key} == set(others)
                store._check()
            shutil.rmtree(directory)


def test_corrupt_newest_record_never_resurrects_an_older_value(tmp_path, clock):
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        ns = store.namespace()
        ns.put("key", "old value")
        ns.put("gone", "deleted value")
        for i in range(40):
            ns.put(f"filler{i:03d}", "x" * 150)
        ns.put("key", "new value")
        ns.put("between", "keeps the two damaged records apart")
        ns.delete("gone")
        for i in range(40):
            ns.put(f"more{i:03d}", "x" * 150)
    for key, position in ((b"key", -1), (b"gone", 20)):
        path, record = find_record(tmp_path, key)
        assert path != segment_paths(tmp_path)[-1]  # sealed
        flip_byte(path, record.end - 1 if position < 0 else record.offset + position)
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        assert len(store.recovery.corrupt) == 2
        ns = store.namespace()
        for key, stale in (("key", "old value"), ("gone", "deleted value")):
            try:
                assert ns.get(key) != stale
            except CorruptionError:
                pass


def test_corrupt_catalog_record_gives_the_same_answer_at_every_reopen(tmp_path, clock):
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        for i in range(30):
            store.namespace().put(f"key{i:03d}", "x" * 150)
    seg = segment_paths(tmp_path)[0]
    catalog = disk_records(seg)[0]
    assert catalog.is_catalog
    flip_byte(seg, catalog.end - 1)
    answers = []
    for _ in range(2):
        with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
            assert store.recovery.corrupt and store.recovery.corrupt[0].offset == catalog.offset
            answers.append(store.namespace().get("key000"))
    assert answers[0] == answers[1]


# --------------------------------------------------------------------------- (c) bit rot while open


def test_flipped_byte_while_open_raises_corruption_on_read(open_store):
    # fsync="always": the records are on disk when put returns.  No read cache: every read
    # goes to the file (test_read_cache.py covers what a cached value does).
    store = open_store(read_cache_bytes=0)
    ns = store.namespace()
    for i in range(5):
        ns.put(f"key{i}", f"value{i}", metadata={"i": i})
    path, record = find_record(store.path, b"key3")
    for name, position, mask in _FLIP_POSITIONS:
        offset = record.offset + position if position >= 0 else record.end - 1
        flip_byte(path, offset, mask)
        with pytest.raises(CorruptionError) as info:
            ns.get("key3")
        assert (info.value.segment, info.value.offset) == (1, record.offset), name
        assert str(info.value).startswith("KV GET failed: 500 "), name
        with pytest.raises(CorruptionError):
            ns.get_with_metadata("key3")
        with pytest.raises(CorruptionError):
            ns.get(["key2", "key3"])
        assert ns.get("key2") == "value2" and ns.get("key4") == "value4"
        assert "key3" in [k["name"] for k in ns.list()["keys"]]  # list never reads values
        flip_byte(path, offset, mask)  # heal it: uncached reads verify every time
        assert ns.get("key3") == "value3", name


def test_flipped_byte_in_a_large_record_while_open_raises_corruption(open_store):
    store = open_store()
    ns = store.namespace()
    value = os.urandom(100_000)
    ns.put("big", value)
    ns.put("after", "a")
    path, record = find_record(store.path, b"big")
    for offset, mask in ((record.offset + 40_000, 0x04), (record.offset + 15, 0x80),
                         (record.offset + 13, 0x01), (record.offset + 8, 0xFF)):
        flip_byte(path, offset, mask)
        with pytest.raises(CorruptionError):
            ns.get("big", "bytes")
        with pytest.raises(CorruptionError):
            ns.get("big", "stream")
        assert ns.get("after") == "a"
        flip_byte(path, offset, mask)
    assert ns.get("big", "bytes") == value


def test_delete_and_overwrite_of_a_corrupt_key_work(open_store):
    store = open_store(read_cache_bytes=0)  # every read goes to the file
    ns = store.namespace()
    ns.put("a", "1")
    ns.put("b", "2")
    path, record = find_record(store.path, b"a")
    flip_byte(path, record.end - 1)
    with pytest.raises(CorruptionError):
        ns.get("a")
    ns.put("a", "fresh")
    assert ns.get("a") == "fresh"
    path, record = find_record(store.path, b"b")
    flip_byte(path, record.end - 1)
    ns.delete("b")
    assert ns.get("b") is None


# --------------------------------------------------------------------------- (d) damage mid-log


def test_corruption_inside_the_last_segment_is_skipped_not_truncated(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        for i in range(10):
            store.namespace().put(f"key{i}", f"value{i}")
    seg = segment_paths(tmp_path)[-1]
    size = os.path.getsize(seg)
    _, victim = find_record(tmp_path, b"key4")
    flip_byte(seg, victim.offset + 40)
    with _open(tmp_path, clock) as store:
        ns = store.namespace()
        assert store.recovery.truncated == []
        [damage] = store.recovery.corrupt
        assert (damage.seg_no, damage.offset, damage.length, damage.torn_tail) == \
            (1, victim.offset, victim.size, False)
        assert ns.get("key4") is None
        for i in (0, 1, 2, 3, 5, 6, 7, 8, 9):
            assert ns.get(f"key{i}") == f"value{i}"
        assert os.path.getsize(seg) == size  # records after the damage were kept


def test_damaged_length_field_mid_log_resynchronises_on_the_next_record(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        for i in range(10):
            store.namespace().put(f"key{i}", f"value{i}")
    seg = segment_paths(tmp_path)[-1]
    _, victim = find_record(tmp_path, b"key2")
    flip_byte(seg, victim.offset + 14, 0x10)  # payload_len += 1 MiB: points past the file end
    with _open(tmp_path, clock) as store:
        assert [(d.offset, d.torn_tail) for d in store.recovery.corrupt] == [(victim.offset, False)]
        assert store.recovery.truncated == []
        assert [store.namespace().get(f"key{i}") for i in range(10)] == \
            [f"value{i}" if i != 2 else None for i in range(10)]


@needs_writes_after_reopen
def test_store_with_mid_log_corruption_accepts_writes_that_survive_reopen(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        for i in range(10):
            store.namespace().put(f"key{i}", f"value{i}")
    _, victim = find_record(tmp_path, b"key4")
    flip_byte(segment_paths(tmp_path)[-1], victim.offset + 40)
    with _open(tmp_path, clock) as store:
        store.namespace().put("new", "after damage")
        store.namespace().put("key4", "rewritten")
    with _open(tmp_path, clock) as store:
        ns = store.namespace()
        assert [d.offset for d in store.recovery.corrupt] == [victim.offset]
        assert store.recovery.truncated == []
        assert ns.get("new") == "after damage"
        assert ns.get("key4") == "rewritten"
        assert ns.get("key9") == "value9"


def test_damage_of_the_final_record_of_the_log_counts_as_a_torn_write(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        store.namespace().put("first", "1")
        store.namespace().put("final", "2")
    seg = segment_paths(tmp_path)[-1]
    _, final = find_record(tmp_path, b"final")
    flip_byte(seg, final.end - 1)
    with _open(tmp_path, clock) as store:
        assert [d.offset for d in store.recovery.truncated] == [final.offset]
        assert store.recovery.corrupt == []
        assert store.namespace().get("final") is None
        assert store.namespace().get("first") == "1"


# --------------------------------------------------------------------------- (e) expiry


def test_recovery_does_not_revive_expired_records(tmp_path):
    clock = FakeClock()
    with _open(tmp_path, clock) as store:
        ns = store.namespace()
        ns.put("ttl", "short", expiration_ttl=60)
        ns.put("later", "long", expiration_ttl=3600, metadata={"m": 1})
        ns.put("keep", "forever")
        ns.put("overwritten", "v1 without expiration")
        ns.put("overwritten", "v2 expiring", expiration_ttl=60)
    clock.advance(61_000)
    with _open(tmp_path, clock) as store:
        ns = store.namespace()
        assert ns.get("ttl") is None
        assert ns.get("overwritten") is None  # the older, non-expiring record stays dead
        assert ns.get("keep") == "forever"
        assert ns.get_with_metadata("later") == ("long", {"m": 1}, None, 1000 + 3600)
        assert ns.list() == {"keys": [{"name": "keep"},
                                      {"name": "later", "expiration": 4600, "metadata": {"m": 1}}],
                             "list_complete": True}
        assert store.key_count() == 2
        assert store.stats()["keys_with_expiration"] == 1
        store._check()


def test_key_expiring_exactly_at_reopen_time_is_gone(tmp_path):
    clock = FakeClock()
    with _open(tmp_path, clock) as store:
        store.namespace().put("key", "value", expiration=1100)
    clock.now_ms = 1_100_000 - 1
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") == "value"
    clock.now_ms = 1_100_000
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") is None
        assert store.recovery.live_keys == 0


def test_expired_key_stays_gone_after_reopen_even_if_it_expired_while_open(tmp_path):
    clock = FakeClock()
    with _open(tmp_path, clock) as store:
        ns = store.namespace()
        ns.put("key", "value", expiration_ttl=60)
        clock.advance(60_000)
        assert ns.get("key") is None
        assert store.reap_expired() == 0  # get already dropped it
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") is None


# --------------------------------------------------------------------------- (f) latest state


def _random_history(ns, rng: random.Random, clock, steps: int, model: dict | None = None) -> dict:
    """Random puts, overwrites and deletes over 40 keys; returns the expected live state as
    ``{key: (value, metadata, expiration_s)}`` (updating ``model`` when given)."""
    model = {} if model is None else model
    for step in range(steps):
        key = f"k{rng.randrange(40):02d}"
        roll = rng.random()
        if roll < 0.25:
            ns.delete(key)
            model.pop(key, None)
        else:
            value = f"{key}@{step}:" + "y" * rng.randrange(0, 300)
            metadata = {"step": step} if rng.random() < 0.5 else None
            ttl = 3600 + step if rng.random() < 0.3 else None
            ns.put(key, value, metadata=metadata, expiration_ttl=ttl)
            model[key] = (value, metadata, clock.now_s + ttl if ttl else None)
    return model


def _assert_model(store, model: dict) -> None:
    ns = store.namespace()
    for i in range(40):
        key = f"k{i:02d}"
        got = ns.get_with_metadata(key)
        if key in model:
            value, metadata, expiration = model[key]
            assert (got.value, got.metadata, got.expiration) == (value, metadata, expiration), key
        else:
            assert got == (None, None, None, None), key
    listed = ns.list()
    assert [k["name"] for k in listed["keys"]] == sorted(model)
    assert store.key_count() == len(model)
    store._check()


@needs_writes_after_reopen
def test_write_after_reopen_lands_after_the_existing_records(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        store.namespace().put("before", "1")
    seg = segment_paths(tmp_path)[-1]
    size = os.path.getsize(seg)
    header = read_file(seg)[:16]
    with _open(tmp_path, clock) as store:
        store.namespace().put("after", "2")
        assert store.namespace().get("after") == "2"
    assert read_file(seg)[:16] == header
    records = disk_records(seg)
    assert (records[-1].key, records[-1].offset) == (b"after", size)
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("before") == "1"
        assert store.namespace().get("after") == "2"


def test_overwrites_and_deletes_recover_to_the_latest_state_across_segments(tmp_path, clock):
    rng = random.Random(1234)
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        model = _random_history(store.namespace(), rng, clock, 400)
        _assert_model(store, model)
    assert len(segment_paths(tmp_path)) >= 5
    for _ in range(2):
        with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
            assert store.recovery.corrupt == [] and store.recovery.truncated == []
            assert store.recovery.segments == len(segment_paths(tmp_path))
            _assert_model(store, model)


def test_recovery_with_a_larger_segment_size_than_written_with(tmp_path, clock):
    rng = random.Random(99)
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        model = _random_history(store.namespace(), rng, clock, 200)
    with _open(tmp_path, clock) as store:
        _assert_model(store, model)


@needs_writes_after_reopen
def test_history_spanning_several_sessions_recovers_to_the_latest_state(tmp_path, clock):
    rng = random.Random(4321)
    model: dict = {}
    for _ in range(4):
        with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
            _assert_model(store, model)
            _random_history(store.namespace(), rng, clock, 150, model)
            _assert_model(store, model)
    with _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS) as store:
        _assert_model(store, model)
    assert len(segment_paths(tmp_path)) >= 5


# --------------------------------------------------------------------------- (g) namespaces


def test_deleted_namespace_stays_deleted_after_reopen(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        info = store.create_namespace("scratch")
        scratch = store.namespace("scratch")
        for i in range(20):
            scratch.put(f"key{i}", f"value{i}")
        store.namespace().put("kept", "default value")
        store.delete_namespace(info.id)
    with _open(tmp_path, clock) as store:
        assert [n.title for n in store.list_namespaces()] == ["default"]
        with pytest.raises(NamespaceNotFoundError):
            store.namespace("scratch")
        with pytest.raises(NamespaceNotFoundError):
            store.get_namespace(info.id)
        assert store.key_count() == 1
        assert store.namespace().get("kept") == "default value"
        store._check()


def test_recreated_namespace_is_empty_after_reopen(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        old = store.create_namespace("scratch")
        store.namespace("scratch").put("key", "old")
        store.delete_namespace(old.id)
        new = store.create_namespace("scratch")
        assert new.id != old.id and new.number != old.number
        assert store.namespace("scratch").get("key") is None
        store.namespace("scratch").put("other", "new")
    with _open(tmp_path, clock) as store:
        ns = store.namespace("scratch")
        assert ns.id == new.id
        assert ns.get("key") is None
        assert ns.list() == {"keys": [{"name": "other"}], "list_complete": True}


@needs_writes_after_reopen
def test_namespace_recreated_after_reopen_is_empty(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        info = store.create_namespace("scratch")
        store.namespace("scratch").put("key", "old")
        store.delete_namespace(info.id)
    with _open(tmp_path, clock) as store:
        again = store.create_namespace("scratch")
        assert store.namespace("scratch").list() == {"keys": [], "list_complete": True}
        assert store.namespace("scratch").get("key") is None
        assert again.number != info.number
    with _open(tmp_path, clock) as store:
        assert store.namespace("scratch").get("key") is None
        assert store.namespace("scratch").list()["keys"] == []


def test_flushed_namespace_stays_empty_after_reopen(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        info = store.create_namespace("cache")
        ns = store.namespace("cache")
        for i in range(10):
            ns.put(f"key{i}", "x")
        assert store.flush_namespace(info.id) == 10
        ns.put("after-flush", "y")
    with _open(tmp_path, clock) as store:
        ns = store.namespace("cache")
        assert ns.id == info.id
        assert ns.list() == {"keys": [{"name": "after-flush"}], "list_complete": True}
        store._check()


# --------------------------------------------------------------------------- (h) the lock


def test_second_open_in_the_same_process_is_refused_and_damages_nothing(tmp_path, clock):
    first = _open(tmp_path, clock)
    try:
        first.namespace().put("key", "value")
        before = _snapshot(tmp_path)
        with pytest.raises(StoreLockedError) as info:
            _open(tmp_path, clock)
        assert f"pid {os.getpid()}" in str(info.value)
        assert _snapshot(tmp_path) == before
        first.namespace().put("key2", "value2")  # the holder is unaffected
        assert first.namespace().get("key") == "value"
    finally:
        first.close()
    with _open(tmp_path, clock) as store:  # released on close
        assert store.namespace().get("key2") == "value2"


_TRY_OPEN = textwrap.dedent("""
    import sys
    from engine import Store, StoreLockedError
    try:
        Store.open(sys.argv[1])
    except StoreLockedError as exc:
        print("locked:", exc)
        sys.exit(3)
    print("opened")
""")


def test_second_open_from_another_process_is_refused_and_damages_nothing(tmp_path, clock):
    with _open(tmp_path, clock) as store:
        store.namespace().put("key", "value")
        before = _snapshot(tmp_path)
        proc = subprocess.run([sys.executable, "-c", _TRY_OPEN, str(tmp_path)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert f"pid {os.getpid()}" in proc.stdout
        assert _snapshot(tmp_path) == before
        assert store.namespace().get("key") == "value"
    proc = subprocess.run([sys.executable, "-c", _TRY_OPEN, str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "opened" in proc.stdout, proc.stderr


def test_open_is_refused_while_another_process_holds_the_store(tmp_path, clock):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from engine import Store
            store = Store.open(sys.argv[1])
            store.namespace().put("from-child", "yes")
            print("ready", flush=True)
            sys.stdin.readline()
            store.close()
        """), str(tmp_path)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as info:
            _open(tmp_path, clock)
        assert f"pid {holder.pid}" in str(info.value)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("from-child") == "yes"


def test_refused_open_leaves_no_thread_behind(tmp_path, clock):
    with _open(tmp_path, clock):
        before = threading.active_count()
        for _ in range(3):
            with pytest.raises(StoreLockedError):
                _open(tmp_path, clock, fsync="everysec")
        assert threading.active_count() == before


# --------------------------------------------------------------------------- (i) bad headers


def _store_with_one_key(path, clock) -> str:
    with _open(path, clock) as store:
        store.namespace().put("key", "value")
    return segment_paths(path)[0]


def test_segment_with_wrong_magic_is_refused_with_a_clear_error(tmp_path, clock):
    seg = _store_with_one_key(tmp_path, clock)
    flip_byte(seg, 0, 0x20)  # "EDGEKVSG" -> "eDGEKVSG"
    with pytest.raises(StoreError) as info:
        _open(tmp_path, clock)
    assert not isinstance(info.value, StoreLockedError)
    assert "not an edgekv segment" in str(info.value)
    assert os.path.basename(seg) in str(info.value)
    flip_byte(seg, 0, 0x20)  # repaired: the failed open released the lock and changed nothing
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") == "value"


def test_segment_with_unknown_format_version_is_refused_with_a_clear_error(tmp_path, clock):
    seg = _store_with_one_key(tmp_path, clock)
    flip_byte(seg, 8, 0x03)  # version 1 -> 2
    before = read_file(seg)
    with pytest.raises(StoreError) as info:
        _open(tmp_path, clock)
    assert "format version 2" in str(info.value)
    assert read_file(seg) == before


def test_segment_whose_header_number_disagrees_with_its_name_is_refused(tmp_path, clock):
    seg = _store_with_one_key(tmp_path, clock)
    os.rename(seg, os.path.join(tmp_path, "00000007.seg"))
    with pytest.raises(StoreError) as info:
        _open(tmp_path, clock)
    assert "says it is number 1" in str(info.value)


def test_bad_header_in_a_sealed_segment_is_refused_too(tmp_path, clock):
    _store_in_small_segments(tmp_path, clock, count=40)
    segs = segment_paths(tmp_path)
    assert len(segs) >= 2
    flip_byte(segs[0], 3)
    with pytest.raises(StoreError, match="not an edgekv segment"):
        _open(tmp_path, clock, segment_bytes=SMALL_SEGMENTS)


def test_files_that_are_not_segments_are_ignored(tmp_path, clock):
    _store_with_one_key(tmp_path, clock)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "abc.seg").write_bytes(b"junk")
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") == "value"


def test_empty_last_segment_from_a_crash_during_rotation_is_tolerated(tmp_path, clock):
    _store_with_one_key(tmp_path, clock)
    (tmp_path / "00000002.seg").write_bytes(b"")
    with _open(tmp_path, clock) as store:
        assert store.namespace().get("key") == "value"
