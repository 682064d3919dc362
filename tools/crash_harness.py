"""Crash harness: kill -9 a real edgekv server under load, restart it, and prove no
acknowledged write was lost.

Unit tests of the recovery scan cannot show that the whole stack (event loop, group commit,
held replies, compaction's manifest switch) keeps the promise made to a client: under
``--fsync always`` a write whose reply arrived survives any crash.  So this tool runs the real
server process, drives it over RESP from several threads while compactions run, SIGKILLs it at
a seeded random moment, restarts it on the same directory and compares what the store holds
with a model of every write.

The model, per key: the state before the cycle (already verified), and every write of the
cycle with the monotonic time it was sent and the time its reply arrived (``None``: the reply
never came, so the write is uncertain).  Any write that was acknowledged before another
acknowledged write to the same key was *sent* is superseded: the server applied it first.  The
store must hold one of the states not superseded (or an uncertain one); after the check, the
state found becomes the verified state for the next cycle, so keys are re-checked across many
crashes and compactions, including after their expiration passed.

Run ``python -m tools.crash_harness --cycles 200 --seed 1``; the seed and the command that
reproduces the run are printed at the start and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NS = "default"
SHARED_KEYS = 150          # keys of the default namespace, written by every thread
COLD_KEYS = 2000           # rarely written keys with short TTLs: they live long enough to expire
SCRATCH_KEYS = 12          # keys per scratch namespace, written by its owner thread only
MAX_SCRATCH_PER_THREAD = 2
CLIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class HarnessError(Exception):
    """The harness itself could not run (server would not start, verify could not run)."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class State:
    """What a key holds.  ``value is None`` means absent.  The expiration is a window of epoch
    seconds because a TTL is resolved by the server somewhere between send and reply."""
    value: str | None
    metadata: object = None
    exp_lo: float = 0.0
    exp_hi: float = 0.0

    @property
    def expires(self) -> bool:
        return self.exp_hi > 0


ABSENT = State(None)


@dataclass(eq=False)
class Write:
    value: str | None
    metadata: object
    ttl: int | None            # relative expiration (EX, EXPIRATION_TTL)
    expiration: int | None     # absolute expiration (EXPIRATION), epoch seconds
    sent: float                # monotonic
    sent_wall: float
    acked: float | None = None
    acked_wall: float | None = None
    failed: bool = False       # an error reply: the server says it did not apply it
    label: str = ""

    def state(self, kill_wall: float) -> State:
        if self.value is None:
            return ABSENT
        if self.ttl is not None:
            hi = (self.acked_wall if self.acked_wall is not None else kill_wall) + self.ttl
            return State(self.value, self.metadata, self.sent_wall + self.ttl, hi)
        if self.expiration is not None:
            return State(self.value, self.metadata, self.expiration, self.expiration)
        return State(self.value, self.metadata)


@dataclass
class KeyModel:
    base: State = ABSENT
    writes: list[Write] = field(default_factory=list)

    def candidates(self, kill_wall: float) -> list[tuple[State, str]]:
        live = [w for w in self.writes if not w.failed]
        acked = [w for w in live if w.acked is not None]
        result = []
        for w in acked:
            if not any(o.sent > w.acked for o in acked if o is not w):
                result.append((w.state(kill_wall), f"acknowledged {w.label}"))
        result += [(w.state(kill_wall), f"uncertain {w.label}") for w in live if w.acked is None]
        if not acked:
            result.append((self.base, "state before this cycle"))
        return result


@dataclass
class Scratch:
    """A scratch namespace.  ``delete`` is None, "uncertain" or "acked"."""
    id: str
    title: str
    delete: str | None = None


class Model:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[tuple[str, str], KeyModel] = {}
        self.scratch: dict[str, Scratch] = {}
        self.uncertain_titles: set[str] = set()   # CREATE sent, reply never came
        self.deleted_ids: set[str] = set()        # deletions verified; must stay gone

    def record(self, ns: str, keys_states: list[tuple[str, Write]]) -> None:
        with self.lock:
            for key, w in keys_states:
                self.keys.setdefault((ns, key), KeyModel()).writes.append(w)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int, data_dir: Path, fsync: str = "always") -> list[str]:
    return [sys.executable, "-m", "tools.cli", "serve", "--port", str(port), "--bind", "127.0.0.1",
            "--data-dir", str(data_dir), "--fsync", fsync, "--http-port", "0",
            "--min-ttl", "60", "--segment-bytes", "65536"]


