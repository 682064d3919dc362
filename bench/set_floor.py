"""CPU per pipelined SET with no sockets: the floor under edgekv's ``redis-benchmark -P 16`` SET.

    python bench/set_floor.py                  # 320,000 SETs in runs of 16, encrypted and plain
    python bench/set_floor.py --sets 100000 --run 16

Runs the server's own code for a pipeline's run of plain ``SET key value`` commands
(``Session.execute_run``: one engine ``put_many`` per run, deferred and written once per run, as
``server/app.py`` does per loop iteration) over a keyspace of 100,000 keys with 100-byte values,
like ``redis-benchmark -t set -d 100 -r 100000 -P 16``.  No parsing, no event loop, no socket:
what is left is the engine's write (record encoding, AES-GCM, xxh3, index, hint columns, read
cache) and the session's checks.  A server can reach at most ``1 / floor`` SETs per second on one
core, whatever its network layer costs; compare with the ops/s of ``redis-server`` in
``resp_vs_redis.py``.  Nothing is pass/fail.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine import Store  # noqa: E402
from server.config import ServerConfig  # noqa: E402
from server.session import Session  # noqa: E402
from server.state import ServerState  # noqa: E402

CONFIGS = {"encrypted (default)": {}, "plaintext": {"encryption": False}}


def measure(directory: str, options: dict, sets: int, run: int, seed: int = 1) -> float:
    """Process CPU µs per SET over ``sets`` SETs in runs of ``run``, after a warm-up pass."""
    store = Store.open(os.path.join(directory, "data"), fsync="everysec",
                       key_file=os.path.join(directory, "keys"), **options)
    try:
        config = ServerConfig()
        config.data_dir = directory
        session = Session(ServerState(store, config))
        rng = random.Random(seed)
        value = b"x" * 100
        commands = [[b"SET", b"key:%012d" % rng.randrange(100_000), value] for _ in range(sets)]
        runs = [commands[i:i + run] for i in range(0, len(commands), run)]

        def one_pass() -> None:
            for batch in runs:
                store.begin_batch()
                if session.execute_run("set", batch) is None:
                    raise RuntimeError("the run took the one-by-one path")
                store.end_batch()
                store.flush_writes()

        one_pass()  # the keys exist from here on, as after redis-benchmark's first seconds
        started = time.process_time()
        one_pass()
        return (time.process_time() - started) / sets * 1e6
    finally:
        store.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=320_000)
    parser.add_argument("--run", type=int, default=16, help="SETs per pipelined run (-P)")
    args = parser.parse_args(argv)
    print(f"{args.sets:,} SETs in runs of {args.run}, 100-byte values, 100,000 keys; "
          f"process CPU per SET, no sockets")
    for name, options in CONFIGS.items():
        with tempfile.TemporaryDirectory(prefix="set-floor-") as directory:
            us = measure(directory, options, args.sets, args.run)
        print(f"  {name:<20} {us:5.2f} µs per SET   at most {1e6 / us:9,.0f} SETs/s on one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
