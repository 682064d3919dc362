"""Store.batch(): single puts coalesced into one file write, readable before it."""

from __future__ import annotations

import os

import pytest

from engine import Store


def _disk_size(store: Store) -> int:
    return os.fstat(store._active.fd).st_size


def test_batched_puts_are_readable_before_they_reach_the_file(tmp_path):
    store = Store.open(tmp_path / "d", fsync="no")
    ns = store.namespace()
    before = _disk_size(store)
    with store.batch():
        for i in range(100):
            ns.put(f"k{i}", f"value-{i}")
        assert _disk_size(store) == before  # nothing written yet...
        assert ns.get("k42") == "value-42"  # ...yet every put is visible
        assert ns.get_with_metadata("k7").value == "value-7"
        assert ns.list(limit=3)["keys"][0]["name"] == "k0"
    assert _disk_size(store) > before
    store.close()
    store = Store.open(tmp_path / "d")
    assert store.namespace().get("k99") == "value-99"
    assert store.key_count() == 100
    store.close()


def test_batch_keeps_file_order_with_bulk_writes_and_rotation(tmp_path):
    store = Store.open(tmp_path / "d", fsync="no", segment_bytes=4096)
    ns = store.namespace()
    with store.batch():
        for i in range(300):
            ns.put(f"k{i:03d}", "x" * 40)
            if i % 50 == 0:
                ns.bulk_put([{"key": f"b{i}", "value": "bulk"}])
                ns.delete(f"k{i:03d}")
        with store.batch():  # nested batches extend the outer one
            ns.put("nested", "yes")
    expected = {k: ns.get(k) for k in [f"k{i:03d}" for i in range(300)] + ["nested", "b50"]}
    store._check()
    store.close()
    store = Store.open(tmp_path / "d")
    ns = store.namespace()
    assert {k: ns.get(k) for k in expected} == expected
    assert ns.get("k050") is None and ns.get("b50") == "bulk"
    assert store.recovery.corrupt == [] and store.recovery.truncated == []
    store.close()


def test_fsync_inside_a_batch_writes_the_buffer_first(tmp_path):
    store = Store.open(tmp_path / "d", fsync="always")
    ns = store.namespace()
    with store.batch():
        seq = ns.put_raw(b"a", b"1", durable=False)
        store.wait_durable(seq)  # the sync flushes the buffer before it fsyncs
        assert store.durable_seq >= seq
        assert _disk_size(store) > 16
    store.close()


# --------------------------------------------------------------------------- deferred puts


def test_deferred_puts_are_readable_at_once_and_written_by_flush_writes(tmp_path):
    """What the server does with one event-loop iteration's SETs: put_one(deferred=True)
    applies each put, and flush_writes() writes them all in one go before any is acknowledged."""
    store = Store.open(tmp_path / "d", fsync="no")
    ns = store.namespace()
    before = _disk_size(store)
    for i in range(50):
        store.put_one(ns.number, b"d%02d" % i, b"value-%d" % i, durable=False, deferred=True)
    assert _disk_size(store) == before  # nothing in the file yet...
    assert ns.get("d07") == "value-7" and store.key_count() == 50  # ...but every put applied
    store.flush_writes()
    written = _disk_size(store)
    assert written > before
    store.flush_writes()  # nothing left: no second write
    assert _disk_size(store) == written
    store.close()
    store = Store.open(tmp_path / "d")
    assert store.namespace().get("d49") == "value-49" and store.key_count() == 50
    assert store.recovery.corrupt == [] and store.recovery.truncated == []
    store.close()


def test_a_put_that_is_not_deferred_writes_the_deferred_ones_first(tmp_path):
    """File order is offset order: an ordinary write (another client's, or the REST API's)
    never lands behind records still buffered, and returns only once those are written too."""
    store = Store.open(tmp_path / "d", fsync="no", encryption=False)
    ns = store.namespace()
    store.put_one(ns.number, b"first", b"1", durable=False, deferred=True)
    store.put_one(ns.number, b"second", b"2", durable=False)
    on_disk = open(store._active.path, "rb").read()
    assert b"first" in on_disk and on_disk.index(b"first") < on_disk.index(b"second")
    ns.delete("first")  # the general write path flushes the buffer first, too
    store.put_one(ns.number, b"third", b"3", durable=False, deferred=True)
    store.close()  # close writes what is still buffered
    store = Store.open(tmp_path / "d")
    ns = store.namespace()
    assert (ns.get("first"), ns.get("second"), ns.get("third")) == (None, "2", "3")
    assert store.recovery.corrupt == [] and store.recovery.truncated == []
    store.close()


