"""Hint files: what recovery needs from a sealed segment, without its values.

Scanning a segment at open reads and checksums every value byte, which is what makes opening a
big store slow.  A sealed segment never changes again, so a hint file beside it holds, per
record, exactly what the in-memory state needs (index key, location, sequence number,
expiration, metadata) and nothing else.  The layout is columnar so that loading turns
into a few bulk conversions (``array.frombytes``, one ``zip``) instead of a Python-level loop
per record; entries are sorted by index key so building the sorted index costs one merge.

Compaction writes one beside each output segment.  Every other sealed segment gets one too:
the store records each record's entry as it appends it to the active segment
(``HintColumns``), and when it seals that segment a background thread writes the hint from
those entries (``Store._write_seal_hint``; a segment reopened as the active one, whose earlier
writes this process never saw, is scanned once more instead), so opening a store scans only
the active segment.  Either way the file is written under
``.hint.tmp``, fsynced and renamed into place; a leftover ``.tmp`` is deleted at open.

A hint is trusted only when its own xxh3-64 checksum, its segment number and the size of the
segment it describes all match; otherwise recovery scans the segment as if there were no hint.
The number a hint holds (in its header and in every location) is the one in its segment's header,
the number the segment was created with.  Opening may rename a segment and its hint to a lower
number (``compaction.renumber_directory``) without rewriting either, so a hint is checked against
its segment's header and its locations are moved to the file's current number as it is loaded.
In an encrypted store the body (keys and metadata included) is sealed with AES-256-GCM like a
record (``engine/codec.py``), the 28-byte header as associated data; a tag that fails is one
more reason to scan instead.  ``docs/format.md`` is the prose version of the layout.
"""

from __future__ import annotations

import os
import re
import struct
from array import array
from dataclasses import dataclass
from itertools import accumulate, groupby

import xxhash

from .errors import StoreError
from .segment import give_back_free_memory

#: record flags that make a hint entry "special": replayed from the record itself
_SPECIAL = bytes(i & 0x09 for i in range(256))  # TOMBSTONE | CATALOG

HINT_MAGIC = b"EDGEKVHT"
HINT_VERSION = 2
HINT_SUFFIX = ".hint"
HINT_ENCRYPTED = 0x01
#: magic, version, flags, key id (0 unless encrypted), segment number, entry count, size of the
#: segment file it describes
HINT_HEADER = struct.Struct("<8sHBBIIQ")
HINT_HEADER_SIZE = HINT_HEADER.size  # 28
_COUNT = struct.Struct("<I")
_CHECKSUM = struct.Struct("<Q")


def hint_name(seg_no: int) -> str:
    return f"{seg_no:08d}{HINT_SUFFIX}"


class HintError(Exception):
    """A hint file that must not be trusted; the message says why."""


@dataclass(slots=True)
class Hint:
    """A loaded hint: parallel columns, one entry per record of the segment."""

    seg_no: int
    segment_size: int
    keys: list  # index keys (2-byte namespace + key), sorted
    locations: list  # packed as the index packs them (engine/index.py), segment included
    seqs: list
    flags: bytes  # record flags, as in each record's header
    key_ids: bytes  # each record's key id (0: plaintext)
    expire_ms: dict  # entry position -> expiration, only for entries that have one
    metadata: dict  # entry position -> metadata JSON, only for entries that have some
    sealed_with: int = 0  # key id the hint file itself is encrypted with (0: plaintext)

    def __len__(self) -> int:
        return len(self.keys)

    def offset(self, i: int) -> int:
        return (self.locations[i] >> 14) & 0xFFFFFFF

    def size(self, i: int) -> int:
        """The record's size, or 0 for records of 16 KiB or more (read the header)."""
        return self.locations[i] & 0x3FFF


