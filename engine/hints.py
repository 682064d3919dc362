"""Hint files: what recovery needs from a compacted segment, without its values.

Scanning a segment at open reads and checksums every value byte, which is what makes opening a
big store slow.  A compacted segment never changes again, so compaction writes beside it a hint
file holding, per record, exactly what the in-memory state needs (index key, location, sequence
number, expiration, metadata) and nothing else.  The layout is columnar so that loading turns
into a few bulk conversions (``array.frombytes``, one ``zip``) instead of a Python-level loop
per record; entries are sorted by index key so building the sorted index costs one merge.

A hint is trusted only when its own xxh3-64 checksum, its segment number and the size of the
segment it describes all match; otherwise recovery scans the segment as if there were no hint.
``docs/format.md`` is the prose version of the layout.
"""

from __future__ import annotations

import os
import re
import struct
from array import array
from dataclasses import dataclass
from itertools import accumulate, groupby

import xxhash

HINT_MAGIC = b"EDGEKVHT"
HINT_VERSION = 1
HINT_SUFFIX = ".hint"
#: magic, version, flags, segment number, entry count, size of the segment file it describes
HINT_HEADER = struct.Struct("<8sHHIIQ")
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
    flags: bytes  # record flags (tombstone, catalog)
    expire_ms: dict  # entry position -> expiration, only for entries that have one
    metadata: dict  # entry position -> metadata JSON, only for entries that have some

    def __len__(self) -> int:
        return len(self.keys)

    def offset(self, i: int) -> int:
        return (self.locations[i] >> 14) & 0xFFFFFFF

    def size(self, i: int) -> int:
        """The record's size, or 0 for records of 16 KiB or more (read the header)."""
        return self.locations[i] & 0x3FFF


class HintWriter:
    """Collects entries while compaction copies records, then writes the file in one go."""

    def __init__(self, seg_no: int) -> None:
        self.seg_no = seg_no
        self._entries: list[tuple] = []

    def add(self, ikey: bytes, location: int, seq: int, flags: int, expire_ms: int,
            metadata: bytes) -> None:
        self._entries.append((ikey, location, seq, flags, expire_ms, metadata))

    def encode(self, segment_size: int) -> bytes:
        entries = sorted(self._entries, key=lambda e: e[0])
        n = len(entries)
        key_lens = array("H", (len(e[0]) for e in entries))
        locations = array("Q", (e[1] for e in entries))
        seqs = array("Q", (e[2] for e in entries))
        flags = bytes(e[3] for e in entries)
        exp = [(i, e[4]) for i, e in enumerate(entries) if e[4]]
        meta = [(i, e[5]) for i, e in enumerate(entries) if e[5]]
        parts = [
            HINT_HEADER.pack(HINT_MAGIC, HINT_VERSION, 0, self.seg_no, n, segment_size),
            _le(key_lens), b"".join(e[0] for e in entries),
            _le(locations), _le(seqs), flags,
            _COUNT.pack(len(exp)), _le(array("I", (i for i, _ in exp))),
            _le(array("Q", (m for _, m in exp))),
            _COUNT.pack(len(meta)), _le(array("I", (i for i, _ in meta))),
            _le(array("H", (len(m) for _, m in meta))), b"".join(m for _, m in meta),
        ]
        body = b"".join(parts)
        return body + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(body))

    def write(self, path: str, segment_size: int) -> None:
        """Write and fsync ``path`` (a temporary name: the caller renames it into place)."""
        data = self.encode(segment_size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


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


def read_hint(path: str, seg_no: int, segment_size: int) -> Hint:
    """Load and validate a hint file; raises ``HintError`` saying what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise HintError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from None
    return parse_hint(data, seg_no, segment_size)


def parse_hint(data: bytes, seg_no: int, segment_size: int | None) -> Hint:
    if len(data) < HINT_HEADER_SIZE + _CHECKSUM.size:
        raise HintError(f"hint of segment {seg_no} is truncated ({len(data)} bytes)")
    (stored,) = _CHECKSUM.unpack_from(data, len(data) - _CHECKSUM.size)
    if xxhash.xxh3_64_intdigest(memoryview(data)[:-_CHECKSUM.size]) != stored:
        raise HintError(f"hint of segment {seg_no} fails its checksum")
    magic, version, _flags, stored_no, n, size = HINT_HEADER.unpack_from(data, 0)
    if magic != HINT_MAGIC:
        raise HintError(f"hint of segment {seg_no} has bad magic {magic!r}")
    if version != HINT_VERSION:
        raise HintError(f"hint of segment {seg_no} has version {version}, expected {HINT_VERSION}")
    if stored_no != seg_no:
        raise HintError(f"hint says segment {stored_no}, its name says {seg_no}")
    if segment_size is not None and size != segment_size:
        raise HintError(f"hint of segment {seg_no} describes {size} bytes, the segment has "
                        f"{segment_size}")
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
        # One struct format ("18s18s...", runs of equal lengths) splits every key in C.
        keys = list(struct.unpack("".join(f"{length}s" * len(list(run))
                                          for length, run in groupby(key_lens)), blob))
        locations = _from_le("Q", take(8 * n)).tolist()
        seqs = _from_le("Q", take(8 * n)).tolist()
        flags = take(n)
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
        if n and (min(locations) >> 42 != seg_no or max(locations) >> 42 != seg_no):
            raise HintError(f"hint of segment {seg_no} has locations in another segment")
    except struct.error as exc:
        raise HintError(f"hint of segment {seg_no} is malformed: {exc}") from None
    return Hint(seg_no, size, keys, locations, seqs, flags, dict(zip(exp_idx, exp_ms)),
                dict(zip(meta_idx, metas)))


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
    flags = hint.flags
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
