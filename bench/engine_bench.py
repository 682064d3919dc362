#!/usr/bin/env python3
"""Engine micro-benchmark: prints a table of throughput, latency, open time and memory.

This is a measuring script, not a test: it never fails on a missed target, it prints
``PASS``/``MISS`` beside each target from the performance issue and leaves judging to people.

    python bench/engine_bench.py                 # 1,000,000 keys (about two to three minutes)
    python bench/engine_bench.py --quick         # 100,000 keys
    python bench/engine_bench.py --keys 300000 --json bench/results/run.json
    python bench/engine_bench.py --only put,get  # a subset of phases (handy under a profiler)
    python bench/engine_bench.py --no-encryption # plaintext stores, to compare with the default

Phases (``--only`` names in brackets):

1. [put]    single-thread puts at ``fsync="no"``: ``ns.put(key, value)``,
            ``ns.put_raw(key_bytes, value, durable=False)``, ``ns.bulk_put`` in batches of 1,000;
            each variant writes N fresh keys into its own new store.
2. [fsync]  puts at ``fsync="always"`` from 64 writer threads sharing fsyncs (group commit),
            bounded by ``--fsync-seconds`` and ``--fsync-max-puts``; plus a one-thread baseline.
3. [get]    random-key gets in process: ``ns.get(key)`` (text), ``type="bytes"``, the
            unvalidated ``ns.get_entry(key_bytes)``, and missing keys.
4. [list]   1,000-key pages: a full cursor walk of the namespace, then random prefixes.
5. [open]   close and reopen the N-key store (page cache warm): sealed segments load from their
            hint files (the bench waits for hints still being written first, as a server
            has long done by the time it stops), the active one is scanned.
6. [rss]    RSS per key, measured in fresh child processes so this process's own garbage does
            not count: (a) an empty store is opened, RSS taken, N keys written with ``put_raw``,
            ``gc.collect()``, RSS taken again; (b) the same around reopening the N-key store.
            A ``sys.getsizeof`` breakdown of the index structures comes with it.

Keys are 20 ASCII bytes (``user:`` + 15 digits), written in a scrambled (not sorted) order;
values are 100 ASCII bytes.  Data lives in a temporary directory under ``bench/results/``
(ignored by git, on the repository's disk) unless ``--dir`` says otherwise, and is removed at
the end.

Wall clock and CPU time: every single-threaded row is given twice, once per wall-clock second
and once per CPU second of this process.  On an idle machine they agree; when other work shares
the cores (CI, tests, a second benchmark) the wall figure drops and the CPU figure is the better
estimate of what one dedicated core does.  The header says how busy the rest of the machine was.
Targets are judged on both, in two status columns.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import random
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from engine import Store  # noqa: E402

KEY_PREFIX = "user:"
KEY_DIGITS = 15  # 5 + 15 = 20-byte keys
VALUE_BYTES = 100
BULK_BATCH = 1000
PHASES = ("put", "fsync", "get", "list", "open", "rss")

# Targets from the performance issue.
TARGET_PUT = 100_000       # puts/s at fsync=no
TARGET_GET = 200_000       # gets/s in process
TARGET_RSS = 150           # bytes of RSS per key at 1M keys, key included
TARGET_LIST_MS = 5.0       # ms per 1,000-key list page


# --------------------------------------------------------------------------- helpers


#: extra ``Store.open`` arguments for every store the benchmark opens (``--no-encryption``)
STORE_OPTIONS: dict = {}


def key_name(i: int) -> str:
    return f"{KEY_PREFIX}{i:0{KEY_DIGITS}d}"


def scrambled_ids(n: int):
    """0..n-1 in a fixed pseudo-random order (a multiplicative permutation, no shuffle RNG).

    A generator, so the RSS child does not hold a million ints while it measures."""
    step = 2_654_435_761 % n if n > 1 else 1  # Knuth's multiplicative constant
    while math.gcd(step, n) != 1:
        step += 1
    return ((i * step) % n for i in range(n))


def make_value(rng: random.Random) -> bytes:
    return "".join(rng.choice(string.ascii_letters + string.digits)
                   for _ in range(VALUE_BYTES)).encode("ascii")


def rss() -> int:
    return psutil.Process().memory_info().rss


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timer:
    """Wall-clock and process CPU seconds of a ``with`` block; ``+=`` accumulates."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> "Timer":
        self._w = time.perf_counter()
        self._c = time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    def rate(self, ops: int) -> tuple[float, float]:
        return ops / self.wall, ops / max(self.cpu, 1e-9)


