"""Hint files of sealed segments: every segment the store seals gets one, written in the
background, and opening loads them instead of scanning; a missing, damaged or half-written
one only means that segment is scanned again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine import Store, hints
from compaction_helpers import internal_state, snapshot, write_history
from kvtest_helpers import REPO_ROOT, flip_byte

SEGMENT = 8192


def _segments(directory) -> list[int]:
    return sorted(int(n[:8]) for n in os.listdir(directory) if n.endswith(".seg"))


def _hinted(directory) -> list[int]:
    return sorted(int(n[:8]) for n in os.listdir(directory) if n.endswith(hints.HINT_SUFFIX))


@pytest.mark.parametrize("encryption", [True, False])
def test_every_sealed_segment_gets_a_hint_and_open_scans_only_the_active_one(
        open_store, clock, tmp_path, encryption):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    write_history(store, clock)
    expected = snapshot(store)
    assert store.wait_for_hints(60)
    store.close()
    segments = _segments(data)
    assert len(segments) >= 4
    assert _hinted(data) == segments[:-1]
    assert store.seal_hints_written == len(segments) - 1
    assert not [n for n in os.listdir(data) if n.endswith(".tmp")]

    reopened = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    assert reopened.recovery.hints_loaded == len(segments) - 1
    assert reopened.recovery.segments_scanned == 1
    assert not reopened.recovery.hint_problems
    assert snapshot(reopened) == expected
    state = internal_state(reopened)
    reopened.close()

    for seg_no in segments[:-1]:  # the same directory, scanned: the same state
        os.rename(data / hints.hint_name(seg_no), data / (hints.hint_name(seg_no) + ".aside"))
    scanned = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    assert scanned.recovery.hints_loaded == 0
    assert scanned.recovery.segments_scanned == len(segments)
    assert internal_state(scanned) == state
    scanned.close()
    # The scan found sealed segments without a hint, so it wrote them again.
    assert _hinted(data) == segments[:-1]
    again = open_store(fsync="no", segment_bytes=SEGMENT, encryption=encryption)
    assert again.recovery.segments_scanned == 1
    assert internal_state(again) == state


def test_hint_is_written_while_the_store_is_open(open_store, clock, tmp_path):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    ns = store.namespace()
    i = 0
    while len(_segments(data)) < 3:
        ns.put(f"k{i}", "v" * 100)
        i += 1
    deadline = time.monotonic() + 10
    while _hinted(data) != _segments(data)[:-1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _hinted(data) == _segments(data)[:-1]
    assert store.seal_hints_written == 2


def test_sealed_segment_hint_matches_what_verify_expects(open_store, clock, tmp_path):
    from engine.verify import verify_store
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    write_history(store, clock)
    store.close()
    report = verify_store(str(tmp_path / "data"))
    assert report.hints_checked == len(_segments(tmp_path / "data")) - 1
    assert report.ok, report.hint_problems


@pytest.mark.parametrize("where", ["middle", "checksum", "truncate"])
def test_damaged_sealed_segment_hint_falls_back_to_scanning(open_store, clock, tmp_path, where):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    write_history(store, clock)
    expected = snapshot(store)
    store.close()
    victim = data / hints.hint_name(_hinted(data)[1])
    size = os.path.getsize(victim)
    if where == "middle":
        flip_byte(str(victim), size // 2, 0x01)
    elif where == "checksum":
        flip_byte(str(victim), size - 1)
    else:
        os.truncate(victim, size - 10)
    reopened = open_store(fsync="no", segment_bytes=SEGMENT)
    assert len(reopened.recovery.hint_problems) == 1
    assert reopened.recovery.segments_scanned == 2  # the damaged one and the active one
    assert snapshot(reopened) == expected
    reopened._check()


def test_damaged_segment_gets_no_hint(open_store, clock, tmp_path):
    """A sealed segment with a bad record keeps being scanned: recovery must see the damage."""
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    write_history(store, clock)
    store.close()
    target = _segments(data)[2]
    os.unlink(data / hints.hint_name(target))
    flip_byte(str(data / f"{target:08d}.seg"), 600)
    reopened = open_store(fsync="no", segment_bytes=SEGMENT)
    assert reopened.recovery.corrupt
    reopened.close()
    assert target not in _hinted(data)
    assert _hinted(data) == [n for n in _segments(data)[:-1] if n != target]


# --------------------------------------------------------------------------- kill -9

CHILD = textwrap.dedent("""
    import sys, threading, time
    from engine import Store, compaction

    path, point, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hold = threading.Event()

    def hook(name):
        if name == point:  # in the hint writer: say so, then wait for the kill
            print("at " + name, flush=True)
            hold.wait()

    compaction.crash_hook = hook
    store = Store.open(path, fsync="always", segment_bytes=8192)
    ns = store.namespace()
    for i in range(count):
        ns.put(f"k{i:05d}", f"value {i} " * (i % 13 + 1), metadata={"i": i} if i % 3 else None)
        if i % 17 == 0 and i:
            ns.delete(f"k{i - 1:05d}")
        if i % 50 == 0:
            print(f"ack {i}", flush=True)  # every put up to i has returned, so is durable
    print("written", flush=True)
    while True:
        time.sleep(1)
