"""Compaction keeps exactly the live data, lets requests flow, and survives a crash anywhere."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from engine import Store, StoreError, compaction
from compaction_helpers import snapshot
from kvtest_helpers import REPO_ROOT, find_record, flip_byte, segment_paths


def _files(path) -> list[str]:
    return sorted(os.listdir(path))


# --------------------------------------------------------------------------- what is kept


def test_compaction_drops_dead_records_and_keeps_live_ones(open_store, tmp_path, clock):
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for round_ in range(3):
        for i in range(200):
            ns.put(f"k{i:03d}", f"v{round_}-{i}" * 5, metadata={"i": i} if i % 4 == 0 else None)
    for i in range(0, 200, 2):
        ns.delete(f"k{i:03d}")
    ns.put("soon", "gone", expiration=clock.now_s + 60)
    ns.put("later", "stays", expiration=clock.now_s + 3600)
    doomed = store.create_namespace("doomed")
    store.namespace("doomed").put("x", "1")
    flushed = store.create_namespace("flushed")
    store.namespace("flushed").put("y", "2")
    store.flush_namespace(flushed.id)
    store.namespace("flushed").put("z", "3")
    store.delete_namespace(doomed.id)
    clock.advance(120_000)
    before = snapshot(store)
    disk_before = store.stats()["disk_bytes"]

    summary = store.compact()

    assert set(summary) == {"segments_in", "segments_out", "bytes_before", "bytes_after",
                            "records_dropped", "seconds", "segments_from_hints"}
    assert summary["bytes_after"] < summary["bytes_before"] / 3
    assert store.stats()["disk_bytes"] < disk_before / 3
    assert snapshot(store) == before
    store._check()
    live = 100 + 1 + 1  # odd keys, "later", "z"
    catalog = 3  # default, flushed (its current record), doomed's tombstone
    records = sum(1 for p in segment_paths(store.path) for _ in _records(p))
    assert records == live + catalog
    next_number = store._catalog.next_number
    store.close()

    reopened = open_store(fsync="no", segment_bytes=4096)
    assert snapshot(reopened) == before
    assert reopened._catalog.next_number == next_number  # numbers are never reused
    again = reopened.create_namespace("new")
    assert again.number == next_number
    assert reopened.namespace("new").get("x") is None


def _records(path):
    from kvtest_helpers import disk_records
    return disk_records(path)


def test_writes_after_compaction_and_second_compaction(open_store):
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(300):
        ns.put(f"k{i}", "a" * 50)
    store.compact()
    for i in range(0, 300, 3):
        ns.put(f"k{i}", "b" * 50)
    ns.delete("k1")
    store.compact()
    store.compact()
    expected = snapshot(store)
    assert expected["default"][b"k0"][0] == b"b" * 50
    assert b"k1" not in expected["default"]
    store.close()
    assert snapshot(open_store(fsync="no", segment_bytes=4096)) == expected


def test_compacting_an_empty_store_is_harmless(open_store):
    store = open_store()
    store.compact()
    store.compact()
    assert snapshot(store) == {"default": {}}


@pytest.mark.parametrize("seed", range(6))
def test_randomized_model_with_compactions_and_reopens(open_store, clock, seed):
    """A random mix of puts, deletes, expirations, namespace flushes and deletes, compactions
    and reopens; after every step the store equals a plain dict model."""
    rnd = random.Random(seed)
    store = open_store(fsync="no", segment_bytes=4096)
    titles = ["default"]
    model: dict[str, dict[bytes, tuple]] = {"default": {}}
    compactions = 0
    for step in range(600):
        op = rnd.random()
        title = rnd.choice(titles)
        ns = store.namespace(title)
        key = f"k{rnd.randrange(60)}"
        if op < 0.5:
            value = f"{step}-" * rnd.randrange(1, 40)
            meta = {"s": step} if rnd.random() < 0.3 else None
            exp = clock.now_s + rnd.randrange(61, 400) if rnd.random() < 0.2 else None
            ns.put(key, value, metadata=meta, expiration=exp)
            model[title][key.encode()] = (value.encode(), (exp or 0) * 1000,
                                          json.dumps(meta, separators=(",", ":")).encode()
                                          if meta else b"")
        elif op < 0.7:
            ns.delete(key)
            model[title].pop(key.encode(), None)
        elif op < 0.73 and len(titles) < 4:
            title = f"ns{step}"
            store.create_namespace(title)
            titles.append(title)
            model[title] = {}
        elif op < 0.75 and len(titles) > 1:
            title = rnd.choice(titles[1:])
            store.delete_namespace(store.find_namespace(title).id)
            titles.remove(title)
            del model[title]
        elif op < 0.77:
            store.flush_namespace(store.find_namespace(title).id)
            model[title] = {}
        elif op < 0.80:
            clock.advance(rnd.randrange(0, 200_000))
            for t in model:
                model[t] = {k: v for k, v in model[t].items() if not v[1] or v[1] > clock.now_ms}
        elif op < 0.86:
            store.compact()
            compactions += 1
        elif op < 0.90:
            store.close()
            store = open_store(fsync="no", segment_bytes=4096)
        assert snapshot(store) == model, (seed, step)
    store._check()
    assert compactions > 5


# --------------------------------------------------------------------------- requests keep flowing


def test_writes_during_copy_keep_their_newer_location(open_store):
    """A deterministic interleaving: writes land while the copy is half done."""
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(400):
        ns.put(f"k{i}", f"old{i}", metadata={"v": "old"})

    def during(name):
        if name == "copying":
            for i in range(0, 400, 2):
                ns.put(f"k{i}", f"new{i}", metadata={"v": "new"})
            for i in range(1, 400, 10):
                ns.delete(f"k{i}")
        if name == "switching":
            ns.put("k3", "during-switch")

    compaction.crash_hook = during
    try:
        store.compact()
    finally:
        compaction.crash_hook = None
    expected = {}
    for i in range(400):
        if i == 3:
            expected[b"k3"] = b"during-switch"
        elif i % 10 == 1:
            continue
        else:
            expected[f"k{i}".encode()] = f"new{i}".encode() if i % 2 == 0 else f"old{i}".encode()
    got = {k: v[0] for k, v in snapshot(store)["default"].items()}
    assert got == expected
    store._check()
    store.close()
    reopened = open_store(fsync="no", segment_bytes=4096)
    assert {k: v[0] for k, v in snapshot(reopened)["default"].items()} == expected


def test_concurrent_writers_and_readers_during_compactions(open_store):
    store = open_store(fsync="no", segment_bytes=16384)
    ns = store.namespace()
    for i in range(2000):
        ns.put(f"w{i % 4}-{i // 4}", "seed")
    stop = threading.Event()
    errors: list[BaseException] = []
    last: dict[str, str] = {}

    def writer(w: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                key = f"w{w}-{n % 500}"
                value = f"{w}:{n}"
                ns.put(key, value)
                last[key] = value
                n += 1
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                for w in range(4):
                    value = store.get_value(store.find_namespace("default").number,
                                            f"w{w}-7".encode())
                    assert value is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            store.compact()
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    for key, value in last.items():
        assert ns.get(key) == value, key
    store._check()
    expected = snapshot(store)
    store.close()
    assert snapshot(open_store(fsync="no", segment_bytes=16384)) == expected


def test_auto_compaction_runs_when_a_segment_is_mostly_dead(open_store):
    store = open_store(fsync="no", segment_bytes=4096, compaction_threshold=0.5,
                       compaction_interval=0.02)
    ns = store.namespace()
    for round_ in range(4):
        for i in range(100):
            ns.put(f"k{i}", f"{round_}" * 40)
    deadline = time.monotonic() + 10
    while store._compactor.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store._compactor.runs >= 1
    assert store._compactor.last_error is None
    assert all(ns.get(f"k{i}") == "3" * 40 for i in range(100))
    store.close()


@pytest.mark.parametrize("point", ["reserved", "copying", "switching"])
def test_a_namespace_flushed_during_compaction_stays_empty_after_reopen(open_store, point):
    """The flush's catalog record supersedes the one compaction drops; keys written under the
    old number after the compaction began stay in the segments it does not rewrite, and must
    not come back (as a 'recovered-N' namespace) when the store opens again."""
    store = open_store(fsync="no", segment_bytes=4096)
    info = store.create_namespace("g")
    store.namespace().put("filler", "x")

    def during(name):
        if name == point:
            store.namespace("g").put("secret", "flushed")
            assert store.flush_namespace(info.id) == 1

    compaction.crash_hook = during
    try:
        store.compact()
    finally:
        compaction.crash_hook = None
    store.close()
    store = open_store(segment_bytes=4096)
    assert [(n.title, n.id) for n in store.list_namespaces()] == [
        ("default", store.namespace().id), ("g", info.id)]
    assert store.namespace("g").get("secret") is None
    assert store.namespace("g").list()["keys"] == []
    store.namespace("g").put("after", "reopen")
    store.compact()
    store.close()
    store = open_store(segment_bytes=4096)
    assert [n.title for n in store.list_namespaces()] == ["default", "g"]
    assert [k["name"] for k in store.namespace("g").list()["keys"]] == ["after"]


def test_compaction_refuses_to_copy_around_corruption(open_store, tmp_path):
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(200):
        ns.put(f"k{i}", "v" * 40)
    store.close()
    path, record = find_record(tmp_path / "data", b"k5")
    flip_byte(path, record.offset + record.size - 1)
    store = open_store(fsync="no", segment_bytes=4096)
    with pytest.raises(StoreError, match="corrupt record"):
        store.compact()
    assert not [n for n in _files(store.path) if n.endswith(".tmp")]
    assert store.namespace().get("k6") == "v" * 40


# --------------------------------------------------------------------------- crash points

CHILD = textwrap.dedent("""
    import sys
    from engine import Store
    store = Store.open(sys.argv[1], fsync="always", segment_bytes=4096)
    store.compact()
    store.close()
    print("finished")
