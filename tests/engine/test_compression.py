"""zstd compression of large values: only when it saves space, flagged per record, transparent to
every read path (fast get, full read, recovery scan, hint files, compaction)."""

from __future__ import annotations

import json
import os

import pytest
import xxhash

from engine import CorruptionError, Store
from engine.codec import DEFAULT_COMPRESSION_THRESHOLD
from kvtest_helpers import (RECORD_HEADER, RECORD_HEADER_SIZE, disk_records, find_record,
                            read_file, segment_paths)

FLAG_COMPRESSED = 0x02
JSON_VALUE = json.dumps([{"id": i, "name": f"user-{i}", "email": f"user-{i}@example.com",
                          "tags": ["alpha", "beta"]} for i in range(40)])


def _record_of(directory, key: bytes):
    return find_record(directory, key)[1]


@pytest.mark.parametrize("encryption", [True, False])
def test_compressible_values_are_stored_compressed_and_read_back(open_store, tmp_path,
                                                                 encryption):
    store = open_store(fsync="no", encryption=encryption)
    ns = store.namespace()
    ns.put("json", JSON_VALUE, metadata={"kind": "json"})
    ns.put("bytes", b"\x00\x01" * 5000)
    record = _record_of(store.path, b"json")
    assert record.flags & FLAG_COMPRESSED
    assert record.size < len(JSON_VALUE) // 3  # a real saving, not a flag
    assert _record_of(store.path, b"bytes").flags & FLAG_COMPRESSED
    for reader in (lambda: ns.get("json"),  # the lock-free fast path
                   lambda: ns.get_with_metadata("json").value,  # the full path
                   lambda: ns.get(["json"])["json"]):  # bulk
        assert reader() == JSON_VALUE
    assert ns.get("bytes", "bytes") == b"\x00\x01" * 5000
    store.close()
    store = open_store(fsync="no", encryption=encryption)  # recovery by scanning
    assert store.namespace().get("json") == JSON_VALUE
    store.compact()
    store.close()
    store = open_store(fsync="no", encryption=encryption)  # recovery from hint files
    assert store.recovery.hints_loaded >= 1 and not store.recovery.hint_problems
    ns = store.namespace()
    assert ns.get("json") == JSON_VALUE and ns.get_with_metadata("json").metadata == {
        "kind": "json"}
    assert _record_of(store.path, b"json").flags & FLAG_COMPRESSED  # compaction kept it


def test_incompressible_and_small_values_are_stored_raw(open_store):
    store = open_store(fsync="no")
    ns = store.namespace()
    noise = os.urandom(8000)
    ns.put("noise", noise)
    ns.put("small", "a" * (DEFAULT_COMPRESSION_THRESHOLD - 1))  # compressible, below threshold
    assert not _record_of(store.path, b"noise").flags & FLAG_COMPRESSED
    assert not _record_of(store.path, b"small").flags & FLAG_COMPRESSED
    assert ns.get("noise", "bytes") == noise


def test_threshold_zero_turns_compression_off_and_a_store_reads_either_way(open_store, tmp_path):
    store = open_store(fsync="no", compression_threshold=0)
    store.namespace().put("json", JSON_VALUE)
    assert not _record_of(store.path, b"json").flags & FLAG_COMPRESSED
    store.close()
    store = open_store(fsync="no", compression_threshold=64)
    store.namespace().put("json2", JSON_VALUE)
    assert _record_of(store.path, b"json2").flags & FLAG_COMPRESSED
    store.close()
    store = open_store(fsync="no", compression_threshold=0)  # reads compressed records too
    assert store.namespace().get("json2") == JSON_VALUE
    assert store.encryption_info()["compression_threshold"] == 0


