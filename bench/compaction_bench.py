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
   the bytes of the live records (32-byte header, 6-byte payload prefix, key, value).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--dir", help="parent directory for the data (default: bench/results)")
    args = parser.parse_args()
    n = args.keys
    parent = args.dir or str(REPO / "bench" / "results")
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix="compaction-", dir=parent)
    rows: list[tuple[str, str, str]] = []
    try:
        keys = [f"user:{i:015d}".encode() for i in range(n)]
        random.Random(1).shuffle(keys)
        store = Store.open(path, fsync="no")
        ns = store.namespace()
        started = time.perf_counter()
        for round_ in range(3):
            value = (f"{round_}" * 100).encode()
            for key in keys:
                ns.put_raw(key, value, durable=False)
        rows.append(("write N, overwrite twice", f"{time.perf_counter() - started:.1f} s", ""))
        store.close()

        store, seconds = _timed_open(path)
        rows.append((f"open {n:,} keys, {3 * n:,} records (full scan)", f"{seconds:.2f} s", ""))
        summary = store.compact()
        rows.append(("compact", f"{summary['seconds']:.1f} s",
                     f"{summary['segments_in']} -> {summary['segments_out']} segments, "
                     f"{summary['records_dropped']:,} records dropped"))
        store.close()
        store, seconds = _timed_open(path)
        status = "PASS" if seconds <= 1.0 else "MISS"
        rows.append((f"open {n:,} keys after compaction (hints)", f"{seconds:.2f} s",
                     f"target <= 1 s: {status}; {store.recovery.hints_loaded} hint files"))

        ns = store.namespace()
        for key in keys[: n // 2]:
            ns.delete_raw(key, durable=False)
        summary = store.compact()
        rows.append(("delete half, compact", f"{summary['seconds']:.1f} s",
                     f"{summary['bytes_before']:,} -> {summary['bytes_after']:,} bytes"))
        live = store.key_count()
        store.close()
        store, seconds = _timed_open(path)
        rows.append((f"open {live:,} keys after compaction (hints)", f"{seconds:.2f} s", ""))
        store.close()
        seg, hint = _disk_bytes(path)
        live_bytes = live * (32 + 6 + 20 + 100)
        ratio = seg / live_bytes
        rows.append(("disk / live bytes (segments)", f"{ratio:.3f}",
                     f"target <= 1.3: {'PASS' if ratio <= 1.3 else 'MISS'}; "
                     f"{seg:,} / {live_bytes:,}"))
        rows.append(("disk / live bytes (segments + hints)", f"{(seg + hint) / live_bytes:.3f}",
                     f"hints {hint:,} bytes"))
    finally:
        shutil.rmtree(path, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"compaction benchmark, {n:,} keys of 20 B, values of 100 B, fsync=no, page cache warm")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")


if __name__ == "__main__":
    main()
