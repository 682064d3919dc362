"""A real ``kill -9``: a child process writes with fsync="always" and prints every key once its
put has returned; whatever it printed must be in the store after the kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from engine import Store
from kvtest_helpers import REPO_ROOT, needs_writes_after_reopen

WRITER = textwrap.dedent("""
    import sys
    from engine import Store

    path, first, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def value_of(i):
        # sizes from a few bytes to 200 KB, so some kills land inside a large write
        size = (i * 7919) % 5000 if i % 10 else 200_000 + i % 97
        stamp = f"<{i}>".encode()
        return (stamp * (size // len(stamp) + 1))[:size]

    store = Store.open(path, fsync="always")
    ns = store.namespace()
    print("ready", flush=True)
    i = first
    while True:
        if mode == "bulk" and i % 3 == 0:
            batch = [i, i + 1, i + 2]
            ns.bulk_put([{"key": f"k{j:07d}", "value": value_of(j).decode("latin-1")}
                         for j in batch])
            for j in batch:
                print(f"k{j:07d}", flush=True)
            i += 3
            continue
        ns.put(f"k{i:07d}", value_of(i), metadata={"i": i})
        print(f"k{i:07d}", flush=True)
        if i % 25 == 0:
            ns.delete(f"k{i - 1:07d}")
            print(f"-k{i - 1:07d}", flush=True)
        i += 1
""")


def _value_of(i: int) -> bytes:
    size = (i * 7919) % 5000 if i % 10 else 200_000 + i % 97
    stamp = f"<{i}>".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def _run_and_kill(path, first: int, acks_wanted: int, mode: str = "put") -> dict[str, bool]:
    """Start a writer, SIGKILL it after ``acks_wanted`` acknowledgements; returns
    ``{key: present}`` for every acknowledged put (False for an acknowledged delete)."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first), mode],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    acked: dict[str, bool] = {}
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        while len(acked) < acks_wanted:
            line = child.stdout.readline()
            assert line, f"writer died early: {child.stderr.read()}"
            line = line.strip()
            acked[line.lstrip("-")] = not line.startswith("-")
        os.kill(child.pid, signal.SIGKILL)
        # lines printed before the kill landed are acknowledgements too
        for line in child.stdout.read().splitlines():
            if line.strip():
                acked[line.strip().lstrip("-")] = not line.startswith("-")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return acked


def _check_acknowledged(path, acked: dict[str, bool]) -> Store:
    store = Store.open(str(path))
    assert store.recovery.corrupt == []
    assert len(store.recovery.truncated) <= 1
    ns = store.namespace()
    for key, present in acked.items():
        i = int(key[1:])
        entry = ns.get_entry(key.encode())
        if present:
            assert entry is not None, f"acknowledged {key} is missing after kill -9"
            assert entry.value == _value_of(i), key
        else:
            assert entry is None, f"acknowledged delete of {key} was lost"
    store._check()
    return store


@pytest.mark.timeout(120)
def test_every_acknowledged_put_survives_kill_9(tmp_path):
    acked = _run_and_kill(tmp_path, 0, 300)
    assert len(acked) >= 300
    store = _check_acknowledged(tmp_path, acked)
    store.close()


@pytest.mark.timeout(120)
def test_every_acknowledged_bulk_put_survives_kill_9(tmp_path):
    acked = _run_and_kill(tmp_path, 0, 300, mode="bulk")
    store = _check_acknowledged(tmp_path, acked)
    store.close()


@needs_writes_after_reopen
@pytest.mark.timeout(180)
def test_acknowledged_writes_survive_repeated_kill_9_and_restart(tmp_path):
    acked: dict[str, bool] = {}
    first = 0
    for _ in range(4):
        acked.update(_run_and_kill(tmp_path, first, 120))
        store = _check_acknowledged(tmp_path, acked)
        store.close()
        first = max(int(k[1:]) for k in acked) + 10
