"""A real full disk and a real failed fsync, against the engine.

The disk is a small tmpfs mounted for each test, so "no space left on device" comes from the
kernel, not from a mock.  A failed fsync cannot be had from tmpfs (its fsync never fails), so
that test mounts ext4 on a loop device whose backing file lives on a tmpfs that is too small:
ext4 accepts the writes into the page cache and the fsync's writeback fails with EIO, which is
the failure PostgreSQL's "fsyncgate" and Redis's fatal-fsync rule are about.

Space "returns" by deleting a filler file on the same tmpfs.  Both need root (mount); without
it the tests skip and say why.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine import Store, StoreError
from engine.durability import UnflushedWritesError
from engine.errors import WriteFailedError
from tests.disk_faults import ext4_that_fails_fsync, fill, tmpfs

VALUE = b"v" * 1000
ENOSPC_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device"


# --------------------------------------------------------------------------- real small disks


def reserve(directory: Path, nbytes: int, name: str = "spare") -> Path:
    """A file of ``nbytes``: fill the disk after making it, delete it to free exactly that."""
    path = directory / name
    path.write_bytes(b"\0" * nbytes)
    return path


def put_until_full(store: Store, acknowledged: dict[bytes, bytes], prefix: bytes = b"k",
                   limit: int = 100_000) -> WriteFailedError:
    """Put distinct keys until the disk refuses one; record every acknowledged put."""
    ns = store.namespace()
    for i in range(limit):
        key = prefix + b"%06d" % i
        try:
            ns.put_raw(key, VALUE)
        except WriteFailedError as exc:
            return exc
        acknowledged[key] = VALUE
    raise AssertionError("the disk never filled up")


def assert_all_readable(store: Store, expected: dict[bytes, bytes]) -> None:
    ns = store.namespace()
    missing = [k for k, v in expected.items() if ns.get_entry(k) is None
               or ns.get_entry(k).value != v]
    assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"


def leftovers(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp") or n == "COMPACTION")


# --------------------------------------------------------------------------- full disk


def test_full_disk_refuses_puts_keeps_reads_and_recovers_when_space_returns(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spare = reserve(disk, 256 * 1024)
        data = disk / "data"
        acknowledged: dict[bytes, bytes] = {}
        store = Store.open(str(data), fsync="always", segment_bytes=256 * 1024)
        try:
            error = put_until_full(store, acknowledged)
            assert ENOSPC_TEXT in error.message
            assert error.status == 503
            assert len(acknowledged) > 100
            # Still full: the same put fails the same way, and did not half-happen.
            with pytest.raises(WriteFailedError, match=ENOSPC_TEXT):
                store.namespace().put_raw(b"refused", VALUE)
            assert store.namespace().get_entry(b"refused") is None
            assert_all_readable(store, acknowledged)
            assert store.stats()["write_error"] is None  # a full disk is not a failed fsync

            spare.unlink()  # space returns: no restart needed
            store.namespace().put_raw(b"after", b"space returned")
            acknowledged[b"after"] = b"space returned"
            assert_all_readable(store, acknowledged)
        finally:
            store.close()
        with Store.open(str(data)) as reopened:
            assert_all_readable(reopened, acknowledged)
            assert reopened.namespace().get_entry(b"refused") is None
            assert not reopened.recovery.corrupt


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_batched_puts_the_disk_refuses_stay_buffered_and_are_not_fatal(tmp_path, fsync):
    """A pipeline's puts reach the file in one write at the end of the batch.  When the disk
    refuses it the batch fails, its records stay buffered, and neither the background syncer
    (``everysec``) nor an explicit sync may turn that into the fatal failed-fsync state: the
    writes must work again once space returns, without a restart."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spare = reserve(disk, 128 * 1024)
        data = disk / "data"
        store = Store.open(str(data), fsync=fsync, segment_bytes=512 * 1024)
        acknowledged: dict[bytes, bytes] = {}
        try:
            ns = store.namespace()
            for i in range(100):
                ns.put_raw(b"before%03d" % i, VALUE)
                acknowledged[b"before%03d" % i] = VALUE
            store.sync()
            fill(disk)
            with pytest.raises(WriteFailedError, match=ENOSPC_TEXT):
                with store.batch():
                    for i in range(50):
                        ns.put_raw(b"batch%03d" % i, VALUE, durable=False)
            # Refused, not lost from memory: readable, and nothing older is disturbed.
            assert ns.get_entry(b"batch000").value == VALUE
            assert_all_readable(store, acknowledged)
            with pytest.raises(UnflushedWritesError, match=ENOSPC_TEXT):
                store.sync()
            if fsync == "everysec":
                import time
                time.sleep(1.5)  # the background syncer meets the full disk too
            assert store.stats()["write_error"] is None
            with pytest.raises(WriteFailedError, match=ENOSPC_TEXT):
                ns.put_raw(b"while-full", VALUE)

            (disk / "filler").unlink()
            spare.unlink()
            ns.put_raw(b"after", VALUE)
            acknowledged[b"after"] = VALUE
            store.sync()
            assert store.durable_seq == store.last_seq
        finally:
            store.close()
        with Store.open(str(data)) as reopened:
            assert_all_readable(reopened, acknowledged)
            # The refused batch reached the file once there was room, before "after".
            assert reopened.namespace().get_entry(b"batch049").value == VALUE