def test_a_refused_flush_keeps_the_deferred_puts_and_writes_them_when_space_returns(tmp_path):
    from tests.disk_faults import fill, tmpfs
    from engine.errors import WriteFailedError

    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = Store.open(disk / "d", fsync="no", encryption=False)
        ns = store.namespace()
        filler = fill(disk)
        value = b"v" * 300
        i = 0
        with pytest.raises(WriteFailedError, match="No space left on device"):
            while True:
                store.put_one(ns.number, b"k%05d" % i, value, durable=False, deferred=True)
                store.flush_writes()
                i += 1
        assert ns.get("k%05d" % i) == value.decode()  # refused, still buffered and readable
        with pytest.raises(WriteFailedError):  # every later write is refused meanwhile
            store.put_one(ns.number, b"later", b"x", durable=False, deferred=True)
        filler.unlink()
        store.flush_writes()  # space is back: the buffered put is written
        store.put_one(ns.number, b"after", b"ok", durable=False)
        store.close()
        store = Store.open(disk / "d")
        ns = store.namespace()
        assert ns.get("k%05d" % i) == value.decode() and ns.get("after") == "ok"
        assert ns.get("later") is None
        store.close()


# ---------------------------------------------------------------------------- put_many


def test_put_many_applies_its_items_in_order_with_one_file_write(tmp_path, monkeypatch):
    store = Store.open(tmp_path / "d", fsync="no", encryption=False)
    ns = store.namespace()
    future_ms = (store.clock_ms() // 1000 + 3600) * 1000
    writes = []
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: writes.append(len(data))
                        or real_pwrite(fd, data, offset))
    before = _disk_size(store)
    store.put_many(ns.number, [(b"a", b"1", 0, b""), (b"b", b"2", future_ms, b'{"m":1}'),
                               (b"a", b"3", 0, b""), (b"c", bytearray(b"4"), 0, b"")])
    assert len(writes) == 1 and _disk_size(store) == before + writes[0]
    assert (ns.get("a"), ns.get("b"), ns.get("c")) == ("3", "2", "4")  # the last put of "a" wins
    assert ns.get_with_metadata("b").metadata == {"m": 1}
    assert [k.get("expiration") for k in ns.list()["keys"]] == [None, future_ms // 1000, None]
    assert store.key_count(ns.number) == 3
    store._check()
    store.close()
    store = Store.open(tmp_path / "d", encryption=False)
    ns = store.namespace()
    assert (ns.get("a"), ns.get("b"), ns.get("c")) == ("3", "2", "4")
    assert ns.get_with_metadata("b").metadata == {"m": 1}
    store.close()


def test_put_many_with_a_large_value_or_past_the_segment_size_stays_correct(tmp_path):
    """A batch that starts in a segment is written there whole (a segment may end past its
    nominal size, as with any large record); a large value sends the batch to the general
    path, which writes it as separate buffers and rotates between records."""
    store = Store.open(tmp_path / "d", fsync="no", segment_bytes=4096)
    ns = store.namespace()
    store.put_many(ns.number, [(b"k%03d" % i, b"v" * 100, 0, b"") for i in range(100)])
    assert store._active.size > 4096  # the whole batch in one segment
    big = os.urandom(70_000)
    store.put_many(ns.number, [(b"small", b"s", 0, b""), (b"big", big, 0, b"")])
    store.put_many(ns.number, [(b"after", b"rotated", 0, b"")])
    assert len(store._segments) >= 3
    expected = {f"k{i:03d}": "v" * 100 for i in range(100)} | {"small": "s", "after": "rotated"}
    assert all(ns.get(k) == v for k, v in expected.items()) and ns.get("big", "bytes") == big
    store._check()
    store.close()
    store = Store.open(tmp_path / "d")
    ns = store.namespace()
    assert all(ns.get(k) == v for k, v in expected.items()) and ns.get("big", "bytes") == big
    assert store.recovery.corrupt == [] and store.recovery.truncated == []
    store.close()


def test_a_refused_put_many_applies_none_of_its_items(tmp_path):
    from tests.disk_faults import fill, tmpfs
    from engine.errors import WriteFailedError

    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = Store.open(disk / "d", fsync="no", encryption=False)
        ns = store.namespace()
        store.put_many(ns.number, [(b"before", b"ok", 0, b"")])
        filler = fill(disk)
        items = [(b"k%03d" % i, os.urandom(2000), 0, b"") for i in range(50)]
        with pytest.raises(WriteFailedError, match="No space left on device"):
            store.put_many(ns.number, items)
        assert [ns.get("k%03d" % i) for i in range(50)] == [None] * 50
        assert store.key_count(ns.number) == 1
        filler.unlink()
        store.put_many(ns.number, items)
        store.close()
        store = Store.open(disk / "d")
        ns = store.namespace()
        assert ns.get("before") == "ok" and ns.get("k049", "bytes") == items[-1][1]
        store.close()