class Server:
    def __init__(self, data_dir: Path, log_path: Path, fsync: str = "always") -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(server_command(self.port, data_dir, fsync), cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"edgekv exited with {self.proc.returncode}; see {log_path}")
            try:
                with self.client(timeout=1) as c:
                    c.ping()
                return
            except CLIENT_ERRORS:
                if time.monotonic() > deadline:
                    self.kill9()
                    raise HarnessError(f"edgekv did not answer on port {self.port} in 30 s; "
                                       f"see {log_path}")
                time.sleep(0.05)

    def client(self, timeout: float = 10) -> redis.Redis:
        # No retries: a resent write would blur which attempt the reply belongs to.
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout, single_connection_client=True,
                           retry=Retry(NoBackoff(), 0), decode_responses=False)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode


# --------------------------------------------------------------------------- load


def _pairs(flat) -> dict:
    if isinstance(flat, dict):
        return {_text(k): v for k, v in flat.items()}
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Worker(threading.Thread):
    """One client connection.  The default namespace's keys are shared by all workers, so
    overlapping writes to one key from different connections are exercised; a scratch namespace
    belongs to one worker, so no write races its own namespace's deletion."""

    def __init__(self, harness: Harness, server: Server, tid: int, rng: random.Random,
                 owned: list[Scratch]) -> None:
        super().__init__(name=f"crash-load-{tid}", daemon=True)
        self.h, self.server, self.tid, self.rng, self.owned = harness, server, tid, rng, owned
        self.ops = self.acked = self.uncertain = 0
        self.unexpected: list[str] = []
        self.counter = 0

    def _value(self) -> str:
        self.counter += 1
        return f"c{self.h.cycle}-t{self.tid}-{self.counter}-" + "x" * self.rng.randrange(0, 300)

    def _meta(self):
        r = self.rng.random()
        if r < 0.4:
            return None
        if r < 0.8:
            return {"t": self.tid, "n": self.counter, "tag": self.rng.choice(["a", "b", "ü"])}
        return self.rng.choice([1, "s", [1, 2], True])

    def _expiry(self) -> tuple[int | None, int | None]:
        r = self.rng.random()
        if r < 0.45:
            return None, None
        if r < 0.85:
            return self.rng.choice([60, 61, 75, 90, 120, 180, 600, 3600]), None
        return None, int(time.time()) + self.rng.choice([90, 150, 7200])

    def run(self) -> None:
        try:
            self.conn = self.server.client()
            while not self.h.stop_load.is_set():
                self.step()
        except CLIENT_ERRORS:
            pass  # the server was killed; the op in flight stays uncertain
        except Exception as exc:  # a harness bug must not pass for a clean cycle
            self.unexpected.append(f"thread {self.tid}: {type(exc).__name__}: {exc}")

    def _do(self, ns: str, writes: list[tuple[str, Write]], *cmd) -> object:
        """Send one write; the reply arriving is what makes it acknowledged."""
        self.h.model.record(ns, writes)
        self.ops += 1
        try:
            reply = self.conn.execute_command(*cmd)
        except redis.ResponseError as exc:
            for _, w in writes:
                w.failed = True
            self.unexpected.append(f"thread {self.tid}: {' '.join(map(str, cmd[:2]))}: "
                                   f"error reply {exc}")
            return None
        except CLIENT_ERRORS:
            self.uncertain += 1
            raise
        now, wall = time.monotonic(), time.time()
        for _, w in writes:
            w.acked, w.acked_wall = now, wall
        self.acked += 1
        return reply

    def _write(self, key: str, value, metadata, ttl, expiration, label) -> Write:
        return Write(value, metadata, ttl, expiration, time.monotonic(), time.time(),
                     label=f"{label} by thread {self.tid}")

    def step(self) -> None:
        rng = self.rng
        op = rng.choices(["set", "kvput", "del", "bulk", "ns", "cold"], [25, 35, 12, 13, 15, 2])[0]
        key = f"k{rng.randrange(SHARED_KEYS)}"
        if op == "cold":
            self._kvput(DEFAULT_NS, f"cold{rng.randrange(COLD_KEYS)}",
                        ttl=rng.choice([60, 61, 70, 90]))
        elif op == "set":
            value, (ttl, _) = self._value(), self._expiry()
            w = self._write(key, value, None, ttl, None, f"SET {key}")
            args = ["SET", key, value] + (["EX", ttl] if ttl else [])
            self._do(DEFAULT_NS, [(key, w)], *args)
        elif op == "kvput":
            self._kvput(DEFAULT_NS, key)
        elif op == "del":
            self._do(DEFAULT_NS, [(key, self._write(key, None, None, None, None, f"DEL {key}"))],
                     "DEL", key)
        elif op == "bulk":
            keys = rng.sample(range(SHARED_KEYS), rng.randint(2, 6))
            items, writes = [], []
            for k in (f"k{i}" for i in keys):
                value, meta, (ttl, exp) = self._value(), self._meta(), self._expiry()
                item = {"key": k, "value": value}
                if meta is not None:
                    item["metadata"] = meta
                if ttl:
                    item["expiration_ttl"] = ttl
                if exp:
                    item["expiration"] = exp
                items.append(item)
                writes.append((k, self._write(k, value, meta, ttl, exp, f"KV.BULKPUT {k}")))
            reply = self._do(DEFAULT_NS, writes, "KV.BULKPUT", json.dumps(items))
            if reply is not None and _pairs(reply).get("successful_key_count") != len(items):
                self.unexpected.append(f"KV.BULKPUT of {len(items)} items answered {reply!r}")
        else:
            self._namespace_step()

    def _kvput(self, ns: str, key: str, ttl: int | None = None) -> None:
        value, meta = self._value(), self._meta()
        ttl, exp = (ttl, None) if ttl else self._expiry()
        args = ["KV.PUT", key, value]
        if meta is not None:
            args += ["METADATA", json.dumps(meta)]
        if ttl:
            args += ["EXPIRATION_TTL", ttl]
        if exp:
            args += ["EXPIRATION", exp]
        self._do(ns, [(key, self._write(key, value, meta, ttl, exp, f"KV.PUT {key}"))], *args)

    def _namespace_step(self) -> None:
        rng, model = self.rng, self.h.model
        live = [s for s in self.owned if s.delete is None]
        r = rng.random()
        if not live or (len(live) < MAX_SCRATCH_PER_THREAD and r < 0.25):
            self.counter += 1
            title = f"scratch-c{self.h.cycle}-t{self.tid}-{self.counter}"
            with model.lock:
                model.uncertain_titles.add(title)
            self.ops += 1
            try:
                reply = self.conn.execute_command("KV.NAMESPACE", "CREATE", title)
            except CLIENT_ERRORS:
                self.uncertain += 1
                raise
            self.acked += 1
            info = Scratch(_text(_pairs(reply)["id"]), title)
            with model.lock:
                model.uncertain_titles.discard(title)
                model.scratch[info.id] = info
            self.owned.append(info)
        elif r < 0.12:
            target = rng.choice(live)
            target.delete = "uncertain"
            self.ops += 1
            try:
                self.conn.execute_command("KV.NAMESPACE", "DELETE", target.id)
            except CLIENT_ERRORS:
                self.uncertain += 1
                raise
            self.acked += 1
            target.delete = "acked"
        elif r < 0.2:
            # FLUSHDB: to the model, a DEL of every key this thread wrote there (only the
            # owner writes to a scratch namespace).
            target = rng.choice(live)
            with model.lock:
                keys = [key for ns, key in model.keys if ns == target.id]
            self.conn.execute_command("SELECT", target.id)
            self._do(target.id, [(key, self._write(key, None, None, None, None,
                                                   f"FLUSHDB of {target.title}"))
                                 for key in keys], "FLUSHDB")
            self.conn.execute_command("SELECT", "0")
        else:
            target = rng.choice(live)
            self.conn.execute_command("SELECT", target.id)
            for _ in range(rng.randint(1, 4)):
                key = f"n{rng.randrange(SCRATCH_KEYS)}"
                if rng.random() < 0.2:
                    self._do(target.id, [(key, self._write(key, None, None, None, None,
                                                           f"DEL {key} in {target.title}"))],
                             "DEL", key)
                else:
                    self._kvput(target.id, key)
            self.conn.execute_command("SELECT", "0")


