"""redis-benchmark against edgekv and a real redis-server, side by side, on loopback.

    python bench/resp_vs_redis.py                 # the issue's matrix, 3 alternating rounds
    python bench/resp_vs_redis.py --rounds 1 -n 50000 --json bench/results/resp.json

Starts ``redis-server`` (Debian package; ``appendonly yes`` with ``appendfsync`` matched to
edgekv's ``--fsync``) and ``edgekv serve`` on free loopback ports with fresh data directories,
runs ``redis-benchmark -t set,get -d 100 -r 100000 -n N -c 50 -P {1,16} --csv`` against each,
alternating A/B within every round because this machine is noisy, and prints the medians of
ops/s, p50 and p99 with edgekv/Redis ratios.  Nothing here is pass/fail.
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
    def __init__(self, kind: str, fsync: str, workdir: Path) -> None:
        self.kind, self.fsync = kind, fsync
        self.port = free_port()
        self.dir = workdir / f"{kind}-{fsync}-{self.port}"
        self.dir.mkdir(parents=True)
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync",
                   {"no": "no"}.get(fsync, fsync), "--save", "", "--daemonize", "no",
                   "--logfile", str(self.dir / "redis.log")]
        else:
            cmd = [sys.executable, "-m", "tools.cli", "serve", "--port", str(self.port),
                   "--data-dir", str(self.dir / "data"), "--fsync", fsync, "--http-port", "0",
                   "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr.log", "wb"))
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def redis_benchmark(port: int, pipeline: int, requests: int, clients: int) -> dict:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get", "-d", "100",
           "-r", "100000", "-n", str(requests), "-c", str(clients), "-P", str(pipeline), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        rows[row["test"]] = {"rps": float(row["rps"]), "p50": float(row["p50_latency_ms"]),
                             "p99": float(row["p99_latency_ms"])}
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", "--requests", type=int, default=200_000)
    parser.add_argument("-c", "--clients", type=int, default=50)
    parser.add_argument("--fsync", nargs="+", default=["everysec", "always"])
    parser.add_argument("--pipeline", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install redis-server redis-tools")

    results: dict = {}  # (fsync, pipeline, kind, test) -> list of runs
    workdir = Path(tempfile.mkdtemp(prefix="edgekv-bench-", dir=os.environ.get("BENCH_TMP")))
    try:
        for fsync in args.fsync:
            servers = {kind: Server(kind, fsync, workdir) for kind in ("redis", "edgekv")}
            try:
                for rnd in range(args.rounds):
                    order = ("redis", "edgekv") if rnd % 2 == 0 else ("edgekv", "redis")
                    for pipeline in args.pipeline:
                        for kind in order:
                            rows = redis_benchmark(servers[kind].port, pipeline, args.requests,
                                                   args.clients)
                            for test, row in rows.items():
                                results.setdefault((fsync, pipeline, kind, test), []).append(row)
                            print(f"round {rnd + 1} fsync={fsync} -P {pipeline} {kind:6}: " +
                                  "  ".join(f"{t} {r['rps']:,.0f}/s p99 {r['p99']:.2f}ms"
                                            for t, r in rows.items()), flush=True)
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = (f"{'fsync':9} {'-P':>3} {'test':4} | {'redis ops/s':>12} {'edgekv ops/s':>12} "
              f"{'ratio':>6} {'target':>6} | {'redis p50':>9} {'edgekv p50':>10} | "
              f"{'redis p99':>9} {'edgekv p99':>10} {'p99 x':>6}")
    print(header)
    print("-" * len(header))
    summary = []
    for fsync in args.fsync:
        for pipeline in args.pipeline:
            for test in ("SET", "GET"):
                r = results.get((fsync, pipeline, "redis", test))
                e = results.get((fsync, pipeline, "edgekv", test))
                if not r or not e:
                    continue
                med = lambda runs, k: statistics.median(x[k] for x in runs)  # noqa: E731
                ratio = med(e, "rps") / med(r, "rps")
                p99x = med(e, "p99") / med(r, "p99")
                target = TARGETS.get((pipeline, fsync))
                summary.append({"fsync": fsync, "pipeline": pipeline, "test": test,
                                "redis_rps": med(r, "rps"), "edgekv_rps": med(e, "rps"),
                                "ratio": ratio, "redis_p50": med(r, "p50"),
                                "edgekv_p50": med(e, "p50"), "redis_p99": med(r, "p99"),
                                "edgekv_p99": med(e, "p99"), "runs": len(e)})
                print(f"{fsync:9} {pipeline:>3} {test:4} | {med(r, 'rps'):>12,.0f} "
                      f"{med(e, 'rps'):>12,.0f} {ratio:>6.2f} "
                      f"{(f'{target:.1f}' if target else '-'):>6} | {med(r, 'p50'):>9.3f} "
                      f"{med(e, 'p50'):>10.3f} | {med(r, 'p99'):>9.3f} {med(e, 'p99'):>10.3f} "
                      f"{p99x:>6.2f}")
    print(f"\nmedians of {args.rounds} alternating rounds; redis-benchmark -d 100 -r 100000 "
          f"-n {args.requests} -c {args.clients}; {os.cpu_count()} cores")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
