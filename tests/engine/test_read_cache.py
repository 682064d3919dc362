"""The read cache: hits serve the same bytes a verified read would, and nothing needs
invalidating because a cached value is keyed by its record's location."""

from __future__ import annotations

import pytest

from engine import Store
from engine.errors import CorruptionError, StoreClosedError
from engine.readcache import ENTRY_OVERHEAD, ReadCache
from kvtest_helpers import find_record, flip_byte


def cache_stats(store: Store) -> dict:
    return store.stats()["read_cache"]


def location(store: Store, ns, key: str) -> int:
    """Where the index says ``key``'s record is: the read cache's key for its value."""
    return store.lookup(ns.number, key.encode())


def test_a_put_fills_it_and_reads_hit_with_the_same_value(open_store):
    store = open_store()
    ns = store.namespace()
    ns.put("k", "v1")
    assert cache_stats(store)["entries"] == 1  # a GET right after a SET is the common case
    assert ns.get("k") == "v1"
    assert ns.get("k", type="bytes") == b"v1"
    stats = cache_stats(store)
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 0, 1)
    assert stats["used_bytes"] == len(b"v1") + ENTRY_OVERHEAD


def test_a_read_after_reopen_misses_once_then_hits(open_store, tmp_path):
    store = open_store()
    store.namespace().put("k", "v1")
    store.close()
    store = open_store()
    ns = store.namespace()
    assert cache_stats(store)["entries"] == 0
    assert ns.get("k") == "v1" and ns.get("k") == "v1"
    stats = cache_stats(store)
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)


def test_bulk_writes_do_not_fill_it(open_store):
    store = open_store()
    ns = store.namespace()
    out = ns.bulk_put([{"key": f"k{i}", "value": "v"} for i in range(100)])
    assert out["successful_key_count"] == 100
    assert cache_stats(store)["entries"] == 0


def test_overwrite_delete_and_namespace_delete_need_no_invalidation(open_store):
    store = open_store()
    ns = store.namespace()
    ns.put("k", "old")
    assert ns.get("k") == "old" and ns.get("k") == "old"
    ns.put("k", "new")
    assert ns.get("k") == "new"
    ns.delete("k")
    assert ns.get("k") is None
    other = store.namespace(store.create_namespace("other").id)
    other.put("k", "in other")
    assert other.get("k") == "in other" and other.get("k") == "in other"
    number = other.number
    store.delete_namespace(other.id)
    assert store.get_value(number, b"k") is None


def test_an_expired_cached_key_is_gone_at_once(open_store, clock):
    store = open_store()
    ns = store.namespace()
    ns.put("ttl", "soon gone", expiration_ttl=60)
    assert ns.get("ttl") == "soon gone" and ns.get("ttl") == "soon gone"
    assert cache_stats(store)["hits"] == 2
    clock.advance(59_999)
    assert ns.get("ttl") == "soon gone"
    clock.advance(1)
    assert ns.get("ttl") is None
    assert "ttl" not in [k["name"] for k in ns.list()["keys"]]


def test_compaction_moves_records_and_reads_stay_right(open_store):
    store = open_store(segment_bytes=64 * 1024, fsync="no")
    ns = store.namespace()
    for round_ in range(3):
        for i in range(300):
            ns.put(f"key{i}", f"value{i}-{round_}" * 5)
    location_before = store.lookup(ns.number, b"key7")
    assert all(ns.get(f"key{i}") == f"value{i}-2" * 5 for i in range(300))
    misses = cache_stats(store)["misses"]
    store.compact()
    assert store.lookup(ns.number, b"key7") != location_before  # the records did move...
    assert all(ns.get(f"key{i}") == f"value{i}-2" * 5 for i in range(300))
    assert cache_stats(store)["misses"] == misses  # ...and their cached values with them
    ns.put("key7", "after compaction")
    assert ns.get("key7") == "after compaction"