class Results:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.extra: dict = {}

    @staticmethod
    def _status(value, target, better) -> str:
        if target is None or value is None:
            return ""
        ok = value >= target if better == "higher" else value <= target
        return "PASS" if ok else "MISS"

    def add(self, phase: str, name: str, value: float, unit: str, *, cpu: float | None = None,
            target: float | None = None, better: str = "higher", note: str = "") -> None:
        self.rows.append({"phase": phase, "name": name, "value": value, "cpu_value": cpu,
                          "unit": unit, "target": target, "better": better,
                          "status": self._status(value, target, better),
                          "cpu_status": self._status(cpu, target, better), "note": note})

    def print_table(self) -> None:
        def fmt(v, unit: str) -> str:
            if v is None:
                return ""
            if unit in ("s", "ms", "ratio") or abs(v) < 100:
                return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
            return f"{v:,.0f}"

        headers = ("phase", "measurement", "wall", "status", "by CPU", "status", "unit",
                   "target")
        lines = []
        for r in self.rows:
            target = ""
            if r["target"] is not None:
                target = ("≥ " if r["better"] == "higher" else "≤ ") + fmt(r["target"], r["unit"])
            lines.append((r["phase"], r["name"], fmt(r["value"], r["unit"]), r["status"],
                          fmt(r["cpu_value"], r["unit"]), r["cpu_status"], r["unit"], target))
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
                  for i, h in enumerate(headers)]
        align = ("<", "<", ">", "<", ">", "<", "<", ">")

        def row(cells):
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

        print(row(headers))
        print("  ".join("-" * w for w in widths))
        for line in lines:
            print(row(line))
        notes = [(r["name"], r["note"]) for r in self.rows if r["note"]]
        if notes:
            print()
            for name, note in notes:
                print(f"  {name.strip()}: {note}")


# --------------------------------------------------------------------------- phases


def phase_put(args, res: Results, workdir: str, keys: list[str], value: bytes) -> Store:
    """Three put variants, each into its own fresh store; returns the ns.put store, open."""
    n = len(keys)

    # ns.put: the binding, with validation and the error-tagging decorator.
    path = os.path.join(workdir, "put")
    store = Store.open(path, fsync="no", **STORE_OPTIONS)
    ns = store.namespace()
    put = ns.put
    log(f"put: ns.put x {n:,}")
    with Timer() as t:
        for k in keys:
            put(k, value)
    wall, cpu = t.rate(n)
    res.add("put fsync=no", "ns.put(key, value)", wall, "puts/s", cpu=cpu, target=TARGET_PUT)
    assert store.key_count(ns.number) == n, "ns.put stored the wrong number of keys"
    main_store = store
    # Its sealed segments' hint files are written in the background; let that finish first so
    # the next rows are not charged for it (process CPU counts every thread).
    _wait_for_hints(res, store, "after ns.put")

    # put_raw: already-encoded, already-validated keys; no fsync wait.
    raw_keys = [k.encode() for k in keys]
    path = os.path.join(workdir, "put_raw")
    store = Store.open(path, fsync="no", **STORE_OPTIONS)
    ns = store.namespace()
    put_raw = ns.put_raw
    log(f"put: ns.put_raw x {n:,}")
    with Timer() as t:
        for k in raw_keys:
            put_raw(k, value, durable=False)
    wall, cpu = t.rate(n)
    res.add("put fsync=no", "ns.put_raw(bytes, value, durable=False)", wall, "puts/s", cpu=cpu,
            target=TARGET_PUT)
    del raw_keys
    store.close()
    shutil.rmtree(path)

    # bulk_put: 1,000 items per call; only the calls are timed, not building the dicts.
    path = os.path.join(workdir, "bulk_put")
    store = Store.open(path, fsync="no", **STORE_OPTIONS)
    ns = store.namespace()
    log(f"put: ns.bulk_put x {n // BULK_BATCH:,} batches")
    t = Timer()
    for start in range(0, n, BULK_BATCH):
        batch = [{"key": k, "value": value} for k in keys[start:start + BULK_BATCH]]
        with t:
            out = ns.bulk_put(batch)
        assert not out["unsuccessful_keys"]
    wall, cpu = t.rate(n)
    res.add("put fsync=no", f"ns.bulk_put (batches of {BULK_BATCH:,})", wall, "puts/s", cpu=cpu,
            target=TARGET_PUT)
    store.close()
    shutil.rmtree(path)
    return main_store


