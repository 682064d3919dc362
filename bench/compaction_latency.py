#!/usr/bin/env python3
"""GET latency while the server compacts, against GET latency when it is idle.

A measuring script, not a test: it prints a table with ``PASS``/``MISS`` beside the target of
the compaction issue (p99 GET latency during compaction at most 2x the idle p99).

    python bench/compaction_latency.py                    # 200,000 keys, --duration 10
    python bench/compaction_latency.py --keys 50000 --duration 5
    python bench/compaction_latency.py --json bench/results/compaction-latency.json

Steps:

1. start ``edgekv serve --fsync everysec --compaction-threshold 0`` (compaction only on demand)
   on a free loopback port and a fresh data directory;
2. load N keys of 20 bytes with 100-byte values, then overwrite every key ``--overwrites``
   times (pipelines of 1,000, each pass in a scrambled key order), so most bytes on disk are
   dead;
3. idle: for half of ``--duration`` seconds, one GET of a random key at a time over a raw
   socket (no client library in the timed path), each timed from send to the last byte of the
   reply;
4. compaction: ``KV.COMPACT``, then the same GET loop for ``--duration`` seconds; when a
   compaction ends early another is started, and the last one is let finish.  Whether the
   server is compacting is polled with ``INFO persistence`` every 50 ms on another connection
   (not timed); each GET is tagged with the state seen last;
5. idle again for half of ``--duration``: the idle figures pool steps 3 and 5, so a change in
   the machine's background load during the run lands on both sides of the ratio.

Reported: p50/p99/p99.9 of both phases (the compaction phase counts only GETs sent while a
compaction ran), the p99 ratio, how many compactions ran and how long each took, and a
timeline of p99 per 250 ms bucket.  ``run(keys=..., duration_s=...)`` returns the same as a dict
(``timeline``: ``(t_seconds, p99_ms, compacting)``) for scripts that plot it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resp_vs_redis import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 2.0
_POLL_S = 0.05


def _command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Conn:
    """A minimal RESP client: enough to time one request at a time with nothing in between."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"*":
            return [self.read_reply() for _ in range(int(rest))]
        return rest

    def call(self, *args: bytes):
        self.sock.sendall(_command(*args))
        return self.read_reply()

    def pipeline(self, commands: list[tuple[bytes, ...]]) -> None:
        self.sock.sendall(b"".join(_command(*c) for c in commands))
        for _ in commands:
            self.read_reply()

    def close(self) -> None:
        self.sock.close()


def _info(conn: _Conn) -> dict[str, str]:
    text = conn.call(b"INFO", b"persistence").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def _stats(latencies_ms: list[float]) -> dict:
    s = sorted(latencies_ms)
    return {"count": len(s), "p50_ms": _percentile(s, 0.50), "p99_ms": _percentile(s, 0.99),
            "p999_ms": _percentile(s, 0.999), "max_ms": s[-1] if s else float("nan")}


def _start_server(data_dir: str, port: int, log_path: str, segment_bytes: int,
                  encryption: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tools.cli", "serve", "--port", str(port), "--data-dir",
           data_dir, "--fsync", "everysec", "--compaction-threshold", "0", "--http-port", "0",
           "--segment-bytes", str(segment_bytes), "--encryption", encryption,
           "--log-level", "WARNING"]
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for_port(port, proc, timeout=60)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}; see {log_path}") from None
    return proc


def _key(i: int) -> bytes:
    return b"key:%016d" % i  # 20 bytes


def _load(conn: _Conn, keys: int, value_bytes: int, passes: int) -> float:
    """Write every key ``passes`` times, each pass in a fresh scrambled order (as real keys
    arrive; in key order, compaction's outputs would be sorted already)."""
    started = time.perf_counter()
    rng = random.Random(1)
    order = list(range(keys))
    for p in range(passes):
        value = ((b"%d" % p) * value_bytes)[:value_bytes]
        rng.shuffle(order)
        for start in range(0, keys, 1000):
            conn.pipeline([(b"SET", _key(i), value) for i in order[start:start + 1000]])
    return time.perf_counter() - started


def _measure(conn: _Conn, control: _Conn | None, keys: int, duration_s: float, t0: float,
             samples: list, *, keep_compacting: bool, compactions: list,
             until_idle: bool = False) -> bool:
    """GET random keys one at a time for ``duration_s`` (or, ``until_idle``, until no
    compaction runs); append ``(t, ms, compacting)``; return whether one still runs."""
    rng = random.Random(len(samples))
    compacting = until_idle
    next_poll = 0.0
    end = time.perf_counter() + duration_s
    perf = time.perf_counter
    sock = conn.sock
    while True:
        now = perf()
        if now >= end:
            break
        if control is not None and now >= next_poll:
            info = _info(control)
            running = info.get("aof_rewrite_in_progress") == "1"
            if compacting and not running:
                compactions.append(info.get("edgekv_last_compaction", ""))
            if not running and keep_compacting:
                control.call(b"KV.COMPACT")
                running = True
            compacting = running
            if until_idle and not running:
                break
            next_poll = perf() + _POLL_S
        request = _command(b"GET", _key(rng.randrange(keys)))
        started = perf()
        sock.sendall(request)
        conn.read_reply()
        elapsed = perf() - started
        samples.append((started - t0, elapsed * 1000.0, compacting))
    return compacting


