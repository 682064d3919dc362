"""Where the server's time goes under a SET/GET load: the top functions of a sampled profile.

    python bench/hotpath_profile.py                    # -P 1 and -P 16, 8 s each
    python bench/hotpath_profile.py --seconds 3 --pipeline 16

Starts ``edgekv serve`` (``--fsync everysec`` unless told otherwise), fills the keyspace that
``redis-benchmark -r`` draws from, then runs ``redis-benchmark -t set,get`` in a loop while
``py-spy record --format raw --nolineno`` samples the server process.  The collapsed stacks are
reduced to two lists: *self* (the innermost frame of each sample: where the CPU is) and
*inclusive* (every function on the stack, counted once per sample: which call path pays).

py-spy samples with the process paused (blocking mode), which over-reports time inside system
calls such as ``send``/``recv``; read the shares as a map of where to look, and confirm any
change with a timed A/B run.  Without py-spy (or when it cannot attach, e.g. no ptrace
permission) the fallback is ``cProfile`` around the engine's own put/get loop in process, which
profiles the storage path but not the network path.  Time in C (uvloop's loop and its
``epoll`` wait, hiredis, system calls) is charged to the nearest Python frame: ``Runner.run``
as *self* is the event loop itself.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from resp_vs_redis import Server, check_tools, write_json  # noqa: E402

KEYSPACE = 100_000
# py-spy counts a thread in a timed ``Condition.wait`` (or the compactor's pause between two
# steps, ``_Pacer.tick``'s ``time.sleep``) as active; those samples are sleep, not work
IDLE_LEAVES = ("Condition.wait (", "Event.wait (", "wait (threading.py", "_Pacer.tick (")


def short_frame(frame: str) -> str:
    """``func (/abs/path/site-packages/pkg/mod.py)`` -> ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for root in (str(REPO) + os.sep, "site-packages" + os.sep, "lib" + os.sep):
        if root in where:
            where = where.split(root, 1)[1]
            break
    return f"{name} ({where})" if where else name


def summarize_collapsed(text: str, top: int = 15) -> dict:
    """Self and inclusive shares of the functions in py-spy's collapsed-stack output."""
    self_counts: collections.Counter = collections.Counter()
    incl_counts: collections.Counter = collections.Counter()
    total = idle = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short_frame(f) for f in stack.split(";")]
        if frames[-1].startswith(IDLE_LEAVES):
            idle += n  # a background thread asleep in a timed wait, not CPU
            continue
        total += n
        self_counts[frames[-1]] += n
        for f in set(frames):
            incl_counts[f] += n
    if not total:
        return {"samples": 0, "idle_samples": idle, "self": [], "inclusive": []}
    # The trunk (interpreter start-up, the CLI, the event loop's run) is on every stack of the
    # busy thread and says nothing; drop the frames that are on as many stacks as the busiest.
    trunk = max(incl_counts.values())
    for name in [f for f, n in incl_counts.items() if n == trunk]:
        del incl_counts[name]
    share = lambda c: [(name, n / total) for name, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "idle_samples": idle, "self": share(self_counts),
            "inclusive": share(incl_counts)}


def _preload(port: int, keyspace: int) -> None:
    """SET most of the keys GET will ask for (redis-benchmark draws them at random)."""
    subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
                    "-d", "100", "-r", str(keyspace), "-n", str(keyspace * 2), "-c", "20",
                    "-P", "64", "-q"], capture_output=True, timeout=600, check=True)


