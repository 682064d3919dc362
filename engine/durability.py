"""Fsync policies and group commit.

``always``: a write is acknowledged only once it is on disk.  Writers that arrive while an
fsync is running do not each start their own: the next fsync covers all of them (group
commit), so 64 concurrent writers cost a handful of fsyncs, not 64.  ``everysec``: a
background thread syncs once a second when something was written, and sooner once
``EARLY_SYNC_BYTES`` are waiting: under heavy writes a sync then never has a whole second of
writes to flush, and neither has the fsync that seals a full segment, which the writer waits
for (a 64 MiB one stalled every request for 50-100 ms).  ``no``: the OS decides when data
reaches the disk; the same thread only asks the kernel to start writing back (no fsync, no
promise) once ``EARLY_SYNC_BYTES`` wait, for the same sealing fsync's sake.

The primitive the server builds on is "durable up to sequence N": ``written_seq`` is the last
sequence number appended, ``durable_seq`` the last one known to be on disk, and
``wait_durable(n)`` blocks until ``durable_seq >= n``.

A failed fsync is fatal for the write path (as in Redis >= 6.2 and PostgreSQL after
"fsyncgate"): the kernel may already have dropped the dirty pages, so retrying could report
success for data that is gone.  Every later write fails until the store is reopened.
A full disk is different: a ``write`` that fails leaves nothing unknown behind (the store keeps
the refused records buffered, ``UnflushedWritesError``), so writes work again once space returns.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from .errors import WriteFailedError

FSYNC_POLICIES = ("always", "everysec", "no")
#: everysec's cadence
EVERYSEC_INTERVAL_S = 1.0
#: everysec syncs as soon as this many bytes were written since the last sync...
EARLY_SYNC_BYTES = 8 * 1024 * 1024
#: ...as its syncer finds when it looks, this often (a check costs a thread wake-up)
EARLY_SYNC_POLL_S = 0.05


class UnflushedWritesError(WriteFailedError):
    """The disk refused to take buffered records (it is full): no fsync failed, so this is not
    fatal.  Everything before them was synced, up to ``synced_seq``; writes work again once a
    flush succeeds."""

    def __init__(self, message: str, synced_seq: int) -> None:
        super().__init__(message)
        self.synced_seq = synced_seq


class GroupCommit:
    def __init__(self, sync: Callable[[], None], policy: str = "always",
                 unsynced_bytes: Callable[[], int] | None = None,
                 write_back: Callable[[], None] | None = None) -> None:
        """``unsynced_bytes``: about how many bytes were written since the last sync or
        write-back (past ``EARLY_SYNC_BYTES``, everysec syncs early and ``no`` calls
        ``write_back``); None: everysec syncs only once a second."""
        if policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}, got {policy!r}")
        self.policy = policy
        self._sync = sync
        self._unsynced_bytes = unsynced_bytes
        self._write_back = write_back
        self._cond = threading.Condition(threading.Lock())
        self._syncing = False
        self.written_seq = 0
        self.durable_seq = 0
        self.failure: WriteFailedError | None = None
        self.fsync_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the syncer (everysec; the write-back for ``no``); separate from __init__ so a
        store that fails to open never leaves a thread behind."""
        wanted = self.policy == "everysec" or (
            self.policy == "no" and None not in (self._write_back, self._unsynced_bytes))
        if wanted and self._thread is None:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run_syncer, name="edgekv-fsync",
                                            daemon=True)
            self._thread.start()

    def set_policy(self, policy: str) -> None:
        """Switch policy at run time (CONFIG SET appendfsync); syncs first so nothing lags."""
        if policy not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}, got {policy!r}")
        if policy == self.policy:
            return
        self.sync_now()
        self.stop()
        self.policy = policy
        self.start()

    def note_written(self, seq: int) -> None:
        """Called by the writer (under the store lock) after the bytes reached the file."""
        self.written_seq = seq

    def reset(self, seq: int) -> None:
        self.written_seq = self.durable_seq = seq

    def wait_durable(self, seq: int) -> None:
        """Block until every record up to ``seq`` is on disk, sharing fsyncs with other waiters."""
        cond = self._cond
        with cond:
            seq = min(seq, self.written_seq)  # nothing beyond what was written can be waited for
            while self.durable_seq < seq:
                if self.failure is not None:
                    raise self.failure
                if self._syncing:
                    cond.wait()
                    continue
                self._syncing = True
                target = self.written_seq
                cond.release()
                error = None
                try:
                    self._sync()
                except WriteFailedError as exc:
                    error = exc
                finally:
                    cond.acquire()
                    self._syncing = False
                    self.fsync_count += 1
                    if error is None:
                        self.durable_seq = max(self.durable_seq, target)
                    elif isinstance(error, UnflushedWritesError):
                        self.durable_seq = max(self.durable_seq, min(target, error.synced_seq))
                    else:
                        self.failure = error
                    cond.notify_all()
                if isinstance(error, UnflushedWritesError) and self.durable_seq < seq:
                    raise error
            if self.failure is not None and self.durable_seq < seq:
                raise self.failure

    def fail(self, error: WriteFailedError) -> None:
        """Record an fsync that failed outside ``wait_durable`` (sealing a segment): just as
        fatal."""
        with self._cond:
            if self.failure is None:
                self.failure = error
            self._cond.notify_all()

    def sync_now(self) -> None:
        self.wait_durable(self.written_seq)

    def _run_syncer(self) -> None:
        if self.policy == "no":
            return self._write_back_early()
        unsynced = self._unsynced_bytes
        interval = EVERYSEC_INTERVAL_S
        poll = interval if unsynced is None else min(EARLY_SYNC_POLL_S, interval)
        last = time.monotonic()
        while not self._stop.wait(poll):
            if self.written_seq <= self.durable_seq or self.failure is not None:
                continue
            now = time.monotonic()
            # the tick is due within half a poll of the interval, so polling does not stretch it
            if now - last < interval - poll / 2 and (unsynced is None
                                                     or unsynced() < EARLY_SYNC_BYTES):
                continue
            last = now
            try:
                self.sync_now()
            except WriteFailedError:
                pass  # fatal ones are in self.failure; writers see it

    def _write_back_early(self) -> None:
        unsynced, write_back = self._unsynced_bytes, self._write_back
        while not self._stop.wait(EARLY_SYNC_POLL_S):
            if unsynced() >= EARLY_SYNC_BYTES:
                write_back()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
