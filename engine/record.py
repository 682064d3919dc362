"""Encode and decode one log record.  ``docs/format.md`` is the prose version of this file.

A record is a fixed 32-byte header followed by a payload::

    offset size field
    0      8    checksum     xxh3-64 of bytes [8, 32 + payload_len): header tail and payload
    8      2    magic        0xEDC5, lets recovery find the next record after damage
    10     1    flags        TOMBSTONE | COMPRESSED | ENCRYPTED | CATALOG
    11     1    key_id       encryption key id (0 when the payload is plaintext)
    12     4    payload_len  bytes of payload that follow the header
    16     8    seq          store-wide sequence number, strictly increasing in log order
    24     8    expire_ms    expiration, milliseconds since the epoch; 0 = never

    payload, plaintext form (engine/codec.py transforms it: COMPRESSED makes the value part a
    zstd frame; ENCRYPTED stores nonce || AES-256-GCM(payload) || tag, header[8:32] as AAD):
    0      2    key_len
    2      2    meta_len     bytes of metadata JSON text (0 = no metadata)
    4      2    ns           namespace number, BIG-endian (0 is the catalog)
    6      ...  key, metadata, value

Integers are little-endian except ``ns``: big-endian and placed just before the key, so
``payload[4:6 + key_len]`` *is* the index key (namespace, then key bytes) in one slice.  The
checksum covers the header too, so a flipped length, sequence number or expiration is caught
exactly like a flipped value byte.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import xxhash

HEADER = struct.Struct("<QHBBIQQ")
HEADER_SIZE = HEADER.size  # 32
#: Byte offsets of the flags and the key id in an encoded header (after checksum and magic):
#: the write path reads them back from the record it just encoded.
FLAGS_AT, KEY_ID_AT = 10, 11
HEADER_TAIL = struct.Struct("<HBBIQQ")  # the header without its checksum
#: key_len, meta_len (little-endian), then the namespace's high and low byte (big-endian).
PAYLOAD_PREFIX = struct.Struct("<HHBB")
PAYLOAD_PREFIX_SIZE = PAYLOAD_PREFIX.size  # 6
CHECKSUM = struct.Struct("<Q")

RECORD_MAGIC = 0xEDC5
MAGIC_BYTES = struct.pack("<H", RECORD_MAGIC)

FLAG_TOMBSTONE = 0x01
FLAG_COMPRESSED = 0x02
FLAG_ENCRYPTED = 0x04
FLAG_CATALOG = 0x08  # a namespace catalog entry (ns 0), not user data
KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_CATALOG

MAX_PAYLOAD = 0xFFFFFFFF

_checksum = xxhash.xxh3_64_intdigest


class Record(NamedTuple):
    """A decoded, checksum-verified record."""

    seq: int
    flags: int
    expire_ms: int
    ns: int
    key: bytes
    metadata: bytes  # JSON text, b"" when absent
    value: bytes

    @property
    def tombstone(self) -> bool:
        return bool(self.flags & FLAG_TOMBSTONE)


class RecordHeader(NamedTuple):
    checksum: int
    magic: int
    flags: int
    key_id: int
    payload_len: int
    seq: int
    expire_ms: int


def encode(seq: int, flags: int, expire_ms: int, ns: int, key: bytes, metadata: bytes,
           value: bytes, key_id: int = 0) -> bytes:
    """Return the record as one bytes object, ready to append."""
    payload_len = PAYLOAD_PREFIX_SIZE + len(key) + len(metadata) + len(value)
    body = b"".join((
        HEADER_TAIL.pack(RECORD_MAGIC, flags, key_id, payload_len, seq, expire_ms),
        PAYLOAD_PREFIX.pack(len(key), len(metadata), ns >> 8, ns & 0xFF),
        key, metadata, value,
    ))
    return CHECKSUM.pack(_checksum(body)) + body


def encode_parts(seq: int, flags: int, expire_ms: int, ns: int, key: bytes, metadata: bytes,
                 value, key_id: int = 0) -> tuple[list, int]:
    """Return ``(buffers, total_size)`` without concatenating the value.

    Large values go to ``os.writev`` as they are, so a 25 MiB put is never copied into a
    second buffer just to prepend a header.
    """
    prefix = PAYLOAD_PREFIX.pack(len(key), len(metadata), ns >> 8, ns & 0xFF)
    payload_len = len(prefix) + len(key) + len(metadata) + len(value)
    tail = HEADER_TAIL.pack(RECORD_MAGIC, flags, key_id, payload_len, seq, expire_ms)
    hasher = xxhash.xxh3_64()
    for part in (tail, prefix, key, metadata, value):
        hasher.update(part)
    head = CHECKSUM.pack(hasher.intdigest()) + tail + prefix
    return [head, key, metadata, value], HEADER_SIZE + payload_len


def parse_header(buf, offset: int = 0) -> RecordHeader:
    return RecordHeader._make(HEADER.unpack_from(buf, offset))


def verify(buf, offset: int, payload_len: int, checksum: int) -> bool:
    """True when the stored checksum matches the bytes of the record at ``offset``."""
    view = memoryview(buf)[offset + 8: offset + HEADER_SIZE + payload_len]
    try:
        return _checksum(view) == checksum
    finally:
        view.release()


def decode_payload(payload) -> tuple[int, bytes, bytes, bytes]:
    """Split a plaintext payload into ``(ns, key, metadata, value)``; raises ValueError if malformed."""
    if len(payload) < PAYLOAD_PREFIX_SIZE:
        raise ValueError("payload shorter than its prefix")
    key_len, meta_len, ns_hi, ns_lo = PAYLOAD_PREFIX.unpack_from(payload, 0)
    key_end = PAYLOAD_PREFIX_SIZE + key_len
    meta_end = key_end + meta_len
    if meta_end > len(payload):
        raise ValueError("key and metadata lengths exceed the payload")
    payload = bytes(payload) if not isinstance(payload, bytes) else payload
    return (ns_hi << 8) | ns_lo, payload[PAYLOAD_PREFIX_SIZE:key_end], payload[key_end:meta_end], \
        payload[meta_end:]


def decode_index_key_meta(payload) -> tuple[bytes, bytes]:
    """``(index key, metadata)`` without copying the value: what recovery needs."""
    key_len, meta_len, _, _ = PAYLOAD_PREFIX.unpack_from(payload, 0)
    key_end = PAYLOAD_PREFIX_SIZE + key_len
    meta_end = key_end + meta_len
    if meta_end > len(payload):
        raise ValueError("key and metadata lengths exceed the payload")
    return bytes(payload[4:key_end]), (bytes(payload[key_end:meta_end]) if meta_len else b"")
