"""A Python application's workload over redis-py: mixed get/put/list, edgekv beside redis-server.

    python bench/client_workload.py                       # everysec and always, 3 rounds
    python bench/client_workload.py --fsync no --seconds 3 --rounds 1

redis-benchmark measures the server with a C client that does nothing but send; this measures
what a Python service sees.  Several client processes (not threads: one process's GIL would
cap the client, not the server) each loop for a fixed time over a preloaded keyspace:

* 80 % get, 15 % put with metadata, 5 % list of a 100-key page.

Two dialects, because Redis has no metadata and no ordered listing:

* ``redis``: ``GET``, ``SET`` (the metadata is dropped) and ``SCAN cursor MATCH user:* COUNT
  100`` (an unordered walk).  Run against both servers: the like-for-like comparison.
* ``kv``: ``KV.GET key WITHMETADATA``, ``KV.PUT key value METADATA json`` and ``KV.LIST PREFIX
  p LIMIT 100`` (ordered, with metadata).  edgekv only: what the Workers KV commands cost.

Each operation's latency is taken on the client (``perf_counter_ns`` around the call), so it
includes redis-py's own encode/decode.  Results: ops/s, and p50/p99/p99.9 overall and per
operation, per round; A/B order alternates every round.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resp_vs_redis import Server, check_tools, write_json  # noqa: E402

GET_SHARE, PUT_SHARE = 0.80, 0.15  # the rest is list
LIST_PAGE = 100
OPS = ("get", "put", "list")


def key_name(i: int) -> str:
    return f"user:{i:08d}"


def metadata_json(i: int) -> str:
    return json.dumps({"version": i, "owner": "bench", "tags": ["a", "b"]})


def preload(port: int, dialect: str, keys: int, value_bytes: int) -> None:
    """Write every key once, pipelined, so gets hit and lists have pages to return."""
    import redis

    value = b"v" * value_bytes
    with redis.Redis(port=port) as client:
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            if dialect == "kv":
                pipe.execute_command("KV.PUT", key_name(i), value, "METADATA", metadata_json(i))
            else:
                pipe.set(key_name(i), value)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()


def _worker(port: int, dialect: str, keys: int, value_bytes: int, seed: int,
            start_at: float, stop_at: float, queue) -> None:
    """One client process: loop until ``stop_at``; send back per-op latencies in ns."""
    import redis

    rng = random.Random(seed)
    value = b"w" * value_bytes
    latencies: dict[str, list[int]] = {op: [] for op in OPS}
    errors = 0
    client = redis.Redis(port=port)
    client.ping()
    scan_cursor = 0
    clock = time.perf_counter_ns
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        while time.time() < stop_at:
            draw = rng.random()
            i = rng.randrange(keys)
            t0 = clock()
            try:
                if draw < GET_SHARE:
                    op = "get"
                    if dialect == "kv":
                        client.execute_command("KV.GET", key_name(i), "WITHMETADATA")
                    else:
                        client.get(key_name(i))
                elif draw < GET_SHARE + PUT_SHARE:
                    op = "put"
                    if dialect == "kv":
                        client.execute_command("KV.PUT", key_name(i), value, "METADATA",
                                               metadata_json(i))
                    else:
                        client.set(key_name(i), value)
                else:
                    op = "list"
                    if dialect == "kv":
                        # a prefix that covers 1,000 keys; the page stops at 100
                        client.execute_command("KV.LIST", "PREFIX", key_name(i)[:-3],
                                               "LIMIT", LIST_PAGE)
                    else:
                        scan_cursor, _ = client.scan(scan_cursor, match="user:*",
                                                     count=LIST_PAGE)
            except redis.RedisError:
                errors += 1
                continue
            latencies[op].append(clock() - t0)
    finally:
        client.close()
    queue.put({"latencies": latencies, "errors": errors})


def percentile(sorted_values: list, p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(ns_values: list[int]) -> dict:
    ordered = sorted(ns_values)
    return {"count": len(ordered),
            "p50_ms": percentile(ordered, 50) / 1e6, "p99_ms": percentile(ordered, 99) / 1e6,
            "p999_ms": percentile(ordered, 99.9) / 1e6}


def cdf_points(ns_values: list[int], points: int = 200) -> list[tuple[float, float]]:
    """(latency ms, fraction) pairs on a log-spaced fraction grid, for a CDF plot."""
    ordered = sorted(ns_values)
    if not ordered:
        return []
    out = []
    for j in range(points):
        frac = 1 - 10 ** (-4 * (j + 1) / points)  # 0.0x .. 0.9999
        out.append((percentile(ordered, frac * 100) / 1e6, frac))
    return out


def measure(port: int, dialect: str, *, seconds: float, clients: int, keys: int,
            value_bytes: int, seed: int) -> dict:
    """Run ``clients`` processes for ``seconds`` against one server; merge their latencies."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5  # every process connected before the clock starts
    stop_at = start_at + seconds
    procs = [ctx.Process(target=_worker, args=(port, dialect, keys, value_bytes, seed * 100 + c,
                                               start_at, stop_at, queue), daemon=True)
             for c in range(clients)]
    for p in procs:
        p.start()
    parts = [queue.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    merged: dict[str, list[int]] = {op: [] for op in OPS}
    for part in parts:
        for op in OPS:
            merged[op].extend(part["latencies"][op])
    every = [x for op in OPS for x in merged[op]]
    result = {"ops": len(every), "seconds": seconds, "ops_per_s": len(every) / seconds,
              "errors": sum(p["errors"] for p in parts), **latency_summary(every),
              "per_op": {op: latency_summary(merged[op]) for op in OPS},
              "cdf": cdf_points(every)}
    return result


def run(*, fsyncs=("everysec", "always"), rounds=3, seconds=5.0, clients=4, keys=10_000,
        value_bytes=100, edgekv_args: tuple[str, ...] = (),
        progress: Callable[[str], None] = print) -> dict:
    """Every fsync mode: fresh servers, preload, then per round (alternating order) the
    ``redis`` dialect against both servers and the ``kv`` dialect against edgekv.

    Returns ``{"runs": [...], "summary": [...]}`` with one run per (round, fsync, target)."""
    targets = (("redis", "redis"), ("edgekv", "redis"), ("edgekv", "kv"))
    runs: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="edgekv-client-", dir=os.environ.get("BENCH_TMP")))
    try:
        for fsync in fsyncs:
            servers = {kind: Server(kind, fsync, workdir, edgekv_args)
                       for kind in ("redis", "edgekv")}
            try:
                # kv keys hold metadata; the redis dialect on edgekv overwrites values only
                preload(servers["redis"].port, "redis", keys, value_bytes)
                preload(servers["edgekv"].port, "kv", keys, value_bytes)
                for rnd in range(rounds):
                    order = targets if rnd % 2 == 0 else targets[::-1]
                    for kind, dialect in order:
                        m = measure(servers[kind].port, dialect, seconds=seconds,
                                    clients=clients, keys=keys, value_bytes=value_bytes,
                                    seed=rnd + 1)
                        cdf = m.pop("cdf")
                        runs.append({"round": rnd, "fsync": fsync, "server": kind,
                                     "dialect": dialect, "cdf": cdf, **m})
                        progress(f"round {rnd + 1} fsync={fsync} {kind:6} {dialect:5}: "
                                 f"{m['ops_per_s']:,.0f} ops/s p50 {m['p50_ms']:.2f} "
                                 f"p99 {m['p99_ms']:.2f} p99.9 {m['p999_ms']:.2f} ms"
                                 + (f" ({m['errors']} errors)" if m["errors"] else ""))
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"runs": runs, "summary": summarize(runs), "clients": clients, "seconds": seconds,
            "keys": keys, "value_bytes": value_bytes, "rounds": rounds,
            "mix": {"get": GET_SHARE, "put": PUT_SHARE, "list": 1 - GET_SHARE - PUT_SHARE},
            "list_page": LIST_PAGE}


