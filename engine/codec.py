"""The payload codec: zstd for large values, then AES-256-GCM, for one record at a time.

A stored record is the plaintext record of ``engine/record.py`` transformed in two optional
steps, each marked by a header flag:

* ``COMPRESSED``: only the *value* part of the payload is a zstd frame (key and metadata stay
  as they are, so recovery never decompresses).  A value is compressed when it is at least
  ``compression_threshold`` bytes and the frame is smaller than the value.  After a run of
  values that did not shrink (random bytes, images, already-compressed data) the codec tries
  only some of the following ones, backing off up to one in 64, so incompressible workloads do
  not pay for a zstd call per write; one success resets it.
* ``ENCRYPTED``: the whole payload (namespace, key, metadata, value) becomes
  ``nonce (12) || AES-GCM ciphertext || tag (16)`` under the key ``key_id``.  The associated
  data is the header without its checksum (bytes 8..32, with the final payload length), so a
  header moved onto another payload, or a changed sequence number, expiration, flag or key id,
  fails the tag.  The xxh3 checksum is computed last, over header and sealed payload, so torn
  writes and bit rot are found exactly as before, without a key.

A tag that fails (or a frame that does not decompress) raises ``PayloadError``; callers report
it exactly as a checksum failure.  AES-GCM objects are made once per key id; encryption,
decryption and hashing all accept memoryviews, so a read makes no extra copy of the record.
"""

from __future__ import annotations

import threading

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import record as rec
from .crypto import KeyFileError, KeyRing

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
#: Values this long or longer are tried for compression (Store.open's default); chosen by
#: ``bench/crypto_bench.py``: below it zstd's fixed cost per call buys little.
DEFAULT_COMPRESSION_THRESHOLD = 1024
#: zstd's first "fast" level: it shrinks repetitive values (JSON, text) at a third to a half of
#: level 1's cost, and leaves values that only a skewed alphabet would shrink (base64, tokens,
#: redis-benchmark's random printable bytes) raw at once, so the back-off stops trying them.
#: Level 1 saves more space for more CPU (``docs/encryption.md`` has both, measured).
COMPRESSION_LEVEL = -1
#: The levels ``compression_level`` accepts: zstd's negative "fast" levels (no entropy coding of
#: literals: a few times faster, larger frames) down to -7, and its ordinary ones up to 22.
MIN_COMPRESSION_LEVEL, MAX_COMPRESSION_LEVEL = -7, 22
_MAX_SKIP = 63  # after many misses, one value in 64 is still tried

_TAIL_PACK = rec.HEADER_TAIL.pack
_PREFIX_PACK = rec.PAYLOAD_PREFIX.pack
_CHECKSUM_PACK = rec.CHECKSUM.pack
_checksum = rec.xxhash.xxh3_64_intdigest
_MAGIC = rec.RECORD_MAGIC
_ENCRYPTED = rec.FLAG_ENCRYPTED
_COMPRESSED = rec.FLAG_COMPRESSED
_NOT_COMPRESSIBLE = rec.FLAG_TOMBSTONE | rec.FLAG_CATALOG
_H = rec.HEADER_SIZE


class PayloadError(ValueError):
    """A stored payload that fails its authentication tag or does not decompress."""


class MissingKeyError(PayloadError):
    """A record under a key id the key ring does not hold.  The key ring was checked against
    ``KEYCHECK`` at open, so such a record is damage (a flipped key id byte with a matching
    checksum) and is reported like a failed tag."""


