"""Instructions per request on the server's Python path, counted by callgrind: deterministic,
so a change of a few percent shows even on a noisy shared machine.

    python bench/request_instructions.py              # GET and SET: bare, edgekv, edgekv's server part
    python bench/request_instructions.py --cases get,set --requests 5000

Each case runs ``valgrind --tool=callgrind`` twice on a child process that pushes N and 3N
requests through ``data_received`` and the end-of-iteration flush (50 connections, one request
each per iteration, as ``redis-benchmark -c 50 -P 1`` does) and prints the difference over 2N:
what one more request costs, start-up and imports cancelled out.  The connections write into an
object that only counts bytes, so this measures the user-space instructions of the Python path
and of what it calls (hiredis, AES-GCM, xxhash), not the kernel's socket work or uvloop's own:
it complements ``bench/server_cpu.py``, which times the real server under redis-benchmark.

Cases: ``bare-*`` is ``bench/bare_resp_server.py``'s protocol (a dict behind hiredis: the floor
for a Python server); ``get``/``set`` are edgekv's (encryption on, fsync everysec, 1,000 keys,
all cached); ``get-server``/``set-server`` replace the store's ``get_value``/``put_one`` with a
function returning at once, leaving the cost of edgekv's server layer alone.  Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLIENTS = 50
KEYS = 1000
VALUE = b"x" * 100
CASES = ("bare-get", "bare-set", "get", "set", "get-server", "set-server")


class CountingTransport:
    """Stands in for the socket: keeps nothing, so memory stays flat over the run."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 0)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def _drive(case: str, requests: int, workdir: str) -> None:
    """The child: preload, then ``requests`` requests in iterations of one per connection."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(BENCH))
    test = case.split("-")[-1]
    keys = [b"key:%012d" % i for i in range(KEYS)]
    if case.startswith("bare"):
        import bare_resp_server
        data: dict = {}
        conns = [bare_resp_server.BareProtocol(data) for _ in range(CLIENTS)]
        flush = None
    else:
        from server.app import EdgeKVServer, RespConnection
        from server.config import ServerConfig
        server = EdgeKVServer(ServerConfig(data_dir=os.path.join(workdir, "data"),
                                           key_file=os.path.join(workdir, "keys"),
                                           fsync="everysec", http_port=None,
                                           compaction_threshold=0))
        conns = [RespConnection(server) for _ in range(CLIENTS)]
        flush = server._flush_writes
    for conn in conns:
        conn.connection_made(CountingTransport())
    for key in keys:  # every GET finds its key
        conns[0].data_received(_command(b"SET", key, VALUE))
        if flush:
            flush()
    if case.endswith("-server"):
        store = server.store
        if test == "get":
            store.get_value = lambda ns, key: VALUE
        else:
            store.put_one = lambda *args, **kwargs: 0
    reads = [_command(b"GET", k) if test == "get" else _command(b"SET", k, VALUE) for k in keys]
    for start in range(0, requests, CLIENTS):
        for i, conn in enumerate(conns):
            conn.data_received(reads[(start + i) % KEYS])
        if flush:
            flush()
    if flush:
        server.store.close()


def _instructions(case: str, requests: int) -> int:
    workdir = tempfile.mkdtemp(prefix="instr-")
    out = os.path.join(workdir, "callgrind.out")
    try:
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--child", case, "--requests", str(requests),
                        "--dir", workdir],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out) as fh:
            totals = re.search(r"^totals: (\d+)", fh.read(), re.M)
        return int(totals.group(1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--requests", type=int, default=5000, help="N: runs of N and 3N")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_drive(args.child, args.requests, args.dir))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install valgrind")
    n = args.requests
    print(f"{'case':12s} {'instructions/request':>22s}")
    with ThreadPoolExecutor(2) as pool:  # the two runs of a case side by side: counts, not time
        for case in args.cases.split(","):
            if case not in CASES:
                sys.exit(f"unknown case {case!r}; one of {', '.join(CASES)}")
            small, large = pool.map(_instructions, (case, case), (n, 3 * n))
            print(f"{case:12s} {(large - small) / (2 * n):22,.0f}", flush=True)


if __name__ == "__main__":
    main()