def test_segment_rotation_on_a_full_disk(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        data = disk / "data"
        store = Store.open(str(data), fsync="always", segment_bytes=16 * 1024)
        acknowledged: dict[bytes, bytes] = {}
        try:
            ns = store.namespace()
            i = 0
            while store._active.size < store.segment_bytes:  # the next put must rotate
                ns.put_raw(b"k%04d" % i, VALUE)
                acknowledged[b"k%04d" % i] = VALUE
                i += 1
            segments = sorted(os.listdir(data))
            filler = fill(disk)
            with pytest.raises(WriteFailedError, match=f"could not create segment.*{ENOSPC_TEXT}"):
                ns.put_raw(b"rotating", VALUE)
            assert sorted(os.listdir(data)) == segments  # no half-made segment left behind
            assert ns.get_entry(b"rotating") is None
            assert_all_readable(store, acknowledged)

            filler.unlink()
            ns.put_raw(b"rotating", VALUE)
            acknowledged[b"rotating"] = VALUE
            # The rotation happened: one more segment, and the sealed one gets its hint file
            # (written in the background, so wait for it before looking).
            assert store.wait_for_hints(30)
            sealed = store._active.seg_no - 1
            assert set(os.listdir(data)) == set(segments) | {
                f"{store._active.seg_no:08d}.seg", f"{sealed:08d}.hint"}
        finally:
            store.close()
        with Store.open(str(data)) as reopened:
            assert_all_readable(reopened, acknowledged)


@pytest.mark.parametrize("free_kib", [0, 48])
def test_compaction_on_a_full_disk_fails_cleanly_and_changes_nothing(tmp_path, free_kib):
    """``free_kib=0``: not even the next active segment fits.  ``48``: compaction starts and
    runs out of space while writing its outputs.  Either way: a clear error, no leftover files
    (the space they took is given back at once), the same data before and after a reopen, and
    a compaction that succeeds once there is room."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        data = disk / "data"
        # Plaintext, so the store can also be reopened while the disk is still full (see
        # test_a_store_on_a_full_disk_reopens_and_serves_reads).
        store = Store.open(str(data), fsync="no", segment_bytes=64 * 1024, encryption=False)
        expected: dict[bytes, bytes] = {}
        try:
            ns = store.namespace()
            for version in range(3):  # two thirds of the bytes are dead
                for i in range(300):
                    value = b"%d" % version * 1000
                    ns.put_raw(b"k%03d" % i, value)
                    expected[b"k%03d" % i] = value
            store.sync()
            assert store.wait_for_hints(30)  # no hint file appears or goes meanwhile
            spare = reserve(disk, free_kib * 1024) if free_kib else None
            filler = fill(disk)
            if spare is not None:
                spare.unlink()
            files_before = sorted(os.listdir(data))
            with pytest.raises(StoreError, match=ENOSPC_TEXT):
                store.compact()
            assert leftovers(data) == []
            names = set(os.listdir(data))
            assert names >= set(files_before) - {"LOCK"}
            assert_all_readable(store, expected)
            if free_kib:
                # Everything the failed run wrote was removed: its space is free again.
                st = os.statvfs(disk)
                assert st.f_bavail * st.f_frsize >= free_kib * 1024 - 2 * 4096
        finally:
            store.close()
        with Store.open(str(data), encryption=False) as reopened:  # still full
            assert_all_readable(reopened, expected)
            assert not reopened.recovery.compaction_notes
            filler.unlink()
            summary = reopened.compact()
            assert summary["bytes_after"] < summary["bytes_before"]
            assert_all_readable(reopened, expected)
        with Store.open(str(data), encryption=False) as reopened:
            assert_all_readable(reopened, expected)


@pytest.mark.parametrize("encryption", [
    False,
    pytest.param(True, marks=pytest.mark.xfail(
        strict=True, raises=OSError,
        reason="opening an encrypted store claims a fresh nonce epoch in its key file, which "
               "needs a little free space")),
])
def test_a_store_on_a_full_disk_reopens_and_serves_reads(tmp_path, encryption):
    """After a restart on a disk that is still full, what was acknowledged is served."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spare = reserve(disk, 64 * 1024)
        data = disk / "data"
        acknowledged: dict[bytes, bytes] = {}
        with Store.open(str(data), encryption=encryption) as store:
            put_until_full(store, acknowledged)
        fill(disk)  # whatever closing freed
        with Store.open(str(data), encryption=encryption) as reopened:
            assert_all_readable(reopened, acknowledged)
            with pytest.raises(WriteFailedError, match=ENOSPC_TEXT):
                reopened.namespace().put_raw(b"while-full", VALUE)
            spare.unlink()
            reopened.namespace().put_raw(b"after", VALUE)


# --------------------------------------------------------------------------- failed fsync


def test_a_failed_fsync_is_never_acknowledged_and_stops_writes_until_reopen(tmp_path):
    with ext4_that_fails_fsync(tmp_path) as (mnt, grow):
        data = mnt / "data"
        store = Store.open(str(data), fsync="always", segment_bytes=1024 * 1024)
        acknowledged: dict[bytes, bytes] = {}
        try:
            error = put_until_full(store, acknowledged, limit=20_000)
            # The disk said EIO (or, once ext4 gave up, read-only): never "ok".
            assert "fsync" in error.message or "write" in error.message
            assert store.stats()["write_error"] is not None
            with pytest.raises(WriteFailedError, match="writes are disabled after a failed fsync"):
                store.namespace().put_raw(b"later", VALUE)
            assert_all_readable(store, acknowledged)  # reads go on
        finally:
            store.close()
        grow()
        with Store.open(str(data)) as reopened:
            assert_all_readable(reopened, acknowledged)
            assert reopened.namespace().get_entry(b"later") is None
            reopened.namespace().put_raw(b"later", VALUE)  # writes work after the reopen
