"""The store: open and recover a data directory, the write path, the read path, namespaces.

Theory of operation
-------------------
A data directory holds a lock file and numbered segment files.  Every change, user data and
namespace catalog alike, is a record appended to the *active* (highest-numbered) segment; when
it passes ``segment_bytes`` it is fsynced, sealed and a new one started.  Nothing is ever
rewritten in place: compaction (``engine/compaction.py``) writes the live records of sealed
segments into new segments and deletes the old ones.  Every sealed segment gets a hint file
(``engine/hints.py``): compaction writes those of its outputs, and a background thread writes
the hint of each segment the store seals, from entries recorded as its records were appended;
opening loads a sealed segment from its hint instead
of scanning it, so only the active segment is scanned.

In memory the store keeps the index (every live key, sorted, to a packed location), the
expirations (only for keys that have one), the metadata JSON of keys that have some (so ``list``
never touches the disk) and the catalog.  Opening rebuilds all of it from hints and scans;
when a key appears several times the record with the highest sequence number wins, so the
outcome does not depend on the order segments are read in.

Writes take ``_lock``, append, update the index and release it; under ``fsync="always"`` the
caller then waits for group commit (``engine/durability.py``), outside the lock, so other
writers append meanwhile and share the next fsync.  Reads take the lock only to look the key
up, then read the record (a slice of the segment's mapping, ``engine/segment.py``) and verify
its checksum: bad bytes raise ``CorruptionError``.

Everything here is safe to call from several threads.
"""

from __future__ import annotations

import json
import logging
from array import array
from collections import deque
from contextlib import contextmanager
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import compaction, crypto, hints
from . import record as rec
from . import semantics
from .codec import (COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD, NONCE_SIZE, OVERHEAD,
                    InvalidTag, PayloadCodec)
from .catalog import (CATALOG_NS, DEFAULT_TITLE, Catalog, NamespaceInfo, encode_deletion,
                      encode_entry, new_namespace_id)
from .durability import GroupCommit, UnflushedWritesError
from .errors import (CorruptionError, NamespaceDeletedError, StoreClosedError,
                     StoreError, TooManyRequestsError, WriteFailedError)
from .expiry import ExpiryTracker
from .index import (KeyIndex, MAX_SEGMENT_NO, index_key, location_segment, ns_prefix,
                    pack_location, unpack_location)
from .lockfile import DirectoryLock
from .readcache import DEFAULT_READ_CACHE_BYTES, ReadCache
from .segment import (SEGMENT_HEADER_SIZE, Damage, SegmentFile, fsync_dir, give_back_free_memory,
                      parse_segment_name, write_fully, scan)

log = logging.getLogger("edgekv.engine")

_HEADER_UNPACK = rec.HEADER.unpack_from
_TAIL_PACK = rec.HEADER_TAIL.pack
_PREFIX_PACK = rec.PAYLOAD_PREFIX.pack
_PREFIX_SIZE = rec.PAYLOAD_PREFIX_SIZE
_CHECKSUM_PACK = rec.CHECKSUM.pack
_KEY_START = rec.HEADER_SIZE + rec.PAYLOAD_PREFIX_SIZE
_H = rec.HEADER_SIZE
#: buckets of ``Store._removal_marks`` (512 KiB)
_REMOVAL_BUCKETS = 1 << 16
_PREFIX_UNPACK = rec.PAYLOAD_PREFIX.unpack_from
_CHECKSUM = rec.xxhash.xxh3_64_intdigest
_TRANSFORMED = rec.FLAG_ENCRYPTED | rec.FLAG_COMPRESSED

_MALLOC_TRIM = None  # set below, once the helper exists
MIB = 1024 * 1024
DEFAULT_SEGMENT_BYTES = 64 * MIB
MAX_SEGMENT_BYTES = 128 * MIB  # record offsets must stay below 2**28 (see engine/index.py)
_MAP_STEP = SegmentFile.MAP_STEP
#: put_many leaves a batch that would end past this offset to ``write``, which rotates segments
#: between records: packed locations must stay below 2**28 (see engine/index.py).
_MAX_BATCH_END = MAX_SEGMENT_BYTES
_FLAGS_AT, _KEY_ID_AT = rec.FLAGS_AT, rec.KEY_ID_AT  # module globals: put_one reads them per put
#: Memory for the hint entries of sealed segments waiting for the hint writer (see _rotate).
DEFAULT_PENDING_HINT_BYTES = 32 * MIB
#: Past this segment number a rotation logs (once) that the process should be restarted, which
#: renumbers the segments (``compaction.renumber_directory``) before they run out.
_WARN_SEGMENT_NO = MAX_SEGMENT_NO // 2
_LARGE_VALUE = 64 * 1024  # values this big are written with writev instead of being copied
_IOV_BATCH = 512  # buffers per writev call; Linux's IOV_MAX is 1024


def _system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Entry:
    """A live key as stored: raw value bytes, expiration (epoch ms, 0 = none), metadata JSON."""

    key: bytes
    value: bytes
    expire_ms: int
    metadata: bytes
    seq: int


@dataclass(slots=True)
class Write:
    """One record to append.  ``value`` may be bytes, bytearray or memoryview."""

    ns: int
    key: bytes
    value: object = b""
    expire_ms: int = 0
    metadata: bytes = b""
    tombstone: bool = False
    catalog: bool = False


class _Recovered:
    """What recovery knows per key: one int (location, or ``~location`` for a tombstone),
    plus expiration and metadata only for keys that have them.  This keeps the peak memory of
    opening a big store near the memory of the open store itself."""

    __slots__ = ("locations", "expire_ms", "metadata")

    def __init__(self) -> None:
        self.locations: dict[bytes, int] = {}
        self.expire_ms: dict[bytes, int] = {}
        self.metadata: dict[bytes, bytes] = {}

    def record(self, ikey: bytes, loc: int, tombstone: bool, expire_ms: int,
               metadata: bytes) -> None:
        self.locations[ikey] = ~loc if tombstone else loc
        if expire_ms and not tombstone:
            self.expire_ms[ikey] = expire_ms
        elif self.expire_ms:
            self.expire_ms.pop(ikey, None)
        if metadata and not tombstone:
            self.metadata[ikey] = metadata
        elif self.metadata:
            self.metadata.pop(ikey, None)


class _FullPath(Exception):
    """Inside ``Store.get_value``: this read needs the full, verifying path."""


class _HintPaused(Exception):
    """Raised inside the hint writer when a compaction wants the segments."""


class _HintPacer:
    """Paces the hint writer: it works in steps of ``STEP_S`` and sleeps ``PAUSE_S`` between
    them, about a tenth of one core, so that requests (reads as much as writes: a lock-free
    ``get`` leaves no trace to tell a busy store from an idle one) keep the interpreter.  A
    pause request (compaction) abandons the hint being built.  Once the store is closing it
    works without pauses, but only until ``Store.CLOSE_HINT_BUDGET_S`` has passed: hints are
    derived data (the next open scans what has none and queues it again), and a shutdown must
    not wait many seconds for them.  While a caller is blocked in ``wait_for_hints`` it works
    without pauses too: that caller asked for the hints now.
    """

    STEP_S = 0.0005
    PAUSE_S = 0.0045

    __slots__ = ("_store", "_step_end")

    def __init__(self, store: "Store") -> None:
        self._store = store
        self._step_end = time.perf_counter() + self.STEP_S

    def tick(self) -> None:
        if time.perf_counter() < self._step_end:
            return
        store = self._store
        if store._hint_pauses:
            raise _HintPaused()
        if store._hint_stop:
            if time.monotonic() > store._hint_deadline:
                raise _HintPaused()
        elif not store._hint_waiters:  # someone blocked in wait_for_hints: no reason to pace
            time.sleep(self.PAUSE_S)
        self._step_end = time.perf_counter() + self.STEP_S


@dataclass
class RecoveryReport:
    segments: int = 0
    records: int = 0
    live_keys: int = 0
    seconds: float = 0.0
    truncated: list[Damage] = field(default_factory=list)
    corrupt: list[Damage] = field(default_factory=list)
    hints_loaded: int = 0
    #: segments scanned at open
    segments_scanned: int = 0
    #: hint files that could not be used (their segment was scanned instead), and why
    hint_problems: list[str] = field(default_factory=list)
    #: what opening did to finish or undo an interrupted compaction
    compaction_notes: list[str] = field(default_factory=list)
    #: segments opening renamed to a lower number (``compaction.renumber_directory``)
    segments_renumbered: int = 0


