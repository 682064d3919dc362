"""Point-in-time copies of a data directory that open as a store of their own.

The log is append-only, so a consistent copy needs no record-level work: every sealed segment
is immutable and can be shared by a hard link (no bytes copied), and the active segment only
grows, so its first ``size`` bytes at one instant are exactly the state at that instant.

Two ways to take one:

* ``snapshot_store(store, dest)`` for a store this process has open: under the store lock no
  write can land between choosing the segments and measuring the active one, so the copy is
  exactly the acknowledged state at that moment.
* ``snapshot_directory(src, dest)`` for a directory another process (a running server) holds.
  The lock is out of reach, but a prefix of an append-only log is still a consistent state:
  at worst the last record is half-written, and recovery drops a torn tail of the last segment
  as it would after a crash.  Segments created after the listing are simply later than the
  snapshot.

Compaction (``engine/compaction.py``) is the one thing that removes files.  Under the store lock
the segment table always describes a complete state (inputs leave it only after the outputs
joined it, and are unlinked only after that), so ``snapshot_store`` needs nothing more.  Without
the lock, a listing taken while a compaction commits could pair outputs with only some of their
inputs; ``snapshot_directory`` therefore waits while a compaction manifest exists and starts
over when a listed segment disappears before it was linked.  Hint files of sealed segments are
linked too (they are only an accelerator: recovery checks each against its segment).

An encrypted store's ``KEYCHECK`` is copied last (it lists every key id the copied segments
can use, because a key id enters it before any record uses it).  The snapshot then gets its
keys at its default key file (``<dest>.keys``): the keys it needs plus a new one of its own that
it writes with, never a plain copy of the key file in use, which would let two stores count the
same nonces (``crypto.keys_for_copy``).  When both share one key file (``$EDGEKV_KEY_FILE``),
the key file records instead that the snapshot needs those keys, so retiring one in the
original store keeps it.
"""

from __future__ import annotations

import errno
import os
import shutil
import time

from . import crypto
from .compaction import MANIFEST
from .errors import StoreError
from .hints import hint_name
from .segment import SEGMENT_HEADER_SIZE, fsync_dir, parse_segment_name, segment_name

_COPY_CHUNK = 4 * 1024 * 1024


def _prepare(dest: str, source_key_file: str | None = None) -> None:
    if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise StoreError(f"snapshot destination {dest} exists and is not an empty directory; "
                         f"choose a new path")
    dest_keys = crypto.default_key_file(dest)
    if source_key_file and dest_keys != source_key_file and os.path.exists(dest_keys):
        raise StoreError(f"{dest_keys} already exists; the snapshot's key file goes there, "
                         f"choose a new path")
    os.makedirs(dest, exist_ok=True)


def _source_key_file(src: str, key_file: str | None) -> str | None:
    """The key file of an encrypted source directory, or None for a plaintext one."""
    check = crypto.read_keycheck(src)
    if not check or not check.get("encrypted"):
        return None
    return crypto.resolve_key_file(src, key_file)


def _link_or_copy(src: str, dst: str) -> bool:
    """Hard link when the filesystem allows it; returns False when bytes had to be copied."""
    try:
        os.link(src, dst)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                             errno.EOPNOTSUPP):
            raise
    _copy_prefix(src, dst, os.path.getsize(src))
    return False


def _copy_prefix(src: str, dst: str, size: int) -> None:
    """Copy the first ``size`` bytes: later appends to ``src`` are not part of the snapshot."""
    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = os.open(dst + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            done = 0
            while done < size:
                chunk = os.pread(src_fd, min(_COPY_CHUNK, size - done), done)
                if not chunk:
                    break  # a crash-truncated source: recovery of the copy handles the rest
                os.pwrite(dst_fd, chunk, done)
                done += len(chunk)
            os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)
    os.rename(dst + ".tmp", dst)


def _link_hint(src_dir: str, dest: str, seg_no: int) -> None:
    source = os.path.join(src_dir, hint_name(seg_no))
    try:
        _link_or_copy(source, os.path.join(dest, hint_name(seg_no)))
    except FileNotFoundError:
        pass  # no hint (or compaction just removed it): recovery scans the segment instead


