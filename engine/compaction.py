"""Compaction: rewrite the live records of sealed segments into new ones, and drop the rest.

Protocol (``docs/format.md`` has the on-disk side):

1. **Reserve** (under the store lock, briefly): seal the active segment and start the next
   active segment ``R + 1`` numbers higher, so numbers ``a+1 .. a+R`` are free for the outputs
   and stay below the active segment.  The inputs are every segment below the new active one.
   Every record in the active segment is newer than every record in an input, which is why a
   tombstone can be dropped: no older record of its key survives outside the inputs.
2. **Copy** (no lock): scan the inputs and append each record that is still the live version
   (the index points at it, it has not expired; for the catalog, the namespace's current
   record or a namespace tombstone) verbatim, with its sequence number, to ``NNNNNNNN.seg.tmp``
   outputs; a record under another key than the active one (or plaintext, when encryption is
   on) is sealed again with the active key instead (``reencrypt``), which is how a rotated key
   falls out of use.  Liveness is a dict lookup, atomic under the GIL; a record found dead never comes
   back, and one that dies after the check is caught at step 4.
3. **Commit**: fsync the outputs and their hint files (``.hint.tmp``), then write the manifest
   ``COMPACTION`` (temporary name, fsync, rename, fsync the directory).  Before the manifest
   exists a crash leaves only temporary files, which opening deletes; once it exists, opening
   finishes the job (rename the outputs, delete the inputs) before reading anything.
4. **Switch** (lock taken per batch of keys): rename the outputs into place, then point each
   key at its copy only if the index still holds the input location (compare-and-set), so a
   key written during compaction keeps its newer location.
5. **Retire**: drop the inputs from the segment table, unlink them, remove the manifest.  File
   descriptors of retired segments stay open until a later compaction or ``close``, because
   ``get_value`` reads without the lock and may hold one.

Compaction refuses inputs with corrupt records (run ``engine.verify.repair`` first): copying
around them would silently turn "this key is corrupt" into "this key is absent" or older.

Segment numbers: each compaction takes ``R + 1`` new numbers and every rotation one, and the
packed location holds 18 bits of them.  Opening gives them back: ``renumber_directory`` renames
the segments (and their hints) to 1..n, in order, once the highest number passes
``RENUMBER_ABOVE``.  Within one process numbers are never reused (the read cache and lock-free
readers know records by location), so a process that never restarts still stops compacting, and
then writing, at ``MAX_SEGMENT_NO``; the error says to restart.

Crash points: ``_reach(name)`` is called after each step that changes the disk; a test sets
``crash_hook`` or the environment variable ``EDGEKV_COMPACTION_CRASH_POINT`` to a name in
``CRASH_POINTS`` and the process exits on the spot with ``os._exit``.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import sys
import threading
import time
from typing import Callable

from . import record as rec
from .errors import StoreClosedError, StoreError
from .hints import HINT_SUFFIX, HintError, HintWriter, hint_name, read_hint
from .index import MAX_OFFSET, MAX_SEGMENT_NO, pack_location, unpack_location
from .segment import (SEGMENT_HEADER, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, FORMAT_VERSION, Damage,
                      SegmentFile, write_fully, fsync_dir, parse_segment_name, scan, segment_name,
                      valid_record_at)

log = logging.getLogger("edgekv.engine")

MANIFEST = "COMPACTION"
MANIFEST_VERSION = 1
CRASH_ENV = "EDGEKV_COMPACTION_CRASH_POINT"
CRASH_EXIT_CODE = 86
CRASH_POINTS = (
    "reserved",          # active sealed, numbers reserved, nothing written
    "copying",           # part of an output written
    "outputs_synced",    # outputs and hints complete under temporary names
    "manifest_written",  # the commit point
    "outputs_renamed",   # outputs and hints under their final names
    "switching",         # index half switched (memory only)
    "input_deleted",     # first input unlinked
    "inputs_deleted",    # every input unlinked
    "done",              # manifest removed
)
#: A callable(name) run at every crash point; tests use it to kill or to observe.
crash_hook: Callable[[str], None] | None = None

#: Opening renumbers the segments from 1 when the highest number is above this: a sixteenth of
#: what a location can hold, so a process always starts with at least 15/16 of the numbers
#: ahead of it, while a store far from the limit keeps its file names (``docs/format.md``).
RENUMBER_ABOVE = (MAX_SEGMENT_NO + 1) // 16
#: A callable(renames done) run after each segment ``renumber_directory`` moves (its rename and
#: its hint's are durable); tests use it to stop part way, as a crash would.
renumber_hook: Callable[[int], None] | None = None

_BATCH = 4096  # records copied between closed-store checks
# Bounded steps: compaction runs in a thread of the serving process and shares its GIL.  A
# CPU-bound thread keeps the GIL until the waiting thread has asked for it for the whole switch
# interval (5 ms), which would add up to 5 ms to a request that arrives meanwhile.  After each
# step of this long, compaction sleeps so a waiting thread takes the GIL at once.  The sleep
# is three steps long: with a shorter one (0.1 ms) single-request p99 was as good, but a
# pipelined GET load fell to a fifth of its idle throughput while compaction ran (the two
# threads traded the GIL every step); at 1.5 ms it keeps about half, and p99 stays ~1x idle.
_STEP_S = 0.0005
_PAUSE_S = 0.0015
_SWITCH_INTERVAL_S = 0.0002
_SWITCH_BATCH = 512  # keys pointed at their copies per hold of the store lock
_SORT_RUN = 2048
_PROGRESS_EVERY = 1024  # records between progress reports
_WRITE_BUFFER = 1 << 20
_RETIRED_GRACE_S = 5.0


def _reach(name: str) -> None:
    if crash_hook is not None:
        crash_hook(name)
    if os.environ.get(CRASH_ENV) == name:
        os._exit(CRASH_EXIT_CODE)


# --------------------------------------------------------------------------- opening a directory


def recover_directory(path: str) -> list[str]:
    """Finish or undo a compaction a crash interrupted; runs before any segment is read.

    Returns a note per action, for the recovery report.
    """
    notes = []
    manifest = os.path.join(path, MANIFEST)
    if os.path.exists(manifest):
        try:
            with open(manifest, "rb") as f:
                plan = json.loads(f.read())
            inputs, outputs = list(plan["inputs"]), list(plan["outputs"])
            if plan.get("version") != MANIFEST_VERSION:
                raise ValueError(f"version {plan.get('version')}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"compaction manifest {manifest} is unreadable ({exc}); "
                             f"refusing to guess which segments are live") from None
        for seg_no in outputs:
            for name in (segment_name(seg_no), hint_name(seg_no)):
                final = os.path.join(path, name)
                if os.path.exists(final + ".tmp"):
                    os.rename(final + ".tmp", final)
            if not os.path.exists(os.path.join(path, segment_name(seg_no))):
                raise StoreError(f"compaction manifest lists output segment {seg_no}, "
                                 f"which is missing")
        fsync_dir(path)
        for seg_no in inputs:
            for name in (segment_name(seg_no), hint_name(seg_no)):
                try:
                    os.unlink(os.path.join(path, name))
                except FileNotFoundError:
                    pass
        fsync_dir(path)
        os.unlink(manifest)
        fsync_dir(path)
        notes.append(f"finished an interrupted compaction: segments {inputs} -> {outputs}")
    removed = []
    names = os.listdir(path)
    segments = {n for n in (parse_segment_name(name) for name in names) if n is not None}
    for name in names:
        stale = name.endswith(HINT_SUFFIX + ".tmp") or name == MANIFEST + ".tmp"
        if name.endswith(HINT_SUFFIX):
            stem = name[:-len(HINT_SUFFIX)]
            stale = not stem.isdigit() or int(stem) not in segments
        if stale:
            os.unlink(os.path.join(path, name))
            removed.append(name)
    if removed:
        notes.append(f"removed leftovers of an unfinished compaction: {', '.join(sorted(removed))}")
    for note in notes:
        log.warning("%s: %s", path, note)
    return notes


def renumber_directory(path: str) -> int:
    """Rename the segments of ``path`` to 1..n, in order, when the highest number is above
    ``RENUMBER_ABOVE``; returns how many were moved.  Runs at open, after
    ``recover_directory``, under the directory lock.

    Crash safety: segment ``s_i`` (ascending) goes to ``i``, the lowest free number; ``i <= s_i``
    and nothing is named between them, so the order of the segments is the same after every
    rename, and each is made durable (directory fsync) before the next: at any crash the
    directory is a valid one, whose highest segment, the active one, is renamed last, so the
    next open finds it still above the threshold and goes on.  A hint is renamed right after its
    segment, in the same step; a crash between the two leaves a hint without its segment,
    which the next ``recover_directory`` deletes (that segment is scanned once, then gets a
    hint again).  Files are renamed, never rewritten: a snapshot's hard links keep the old
    names' contents, and the header keeps the number the segment was created with.
    """
    names = os.listdir(path)
    numbers = sorted(n for n in (parse_segment_name(name) for name in names) if n is not None)
    if not numbers or numbers[-1] <= RENUMBER_ABOVE:
        return 0
    moved = 0
    for target, seg_no in enumerate(numbers, 1):
        if seg_no == target:
            continue
        for name in (segment_name(target), hint_name(target)):
            if os.path.exists(os.path.join(path, name)):  # rename would replace it
                raise StoreError(f"renumbering segments in {path}: {name} is in the way")
        os.rename(os.path.join(path, segment_name(seg_no)),
                  os.path.join(path, segment_name(target)))
        hint = os.path.join(path, hint_name(seg_no))
        if os.path.exists(hint):
            os.rename(hint, os.path.join(path, hint_name(target)))
        fsync_dir(path)
        moved += 1
        if renumber_hook is not None:
            renumber_hook(moved)
    log.warning("%s: renumbered segments %d..%d to 1..%d (%d renamed)", path, numbers[0],
                numbers[-1], len(numbers), moved)
    return moved


# --------------------------------------------------------------------------- one compaction


class _Output:
    """An output segment being written under its temporary name."""

    def __init__(self, directory: str, seg_no: int, codec=None) -> None:
        self.seg_no = seg_no
        self.key_ids: set[int] = set()  # of the records copied in (see Store.key_usage)
        self.path = os.path.join(directory, segment_name(seg_no))
        self.hint_path = os.path.join(directory, hint_name(seg_no))
        self.fd = os.open(self.path + ".tmp", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self.hint = HintWriter(seg_no, codec)
        self._buffer(SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, seg_no))

    def end(self) -> int:
        return self.size + self._pending_bytes

    def _buffer(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= _WRITE_BUFFER:
            self.flush()

    def add(self, data: bytes) -> int:
        offset = self.end()
        if offset + len(data) > MAX_OFFSET:
            raise StoreError(f"compaction output segment {self.seg_no} would pass the format's "
                             f"maximum offset")
        self._buffer(data)
        return offset

    def flush(self) -> None:
        for i in range(0, len(self._pending), 512):
            self.size += write_fully(self.fd, self._pending[i:i + 512], self.size)
        self._pending, self._pending_bytes = [], 0

    def finish(self) -> None:
        self.flush()
        os.fsync(self.fd)
        self.hint.write(self.hint_path + ".tmp", self.size)

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for name in (self.path + ".tmp", self.hint_path + ".tmp"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


class _Pacer:
    """Work in bounded steps: ``tick()`` often; it sleeps ``_PAUSE_S`` after every ``_STEP_S``
    of work, which releases the GIL to whichever thread is waiting for it."""

    __slots__ = ("_step_end",)

    def __init__(self) -> None:
        self._step_end = time.perf_counter() + _STEP_S

    def tick(self) -> None:
        if time.perf_counter() >= self._step_end:
            time.sleep(_PAUSE_S)
            self._step_end = time.perf_counter() + _STEP_S


def _presort_hint(hint: HintWriter, tick: Callable[[], None]) -> None:
    """Sort a hint's entries by key in bounded steps, so that the sort inside
    ``HintWriter.encode`` meets sorted input and takes one linear pass.  Sorting 100,000
    scrambled keys in one C call holds the GIL for ~100 ms, which no switch interval can
    interrupt; sorted runs of 2,048 and a merge in Python can be interrupted at any point."""
    entries = getattr(hint, "_entries", None)
    if not entries or len(entries) <= _SORT_RUN:
        return
    runs = []
    for i in range(0, len(entries), _SORT_RUN):
        runs.append(sorted(entries[i:i + _SORT_RUN], key=_first))
        tick()
    merged = []
    for n, entry in enumerate(heapq.merge(*runs, key=_first)):
        merged.append(entry)
        if not n % 256:
            tick()
    hint._entries = merged


def _first(entry: tuple):
    return entry[0]


class _Job:
    def __init__(self, store, inputs: list[int], first_out: int, reserved: int,
                 progress: Callable[[int, int], None] | None = None, *,
                 reencrypt: bool = True) -> None:
        self.store = store
        self.progress = progress
        self.reencrypt = reencrypt
        self.pacer = _Pacer()
        self.inputs = inputs
        self.next_out = first_out
        self.last_out = first_out + reserved - 1
        self.outputs: list[_Output] = []
        self.moves: list[tuple[bytes, int, int, int]] = []  # ikey, old loc, new loc, size
        self.catalog_moves: list[tuple[str, int, int, int]] = []
        self.expired: list[tuple[bytes, int]] = []
        self.records_in = 0
        self.records_out = 0
        self.hinted_inputs = 0  # input segments read through their hint file

    def _check_running(self) -> None:
        if self.store._closed or self.store._closing:
            raise StoreClosedError(f"the store at {self.store.path} closed during compaction")

    def _output_for(self) -> _Output:
        out = self.outputs[-1] if self.outputs else None
        if out is None or (out.end() >= self.store.segment_bytes and self.next_out <= self.last_out):
            out = _Output(self.store.path, self.next_out, self.store._codec)
            self.next_out += 1
            self.outputs.append(out)
        return out

    def copy(self) -> None:
        store = self.store
        locations = store._index._locations
        catalog_locations = store._catalog_locations
        now = store.clock_ms()
        reached = False
        tick = self.pacer.tick
        progress = self.progress
        reencrypt = self.reencrypt
        total = sum(store._segments[n].size for n in self.inputs)
        done = 0  # bytes of the inputs already scanned
        for seg_no in self.inputs:
            seg = store._segments[seg_no]
            hint = self._input_hint(seg)
            records = self._scanned(seg) if hint is None else self._hinted(seg, hint)
            for loc, flags, expire_ms, ikey, metadata, position, item in records:
                self.records_in += 1
                tick()
                if self.records_in % _BATCH == 0:
                    self._check_running()
                if progress is not None and self.records_in % _PROGRESS_EVERY == 0:
                    progress(done + position, total)
                if flags & rec.FLAG_CATALOG:
                    ns_id = ikey[2:].decode("ascii")
                    tombstone = flags & rec.FLAG_TOMBSTONE
                    if not tombstone and catalog_locations.get(ns_id) != loc:
                        continue
                elif locations.get(ikey) != loc:
                    continue  # overwritten, deleted, flushed: dead for good
                elif expire_ms and expire_ms <= now:
                    self.expired.append((ikey, loc))
                    continue
                header, data = self._record_bytes(seg, loc, item, reencrypt)
                out_flags, key_id = data[rec.FLAGS_AT], data[rec.KEY_ID_AT]
                new_size = len(data)
                out = self._output_for()
                offset = out.add(data)
                out.key_ids.add(key_id)
                new_loc = pack_location(out.seg_no, offset, new_size)
                out.hint.add(ikey, new_loc, header.seq, out_flags, expire_ms, metadata, key_id)
                self.records_out += 1
                if flags & rec.FLAG_CATALOG:
                    if not flags & rec.FLAG_TOMBSTONE:
                        self.catalog_moves.append((ns_id, loc, new_loc, new_size))
                else:
                    self.moves.append((ikey, loc, new_loc, new_size))
                if not reached:
                    out.flush()
                    reached = True
                    _reach("copying")
            done += seg.size
            if progress is not None:
                progress(done, total)

    def _input_hint(self, seg: SegmentFile):
        """The segment's hint file, when it has a usable one: it names every record's key,
        location and header fields, so dead records need not be read at all and live ones
        need not be decrypted (unless re-encrypted).  None: scan the segment instead."""
        path = os.path.join(self.store.path, hint_name(seg.seg_no))
        if not os.path.exists(path):
            return None
        try:
            hint = read_hint(path, seg.seg_no, seg.size, self.store._codec, seg.header_no)
        except HintError as exc:
            log.info("%s: compacting segment %d by scanning it: %s", self.store.path,
                     seg.seg_no, exc)
            return None
        self.hinted_inputs += 1
        return hint

    def _scanned(self, seg: SegmentFile):
        """Every record of ``seg`` as ``copy`` wants it, from a scan that verifies each one
        (checksum, and tag when encrypted) and refuses to go past damage."""
        for item in scan(seg, False, self.store._codec):
            if isinstance(item, Damage):
                raise StoreError(f"segment {seg.seg_no} has a corrupt record at offset "
                                 f"{item.offset} ({item.reason}); compaction will not copy "
                                 f"around it: run repair first")
            header = item.header
            ikey, metadata = rec.decode_index_key_meta(item.payload)
            loc = pack_location(seg.seg_no, item.offset, rec.HEADER_SIZE + header.payload_len)
            yield loc, header.flags, header.expire_ms, ikey, metadata, item.offset, item

    def _hinted(self, seg: SegmentFile, hint):
        """Every record of ``seg`` as ``copy`` wants it, from its hint: nothing is read here;
        ``_record_bytes`` reads and checks the records that are still live."""
        expire, metadata, flags = hint.expire_ms, hint.metadata, hint.flags
        size, count = seg.size, len(hint)
        for i, (ikey, loc) in enumerate(zip(hint.keys, hint.locations)):
            yield (loc, flags[i], expire.get(i, 0), ikey, metadata.get(i, b""),
                   size * i // count, None)

    def _record_bytes(self, seg: SegmentFile, loc: int, item, reencrypt: bool):
        """``(header, record to write)`` for a live record: its bytes as stored, or sealed
        again under the active key when it is under another one (key rotation)."""
        codec = self.store._codec
        if item is None:  # listed by a hint: read it, and check it as a read would
            _, offset, size = unpack_location(loc)
            raw = seg.read(offset, size or self.store._record_size(seg.seg_no, offset))
            header = valid_record_at(raw, 0, len(raw))
            if header is None or rec.HEADER_SIZE + header.payload_len != len(raw):
                raise StoreError(f"segment {seg.seg_no} has a corrupt record at offset "
                                 f"{offset} (it fails its checksum); compaction will not copy "
                                 f"around it: run repair first")
            if not (reencrypt and header.key_id != codec.key_id):
                return header, raw
            plain = (codec.open(raw, 0, header.key_id, header.payload_len)
                     if header.flags & rec.FLAG_ENCRYPTED else raw[rec.HEADER_SIZE:])
            return header, codec.reseal(header, plain)
        header = item.header
        if reencrypt and header.key_id != codec.key_id:
            # Under an older key (or plaintext): sealed again with the active key.
            return header, codec.reseal(header, item.payload)
        return header, rec.HEADER.pack(*header) + bytes(item.stored)

    def free(self) -> None:
        """Drop the per-key lists in steps: freeing a million tuples and ints in one go, as
        leaving the function would, holds the GIL for tens of milliseconds."""
        for entries in [self.moves, self.expired,
                        *(getattr(o.hint, "_entries", []) for o in self.outputs)]:
            while entries:
                del entries[-_SORT_RUN:]
                self.pacer.tick()

    def finish_outputs(self) -> None:
        for out in self.outputs:
            _presort_hint(out.hint, self.pacer.tick)
            out.finish()
        fsync_dir(self.store.path)
        _reach("outputs_synced")

    def discard(self) -> None:
        for out in self.outputs:
            out.discard()

    def write_manifest(self) -> None:
        """The manifest under its temporary name: the last step that needs free space."""
        manifest = os.path.join(self.store.path, MANIFEST)
        body = json.dumps({"version": MANIFEST_VERSION, "inputs": self.inputs,
                           "outputs": [o.seg_no for o in self.outputs]}).encode()
        fd = os.open(manifest + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_fully(fd, [body], 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self) -> None:
        path = self.store.path
        manifest = os.path.join(path, MANIFEST)
        os.rename(manifest + ".tmp", manifest)
        fsync_dir(path)
        _reach("manifest_written")
        for out in self.outputs:
            os.rename(out.path + ".tmp", out.path)
            os.rename(out.hint_path + ".tmp", out.hint_path)
        fsync_dir(path)
        _reach("outputs_renamed")

    def switch(self) -> None:
        """Point keys at their copies; after the commit, so a crash here changes nothing."""
        store = self.store
        with store._lock:
            if store._closed:
                for out in self.outputs:
                    os.close(out.fd)
                return
            for out in self.outputs:
                store._segment_key_ids[out.seg_no] = out.key_ids | {out.hint.key_id}
                store._segments[out.seg_no] = SegmentFile(out.path, out.seg_no, out.fd, out.size,
                                                          sealed=True)
        cache = store._read_cache  # a copy holds the same value: cached values move along
        for start in range(0, len(self.moves), _SWITCH_BATCH):
            with store._lock:
                if store._closed:
                    return
                locations = store._index._locations
                for ikey, old, new, size in self.moves[start:start + _SWITCH_BATCH]:
                    if locations.get(ikey) == old:
                        locations[ikey] = new
                        value = cache.values.get(old)
                        if value is not None:
                            cache.add(new, value)
                    else:
                        store._add_dead(new >> 42, size)
            if start == 0:
                _reach("switching")
            self.pacer.tick()
        with store._lock:
            if store._closed:
                return
            for ns_id, old, new, size in self.catalog_moves:
                if store._catalog_locations.get(ns_id) == old:
                    store._catalog_locations[ns_id] = new
                else:
                    store._add_dead(new >> 42, size)
            for ikey, old in self.expired:
                if store._index.get(ikey) == old:
                    store._expire(ikey)
            now = time.monotonic()
            for seg_no in self.inputs:
                seg = store._segments.pop(seg_no, None)
                store._dead_bytes.pop(seg_no, None)
                store._segment_key_ids.pop(seg_no, None)
                if seg is not None:
                    store._retired.append((now, seg))

    def retire_inputs(self) -> None:
        path = self.store.path
        for position, seg_no in enumerate(self.inputs):
            for name in (segment_name(seg_no), hint_name(seg_no)):
                try:
                    os.unlink(os.path.join(path, name))
                except FileNotFoundError:
                    pass
            if position == 0:
                _reach("input_deleted")
        fsync_dir(path)
        _reach("inputs_deleted")
        os.unlink(os.path.join(path, MANIFEST))
        fsync_dir(path)
        _reach("done")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def close_retired(store, *, all_: bool = False) -> None:
    """Close descriptors of retired segments once no lock-free reader can still hold them."""
    now = time.monotonic()
    keep = []
    for retired_at, seg in store._retired:
        if all_ or now - retired_at >= _RETIRED_GRACE_S:
            seg.close()
        else:
            keep.append((retired_at, seg))
    store._retired = keep


def compact(store, progress: Callable[[int, int], None] | None = None, *,
            reencrypt: bool = True) -> dict:
    """Compact every segment below a freshly started active one; returns a summary.

    ``progress(bytes_done, bytes_total)`` is called from the compacting thread while the
    inputs are copied (their bytes scanned so far, of all of them).

    Meanwhile the interpreter's switch interval is lowered to ``_SWITCH_INTERVAL_S``: the steps
    that cannot pause (encoding a hint file, a batch of the index switch) then hand the GIL to a
    waiting request after at most that long instead of 5 ms.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, _SWITCH_INTERVAL_S))
    try:
        with store.hints_paused():  # the segments it rewrites need no hint of their own
            return _compact(store, progress, reencrypt)
    finally:
        sys.setswitchinterval(previous)


