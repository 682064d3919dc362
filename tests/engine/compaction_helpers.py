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