def _wait_for_hints(res: Results, store: Store, when: str) -> None:
    started = time.perf_counter()
    c0 = time.process_time()
    store.wait_for_hints()
    res.add("hints", f"background hint writing, waited {when}", time.perf_counter() - started,
            "s", note=f"{time.process_time() - c0:.1f} CPU-s; a sealed segment's hint file is "
                      f"written by a background thread, paced to about a tenth of a core "
                      f"except while someone waits for it, as here")


def load_store(path: str, keys: list[str], value: bytes) -> Store:
    """Untimed load for runs that skip the put phase; returns the store, open."""
    log(f"loading {len(keys):,} keys with bulk_put (untimed)")
    store = Store.open(path, fsync="no", **STORE_OPTIONS)
    ns = store.namespace()
    for start in range(0, len(keys), BULK_BATCH):
        ns.bulk_put([{"key": k, "value": value} for k in keys[start:start + BULK_BATCH]])
    return store


def phase_fsync(args, res: Results, workdir: str, value: bytes) -> None:
    # One thread first: the cost of an fsync with nobody to share it.
    path = os.path.join(workdir, "fsync1")
    store = Store.open(path, fsync="always", **STORE_OPTIONS)
    ns = store.namespace()
    seconds = min(3.0, args.fsync_seconds)
    log(f"fsync: 1 writer for {seconds:.0f} s")
    done = 0
    f0 = store.fsync_count
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline and done < args.fsync_max_puts:
        ns.put(key_name(done), value)
        done += 1
    elapsed = time.perf_counter() - t0
    fsyncs = store.fsync_count - f0
    res.add("put fsync=always", "1 writer: ns.put", done / elapsed, "puts/s",
            note=f"{done:,} puts, {fsyncs:,} fsyncs in {elapsed:.1f} s")
    store.close()
    shutil.rmtree(path)

    # Many writers sharing fsyncs.
    threads = args.fsync_threads
    path = os.path.join(workdir, "fsyncN")
    store = Store.open(path, fsync="always", **STORE_OPTIONS)
    ns = store.namespace()
    counter = itertools.count()
    barrier = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    stop_at = [0.0]

    def writer(slot: int) -> None:
        lat = latencies[slot]
        put = ns.put
        clock = time.perf_counter
        barrier.wait()
        try:
            while True:
                i = next(counter)
                if i >= args.fsync_max_puts:
                    return
                t = clock()
                if t >= stop_at[0]:
                    return
                put(key_name(i), value)
                lat.append(clock() - t)
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(s,), daemon=True) for s in range(threads)]
    for t in pool:
        t.start()
    log(f"fsync: {threads} writers for up to {args.fsync_seconds:.0f} s / "
        f"{args.fsync_max_puts:,} puts")
    f0 = store.fsync_count
    c0 = time.process_time()
    t0 = time.perf_counter()
    stop_at[0] = t0 + args.fsync_seconds
    barrier.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if errors:
        raise errors[0]
    fsyncs = store.fsync_count - f0
    done = sum(len(x) for x in latencies)
    all_lat = sorted(itertools.chain.from_iterable(latencies))
    res.add("put fsync=always", f"{threads} writers: ns.put", done / elapsed, "puts/s",
            note=f"{done:,} puts, {fsyncs:,} fsyncs in {elapsed:.1f} s, "
                 f"{cpu / max(done, 1) * 1e6:,.0f} µs of CPU per put")
    res.add("put fsync=always", f"{threads} writers: fsyncs per put", fsyncs / max(done, 1),
            "ratio", note=f"{done / max(fsyncs, 1):.1f} puts share each fsync")
    res.add("put fsync=always", f"{threads} writers: put latency p50",
            percentile(all_lat, 50) * 1000, "ms")
    res.add("put fsync=always", f"{threads} writers: put latency p99",
            percentile(all_lat, 99) * 1000, "ms")
    store.close()
    shutil.rmtree(path)