def _seconds_of(summary: str) -> float | None:
    for item in summary.split(","):
        if item.startswith("seconds="):
            return float(item.split("=", 1)[1])
    return None


def _timeline(samples: list, bucket_s: float) -> list[tuple[float, float, bool]]:
    buckets: dict[int, list] = {}
    for t, ms, comp in samples:
        buckets.setdefault(int(t / bucket_s), []).append((ms, comp))
    out = []
    for b in sorted(buckets):
        values = sorted(ms for ms, _ in buckets[b])
        out.append((round(b * bucket_s, 3), round(_percentile(values, 0.99), 4),
                    any(comp for _, comp in buckets[b])))
    return out


def run(keys: int = 200_000, duration_s: float = 10.0, *, value_bytes: int = 100,
        overwrites: int = 2, segment_bytes: int = 16 * 1024 * 1024, bucket_s: float = 0.25,
        encryption: str = "no", work_dir: str | None = None) -> dict:
    """Run the whole benchmark against a fresh server; return the results as a dict."""
    parent = work_dir or str(REPO / "bench" / "results")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="compaction-latency-", dir=parent)
    port = free_port()
    proc = _start_server(os.path.join(tmp, "data"), port, os.path.join(tmp, "server.log"),
                         segment_bytes, encryption)
    conn = control = None
    try:
        conn, control = _Conn(port), _Conn(port)
        load_s = _load(conn, keys, value_bytes, 1 + overwrites)
        before = _info(control)
        samples: list = []
        compactions: list[str] = []
        t0 = time.perf_counter()
        # Idle before and after, so a change in background load during the run shows up on
        # both sides of the ratio rather than only on one.
        _measure(conn, None, keys, duration_s / 2, t0, samples, keep_compacting=False,
                 compactions=compactions)
        phase2_start = len(samples)
        if _measure(conn, control, keys, duration_s, t0, samples, keep_compacting=True,
                    compactions=compactions):
            _measure(conn, control, keys, 3600, t0, samples, keep_compacting=False,
                     compactions=compactions, until_idle=True)  # let the last one end
        phase4_start = len(samples)
        _measure(conn, None, keys, duration_s / 2, t0, samples, keep_compacting=False,
                 compactions=compactions)
        failed = [c for c in compactions if "error=" in c]
        if failed:
            raise RuntimeError(f"compaction failed: {failed[0]}")
        idle = [ms for _, ms, _ in samples[:phase2_start] + samples[phase4_start:]]
        during = [ms for _, ms, comp in samples[phase2_start:phase4_start] if comp]
        idle_stats, during_stats = _stats(idle), _stats(during)
        durations = [s for s in (_seconds_of(c) for c in compactions) if s is not None]
        return {
            "keys": keys, "value_bytes": value_bytes, "overwrites": overwrites,
            "encryption": encryption,
            "duration_s": duration_s, "load_seconds": round(load_s, 3),
            "disk_bytes_before": int(before.get("edgekv_disk_bytes", 0)),
            "dead_bytes_before": int(before.get("edgekv_dead_bytes", 0)),
            "idle": idle_stats, "during_compaction": during_stats,
            "p99_ratio": during_stats["p99_ms"] / idle_stats["p99_ms"],
            "target_ratio": TARGET_RATIO,
            "compactions": len(compactions), "compaction_seconds": durations,
            "timeline": _timeline(samples, bucket_s),
        }
    finally:
        for c in (conn, control):
            if c is not None:
                c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _print_table(result: dict) -> None:
    idle, during = result["idle"], result["during_compaction"]
    print(f"{result['keys']:,} keys x {result['value_bytes']} B, overwritten "
          f"{result['overwrites']}x (loaded in {result['load_seconds']:.1f} s); "
          f"{result['duration_s']:g} s per phase")
    print(f"{'GET latency':<20}{'count':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}")
    for name, s in (("idle", idle), ("during compaction", during)):
        print(f"{name:<20}{s['count']:>9,}{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}"
              f"{s['p999_ms']:>10.3f}{s['max_ms']:>9.3f}")
    ratio = result["p99_ratio"]
    verdict = "PASS" if ratio <= result["target_ratio"] else "MISS"
    print(f"p99 during / idle: {ratio:.2f}x (target <= {result['target_ratio']:g}x) {verdict}")
    secs = ", ".join(f"{s:.2f}" for s in result["compaction_seconds"]) or "-"
    print(f"compactions run: {result['compactions']} (seconds each: {secs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--overwrites", type=int, default=2,
                        help="times every key is overwritten after the first write")
    parser.add_argument("--segment-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--encryption", choices=("yes", "no"), default="no",
                        help="the server's --encryption (default no: the storage path alone)")
    parser.add_argument("--dir", help="parent directory for the data (default: bench/results)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    result = run(args.keys, args.duration, value_bytes=args.value_bytes,
                 overwrites=args.overwrites, segment_bytes=args.segment_bytes,
                 encryption=args.encryption, work_dir=args.dir)
    _print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
