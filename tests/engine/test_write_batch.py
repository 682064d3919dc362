"""Store.batch(): single puts coalesced into one file write, readable before it."""

from __future__ import annotations

import os

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
