"""edgekv's engine in process beside embedded peers: SQLite, LMDB and diskcache.

    python bench/embedded_peers.py                   # 100,000 keys, 3 rounds
    python bench/embedded_peers.py --keys 20000 --rounds 1 --seconds 1

One workload for every store, through a small adapter each: ``put(key, value, metadata)``,
``get(key) -> value``, ``list_page(prefix, 1000) -> [(name, metadata)]`` (keys in byte order,
metadata parsed, as a Workers KV ``list`` returns them).  Keys are 20 bytes (``user:`` + 15
digits), values 100 bytes, metadata a small JSON object.

Durability is matched level by level; every put is its own transaction (one put = one
acknowledged write, as in the server):

* ``always``: edgekv ``fsync="always"``; SQLite (WAL) ``synchronous=FULL``; LMDB ``sync=True``;
  diskcache ``sqlite_synchronous=2`` (FULL).
* ``everysec``: edgekv ``fsync="everysec"``; SQLite (WAL) ``synchronous=NORMAL``; LMDB
  ``sync=False`` with ``env.sync()`` once a second from a thread; diskcache
  ``sqlite_synchronous=1`` (NORMAL).

At ``everysec`` a process crash loses nothing and a power cut loses about the last second
(SQLite NORMAL: the commits since the last WAL checkpoint).  Gets and lists do not depend on
the level; they are measured on the ``everysec`` store.

Per round, for each store (order alternating between rounds): a fresh directory, N keys loaded
in bulk (untimed), then puts of new keys for ``--seconds`` at each level, random gets, and
1,000-key pages at random prefixes, each bounded in time.  The SQLite table is shaped like
Miniflare's ``_mf_entries`` (key primary key, expiration, metadata JSON text) with the value
inline as a BLOB instead of in a separate blob file.  diskcache has no ordered range read, so
it has no list row.  edgekv is opened with encryption off where the engine has that option
(no peer encrypts); the crypto benchmark gives the cost of turning it on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
for _path in (str(REPO), str(REPO / "bench")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from engine import Store  # noqa: E402
from resp_vs_redis import write_json  # noqa: E402

LEVELS = ("always", "everysec")
VALUE = b"x" * 100
LIST_PAGE = 1000


def key_name(i: int) -> str:
    return f"user:{i:015d}"


def metadata_for(i: int) -> dict:
    return {"version": i, "owner": "bench"}


def open_edgekv(path: str, fsync: str, **options) -> Store:
    """``Store.open`` with encryption off where the engine offers the switch."""
    try:
        return Store.open(path, fsync=fsync, encryption=False, **options)
    except TypeError:  # an engine without the encryption option
        return Store.open(path, fsync=fsync, **options)


# --------------------------------------------------------------------------- adapters


class EdgeKV:
    name = "edgekv"
    lists = True

    def __init__(self, path: str, level: str) -> None:
        self.store = open_edgekv(path, level)
        self.ns = self.store.namespace()

    def load(self, items) -> None:
        batch = []
        for key, value, meta in items:
            batch.append({"key": key, "value": value, "metadata": meta})
            if len(batch) == 10_000:
                self.ns.bulk_put(batch)
                batch = []
        if batch:
            self.ns.bulk_put(batch)

    def put(self, key: str, value: bytes, meta: dict) -> None:
        self.ns.put(key, value, metadata=meta)

    def get(self, key: str):
        return self.ns.get(key, type="bytes")

    def list_page(self, prefix: str, limit: int) -> list:
        return [(k["name"], k.get("metadata")) for k in
                self.ns.list(prefix=prefix, limit=limit)["keys"]]

    def close(self) -> None:
        self.store.close()


class SQLiteKV:
    lists = True

    def __init__(self, path: str, level: str) -> None:
        self.sync = {"always": "FULL", "everysec": "NORMAL"}[level]
        self.name = f"SQLite WAL {self.sync}"
        os.makedirs(path, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(path, "kv.sqlite3"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.sync}")
        self.db.execute("CREATE TABLE IF NOT EXISTS _mf_entries (key TEXT PRIMARY KEY, "
                        "value BLOB NOT NULL, expiration INTEGER, metadata TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS _mf_entries_expiration_idx "
                        "ON _mf_entries(expiration)")

    def load(self, items) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO _mf_entries VALUES (?, ?, NULL, ?)",
                            ((k, v, json.dumps(m)) for k, v, m in items))
        self.db.execute("COMMIT")

    def put(self, key: str, value: bytes, meta: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO _mf_entries VALUES (?, ?, NULL, ?)",
                        (key, value, json.dumps(meta)))

    def get(self, key: str):
        row = self.db.execute("SELECT value FROM _mf_entries WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def list_page(self, prefix: str, limit: int) -> list:
        # byte order = SQLite's default BINARY collation; the range is the prefix's
        rows = self.db.execute(
            "SELECT key, metadata FROM _mf_entries WHERE key >= ? AND key < ? "
            "ORDER BY key LIMIT ?", (prefix, prefix + "\U0010ffff", limit)).fetchall()
        return [(k, json.loads(m) if m else None) for k, m in rows]

    def close(self) -> None:
        self.db.close()


class LMDBKV:
    """The value is stored as ``len(metadata) (2 bytes) + metadata JSON + value``."""

    lists = True

    def __init__(self, path: str, level: str) -> None:
        import lmdb

        self.name = f"LMDB sync={level == 'always'}"
        self.env = lmdb.open(path, map_size=4 << 30, sync=level == "always", metasync=True,
                             writemap=False)
        self._stop = threading.Event()
        self._syncer = None
        if level == "everysec":
            self._syncer = threading.Thread(target=self._sync_every_second, daemon=True)
            self._syncer.start()

    def _sync_every_second(self) -> None:
        while not self._stop.wait(1.0):
            self.env.sync(True)

    @staticmethod
    def _pack(value: bytes, meta: dict) -> bytes:
        m = json.dumps(meta).encode()
        return len(m).to_bytes(2, "big") + m + value

    def load(self, items) -> None:
        with self.env.begin(write=True) as txn:
            for k, v, m in items:
                txn.put(k.encode(), self._pack(v, m))

    def put(self, key: str, value: bytes, meta: dict) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key.encode(), self._pack(value, meta))

    def get(self, key: str):
        with self.env.begin(buffers=False) as txn:
            raw = txn.get(key.encode())
        if raw is None:
            return None
        return raw[2 + int.from_bytes(raw[:2], "big"):]

    def list_page(self, prefix: str, limit: int) -> list:
        raw_prefix = prefix.encode()
        out = []
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if not cursor.set_range(raw_prefix):
                return out
            for k, v in cursor:
                if not k.startswith(raw_prefix) or len(out) >= limit:
                    break
                n = int.from_bytes(v[:2], "big")
                out.append((k.decode(), json.loads(v[2:2 + n]) if n else None))
        return out

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        self.env.close()


class DiskCacheKV:
    lists = False  # no ordered range read in its API

    def __init__(self, path: str, level: str) -> None:
        import diskcache

        sync = {"always": 2, "everysec": 1}[level]
        self.name = f"diskcache {'FULL' if sync == 2 else 'NORMAL'}"
        self.cache = diskcache.Cache(path, eviction_policy="none", sqlite_synchronous=sync,
                                     size_limit=1 << 40)

    def load(self, items) -> None:
        with self.cache.transact():
            for k, v, m in items:
                self.cache.set(k, (v, m))

    def put(self, key: str, value: bytes, meta: dict) -> None:
        self.cache.set(key, (value, meta))

    def get(self, key: str):
        item = self.cache.get(key)
        return item[0] if item is not None else None

    def list_page(self, prefix: str, limit: int) -> list:
        raise NotImplementedError

    def close(self) -> None:
        self.cache.close()


# name -> adapter; SQLite is in the standard library, lmdb and diskcache are the bench extra
STORES: dict[str, type] = {"edgekv": EdgeKV, "sqlite": SQLiteKV, "lmdb": LMDBKV,
                           "diskcache": DiskCacheKV}


def available() -> tuple[list[str], dict[str, str]]:
    """Store names that can run here, and why the others cannot."""
    ok, missing = [], {}
    for name in STORES:
        module = {"lmdb": "lmdb", "diskcache": "diskcache"}.get(name)
        if module:
            try:
                __import__(module)
            except ImportError as exc:
                missing[name] = f"{module} not installed ({exc.__class__.__name__}); " \
                                f"pip install -e '.[bench]'"
                continue
        ok.append(name)
    return ok, missing


# --------------------------------------------------------------------------- timing


def timed_loop(op: Callable[[int], object], seconds: float, max_ops: int) -> tuple[int, float]:
    """Call ``op(i)`` for i = 0, 1, ... until ``seconds`` pass or ``max_ops`` calls are done."""
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + seconds
    done = 0
    while done < max_ops:
        op(done)
        done += 1
        if done % 16 == 0 and clock() >= deadline:
            break
    return done, clock() - t0


def measure_store(name: str, workdir: str, *, keys: int, seconds: float, seed: int) -> dict:
    """One round for one store: load, then put at each level, get, list."""
    adapter = STORES[name]
    path = tempfile.mkdtemp(prefix=f"{name}-", dir=workdir)
    rng = random.Random(seed)
    out: dict = {}
    try:
        store = adapter(path, "everysec")
        out["label_everysec"] = store.name
        t0 = time.perf_counter()
        store.load((key_name(i), VALUE, metadata_for(i)) for i in range(keys))
        out["load_s"] = time.perf_counter() - t0
        next_key = [keys]

        def put(_):
            i = next_key[0]
            next_key[0] += 1
            store.put(key_name(i), VALUE, metadata_for(i))

        done, elapsed = timed_loop(put, seconds, 1_000_000)
        out["put_everysec"] = done / elapsed
        sample = [key_name(rng.randrange(keys)) for _ in range(200_000)]
        assert store.get(sample[0]) == VALUE, f"{name} returned the wrong value"
        done, elapsed = timed_loop(lambda i: store.get(sample[i]), seconds, len(sample))
        out["get"] = done / elapsed
        if store.lists:
            prefixes = [key_name(rng.randrange(keys // LIST_PAGE) * LIST_PAGE)[:-3]
                        for _ in range(1000)]
            page = store.list_page(prefixes[0], LIST_PAGE)
            assert len(page) == LIST_PAGE, f"{name} listed {len(page)} keys, not {LIST_PAGE}"
            done, elapsed = timed_loop(lambda i: store.list_page(prefixes[i], LIST_PAGE),
                                       seconds, len(prefixes))
            out["list_pages"] = done / elapsed
            out["list_ms"] = elapsed / done * 1000
        store.close()

        store = adapter(path, "always")
        out["label_always"] = store.name
        done, elapsed = timed_loop(put, seconds, 1_000_000)
        out["put_always"] = done / elapsed
        store.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return out


METRICS = ("put_always", "put_everysec", "get", "list_pages")


def run(*, keys=100_000, rounds=3, seconds=2.0, stores=None, dir=None,
        progress: Callable[[str], None] = print) -> dict:
    """Every available store, alternating order between rounds.

    Returns ``{"runs": [...], "summary": {store: {metric: {median, min, max}}}, "skipped":
    {store: reason}}``; metrics are ops/s (``list_pages``: 1,000-key pages per second)."""
    names, skipped = available()
    if stores:
        names = [n for n in names if n in stores]
    parent = dir or str(REPO / "bench" / "results")
    os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="embedded-", dir=parent)
    runs = []
    try:
        for rnd in range(rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            for name in order:
                m = measure_store(name, workdir, keys=keys, seconds=seconds, seed=rnd + 1)
                runs.append({"round": rnd, "store": name, **m})
                progress(f"round {rnd + 1} {name:9}: put always {m['put_always']:,.0f}/s, "
                         f"everysec {m['put_everysec']:,.0f}/s, get {m['get']:,.0f}/s"
                         + (f", list {m['list_ms']:.2f} ms/page" if "list_ms" in m else ""))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary: dict = {}
    for name in names:
        rows = [r for r in runs if r["store"] == name]
        summary[name] = {"label_always": rows[0]["label_always"],
                         "label_everysec": rows[0]["label_everysec"]}
        for metric in METRICS:
            values = [r[metric] for r in rows if metric in r]
            if values:
                summary[name][metric] = {"median": statistics.median(values),
                                         "min": min(values), "max": max(values)}
    return {"runs": runs, "summary": summary, "skipped": skipped, "keys": keys,
            "rounds": rounds, "seconds": seconds, "value_bytes": len(VALUE),
            "list_page": LIST_PAGE}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--stores", nargs="+", choices=list(STORES))
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args()
    result = run(keys=args.keys, rounds=args.rounds, seconds=args.seconds, stores=args.stores,
                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{'store':10} | {'put always/s':>12} {'put everysec/s':>14} {'get/s':>9} "
          f"{'pages/s':>8}")
    for name, s in result["summary"].items():
        cell = lambda m: f"{s[m]['median']:,.0f}" if m in s else "-"  # noqa: E731
        print(f"{name:10} | {cell('put_always'):>12} {cell('put_everysec'):>14} "
              f"{cell('get'):>9} {cell('list_pages'):>8}")
    for name, why in result["skipped"].items():
        print(f"{name}: not run: {why}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
