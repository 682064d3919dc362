"""Server CPU time per operation under redis-benchmark: the load-insensitive RESP hot-path metric.

    python bench/server_cpu.py                      # edgekv, SET and GET at -P 1 and -P 16
    python bench/server_cpu.py --redis              # redis-server beside it, same runs
    python bench/server_cpu.py --base ../old-tree   # A/B against another checkout
    python bench/server_cpu.py --profile prof/      # plus py-spy profiles and a top-10 each
    python bench/server_cpu.py --json bench/results/server-cpu.json

Throughput on a shared 2-core machine swings with whatever else runs; the CPU the server
process spends per request swings much less.  For every server (edgekv ``serve --fsync
everysec``; ``--base``: the same from another checkout; ``--redis``: ``redis-server`` with
``appendonly yes`` and the same ``appendfsync``) this preloads the keys GET will read, then reads
the process's user and system time (``psutil``, all threads) before and after each
``redis-benchmark -t set|get -d 100 -r 100000 -n N -c 50 -P p`` run and divides by N.  The
servers take turns within every round, in alternating order, and the medians over ``--rounds``
are printed with ops/s for reference.  Nothing here is pass/fail.

Background compaction is off (``--compaction-threshold 0``) unless ``--compaction``: its thread
would charge rewriting to whichever run it overlaps.  edgekv's ``--encryption`` defaults to the
server's own default; pass ``--encryption no`` to compare like with like against Redis.

``--profile DIR`` attaches ``py-spy record --format raw`` (collapsed stacks) to edgekv for each
case, in separate runs from the timed ones (sampling costs CPU), and prints the ten functions
with the most samples on top of the event loop thread's stack (self time).  Time in C (uvloop's
own work, system calls) is charged to the Python frame that called it: ``Runner.run`` is
uvloop's loop itself, ``_write_now``/``flush_out`` include the socket ``write``.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resp_vs_redis import Server, wait_for_port, write_json  # noqa: E402  (same start-up as the ratios)

REPO = Path(__file__).resolve().parents[1]


class EdgeKV(Server):
    """``edgekv serve`` from a given checkout, as ``resp_vs_redis`` starts it, plus options."""

    def __init__(self, name: str, tree: Path, fsync: str, workdir: Path,
                 extra: list[str]) -> None:
        self.kind, self.fsync = name, fsync
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = workdir / f"{name}-{fsync}-{self.port}"
        self.dir.mkdir(parents=True)
        # ``-m`` puts the working directory first on sys.path: the checkout's own packages run.
        cmd = [sys.executable, "-m", "tools.cli", "serve", "--port", str(self.port),
               "--data-dir", str(self.dir / "data"), "--fsync", fsync, "--http-port", "0",
               "--log-level", "WARNING", *extra]
        self.proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr.log", "wb"))
        wait_for_port(self.port, self.proc)


def benchmark(port: int, test: str, pipeline: int, requests: int, clients: int,
              keyspace: int, value_size: int = 100) -> float:
    """Run redis-benchmark once; return its ops/s."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test, "-d", str(value_size),
           "-r", str(keyspace), "-n", str(requests), "-c", str(clients), "-P", str(pipeline),
           "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return float(rows[0]["rps"])


def preload(port: int, keyspace: int, value_size: int = 100) -> None:
    """Give GET something to find: SET the keys it can ask for (redis-benchmark's names)."""
    subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
                    "-d", str(value_size), "-r", str(keyspace), "-n", str(keyspace * 3), "-c", "20",
                    "-P", "64", "-q"], capture_output=True, timeout=900, check=True)


def measure(server: Server, test: str, pipeline: int, args) -> dict:
    proc = psutil.Process(server.proc.pid)
    before = proc.cpu_times()
    started = time.perf_counter()
    rps = benchmark(server.port, test, pipeline, args.requests, args.clients, args.keyspace,
                    args.value_size)
    wall = time.perf_counter() - started
    after = proc.cpu_times()
    user, system = after.user - before.user, after.system - before.system
    per_op = 1e6 / args.requests
    return {"cpu_us_per_op": (user + system) * per_op, "user_us_per_op": user * per_op,
            "sys_us_per_op": system * per_op, "rps": rps, "server_busy": (user + system) / wall}


def profile(server: Server, test: str, pipeline: int, args, out: Path) -> list[tuple]:
    """py-spy over one benchmark run; the top functions by self samples."""
    spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "250",
                            "--pid", str(server.proc.pid), "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let py-spy attach
    benchmark(server.port, test, pipeline, args.requests, args.clients, args.keyspace,
              args.value_size)
    spy.send_signal(2)  # SIGINT: py-spy writes the file and exits
    spy.wait(timeout=60)
    return top_self(out)


