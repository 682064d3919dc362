"""Offline proof of a data directory's health, and a repair that keeps every good record.

``verify_store`` reads every byte the store would ever serve: each record's checksum, each
hint file against the segment it describes, and replays the log the way recovery does to count
live keys.  It works on a *closed* data directory: it takes the directory lock and refuses
(``StoreLockedError``) while an edgekv process holds it, because a live store appends and
compacts under its feet.

``repair`` rewrites each damaged segment with its valid records only.  The originals are moved
into ``repair-<timestamp>/`` beside the segments first, so nothing is ever lost: if repair is
interrupted, copy them back.  Where a damaged record's header and key still parse, repair writes
a tombstone for that key with the damaged record's sequence number in its place: the newest
version of the key was lost, and letting an older version come back would serve stale (or
deleted) data as current.  Deleting the key is the honest outcome.

An encrypted store is checked with its key file (the same one ``Store.open`` would use): every
record's authentication tag is verified too, and a tag that fails counts as corruption, exactly
like a checksum.  Repair seals the tombstones it writes like any other record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from . import crypto
from . import record as rec
from .codec import PayloadCodec
from .compaction import MANIFEST, RENUMBER_ABOVE
from .errors import StoreError
from .hints import HINT_SUFFIX, HintError, hint_name, parse_hint
from .lockfile import DirectoryLock
from .segment import (SEGMENT_HEADER, SEGMENT_MAGIC, FORMAT_VERSION, Damage,
                      SegmentFile, write_fully, fsync_dir, parse_segment_name, scan, segment_name)


@dataclass(frozen=True, slots=True)
class CorruptRecord:
    segment: int
    offset: int
    length: int
    reason: str


@dataclass
class VerifyReport:
    path: str
    segments: int = 0
    records: int = 0
    live_keys: int = 0
    hints_checked: int = 0
    corrupt: list[CorruptRecord] = field(default_factory=list)
    #: an unfinished last write (a crash mid-append): opening truncates it, nothing acknowledged
    torn_tails: list[CorruptRecord] = field(default_factory=list)
    hint_problems: list[str] = field(default_factory=list)
    #: things that are not damage but worth knowing (an interrupted compaction, leftovers)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.hint_problems


@dataclass
class RepairReport:
    path: str
    before: VerifyReport
    backup_dir: str | None = None
    rewritten_segments: list[int] = field(default_factory=list)
    records_kept: int = 0
    tombstones_written: int = 0
    dry_run: bool = True


def _segment_numbers(path: str) -> list[int]:
    return sorted(n for n in (parse_segment_name(name) for name in os.listdir(path))
                  if n is not None)


def _codec_for(path: str, key_file: str | None) -> PayloadCodec:
    """A codec that reads the store's records: with its key ring when it is encrypted (or a
    key file is there for it), plaintext otherwise.  Nothing is written."""
    check = crypto.read_keycheck(path)
    encrypted = bool(check and check.get("encrypted"))
    if encrypted or os.path.exists(crypto.resolve_key_file(path, key_file)):
        return PayloadCodec(crypto.load_key_ring(path, encryption=True, key_file=key_file), 0)
    return PayloadCodec(None, 0)


def verify_store(path: str, *, now_ms: int | None = None,
                 key_file: str | None = None) -> VerifyReport:
    """Check every segment and hint file of the closed data directory at ``path``
    (``key_file``: as for ``Store.open``)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise StoreError(f"{path} is not a data directory")
    lock = DirectoryLock(path)
    lock.acquire()
    try:
        return _verify(path, now_ms if now_ms is not None else time.time_ns() // 1_000_000,
                       _codec_for(path, key_file))
    finally:
        lock.release()