def _compact(store, progress: Callable[[int, int], None] | None, reencrypt: bool = True) -> dict:
    started = time.perf_counter()
    with store._compaction_lock:
        store._check_open()
        close_retired(store)
        with store._lock:
            store._check_open()
            active = store._active
            if active.size <= SEGMENT_HEADER_SIZE and len(store._segments) == 1:
                return _summary(0, 0, 0, 0, 0, started)
            reserved = len(store._segments) + 1
            first_out = active.seg_no + 1
            if first_out + reserved > MAX_SEGMENT_NO:
                raise StoreError(
                    f"segment numbers are nearly exhausted (active segment {active.seg_no}, "
                    f"compaction needs {reserved + 1} more, the format's maximum is "
                    f"{MAX_SEGMENT_NO}); restart the process: opening the store renumbers its "
                    f"segments from 1")
            store._rotate(first_out + reserved)
            inputs = sorted(n for n in store._segments if n < first_out)
            bytes_before = sum(store._segments[n].size for n in inputs)
        _reach("reserved")
        job = _Job(store, inputs, first_out, reserved, progress, reencrypt=reencrypt)
        manifest = os.path.join(store.path, MANIFEST)
        try:
            job.copy()
            job.finish_outputs()
            job.write_manifest()
        except BaseException as exc:
            # Before the commit point: remove every file this run made, so a full disk gets
            # its space back and the store goes on as if compaction had never started.
            job.discard()
            _unlink_quietly(manifest + ".tmp")
            if isinstance(exc, OSError):
                raise StoreError(f"compaction stopped and changed nothing: could not write "
                                 f"to {store.path}: {os.strerror(exc.errno or 0)}") from exc
            raise
        try:
            job.commit()
        except BaseException:
            # Past the manifest only opening can sort the files out; writes go on meanwhile.
            log.exception("compaction of %s failed after its commit point; the next open "
                          "finishes it", store.path)
            raise
        job.switch()
        job.retire_inputs()
        job.free()
        bytes_after = sum(o.size for o in job.outputs)
        summary = _summary(len(inputs), len(job.outputs), bytes_before, bytes_after,
                           job.records_in - job.records_out, started)
        summary["segments_from_hints"] = job.hinted_inputs
        log.info("compacted %s: %s", store.path, summary)
        return summary