def top_self(path: Path, count: int = 10, by_line: bool = False) -> list[tuple]:
    """(function, share of the samples) for the leaf frames of a collapsed-stack file.

    Only the event loop's thread counts: the others (fsync once a second, compaction) mostly
    sleep, and py-spy does not always recognise their waits as idle.
    """
    samples: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or stack.startswith("Thread._bootstrap"):
            continue
        total += int(n)
        leaf = stack.rsplit(";", 1)[-1]
        if not by_line:
            leaf = re.sub(r":\d+\)$", ")", leaf)
        samples[leaf] += int(n)
    return [(name, n / total) for name, n in samples.most_common(count)] if total else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", "--requests", type=int, default=200_000)
    parser.add_argument("-c", "--clients", type=int, default=50)
    parser.add_argument("--keyspace", type=int, default=100_000, help="redis-benchmark -r")
    parser.add_argument("--fsync", default="everysec")
    parser.add_argument("-d", "--value-size", type=int, default=100, help="redis-benchmark -d")
    parser.add_argument("--pipeline", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--tests", nargs="+", default=["set", "get"])
    parser.add_argument("--redis", action="store_true", help="also measure redis-server")
    parser.add_argument("--bare", action="store_true",
                        help="also measure bench/bare_resp_server.py, the floor for Python")
    parser.add_argument("--base", metavar="DIR", help="also measure edgekv from this checkout")
    parser.add_argument("--encryption", choices=("yes", "no"), help="edgekv's --encryption")
    parser.add_argument("--compaction", action="store_true",
                        help="leave background compaction on (its thread blurs the numbers)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy raw profiles go here")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    for tool in ["redis-benchmark"] + ["redis-server"] * args.redis + ["py-spy"] * bool(
            args.profile):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")

    extra = [] if args.compaction else ["--compaction-threshold", "0"]
    if args.encryption:
        extra += ["--encryption", args.encryption]
    trees = {"edgekv": REPO}
    if args.base:
        trees["base"] = Path(args.base).resolve()
    kinds = list(trees) + ["redis"] * args.redis + ["bare"] * args.bare
    runs: dict = collections.defaultdict(list)  # (kind, test, pipeline) -> [measurement]
    profiles: dict = {}
    workdir = Path(tempfile.mkdtemp(prefix="edgekv-cpu-", dir=os.environ.get("BENCH_TMP")))
    servers: dict = {}
    try:
        for kind in kinds:
            servers[kind] = (Server(kind, args.fsync, workdir) if kind in ("redis", "bare") else
                             EdgeKV(kind, trees[kind], args.fsync, workdir, extra))
            preload(servers[kind].port, args.keyspace, args.value_size)
        for rnd in range(args.rounds):
            order = kinds if rnd % 2 == 0 else kinds[::-1]
            for pipeline in args.pipeline:
                for test in args.tests:
                    for kind in order:
                        m = measure(servers[kind], test, pipeline, args)
                        runs[(kind, test, pipeline)].append(m)
                        print(f"round {rnd + 1} {kind:6} {test.upper():3} -P {pipeline:<2}: "
                              f"{m['cpu_us_per_op']:6.2f} us/op (user {m['user_us_per_op']:.2f}"
                              f" sys {m['sys_us_per_op']:.2f})  {m['rps']:>9,.0f} ops/s  "
                              f"server busy {m['server_busy']:.0%}", flush=True)
        if args.profile:
            outdir = Path(args.profile)
            outdir.mkdir(parents=True, exist_ok=True)
            for pipeline in args.pipeline:
                for test in args.tests:
                    path = outdir / f"edgekv-{test}-P{pipeline}.txt"
                    profiles[(test, pipeline)] = profile(servers["edgekv"], test, pipeline,
                                                         args, path)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = f"{'test':4} {'-P':>3} | " + " | ".join(
        f"{k + ' us/op':>13} {'user':>6} {'sys':>6} {k + ' ops/s':>13}" for k in kinds)
    others = [k for k in kinds if k != "edgekv"]
    header += "".join(f" | {'cpu/' + k:>10} {'ops/' + k:>10}" for k in others)
    print(header)
    print("-" * len(header))
    summary = []
    for pipeline in args.pipeline:
        for test in args.tests:
            row: dict = {"test": test.upper(), "pipeline": pipeline, "fsync": args.fsync,
                         "rounds": args.rounds, "requests": args.requests}
            cells = []
            for kind in kinds:
                ms = runs[(kind, test, pipeline)]
                med = {key: statistics.median(m[key] for m in ms) for key in ms[0]}
                for key, value in med.items():
                    row[f"{kind}_{key}"] = value
                cells.append(f"{med['cpu_us_per_op']:>13.2f} {med['user_us_per_op']:>6.2f} "
                             f"{med['sys_us_per_op']:>6.2f} {med['rps']:>13,.0f}")
            line = f"{test.upper():4} {pipeline:>3} | " + " | ".join(cells)
            for other in others:
                cpu = row["edgekv_cpu_us_per_op"] / row[f"{other}_cpu_us_per_op"]
                ops = row["edgekv_rps"] / row[f"{other}_rps"]
                row[f"cpu_ratio_{other}"], row[f"rps_ratio_{other}"] = cpu, ops
                line += f" | {cpu:>10.2f} {ops:>10.2f}"
            print(line)
            summary.append(row)
    print(f"\nmedians of {args.rounds} rounds; server user+sys CPU per request; "
          f"redis-benchmark -d {args.value_size} -r {args.keyspace} -n {args.requests} -c {args.clients}; "
          f"fsync {args.fsync}; edgekv {' '.join(extra) or 'defaults'}; {os.cpu_count()} cores")
    for (test, pipeline), top in profiles.items():
        print(f"\npy-spy top self time, edgekv {test.upper()} -P {pipeline}:")
        for name, share in top:
            print(f"  {share:6.1%}  {name}")
    if args.json:
        write_json(args.json, {"cases": summary, "profiles": {
            f"{t}-P{p}": top for (t, p), top in profiles.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
