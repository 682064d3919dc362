"""Segment files: append-only logs of records, read through a mapping and scanned at recovery.

A segment starts with a 16-byte header (magic ``EDGEKVSG``, format version, flags, segment
number) and then holds records back to back (``engine/record.py``).  The file name's number is
the segment's place in the log and the one locations use; the header's number is the one the
segment was created with.  They differ only after opening renumbered the segments
(``compaction.renumber_directory``), which renames files to lower numbers and never rewrites
them, so the header's number is never below the name's.

Recovery follows LevelDB's rule for telling a torn write from corruption:

* a record that is incomplete or fails its checksum, with **no valid record after it**, at the
  end of the *last* segment is a write that never finished: the log ends there and the tail is
  truncated;
* any other bad record is corruption: it is reported with its segment and offset, skipped, and
  the scan resynchronises on the next record whose magic and checksum are valid.  Resync
  matters because a flipped length byte would otherwise hide every record after it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import struct
import sys
from dataclasses import dataclass
from typing import Iterator

from . import record as rec
from .errors import StoreError, WriteFailedError

log = logging.getLogger("edgekv.engine")


def linux_libc_call(name: str, argtypes: tuple | None = None):
    """A C library function ``os`` does not offer (``sync_file_range``, ``malloc_trim``), on
    Linux; None elsewhere, and callers then do without it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    if argtypes is not None:
        call.argtypes = argtypes
    return call


_MALLOC_TRIM = linux_libc_call("malloc_trim")


def give_back_free_memory() -> None:
    """Return freed heap pages to the system (glibc's ``malloc_trim``).

    Loading hints, building the index and collecting hint entries allocate and free megabytes
    at a time; glibc keeps such memory for reuse, which shows as RSS that no data needs (some
    8 to 12 bytes per key of a million-key store).  A call costs about a microsecond when there
    is nothing to return.  Elsewhere (no glibc) this does nothing."""
    trim = _MALLOC_TRIM
    if trim is not None:
        trim(0)