def summarize(runs: list[dict]) -> list[dict]:
    """Median, min and max over rounds per (fsync, server, dialect)."""
    groups: dict = {}
    for r in runs:
        groups.setdefault((r["fsync"], r["server"], r["dialect"]), []).append(r)
    out = []
    for (fsync, server, dialect), rows in groups.items():
        row = {"fsync": fsync, "server": server, "dialect": dialect, "rounds": len(rows)}
        for k in ("ops_per_s", "p50_ms", "p99_ms", "p999_ms"):
            values = [x[k] for x in rows]
            row[k] = statistics.median(values)
            row[k + "_min"], row[k + "_max"] = min(values), max(values)
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsync", nargs="+", default=["everysec", "always"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args()
    missing = check_tools()
    if missing:
        sys.exit(missing)
    result = run(fsyncs=args.fsync, rounds=args.rounds, seconds=args.seconds,
                 clients=args.clients, keys=args.keys,
                 progress=lambda line: print(line, flush=True))
    print()
    print(f"{'fsync':9} {'server':7} {'dialect':7} | {'ops/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99.9 ms':>8}")
    for row in result["summary"]:
        print(f"{row['fsync']:9} {row['server']:7} {row['dialect']:7} | {row['ops_per_s']:>9,.0f} "
              f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['p999_ms']:>8.2f}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
