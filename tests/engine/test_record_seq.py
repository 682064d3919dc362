"""``Store.record_seq``: the version WATCH compares.  Every write and delete of a key must
change it, compaction must not, and a key created and deleted again must not look untouched."""

from __future__ import annotations


def _version(store, ns, key: bytes) -> int:
    return store.record_seq(ns.number, key)


def test_writes_deletes_and_expiry_change_the_version_and_compaction_does_not(open_store, clock):
    store = open_store(fsync="no", segment_bytes=4096, compaction_threshold=0)
    ns = store.namespace()
    missing = _version(store, ns, b"k")
    ns.put("k", "1")
    written = _version(store, ns, b"k")
    assert written != missing
    ns.put("k", "1")  # the same value again is a write
    assert _version(store, ns, b"k") != written
    written = _version(store, ns, b"k")
    for i in range(200):  # fill segments, then compact them away
        ns.put(f"filler{i}", "x" * 50)
        ns.delete(f"filler{i}")
    store.compact()
    assert _version(store, ns, b"k") == written
    ns.delete("k")
    assert _version(store, ns, b"k") not in (written, missing)
    ns.put("t", "v", expiration_ttl=60)
    before = _version(store, ns, b"t")
    clock.advance(61_000)
    assert _version(store, ns, b"t") != before


def test_a_key_created_and_deleted_again_does_not_look_untouched(open_store):
    store = open_store(fsync="no")
    ns = store.namespace()
    other = store.namespace(store.create_namespace("other").id)
    watched = _version(store, ns, b"w")
    ns.delete("w")  # deleting a missing key writes nothing: untouched
    other.put("w", "1")  # the same key in another namespace: untouched
    other.delete("w")
    ns.put("elsewhere", "1")
    assert _version(store, ns, b"w") == watched
    ns.put("w", "1")
    ns.delete("w")
    assert _version(store, ns, b"w") != watched
    # bulk deletes too, and a flush (a new namespace number) keeps the mark
    watched = _version(store, ns, b"w")
    ns.bulk_put([{"key": "w", "value": "2"}])
    ns.bulk_delete(["w"])
    touched = _version(store, ns, b"w")
    assert touched != watched
    store.flush_namespace(ns.id)
    assert _version(store, ns, b"w") == touched