_SYNC_FILE_RANGE = linux_libc_call(
    "sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint))
_SYNC_FILE_RANGE_WRITE = 2  # start writing dirty pages back; wait for nothing

SEGMENT_MAGIC = b"EDGEKVSG"
FORMAT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sHHI")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 16
SEGMENT_SUFFIX = ".seg"


def segment_name(seg_no: int) -> str:
    return f"{seg_no:08d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    stem = name[: -len(SEGMENT_SUFFIX)]
    return int(stem) if stem.isdigit() else None


def fsync_dir(path: str) -> None:
    """Make a create, rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentFile:
    """One open segment: appends go to the end, reads are positional and lock-free.

    Reads slice a read-only mapping of the file (``view``) instead of making a ``pread`` system
    call each: about 1 µs less per read that misses the read cache.  The mapping covers a prefix
    of bytes already written, and written bytes never change, so no reader can see them move:
    a sealed segment is mapped whole; the active one is mapped again each time writes have run
    ``MAP_STEP`` bytes past its mapping, and bytes beyond the mapping are read with ``pread``.
    An old mapping is dropped, not closed: a reader still slicing it keeps it alive.  Mapped
    pages are the kernel's page cache, shared and reclaimable; they count in the process's RSS
    as file-backed memory (INFO's ``used_memory`` leaves them out).
    """

    __slots__ = ("path", "seg_no", "header_no", "fd", "size", "sealed", "view", "_map_retry_at",
                 "flushed_size")

    #: How far writes may run past the active segment's mapping before it is made again.
    MAP_STEP = 4 * 1024 * 1024

    def __init__(self, path: str, seg_no: int, fd: int, size: int, sealed: bool,
                 header_no: int | None = None) -> None:
        self.path = path
        self.seg_no = seg_no
        #: the number in the segment's header, the one it was created with: its hint file is
        #: written under it (``engine/hints.py``); ``seg_no`` (the file name's) when not renamed
        self.header_no = seg_no if header_no is None else header_no
        self.fd = fd
        self.size = size
        self.sealed = sealed
        self.view: mmap.mmap | None = None
        self._map_retry_at = 0  # after a refused mapping, the next try waits for more writes
        #: bytes handed to the disk: fsynced, or (``fsync="no"``) written back, as of the start
        #: of the last such call.  The syncer acts early when much more than that has been
        #: written (``GroupCommit``).
        self.flushed_size = size
        if sealed:
            self.map_written(size, step=0)

    def seal(self) -> None:
        """No more appends (every byte is in the file): map the whole segment."""
        self.sealed = True
        self.map_written(self.size, step=0)

    def map_written(self, end: int, step: int = MAP_STEP) -> None:
        """The file holds every byte below ``end``: map them, when the mapping lags by at
        least ``step`` bytes.  Called by the writer, under the store's lock."""
        view = self.view
        if end - (len(view) if view is not None else 0) >= max(step, 1) and \
                end > SEGMENT_HEADER_SIZE and end >= self._map_retry_at:
            try:
                self.view = mmap.mmap(self.fd, end, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:  # e.g. out of address space or map count:
                # never fatal, as the write it follows already succeeded; reads past the old
                # mapping use pread.  Tried again after another step of writes, not per write.
                self._map_retry_at = end + self.MAP_STEP
                log.warning("could not map %s for reads (%s); reading it with pread", self.path,
                            exc)

    @classmethod
    def create(cls, directory: str, seg_no: int) -> "SegmentFile":
        """Create a segment atomically: header written and fsynced under a temporary name, then
        renamed, so a crash never leaves a segment without its header."""
        path = os.path.join(directory, segment_name(seg_no))
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        header = SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, seg_no)
        try:
            write_fully(fd, [header], 0)
            os.fsync(fd)
            if os.path.exists(path):
                raise FileExistsError(f"segment {path} already exists")
            os.rename(tmp, path)
        except OSError:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        fsync_dir(directory)
        return cls(path, seg_no, fd, SEGMENT_HEADER_SIZE, sealed=False)

    @classmethod
    def open_existing(cls, path: str, seg_no: int, writable: bool) -> "SegmentFile":
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        header = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
        if len(header) < SEGMENT_HEADER_SIZE:
            os.close(fd)
            raise StoreError(f"segment {path} is shorter than its {SEGMENT_HEADER_SIZE}-byte header")
        magic, version, _flags, stored_no = SEGMENT_HEADER.unpack(header)
        if magic != SEGMENT_MAGIC:
            os.close(fd)
            raise StoreError(f"{path} is not an edgekv segment (bad magic {magic!r})")
        if version != FORMAT_VERSION:
            os.close(fd)
            raise StoreError(f"segment {path} has format version {version}; "
                             f"this edgekv reads version {FORMAT_VERSION}")
        if stored_no < seg_no:
            # Renumbering only ever renames a segment to a lower number.
            os.close(fd)
            raise StoreError(f"segment {path} says it is number {stored_no}, below the number "
                             f"its name says ({seg_no}): it was not renamed by edgekv")
        size = os.fstat(fd).st_size
        return cls(path, seg_no, fd, size, sealed=not writable, header_no=stored_no)

    def append(self, buffers: list) -> int:
        """Write ``buffers`` at the end; return the offset they start at."""
        offset = self.size
        try:
            # Positional writes: the file offset is never relied on, so reopening a segment
            # or truncating a torn tail cannot make a write land in the wrong place.
            written = write_fully(self.fd, buffers, offset)
        except OSError as exc:
            # Undo a partial append so the next record does not land after garbage.
            self._rollback(offset)
            raise WriteFailedError(_describe_os_error("write to", self.path, exc)) from exc
        self.size = offset + written
        self.map_written(self.size)
        return offset

    def _rollback(self, offset: int) -> None:
        try:
            os.ftruncate(self.fd, offset)
        except OSError:
            pass

    def sync(self) -> None:
        size = self.size
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise WriteFailedError(_describe_os_error("fsync", self.path, exc)) from exc
        self.flushed_size = size

    def start_write_back(self) -> None:
        """Have the kernel start writing what was appended back to disk, without waiting and
        without a durability promise: under ``fsync="no"`` the fsync that seals the segment then
        finds little left to flush.  Best effort (nothing happens where the call is missing)."""
        size = self.size
        start = self.flushed_size & ~(mmap.PAGESIZE - 1)  # earlier pages were handed over
        if _SYNC_FILE_RANGE is not None and self.fd >= 0 and size > start:
            _SYNC_FILE_RANGE(self.fd, start, size - start, _SYNC_FILE_RANGE_WRITE)
        self.flushed_size = size

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``, fewer at the end of the file (as ``pread``)."""
        view = self.view
        if view is not None and offset + size <= len(view):
            return view[offset:offset + size]
        return os.pread(self.fd, size, offset)

    def truncate(self, size: int) -> None:
        self.view = None  # it may reach past the new end, where a read would fault
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)
        self.size = size

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def write_fully(fd: int, buffers: list, offset: int) -> int:
    """``pwritev`` at ``offset`` until every byte is out: a short write must not lose the rest."""
    total = sum(len(b) for b in buffers)
    if len(buffers) == 1:
        written = os.pwrite(fd, buffers[0], offset)
    else:
        written = os.pwritev(fd, buffers, offset)
    if written == total:
        return total
    data = memoryview(b"".join(bytes(b) for b in buffers))
    while written < total:
        n = os.pwrite(fd, data[written:], offset + written)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        written += n
    return total


def _describe_os_error(action: str, path: str, exc: OSError) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"could not {action} {path}: {reason}"


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    offset: int
    header: rec.RecordHeader
    #: the plaintext payload (decrypted when the record is encrypted; a value flagged
    #: COMPRESSED is still compressed); a memoryview is valid only until the scan moves on
    payload: memoryview | bytes
    #: the payload as stored (the same object as ``payload`` for plaintext records)
    raw: memoryview | None = None

    @property
    def stored(self):
        return self.payload if self.raw is None else self.raw


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes that are not a valid record; ``length`` bytes from ``offset`` were skipped."""

    seg_no: int
    offset: int
    length: int
    reason: str
    torn_tail: bool = False


def valid_record_at(buf, offset: int, end: int) -> rec.RecordHeader | None:
    """The header of the whole, checksummed record at ``offset`` (ending by ``end``), else
    None: what a scan accepts, and what compaction checks a record listed by a hint against."""
    if offset + rec.HEADER_SIZE > end:
        return None
    header = rec.parse_header(buf, offset)
    if header.magic != rec.RECORD_MAGIC or header.flags & ~rec.KNOWN_FLAGS:
        return None
    if offset + rec.HEADER_SIZE + header.payload_len > end:
        return None
    if not rec.verify(buf, offset, header.payload_len, header.checksum):
        return None
    return header


def _resync(buf, start: int, end: int) -> int | None:
    """Offset of the next valid record after ``start``, or None."""
    pos = start
    magic = rec.MAGIC_BYTES
    while True:
        hit = buf.find(magic, pos + 1, end)
        if hit < 0:
            return None
        candidate = hit - 8
        if candidate > start and valid_record_at(buf, candidate, end) is not None:
            return candidate
        pos = hit


#: The scan drops the pages it has read from this process's mapping every so many bytes: they
#: stay in the page cache, but do not count in the RSS of a process that is scanning a 64 MiB
#: segment in the background (hint files) or at open.  Nothing before the current record is
#: read again (and would simply fault back in if it were).
_RELEASE_STEP = 4 * 1024 * 1024
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def scan(segment: SegmentFile, is_last: bool, codec=None) -> Iterator[ScannedRecord | Damage]:
    """Yield every valid record of ``segment`` in order, and a Damage for every bad stretch.

    A torn tail (only possible when ``is_last``) is yielded as ``Damage(torn_tail=True)`` and
    ends the scan; the caller truncates the file at its offset.

    Encrypted records are opened with ``codec`` (``engine/codec.py``).  One whose checksum is
    right but whose authentication tag fails is a Damage like a checksum failure (never torn:
    a torn write cannot produce a valid checksum); a record under a key the codec lacks, or
    any encrypted record without a codec, stops the scan with a ``StoreError``.
    """
    end = os.fstat(segment.fd).st_size
    if end <= SEGMENT_HEADER_SIZE:
        return
    with mmap.mmap(segment.fd, end, access=mmap.ACCESS_READ) as buf:
        offset = SEGMENT_HEADER_SIZE
        released = 0  # pages before this were handed back (see _RELEASE_STEP)
        while offset < end:
            if offset - released >= _RELEASE_STEP and _DONTNEED is not None:
                upto = offset - offset % mmap.PAGESIZE
                buf.madvise(_DONTNEED, released, upto - released)
                released = upto
            header = valid_record_at(buf, offset, end)
            if header is not None:
                payload_start = offset + rec.HEADER_SIZE
                payload_end = payload_start + header.payload_len
                plain = None
                if header.flags & rec.FLAG_ENCRYPTED:
                    if codec is None:
                        raise StoreError(f"segment {segment.path} holds encrypted records; open "
                                         f"the store with encryption on and its key file")
                    try:
                        plain = codec.open(buf, offset, header.key_id, header.payload_len)
                    except ValueError as exc:  # codec.PayloadError: the tag failed
                        yield Damage(segment.seg_no, offset, payload_end - offset, str(exc))
                        offset = payload_end
                        continue
                view = memoryview(buf)[payload_start:payload_end]
                try:
                    if plain is None:
                        yield ScannedRecord(offset, header, view)
                    else:
                        yield ScannedRecord(offset, header, plain, view)
                finally:
                    view.release()
                offset = payload_end
                continue
            reason = _diagnose(buf, offset, end)
            nxt = _resync(buf, offset, end)
            if nxt is None:
                yield Damage(segment.seg_no, offset, end - offset, reason, torn_tail=is_last)
                return
            yield Damage(segment.seg_no, offset, nxt - offset, reason)
            offset = nxt


def _diagnose(buf, offset: int, end: int) -> str:
    if offset + rec.HEADER_SIZE > end:
        return f"incomplete header ({end - offset} of {rec.HEADER_SIZE} bytes)"
    header = rec.parse_header(buf, offset)
    if header.magic != rec.RECORD_MAGIC:
        return f"bad record magic 0x{header.magic:04x}"
    if header.flags & ~rec.KNOWN_FLAGS:
        return f"unknown flags 0x{header.flags:02x}"
    if offset + rec.HEADER_SIZE + header.payload_len > end:
        return (f"record claims {header.payload_len} payload bytes, "
                f"only {end - offset - rec.HEADER_SIZE} remain")
    return "checksum mismatch"
