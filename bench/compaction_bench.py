#!/usr/bin/env python3
"""Compaction benchmark: open time before and after compaction, and disk bytes against live bytes.

A measuring script, not a test: it prints a table with ``PASS``/``MISS`` beside the targets of
the compaction issue (reopen of N keys after compaction in at most 1 s; disk bytes at most 1.3x
live bytes after "write N, overwrite all twice, delete half, compact").

    python bench/compaction_bench.py                # 1,000,000 keys (a few minutes)
    python bench/compaction_bench.py --keys 200000  # quicker

Steps, with keys of 20 bytes and values of 100 bytes at ``fsync="no"``:

1. write N keys, overwrite all of them twice (3N records, N live);
2. reopen: a full scan of every segment (the page cache is warm);
3. compact; reopen: compacted segments load from their hint files;
4. delete half the keys, compact, reopen; compare the bytes of segment (and hint) files with
   the bytes of the live records (32-byte header, 6-byte payload prefix, key, value, plus the
   28 bytes of nonce and tag when the store encrypts, as it does by default).

``run(keys)`` returns the same numbers as a dict, with disk and live bytes at every stage.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine import Store  # noqa: E402

try:
    from engine.codec import OVERHEAD as SEAL_OVERHEAD  # nonce + tag of an encrypted record
except ImportError:  # an engine without encryption
    SEAL_OVERHEAD = 0


def _disk_bytes(path: str) -> tuple[int, int]:
    seg = hint = 0
    for name in os.listdir(path):
        size = os.path.getsize(os.path.join(path, name))
        if name.endswith(".seg"):
            seg += size
        elif name.endswith(".hint"):
            hint += size
    return seg, hint


def _timed_open(path: str) -> tuple[Store, float]:
    started = time.perf_counter()
    store = Store.open(path, fsync="no")
    return store, time.perf_counter() - started


def live_record_bytes(keys: int, sealed: bool = False) -> int:
    """What ``keys`` live records of this benchmark take: header, payload prefix, key, value,
    and for an encrypted store the nonce and tag that seal each payload."""
    return keys * (32 + 6 + 20 + 100 + (SEAL_OVERHEAD if sealed else 0))


def _encrypted(store: Store) -> bool:
    """Whether the store seals its records (an engine internal, read for the report)."""
    return getattr(store, "_ring", None) is not None


def run(keys: int = 1_000_000, dir: str | None = None, log=lambda msg: None) -> dict:
    """The four steps as a function, for ``bench/report.py``.  Returns seconds for each step
    and, at each stage, segment bytes on disk beside the bytes of the live records:
    ``stages`` = [{"stage", "live_keys", "disk_bytes", "hint_bytes", "live_bytes"}]."""
    n = keys
    parent = dir or str(REPO / "bench" / "results")
    os.makedirs(parent, exist_ok=True)
    # the store in a subdirectory: an encrypted store keeps its key file beside its directory
    workdir = tempfile.mkdtemp(prefix="compaction-", dir=parent)
    path = os.path.join(workdir, "data")
    out: dict = {"keys": n, "stages": []}

    def stage(name: str, live: int) -> None:
        seg, hint = _disk_bytes(path)
        out["stages"].append({"stage": name, "live_keys": live, "disk_bytes": seg,
                              "hint_bytes": hint,
                              "live_bytes": live_record_bytes(live, out["encrypted"])})

    try:
        keys_ = [f"user:{i:015d}".encode() for i in range(n)]
        random.Random(1).shuffle(keys_)
        store = Store.open(path, fsync="no")
        out["encrypted"] = _encrypted(store)
        ns = store.namespace()
        log(f"compaction: write {n:,} keys, overwrite all twice")
        started = time.perf_counter()
        for round_ in range(3):
            value = (f"{round_}" * 100).encode()
            for key in keys_:
                ns.put_raw(key, value, durable=False)
        out["write_s"] = time.perf_counter() - started
        store.close()
        stage("written, overwritten twice", n)

        store, out["open_scan_s"] = _timed_open(path)
        log("compaction: compact")
        summary = store.compact()
        out["compact_s"] = summary["seconds"]
        out["compact_summary"] = summary
        store.close()
        stage("compacted", n)
        store, out["open_hints_s"] = _timed_open(path)
        out["hints_loaded"] = store.recovery.hints_loaded

        ns = store.namespace()
        for key in keys_[: n // 2]:
            ns.delete_raw(key, durable=False)
        live = store.key_count()
        store.close()
        stage("half deleted", live)
        store, _ = _timed_open(path)
        log("compaction: compact after deleting half")
        summary = store.compact()
        out["compact_half_s"] = summary["seconds"]
        out["compact_half_summary"] = summary
        live = store.key_count()
        store.close()
        store, out["open_half_s"] = _timed_open(path)
        store.close()
        stage("half deleted, compacted", live)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    last = out["stages"][-1]
    out["disk_live_ratio"] = last["disk_bytes"] / last["live_bytes"]
    out["disk_hints_live_ratio"] = (last["disk_bytes"] + last["hint_bytes"]) / last["live_bytes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--dir", help="parent directory for the data (default: bench/results)")
    args = parser.parse_args()
    n = args.keys
    r = run(n, args.dir)
    by_stage = {s["stage"]: s for s in r["stages"]}
    half = by_stage["half deleted, compacted"]
    status = "PASS" if r["open_hints_s"] <= 1.0 else "MISS"
    ratio = r["disk_live_ratio"]
    rows = [
        ("write N, overwrite twice", f"{r['write_s']:.1f} s", ""),
        (f"open {n:,} keys, {3 * n:,} records (full scan)", f"{r['open_scan_s']:.2f} s", ""),
        ("compact", f"{r['compact_s']:.1f} s",
         f"{r['compact_summary']['segments_in']} -> {r['compact_summary']['segments_out']} "
         f"segments, {r['compact_summary']['records_dropped']:,} records dropped"),
        (f"open {n:,} keys after compaction (hints)", f"{r['open_hints_s']:.2f} s",
         f"target <= 1 s: {status}; {r['hints_loaded']} hint files"),
        ("delete half, compact", f"{r['compact_half_s']:.1f} s",
         f"{r['compact_half_summary']['bytes_before']:,} -> "
         f"{r['compact_half_summary']['bytes_after']:,} bytes"),
        (f"open {half['live_keys']:,} keys after compaction (hints)",
         f"{r['open_half_s']:.2f} s", ""),
        ("disk / live bytes (segments)", f"{ratio:.3f}",
         f"target <= 1.3: {'PASS' if ratio <= 1.3 else 'MISS'}; "
         f"{half['disk_bytes']:,} / {half['live_bytes']:,}"),
        ("disk / live bytes (segments + hints)", f"{r['disk_hints_live_ratio']:.3f}",
         f"hints {half['hint_bytes']:,} bytes"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"compaction benchmark, {n:,} keys of 20 B, values of 100 B, fsync=no, page cache warm"
          f", encryption {'on' if r['encrypted'] else 'off'}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")


if __name__ == "__main__":
    main()