class Compactor(threading.Thread):
    """Keeps compactions starting so that kills land in every phase of one."""

    def __init__(self, harness: Harness, server: Server, rng: random.Random) -> None:
        super().__init__(name="crash-compactor", daemon=True)
        self.h, self.server, self.rng = harness, server, rng
        self.started = 0

    def run(self) -> None:
        try:
            conn = self.server.client()
            while not self.h.stop_load.wait(self.rng.uniform(0.05, 0.35)):
                try:
                    conn.execute_command("KV.COMPACT")
                    self.started += 1
                except redis.ResponseError:
                    pass  # one is already running
        except CLIENT_ERRORS:
            pass


# --------------------------------------------------------------------------- checks


def _fmt(state: State) -> str:
    if state.value is None:
        return "absent"
    v = state.value if len(state.value) <= 40 else state.value[:40] + "..."
    exp = f", expiration {state.exp_lo:.0f}..{state.exp_hi:.0f}" if state.expires else ""
    return f"value {v!r}, metadata {json.dumps(state.metadata)}{exp}"


def _observed(value, metadata, expiretime) -> tuple:
    return (None if value is None else value.decode("utf-8"),
            None if metadata is None else json.loads(metadata), expiretime)


def _matches(obs: tuple, cand: State, t_before: float, t_after: float) -> bool:
    """``t_before``/``t_after`` bracket the read: a key whose expiration falls inside that window
    may legitimately be seen either way, one whose expiration is before it must be gone."""
    value, metadata, expiretime = obs
    if cand.value is None:
        return value is None
    if cand.expires and cand.exp_hi + 1 < t_before:
        return value is None             # expired: must be gone
    if cand.expires and cand.exp_lo - 1 <= t_after:
        # Expiring during the read: GET, KV.METADATA and EXPIRETIME are three commands, so each
        # may see the key or its absence, but whatever is seen must be this state.
        return ((value is None or value == cand.value)
                and (metadata is None or metadata == cand.metadata)
                and (expiretime == -2 or cand.exp_lo - 1 <= expiretime <= cand.exp_hi + 1))
    if value is None or value != cand.value or metadata != cand.metadata:
        return False
    if not cand.expires:
        return expiretime == -1
    return cand.exp_lo - 1 <= expiretime <= cand.exp_hi + 1