def phase_get(args, res: Results, store: Store, keys: list[str], value: bytes) -> None:
    rng = random.Random(args.seed + 1)
    ops = min(args.get_ops, len(keys) * 4)
    sample = [keys[rng.randrange(len(keys))] for _ in range(ops)]
    raw_sample = [k.encode() for k in sample]
    ns = store.namespace()
    assert ns.get(sample[0], type="bytes") == value, "get returned the wrong value"
    get = ns.get
    get_entry = ns.get_entry

    log(f"get: ns.get x {ops:,}, first reads")
    with Timer() as t:
        for k in sample:
            get(k)
    wall, cpu = t.rate(ops)
    res.add("get", "ns.get(key)  (text; first read: read cache misses)", wall, "gets/s", cpu=cpu,
            target=TARGET_GET)
    cache = store.stats()["read_cache"]

    log(f"get: ns.get x {ops:,}, again")
    with Timer() as t:
        for k in sample:
            get(k)
    wall, cpu = t.rate(ops)
    after = store.stats()["read_cache"]
    hits = (after["hits"] - cache["hits"]) / ops
    res.add("get", "ns.get(key)  (text; the same keys again)", wall, "gets/s", cpu=cpu,
            target=TARGET_GET, note=f"{hits:.0%} read cache hits ({after['entries']:,} values, "
                                    f"{after['used_bytes'] / 2**20:.0f} MiB cached)")

    log(f"get: ns.get(type='bytes') x {ops:,}")
    with Timer() as t:
        for k in sample:
            get(k, type="bytes")
    wall, cpu = t.rate(ops)
    res.add("get", 'ns.get(key, type="bytes")', wall, "gets/s", cpu=cpu, target=TARGET_GET)

    log(f"get: ns.get_entry x {ops:,}")
    with Timer() as t:
        for k in raw_sample:
            get_entry(k)
    wall, cpu = t.rate(ops)
    res.add("get", "ns.get_entry(bytes)  (no validation; never cached)", wall, "gets/s",
            cpu=cpu, target=TARGET_GET)

    missing = [f"absent:{i:014d}" for i in range(min(ops, 100_000))]
    with Timer() as t:
        for k in missing:
            get(k)
    wall, cpu = t.rate(len(missing))
    res.add("get", "ns.get(missing key)", wall, "gets/s", cpu=cpu)


def _page_times(pages) -> tuple[list[float], list[float], list[int]]:
    """Run ``pages`` (callables returning a list() result), timing each: wall and thread CPU."""
    walls, cpus, sizes = [], [], []
    for call in pages:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        page = call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        sizes.append(len(page["keys"]))
    return sorted(walls), sorted(cpus), sizes