def profile_server(*, seconds: float, pipeline: int, fsync: str, workdir: Path,
                   edgekv_args: tuple[str, ...], keyspace: int = KEYSPACE) -> dict:
    """py-spy over an edgekv server while redis-benchmark drives it."""
    server = Server("edgekv", fsync, workdir, edgekv_args)
    out = workdir / f"pyspy-P{pipeline}.txt"
    load = None
    try:
        _preload(server.port, keyspace)
        load = subprocess.Popen(
            ["bash", "-c", f"while :; do redis-benchmark -h 127.0.0.1 -p {server.port} "
                           f"-t set,get -d 100 -r {keyspace} -n 1000000 -c 50 -P {pipeline} -q "
                           f"> /dev/null; done"], start_new_session=True)
        time.sleep(0.5)
        spy = subprocess.run(["py-spy", "record", "--format", "raw", "--nolineno",
                              "--rate", "200", "--duration", str(max(1, round(seconds))),
                              "--pid", str(server.proc.pid), "-o", str(out)],
                             capture_output=True, text=True, timeout=seconds + 60)
        if spy.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {(spy.stderr or spy.stdout).strip()[-300:]}")
        result = summarize_collapsed(out.read_text())
    finally:
        if load is not None:
            os.killpg(load.pid, 15)
            load.wait(timeout=30)
        server.stop()
    result.update({"tool": "py-spy", "target": "edgekv serve", "pipeline": pipeline,
                   "fsync": fsync, "seconds": seconds,
                   "load": f"redis-benchmark -t set,get -d 100 -c 50 -P {pipeline}"})
    return result


def profile_engine(*, ops: int, workdir: Path, top: int = 15) -> dict:
    """cProfile of the engine's put/get loop in process: the fallback without py-spy."""
    sys.path.insert(0, str(REPO))
    from engine import Store

    store = Store.open(str(workdir / "engine"), fsync="no")
    ns = store.namespace()
    value = b"v" * 100
    keys = [f"key:{i:012d}" for i in range(ops)]
    rng = random.Random(1)
    prof = cProfile.Profile()
    prof.enable()
    for k in keys:
        ns.put(k, value)
    for _ in range(ops):
        ns.get(keys[rng.randrange(ops)], type="bytes")
    prof.disable()
    store.close()
    stats = pstats.Stats(prof).stats  # (file, line, func) -> (cc, nc, tottime, cumtime, ...)
    total = sum(v[2] for v in stats.values()) or 1.0

    def label(k):
        return short_frame(f"{k[2]} ({k[0]})")

    by_self = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    by_cum = sorted(stats.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
    return {"tool": "cProfile", "target": "engine in process (ns.put, ns.get)",
            "ops": ops, "samples": None,
            "self": [(label(k), v[2] / total) for k, v in by_self],
            "inclusive": [(label(k), min(1.0, v[3] / total)) for k, v in by_cum]}


def run(*, seconds=8.0, pipelines=(1, 16), fsync="everysec", edgekv_args: tuple[str, ...] = (),
        keyspace=KEYSPACE, engine_ops=100_000, progress: Callable[[str], None] = print) -> dict:
    """Profiles per pipeline depth with py-spy; the in-process cProfile when py-spy cannot
    run.  Returns ``{"profiles": [...], "note": str | None}``."""
    workdir = Path(tempfile.mkdtemp(prefix="edgekv-profile-", dir=os.environ.get("BENCH_TMP")))
    profiles, note = [], None
    try:
        reason = check_tools() or (None if shutil.which("py-spy") else "py-spy not found")
        if reason is None:
            try:
                for pipeline in pipelines:
                    progress(f"profile: py-spy on edgekv serve, -P {pipeline}, {seconds:.0f} s")
                    profiles.append(profile_server(seconds=seconds, pipeline=pipeline,
                                                   fsync=fsync, workdir=workdir,
                                                   edgekv_args=edgekv_args, keyspace=keyspace))
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                reason = str(exc)
                profiles = []
        if reason is not None:
            note = f"py-spy profile not taken ({reason}); cProfile of the engine instead"
            progress(f"profile: {note}")
            profiles.append(profile_engine(ops=engine_ops, workdir=workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"profiles": profiles, "note": note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--pipeline", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--fsync", default="everysec")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(seconds=args.seconds, pipelines=args.pipeline, fsync=args.fsync,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    for prof in result["profiles"]:
        print(f"\n{prof['tool']} on {prof['target']}"
              + (f", -P {prof['pipeline']}" if "pipeline" in prof else ""))
        for kind in ("self", "inclusive"):
            print(f"  top {kind}:")
            for name, share in prof[kind][:10]:
                print(f"    {share:6.1%}  {name}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