def _verify(path: str, now_ms: int, codec: PayloadCodec) -> VerifyReport:
    report = VerifyReport(path)
    names = set(os.listdir(path))
    if MANIFEST in names:
        report.notes.append("an interrupted compaction will be finished when the store opens")
    numbers = _segment_numbers(path)
    if numbers and numbers[-1] > RENUMBER_ABOVE:
        report.notes.append(f"segment numbers reach {numbers[-1]}; opening renumbers the "
                            f"segments from 1")
    latest: dict[bytes, tuple[int, bool, int]] = {}  # ikey -> (seq, tombstone, expire_ms)
    catalog: dict[str, list[tuple[int, bool, int]]] = {}  # ns id -> [(seq, tombstone, number)]
    for position, seg_no in enumerate(numbers):
        is_last = position == len(numbers) - 1
        seg_path = os.path.join(path, segment_name(seg_no))
        try:
            seg = SegmentFile.open_existing(seg_path, seg_no, writable=False)
        except StoreError as exc:
            report.corrupt.append(CorruptRecord(seg_no, 0, os.path.getsize(seg_path), str(exc)))
            continue
        report.segments += 1
        records = {}
        try:
            for item in scan(seg, is_last, codec):
                if isinstance(item, Damage):
                    bad = CorruptRecord(seg_no, item.offset, item.length, item.reason)
                    (report.torn_tails if item.torn_tail else report.corrupt).append(bad)
                    continue
                report.records += 1
                header = item.header
                ikey, metadata = rec.decode_index_key_meta(item.payload)
                tombstone = bool(header.flags & rec.FLAG_TOMBSTONE)
                records[item.offset] = (rec.HEADER_SIZE + header.payload_len, header.seq,
                                        header.flags, header.expire_ms, ikey, metadata,
                                        header.key_id)
                if header.flags & rec.FLAG_CATALOG:
                    value = rec.decode_payload(item.payload)[3]
                    number = _number_of(value)
                    catalog.setdefault(ikey[2:].decode("ascii", "replace"), []).append(
                        (header.seq, tombstone, number))
                    continue
                prev = latest.get(ikey)
                if prev is None or prev[0] <= header.seq:
                    latest[ikey] = (header.seq, tombstone, header.expire_ms)
            if hint_name(seg_no) in names:
                damaged = {c.offset for c in report.corrupt if c.segment == seg_no}
                _check_hint(path, seg_no, seg.size, records, damaged, report, codec,
                            seg.header_no)
        finally:
            seg.close()
    for name in sorted(names):
        stem = name[:-len(HINT_SUFFIX)]
        if name.endswith(HINT_SUFFIX) and not (stem.isdigit() and int(stem) in numbers):
            report.notes.append(f"{name} has no segment; opening removes it")
    live_numbers, dead_numbers = set(), set()
    for versions in catalog.values():
        versions.sort()
        *older, (_, tombstone, number) = versions
        dead_numbers.update(n for _, _, n in older)
        (dead_numbers if tombstone else live_numbers).add(number)
    dead_numbers -= live_numbers
    for ikey, (_seq, tombstone, expire_ms) in latest.items():
        number = int.from_bytes(ikey[:2], "big")
        if tombstone or number in dead_numbers or (expire_ms and expire_ms <= now_ms):
            continue
        report.live_keys += 1
    return report