def phase_list(args, res: Results, store: Store, keys: list[str]) -> None:
    n = len(keys)
    ns = store.namespace()
    log(f"list: cursor walk of {n:,} keys")
    state = {"cursor": None, "done": False}

    def walk():
        while not state["done"]:
            def call():
                page = ns.list(cursor=state["cursor"])
                state["done"] = page["list_complete"]
                state["cursor"] = page.get("cursor")
                return page
            yield call

    walls, cpus, sizes = _page_times(walk())
    assert sum(sizes) == n, f"cursor walk saw {sum(sizes)} keys, expected {n}"
    res.add("list", f"full walk: ms/page median ({len(walls):,} pages)",
            statistics.median(walls) * 1000, "ms", cpu=statistics.median(cpus) * 1000,
            target=TARGET_LIST_MS, better="lower")
    res.add("list", "full walk: ms/page p99", percentile(walls, 99) * 1000, "ms",
            cpu=percentile(cpus, 99) * 1000, target=TARGET_LIST_MS, better="lower")

    # Random prefixes that each match up to 1,000 keys (all but the last 3 digits).
    rng = random.Random(args.seed + 2)
    samples = args.list_samples
    log(f"list: {samples} random prefixes")
    prefixes = [keys[rng.randrange(n)][:-3] for _ in range(samples)]
    walls, cpus, sizes = _page_times((lambda p=p: ns.list(prefix=p)) for p in prefixes)
    note = f"{samples} prefixes, {statistics.mean(sizes):,.0f} keys per page on average"
    res.add("list", "random prefix: ms/page median", statistics.median(walls) * 1000, "ms",
            cpu=statistics.median(cpus) * 1000, target=TARGET_LIST_MS, better="lower", note=note)
    res.add("list", "random prefix: ms/page p99", percentile(walls, 99) * 1000, "ms",
            cpu=percentile(cpus, 99) * 1000, target=TARGET_LIST_MS, better="lower")


def phase_open(args, res: Results, path: str, n: int) -> None:
    log("open: reopen (hint files of sealed segments, scan of the active one)")
    gc.collect()
    with Timer() as t:
        store = Store.open(path, fsync="no", **STORE_OPTIONS)
    rep = store.recovery
    try:
        assert store.key_count() == n, f"reopened store has {store.key_count()} keys, not {n}"
    finally:
        store.close()
    mb = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
             if f.endswith(".seg")) / 1e6
    res.add("open", f"open {n:,} keys", t.wall, "s", cpu=t.cpu,
            note=f"{rep.segments} segments ({rep.hints_loaded} from hints, "
                 f"{rep.segments_scanned} scanned), {mb:,.0f} MB, {rep.records:,} records, "
                 f"page cache warm")


def phase_rss(args, res: Results, workdir: str, path: str | None, n: int) -> None:
    def child(mode: str, extra: list[str]) -> dict:
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", mode, "--keys", str(n),
               "--dir", workdir, "--seed", str(args.seed), *extra,
               *(["--no-encryption"] if args.no_encryption else [])]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    log(f"rss: child process writes {n:,} keys")
    loaded = child("load", [])
    b = loaded["breakdown"]
    res.add("memory", f"RSS per key after {n:,} put_raw", loaded["per_key"], "B/key",
            target=TARGET_RSS, better="lower",
            note=f"RSS {loaded['base'] / 1e6:,.0f} MB empty -> {loaded['after'] / 1e6:,.0f} MB "
                 f"(peak {loaded['peak'] / 1e6:,.0f} MB); getsizeof estimate "
                 f"{b['total_per_key']:.0f} B/key; read cache off (its budget, 64 MiB by "
                 f"default, comes on top: {64 * 2**20 / n:,.0f} B/key at this many keys)")
    res.extra["rss_load"] = loaded
    for part in ("index dict table", "key bytes objects", "location int objects",
                 "SortedList", "metadata + expiry + other"):
        res.add("memory", f"  est. {part}", b["per_key"][part], "B/key")
    res.add("memory", "  est. unaccounted (RSS - estimate)",
            loaded["per_key"] - b["total_per_key"], "B/key")
    if path is not None:
        log("rss: child process reopens the N-key store")
        reopened = child("reopen", ["--rss-path", path])
        b = reopened["breakdown"]
        res.add("memory", f"RSS per key after reopening {n:,} keys", reopened["per_key"],
                "B/key", target=TARGET_RSS, better="lower",
                note=f"RSS {reopened['base'] / 1e6:,.0f} MB empty -> "
                     f"{reopened['after'] / 1e6:,.0f} MB (peak {reopened['peak'] / 1e6:,.0f} "
                     f"MB); getsizeof estimate {b['total_per_key']:.0f} B/key")
        res.add("memory", "  est. unaccounted after reopen (RSS - estimate)",
                reopened["per_key"] - b["total_per_key"], "B/key")
        res.extra["rss_reopen"] = reopened