class HintWriter:
    """Collects entries while compaction copies records, then writes the file in one go."""

    def __init__(self, seg_no: int, codec=None, seal_key_id: int | None = None) -> None:
        self.seg_no = seg_no
        self.codec = codec if codec is not None and codec.encrypting else None
        self.seal_key_id = seal_key_id  # None: the codec's active key
        self._entries: list[tuple] = []
        self.key_id = 0  # the key the file was sealed with, once written (0: plaintext)

    def add(self, ikey: bytes, location: int, seq: int, flags: int, expire_ms: int,
            metadata: bytes, key_id: int = 0) -> None:
        self._entries.append((ikey, location, seq, flags, expire_ms, metadata, key_id))

    def encode(self, segment_size: int) -> bytes:
        entries = sorted(self._entries, key=lambda e: e[0])
        return self.encode_columns(
            segment_size, len(entries), _le(array("H", (len(e[0]) for e in entries))),
            b"".join(e[0] for e in entries), _le(array("Q", (e[1] for e in entries))),
            _le(array("Q", (e[2] for e in entries))), bytes(e[3] for e in entries),
            bytes(e[6] for e in entries), [(i, e[4]) for i, e in enumerate(entries) if e[4]],
            [(i, e[5]) for i, e in enumerate(entries) if e[5]])

    def encode_columns(self, segment_size: int, n: int, key_lens: bytes, key_blob: bytes,
                       locations: bytes, seqs: bytes, flags: bytes, key_ids: bytes,
                       exp: list, meta: list) -> bytes:
        """The file from its ``n`` entries' columns, each already in the file's little-endian
        layout; ``exp`` and ``meta`` are ``(entry position, value)``."""
        codec = self.codec

        def header_for(key_id: int) -> bytes:
            return HINT_HEADER.pack(HINT_MAGIC, HINT_VERSION, HINT_ENCRYPTED if key_id else 0,
                                    key_id, self.seg_no, n, segment_size)

        parts = [
            key_lens, key_blob, locations, seqs, flags, key_ids,
            _COUNT.pack(len(exp)), _le(array("I", (i for i, _ in exp))),
            _le(array("Q", (m for _, m in exp))),
            _COUNT.pack(len(meta)), _le(array("I", (i for i, _ in meta))),
            _le(array("H", (len(m) for _, m in meta))), b"".join(m for _, m in meta),
        ]
        body = b"".join(parts)
        if codec is not None:
            header, body = codec.seal_blob(body, header_for, self.seal_key_id)
            self.key_id = HINT_HEADER.unpack_from(header)[3]
        else:
            header = header_for(0)
        data = header + body
        return data + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(data))

    def write(self, path: str, segment_size: int, data: bytes | None = None) -> None:
        """Write and fsync ``path`` (a temporary name: the caller renames it into place);
        ``data``: the encoded file, when the caller encoded it already."""
        if data is None:
            data = self.encode(segment_size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


#: One hint entry as ``HintColumns`` keeps it: location, sequence number, flags, key id, key
#: length, little-endian as the file stores each column.
_ROW = struct.Struct("<QQBBH")
_ROW_PACK = _ROW.pack
_ROW_SIZE = _ROW.size
#: ``(offset in a row, width)`` of each column.
_LOCATION, _SEQ, _FLAGS, _KEY_ID, _KEY_LEN = (0, 8), (8, 8), (16, 1), (17, 1), (18, 2)

#: Bytes of rows a ``HintColumns`` with a spill file keeps in memory before moving its rows and
#: keys there.  A full 64 MiB segment of small records has some 12 MB of entries, which would
#: otherwise stay in memory until the segment seals: about 12 bytes of RSS per key in a store
#: of a million keys, for data nothing reads before then.
SPILL_BYTES = 256 * 1024
SPILL_SUFFIX = ".hint.spill"
#: A chunk of the spill file: stored length, rows length, keys length, key id (0: plaintext).
_SPILL_CHUNK = struct.Struct("<IIIB")
#: What a sealed chunk is bound to: its segment and its place in the file.
_SPILL_AAD = struct.Struct("<8sIIIIB")


def spill_name(seg_no: int) -> str:
    return f"{seg_no:08d}{SPILL_SUFFIX}"


class HintSpill:
    """The scratch file where the active segment's older hint entries wait for its sealing.

    Written without fsync and never trusted by a later process (opening deletes every spill
    file: the active segment is scanned instead, as it always was).  In an encrypted store each
    chunk is sealed like a hint file, since it holds keys."""

    __slots__ = ("path", "seg_no", "codec", "fd", "size", "chunks")

    def __init__(self, path: str, seg_no: int, codec=None) -> None:
        self.path = path
        self.seg_no = seg_no
        self.codec = codec if codec is not None and codec.encrypting else None
        self.fd: int | None = None
        self.size = 0
        self.chunks = 0

    def _aad(self, chunk: int, rows_len: int, keys_len: int, key_id: int) -> bytes:
        return _SPILL_AAD.pack(b"EKVSPILL", self.seg_no, chunk, rows_len, keys_len, key_id)

    def write(self, rows: bytes, keys: bytes) -> bool:
        """Append one chunk; False (and nothing kept of it) when the file cannot take it."""
        key_id = 0
        body = rows + keys
        if self.codec is not None:
            aad, body = self.codec.seal_blob(
                body, lambda kid: self._aad(self.chunks, len(rows), len(keys), kid))
            key_id = aad[-1]
        data = _SPILL_CHUNK.pack(len(body), len(rows), len(keys), key_id) + body
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            if os.pwrite(self.fd, data, self.size) != len(data):
                raise OSError("short write")
        except OSError:
            return False
        self.size += len(data)
        self.chunks += 1
        return True

    def read(self) -> tuple[bytes, bytes]:
        """Every chunk's rows and keys, joined; ``HintError`` if the file is not what was
        written."""
        data = os.pread(self.fd, self.size, 0) if self.fd is not None else b""
        if len(data) != self.size:
            raise HintError(f"spill file {self.path} is shorter than written")
        rows, keys = [], []
        pos = 0
        for chunk in range(self.chunks):
            stored, rows_len, keys_len, key_id = _SPILL_CHUNK.unpack_from(data, pos)
            pos += _SPILL_CHUNK.size
            body = data[pos:pos + stored]
            pos += stored
            if self.codec is not None:
                try:
                    body = self.codec.open_blob(key_id, body,
                                                self._aad(chunk, rows_len, keys_len, key_id))
                except ValueError as exc:
                    raise HintError(f"spill file {self.path}: {exc}") from None
            elif key_id:
                raise HintError(f"spill file {self.path} is encrypted")
            if len(body) != rows_len + keys_len:
                raise HintError(f"spill file {self.path}: a chunk has the wrong length")
            rows.append(body[:rows_len])
            keys.append(body[rows_len:])
        return b"".join(rows), b"".join(keys)

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class HintColumns:
    """A sealed segment's hint entries in record order (nothing relies on the order): one
    packed row per record plus its index key, about 45 bytes per record and no Python object
    per record.  With a ``spill`` file only the newest ``SPILL_BYTES`` of rows stay in memory;
    the rest wait in the file (``HintSpill``) until the segment seals.

    Filled two ways: by the store as it appends each record to its active segment (so that
    sealing the segment needs no second read of it: the scan below costs 3 to 6 µs a record,
    most of it opening each encrypted payload again), and by ``sealed_segment_hint``'s scan for
    a segment whose writes this process did not all see (one reopened as the active segment).
    ``end`` is where the last record added ends; the columns describe the segment only if that
    is its size when sealed.  Rows rather than one array per column: ``add`` runs for every
    put, and two appends cost less than six; the columns are cut out of the rows at sealing.
    The owner calls ``discard`` when it no longer needs them, to delete the spill file.
    """

    __slots__ = ("seg_no", "end", "rows", "key_blob", "exp", "meta", "spill", "spill_at",
                 "spilled")

    def __init__(self, seg_no: int, end: int, spill: HintSpill | None = None) -> None:
        self.seg_no = seg_no
        self.end = end
        self.rows = bytearray()
        self.key_blob = bytearray()
        self.exp: list[tuple[int, int]] = []
        self.meta: list[tuple[int, bytes]] = []
        self.spill = spill
        #: rows in memory that trigger a move to the spill file (never, without one)
        self.spill_at = SPILL_BYTES if spill is not None else 1 << 62
        self.spilled = 0  # entries in the spill file

    def add(self, ikey, location: int, seq: int, flags: int, key_id: int, expire_ms: int,
            metadata, end: int) -> None:
        """One record: its index key (namespace + key), packed location, header fields,
        metadata JSON, and the offset where it ends."""
        if expire_ms or metadata:
            n = self.spilled + len(self.rows) // _ROW_SIZE
            if expire_ms:
                self.exp.append((n, expire_ms))
            if metadata:
                self.meta.append((n, bytes(metadata)))
        rows = self.rows
        rows += _ROW_PACK(location, seq, flags, key_id, len(ikey))
        self.key_blob += ikey
        self.end = end
        if len(rows) >= self.spill_at:
            self._spill_out()

    def _spill_out(self) -> None:
        rows = self.rows
        if self.spill.write(bytes(rows), bytes(self.key_blob)):
            self.spilled += len(rows) // _ROW_SIZE
            self.rows = bytearray()
            self.key_blob = bytearray()
            give_back_free_memory()
        else:  # no room on the disk: keep them in memory, as without a spill file
            self.spill_at = 1 << 62

    @property
    def nbytes(self) -> int:
        """About what the columns hold, in memory and spilled (metadata left out)."""
        return len(self.key_blob) + len(self.rows) + (self.spill.size if self.spill else 0)

    def discard(self) -> None:
        """Delete the spill file; the columns are of no more use."""
        if self.spill is not None:
            self.spill.discard()

    def encode(self, codec, segment_size: int,
               header_no: int | None = None) -> tuple[HintWriter, int, bytes] | None:
        """``(writer, segment size, encoded file)``, or None when the columns do not end where
        the segment does (or their spill file is not as written).  The hint is sealed with the
        key of the segment's own records (the newest one, if it holds several), so it adds no
        key to what the segment needs; a plaintext segment in an encrypted store gets a hint
        under the active key.  ``header_no``: the number in the segment's header, when opening
        renamed the segment (the hint is written under it; the columns hold the file's number)."""
        if segment_size != self.end:
            return None
        rows, key_blob = bytes(self.rows), bytes(self.key_blob)
        if self.spilled:
            try:
                old_rows, old_keys = self.spill.read()
            except (HintError, OSError):
                return None
            rows, key_blob = old_rows + rows, old_keys + key_blob
        key_ids = _column(rows, _KEY_ID)
        used = set(key_ids) - {0}
        stored_no = self.seg_no if header_no is None else header_no
        locations = _column(rows, _LOCATION)
        if stored_no != self.seg_no:
            locations = _le(array("Q", rebase_locations(_from_le("Q", locations), self.seg_no,
                                                        stored_no)))
        writer = HintWriter(stored_no, codec, max(used) if used else None)
        data = writer.encode_columns(segment_size, len(rows) // _ROW_SIZE,
                                     _column(rows, _KEY_LEN), key_blob,
                                     locations, _column(rows, _SEQ),
                                     _column(rows, _FLAGS), key_ids, self.exp, self.meta)
        return writer, segment_size, data


def _column(rows: bytes, field: tuple[int, int]) -> bytes:
    """One field of every row, little-endian: the bytes of that column in the file."""
    offset, width = field
    if width == 1:
        return bytes(rows[offset::_ROW_SIZE])
    column = bytearray(len(rows) // _ROW_SIZE * width)
    for i in range(width):
        column[i::width] = rows[offset + i::_ROW_SIZE]
    return bytes(column)


def sealed_segment_hint(seg, codec=None, tick=None) -> tuple[HintWriter, int, bytes] | None:
    """``(writer, segment size, encoded file)`` for a sealed segment, by scanning it once;
    None when the scan meets damage or a malformed payload, so that the segment keeps being
    scanned at open and recovery deals with the damage itself.  ``tick`` is called every 16
    records, to pace a background thread.
    """
    from . import record as rec
    from .index import pack_location
    from .segment import SEGMENT_HEADER_SIZE, Damage, scan

    seg_no = seg.seg_no
    size = os.fstat(seg.fd).st_size
    columns = HintColumns(seg_no, SEGMENT_HEADER_SIZE)
    prefix = rec.PAYLOAD_PREFIX.unpack_from
    prefix_size = rec.PAYLOAD_PREFIX_SIZE
    head = rec.HEADER_SIZE
    for n, item in enumerate(scan(seg, False, codec)):
        if isinstance(item, Damage):
            return None
        header = item.header
        payload = item.payload
        key_len, meta_len, _, _ = prefix(payload, 0)
        key_end = prefix_size + key_len
        if key_end + meta_len > len(payload):
            return None
        record_size = head + header.payload_len
        # payload[4:key_end]: namespace number (2 bytes) + key, the index key
        columns.add(payload[4:key_end], pack_location(seg_no, item.offset, record_size),
                    header.seq, header.flags, header.key_id, header.expire_ms,
                    payload[key_end:key_end + meta_len], item.offset + record_size)
        if tick is not None and not n & 15:
            tick()
    if os.fstat(seg.fd).st_size != size:
        return None  # not sealed after all
    return columns.encode(codec, size, getattr(seg, "header_no", seg_no))


def rebase_locations(locations, from_no: int, to_no: int) -> list:
    """Packed locations of segment ``from_no`` (every one of them), moved to segment ``to_no``."""
    delta = (to_no - from_no) << 42
    return [loc + delta for loc in locations]


def _le(arr: array) -> bytes:
    if arr.itemsize > 1 and struct.pack("=H", 1) != struct.pack("<H", 1):
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _from_le(typecode: str, data: bytes) -> array:
    arr = array(typecode)
    arr.frombytes(data)
    if arr.itemsize > 1 and struct.pack("=H", 1) != struct.pack("<H", 1):
        arr.byteswap()
    return arr


def read_hint(path: str, seg_no: int, segment_size: int, codec=None,
              header_no: int | None = None) -> Hint:
    """Load and validate a hint file; raises ``HintError`` saying what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise HintError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from None
    return parse_hint(data, seg_no, segment_size, codec, header_no)


def parse_hint(data: bytes, seg_no: int, segment_size: int | None, codec=None,
               header_no: int | None = None) -> Hint:
    """The hint of segment file ``seg_no`` (the number its name says), whose header says
    ``header_no`` (None: the same).  The hint must hold ``header_no``; the Hint returned has
    ``seg_no`` and locations in segment ``seg_no``, as the store addresses the segment now."""
    expected = seg_no if header_no is None else header_no
    if len(data) < HINT_HEADER_SIZE + _CHECKSUM.size:
        raise HintError(f"hint of segment {seg_no} is truncated ({len(data)} bytes)")
    (stored,) = _CHECKSUM.unpack_from(data, len(data) - _CHECKSUM.size)
    if xxhash.xxh3_64_intdigest(memoryview(data)[:-_CHECKSUM.size]) != stored:
        raise HintError(f"hint of segment {seg_no} fails its checksum")
    magic, version, hflags, key_id, stored_no, n, size = HINT_HEADER.unpack_from(data, 0)
    if magic != HINT_MAGIC:
        raise HintError(f"hint of segment {seg_no} has bad magic {magic!r}")
    if version != HINT_VERSION:
        raise HintError(f"hint of segment {seg_no} has version {version}, expected {HINT_VERSION}")
    if stored_no != expected:
        if expected == seg_no:
            raise HintError(f"hint says segment {stored_no}, its name says {seg_no}")
        raise HintError(f"hint of segment {seg_no} says segment {stored_no}, the segment's "
                        f"header says {expected}")
    if segment_size is not None and size != segment_size:
        raise HintError(f"hint of segment {seg_no} describes {size} bytes, the segment has "
                        f"{segment_size}")
    if hflags & HINT_ENCRYPTED:
        if codec is None:
            raise HintError(f"hint of segment {seg_no} is encrypted and encryption is off")
        try:
            data = bytes(HINT_HEADER_SIZE) + codec.open_blob(
                key_id, memoryview(data)[HINT_HEADER_SIZE:-_CHECKSUM.size],
                data[:HINT_HEADER_SIZE]) + bytes(_CHECKSUM.size)
        except (ValueError, KeyError, StoreError) as exc:  # tag failed, or no such key
            raise HintError(f"hint of segment {seg_no} cannot be opened: {exc}") from None
    try:
        pos = HINT_HEADER_SIZE

        def take(length: int) -> bytes:
            nonlocal pos
            if pos + length > len(data) - _CHECKSUM.size:
                raise HintError(f"hint of segment {seg_no}: sections overrun the file")
            chunk = data[pos:pos + length]
            pos += length
            return chunk

        key_lens = _from_le("H", take(2 * n))
        blob = take(sum(key_lens))
        # One struct format ("18s18s...", runs of equal lengths) splits every key in C.  A
        # ``Struct`` of its own, not ``struct.unpack``: that caches the compiled format, about
        # 32 bytes per key, for the life of the process.
        keys = list(struct.Struct("".join(f"{length}s" * len(list(run))
                                          for length, run in groupby(key_lens))).unpack(blob))
        locations = _from_le("Q", take(8 * n)).tolist()
        seqs = _from_le("Q", take(8 * n))  # an array: read once or twice, no int objects
        flags = take(n)
        key_ids = take(n)
        (n_exp,) = _COUNT.unpack(take(4))
        exp_idx = _from_le("I", take(4 * n_exp))
        exp_ms = _from_le("Q", take(8 * n_exp))
        (n_meta,) = _COUNT.unpack(take(4))
        meta_idx = _from_le("I", take(4 * n_meta))
        meta_lens = _from_le("H", take(2 * n_meta))
        meta_ends = list(accumulate(meta_lens))
        meta_blob = take(meta_ends[-1] if meta_ends else 0)
        if pos != len(data) - _CHECKSUM.size:
            raise HintError(f"hint of segment {seg_no} has {len(data) - _CHECKSUM.size - pos} "
                            f"unexplained bytes")
        metas = [meta_blob[a:b] for a, b in zip([0] + meta_ends[:-1], meta_ends)]
        if any(i >= n for i in exp_idx) or any(i >= n for i in meta_idx):
            raise HintError(f"hint of segment {seg_no} refers to entries it does not have")
        if n and (min(locations) >> 42 != expected or max(locations) >> 42 != expected):
            raise HintError(f"hint of segment {seg_no} has locations in another segment")
    except struct.error as exc:
        raise HintError(f"hint of segment {seg_no} is malformed: {exc}") from None
    if expected != seg_no:  # renamed by renumbering: address the records as the file is named
        locations = rebase_locations(locations, expected, seg_no)
    return Hint(seg_no, size, keys, locations, seqs, flags, key_ids,
                dict(zip(exp_idx, exp_ms)), dict(zip(meta_idx, metas)),
                key_id if hflags & HINT_ENCRYPTED else 0)


def apply_hint(store, seg, hint: Hint, latest, catalog_latest: dict) -> None:
    """Replay a hint into recovery's state, as scanning its segment would have.

    Flagged entries (catalog records, tombstones) are few and need the record itself, so they
    are read from the segment, checked and replayed one by one; everything is validated before
    anything is applied, so a ``HintError`` leaves the state untouched for the fallback scan.
    """
    from . import record as rec
    from .segment import ScannedRecord

    n = len(hint)
    seg_no = hint.seg_no
    flags = hint.flags.translate(_SPECIAL)
    special = [m.start() for m in re.finditer(rb"[^\x00]", flags)]
    replays = []
    for i in special:
        offset, size = hint.offset(i), hint.size(i)
        if not size:
            head = seg.read(offset, rec.HEADER_SIZE)
            size = rec.HEADER_SIZE + rec.parse_header(head).payload_len if len(head) == \
                rec.HEADER_SIZE else 0
        buf = seg.read(offset, size)
        if not size or len(buf) != size:
            raise HintError(f"hint of segment {seg_no}: record at offset {offset} is cut short")
        header = rec.parse_header(buf)
        if (header.magic != rec.RECORD_MAGIC or rec.HEADER_SIZE + header.payload_len != size
                or header.seq != hint.seqs[i] or not rec.verify(buf, 0, header.payload_len,
                                                                header.checksum)):
            raise HintError(f"hint of segment {seg_no}: record at offset {offset} does not "
                            f"match it")
        if header.flags & rec.FLAG_ENCRYPTED:
            if store._codec is None:
                raise HintError(f"hint of segment {seg_no}: encrypted record, encryption is off")
            try:
                plain = store._codec.open(buf, 0, header.key_id, header.payload_len)
            except ValueError as exc:
                raise HintError(f"hint of segment {seg_no}: record at offset {offset}: "
                                f"{exc}") from None
            replays.append(ScannedRecord(offset, header, plain, memoryview(buf)[rec.HEADER_SIZE:]))
            continue
        replays.append(ScannedRecord(offset, header, memoryview(buf)[rec.HEADER_SIZE:]))
    top = max(hint.seqs, default=0)
    if top > store._seq:
        store._seq = top
    for item in replays:
        store._replay(seg_no, item, latest, catalog_latest)
    locs = hint.locations
    keys = hint.keys
    if special:
        skip = set(special)
        if special == list(range(len(special))):
            normal = range(len(special), n)
        else:
            normal = [i for i in range(n) if i not in skip]
    else:
        normal = range(n)
    locations = latest.locations
    if isinstance(normal, range):
        pairs = zip(keys[normal.start:], locs[normal.start:])
    else:
        pairs = ((keys[i], locs[i]) for i in normal)
    # The usual case, a compacted segment whose keys appear nowhere else yet, is one bulk
    # update; ``isdisjoint`` (in C) proves there is nothing to compare first.
    if locations.keys().isdisjoint(keys):
        before = len(locations)
        locations.update(pairs)
        if len(locations) - before == len(normal):
            skip_set = set(special)
            latest.expire_ms.update((keys[i], ms) for i, ms in hint.expire_ms.items()
                                    if i not in skip_set)
            latest.metadata.update((keys[i], m) for i, m in hint.metadata.items()
                                   if i not in skip_set)
            return
        for ikey in keys:  # duplicate keys in one hint: replay them in order instead
            locations.pop(ikey, None)
    seqs = hint.seqs
    expire, metadata = hint.expire_ms, hint.metadata
    for i in sorted(normal, key=lambda j: seqs[j]):
        ikey = keys[i]
        prev = locations.get(ikey)
        if prev is not None:
            prev_loc = prev if prev >= 0 else ~prev
            if store._seq_at(prev_loc) > seqs[i]:
                store._add_dead_location(locs[i])
                continue
            if prev >= 0:
                store._add_dead_location(prev_loc)
        latest.record(ikey, locs[i], False, expire.get(i, 0), metadata.get(i, b""))