def _summary(n_in: int, n_out: int, before: int, after: int, dropped: int, started: float) -> dict:
    return {"segments_in": n_in, "segments_out": n_out, "bytes_before": before,
            "bytes_after": after, "records_dropped": dropped,
            "seconds": round(time.perf_counter() - started, 6)}


# --------------------------------------------------------------------------- automatic trigger


def needs_compaction(store, threshold: float) -> bool:
    """True when some sealed segment has at least ``threshold`` of its bytes dead."""
    with store._lock:
        active = store._active
        for seg_no, seg in store._segments.items():
            if seg is active or seg.size <= SEGMENT_HEADER_SIZE:
                continue
            if store._dead_bytes.get(seg_no, 0) >= threshold * seg.size:
                return True
    return False


class AutoCompactor:
    """A background thread that compacts when a sealed segment is mostly dead."""

    def __init__(self, store, threshold: float, interval_s: float = 1.0) -> None:
        self.store = store
        self.threshold = threshold
        self.interval_s = interval_s
        self.runs = 0
        self.last_error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgekv-compaction", daemon=True)

    def start(self) -> "AutoCompactor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if needs_compaction(self.store, self.threshold):
                    self.store.compact()
                    self.runs += 1
            except StoreClosedError:
                return
            except Exception as exc:  # keep serving; a corrupt segment stops auto compaction
                self.last_error = exc
                log.error("automatic compaction of %s failed: %s; not retrying until reopen",
                          self.store.path, exc)
                return