# --------------------------------------------------------------------------- RSS child


def _alloc(size: int) -> int:
    """What pymalloc really takes for an object of ``size`` bytes (16-byte size classes)."""
    return (size + 15) & ~15 if size <= 512 else size


def index_breakdown(store: Store) -> dict:
    """Estimate what the in-memory structures cost, with ``sys.getsizeof``.

    Reaches into engine internals on purpose: it is an estimate for a report, and says which
    structure to shrink."""
    idx = store._index
    locations = idx._locations
    sl = idx._sorted
    n = max(len(locations), 1)
    key_objs = sum(_alloc(sys.getsizeof(k)) for k in locations)
    loc_objs = sum(_alloc(sys.getsizeof(v)) for v in locations.values() if not -5 <= v <= 256)
    sorted_bytes = (sys.getsizeof(sl) + sys.getsizeof(sl._lists) + sys.getsizeof(sl._maxes)
                    + sys.getsizeof(sl._index) + sum(sys.getsizeof(x) for x in sl._lists))
    exp = store._expiry
    other = (sys.getsizeof(store._metadata)
             + sum(_alloc(sys.getsizeof(v)) for v in store._metadata.values())
             + sys.getsizeof(exp._expire_ms) + sys.getsizeof(exp._heap)
             + sys.getsizeof(store._last_write_ms) + sys.getsizeof(store._ns_key_counts))
    parts = {
        "index dict table": sys.getsizeof(locations),
        "key bytes objects": key_objs,
        "location int objects": loc_objs,
        "SortedList": sorted_bytes,
        "metadata + expiry + other": other,
    }
    total = sum(parts.values())
    return {"keys": len(locations), "bytes": parts,
            "per_key": {k: v / n for k, v in parts.items()}, "total_per_key": total / n}