def test_the_budget_bounds_memory_and_evicts_oldest_first(open_store):
    budget = 64 * 1024
    store = open_store(read_cache_bytes=budget, fsync="no")
    ns = store.namespace()
    value = "x" * 400
    for i in range(1000):
        ns.put(f"key{i:04d}", value)
    for i in range(1000):
        assert ns.get(f"key{i:04d}") == value
    stats = cache_stats(store)
    assert stats["used_bytes"] <= budget
    assert stats["entries"] == budget // (400 + ENTRY_OVERHEAD)
    cache = store._read_cache
    newest = location(store, ns, "key0999")
    oldest = location(store, ns, "key0000")
    assert newest in cache.values and oldest not in cache.values


def test_a_value_larger_than_a_sixteenth_of_the_budget_is_not_cached(open_store):
    store = open_store(read_cache_bytes=16 * 1024, fsync="no")
    ns = store.namespace()
    ns.put("big", "b" * 2000)
    ns.put("small", "s" * 100)
    assert ns.get("big") == "b" * 2000 and ns.get("small") == "s" * 100
    assert cache_stats(store)["entries"] == 1


def test_zero_budget_turns_it_off(open_store):
    store = open_store(read_cache_bytes=0)
    ns = store.namespace()
    ns.put("k", "v")
    assert ns.get("k") == "v" and ns.get("k") == "v"
    assert cache_stats(store)["entries"] == 0 and cache_stats(store)["hits"] == 0


def test_a_negative_budget_is_refused():
    with pytest.raises(ValueError, match="-1"):
        ReadCache(-1)


def test_damage_after_caching_is_found_by_the_next_uncached_read(open_store):
    """A cached value was verified when it was read; bit rot in its record afterwards is
    reported by the first read that goes to the file again, never served as data."""
    budget = 64 * 1024
    store = open_store(read_cache_bytes=budget)
    ns = store.namespace()
    for i in range(1000):
        ns.put(f"key{i:04d}", f"value{i}" * 20)
    assert ns.get("key0003") == "value3" * 20
    path, record = find_record(store.path, b"key0003")
    flip_byte(path, record.end - 1)
    assert ns.get("key0003") == "value3" * 20  # the verified copy
    for i in range(4, 1000):  # push it out of the cache
        ns.get(f"key{i:04d}")
    assert location(store, ns, "key0003") not in store._read_cache.values
    with pytest.raises(CorruptionError):
        ns.get("key0003")
    with pytest.raises(CorruptionError):
        ns.get("key0003")  # a failed read is never cached


def test_a_closed_store_serves_nothing_from_its_cache(open_store):
    store = open_store()
    ns = store.namespace()
    ns.put("k", "v")
    assert ns.get("k") == "v" and ns.get("k") == "v"
    store.close()
    assert cache_stats(store)["entries"] == 0
    with pytest.raises(StoreClosedError):
        ns.get("k")


def test_threads_writing_and_reading_never_see_a_wrong_value(open_store):
    """Writers and readers at once, with a budget small enough to evict all the time: every
    value read is one its key really had, and the cache's accounting stays exact."""
    import random
    import threading

    store = open_store(read_cache_bytes=32 * 1024, fsync="no")
    ns = store.namespace()
    keys = [f"k{i:03d}" for i in range(200)]
    for key in keys:
        ns.put(key, f"{key}:0")
    errors: list[str] = []
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for version in range(1, 400):
            key = rng.choice(keys)
            ns.put(key, f"{key}:{version}" + "x" * rng.randrange(300))

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(keys)
            value = ns.get(key)
            if value is None or not value.startswith(f"{key}:"):
                errors.append(f"{key} read as {value!r}")

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    readers = [threading.Thread(target=reader, args=(100 + i,)) for i in range(3)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:5]
    cache = store._read_cache
    assert cache.used == sum(len(v) + ENTRY_OVERHEAD for v in cache.values.values())
    assert cache.used <= cache.budget
    assert sorted(cache._order) == sorted(cache.values)
    for key in keys:  # and the last write of each key is what every read now returns
        assert ns.get(key) == store.read_entry(ns.number, key.encode()).value.decode()
