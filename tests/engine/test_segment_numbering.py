"""Segment numbers do not run out: opening renumbers the segments of a store whose numbers have
climbed (``compaction.renumber_directory``), crash-safely, without rewriting any file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from engine import Store, StoreError, compaction, hints
from engine.index import MAX_SEGMENT_NO
from engine.segment import SEGMENT_HEADER, SegmentFile, parse_segment_name
from engine.snapshot import snapshot_store
from engine.verify import verify_store
from compaction_helpers import snapshot, write_history
from kvtest_helpers import REPO_ROOT

HIGH = 200_000  # where the built stores' segments sit: far above RENUMBER_ABOVE


def _numbers(path) -> list[int]:
    return sorted(n for n in (parse_segment_name(name) for name in os.listdir(path))
                  if n is not None)


def _hint_numbers(path) -> list[int]:
    return sorted(int(name[:-len(hints.HINT_SUFFIX)]) for name in os.listdir(path)
                  if name.endswith(hints.HINT_SUFFIX))


def _header_no(path, seg_no: int) -> int:
    with open(os.path.join(path, f"{seg_no:08d}.seg"), "rb") as f:
        return SEGMENT_HEADER.unpack(f.read(SEGMENT_HEADER.size))[3]


def _opts(clock, **kwargs) -> dict:
    return dict(fsync="no", segment_bytes=4096, clock=clock, **kwargs)


def _build_high(path, clock, monkeypatch, base: int = HIGH, **kwargs) -> dict:
    """Close a store at ``path`` whose segments all sit above ``base``, as a long-lived store's
    do: history written at low numbers, compacted above an (empty) segment created at
    ``base``, then more writes sealed into segments of their own, whose hints the seal writer
    wrote.  Every sealed segment has its hint.  Returns what a client sees."""
    path = str(path)
    with monkeypatch.context() as m:  # this build must not renumber itself
        m.setattr(compaction, "RENUMBER_ABOVE", MAX_SEGMENT_NO, raising=False)
        with Store.open(path, **_opts(clock, **kwargs)) as store:
            write_history(store, clock)
        SegmentFile.create(path, base).close()
        with Store.open(path, **_opts(clock, **kwargs)) as store:
            store.compact()
            ns = store.namespace()
            for i in range(60):
                ns.put(f"late/{i:03d}", f"after compaction {i} " * 8,
                       metadata={"late": i} if i % 3 == 0 else None,
                       expiration=clock.now_s + 7200 if i % 5 == 0 else None)
            ns.delete("key/0003")
            expected = snapshot(store)
            assert store.wait_for_hints(timeout=60)
    numbers = _numbers(path)
    assert numbers[0] > base and len(numbers) >= 4
    assert _hint_numbers(path) == numbers[:-1]  # every sealed segment has its hint
    return expected


# --------------------------------------------------------------------------- reopening


@pytest.mark.parametrize("encryption", [True, False])
def test_reopen_renumbers_from_one_and_keeps_everything(tmp_path, clock, monkeypatch,
                                                        encryption):
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch, encryption=encryption)
    before = _numbers(path)
    headers = {n: _header_no(path, n) for n in before}
    inodes = {n: os.stat(os.path.join(path, f"{n:08d}.seg")).st_ino for n in before}

    with Store.open(path, **_opts(clock, encryption=encryption)) as store:
        report = store.recovery
        assert _numbers(path) == list(range(1, len(before) + 1))
        assert _hint_numbers(path) == list(range(1, len(before)))
        assert report.segments_renumbered == len(before)
        # Renamed, not rewritten: same files, headers still saying the original numbers.
        for new, old in enumerate(before, 1):
            assert os.stat(os.path.join(path, f"{new:08d}.seg")).st_ino == inodes[old]
            assert _header_no(path, new) == headers[old] == old
        # Hints were used: only the active segment was scanned.
        assert report.segments_scanned == 1
        assert report.hints_loaded == len(before) - 1
        assert report.hint_problems == [] and report.corrupt == []
        assert snapshot(store) == expected
        assert store.stats()["active_segment"] == len(before)
        # New writes, rotations (the renamed active segment gets its hint under its header's
        # number) and compaction work.
        ns = store.namespace()
        for i in range(80):
            ns.put(f"new/{i:03d}", f"written after renumbering {i} " * 6)
        ns.delete("late/001")
        ns.put("key/0000", "overwritten after renumbering")
        expected = snapshot(store)
        assert store.wait_for_hints(timeout=60)
    assert _numbers(path)[-1] < 100

    with Store.open(path, **_opts(clock, encryption=encryption)) as store:
        assert store.recovery.segments_renumbered == 0
        assert store.recovery.segments_scanned == 1  # every sealed segment from its hint
        assert store.recovery.hint_problems == []
        assert snapshot(store) == expected
        summary = store.compact()
        assert summary["segments_from_hints"] >= 3  # renumbered segments read through hints
        assert snapshot(store) == expected
        ns = store.namespace()
        ns.put("after", "compaction")
        expected = snapshot(store)
    assert verify_store(path).ok

    with Store.open(path, **_opts(clock, encryption=encryption)) as store:
        assert store.recovery.segments_scanned == 1 and store.recovery.hint_problems == []
        assert snapshot(store) == expected


def test_store_below_the_threshold_keeps_its_names(tmp_path, clock, monkeypatch):
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch, base=1000)
    before = _numbers(path)
    with Store.open(path, **_opts(clock)) as store:
        assert getattr(store.recovery, "segments_renumbered", 0) == 0
        assert _numbers(path) == before
        assert snapshot(store) == expected


def test_compaction_at_the_limit_says_to_restart_and_a_restart_renumbers(tmp_path, clock,
                                                                       monkeypatch):
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch, base=MAX_SEGMENT_NO - 40)
    with monkeypatch.context() as m:  # a process that has been running all along
        m.setattr(compaction, "RENUMBER_ABOVE", MAX_SEGMENT_NO, raising=False)
        with Store.open(path, **_opts(clock)) as store:
            with pytest.raises(StoreError, match="restart the process: opening the store "
                                                 "renumbers its segments"):
                for _ in range(20):
                    store.compact()
            assert snapshot(store) == expected  # a refused compaction changed nothing
    with Store.open(path, **_opts(clock)) as store:
        assert _numbers(path)[0] == 1 and _numbers(path)[-1] < 100
        assert snapshot(store) == expected
        for _ in range(3):
            store.compact()
        store.namespace().put("still", "writable")
        assert store.namespace().get("still") == "writable"
        expected = snapshot(store)
    with Store.open(path, **_opts(clock)) as store:
        assert snapshot(store) == expected


def test_writing_past_the_last_number_says_to_restart(tmp_path, clock, monkeypatch):
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch, base=MAX_SEGMENT_NO - 40)
    with monkeypatch.context() as m:
        m.setattr(compaction, "RENUMBER_ABOVE", MAX_SEGMENT_NO, raising=False)
        with Store.open(path, **_opts(clock)) as store:
            ns = store.namespace()
            with pytest.raises(StoreError, match="opening the store renumbers"):
                for i in range(2000):
                    ns.put(f"fill/{i:05d}", "x" * 200)
    with Store.open(path, **_opts(clock)) as store:
        assert _numbers(path)[-1] < 100
        got = snapshot(store)
        # everything from before is there (the fill keys written before the refusal too)
        assert {k: v for k, v in got["default"].items() if not k.startswith(b"fill/")} == \
            expected["default"]
        store.namespace().put("after", "restart")
        assert store.namespace().get("after") == "restart"


# --------------------------------------------------------------------------- crashes


def _stop_after(k: int):
    def hook(done: int) -> None:
        if done == k:
            raise _Crash(k)
    return hook


class _Crash(Exception):
    pass


def test_crash_after_each_rename_leaves_a_store_that_opens_intact(tmp_path, clock, monkeypatch):
    reference = _build_high(tmp_path / "probe", clock, monkeypatch)
    count = len(_numbers(tmp_path / "probe"))
    for k in range(1, count):  # k == count is a finished renumbering
        path = str(tmp_path / f"crash{k}")
        expected = _build_high(path, clock, monkeypatch)
        assert expected == reference
        before = _numbers(path)
        monkeypatch.setattr(compaction, "renumber_hook", _stop_after(k), raising=False)
        with pytest.raises(_Crash):
            Store.open(path, **_opts(clock))
        monkeypatch.setattr(compaction, "renumber_hook", None)
        # The first k segments (and their hints) moved, the rest did not: order kept.
        assert _numbers(path) == list(range(1, k + 1)) + before[k:], k
        assert _hint_numbers(path) == list(range(1, k + 1)) + before[k:-1], k
        assert verify_store(path).ok, k
        with Store.open(path, **_opts(clock)) as store:
            assert _numbers(path) == list(range(1, count + 1)), k
            assert store.recovery.segments_renumbered == count - k, k
            assert store.recovery.segments_scanned == 1, k
            assert store.recovery.corrupt == [] and store.recovery.truncated == [], k
            assert snapshot(store) == expected, k
            store.namespace().put("after", f"crash {k}")
            expected = snapshot(store)
        with Store.open(path, **_opts(clock)) as store:
            assert snapshot(store) == expected, k


@pytest.mark.parametrize("half", ["segment", "hint"])
def test_crash_between_a_segment_rename_and_its_hint_rename(tmp_path, clock, monkeypatch, half):
    """Only one of the two renames of a step reached the disk: the hint left without its
    segment is deleted, that segment is scanned once and gets its hint again."""
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch)
    before = _numbers(path)
    monkeypatch.setattr(compaction, "renumber_hook", _stop_after(2), raising=False)
    with pytest.raises(_Crash):
        Store.open(path, **_opts(clock))
    monkeypatch.setattr(compaction, "renumber_hook", None)
    old = before[2]
    if half == "segment":
        os.rename(os.path.join(path, f"{old:08d}.seg"), os.path.join(path, "00000003.seg"))
    else:
        os.rename(os.path.join(path, hints.hint_name(old)),
                  os.path.join(path, hints.hint_name(3)))
    with Store.open(path, **_opts(clock)) as store:
        assert _numbers(path) == list(range(1, len(before) + 1))
        assert store.recovery.segments_scanned == 2  # segment 3 lost its hint
        assert store.recovery.corrupt == []
        assert snapshot(store) == expected
        assert store.wait_for_hints(timeout=60)
    # The hint written again for the renamed segment 3 (under its header's number) is used.
    assert _hint_numbers(path)[:len(before) - 1] == list(range(1, len(before)))
    with Store.open(path, **_opts(clock)) as store:
        assert store.recovery.segments_scanned == 1
        assert store.recovery.hint_problems == []
        assert snapshot(store) == expected
    assert verify_store(path).ok


@pytest.mark.parametrize("point", ["manifest_written", "outputs_renamed", "input_deleted"])
def test_interrupted_compaction_is_finished_before_renumbering(tmp_path, clock, monkeypatch,
                                                               point):
    path = str(tmp_path / "data")
    _build_high(path, clock, monkeypatch)

    def crash(name: str) -> None:
        if name == point:
            raise _Crash(name)

    with monkeypatch.context() as m:
        m.setattr(compaction, "RENUMBER_ABOVE", MAX_SEGMENT_NO, raising=False)
        with Store.open(path, **_opts(clock)) as store:
            store.namespace().put("key/0002", "written before the crash")
            expected = snapshot(store)
            m.setattr(compaction, "crash_hook", crash)
            with pytest.raises(_Crash):
                store.compact()
            m.setattr(compaction, "crash_hook", None)
    assert compaction.MANIFEST in os.listdir(path)
    with Store.open(path, **_opts(clock)) as store:
        assert any("interrupted compaction" in n for n in store.recovery.compaction_notes)
        assert _numbers(path) == list(range(1, len(_numbers(path)) + 1))
        assert store.recovery.segments_renumbered > 0
        assert store.recovery.corrupt == []
        assert snapshot(store) == expected
    assert verify_store(path).ok


KILLED_CHILD = textwrap.dedent("""
    import os, sys
    from engine import Store, compaction
    kill_at = int(sys.argv[2])
    compaction.renumber_hook = lambda done: os._exit(86) if done == kill_at else None
    Store.open(sys.argv[1], fsync="always", segment_bytes=4096)
    os._exit(0)