class Store:
    """An open data directory.  Use ``Store.open(path)``; close it (or use ``with``)."""

    #: seconds ``close()`` keeps writing the hints of sealed segments before it gives up on
    #: the rest (the next open scans those segments and queues their hints again)
    CLOSE_HINT_BUDGET_S = 2.0

    def __init__(self, path: str, *, fsync: str, segment_bytes: int, limits: semantics.Limits,
                 clock: Callable[[], int] | None, write_rate_limit: bool) -> None:
        if not 4096 <= segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be between 4096 and {MAX_SEGMENT_BYTES}, "
                             f"got {segment_bytes}")
        self.path = os.path.abspath(path)
        self.limits = limits
        self.segment_bytes = segment_bytes
        self.clock_ms = clock or _system_clock_ms
        self.write_rate_limit = write_rate_limit
        self._lock = threading.RLock()
        self._dir_lock = DirectoryLock(self.path)
        self._segments: dict[int, SegmentFile] = {}
        self._active: SegmentFile | None = None
        self._index = KeyIndex()
        self._expiry = ExpiryTracker()
        self._metadata: dict[bytes, bytes] = {}
        self._catalog = Catalog()
        self._catalog_locations: dict[str, int] = {}
        self._ns_key_counts: dict[int, int] = {}
        #: what ``record_seq`` answers for a missing key: per bucket of (namespace id, key), a
        #: count of removals (deletes, expiries) at the last one that hashed there
        self._removal_marks = array("Q", bytes(8 * _REMOVAL_BUCKETS))
        self._removals = 0
        self._dead_bytes: dict[int, int] = {}
        self._last_write_ms: dict[bytes, int] = {}
        self._seq = 0
        self._closed = True
        #: The group commit: ``written_seq`` (last record appended), ``durable_seq`` (synced up
        #: to), ``policy``.  Public so that the server's per-request path reads the sequence
        #: numbers as attributes (``last_seq`` and ``durable_seq`` are the same, as properties).
        self.commit = GroupCommit(self._sync_active, fsync, self._unsynced_bytes,
                                  self._start_write_back)
        self._wbuf = bytearray()  # batched single puts not yet written (see batch())
        self._wbuf_start = 0
        self._batch_depth = 0
        self._flush_error: WriteFailedError | None = None
        self.recovery = RecoveryReport()
        self._damaged: list[tuple[bytes, int, int]] = []
        self._orphans: list[int] = []
        self._compaction_lock = threading.Lock()
        self._closing = False
        self._retired: list[tuple[float, SegmentFile]] = []  # unlinked, closed after a grace
        self._compactor: compaction.AutoCompactor | None = None
        self._ring: crypto.KeyRing | None = None  # None: encryption off
        self._codec = PayloadCodec(None, 0)
        self._encode = None  # codec.encode when records are transformed, else the inline path
        self._read_cache = ReadCache(0)
        #: key ids (0 = plaintext) of the records and hint file of each segment
        self._segment_key_ids: dict[int, set[int]] = {}
        #: sealed segments waiting for their hint file, and the thread that writes them
        self._hint_queue: deque[int] = deque()
        self._hint_cond = threading.Condition(threading.Lock())
        self._hint_thread: threading.Thread | None = None
        self._hint_stop = False
        self._hint_deadline = 0.0  # once stopping: when close() stops waiting for hints
        self._hint_busy = False  # a hint is being written
        self._hint_pauses = 0  # compactions waiting for, or holding, the compaction lock
        self._hint_waiters = 0  # callers blocked in wait_for_hints
        #: hint files written for sealed segments since open (for tests and stats)
        self.seal_hints_written = 0
        #: of those, how many needed the segment read again (see _live_hint)
        self.seal_hint_scans = 0
        #: the active segment's hint entries, added as records are appended (None when this
        #: process did not write all of it: a segment reopened as the active one), and those of
        #: sealed segments until their hint file is written (``engine/hints.py``: HintColumns)
        self._live_hint: hints.HintColumns | None = None
        self._sealed_hints: dict[int, hints.HintColumns] = {}
        self.pending_hint_bytes = DEFAULT_PENDING_HINT_BYTES
        self._warned_numbers = False  # segment numbers past _WARN_SEGMENT_NO (logged once)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: str, *, fsync: str = "always", segment_bytes: int = DEFAULT_SEGMENT_BYTES,
             limits: semantics.Limits | None = None, clock: Callable[[], int] | None = None,
             write_rate_limit: bool = False, compaction_threshold: float | None = None,
             compaction_interval: float = 1.0, encryption: bool = True,
             key_file: str | None = None,
             compression_threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
             compression_level: int = COMPRESSION_LEVEL,
             read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES) -> "Store":
        """Open (creating if needed) the data directory at ``path`` and recover its contents.

        ``fsync``: ``always`` (default; a write returns once it is on disk), ``everysec`` or
        ``no``.  ``clock``: a function returning epoch milliseconds, for tests.
        ``compaction_threshold``: compact in the background when a sealed segment has this
        fraction of dead bytes, checked every ``compaction_interval`` seconds; 0/None: never.
        ``encryption``: seal every record with AES-256-GCM (default); the key file is
        ``key_file``, else ``$EDGEKV_KEY_FILE``, else ``<path>.keys``, created for a new store
        (``engine/crypto.py``, ``docs/encryption.md``).  An encrypted store refuses to open
        without its key or with ``encryption=False``.  ``compression_threshold``: values of
        at least this many bytes are stored zstd-compressed when that saves space; 0: never.
        ``compression_level``: zstd's level, -7 to 22 (default -1, a fast level; higher levels
        trade speed for space, see ``docs/encryption.md``).
        ``read_cache_bytes``: memory for recently read or written values (``engine/readcache.py``);
        0: off.
        """
        os.makedirs(path, exist_ok=True)
        store = cls(path, fsync=fsync, segment_bytes=segment_bytes,
                    limits=limits or semantics.DEFAULT_LIMITS, clock=clock,
                    write_rate_limit=write_rate_limit)
        store._dir_lock.acquire()
        try:
            store._ring = crypto.load_key_ring(store.path, encryption=encryption,
                                               key_file=key_file)
            store._codec = PayloadCodec(store._ring, compression_threshold, compression_level)
            store._read_cache = ReadCache(read_cache_bytes)
            if store._ring is not None or compression_threshold:
                store._encode = store._codec.encode
            store._recover()
            if store._ring is not None:
                # A fresh epoch, durable in the key file and KEYCHECK, before any write.
                store._ring.activate()
                store._codec.refresh_keys()
            store._segment_key_ids.setdefault(store._active.seg_no, set()).add(
                store._codec.key_id)
            store._closed = False
            store.commit.start()
            store._start_hint_thread()
            store._persist_adopted_orphans()
            if DEFAULT_TITLE not in store._catalog.by_title:
                store.create_namespace(DEFAULT_TITLE)
            if compaction_threshold:
                store._compactor = compaction.AutoCompactor(
                    store, compaction_threshold, compaction_interval).start()
        except BaseException:
            store._release_files()
            raise
        return store

    def close(self) -> None:
        """Fsync what was written, close the files and release the directory lock."""
        self._closing = True  # a running compaction stops at its next step
        if self._compactor is not None:
            self._compactor.stop()
        self._stop_hint_thread()  # finishes queued hints, within a time budget
        with self._compaction_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.commit.failure is None and self._active is not None:
                    try:
                        self._flush_wbuf()
                    except WriteFailedError as exc:
                        # The disk is still full: these records' writers were already told
                        # their writes failed, so nothing acknowledged is dropped here.
                        log.error("closing %s: dropping %d bytes of writes the disk refused "
                                  "(never acknowledged): %s", self.path, len(self._wbuf), exc)
                    self._active.sync()
            finally:
                self._release_files()

    def _release_files(self) -> None:
        self._stop_hint_thread()
        for columns in (self._live_hint, *self._sealed_hints.values()):
            if columns is not None:
                columns.discard()
        self._live_hint = None
        self._sealed_hints.clear()
        self.commit.stop()
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._read_cache.clear()
        compaction.close_retired(self, all_=True)
        self._active = None
        self._dir_lock.release()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        started = time.perf_counter()
        report = self.recovery
        report.compaction_notes = compaction.recover_directory(self.path)
        names = os.listdir(self.path)
        for name in names:
            # a segment whose creation never finished; hint entries of a segment that was
            # active (the scan at open rebuilds them)
            if name.endswith((".seg.tmp", hints.SPILL_SUFFIX)):
                os.unlink(os.path.join(self.path, name))
        report.segments_renumbered = compaction.renumber_directory(self.path)
        if report.segments_renumbered:
            names = os.listdir(self.path)
        numbers = sorted(n for n in (parse_segment_name(name) for name in names) if n is not None)
        if numbers:
            self._repair_headerless_tail(numbers[-1])
        latest = _Recovered()
        hint_names = {name for name in names if name.endswith(hints.HINT_SUFFIX)}
        catalog_latest: dict[str, tuple] = {}
        for position, seg_no in enumerate(numbers):
            is_last = position == len(numbers) - 1
            seg = SegmentFile.open_existing(os.path.join(self.path, f"{seg_no:08d}.seg"), seg_no,
                                            writable=is_last)
            self._segments[seg_no] = seg
            report.segments += 1
            has_hint = hints.hint_name(seg_no) in hint_names
            if not is_last and has_hint:
                if self._load_hint(seg, latest, catalog_latest):
                    continue
            report.segments_scanned += 1
            key_ids = self._segment_key_ids[seg_no] = set()
            damaged = False
            for item in scan(seg, is_last, self._codec):
                if isinstance(item, Damage):
                    self._note_damage(seg, item, report)
                    damaged = True
                    continue
                report.records += 1
                key_ids.add(item.header.key_id)
                self._replay(seg_no, item, latest, catalog_latest)
            if not is_last and not has_hint and not damaged:
                # Sealed by an older version, or the process died before its hint was
                # written: write it now, so the next open need not scan it.
                self._hint_queue.append(seg_no)
        versions = sorted((seq, ns_id, loc, value, tombstone)
                          for ns_id, found in catalog_latest.items()
                          for seq, loc, value, tombstone in found)
        for seq, ns_id, loc, value, tombstone in versions:
            self._catalog.apply(ns_id, value, tombstone)
            old = self._catalog_locations.pop(ns_id, None)
            if old is not None:
                self._add_dead_location(old)
            if not tombstone:
                self._catalog_locations[ns_id] = loc
        for ikey, seq, loc in self._damaged:
            # Only a key that has an older record is claimed: that is the stale value the
            # damage would otherwise resurrect.  A key seen nowhere else may be a flipped name.
            prev = latest.locations.get(ikey)
            if prev is not None and self._seq_at(prev if prev >= 0 else ~prev) <= seq:
                latest.record(ikey, loc, False, 0, b"")
        self._build_index(latest)
        if numbers:
            self._active = self._segments[numbers[-1]]
            self._active.map_written(self._active.size)  # what recovery kept of it
        else:
            self._active = self._new_segment(1)
        self.commit.reset(self._seq)
        give_back_free_memory()
        report.live_keys = len(self._index)
        report.seconds = time.perf_counter() - started
        if report.truncated or report.corrupt:
            log.warning("recovered %s with %d torn tail(s) and %d corrupt stretch(es)",
                        self.path, len(report.truncated), len(report.corrupt))

    def _load_hint(self, seg: SegmentFile, latest: "_Recovered", catalog_latest: dict) -> bool:
        """Recover a compacted segment from its hint file; False (and reported) when the hint
        cannot be trusted, and the caller scans the segment instead."""
        path = os.path.join(self.path, hints.hint_name(seg.seg_no))
        try:
            hint = hints.read_hint(path, seg.seg_no, seg.size, self._codec, seg.header_no)
            hints.apply_hint(self, seg, hint, latest, catalog_latest)
        except hints.HintError as exc:
            log.warning("%s; scanning segment %d instead", exc, seg.seg_no)
            self.recovery.hint_problems.append(str(exc))
            return False
        self.recovery.hints_loaded += 1
        self.recovery.records += len(hint)
        self._segment_key_ids[seg.seg_no] = set(hint.key_ids) | {hint.sealed_with}
        return True

    def _repair_headerless_tail(self, seg_no: int) -> None:
        """A last segment too short to hold its header was being created when the process
        died (older layouts created segments in place): it holds no record, so rewrite it."""
        path = os.path.join(self.path, f"{seg_no:08d}.seg")
        if os.path.getsize(path) >= SEGMENT_HEADER_SIZE:
            return
        log.warning("segment %d has no complete header (crash while creating it): rewriting", seg_no)
        os.unlink(path)
        SegmentFile.create(self.path, seg_no).close()

    def _note_damage(self, seg: SegmentFile, damage: Damage, report: RecoveryReport) -> None:
        if damage.torn_tail:
            log.warning("segment %d: dropping a torn write of %d bytes at offset %d (%s)",
                        seg.seg_no, damage.length, damage.offset, damage.reason)
            seg.truncate(damage.offset)
            report.truncated.append(damage)
        else:
            log.error("segment %d: corrupt record at offset %d (%d bytes skipped): %s",
                      seg.seg_no, damage.offset, damage.length, damage.reason)
            report.corrupt.append(damage)
            self._claim_damaged_key(seg, damage)

    def _claim_damaged_key(self, seg: SegmentFile, damage: Damage) -> None:
        """Point the key a damaged record most likely held at that record.

        The bytes failed their checksum, so nothing in them is trusted as data; but if the
        header and key still parse, the newest version of that key is probably this record.
        Letting an older record win instead would serve stale (or deleted) data as if it were
        current.  With the key pointing here, reads of it raise CorruptionError until it is
        written again.
        """
        head = seg.read(damage.offset, min(damage.length, rec.HEADER_SIZE + 2048))
        named = self._codec.damaged_index_key(head)
        if named is None:
            return
        header, ikey = named
        if rec.HEADER_SIZE + header.payload_len > damage.length:
            return
        self._damaged.append((ikey, header.seq,
                              pack_location(seg.seg_no, damage.offset,
                                            rec.HEADER_SIZE + header.payload_len)))

    def _replay(self, seg_no: int, item, state: "_Recovered", catalog_latest: dict) -> None:
        header = item.header
        seq = header.seq
        if seq > self._seq:
            self._seq = seq
        size = rec.HEADER_SIZE + header.payload_len
        loc = pack_location(seg_no, item.offset, size)
        try:
            ikey, metadata = rec.decode_index_key_meta(item.payload)
        except ValueError:
            # The checksum matched, so the writer produced this: a format bug, not bit rot.
            raise StoreError(f"segment {seg_no} offset {item.offset}: malformed payload")
        tombstone = bool(header.flags & rec.FLAG_TOMBSTONE)
        if header.flags & rec.FLAG_CATALOG:
            ns_id = ikey[2:].decode("ascii")
            # Every version is kept (there are few): replaying them in order is what marks the
            # number a flush retired as deleted, so its keys are not adopted as orphans.
            value = rec.decode_payload(item.payload)[3]
            catalog_latest.setdefault(ns_id, []).append((seq, loc, value, tombstone))
            return
        prev = state.locations.get(ikey)
        if prev is not None:
            prev_loc = prev if prev >= 0 else ~prev
            if self._seq_at(prev_loc) > seq:
                self._add_dead(seg_no, size)
                return
            if prev >= 0:
                self._add_dead_location(prev_loc)
        if tombstone:
            self._add_dead(seg_no, size)
        state.record(ikey, loc, tombstone, header.expire_ms, metadata)

    def _seq_at(self, loc: int) -> int:
        """Sequence number of the record at ``loc``: read from its header only when a key
        appears twice, so recovery keeps one int per key instead of a tuple."""
        seg_no, offset, _ = unpack_location(loc)
        head = self._segments[seg_no].read(offset, rec.HEADER_SIZE)
        return rec.parse_header(head).seq

    def _adopt_orphans(self, seen: set[int]) -> None:
        """Keys whose namespace has no catalog entry (its catalog record was damaged) are kept
        under a recovered namespace rather than dropped: nothing acknowledged is lost.
        ``seen``: the namespace numbers that have live keys."""
        catalog = self._catalog
        if seen:
            catalog.next_number = max(catalog.next_number, max(seen) + 1)
        self._orphans = sorted(n for n in seen
                               if n not in catalog.by_number and n not in catalog.deleted_numbers)
        for number in self._orphans:
            title = f"recovered-{number}"
            while title in catalog.by_title:
                title += "_"
            log.error("namespace number %d has keys but no catalog entry (damaged record): "
                      "keeping them in a namespace titled %r", number, title)
            catalog.apply(new_namespace_id(), json.dumps({"title": title, "number": number})
                          .encode(), False)

    def _persist_adopted_orphans(self) -> None:
        for number in self._orphans:
            info = self._catalog.by_number[number]
            self.write([Write(CATALOG_NS, info.id.encode(), encode_entry(info), catalog=True)])
        self._orphans = []

    def _build_index(self, latest: "_Recovered") -> None:
        """Turn the recovered map into the index in place (no copy of a million-entry dict).

        Work per key is done in C where it can be (``min``, the sorted build); namespaces are
        counted and dropped by bisecting the sorted keys, and only keys with an expiration are
        visited one by one, which is what lets a store loaded from hint files open quickly.
        """
        now = self.clock_ms()
        locations = latest.locations
        expire = latest.expire_ms
        metadata = latest.metadata
        if locations and min(locations.values()) < 0:  # tombstones: the key is absent
            for ikey in [k for k, loc in locations.items() if loc < 0]:
                del locations[ikey]
                expire.pop(ikey, None)
                metadata.pop(ikey, None)
        index = KeyIndex(locations, copy=False)
        counts: dict[bytes, int] = {}
        keys = index._sorted
        i, total = 0, len(keys)
        while i < total:
            prefix = keys[i][:2]
            nxt = int.from_bytes(prefix, "big") + 1
            j = total if nxt > 0xFFFF else keys.bisect_left(nxt.to_bytes(2, "big"))
            counts[prefix] = j - i
            i = j
        self._adopt_orphans({int.from_bytes(p, "big") for p in counts})
        deleted = self._catalog.deleted_numbers
        live_prefixes = {n.to_bytes(2, "big") for n in self._catalog.by_number if n not in deleted}
        for prefix in [p for p in counts if p not in live_prefixes]:
            for ikey in index.keys_with_prefix(prefix):
                self._add_dead_location(locations[ikey])
            for ikey in index.remove_prefix(prefix):
                expire.pop(ikey, None)
                metadata.pop(ikey, None)
            del counts[prefix]
        for ikey in [k for k, exp in expire.items() if exp <= now]:
            loc = index.pop(ikey)
            del expire[ikey]
            metadata.pop(ikey, None)
            if loc is not None:
                self._add_dead_location(loc)
                counts[ikey[:2]] -= 1
        self._ns_key_counts = {int.from_bytes(p, "big"): n for p, n in counts.items() if n}
        self._expiry = ExpiryTracker.from_dict(expire)
        self._metadata = metadata
        self._index = index

    # ------------------------------------------------------------------ segments

    def _new_segment(self, seg_no: int) -> SegmentFile:
        if seg_no > MAX_SEGMENT_NO:
            raise StoreError(f"segment number {seg_no} exceeds the format's maximum "
                             f"{MAX_SEGMENT_NO}; restart the process: opening the store "
                             f"renumbers its segments from 1")
        if seg_no > _WARN_SEGMENT_NO and not self._warned_numbers:
            self._warned_numbers = True
            log.warning("%s: segment numbers have reached %d of %d; they are renumbered from 1 "
                        "when the store is next opened: restart the process before they run "
                        "out", self.path, seg_no, MAX_SEGMENT_NO)
        try:
            seg = SegmentFile.create(self.path, seg_no)
        except OSError as exc:
            raise WriteFailedError(f"could not create segment {seg_no} in {self.path}: "
                                   f"{os.strerror(exc.errno or 0)}") from exc
        self._segments[seg_no] = seg
        self._segment_key_ids[seg_no] = {self._codec.key_id}
        spill = hints.HintSpill(os.path.join(self.path, hints.spill_name(seg_no)), seg_no,
                                self._codec)
        self._live_hint = hints.HintColumns(seg_no, seg.size, spill)
        return seg

    def _rotate(self, next_no: int | None = None) -> None:
        """Seal the active segment (fsync first: group commit only syncs the active file).
        Compaction passes ``next_no`` to leave the numbers in between for its outputs."""
        old = self._active
        self._flush_wbuf()
        try:
            old.sync()  # first: a torn tail must never end up in a sealed segment
        except WriteFailedError as exc:
            self.commit.fail(exc)  # as fatal as a failed fsync anywhere else
            raise
        columns = self._live_hint
        new = self._new_segment(next_no or old.seg_no + 1)
        old.seal()
        self._active = new
        log.info("sealed segment %d (%d bytes); writing to %d", old.seg_no, old.size, new.seg_no)
        if columns is not None and (next_no is not None or columns.seg_no != old.seg_no):
            columns.discard()  # compaction seals the active segment only to rewrite it
            columns = None
        if next_no is None:
            if columns is not None:
                pending = self._sealed_hints
                pending[old.seg_no] = columns
                # The hint writer is paused while compaction runs; segments sealed meanwhile
                # must not pile up their entries (some 12 MiB for a full segment, in memory or
                # in its spill file).  Past the budget the oldest give theirs up and are
                # scanned when their turn comes.
                while len(pending) > 1 and (sum(c.nbytes for c in pending.values())
                                            > self.pending_hint_bytes):
                    pending.pop(min(pending)).discard()
            with self._hint_cond:
                self._hint_queue.append(old.seg_no)
                self._hint_cond.notify()
            self._start_hint_thread()

    # ------------------------------------------------------------------ hints of sealed segments

    def _start_hint_thread(self) -> None:
        """Start the hint writer if segments wait for their hint and it is not running."""
        with self._hint_cond:
            if self._hint_thread is not None or not self._hint_queue or self._hint_stop:
                return
            self._hint_thread = threading.Thread(target=self._hint_worker, daemon=True,
                                                 name=f"edgekv-hints {self.path}")
            self._hint_thread.start()

    def _stop_hint_thread(self) -> None:
        """Let the hint writer finish the segments already queued, at full speed, for at most
        ``CLOSE_HINT_BUDGET_S``; then stop it and wait.  Segments still without a hint are
        scanned at the next open, which queues them again."""
        with self._hint_cond:
            if not self._hint_stop:
                self._hint_deadline = time.monotonic() + self.CLOSE_HINT_BUDGET_S
            self._hint_stop = True
            thread = self._hint_thread
            self._hint_cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @contextmanager
    def hints_paused(self):
        """Hold the hint writer off (a hint being written is abandoned and queued again), for
        compaction, which rewrites those segments anyway and must not meet a half-written
        hint file."""
        with self._hint_cond:
            self._hint_pauses += 1
            while self._hint_busy:
                self._hint_cond.wait()
        try:
            yield
        finally:
            with self._hint_cond:
                self._hint_pauses -= 1
                self._hint_cond.notify_all()

    def wait_for_hints(self, timeout: float | None = None) -> bool:
        """Wait until every sealed segment queued for a hint has one (or was given up on);
        False on timeout.  For tests and benchmarks that look at the directory."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._hint_cond:
            self._hint_waiters += 1  # the writer stops pacing itself while anyone waits
            try:
                while self._hint_queue or self._hint_busy:
                    if self._hint_thread is None and not self._hint_busy:
                        return not self._hint_queue
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._hint_cond.wait(left if left is not None else 1.0)
            finally:
                self._hint_waiters -= 1
        return True

    def _hint_worker(self) -> None:
        while True:
            with self._hint_cond:
                while not self._hint_queue or self._hint_pauses or (
                        self._hint_stop and time.monotonic() > self._hint_deadline):
                    if self._hint_stop:
                        self._hint_thread = None
                        self._hint_cond.notify_all()
                        return
                    self._hint_cond.wait(1.0)
                seg_no = self._hint_queue.popleft()
                self._hint_busy = True
            requeue = False
            try:
                self._write_seal_hint(seg_no)
            except _HintPaused:
                requeue = True
            except Exception as exc:  # never fatal: without its hint a segment is scanned
                log.warning("%s: could not write the hint of segment %d: %s", self.path, seg_no,
                            exc)
            with self._hint_cond:
                if requeue:
                    self._hint_queue.appendleft(seg_no)
                self._hint_busy = False
                self._hint_cond.notify_all()

    def _write_seal_hint(self, seg_no: int) -> bool:
        """Scan sealed segment ``seg_no`` and write its hint file, off the write path.

        Crash-safe as compaction's hints are: written and fsynced under ``.hint.tmp``, then
        renamed; a leftover ``.tmp`` is removed at open.  The scan is paced so that writers
        and readers get the interpreter between steps.  A segment that compaction retired
        meanwhile gets no hint (and one renamed into place just after is removed again).
        """
        with self._lock:
            seg = self._segments.get(seg_no)
            columns = self._sealed_hints.pop(seg_no, None)
            if seg is None or seg is self._active:
                if columns is not None:
                    columns.discard()
                return False
        path = os.path.join(self.path, hints.hint_name(seg_no))
        tmp = path + ".tmp"
        pacer = _HintPacer(self)
        try:
            if columns is not None:
                built = columns.encode(self._codec, seg.size, seg.header_no)
                columns.discard()
            else:
                built = None
            if built is None:  # written before this process opened it: read it once more
                self.seal_hint_scans += 1
                built = hints.sealed_segment_hint(seg, self._codec, pacer.tick)
            if built is None:
                log.warning("%s: segment %d has damage; it keeps being scanned at open",
                            self.path, seg_no)
                return False
            writer, size, data = built
            writer.write(tmp, size, data)
            del data, built
            compaction._reach("seal_hint_synced")
            with self._lock:
                if seg_no not in self._segments:
                    os.unlink(tmp)
                    return False
            os.rename(tmp, path)
            compaction._reach("seal_hint_renamed")
            fsync_dir(self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        with self._lock:
            if seg_no not in self._segments:  # compacted away between the check and the rename
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                return False
            if writer.key_id:
                self._segment_key_ids.setdefault(seg_no, set()).add(writer.key_id)
            self.seal_hints_written += 1
        give_back_free_memory()  # the columns and the encoded file, megabytes each
        return True

    def _unsynced_bytes(self) -> int:
        """About how much of the active segment the last fsync (or write-back) did not cover
        (the syncer's thread reads it without the lock: two attribute reads of ints)."""
        seg = self._active
        return 0 if seg is None else seg.size - seg.flushed_size

    def _start_write_back(self) -> None:
        seg = self._active
        if seg is not None:
            seg.start_write_back()

    def _sync_active(self) -> None:
        unflushed = None
        if self._wbuf:
            with self._lock:
                try:
                    self._flush_wbuf()
                except WriteFailedError as exc:
                    # A full disk, not a failed fsync: sync what did reach the file and say
                    # how far that goes; the refused records stay buffered until space returns.
                    first_seq = rec.parse_header(bytes(self._wbuf[:rec.HEADER_SIZE])).seq
                    unflushed = UnflushedWritesError(exc.message, first_seq - 1)
        seg = self._active
        if seg is not None:
            seg.sync()
        if unflushed is not None:
            raise unflushed

    # ------------------------------------------------------------------ write batching

    @contextmanager
    def batch(self):
        """Coalesce the single puts made inside into one file write at the end.

        The server wraps each pipeline in a batch: sixteen SETs cost one ``pwrite`` instead of
        sixteen, which is how Redis writes its AOF buffer once per event-loop iteration.  The
        records are applied (and readable) at once; they reach the kernel when the outermost
        batch ends, before any reply is sent, so a process crash never loses an acknowledged
        write.  Nested and concurrent batches simply extend the outermost one.
        """
        self.begin_batch()
        try:
            yield self
        finally:
            self.end_batch()

    def begin_batch(self) -> None:
        """``batch()`` without the context manager, for the server's hot path."""
        with self._lock:
            self._batch_depth += 1

    def end_batch(self) -> None:
        with self._lock:
            self._batch_depth -= 1
            if not self._batch_depth and self._wbuf:
                self._flush_wbuf()

    @property
    def has_pending_writes(self) -> bool:
        """Records applied but not yet in the file (deferred puts, or a batch's)."""
        return bool(self._wbuf)

    def flush_writes(self) -> None:
        """Write the records ``put_one(deferred=True)`` left buffered, even inside another
        caller's batch (an extra write is harmless there).  Raises ``WriteFailedError`` when
        the disk refuses them; they stay buffered, and every later write fails, until it
        accepts them."""
        if self._wbuf:
            with self._lock:
                self._flush_wbuf()

    def _flush_wbuf(self) -> None:
        """Write the batched records (caller holds ``_lock``).  On failure they stay buffered
        (still readable) and every later write fails until a flush succeeds: a full disk
        refuses writes and recovers when space returns."""
        buf = self._wbuf
        if not buf:
            return
        seg = self._active
        try:
            write_fully(seg.fd, [buf], self._wbuf_start)
        except OSError as exc:
            self._flush_error = WriteFailedError(
                f"could not write to {seg.path}: {os.strerror(exc.errno or 0)}")
            raise self._flush_error from exc
        self._flush_error = None
        seg.map_written(self._wbuf_start + len(buf))
        self._wbuf = bytearray()  # a new object: a reader holding the old one stays valid

    def _read_bytes(self, seg: SegmentFile, offset: int, size: int) -> bytes:
        """``pread``, or the batch buffer for records of the active segment not yet written."""
        if self._wbuf and seg is self._active and offset >= self._wbuf_start:
            with self._lock:
                if self._wbuf and seg is self._active and offset >= self._wbuf_start:
                    rel = offset - self._wbuf_start
                    return bytes(self._wbuf[rel:rel + size])
        return seg.read(offset, size)

    def _add_dead(self, seg_no: int, size: int) -> None:
        self._dead_bytes[seg_no] = self._dead_bytes.get(seg_no, 0) + size

    def _add_dead_location(self, loc: int, size_hint: int = 0) -> None:
        seg_no, offset, size = unpack_location(loc)
        self._add_dead(seg_no, size or size_hint or self._record_size(seg_no, offset))

    def _record_size(self, seg_no: int, offset: int) -> int:
        seg = self._segments.get(seg_no)
        if seg is None:
            return 0
        head = self._read_bytes(seg, offset, rec.HEADER_SIZE)
        if len(head) < rec.HEADER_SIZE:
            return 0
        return rec.HEADER_SIZE + rec.parse_header(head).payload_len

    # ------------------------------------------------------------------ write path

    def write(self, writes: list[Write], *, durable: bool = True) -> int:
        """Append ``writes`` as one batch and apply them; return the last sequence number.

        With ``durable`` and ``fsync="always"`` this returns only once the batch is on disk.
        Otherwise the caller may wait later with ``wait_durable(seq)`` (what the server does
        to release a pipeline's replies after one shared fsync).
        """
        with self._lock:
            self._check_open()
            if self._wbuf:
                self._flush_wbuf()  # keep file order = offset order
            if self.commit.failure is not None:
                raise WriteFailedError(f"writes are disabled after a failed fsync "
                                       f"({self.commit.failure.message}); restart edgekv to "
                                       f"recover from the log")
            try:
                seq = self._append(writes)
            finally:
                # Records of a batch that failed half-way may already be applied: count them.
                self.commit.note_written(self._seq)
        if durable and self.commit.policy == "always":
            self.commit.wait_durable(seq)
        return seq

    def _append(self, writes: list[Write]) -> int:
        """Encode and append, rotating between records when the segment is full."""
        live = self._catalog.by_number
        for w in writes:
            if not w.catalog and w.ns not in live:
                # Checked under the lock: a delete or flush that won the race makes the write
                # fail rather than land, acknowledged, under a dead namespace number.
                raise NamespaceDeletedError("namespace not found")
        seq = self._seq
        pending: list = []  # buffers not yet written
        #: (write, seq, offset, size, header flags, key id), not applied yet
        placed: list[tuple[Write, int, int, int, int, int]] = []
        seg = self._active
        offset = seg.size
        for w in writes:
            if offset >= self.segment_bytes:
                self._flush(seg, pending, placed)
                pending, placed = [], []
                self._rotate()
                seg = self._active
                offset = seg.size
            seq += 1
            flags = ((rec.FLAG_TOMBSTONE if w.tombstone else 0)
                     | (rec.FLAG_CATALOG if w.catalog else 0))
            value = w.value
            if self._encode is not None:
                data = self._encode(seq, flags, w.expire_ms, w.ns, w.key, w.metadata, value)
                size = len(data)
                pending.append(data)
            elif len(value) >= _LARGE_VALUE:
                parts, size = rec.encode_parts(seq, flags, w.expire_ms, w.ns, w.key, w.metadata,
                                               value)
                data = parts[0]  # the header
                pending.extend(parts)
            else:
                data = rec.encode(seq, flags, w.expire_ms, w.ns, w.key, w.metadata, bytes(value))
                size = len(data)
                pending.append(data)
            placed.append((w, seq, offset, size, data[rec.FLAGS_AT], data[rec.KEY_ID_AT]))
            offset += size
        self._flush(seg, pending, placed)
        return self._seq

    def _flush(self, seg: SegmentFile, buffers: list, placed: list) -> None:
        """Write ``buffers`` and apply the records ``placed`` describes; all or nothing."""
        if not buffers:
            return
        start = seg.size
        try:
            for i in range(0, len(buffers), _IOV_BATCH):
                seg.append(buffers[i:i + _IOV_BATCH])
        except WriteFailedError:
            seg._rollback(start)
            seg.size = start
            raise
        columns = self._live_hint
        for w, seq, offset, size, flags, key_id in placed:
            loc = pack_location(seg.seg_no, offset, size)
            self._apply(w, loc, size)
            if columns is not None:
                columns.add(index_key(w.ns, w.key), loc, seq, flags, key_id, w.expire_ms,
                            w.metadata, offset + size)
        self._seq = placed[-1][1]

    def _apply(self, w: Write, loc: int, size: int) -> None:
        if w.catalog:
            ns_id = w.key.decode("ascii")
            self._catalog.apply(ns_id, bytes(w.value), w.tombstone)
            old = self._catalog_locations.pop(ns_id, None)
            if old is not None:
                self._add_dead_location(old)
            if w.tombstone:
                self._add_dead(location_segment(loc), size)
            else:
                self._catalog_locations[ns_id] = loc
            return
        ikey = index_key(w.ns, w.key)
        if w.tombstone:
            old = self._index.pop(ikey)
            self._expiry.discard(ikey)
            self._metadata.pop(ikey, None)
            self._add_dead(location_segment(loc), size)
            if old is not None:
                self._ns_key_counts[w.ns] -= 1
                self._add_dead_location(old)
                self._mark_removal(w.ns, w.key)
        else:
            self._apply_put(ikey, w.ns, loc, w.expire_ms, w.metadata)

    def _apply_put(self, ikey: bytes, ns: int, loc: int, expire_ms: int, metadata: bytes) -> None:
        old = self._index.set(ikey, loc)
        if expire_ms or self._expiry._expire_ms:
            self._expiry.set(ikey, expire_ms)
        if metadata:
            self._metadata[ikey] = metadata
        elif self._metadata:
            self._metadata.pop(ikey, None)
        if old is None:
            self._ns_key_counts[ns] = self._ns_key_counts.get(ns, 0) + 1
        else:
            self._add_dead_location(old)

    def put_one(self, ns: int, key: bytes, value, expire_ms: int = 0, metadata: bytes = b"",
                *, durable: bool = True, deferred: bool = False) -> int:
        """One put, the hot path of SET and ``put``: same effect as ``write([Write(...)])``
        without building a batch.  Falls back to ``write`` for anything unusual.

        ``deferred``: leave the record in the batch buffer (applied and readable at once) for
        the caller to write with ``flush_writes()`` before it acknowledges the put.  The server
        does this for the single SETs of one event-loop iteration, so fifty clients' SETs cost
        one ``pwrite``, not fifty, as Redis writes its AOF buffer once before its replies.

        Deliberately flat (no helper calls for encode or index update; one, ``_buffered``, shared
        with ``put_many``, for the buffer): at ~100k puts per second every Python call and
        temporary object shows up in the profile.  Routing a single put through ``put_many``
        measured about 1 µs more per put.
        """
        with self._lock:
            seg = self._active
            offset = seg.size if seg is not None else 0
            if (self._closed or self.commit.failure is not None or ns not in self._catalog.by_number
                    or offset >= self.segment_bytes or len(value) >= _LARGE_VALUE):
                return self._write_items(ns, ((key, value, expire_ms, metadata),), durable)
            seq = self._seq + 1
            encode = self._encode
            if encode is None:
                key_len = len(key)
                meta_len = len(metadata)
                body = b"".join((
                    _TAIL_PACK(rec.RECORD_MAGIC, 0, 0,
                               _PREFIX_SIZE + key_len + meta_len + len(value), seq, expire_ms),
                    _PREFIX_PACK(key_len, meta_len, ns >> 8, ns & 0xFF), key, metadata, value))
                data = _CHECKSUM_PACK(_CHECKSUM(body)) + body
                ikey = data[_KEY_START - 2:_KEY_START + key_len]  # namespace (big-endian) + key
            else:
                data = encode(seq, 0, expire_ms, ns, key, metadata, value)
                ikey = ns.to_bytes(2, "big") + key
            size = len(data)
            if not self._buffered(data, offset, deferred):
                try:
                    written = os.pwrite(seg.fd, data, offset)
                except OSError as exc:
                    seg._rollback(offset)
                    raise WriteFailedError(f"could not write to {seg.path}: "
                                           f"{os.strerror(exc.errno or 0)}") from exc
                if written != size:  # a short write: finish it the careful way
                    seg._rollback(offset)
                    return self._write_items(ns, ((key, value, expire_ms, metadata),), durable)
                view = seg.view
                if offset + size - (len(view) if view is not None else 0) >= _MAP_STEP:
                    seg.map_written(offset + size)
            seg.size = offset + size
            self._seq = seq
            loc = (seg.seg_no << 42) | (offset << 14) | (size if size < 16384 else 0)
            locations = self._index._locations
            old = locations.get(ikey)
            locations[ikey] = loc
            if old is None:
                self._index._sorted.add(ikey)
                counts = self._ns_key_counts
                counts[ns] = counts.get(ns, 0) + 1
            else:
                old_size = old & 0x3FFF
                if old_size:
                    dead = self._dead_bytes
                    old_seg = old >> 42
                    dead[old_seg] = dead.get(old_seg, 0) + old_size
                else:
                    self._add_dead_location(old)
            if expire_ms or self._expiry._expire_ms:
                self._expiry.set(ikey, expire_ms)
            if metadata:
                self._metadata[ikey] = metadata
            elif self._metadata:
                self._metadata.pop(ikey, None)
            self.commit.written_seq = seq
            columns = self._live_hint
            if columns is not None:
                columns.add(ikey, loc, seq, data[_FLAGS_AT], data[_KEY_ID_AT], expire_ms,
                            metadata, offset + size)
            if size < 16384 and value.__class__ is bytes and self._read_cache.budget:
                self._read_cache.add(loc, value)  # a GET right after a SET is the common case
        if durable and self.commit.policy == "always":
            self.commit.wait_durable(seq)
        return seq

    def put_many(self, ns: int, items: Sequence[tuple], *, durable: bool = True,
                 deferred: bool = False, fill_cache: bool = True) -> int:
        """Puts of ``(key, value, expire_ms, metadata)`` items into namespace ``ns``, in order:
        what ``write([Write(...), ...])`` does, with one file write for all of them and without
        the general path's per-record objects and calls (a pipeline of SETs, MSET, a bulk
        write).  Falls back to ``write`` for anything unusual (a large value, a full segment).
        Returns the last sequence number.  ``deferred`` as for ``put_one``; otherwise the
        records reach the file before any is applied, so a refused write applies nothing.
        ``fill_cache=False`` keeps the values out of the read cache (bulk loads).
        """
        with self._lock:
            seg = self._active
            if (self._closed or self.commit.failure is not None or ns not in self._catalog.by_number
                    or seg.size >= self.segment_bytes):
                return self._write_items(ns, items, durable)
            offset = seg.size
            seq = self._seq
            encode = self._encode
            records = []
            for key, value, expire_ms, metadata in items:
                if len(value) >= _LARGE_VALUE:
                    return self._write_items(ns, items, durable)
                seq += 1
                if encode is None:
                    records.append(rec.encode(seq, 0, expire_ms, ns, key, metadata, value))
                else:
                    records.append(encode(seq, 0, expire_ms, ns, key, metadata, value))
            data = b"".join(records)
            end = offset + len(data)
            if end > _MAX_BATCH_END:
                return self._write_items(ns, items, durable)
            if not self._buffered(data, offset, deferred):
                seg.append([data])  # all or nothing: a failed write is rolled back
            seg.size = end
            seg_bits = seg.seg_no << 42
            ns_bytes = ns.to_bytes(2, "big")
            apply_put = self._apply_put
            columns = self._live_hint
            cache_add = self._read_cache.add if fill_cache and self._read_cache.budget else None
            seq = self._seq
            for (key, value, expire_ms, metadata), record in zip(items, records):
                seq += 1
                size = len(record)
                ikey = ns_bytes + key
                loc = seg_bits | (offset << 14) | (size if size < 16384 else 0)
                apply_put(ikey, ns, loc, expire_ms, metadata)
                offset += size
                if columns is not None:
                    columns.add(ikey, loc, seq, record[_FLAGS_AT], record[_KEY_ID_AT], expire_ms,
                                metadata, offset)
                if cache_add is not None and size < 16384 and value.__class__ is bytes:
                    cache_add(loc, value)
            self._seq = seq
            self.commit.written_seq = seq
        if durable and self.commit.policy == "always":
            self.commit.wait_durable(seq)
        return seq

    def _buffered(self, data: bytes, offset: int, deferred: bool) -> bool:
        """Leave the records ``data`` (starting at ``offset``) in the batch buffer when the
        put is deferred or inside a batch; otherwise write what is buffered first (file order
        is offset order; this raises again while the disk still refuses) and return False:
        the caller writes ``data`` itself."""
        if (self._batch_depth or deferred) and self._flush_error is None:
            if not self._wbuf:
                self._wbuf_start = offset
            self._wbuf += data
            return True
        if self._wbuf:
            self._flush_wbuf()
        return False

    def _write_items(self, ns: int, items, durable: bool) -> int:
        """The careful path of ``put_one`` and ``put_many``: the general batch write."""
        return self.write([Write(ns, key, value, expire_ms, metadata)
                           for key, value, expire_ms, metadata in items], durable=durable)

    def check_write_rate(self, ns: int, key: bytes) -> None:
        """Workers KV's one write per second per key, when enabled (off by default)."""
        if not self.write_rate_limit:
            return
        now = self.clock_ms()
        ikey = index_key(ns, key)
        last = self._last_write_ms.get(ikey)
        if last is not None and now - last < 1000:
            raise TooManyRequestsError("Too Many Requests")
        if len(self._last_write_ms) > 100_000:
            cutoff = now - 1000
            self._last_write_ms = {k: t for k, t in self._last_write_ms.items() if t > cutoff}
        self._last_write_ms[ikey] = now

    # ------------------------------------------------------------------ durability

    @property
    def fsync_policy(self) -> str:
        return self.commit.policy

    def set_fsync_policy(self, policy: str) -> None:
        self.commit.set_policy(policy)

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record appended."""
        return self.commit.written_seq

    @property
    def durable_seq(self) -> int:
        """Every record up to this sequence number is known to be on disk."""
        return self.commit.durable_seq

    @property
    def fsync_count(self) -> int:
        return self.commit.fsync_count

    def wait_durable(self, seq: int) -> None:
        """Block until the record with sequence ``seq`` (and all before it) is on disk."""
        self.commit.wait_durable(seq)

    def sync(self) -> None:
        """Fsync everything written so far, whatever the policy."""
        self._check_open()
        self.commit.sync_now()

    # ------------------------------------------------------------------ read path

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")

    def lookup(self, ns: int, key: bytes) -> int | None:
        """The location of a live, unexpired key, or None."""
        ikey = index_key(ns, key)
        with self._lock:
            loc = self._index.get(ikey)
            if loc is None:
                return None
            if ikey in self._expiry._expire_ms and self._expiry.is_expired(ikey, self.clock_ms()):
                self._expire(ikey)
                return None
            return loc

    def _removal_bucket(self, ns: int, key: bytes) -> int:
        info = self._catalog.by_number.get(ns)
        # By namespace id, not number: a flush gives the namespace a new number.
        return hash((info.id if info is not None else ns, key)) & (_REMOVAL_BUCKETS - 1)

    def _mark_removal(self, ns: int, key: bytes) -> None:
        self._removals += 1
        self._removal_marks[self._removal_bucket(ns, key)] = self._removals

    def record_seq(self, ns: int, key: bytes) -> int:
        """A version of the key that every write and delete of it changes and compaction keeps
        (the server's WATCH compares it).  For a live key, its record's sequence number
        (never reused; compaction copies records with theirs).  For a missing one, zero or
        minus the removal count at the last delete or expiry in its bucket, so a key created
        and deleted again does not look untouched; another key of the bucket being removed
        only makes it look touched (one bucket in 65,536)."""
        with self._lock:  # the location and the bytes it points to, read together
            loc = self.lookup(ns, key)
            if loc is not None:
                seg_no, offset, _ = unpack_location(loc)
                seg = self._segments.get(seg_no)
                if seg is not None:
                    head = self._read_bytes(seg, offset, rec.HEADER_SIZE)
                    if len(head) == rec.HEADER_SIZE:
                        return rec.parse_header(head).seq
        entry = None if loc is None else self.read_entry(ns, key)  # not expected: verified
        if entry is not None:
            return entry.seq
        return -self._removal_marks[self._removal_bucket(ns, key)]

    def read_entry(self, ns: int, key: bytes) -> Entry | None:
        """The key's stored value, expiration and metadata, verified; None when absent."""
        self._check_open()
        loc = self.lookup(ns, key)
        if loc is None:
            return None
        record = self._read_record(loc)
        if record.key != key or record.ns != ns:
            seg_no, offset, _ = unpack_location(loc)
            raise CorruptionError(f"segment {seg_no} offset {offset} holds another key than the "
                                  f"index says", segment=seg_no, offset=offset)
        return Entry(key, record.value, record.expire_ms, record.metadata, record.seq)

    def get_value(self, ns: int, key: bytes) -> bytes | None:
        """Just the value of a live key, or None: the hot path of GET.

        Lock-free: a dict lookup is atomic under the GIL and a record, once written, never
        changes, so the worst a racing write can do is make this return the previous value.
        Anything unusual (a large record, one not yet in the file, a failed check) takes the
        full path, which verifies again and raises the right error.
        """
        ikey = ns.to_bytes(2, "big") + key
        loc = self._index._locations.get(ikey)
        if loc is None:
            return None
        try:
            size = loc & 0x3FFF
            if not size:
                raise _FullPath
            if self._expiry._expire_ms:
                expire_ms = self._expiry._expire_ms.get(ikey)
                if expire_ms is not None and expire_ms <= self.clock_ms():
                    self.lookup(ns, key)  # drops it from the index
                    return None
            cache = self._read_cache
            value = cache.values.get(loc)
            if value is not None:
                cache.hits += 1
                return value
            seg = self._segments.get(loc >> 42)
            offset = (loc >> 14) & 0xFFFFFFF
            if seg is None or (self._wbuf and seg is self._active and offset >= self._wbuf_start):
                raise _FullPath  # gone, or still in the batch buffer
            view = seg.view
            if view is not None and offset + size <= len(view):
                src, base = view, offset
            else:
                src, base = os.pread(seg.fd, size, offset), 0
                if len(src) != size:
                    raise _FullPath
            checksum, magic, flags, kid, plen, _seq, _exp = _HEADER_UNPACK(src, base)
            if (flags & ~_TRANSFORMED or magic != rec.RECORD_MAGIC or plen + _H != size
                    or _CHECKSUM(src[base + 8:base + size]) != checksum):
                raise _FullPath
            if flags & rec.FLAG_ENCRYPTED:
                # PayloadCodec.open, inline and straight from the mapping: the call and a
                # copy of the record were a fifth of what a sealed record adds to this path.
                aead = self._codec.aeads.get(kid)
                if aead is None or plen < OVERHEAD:
                    raise _FullPath
                at = base + _H
                buf = aead.decrypt(src[at:at + NONCE_SIZE], src[at + NONCE_SIZE:at + plen],
                                   src[base + 8:at])
                start = _PREFIX_SIZE
            else:
                buf = src[base:base + size] if src is view else src
                start = _KEY_START
            key_len, meta_len, _hi, _lo = _PREFIX_UNPACK(buf, start - _PREFIX_SIZE)
            if buf[start - 2:start + key_len] != ikey:
                raise _FullPath
            value = buf[start + key_len + meta_len:]
            if flags & rec.FLAG_COMPRESSED:
                value = self._codec.value(value, flags)
        except (_FullPath, ValueError, InvalidTag):  # a failed tag; ValueError: a bad zstd frame
            entry = self.read_entry(ns, key)  # raises CorruptionError for damage
            return None if entry is None else entry.value
        cache.misses += 1
        cache.add(loc, value)
        return value

    def _read_record(self, loc: int) -> rec.Record:
        seg_no, offset, size = unpack_location(loc)
        seg = self._segments.get(seg_no)
        if seg is None:
            raise CorruptionError(f"segment {seg_no} is missing", segment=seg_no, offset=offset)
        if not size:
            head = self._read_bytes(seg, offset, rec.HEADER_SIZE)
            if len(head) < rec.HEADER_SIZE:
                raise CorruptionError(f"segment {seg_no} offset {offset}: record header cut short",
                                      segment=seg_no, offset=offset)
            size = rec.HEADER_SIZE + rec.parse_header(head).payload_len
        buf = self._read_bytes(seg, offset, size)
        if len(buf) < rec.HEADER_SIZE:
            raise CorruptionError(f"segment {seg_no} offset {offset}: record cut short",
                                  segment=seg_no, offset=offset)
        header = rec.parse_header(buf)
        if (header.magic != rec.RECORD_MAGIC or rec.HEADER_SIZE + header.payload_len != len(buf)
                or not rec.verify(buf, 0, header.payload_len, header.checksum)):
            raise CorruptionError(f"record at segment {seg_no} offset {offset} failed its checksum; "
                                  f"it is not served", segment=seg_no, offset=offset)
        flags = header.flags
        if not flags & _TRANSFORMED:
            ns, key, metadata, value = rec.decode_payload(memoryview(buf)[rec.HEADER_SIZE:])
            return rec.Record(header.seq, flags, header.expire_ms, ns, key, metadata, value)
        try:
            payload = (self._codec.open(buf, 0, header.key_id, header.payload_len)
                       if flags & rec.FLAG_ENCRYPTED else memoryview(buf)[rec.HEADER_SIZE:])
            ns, key, metadata, value = rec.decode_payload(payload)
            value = self._codec.value(value, flags)
        except ValueError as exc:  # a failed tag is reported exactly as a failed checksum
            raise CorruptionError(f"record at segment {seg_no} offset {offset} failed its checksum "
                                  f"({exc}); it is not served", segment=seg_no,
                                  offset=offset) from None
        return rec.Record(header.seq, flags, header.expire_ms, ns, key, metadata, value)

    def expiration_ms(self, ns: int, key: bytes) -> int:
        with self._lock:
            return self._expiry.get(index_key(ns, key))

    def metadata_json(self, ns: int, key: bytes) -> bytes:
        with self._lock:
            return self._metadata.get(index_key(ns, key), b"")

    def scan_keys(self, ns: int, prefix: bytes, start_after: bytes | None, limit: int
                  ) -> list[tuple[bytes, int, bytes]]:
        """Up to ``limit`` live keys of ``ns`` starting with ``prefix``, strictly after
        ``start_after``, in byte order, as ``(key, expire_ms, metadata_json)``."""
        base = ns_prefix(ns)
        full_prefix = base + prefix
        if start_after is not None and base + start_after >= full_prefix:
            start, inclusive = base + start_after, False
        else:
            start, inclusive = full_prefix, True
        out = []
        with self._lock:
            self._check_open()
            now = self.clock_ms()
            expiry = self._expiry
            metadata = self._metadata
            expired = []
            for ikey in self._index.walk(start, inclusive=inclusive):
                if not ikey.startswith(full_prefix):
                    break
                exp = expiry.get(ikey)
                if exp and exp <= now:
                    expired.append(ikey)
                    continue
                out.append((ikey[2:], exp, metadata.get(ikey, b"")))
                if len(out) >= limit:
                    break
            for ikey in expired:
                self._expire(ikey)
        return out

    def key_count(self, ns: int | None = None) -> int:
        with self._lock:
            self.reap_expired()
            if ns is None:
                return len(self._index)
            return self._ns_key_counts.get(ns, 0)

    # ------------------------------------------------------------------ expiry

    def _expire(self, ikey: bytes) -> None:
        """Drop an expired key from memory; its record already says it expired, so no write."""
        loc = self._index.pop(ikey)
        self._expiry.discard(ikey)
        self._metadata.pop(ikey, None)
        if loc is not None:
            ns = int.from_bytes(ikey[:2], "big")
            self._ns_key_counts[ns] -= 1
            self._add_dead_location(loc)
            self._mark_removal(ns, ikey[2:])

    def reap_expired(self, limit: int = 10_000) -> int:
        """Remove keys whose expiration has passed; returns how many."""
        with self._lock:
            now = self.clock_ms()
            due = self._expiry.pop_due(now, limit)
            for ikey in due:
                self._expire(ikey)
            return len(due)

    # ------------------------------------------------------------------ namespaces

    def namespace(self, name_or_id: str = DEFAULT_TITLE):
        """The ``Namespace`` with this id or title (``default`` always exists)."""
        from .namespace import Namespace
        with self._lock:
            return Namespace(self, self._catalog.resolve(name_or_id))

    def list_namespaces(self) -> list[NamespaceInfo]:
        with self._lock:
            return self._catalog.ordered()

    def get_namespace(self, ns_id: str) -> NamespaceInfo:
        with self._lock:
            return self._catalog.get(ns_id)

    def find_namespace(self, name_or_id: str) -> NamespaceInfo:
        with self._lock:
            return self._catalog.resolve(name_or_id)

    def create_namespace(self, title: str) -> NamespaceInfo:
        title = semantics.validate_title(title, self.limits)
        with self._lock:
            info = self._catalog.plan_create(title, self.limits.max_namespaces)
            self.write([Write(CATALOG_NS, info.id.encode(), encode_entry(info), catalog=True)])
            return info

    def rename_namespace(self, ns_id: str, title: str) -> NamespaceInfo:
        title = semantics.validate_title(title, self.limits)
        with self._lock:
            info = self._catalog.plan_rename(ns_id, title)
            self.write([Write(CATALOG_NS, info.id.encode(), encode_entry(info), catalog=True)])
            return info

    def flush_namespace(self, ns_id: str) -> int:
        """Drop every key of a namespace in O(1) log space: it keeps its id and title and gets
        a fresh number, which makes all records under the old number dead.  Returns the count."""
        with self._lock:
            old = self._catalog.get(ns_id)
            info = self._catalog.plan_flush(ns_id)
            self.write([Write(CATALOG_NS, info.id.encode(), encode_entry(info, old.number),
                              catalog=True)])
            return self._forget_keys(old.number)

    def _forget_keys(self, number: int) -> int:
        removed = self._index.remove_prefix(ns_prefix(number))
        for ikey in removed:
            self._expiry.discard(ikey)
            self._metadata.pop(ikey, None)
        self._ns_key_counts.pop(number, None)
        return len(removed)

    def delete_namespace(self, ns_id: str) -> None:
        """Delete a namespace: its keys are unreachable at once, their space reclaimed later."""
        with self._lock:
            info = self._catalog.plan_delete(ns_id)
            self.write([Write(CATALOG_NS, info.id.encode(), encode_deletion(info), catalog=True,
                              tombstone=True)])
            self._forget_keys(info.number)

    # ------------------------------------------------------------------ compaction

    def compact(self, progress: Callable[[int, int], None] | None = None, *,
                reencrypt: bool = True) -> dict:
        """Rewrite every segment's live records into new segments and drop the rest
        (``engine/compaction.py``).  Reads and writes go on meanwhile.  Returns a summary:
        ``segments_in``, ``segments_out``, ``bytes_before``, ``bytes_after``,
        ``records_dropped``, ``seconds``.  ``progress(bytes_done, bytes_total)`` is called as
        the old segments are copied.  With ``reencrypt`` (default) every record not under the
        active key (plaintext ones too, when encryption is on) is sealed again with it, so
        older keys fall out of use; without, records are copied byte for byte."""
        return compaction.compact(self, progress, reencrypt=reencrypt)

    # ------------------------------------------------------------------ encryption keys

    def _require_ring(self) -> crypto.KeyRing:
        self._check_open()
        if self._ring is None:
            raise StoreError(f"the store at {self.path} is not encrypted")
        return self._ring

    def rotate_key(self) -> int:
        """Add a new key to the key file and use it for every new write; returns its id.

        The active segment is sealed too, so that ``compact()`` rewrites every record written
        under an older key; then ``key_usage()`` shows the old key unused and
        ``retire_key()`` can drop it.
        """
        with self._lock:
            ring = self._require_ring()
            kid = ring.add_key()
            self._codec.refresh_keys()
            self._rotate()
            log.info("%s: rotated to key id %d", self.path, kid)
            return kid

    def key_usage(self) -> dict[int, dict]:
        """Per key id (0 = plaintext records): ``segments`` holding records (or a hint file)
        under it, ``live_records`` (live keys and namespace entries) stored under it, and
        whether it is the ``active`` key.  A key can be retired once no segment uses it."""
        with self._lock:
            self._check_open()
            seg_keys = {n: set(ids) for n, ids in self._segment_key_ids.items()
                        if n in self._segments}
            locations = list(self._index._locations.values())
            locations += self._catalog_locations.values()
            active = self._codec.key_id
            known = set(self._ring.keys) if self._ring is not None else set()
        usage: dict[int, dict] = {kid: {"segments": [], "live_records": 0,
                                        "active": kid == active} for kid in known}
        live_per_segment: dict[int, list[int]] = {}
        for loc in locations:
            live_per_segment.setdefault(loc >> 42, []).append(loc)
        for seg_no in sorted(seg_keys):
            ids = seg_keys[seg_no]
            for kid in ids:
                usage.setdefault(kid, {"segments": [], "live_records": 0,
                                       "active": kid == active})["segments"].append(seg_no)
            live = live_per_segment.get(seg_no, [])
            if len(ids) == 1:
                usage[next(iter(ids))]["live_records"] += len(live)
                continue
            seg = self._segments.get(seg_no)
            for loc in live:  # a segment written under two keys: ask each record
                try:
                    head = self._read_bytes(seg, (loc >> 14) & 0xFFFFFFF, rec.HEADER_SIZE)
                    usage[rec.parse_header(head).key_id]["live_records"] += 1
                except (OSError, KeyError, ValueError, AttributeError, struct.error):
                    continue  # retired meanwhile, or damaged: verify reports that
        return usage

    def retire_key(self, key_id: int) -> None:
        """Remove a key that no segment uses any more from the key file and ``KEYCHECK``.

        Raises ``StoreError`` when it is the active key, when a segment still holds records
        under it (``rotate_key()``, then ``compact()``, first), or when another data directory
        registered in the key file (a snapshot, or a store sharing the file) still needs it;
        in that last case this store no longer claims it, and the key stays in the file.
        """
        with self._compaction_lock, self._lock:
            ring = self._require_ring()
            if key_id == self._codec.key_id:
                raise StoreError(f"key id {key_id} is the active key of {self.path}; "
                                 f"rotate_key() first")
            if key_id not in ring.keys:
                raise StoreError(f"key id {key_id} is not in key file {ring.key_file}")
            users = sorted(n for n, ids in self._segment_key_ids.items()
                           if key_id in ids and n in self._segments)
            if users:
                raise StoreError(f"key id {key_id} is still used by segment(s) "
                                 f"{', '.join(map(str, users))} of {self.path}; run compact() "
                                 f"to re-encrypt them, then retire the key")
            needed = sorted({kid for n, ids in self._segment_key_ids.items()
                             if n in self._segments for kid in ids if kid}
                            | {self._codec.key_id})
            others = ring.remove_key(key_id, needed)
            self._codec.refresh_keys()
        if others:
            raise StoreError(f"key id {key_id} is no longer used by {self.path}, but key file "
                             f"{ring.key_file} keeps it: {', '.join(others)} still need(s) it "
                             f"(a snapshot, or a store sharing the key file); retire it there "
                             f"or delete that copy, then retire again")
        log.info("%s: retired key id %d", self.path, key_id)

    def encryption_info(self) -> dict:
        """Encryption and compression settings, for INFO and stats."""
        ring = self._ring
        return {
            "enabled": ring is not None,
            "key_file": ring.key_file if ring is not None else None,
            "active_key_id": self._codec.key_id if ring is not None else None,
            "key_ids": sorted(ring.keys) if ring is not None else [],
            "epoch": ring.epoch if ring is not None else None,
            "compression_threshold": self._codec.threshold,
            "compression_level": self._codec.level,
        }

    # ------------------------------------------------------------------ introspection

    def stats(self) -> dict:
        with self._lock:
            return {
                "path": self.path,
                "keys": len(self._index),
                "keys_with_expiration": len(self._expiry),
                "keys_with_metadata": len(self._metadata),
                "namespaces": len(self._catalog),
                "segments": len(self._segments),
                "active_segment": self._active.seg_no if self._active else None,
                "disk_bytes": sum(s.size for s in self._segments.values()),
                "dead_bytes": sum(self._dead_bytes.values()),
                "last_seq": self.commit.written_seq,
                "durable_seq": self.commit.durable_seq,
                "fsync_policy": self.commit.policy,
                "fsync_count": self.commit.fsync_count,
                "corrupt_records": len(self.recovery.corrupt),
                "write_error": str(self.commit.failure) if self.commit.failure else None,
                "read_cache": self._read_cache.stats(),
            }

    def namespace_stats(self) -> list[dict]:
        with self._lock:
            return [{"id": info.id, "title": info.title,
                     "keys": self._ns_key_counts.get(info.number, 0)}
                    for info in self._catalog.ordered()]

    def _check(self) -> None:
        """Invariant check for tests."""
        with self._lock:
            self._index._check()
            for ns, count in self._ns_key_counts.items():
                assert count == self._index.count_prefix(ns_prefix(ns)), (ns, count)