def _peak_rss() -> int:
    """This process's RSS high-water mark.  Linux's VmHWM, not ``ru_maxrss``: the latter keeps
    the parent's peak across fork and exec, so a child of a big process would report it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_child(args) -> None:
    n = args.keys
    empty = tempfile.mkdtemp(prefix="rss-", dir=args.dir)
    try:
        # The read cache is a fixed budget (64 MiB by default), not a cost per key, and every
        # put_raw would fill it: measured without it, and the row says so.
        store = Store.open(empty, fsync="no", read_cache_bytes=0, **STORE_OPTIONS)
        ns = store.namespace()
        value = make_value(random.Random(args.seed))
        if args.rss_child == "load":
            gc.collect()
            base = rss()
            put_raw = ns.put_raw
            for i in scrambled_ids(n):
                put_raw(key_name(i).encode(), value, durable=False)
        else:
            store.close()
            gc.collect()
            base = rss()
            store = Store.open(args.rss_path, fsync="no", read_cache_bytes=0, **STORE_OPTIONS)
        gc.collect()
        after = rss()
        keys = store.key_count()
        result = {"mode": args.rss_child, "keys": keys, "base": base, "after": after,
                  "peak": _peak_rss(), "per_key": (after - base) / max(keys, 1),
                  "breakdown": index_breakdown(store)}
        store.close()
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    print(json.dumps(result))


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000, help="N keys (default 1,000,000)")
    p.add_argument("--quick", action="store_true", help="100,000 keys")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--dir", help="parent of the temporary data directory "
                                 "(default bench/results/, on the repository's disk)")
    p.add_argument("--only", help=f"comma-separated phases: {','.join(PHASES)}")
    p.add_argument("--fsync-threads", type=int, default=64)
    p.add_argument("--fsync-seconds", type=float, default=10.0)
    p.add_argument("--fsync-max-puts", type=int, default=200_000)
    p.add_argument("--get-ops", type=int, default=200_000, help="random gets per get row")
    p.add_argument("--list-samples", type=int, default=200, help="random-prefix list pages")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    p.add_argument("--no-encryption", action="store_true",
                   help="plaintext stores (encryption at rest is on by default)")
    p.add_argument("--rss-child", choices=("load", "reopen"), help=argparse.SUPPRESS)
    p.add_argument("--rss-path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.keys = 100_000
    if args.keys < 1000:
        p.error("--keys must be at least 1000")
    phases = set(PHASES)
    if args.only:
        phases = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = phases - set(PHASES)
        if unknown:
            p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    args.phases = phases
    if args.no_encryption:
        STORE_OPTIONS["encryption"] = False
    return args


def _busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _own_cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def measure(args) -> tuple[Results, dict]:
    """Run the phases ``args`` selects; the table rows and the JSON document."""
    parent = args.dir or str(REPO / "bench" / "results")
    os.makedirs(parent, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="engine-bench-", dir=parent)
    res = Results()
    n = args.keys
    started = time.perf_counter()
    busy0, own0 = _busy_cpu_seconds(), _own_cpu_seconds()
    value = make_value(random.Random(args.seed))
    keys = [key_name(i) for i in scrambled_ids(n)]
    store = None
    try:
        # The N-key store of the ns.put row stays open for the get and list phases.
        main_path = os.path.join(workdir, "put")
        if "put" in args.phases:
            store = phase_put(args, res, workdir, keys, value)
        elif args.phases & {"get", "list", "open", "rss"}:
            store = load_store(main_path, keys, value)
        if "fsync" in args.phases:
            phase_fsync(args, res, workdir, value)
        if "get" in args.phases and store is not None:
            _wait_for_hints(res, store, "before get")
            phase_get(args, res, store, keys, value)
        if "list" in args.phases and store is not None:
            phase_list(args, res, store, sorted(keys))
        has_store = store is not None
        if store is not None:
            # A server writes the hints of its sealed segments in the background long before
            # it stops; close() alone gives them 2 s.  Wait, so [open] measures that state.
            _wait_for_hints(res, store, "before close")
            store.close()
            store = None
        if "open" in args.phases and has_store:
            phase_open(args, res, main_path, n)
        if "rss" in args.phases:
            del keys
            gc.collect()
            phase_rss(args, res, workdir, main_path if has_store else None, n)
    finally:
        if store is not None:
            store.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    others = max(0.0, (_busy_cpu_seconds() - busy0) - (_own_cpu_seconds() - own0))
    doc = {
        "keys": n, "key_bytes": len(KEY_PREFIX) + KEY_DIGITS, "value_bytes": VALUE_BYTES,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count() or 1, "seconds": total, "other_cpu_seconds": others,
        "argv": sys.argv[1:], "rows": res.rows, **res.extra,
    }
    return res, doc


def run(keys: int, phases=PHASES, **options) -> dict:
    """The benchmark as a function, for ``bench/report.py``: the JSON document ``--json``
    writes.  ``options`` are the command line's long options (``dir=``, ``get_ops=``, ...)."""
    argv = ["--keys", str(keys), "--only", ",".join(phases)]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name.replace('_', '-')}")
        elif value not in (None, False):
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return measure(parse_args(argv))[1]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args)
        return 0
    res, doc = measure(args)
    n, total, others, cpus = doc["keys"], doc["seconds"], doc["other_cpu_seconds"], doc["cpus"]

    print()
    print(f"edgekv engine benchmark: {n:,} keys of {len(KEY_PREFIX) + KEY_DIGITS} B, "
          f"values of {VALUE_BYTES} B")
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
          f"{cpus} CPUs; {total:,.0f} s in all; other processes used {others:,.0f} CPU-s "
          f"({others / total / cpus:.0%} of the machine) meanwhile")
    print()
    res.print_table()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
