"""The crash harness: a short run through its real entry point, and its model on its own.

The model is tested directly because a harness that cannot see a loss passes every run: the
end-to-end test alone would never notice a checker that accepts everything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.crash_harness import ABSENT, KeyModel, State, Write, _matches

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_run_loses_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tools.crash_harness", "--cycles", "20", "--seed", "4242",
         "--work-dir", str(tmp_path / "run")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "seed 4242" in out.splitlines()[0]
    assert "python -m tools.crash_harness --seed 4242 --cycles 20" in out
    assert len(re.findall(r"^cycle \d+/20: .*: ok$", out, re.MULTILINE)) == 20
    summary = re.search(r"^cycles: 20, acknowledged writes checked: (\d+), losses: 0$", out, re.MULTILINE)
    assert summary and int(summary.group(1)) > 1000, out[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_everysec_loses_nothing_on_kill_9(tmp_path):
    """Under everysec the server writes a loop iteration's plain SETs in one write just before
    their replies: a process kill must still lose none of them (removing that write before the
    replies makes this fail within a few cycles)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.crash_harness", "--cycles", "10", "--seed", "77",
         "--fsync", "everysec", "--work-dir", str(tmp_path / "run")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = re.search(r"^cycles: 10, acknowledged writes checked: (\d+), losses: 0$",
                        proc.stdout, re.MULTILINE)
    assert summary and int(summary.group(1)) > 1000, proc.stdout[-2000:]


def _write(value, sent, acked, ttl=None, metadata=None):
    return Write(value, metadata, ttl, None, sent, 1000.0 + sent,
                 None if acked is None else acked, None if acked is None else 1000.0 + acked)


def test_a_write_acknowledged_before_another_was_sent_is_superseded():
    km = KeyModel(base=State("old"))
    km.writes = [_write("a", 1.0, 2.0), _write("b", 3.0, 4.0)]
    assert [s.value for s, _ in km.candidates(kill_wall=1010)] == ["b"]


def test_overlapping_writes_may_land_in_either_order():
    km = KeyModel()
    km.writes = [_write("a", 1.0, 3.0), _write("b", 2.0, 4.0)]
    assert sorted(s.value for s, _ in km.candidates(kill_wall=1010)) == ["a", "b"]


def test_uncertain_writes_are_allowed_but_not_required():
    km = KeyModel(base=State("old"))
    km.writes = [_write(None, 1.0, None)]
    values = {s.value for s, _ in km.candidates(kill_wall=1010)}
    assert values == {"old", None}
    km.writes.insert(0, _write("acked", 0.5, 0.7))
    assert {s.value for s, _ in km.candidates(kill_wall=1010)} == {"acked", None}


def test_a_lost_acknowledged_write_is_reported():
    km = KeyModel(base=State("old"))
    km.writes = [_write("new", 1.0, 2.0)]
    cands = [s for s, _ in km.candidates(kill_wall=1010)]
    assert not any(_matches(("old", None, -1), s, 1005, 1005) for s in cands)
    assert not any(_matches((None, None, -2), s, 1005, 1005) for s in cands)
    assert any(_matches(("new", None, -1), s, 1005, 1005) for s in cands)


def test_metadata_and_expiration_must_match():
    state = _write("v", 1.0, 2.0, ttl=60, metadata={"a": 1}).state(kill_wall=1010)
    assert _matches(("v", {"a": 1}, 1061), state, 1005, 1005)
    assert not _matches(("v", {"a": 2}, 1061), state, 1005, 1005)
    assert not _matches(("v", None, 1061), state, 1005, 1005)
    assert not _matches(("v", {"a": 1}, -1), state, 1005, 1005)
    assert not _matches(("v", {"a": 1}, 1070), state, 1005, 1005)


def test_an_expired_key_must_be_absent():
    state = _write("v", 1.0, 2.0, ttl=60).state(kill_wall=1010)
    assert _matches((None, None, -2), state, 1100, 1100)
    assert not _matches(("v", None, 1061), state, 1100, 1100)
    assert _matches((None, None, -2), state, 1060.5, 1060.6)   # expiring right now: either
    assert not _matches((None, None, -2), state, 1030, 1030)   # far from due: a loss
    assert _matches((None, None, -2), ABSENT, 0, 0)


def test_a_key_expiring_between_the_three_reads_may_be_seen_partly():
    state = _write("v", 1.0, 2.0, ttl=60, metadata={"a": 1}).state(kill_wall=1010)
    assert _matches(("v", {"a": 1}, -2), state, 1061.8, 1062.1)   # gone before EXPIRETIME
    assert _matches(("v", None, -2), state, 1061.8, 1062.1)       # gone before KV.METADATA
    assert not _matches(("w", None, -2), state, 1061.8, 1062.1)   # but never another value
    assert not _matches(("v", {"a": 2}, -2), state, 1061.8, 1062.1)
    assert not _matches(("v", {"a": 1}, -2), state, 1030, 1030)    # far from due: a loss