def test_after_many_incompressible_values_compressible_ones_are_compressed_again(open_store):
    store = open_store(fsync="no")
    ns = store.namespace()
    for i in range(300):
        ns.put(f"noise{i}", os.urandom(2000))
    for i in range(70):  # the back-off tries at least one value in 64
        ns.put(f"json{i}", JSON_VALUE)
    compressed = [r.key for path in segment_paths(store.path) for r in disk_records(path)
                  if r.flags & FLAG_COMPRESSED]
    first = 70 - len(compressed)
    assert first <= 64  # at most 63 values are skipped before the next try
    # one success resets the back-off: every value after it is compressed
    assert compressed == [f"json{i}".encode() for i in range(first, 70)]
    assert all(ns.get(f"json{i}") == JSON_VALUE for i in range(70))


def test_a_compressed_value_that_does_not_decompress_is_corruption(open_store):
    """Plaintext and checksum recomputed, so only zstd can notice: reported like a bad checksum."""
    store = open_store(encryption=False, read_cache_bytes=0)  # every read goes to the file
    ns = store.namespace()
    ns.put("json", JSON_VALUE)
    path, record = find_record(store.path, b"json")
    data = bytearray(read_file(path))
    end = record.end
    data[end - 30:end] = b"\xff" * 30  # wreck the zstd frame
    data[record.offset:record.offset + 8] = xxhash.xxh3_64_intdigest(
        bytes(data[record.offset + 8:end])).to_bytes(8, "little")
    assert RECORD_HEADER.unpack_from(data, record.offset)[2] & FLAG_COMPRESSED
    with open(path, "r+b") as f:
        f.write(data)
    with pytest.raises(CorruptionError) as info:
        ns.get("json")
    assert info.value.offset == record.offset
    with pytest.raises(CorruptionError):
        ns.get_with_metadata("json")
    assert RECORD_HEADER_SIZE == 32


def test_large_values_are_compressed_too(open_store):
    store = open_store(fsync="no")
    big = ("0123456789abcdef" * 8192) * 4  # 512 KiB, past the writev threshold
    store.namespace().put("big", big)
    record = _record_of(store.path, b"big")
    assert record.flags & FLAG_COMPRESSED and record.size < 20_000
    assert store.namespace().get("big") == big
    with Store.open(store.path + "-copy", fsync="no") as other:
        other.namespace().put("big", big.encode())
        assert other.namespace().get("big", "bytes") == big.encode()


def test_the_compression_level_trades_space_for_speed_and_any_level_reads_any_record(
        open_store, tmp_path):
    """Level 1 entropy-codes literals, so text of a small alphabet shrinks; the default, a
    negative ("fast") level, does not, so the same value is stored raw, while repetitive text
    still shrinks.  The level is a writing choice only: a store reads what any level wrote."""
    import random

    rng = random.Random(7)
    printable = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                 b"+/=_-:;<>?@[]^`") for _ in range(4096))
    store = open_store(path=tmp_path / "one", fsync="no", compression_level=1)
    store.namespace().put("v", printable)
    assert _record_of(store.path, b"v").flags & FLAG_COMPRESSED
    assert store.encryption_info()["compression_level"] == 1
    store.close()
    fast = open_store(path=tmp_path / "one", fsync="no")
    assert fast.encryption_info()["compression_level"] == -1  # the default
    ns = fast.namespace()
    ns.put("json", JSON_VALUE)  # repetitive text still shrinks at a fast level
    assert _record_of(fast.path, b"json").flags & FLAG_COMPRESSED
    ns.put("w", printable)
    assert not _record_of(fast.path, b"w").flags & FLAG_COMPRESSED
    assert ns.get("v", type="bytes") == ns.get("w", type="bytes") == printable
    assert ns.get("json") == JSON_VALUE


@pytest.mark.parametrize("level", [-8, 23, 1.5, "1"])
def test_a_compression_level_out_of_range_is_refused_naming_it(open_store, tmp_path, level):
    with pytest.raises(ValueError, match=f"from -7 to 22, got {level!r}"):
        open_store(path=tmp_path / f"bad{level}", compression_level=level)