def _number_of(value: bytes) -> int:
    try:
        return int(json.loads(value).get("number", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


def _check_hint(path: str, seg_no: int, seg_size: int, records: dict, damaged: set,
                report: VerifyReport, codec: PayloadCodec, header_no: int | None = None) -> None:
    """Every hint entry must describe the record at its offset exactly; entries for records
    already reported corrupt are not held against the hint.  ``header_no``: the number in the
    segment's header, which the hint holds (the segment may have been renumbered since)."""
    report.hints_checked += 1
    try:
        with open(os.path.join(path, hint_name(seg_no)), "rb") as f:
            hint = parse_hint(f.read(), seg_no, seg_size, codec, header_no)
    except (OSError, HintError) as exc:
        report.hint_problems.append(f"segment {seg_no}: {exc}")
        return
    described = len(hint) - sum(1 for i in range(len(hint)) if hint.offset(i) in damaged)
    if described != len(records):
        report.hint_problems.append(f"segment {seg_no}: hint lists {len(hint)} records, the "
                                    f"segment holds {len(records)}")
        return
    for i, ikey in enumerate(hint.keys):
        offset = hint.offset(i)
        if offset in damaged:
            continue
        expected = records.get(offset)
        got = (hint.size(i) or (expected[0] if expected and expected[0] >= 16384 else -1),
               hint.seqs[i], hint.flags[i], hint.expire_ms.get(i, 0), ikey,
               hint.metadata.get(i, b""), hint.key_ids[i])
        if expected != got:
            report.hint_problems.append(f"segment {seg_no}: hint entry for offset {offset} does "
                                        f"not match the record there")
            return


def repair(path: str, confirm: bool = False, *, key_file: str | None = None) -> RepairReport:
    """Rewrite damaged segments without their damaged records (only with ``confirm=True``;
    otherwise report what would be done).  The directory must not be open."""
    path = os.path.abspath(path)
    lock = DirectoryLock(path)
    lock.acquire()
    try:
        codec = _codec_for(path, key_file)
        before = _verify(path, time.time_ns() // 1_000_000, codec)
        result = RepairReport(path, before, dry_run=not confirm)
        damaged = sorted({c.segment for c in before.corrupt + before.torn_tails})
        bad_hints = sorted(n for n in _segment_numbers(path)
                           if any(p.startswith(f"segment {n}:") for p in before.hint_problems))
        result.rewritten_segments = damaged
        if not confirm or not (damaged or bad_hints):
            return result
        backup = os.path.join(path, time.strftime("repair-%Y%m%dT%H%M%S", time.gmtime()))
        suffix = 0
        while os.path.exists(backup + (f"-{suffix}" if suffix else "")):
            suffix += 1
        backup += f"-{suffix}" if suffix else ""
        if codec.ring is not None and (crypto.read_keycheck(path) or {}).get("encrypted"):
            codec.ring.activate()  # tombstones are sealed: a fresh epoch for their nonces
            codec.refresh_keys()
        else:
            codec = PayloadCodec(None, 0)  # a plaintext store stays plaintext
        os.mkdir(backup)
        result.backup_dir = backup
        for seg_no in bad_hints:  # a bad hint only costs a scan; move it aside
            os.rename(os.path.join(path, hint_name(seg_no)), os.path.join(backup, hint_name(seg_no)))
        numbers = _segment_numbers(path)
        for seg_no in damaged:
            for name in (segment_name(seg_no), hint_name(seg_no)):
                if os.path.exists(os.path.join(path, name)):
                    os.rename(os.path.join(path, name), os.path.join(backup, name))
        fsync_dir(backup)
        fsync_dir(path)
        for seg_no in damaged:
            kept, tombstones = _rewrite(os.path.join(backup, segment_name(seg_no)), path, seg_no,
                                        is_last=seg_no == numbers[-1], codec=codec)
            result.records_kept += kept
            result.tombstones_written += tombstones
        fsync_dir(path)
        return result
    finally:
        lock.release()


def _rewrite(source: str, directory: str, seg_no: int, *, is_last: bool,
             codec: PayloadCodec) -> tuple[int, int]:
    seg = SegmentFile.open_existing(source, seg_no, writable=False)
    target = os.path.join(directory, segment_name(seg_no))
    fd = os.open(target + ".tmp", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    kept = tombstones = 0
    try:
        out = [SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0, seg_no)]
        for item in scan(seg, is_last, codec):
            if isinstance(item, Damage):
                if not item.torn_tail:
                    stone = _tombstone_for(seg, item, codec)
                    if stone is not None:
                        out.append(stone)
                        tombstones += 1
                continue
            out.append(rec.HEADER.pack(*item.header) + bytes(item.stored))
            kept += 1
        size = 0
        for i in range(0, len(out), 512):
            size += write_fully(fd, out[i:i + 512], size)
        os.fsync(fd)
    finally:
        os.close(fd)
        seg.close()
    os.rename(target + ".tmp", target)
    return kept, tombstones


def _tombstone_for(seg: SegmentFile, damage: Damage, codec: PayloadCodec) -> bytes | None:
    """A tombstone standing in for a damaged record whose header and key still parse."""
    head = seg.read(damage.offset, min(damage.length, rec.HEADER_SIZE + 2048))
    named = codec.damaged_index_key(head)
    if named is None:
        return None
    header, ikey = named
    ns = int.from_bytes(ikey[:2], "big")
    return codec.encode(header.seq, rec.FLAG_TOMBSTONE, 0, ns, ikey[2:], b"", b"")