""")


def test_killed_process_mid_renumbering(tmp_path, clock, monkeypatch):
    path = str(tmp_path / "data")
    expected = _build_high(path, clock, monkeypatch)
    count = len(_numbers(path))
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD, path, str(count // 2)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == 86, child.stderr
    assert _numbers(path)[:count // 2] == list(range(1, count // 2 + 1))
    assert _numbers(path)[-1] > HIGH
    with Store.open(path, **_opts(clock)) as store:
        assert _numbers(path) == list(range(1, count + 1))
        assert snapshot(store) == expected


# --------------------------------------------------------------------------- snapshots


def _digests(path) -> dict[str, str]:
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full) and name != "LOCK":
            with open(full, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_snapshot_taken_before_renumbering_still_opens(tmp_path, clock, monkeypatch):
    path, snap = str(tmp_path / "data"), str(tmp_path / "snap")
    expected = _build_high(path, clock, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(compaction, "RENUMBER_ABOVE", MAX_SEGMENT_NO, raising=False)
        with Store.open(path, **_opts(clock)) as store:
            info = snapshot_store(store, snap)
            assert info["linked_segments"] >= 3
    snap_files = _digests(snap)
    snap_numbers = _numbers(snap)
    # The original renumbers, writes, compacts (its old files are unlinked).
    with Store.open(path, **_opts(clock)) as store:
        assert store.recovery.segments_renumbered > 0
        store.namespace().put("key/0001", "changed in the original")
        store.compact()
        changed = snapshot(store)
    assert changed != expected
    # The snapshot's files are exactly what they were, under their old names.
    assert _digests(snap) == snap_files and _numbers(snap) == snap_numbers
    with Store.open(snap, **_opts(clock)) as copy:
        assert copy.recovery.segments_renumbered == len(snap_numbers)
        assert copy.recovery.segments_scanned == 1
        assert snapshot(copy) == expected
    # and a snapshot taken after renumbering opens too
    with Store.open(path, **_opts(clock)) as store:
        snapshot_store(store, str(tmp_path / "snap2"))
    with Store.open(str(tmp_path / "snap2"), **_opts(clock)) as copy:
        assert copy.recovery.segments_renumbered == 0
        assert snapshot(copy) == changed


# --------------------------------------------------------------------------- hints and verify


def test_hint_is_checked_against_the_header_number_and_moved_to_the_file_number():
    from engine.index import pack_location
    writer = hints.HintWriter(500)
    writer.add(b"\0\1a", pack_location(500, 16, 84), 3, 0, 0, b"")
    writer.add(b"\0\1b", pack_location(500, 100, 40), 4, 0, 0, b"")
    data = writer.encode(140)
    hint = hints.parse_hint(data, 2, 140, None, 500)  # file 00000002, header 500
    assert hint.seg_no == 2
    assert [loc >> 42 for loc in hint.locations] == [2, 2]
    assert [hint.offset(i) for i in range(2)] == [16, 100]
    assert [hint.size(i) for i in range(2)] == [84, 40]
    with pytest.raises(hints.HintError, match="header says 501"):
        hints.parse_hint(data, 2, 140, None, 501)
    with pytest.raises(hints.HintError, match="name says"):
        hints.parse_hint(data, 2, 140)


def test_segment_renamed_to_a_higher_number_is_still_refused(tmp_path, clock, monkeypatch):
    path = str(tmp_path / "data")
    _build_high(path, clock, monkeypatch, base=1000)
    last = _numbers(path)[-1]
    os.rename(os.path.join(path, f"{last:08d}.seg"), os.path.join(path, f"{last + 5:08d}.seg"))
    with pytest.raises(StoreError, match="says it is number"):
        Store.open(path, **_opts(clock))


def test_verify_reads_a_renumbered_directory(tmp_path, clock, monkeypatch):
    path = str(tmp_path / "data")
    _build_high(path, clock, monkeypatch)
    report = verify_store(path)
    assert report.ok and any("renumbers" in note for note in report.notes)
    with Store.open(path, **_opts(clock)):
        pass
    report = verify_store(path)
    assert report.ok and report.hints_checked == len(_numbers(path)) - 1
    assert not any("renumbers" in note for note in report.notes)
    shutil.rmtree(path)