class PayloadCodec:
    """Seals and opens record payloads for one open store; ``ring`` None means plaintext."""

    def __init__(self, ring: KeyRing | None, compression_threshold: int,
                 compression_level: int = COMPRESSION_LEVEL) -> None:
        if compression_threshold < 0:
            raise ValueError(f"compression_threshold must be >= 0, got {compression_threshold}")
        if (type(compression_level) is not int
                or not MIN_COMPRESSION_LEVEL <= compression_level <= MAX_COMPRESSION_LEVEL):
            raise ValueError(f"compression_level must be an integer from {MIN_COMPRESSION_LEVEL} "
                             f"to {MAX_COMPRESSION_LEVEL}, got {compression_level!r}")
        self.ring = ring
        self.threshold = compression_threshold
        self.level = compression_level
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self._local = threading.local()  # a decompressor per reading thread
        self._misses = 0
        self._skip = 0
        #: key id -> AES-GCM object; replaced whole when the ring changes, so readers (the
        #: store's lock-free get) use it without a lock
        self.aeads: dict[int, AESGCM] = {}
        #: (key id, AESGCM) new records are sealed with, swapped as one object so a writer and
        #: compaction never pair one key's id with another key
        self._write_key: tuple[int, AESGCM | None] = (0, None)
        self.refresh_keys()

    @property
    def encrypting(self) -> bool:
        return self.ring is not None

    @property
    def key_id(self) -> int:
        """The key id new records are sealed with (0: plaintext)."""
        return self._write_key[0]

    def refresh_keys(self) -> None:
        """Rebuild the AES-GCM objects after the ring gained or lost a key."""
        ring = self.ring
        if ring is None:
            return
        self.aeads = {kid: self.aeads.get(kid) or AESGCM(key) for kid, key in ring.keys.items()}
        self._write_key = (ring.active_id, self.aeads[ring.active_id])

    # ------------------------------------------------------------------ writing

    def compress_value(self, value, flags: int):
        """``(value, flags)`` with the value replaced by its zstd frame when that is smaller."""
        if self._skip:
            self._skip -= 1
            return value, flags
        packed = self._compressor.compress(value)
        if len(packed) < len(value):
            self._misses = 0
            return packed, flags | _COMPRESSED
        self._misses += 1
        self._skip = min((1 << self._misses) - 1, _MAX_SKIP)
        return value, flags

    def encode(self, seq: int, flags: int, expire_ms: int, ns: int, key: bytes, metadata: bytes,
               value) -> bytes:
        """The complete stored record (header and payload), ready to append."""
        if self.threshold and len(value) >= self.threshold and not flags & _NOT_COMPRESSIBLE:
            value, flags = self.compress_value(value, flags)
        prefix = _PREFIX_PACK(len(key), len(metadata), ns >> 8, ns & 0xFF)
        key_id, aead = self._write_key
        if aead is None:
            body = b"".join((_TAIL_PACK(_MAGIC, flags, 0, 6 + len(key) + len(metadata) + len(value),
                                        seq, expire_ms), prefix, key, metadata, value))
            return _CHECKSUM_PACK(_checksum(body)) + body
        plain = b"".join((prefix, key, metadata, value))
        nonce = self.ring.next_nonce()
        tail = _TAIL_PACK(_MAGIC, flags | _ENCRYPTED, key_id, len(plain) + OVERHEAD, seq, expire_ms)
        body = b"".join((tail, nonce, aead.encrypt(nonce, plain, tail)))
        return _CHECKSUM_PACK(_checksum(body)) + body

    def reseal(self, header: rec.RecordHeader, plain) -> bytes:
        """The record again under the active key (compaction): same sequence number,
        expiration and flags, a fresh nonce.  ``plain`` is the plaintext payload."""
        flags = header.flags & ~_ENCRYPTED
        key_id, aead = self._write_key
        if aead is None:
            tail = _TAIL_PACK(_MAGIC, flags, 0, len(plain), header.seq, header.expire_ms)
            body = tail + bytes(plain)
        else:
            nonce = self.ring.next_nonce()
            tail = _TAIL_PACK(_MAGIC, flags | _ENCRYPTED, key_id, len(plain) + OVERHEAD,
                              header.seq, header.expire_ms)
            body = b"".join((tail, nonce, aead.encrypt(nonce, bytes(plain), tail)))
        return _CHECKSUM_PACK(_checksum(body)) + body

    # ------------------------------------------------------------------ reading

    def _aead_for(self, key_id: int) -> AESGCM:
        aead = self.aeads.get(key_id)
        if aead is None:
            if self.ring is None:
                raise KeyFileError("the store holds encrypted data; open it with encryption "
                                   "on and its key file")
            raise MissingKeyError(f"a record is encrypted with key id {key_id}, which the key "
                                  f"file {self.ring.key_file} does not hold")
        return aead

    def open(self, buf, offset: int, key_id: int, payload_len: int) -> bytes:
        """The plaintext payload of the encrypted record at ``buf[offset:]`` (its checksum
        already verified); ``PayloadError`` when the tag fails.  Scans and verified reads use
        it; ``Store.get_value``'s fast path does the same inline, straight from the mapping."""
        aead = self.aeads.get(key_id) or self._aead_for(key_id)
        start = offset + _H
        if payload_len < OVERHEAD:
            raise PayloadError("encrypted payload shorter than nonce and tag")
        # Slices, not memoryviews: for a record of a few hundred bytes (the scan's usual case,
        # over an mmap) copying is cheaper than making and releasing three views.
        try:
            return aead.decrypt(buf[start:start + NONCE_SIZE],
                                buf[start + NONCE_SIZE:start + payload_len], buf[offset + 8:start])
        except InvalidTag:
            raise PayloadError("authentication tag mismatch") from None

    def value(self, data, flags: int):
        """The value as written: decompressed when the record says so."""
        if not flags & _COMPRESSED:
            return data
        dctx = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor()
        try:
            return dctx.decompress(data)
        except zstandard.ZstdError as exc:
            raise PayloadError(f"compressed value does not decompress ({exc})") from None

    def damaged_index_key(self, head: bytes) -> tuple[rec.RecordHeader, bytes] | None:
        """``(header, index key)`` of a damaged user record whose header and key still parse,
        else None: recovery and repair use it to keep an older version of that key from
        coming back as current.  Encrypted records are read with ``peek``."""
        if len(head) < _H + rec.PAYLOAD_PREFIX_SIZE:
            return None
        header = rec.parse_header(head)
        if (header.magic != _MAGIC or header.flags & ~rec.KNOWN_FLAGS
                or header.flags & rec.FLAG_CATALOG):
            return None
        payload = memoryview(head)[_H:]
        if header.flags & _ENCRYPTED:
            payload = self.peek(head, 0, header.key_id, len(head) - _H - NONCE_SIZE)
            if payload is None:
                return None
        try:
            ikey, _ = rec.decode_index_key_meta(payload)
        except (ValueError, IndexError):
            return None
        if not 2 < len(ikey) <= 514 or ikey[:2] == b"\0\0":
            return None
        return header, ikey

    def peek(self, buf, offset: int, key_id: int, length: int) -> bytes | None:
        """Decrypt the first ``length`` payload bytes *without* checking the tag, or None.

        Only for naming the key of a damaged record (recovery, repair), which plaintext
        records allow too: the bytes are never served as data.  GCM is counter mode whose
        first data block uses counter 2 after the 96-bit nonce.
        """
        aead_key = self.ring.keys.get(key_id) if self.ring is not None else None
        start = offset + _H
        if aead_key is None or len(buf) < start + NONCE_SIZE:
            return None
        nonce = bytes(buf[start:start + NONCE_SIZE])
        data = bytes(buf[start + NONCE_SIZE:start + NONCE_SIZE + length])
        ctr = Cipher(algorithms.AES(aead_key), modes.CTR(nonce + b"\x00\x00\x00\x02"))
        return ctr.decryptor().update(data)

    # ------------------------------------------------------------------ other files

    def seal_blob(self, data: bytes, header_for, key_id: int | None = None
                  ) -> tuple[bytes, bytes]:
        """``(header, nonce || ciphertext || tag)`` of a whole file (hint files): the header,
        ``header_for(key id)``, names the key and is the associated data.  ``key_id``: seal
        with that key instead of the active one (a sealed segment's hint uses its records'
        key, so the hint never makes an older segment depend on one more key)."""
        if key_id is None:
            key_id, aead = self._write_key
        else:
            aead = self._aead_for(key_id)
        header = header_for(key_id)
        nonce = self.ring.next_nonce()
        return header, nonce + aead.encrypt(nonce, data, header)

    def open_blob(self, key_id: int, sealed, aad) -> bytes:
        aead = self._aead_for(key_id)
        view = memoryview(sealed)
        try:
            return aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise PayloadError("authentication tag mismatch") from None
