"""redis-benchmark against edgekv and a real redis-server, side by side, on loopback.

    python bench/resp_vs_redis.py                 # the issue's matrix, 3 alternating rounds
    python bench/resp_vs_redis.py --rounds 1 -n 50000 --json bench/results/resp.json
    python bench/resp_vs_redis.py --fsync no everysec always --value-size 100 4096

Starts ``redis-server`` (Debian package; ``appendonly yes`` with ``appendfsync`` matched to
edgekv's ``--fsync``) and ``edgekv serve`` on free loopback ports with fresh data directories,
runs ``redis-benchmark -t set,get -d 100 -r 100000 -n N -c 50 -P {1,16} --csv`` against each,
alternating A/B within every round because this machine is noisy, and prints the medians of
ops/s, p50 and p99 with edgekv/Redis ratios.  Nothing here is pass/fail.

``run(...)`` returns the same numbers as a dict (every round, and the medians) for
``bench/report.py``; it also records each server's CPU time per request, which varies far less
with the machine's load than ops/s does.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

try:
    import psutil
except ImportError:  # CPU per request is then left out
    psutil = None

REPO = Path(__file__).resolve().parents[1]
TARGETS = {  # (pipeline, fsync) -> minimum edgekv/Redis throughput ratio from the RESP issue
    (1, "everysec"): 0.9, (1, "always"): 0.9, (16, "everysec"): 0.5,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


class Server:
    """A ``redis-server`` or ``edgekv serve`` on a free loopback port with its own data
    directory; ``edgekv_args`` are extra ``serve`` options (e.g. ``--encryption no``)."""

    def __init__(self, kind: str, fsync: str, workdir: Path,
                 edgekv_args: tuple[str, ...] = ()) -> None:
        self.kind, self.fsync = kind, fsync
        self.port = free_port()
        self.dir = workdir / f"{kind}-{fsync}-{self.port}"
        self.dir.mkdir(parents=True)
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync",
                   {"no": "no"}.get(fsync, fsync), "--save", "", "--daemonize", "no",
                   "--logfile", str(self.dir / "redis.log")]
        elif kind == "bare":
            cmd = [sys.executable, str(REPO / "bench" / "bare_resp_server.py"),
                   "--port", str(self.port)]
        else:
            cmd = [sys.executable, "-m", "tools.cli", "serve", "--port", str(self.port),
                   "--data-dir", str(self.dir / "data"), "--fsync", fsync, "--http-port", "0",
                   "--log-level", "WARNING", *edgekv_args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr.log", "wb"))
        wait_for_port(self.port, self.proc)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process, all threads (None without psutil)."""
        if psutil is None:
            return None
        try:
            times = psutil.Process(self.proc.pid).cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def redis_benchmark(port: int, pipeline: int, requests: int, clients: int,
                    value_bytes: int = 100, keyspace: int = 100_000,
                    tests: str = "set,get") -> dict:
    """One ``redis-benchmark -t set,get`` run: {"SET"|"GET": {rps, avg, p50, p95, p99, max}}."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", tests,
           "-d", str(value_bytes), "-r", str(keyspace), "-n", str(requests), "-c", str(clients),
           "-P", str(pipeline), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        rows[row["test"]] = {"rps": float(row["rps"]), "avg": float(row["avg_latency_ms"]),
                             "p50": float(row["p50_latency_ms"]),
                             "p95": float(row["p95_latency_ms"]),
                             "p99": float(row["p99_latency_ms"]),
                             "max": float(row["max_latency_ms"])}
    return rows


def check_tools() -> str | None:
    """Why the comparison cannot run here, or None."""
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install redis-server redis-tools"
    return None


def run(*, fsyncs=("everysec", "always"), pipelines=(1, 16), value_sizes=(100,), rounds=3,
        requests: int | dict = 200_000, clients=50, edgekv_args: tuple[str, ...] = (),
        bare: bool = False, progress: Callable[[str], None] = print) -> dict:
    """The whole matrix, both servers alternating A/B in every round.

    ``requests`` is a count per run, or a dict pipeline -> count (a pipelined run of the same
    count finishes many times sooner).  Returns ``{"runs": [...], "summary": [...]}``: one row
    per (round, fsync, pipeline, value size, server, test), and per case the medians with the
    edgekv/Redis ratios.  Server CPU per request is ``cpu_us_per_op`` (both tests of a run share
    the server's CPU in proportion to their time, so it is given per run, over both).
    ``bare`` adds ``bench/bare_resp_server.py`` (the floor for any Python server) to every
    round; its numbers appear as ``bare_*`` in the summary."""
    kinds = ("redis", "edgekv", "bare") if bare else ("redis", "edgekv")
    runs: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="edgekv-bench-", dir=os.environ.get("BENCH_TMP")))
    try:
        for fsync in fsyncs:
            servers = {kind: Server(kind, fsync, workdir, edgekv_args) for kind in kinds}
            try:
                for rnd in range(rounds):
                    order = kinds if rnd % 2 == 0 else kinds[::-1]
                    for size in value_sizes:
                        for pipeline in pipelines:
                            n = requests[pipeline] if isinstance(requests, dict) else requests
                            for kind in order:
                                rows, cpu_us = measured_benchmark(servers[kind], pipeline, n,
                                                                  clients, size)
                                for test, row in rows.items():
                                    runs.append({"round": rnd, "fsync": fsync,
                                                 "pipeline": pipeline, "value_bytes": size,
                                                 "server": kind, "test": test, "requests": n,
                                                 "cpu_us_per_op": cpu_us, **row})
                                progress(f"round {rnd + 1} fsync={fsync} -d {size} "
                                         f"-P {pipeline} {kind:6}: " + "  ".join(
                                             f"{t} {r['rps']:,.0f}/s p99 {r['p99']:.2f}ms"
                                             for t, r in rows.items()))
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"runs": runs, "summary": summarize(runs), "clients": clients, "rounds": rounds,
            "requests": requests, "edgekv_args": list(edgekv_args)}


def summarize(runs: list[dict]) -> list[dict]:
    """Medians per (fsync, pipeline, value size, test) with edgekv/Redis ratios."""
    cases: dict = {}
    for r in runs:
        key = (r["fsync"], r["pipeline"], r["value_bytes"], r["test"])
        cases.setdefault(key, {}).setdefault(r["server"], []).append(r)
    summary = []
    for (fsync, pipeline, size, test), by_server in cases.items():
        red, edge, bare = (by_server.get(k) for k in ("redis", "edgekv", "bare"))
        if not red or not edge:
            continue

        def med(rows, k):
            values = [x[k] for x in rows if x.get(k) is not None]
            return statistics.median(values) if values else None

        summary.append({"fsync": fsync, "pipeline": pipeline, "value_bytes": size, "test": test,
                        "redis_rps": med(red, "rps"), "edgekv_rps": med(edge, "rps"),
                        "ratio": med(edge, "rps") / med(red, "rps"),
                        "redis_p50": med(red, "p50"), "edgekv_p50": med(edge, "p50"),
                        "redis_p99": med(red, "p99"), "edgekv_p99": med(edge, "p99"),
                        "redis_cpu_us_per_op": med(red, "cpu_us_per_op"),
                        "edgekv_cpu_us_per_op": med(edge, "cpu_us_per_op"),
                        "runs": len(edge)})
        if bare:
            summary[-1].update({"bare_rps": med(bare, "rps"),
                                "bare_ratio": med(bare, "rps") / med(red, "rps"),
                                "bare_p99": med(bare, "p99"),
                                "bare_cpu_us_per_op": med(bare, "cpu_us_per_op")})
    return summary



def measured_benchmark(server: Server, pipeline: int, requests: int, clients: int,
                       size: int, tests: str = "set,get") -> tuple[dict, float | None]:
    """``redis_benchmark`` against ``server``, plus the server's CPU microseconds per request
    over the run (None when the process's CPU time cannot be read).  One test per run gives
    that test's own CPU per request."""
    cpu0 = server.cpu_seconds()
    rows = redis_benchmark(server.port, pipeline, requests, clients, size, tests=tests)
    cpu1 = server.cpu_seconds()
    if cpu0 is None or cpu1 is None:
        return rows, None
    return rows, (cpu1 - cpu0) / (requests * len(rows)) * 1e6


def write_json(path, data) -> None:
    """``--json``: the raw results, with the directory made if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", "--requests", type=int, default=200_000)
    parser.add_argument("-c", "--clients", type=int, default=50)
    parser.add_argument("--fsync", nargs="+", default=["everysec", "always"])
    parser.add_argument("--pipeline", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--value-size", nargs="+", type=int, default=[100],
                        help="redis-benchmark -d, bytes (default 100)")
    parser.add_argument("--bare", action="store_true",
                        help="also run bench/bare_resp_server.py, the floor for a Python server")
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args()
    missing = check_tools()
    if missing:
        sys.exit(missing)

    result = run(fsyncs=args.fsync, pipelines=args.pipeline, value_sizes=args.value_size,
                 rounds=args.rounds, requests=args.requests, clients=args.clients,
                 bare=args.bare, progress=lambda line: print(line, flush=True))

    print()
    header = (f"{'fsync':9} {'-d':>5} {'-P':>3} {'test':4} | {'redis ops/s':>12} "
              f"{'edgekv ops/s':>12} {'ratio':>6} {'target':>6} | {'redis p50':>9} "
              f"{'edgekv p50':>10} | {'redis p99':>9} {'edgekv p99':>10} {'p99 x':>6}")
    print(header)
    print("-" * len(header))
    for row in result["summary"]:
        target = TARGETS.get((row["pipeline"], row["fsync"])) if row["value_bytes"] == 100 \
            else None
        print(f"{row['fsync']:9} {row['value_bytes']:>5} {row['pipeline']:>3} {row['test']:4} | "
              f"{row['redis_rps']:>12,.0f} {row['edgekv_rps']:>12,.0f} {row['ratio']:>6.2f} "
              f"{(f'{target:.1f}' if target else '-'):>6} | {row['redis_p50']:>9.3f} "
              f"{row['edgekv_p50']:>10.3f} | {row['redis_p99']:>9.3f} {row['edgekv_p99']:>10.3f} "
              f"{row['edgekv_p99'] / row['redis_p99']:>6.2f}")
    if args.bare:
        print(f"\n{'fsync':9} {'-d':>5} {'-P':>3} {'test':4} | {'bare ops/s':>11} "
              f"{'bare/redis':>10} {'edgekv/bare':>11} | {'CPU us/op: redis':>16} "
              f"{'bare':>6} {'edgekv':>7}")
        for row in result["summary"]:
            cpu = [row.get(f"{k}_cpu_us_per_op") for k in ("redis", "bare", "edgekv")]
            cpu_text = " ".join(f"{c:>{w}.1f}" if c is not None else f"{'-':>{w}}"
                                for c, w in zip(cpu, (16, 6, 7)))
            print(f"{row['fsync']:9} {row['value_bytes']:>5} {row['pipeline']:>3} "
                  f"{row['test']:4} | {row['bare_rps']:>11,.0f} {row['bare_ratio']:>10.2f} "
                  f"{row['edgekv_rps'] / row['bare_rps']:>11.2f} | {cpu_text}")
    print(f"\nmedians of {args.rounds} alternating rounds; redis-benchmark -r 100000 "
          f"-n {args.requests} -c {args.clients}; {os.cpu_count()} cores")
    if args.json:
        write_json(args.json, result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