def _copy_key_check(src_dir: str, dest: str) -> None:
    source = os.path.join(src_dir, crypto.KEYCHECK)
    if os.path.exists(source):
        _copy_prefix(source, os.path.join(dest, crypto.KEYCHECK), os.path.getsize(source))


def _finish(dest: str, linked: int, copied: int, copied_bytes: int) -> dict:
    fsync_dir(dest)
    return {"path": os.path.abspath(dest), "linked_segments": linked,
            "copied_segments": copied, "copied_bytes": copied_bytes}


def snapshot_store(store, dest: str) -> dict:
    """Snapshot an open store into the new or empty directory ``dest`` (its keys, when the
    store is encrypted, in ``dest``'s default key file: see the module docstring)."""
    source_keys = store._ring.key_file if store._ring is not None else None
    _prepare(dest, source_keys)
    linked = copied = copied_bytes = 0
    with store._lock:
        store._check_open()
        store._flush_wbuf()  # batched puts must be in the file before it is copied
        active = store._active
        for seg_no in sorted(store._segments):
            seg = store._segments[seg_no]
            target = os.path.join(dest, segment_name(seg_no))
            if seg is active:
                # Whatever the fsync policy, the bytes below ``size`` are what readers see now.
                _copy_prefix(seg.path, target, seg.size)
                copied += 1
                copied_bytes += seg.size
            else:
                if _link_or_copy(seg.path, target):
                    linked += 1
                else:
                    copied += 1
                    copied_bytes += seg.size
                _link_hint(store.path, dest, seg_no)
        _copy_key_check(store.path, dest)
    if source_keys:
        crypto.keys_for_copy(source_keys, dest)
    return _finish(dest, linked, copied, copied_bytes)


def snapshot_directory(src: str, dest: str, *, timeout: float = 60.0,
                       key_file: str | None = None) -> dict:
    """Snapshot a data directory that another process may be writing to (and compacting);
    ``key_file``: the source's, as for ``Store.open``."""
    source_keys = _source_key_file(src, key_file)
    _prepare(dest, source_keys)
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = _snapshot_listing(src, dest)
            if source_keys:
                crypto.keys_for_copy(source_keys, dest)
            return result
        except _Retry as why:
            if time.monotonic() > deadline:
                raise StoreError(f"could not take a stable snapshot of {src} within "
                                 f"{timeout:.0f} s ({why}); try again when it is less busy")
            shutil.rmtree(dest)
            os.makedirs(dest)
            time.sleep(0.05)


class _Retry(Exception):
    pass


def _snapshot_listing(src: str, dest: str) -> dict:
    names = os.listdir(src)
    if MANIFEST in names:
        raise _Retry("a compaction is committing")
    numbers = sorted(n for n in (parse_segment_name(name) for name in names) if n is not None)
    if not numbers:
        raise StoreError(f"{src} holds no segment files; is it an edgekv data directory?")
    linked = copied = copied_bytes = 0
    last = numbers[-1]
    try:
        # Measured before anything is linked: older segments were sealed before this size was
        # reached, so every record they hold precedes the cut.
        last_size = os.path.getsize(os.path.join(src, segment_name(last)))
        for seg_no in numbers:
            source = os.path.join(src, segment_name(seg_no))
            target = os.path.join(dest, segment_name(seg_no))
            if seg_no == last:
                _copy_prefix(source, target, max(last_size, SEGMENT_HEADER_SIZE))
                copied += 1
                copied_bytes += last_size
                continue
            if _link_or_copy(source, target):
                linked += 1
            else:
                copied += 1
                copied_bytes += os.path.getsize(source)
            _link_hint(src, dest, seg_no)
        _copy_key_check(src, dest)
    except FileNotFoundError as exc:
        raise _Retry(f"segment {exc.filename} was compacted away while copying") from None
    return _finish(dest, linked, copied, copied_bytes)