""")


def _expected(upto: int) -> dict:
    """The keys and values after puts 0..upto (and their deletes) have returned."""
    out = {}
    for i in range(upto + 1):
        out[f"k{i:05d}"] = f"value {i} ".encode() * (i % 13 + 1)
        if i % 17 == 0 and i:
            out.pop(f"k{i - 1:05d}")
    return out


def _spawn(path, point: str, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), point, str(count)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _check_reopened(path, acked: int) -> Store:
    """Open after the kill: every acknowledged put is there with its value, nothing more
    than the child could have written, and no temporary file is left."""
    store = Store.open(str(path), fsync="no", segment_bytes=SEGMENT)
    assert not [n for n in os.listdir(path) if n.endswith(".tmp")]
    ns = store.namespace()
    # Iteration ``acked`` + 1 may already have deleted k<acked>: check the keys before it.
    expected = {k: v for k, v in _expected(acked).items() if k < f"k{acked:05d}"}
    got = {}
    for i in range(acked):
        value = ns.get(f"k{i:05d}", type="bytes")
        if value is not None:
            got[f"k{i:05d}"] = value
    assert got == expected
    store._check()
    return store


@pytest.mark.parametrize("point", ["seal_hint_synced", "seal_hint_renamed"])
def test_kill_while_a_hint_is_written_leaves_a_store_with_the_same_data(tmp_path, point):
    path = tmp_path / "data"
    count = 600
    child = _spawn(path, point, count)
    try:
        seen = set()
        deadline = time.monotonic() + 60
        while not {"written", "at " + point} <= seen and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            seen.add(line.strip())
        assert {"written", "at " + point} <= seen, child.stderr.read()
        if point == "seal_hint_synced":  # synced under its temporary name, not renamed
            assert [n for n in os.listdir(path) if n.endswith(hints.HINT_SUFFIX + ".tmp")]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = _check_reopened(path, count - 1)
    try:
        assert not store.recovery.hint_problems
        if point == "seal_hint_synced":
            # the segment whose hint was half done is scanned, as well as the active one
            assert store.recovery.segments_scanned >= 2
    finally:
        store.close()
    reopened = Store.open(str(path), fsync="no", segment_bytes=SEGMENT)
    try:
        assert reopened.recovery.segments_scanned == 1  # the lost hint was written again
        assert not reopened.recovery.hint_problems
        assert reopened.recovery.hints_loaded == len(_segments(path)) - 1
    finally:
        reopened.close()


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0])
def test_kill_at_any_moment_of_writing_and_hinting(tmp_path, delay):
    """No crash point: the kill lands wherever the writer and the hint thread happen to be."""
    path = tmp_path / "data"
    child = _spawn(path, "none", 100_000)
    acked = -1
    try:
        assert child.stdout.readline().startswith("ack 0"), child.stderr.read()
        acked = 0
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        for line in child.stdout.read().splitlines():  # printed before the kill landed
            if line.startswith("ack "):
                acked = int(line[4:])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(_segments(path)) > 2
    store = _check_reopened(path, acked)
    store.close()


def test_close_stops_writing_hints_after_its_budget(open_store, clock, tmp_path):
    """A shutdown does not wait for a backlog of hints: what is left is scanned at the next
    open and queued again."""
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=SEGMENT)
    with store.hints_paused():  # build a backlog the writer cannot touch yet
        write_history(store, clock, rounds=3)
        expected = snapshot(store)
        store.CLOSE_HINT_BUDGET_S = 0.0
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 5
    segments = _segments(data)
    missing = len(segments) - 1 - len(_hinted(data))
    assert missing > 0, "the zero budget should have left segments without a hint"
    assert not [n for n in os.listdir(data) if n.endswith(".tmp")]
    reopened = open_store(fsync="no", segment_bytes=SEGMENT)
    assert reopened.recovery.segments_scanned == missing + 1
    assert snapshot(reopened) == expected
    assert reopened.wait_for_hints(60)
    assert _hinted(data) == segments[:-1]
    reopened.close()