class Harness:
    def __init__(self, args) -> None:
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.model = Model()
        self.cycle = 0
        self.stop_load = threading.Event()
        self.checked = 0
        self.expired_checked = 0
        self.owned: dict[int, list[Scratch]] = {t: [] for t in range(args.threads)}

    def reproduce(self) -> str:
        a = self.args
        return (f"python -m tools.crash_harness --seed {self.seed} --cycles {a.cycles} "
                f"--threads {a.threads} --min-load {a.min_load} --max-load {a.max_load}"
                + ("" if a.fsync == "always" else f" --fsync {a.fsync}"))

    def run(self, root: Path) -> int:
        a = self.args
        data_dir, log_path = root / "data", root / "server.log"
        print(f"crash harness: seed {self.seed}; reproduce with: {self.reproduce()}", flush=True)
        print(f"server: {shlex.join(server_command(0, data_dir, a.fsync)).replace('--port 0', '--port P')}",
              flush=True)
        deadline = time.monotonic() + a.max_seconds
        server = Server(data_dir, log_path, a.fsync)
        done = 0
        try:
            for self.cycle in range(1, a.cycles + 1):
                if time.monotonic() > deadline:
                    print(f"stopping after {done} cycles: --max-seconds {a.max_seconds} reached",
                          flush=True)
                    break
                server, problems = self.one_cycle(server, data_dir, log_path)
                if problems:
                    return self.fail(problems, root)
                done += 1
            server.stop()
            verify = subprocess.run([sys.executable, "-m", "tools.cli", "verify", str(data_dir)],
                                    cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})
            if verify.returncode != 0:
                return self.fail([(f"edgekv verify exited {verify.returncode}:\n"
                                   f"{verify.stdout}{verify.stderr}")], root)
            print(f"verify: {verify.stdout.strip().splitlines()[0]} (exit 0)", flush=True)
        finally:
            if server.proc.poll() is None:
                server.kill9()
        print(f"seed {self.seed}; reproduce with: {self.reproduce()}")
        print(f"expired keys confirmed absent: {self.expired_checked}, namespaces deleted and "
              f"confirmed gone: {len(self.model.deleted_ids)}")
        print(f"cycles: {done}, acknowledged writes checked: {self.checked}, losses: 0", flush=True)
        return 0

    def fail(self, problems: list[str], root: Path) -> int:
        print(f"FAILED in cycle {self.cycle} (seed {self.seed}):", flush=True)
        for p in problems[:50]:
            print(f"  {p}")
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more")
        print(f"data directory and server log kept in {root}")
        print(f"reproduce with: {self.reproduce()}")
        print(f"cycles: {self.cycle - 1}, acknowledged writes checked: {self.checked}, "
              f"losses: {len(problems)}", flush=True)
        self.keep = True
        return 1

    def one_cycle(self, server: Server, data_dir: Path, log_path: Path):
        a, rng = self.args, self.rng
        self.stop_load.clear()
        workers = [Worker(self, server, t, random.Random(rng.getrandbits(64)), self.owned[t])
                   for t in range(a.threads)]
        compactor = Compactor(self, server, random.Random(rng.getrandbits(64)))
        load = rng.uniform(a.min_load, a.max_load)
        for t in workers + [compactor]:
            t.start()
        time.sleep(load)
        compacting = self._compacting(server)
        server.kill9()
        kill_wall = time.time()
        self.stop_load.set()
        for t in workers + [compactor]:
            t.join(timeout=30)
            if t.is_alive():
                return server, [f"{t.name} still blocked 30 s after the kill"]
        problems = [u for w in workers for u in w.unexpected]
        t0 = time.monotonic()
        server = Server(data_dir, log_path, a.fsync)
        restart = time.monotonic() - t0
        before = self.checked
        problems += self.check(server, kill_wall)
        ops = sum(w.ops for w in workers)
        print(f"cycle {self.cycle}/{a.cycles}: load {load:.2f}s, ops {ops} "
              f"(acked {sum(w.acked for w in workers)}, uncertain {sum(w.uncertain for w in workers)}), "
              f"compactions started {compactor.started}"
              f"{', killed during compaction' if compacting else ''}, restart {restart:.2f}s, "
              f"checked {self.checked - before}, keys {len(self.model.keys)}: "
              f"{'FAILED' if problems else 'ok'}", flush=True)
        return server, problems

    @staticmethod
    def _compacting(server: Server) -> bool:
        try:
            with server.client(timeout=2) as c:
                return bool(int(c.info("persistence").get("aof_rewrite_in_progress", 0)))
        except CLIENT_ERRORS:
            return False

    def check(self, server: Server, kill_wall: float) -> list[str]:
        """Compare the restarted store with the model, then make what was found the base."""
        m, problems = self.model, []
        c = server.client(timeout=60)
        try:
            info = c.info("persistence")
            if int(info.get("edgekv_corrupt_records", -1)) != 0:
                problems.append(f"INFO persistence edgekv_corrupt_records:"
                                f"{info.get('edgekv_corrupt_records')} after restart")
            listed = {_text(_pairs(e)["id"]): _text(_pairs(e)["title"])
                      for e in c.execute_command("KV.NAMESPACE", "LIST")}
            by_title = {t: i for i, t in listed.items()}

            # Namespaces: resolve each to present/absent, checking what the model allows.
            present: set[str] = {DEFAULT_NS}
            for sid, s in list(m.scratch.items()):
                here = sid in listed
                if s.delete == "acked":
                    self.checked += 1
                    if here:
                        problems.append(f"namespace {s.title} ({sid}): deletion was "
                                        f"acknowledged but it is back after the restart")
                elif s.delete is None:
                    self.checked += 1
                    if not here:
                        problems.append(f"namespace {s.title} ({sid}): creation was "
                                        f"acknowledged but it is gone after the restart")
                if here:
                    s.delete = None
                    present.add(sid)
                else:
                    m.scratch.pop(sid)
                    m.deleted_ids.add(sid)
            for title in m.uncertain_titles:
                if title in by_title:  # created after all: adopt it, it holds no keys
                    sid = by_title[title]
                    m.scratch[sid] = Scratch(sid, title)
                    present.add(sid)
            m.uncertain_titles.clear()
            for sid in m.deleted_ids & set(listed):
                problems.append(f"namespace {sid}: deleted earlier, present again")
            for title in by_title:
                if title.startswith("recovered-"):  # keys under a number no record names
                    problems.append(f"namespace {title} appeared: keys of a flushed or deleted "
                                    f"namespace came back")

            # Keys: read all of them, namespace by namespace.
            by_ns: dict[str, list[str]] = {}
            for (ns, key) in list(m.keys):
                if ns not in present:
                    del m.keys[(ns, key)]
                else:
                    by_ns.setdefault(ns, []).append(key)
            for ns, keys in by_ns.items():
                t_before = time.time()
                # A pipeline checks out a connection of its own: it must SELECT itself.
                pipe = c.pipeline(transaction=False)
                pipe.execute_command("SELECT", "0" if ns == DEFAULT_NS else ns)
                for key in keys:
                    pipe.get(key)
                    pipe.execute_command("KV.METADATA", key)
                    pipe.execute_command("EXPIRETIME", key)
                replies = pipe.execute()[1:]
                t_after = time.time()
                for i, key in enumerate(keys):
                    obs = _observed(*replies[3 * i:3 * i + 3])
                    km = m.keys[(ns, key)]
                    self.checked += sum(1 for w in km.writes if w.acked is not None and not w.failed)
                    cands = km.candidates(kill_wall)
                    hit = next((st for st, _ in cands if _matches(obs, st, t_before, t_after)), None)
                    where = "" if ns == DEFAULT_NS else f" in namespace {m.scratch[ns].title}"
                    if hit is None:
                        found = ("absent" if obs[0] is None else
                                 f"value {obs[0][:40]!r}, metadata {json.dumps(obs[1])}, "
                                 f"EXPIRETIME {obs[2]}")
                        allowed = "; ".join(f"{why}: {_fmt(st)}" for st, why in cands)
                        problems.append(f"key {key!r}{where}: found {found}; allowed: {allowed}")
                        continue
                    if hit.expires and hit.exp_hi + 1 < t_before:
                        self.expired_checked += 1
                    km.base = ABSENT if obs[0] is None else hit
                    km.writes = []

            # The store must accept writes again, and serve them back.
            probe = f"probe-{self.cycle}"
            c.execute_command("KV.PUT", probe, "ok", "METADATA", '{"probe":true}')
            if c.get(probe) != b"ok" or c.execute_command("KV.METADATA", probe) != b'{"probe":true}':
                problems.append("the restarted store did not serve back a fresh write")
            c.delete(probe)
        finally:
            c.close()
        # Redistribute surviving scratch namespaces among the next cycle's threads.
        self.owned = {t: [] for t in range(self.args.threads)}
        for i, s in enumerate(m.scratch.values()):
            self.owned[i % self.args.threads].append(s)
        return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.crash_harness",
                                description="kill -9 a real edgekv server under load and check "
                                            "that no acknowledged write is lost")
    p.add_argument("--cycles", type=int, default=20, help="kill/restart cycles (default 20)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one)")
    p.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--min-load", type=float, default=0.3, help="least seconds of load before a kill")
    p.add_argument("--max-load", type=float, default=1.5, help="most seconds of load before a kill")
    p.add_argument("--fsync", choices=("always", "everysec", "no"), default="always",
                   help="the server's fsync policy (default always); a process kill must lose "
                        "no acknowledged write under any of them, a power loss only under always")
    p.add_argument("--max-seconds", type=float, default=3600,
                   help="stop starting new cycles after this long (default 3600)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where to put the data directory and server log (default: a temporary "
                        "directory, removed when the run passes)")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    if not 0 < args.min_load <= args.max_load:
        p.error("need 0 < --min-load <= --max-load")
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="edgekv-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    harness = Harness(args)
    harness.keep = args.work_dir is not None
    try:
        code = harness.run(root)
    except HarnessError as exc:
        print(f"crash harness could not run: {exc}", file=sys.stderr)
        print(f"reproduce with: {harness.reproduce()}", file=sys.stderr)
        harness.keep = True
        code = 2
    if not harness.keep:
        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