""")


def _build_store(path) -> dict:
    store = Store.open(str(path), fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for round_ in range(3):
        for i in range(150):
            ns.put(f"k{i}", f"{round_}-{i}" * 6, metadata={"r": round_} if i % 5 == 0 else None)
    for i in range(0, 150, 3):
        ns.delete(f"k{i}")
    gone = store.create_namespace("gone")
    store.namespace("gone").put("a", "b")
    store.delete_namespace(gone.id)
    expected = snapshot(store)
    store.close()
    return expected


@pytest.mark.parametrize("point", compaction.CRASH_POINTS)
def test_crash_at_every_compaction_step_keeps_the_live_data(tmp_path, point):
    path = tmp_path / "data"
    expected = _build_store(path)
    env = dict(os.environ, **{compaction.CRASH_ENV: point})
    child = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == compaction.CRASH_EXIT_CODE, child.stderr
    assert "finished" not in child.stdout
    with Store.open(str(path), fsync="no", segment_bytes=4096) as store:
        assert snapshot(store) == expected
        store._check()
        store.compact()  # and the store is fit for another compaction
        assert snapshot(store) == expected
    names = _files(path)
    assert compaction.MANIFEST not in names
    assert not [n for n in names if n.endswith(".tmp")]
    with Store.open(str(path), fsync="no", segment_bytes=4096) as store:
        assert snapshot(store) == expected


def test_unreadable_manifest_refuses_to_open(tmp_path):
    path = tmp_path / "data"
    _build_store(path)
    (path / compaction.MANIFEST).write_text("{not json")
    with pytest.raises(StoreError, match="manifest"):
        Store.open(str(path))


def test_flushed_namespace_keys_do_not_come_back_as_orphans(open_store):
    """Recovery replays every catalog version, so the number a flush retired is known dead
    (before this, reopening adopted the flushed keys as a 'recovered-N' namespace)."""
    store = open_store(fsync="no")
    store.namespace().put("old", "1")
    store.flush_namespace(store.find_namespace("default").id)
    store.namespace().put("new", "2")
    store.close()
    store = open_store(fsync="no")
    assert [info.title for info in store.list_namespaces()] == ["default"]
    assert snapshot(store) == {"default": {b"new": (b"2", 0, b"")}}


def test_close_during_compaction_aborts_it_cleanly(open_store, tmp_path):
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(10_000):
        ns.put(f"k{i}", "v")
    expected = snapshot(store)
    closer = threading.Thread(target=store.close)

    def during(name):
        if name == "copying":
            closer.start()
            time.sleep(0.2)  # close() is now waiting for the compaction to stop

    compaction.crash_hook = during
    try:
        with pytest.raises(Exception):
            store.compact()
    finally:
        compaction.crash_hook = None
    closer.join()
    assert store.closed
    assert not [n for n in _files(tmp_path / "data") if n.endswith(".tmp")]
    assert snapshot(open_store(fsync="no", segment_bytes=4096)) == expected
