"""Helpers shared by the compaction, hint and verify tests."""

from __future__ import annotations

from engine import Store


def snapshot(store: Store) -> dict:
    """Everything a client can observe: per namespace title, key -> (value, expiration,
    metadata JSON), plus the namespace numbers and the next number the catalog would hand out."""
    out = {}
    for info in store.list_namespaces():
        keys = {}
        after = None
        while True:
            page = store.scan_keys(info.number, b"", after, 1000)
            if not page:
                break
            for key, exp, meta in page:
                entry = store.read_entry(info.number, key)
                keys[key] = (entry.value, exp, meta)
            after = page[-1][0]
        out[info.title] = keys
    return out


def internal_state(store: Store) -> dict:
    """What recovery rebuilds in memory, for comparing a hint load with a scan."""
    store._check()
    with store._lock:
        return {
            "keys": dict(store._index.items()),
            "sorted": list(store._index._sorted),
            "expire": dict(store._expiry._expire_ms),
            "metadata": dict(store._metadata),
            "namespaces": {i.id: (i.title, i.number) for i in store.list_namespaces()},
            "deleted_numbers": set(store._catalog.deleted_numbers),
            "next_number": store._catalog.next_number,
            "catalog_locations": dict(store._catalog_locations),
            "counts": dict(store._ns_key_counts),
            "seq": store.last_seq,
        }


def write_history(store: Store, clock, rounds: int = 2) -> None:
    """Overwrites across segments, deletes, metadata, expirations and namespace changes."""
    ns = store.namespace()
    for round_ in range(rounds):
        for i in range(250):
            ns.put(f"key/{i:04d}", f"{round_}:{i}" * (2 + i % 5),
                   metadata={"i": i} if i % 4 == 0 else None,
                   expiration=clock.now_s + 3600 + i if i % 6 == 0 else None)
        for i in range(round_, 250, 9):
            ns.delete(f"key/{i:04d}")
    store.create_namespace("other")
    store.namespace("other").put("é", "unicode", metadata={"k": "ü"})
    flushed = store.create_namespace("flushed")
    store.namespace("flushed").put("gone", "1")
    store.flush_namespace(flushed.id)
    ns.put("last", "in the active segment")
