"""Helpers shared by the engine tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine import Limits, Store

TIME_NOW_S = 1000  # Miniflare's fake "now" in its KV tests
TEST_LIMITS = Limits(max_value_bytes=1024, max_bulk_get_bytes=1024)  # Miniflare's test mode
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeClock:
    """A clock for ``Store.open(clock=...)``: returns ``now_ms`` until a test moves it."""

    def __init__(self, now_ms: int = TIME_NOW_S * 1000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    @property
    def now_s(self) -> int:
        return self.now_ms // 1000


def segment_paths(directory) -> list[str]:
    """The segment files of a data directory, in number order."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".seg"))
    return [os.path.join(str(directory), n) for n in names]


def flip_byte(path: str, offset: int, mask: int = 0xFF) -> None:
    """XOR one byte of a file in place (through its own descriptor, as bit rot would)."""
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, 1, offset)
        assert len(old) == 1, f"{path} has no byte at {offset}"
        os.pwrite(fd, bytes([old[0] ^ mask]), offset)
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- on-disk format
# A deliberately independent reader of docs/format.md, so fault-injection tests do not trust
# the engine's own scanner to tell them where records are.

SEGMENT_HEADER_SIZE = 16
RECORD_HEADER = struct.Struct("<QHBBIQQ")  # checksum, magic, flags, key_id, payload_len, seq, expire_ms
RECORD_HEADER_SIZE = RECORD_HEADER.size
PAYLOAD_PREFIX = struct.Struct("<HH")  # key_len, meta_len; then ns as 2 big-endian bytes
FLAG_TOMBSTONE = 0x01
FLAG_ENCRYPTED = 0x04
FLAG_CATALOG = 0x08


@dataclass(frozen=True)
class DiskRecord:
    offset: int
    size: int
    flags: int
    seq: int
    expire_ms: int
    ns: int
    key: bytes

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def is_catalog(self) -> bool:
        return bool(self.flags & FLAG_CATALOG)


def data_keys(directory) -> dict[int, bytes]:
    """The AES keys of an encrypted data directory by key id, read from the key file its
    ``KEYCHECK`` names; empty for a plaintext store."""
    check_path = os.path.join(str(directory), "KEYCHECK")
    if not os.path.exists(check_path):
        return {}
    with open(check_path) as f:
        check = json.load(f)
    if not check.get("encrypted"):
        return {}
    with open(check["key_file"]) as f:
        ring = json.load(f)
    return {int(kid): base64.b64decode(entry["key"]) for kid, entry in ring["keys"].items()}


def plain_payload(data: bytes, offset: int, keys: dict[int, bytes]) -> bytes:
    """The plaintext payload of the record at ``offset``: AES-256-GCM, nonce first, the header
    without its checksum as associated data (docs/format.md)."""
    _, _, flags, key_id, payload_len, _, _ = RECORD_HEADER.unpack_from(data, offset)
    start = offset + RECORD_HEADER_SIZE
    payload = data[start:start + payload_len]
    if not flags & FLAG_ENCRYPTED:
        return payload
    try:
        return AESGCM(keys[key_id]).decrypt(payload[:12], payload[12:], data[offset + 8:start])
    except InvalidTag:  # a damaged record: its key is still wanted, so skip the tag
        ctr = Cipher(algorithms.AES(keys[key_id]), modes.CTR(payload[:12] + b"\0\0\0\2"))
        return ctr.decryptor().update(payload[12:-16])


def shared_keys(source_dir) -> dict:
    """``Store.open`` options for a directory holding copies of ``source_dir``'s segments: the
    source's key file (shared, never copied: see docs/encryption.md), when it is encrypted."""
    key_file = str(source_dir) + ".keys"
    return {"key_file": key_file} if os.path.exists(key_file) else {}


def copy_key_check(source_dir, dest_dir) -> dict:
    """Copy ``KEYCHECK`` (when there is one) beside copied segments; returns the ``Store.open``
    options that open the copy with the source's key file."""
    source = os.path.join(str(source_dir), "KEYCHECK")
    if os.path.exists(source):
        shutil.copy(source, os.path.join(str(dest_dir), "KEYCHECK"))
    return shared_keys(source_dir)


def disk_records(path: str) -> list[DiskRecord]:
    """Every record of an undamaged segment file, in file order (decrypted when encrypted)."""
    data = read_file(path)
    assert data[:8] == b"EDGEKVSG", path
    keys = data_keys(os.path.dirname(path))
    out = []
    offset = SEGMENT_HEADER_SIZE
    while offset < len(data):
        _, magic, flags, _, payload_len, seq, expire_ms = RECORD_HEADER.unpack_from(data, offset)
        assert magic == 0xEDC5, (path, offset)
        payload = plain_payload(data, offset, keys)
        _key_len, _ = PAYLOAD_PREFIX.unpack_from(payload, 0)
        ns = int.from_bytes(payload[4:6], "big")
        key = payload[6:6 + _key_len]
        size = RECORD_HEADER_SIZE + payload_len
        out.append(DiskRecord(offset, size, flags, seq, expire_ms, ns, key))
        offset += size
    assert offset == len(data), f"{path}: trailing bytes after the last record"
    return out


def find_record(directory, key: bytes, *, latest: bool = True) -> tuple[str, DiskRecord]:
    """``(segment path, record)`` of the newest (or oldest) non-catalog record of ``key``."""
    found = [(path, r) for path in segment_paths(directory) for r in disk_records(path)
             if r.key == key and not r.is_catalog]
    assert found, f"no record of {key!r} in {directory}"
    found.sort(key=lambda item: item[1].seq)
    return found[-1] if latest else found[0]


# --------------------------------------------------------------------------- known engine bug


def _writes_after_reopen_work() -> bool:
    """Probe: does a write made after reopening a store survive the next reopen?"""
    directory = tempfile.mkdtemp(prefix="edgekv-probe-")
    try:
        for round_ in range(3):
            with Store.open(directory, fsync="no") as store:
                ns = store.namespace()
                if round_ < 2:
                    ns.put(f"k{round_}", "v")
                elif ns.get("k0") != "v" or ns.get("k1") != "v":
                    return False
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(directory, ignore_errors=True)


#: Tests that write after reopening a store.  While the engine bug below is present they are
#: strict xfails; once it is fixed the condition turns false and they run normally.
needs_writes_after_reopen = pytest.mark.xfail(
    not _writes_after_reopen_work(), strict=True,
    reason="engine bug: SegmentFile.open_existing (engine/segment.py) leaves the reopened active "
           "segment's file offset at 0, so the first append after Store.open overwrites the "
           "segment header instead of landing at seg.size")
