"""Keys for encryption at rest: the key file, the key ring of an open store, and the nonce source.

Theory of operation
-------------------
Every record payload is sealed with AES-256-GCM (``engine/codec.py``).  GCM is broken the moment
one nonce is used twice under one key, so nonces are not random but *counted*::

    nonce (96 bits) = epoch (32 bits, big-endian) || counter (64 bits, big-endian)

The **epoch** is a persistent number that grows by one at every open, before the store writes
anything: it is stored in the key file *and* mirrored in the data directory's ``KEYCHECK``, and
the new epoch is ``max(both) + 1``, written (fsynced) to both before the first write.  The
**counter** belongs to one open store and only counts up (``itertools.count``, shared by the
writer and compaction).  So two nonces under one key are equal only if they came from the same
open *and* the same counter value, which never happens.  Restoring an old key file or an old
data directory cannot bring an epoch back either, because the other copy still holds the newer
one.  ``docs/format.md`` spells the argument out, with its one assumption: a key lives in one key
file (stores may share that file; a *copy* of a key file used beside the original can reuse
epochs).

The key file (JSON, mode 0600, outside the data directory by default) holds the keys by id
(1..255, the record header's ``key_id`` byte; 0 means plaintext), which one new writes use, the
epoch, and which data directories need which key ids, so retiring a key in one store cannot
strand another store (or snapshot) sharing the file.  Updates take an ``flock`` on ``<key file>.lock`` and replace the
file atomically (temporary file, fsync, rename, fsync the directory).

``KEYCHECK`` in the data directory says whether the store is encrypted and holds, per key id it
may have data under, a key check value (HMAC-SHA256 of a fixed text, 8 bytes): a wrong key file
is refused at open with a message naming the file and the key id, before anything is read.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import time
from contextlib import contextmanager

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import record as rec
from .errors import StoreError
from .segment import SEGMENT_HEADER_SIZE, fsync_dir, parse_segment_name

log = logging.getLogger("edgekv.engine")

KEY_FILE_ENV = "EDGEKV_KEY_FILE"
KEY_FILE_FORMAT = "edgekv-keyring"
KEY_FILE_VERSION = 1
KEYCHECK = "KEYCHECK"
KEYCHECK_VERSION = 1
KEY_BYTES = 32  # AES-256
MAX_KEY_ID = 255
MAX_EPOCH = 0xFFFFFFFF
_CHECK_TEXT = b"edgekv key check"


class KeyFileError(StoreError):
    """The key file is missing, unreadable, or does not hold the keys this store needs."""


def default_key_file(data_dir: str) -> str:
    """Where the key file of ``data_dir`` lives unless told otherwise: ``$EDGEKV_KEY_FILE``,
    else ``<data dir>.keys`` beside (not inside) the data directory, so a copy of the data
    directory alone does not carry its key."""
    env = os.environ.get(KEY_FILE_ENV)
    if env:
        return os.path.abspath(env)
    return os.path.abspath(data_dir).rstrip(os.sep) + ".keys"


def key_check_value(key: bytes) -> str:
    """A short fingerprint that tells whether a key is the right one without revealing it."""
    return hmac.new(key, _CHECK_TEXT, hashlib.sha256).hexdigest()[:16]


# --------------------------------------------------------------------------- files


def _write_atomically(path: str, data: bytes) -> None:
    """Temporary file, fsync, rename, fsync the directory: the old or the new, never half."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover .tmp with looser bits must not keep them
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def _read_json(path: str, what: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{what} {path} is unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{what} {path} is not a JSON object")
    return doc


@contextmanager
def _key_file_lock(path: str):
    """Serialise read-modify-write of one key file between processes (and threads)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _parse_keys(doc: dict, path: str) -> tuple[dict[int, bytes], int, int]:
    """``(keys by id, active id, epoch)`` of a key file document, validated."""
    if doc.get("format") != KEY_FILE_FORMAT or doc.get("version") != KEY_FILE_VERSION:
        raise KeyFileError(f"{path} is not an edgekv key file (format {doc.get('format')!r}, "
                           f"version {doc.get('version')!r})")
    try:
        keys = {}
        for kid, entry in doc["keys"].items():
            key = base64.b64decode(entry["key"], validate=True)
            if not 1 <= int(kid) <= MAX_KEY_ID or len(key) != KEY_BYTES:
                raise ValueError(f"key id {kid} is not a {KEY_BYTES}-byte key with an id "
                                 f"1..{MAX_KEY_ID}")
            keys[int(kid)] = key
        active = int(doc["active"])
        epoch = int(doc.get("epoch", 0))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KeyFileError(f"key file {path} is malformed ({exc})") from None
    if active not in keys:
        raise KeyFileError(f"key file {path} names key id {active} as active but does not hold it")
    return keys, active, epoch


def _new_key_entry() -> dict:
    return {"key": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _new_key_file_doc() -> dict:
    return {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "epoch": 0, "active": 1,
            "keys": {"1": _new_key_entry()}, "stores": {}}


def _save_key_file(path: str, doc: dict) -> None:
    _write_atomically(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("ascii"))


def read_keycheck(data_dir: str) -> dict | None:
    doc = _read_json(os.path.join(data_dir, KEYCHECK), "key check file")
    if doc is not None and doc.get("version") != KEYCHECK_VERSION:
        raise KeyFileError(f"{os.path.join(data_dir, KEYCHECK)} has version "
                           f"{doc.get('version')!r}; this edgekv reads {KEYCHECK_VERSION}")
    return doc


def _write_keycheck(data_dir: str, doc: dict) -> None:
    _write_atomically(os.path.join(data_dir, KEYCHECK),
                      (json.dumps(doc, sort_keys=True) + "\n").encode("ascii"))


def _first_sealed_record(data_dir: str, per_segment: int = 4096) -> tuple[int, bytes] | None:
    """``(key id, record bytes)`` of the first encrypted record with a valid checksum, looking
    at up to ``per_segment`` records from the start of each segment; None when there is none.

    Only needed when ``KEYCHECK`` is missing (a plaintext store, or segments copied without
    it): a record is then the only way to tell a missing or wrong key from a plaintext store.
    """
    for name in sorted(os.listdir(data_dir)):
        if parse_segment_name(name) is None:
            continue
        with open(os.path.join(data_dir, name), "rb") as f:
            offset = SEGMENT_HEADER_SIZE
            for _ in range(per_segment):
                head = os.pread(f.fileno(), rec.HEADER_SIZE, offset)
                if len(head) < rec.HEADER_SIZE:
                    break
                header = rec.parse_header(head)
                if header.magic != rec.RECORD_MAGIC:
                    break
                size = rec.HEADER_SIZE + header.payload_len
                if header.flags & rec.FLAG_ENCRYPTED:
                    buf = os.pread(f.fileno(), size, offset)
                    if len(buf) == size and rec.verify(buf, 0, header.payload_len,
                                                       header.checksum):
                        return header.key_id, buf
                offset += size
    return None


def _opens(key: bytes | None, record: bytes) -> bool:
    if key is None:
        return False
    start = rec.HEADER_SIZE
    try:
        AESGCM(key).decrypt(record[start:start + 12], record[start + 12:], record[8:start])
    except InvalidTag:
        return False
    return True


def is_plaintext_store(data_dir: str) -> bool:
    """True for an existing store written without encryption: it holds records, none of them
    sealed, and no ``KEYCHECK`` says it is encrypted.  Opening such a store with encryption on
    converts it (a new key file, new writes sealed); tools that only read or edit a store check
    this first, so that looking at a plaintext store never converts it by itself."""
    if not os.path.isdir(data_dir) or not _has_records(data_dir):
        return False
    check = read_keycheck(data_dir)
    if check is not None:
        return not check.get("encrypted")
    return _first_sealed_record(data_dir) is None


def _has_records(data_dir: str) -> bool:
    """True when some segment holds more than its header: the store is not new."""
    return any(parse_segment_name(name) is not None
               and os.path.getsize(os.path.join(data_dir, name)) > SEGMENT_HEADER_SIZE
               for name in os.listdir(data_dir))


# --------------------------------------------------------------------------- the key ring


class KeyRing:
    """The keys an open store may read with, the one it writes with, and its nonce source."""

    def __init__(self, data_dir: str, key_file: str, keys: dict[int, bytes], active_id: int,
                 epoch: int, generated: dict | None) -> None:
        self.data_dir = data_dir
        self.key_file = key_file
        self.keys = keys
        self.active_id = active_id
        self.epoch = epoch
        self._generated = generated  # a new key file not yet written (written by activate)
        self._counter = itertools.count()
        self._nonce_base = -1  # no nonce can be made before activate()

    # -- nonces ---------------------------------------------------------------

    def next_nonce(self) -> bytes:
        """A 96-bit nonce never used before under any key of this key file (see the module
        docstring).  ``next`` on ``itertools.count`` is atomic under the GIL."""
        if self._nonce_base < 0:
            raise StoreError("internal error: a nonce was requested before the epoch was "
                             "made durable")
        return (self._nonce_base | next(self._counter)).to_bytes(12, "big")

    # -- opening --------------------------------------------------------------

    def activate(self) -> None:
        """Claim a fresh epoch and make it durable in the key file and in ``KEYCHECK``, before
        the store writes anything; record which key ids this data directory needs."""
        check = read_keycheck(self.data_dir) or {}
        with _key_file_lock(self.key_file):
            doc = _read_json(self.key_file, "key file")
            if doc is None:
                if self._generated is None:
                    raise KeyFileError(f"key file {self.key_file} disappeared while opening "
                                       f"{self.data_dir}")
                doc = self._generated
            else:
                # Another process may have created or rotated the file since it was read.
                keys, active, _ = _parse_keys(doc, self.key_file)
                _check_against(check, keys, self.key_file, self.data_dir)
                if self._generated is not None:
                    self.keys, self.active_id = keys, active
                else:
                    for kid, key in keys.items():
                        self.keys.setdefault(kid, key)
            epoch = max(int(doc.get("epoch", 0)), int(check.get("epoch", 0))) + 1
            if epoch > MAX_EPOCH:
                raise KeyFileError(f"key file {self.key_file} has used every epoch; create a "
                                   f"new store with a new key file and import the data")
            doc["epoch"] = epoch
            needed = self._needed_ids(check)
            doc.setdefault("stores", {})[self.data_dir] = needed
            _save_key_file(self.key_file, doc)
        self._generated = None
        self.epoch = epoch
        self._write_check(needed, epoch)
        self._nonce_base = epoch << 64
        self._counter = itertools.count()

    def _needed_ids(self, check: dict) -> list[int]:
        ids = {int(k) for k in check.get("keys", {})} | {self.active_id}
        return sorted(ids)

    def _write_check(self, ids, epoch: int) -> None:
        _write_keycheck(self.data_dir, {
            "version": KEYCHECK_VERSION, "encrypted": True, "epoch": epoch,
            "key_file": self.key_file,
            "keys": {str(kid): key_check_value(self.keys[kid]) for kid in sorted(ids)},
        })

    # -- rotation and retirement ------------------------------------------------

    def add_key(self) -> int:
        """Generate a key, make it the one new writes use (in this store and, as the key file's
        active key, in stores opened later); returns its id."""
        with _key_file_lock(self.key_file):
            doc = _read_json(self.key_file, "key file")
            if doc is None:
                raise KeyFileError(f"key file {self.key_file} is missing; not rotating")
            keys, _, _ = _parse_keys(doc, self.key_file)
            kid = max(keys) + 1 if max(keys) < MAX_KEY_ID else next(
                (i for i in range(1, MAX_KEY_ID + 1) if i not in keys), None)
            if kid is None:
                raise KeyFileError(f"key file {self.key_file} holds {MAX_KEY_ID} keys; retire "
                                   f"old ones before rotating again")
            entry = _new_key_entry()
            doc["keys"][str(kid)] = entry
            doc["active"] = kid
            needed = sorted({kid} | {int(k) for k in
                                     (read_keycheck(self.data_dir) or {}).get("keys", {})})
            doc.setdefault("stores", {})[self.data_dir] = needed
            # The data directory learns the key before the key file calls it active, and
            # before any record uses it.
            self.keys[kid] = base64.b64decode(entry["key"])
            self._write_check(needed, self.epoch)
            _save_key_file(self.key_file, doc)
        self.active_id = kid
        return kid

    def remove_key(self, kid: int, still_needed: list[int]) -> list[str]:
        """Drop ``kid`` from this data directory's needs and, unless another data directory
        registered in the key file still lists it in its ``KEYCHECK``, from the key file.
        Returns the other data directories that still need it (the key is then kept)."""
        self._write_check(still_needed, self.epoch)
        others = []
        with _key_file_lock(self.key_file):
            doc = _read_json(self.key_file, "key file")
            if doc is None:
                raise KeyFileError(f"key file {self.key_file} is missing")
            stores = doc.setdefault("stores", {})
            stores[self.data_dir] = still_needed
            for other, ids in list(stores.items()):
                if other == self.data_dir or kid not in ids:
                    continue
                try:
                    theirs = read_keycheck(other)
                except KeyFileError:
                    theirs = {"keys": {str(kid): ""}}  # unreadable: assume it still needs it
                if theirs and str(kid) in theirs.get("keys", {}):
                    others.append(other)
                else:  # deleted, or compacted and retired there: forget the claim
                    stores[other] = [i for i in ids if i != kid]
                    if not stores[other]:
                        del stores[other]
            if not others and str(kid) in doc["keys"] and int(doc["active"]) != kid:
                del doc["keys"][str(kid)]
            _save_key_file(self.key_file, doc)
        if not others:
            self.keys.pop(kid, None)
        return others


def _check_against(check: dict, keys: dict[int, bytes], key_file: str, data_dir: str) -> None:
    """Refuse a key file that lacks a key the data directory needs, or holds another key
    under its id."""
    for kid_text, expected in (check.get("keys") or {}).items():
        kid = int(kid_text)
        key = keys.get(kid)
        if key is None:
            raise KeyFileError(
                f"data directory {data_dir} has data encrypted with key id {kid}, which key "
                f"file {key_file} does not hold; open it with the key file it was written "
                f"with (key_file=..., or ${KEY_FILE_ENV})")
        if not hmac.compare_digest(key_check_value(key), str(expected)):
            raise KeyFileError(
                f"key file {key_file} holds a different key id {kid} than the one data "
                f"directory {data_dir} was encrypted with (key check mismatch); this is the "
                f"wrong key file for this store")


def resolve_key_file(data_dir: str, key_file: str | None) -> str:
    """The key file to use: the one given, else ``default_key_file``."""
    return os.path.abspath(key_file) if key_file else default_key_file(data_dir)


def load_key_ring(data_dir: str, *, encryption: bool, key_file: str | None) -> KeyRing | None:
    """The key ring for opening ``data_dir``, or None for a plaintext store; checks that the key
    file matches the data directory.  Writes nothing: ``KeyRing.activate`` does, once the store
    is known to open."""
    data_dir = os.path.abspath(data_dir)
    check = read_keycheck(data_dir)
    encrypted = bool(check and check.get("encrypted"))
    if not encryption:
        if encrypted:
            raise KeyFileError(f"data directory {data_dir} is encrypted; open it with encryption "
                               f"on and its key file")
        return None
    path = resolve_key_file(data_dir, key_file)
    if _is_inside(path, data_dir):
        log.warning("key file %s is inside the data directory %s: a copy of the directory "
                    "then carries its key; keep the key file elsewhere", path, data_dir)
    doc = _read_json(path, "key file")
    generated = None
    if doc is None:
        if encrypted:
            last = check.get("key_file")
            hint = f" (it was last opened with {last})" if last and last != path else ""
            raise KeyFileError(
                f"data directory {data_dir} is encrypted but its key file {path} does not exist"
                f"{hint}; pass the key file it was created with (key_file=..., or "
                f"${KEY_FILE_ENV}).  Without that key the data cannot be read")
        generated = doc = _new_key_file_doc()
        if _has_records(data_dir):
            log.warning("%s holds plaintext records: new writes are encrypted with a new key in "
                        "%s, and compaction encrypts the old ones", data_dir, path)
    if not check:
        # No KEYCHECK: a plaintext store, a new one, or segments copied without it.
        sealed = _first_sealed_record(data_dir)
        if sealed is not None and generated is not None:
            raise KeyFileError(
                f"data directory {data_dir} holds encrypted records (and no {KEYCHECK} file) but "
                f"its key file {path} does not exist; pass the key file it was written with "
                f"(key_file=..., or ${KEY_FILE_ENV})")
    keys, active, epoch = _parse_keys(doc, path)
    if check:
        _check_against(check, keys, path, data_dir)
    elif sealed is not None and not _opens(keys.get(sealed[0]), sealed[1]):
        raise KeyFileError(
            f"key file {path} does not open the records of data directory {data_dir} (key id "
            f"{sealed[0]} fails to decrypt them); this is the wrong key file for this store")
    return KeyRing(data_dir, path, keys, active, epoch, generated)


def _is_inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def keys_for_copy(source_key_file: str, dest_dir: str) -> str | None:
    """Give ``dest_dir``, a snapshot of a store whose key file is ``source_key_file``, the keys
    its ``KEYCHECK`` lists; returns the snapshot's key file.

    When the snapshot's default key file *is* the source's (``$EDGEKV_KEY_FILE`` shared by
    both), the snapshot is recorded in it as needing those key ids, so retiring one in the
    source keeps it.  Otherwise the snapshot gets a key file of its own at its default place:
    the source's keys, to read what was copied, plus a new key that is its active one.  The
    copied keys are never used to encrypt again there, which is what keeps two stores from
    sealing under one key with the same nonce (a copy of a key file would repeat epochs).
    """
    check = read_keycheck(dest_dir)
    if not check or not check.get("encrypted"):
        return None
    dest_dir = os.path.abspath(dest_dir)
    ids = sorted(int(k) for k in check.get("keys", {}))
    dest_file = default_key_file(dest_dir)
    with _key_file_lock(source_key_file):
        doc = _read_json(source_key_file, "key file")
        if doc is None:
            raise KeyFileError(f"key file {source_key_file} is missing; the snapshot in "
                               f"{dest_dir} could not be given its keys")
        keys, _, _ = _parse_keys(doc, source_key_file)
        _check_against(check, keys, source_key_file, dest_dir)
        if dest_file == source_key_file:
            doc.setdefault("stores", {})[dest_dir] = ids
            _save_key_file(source_key_file, doc)
            return dest_file
    if os.path.exists(dest_file):
        raise KeyFileError(f"{dest_file} already exists; not replacing a key file for the "
                           f"snapshot in {dest_dir}")
    new_id = next((i for i in range(max(keys) + 1, MAX_KEY_ID + 1)), None) or next(
        (i for i in range(1, MAX_KEY_ID + 1) if i not in keys), None)
    if new_id is None:
        raise KeyFileError(f"key file {source_key_file} holds {MAX_KEY_ID} keys; retire some")
    fork = {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION, "epoch": 0,
            "active": new_id,
            "keys": {str(kid): doc["keys"][str(kid)] for kid in ids},
            "stores": {dest_dir: ids}}
    fork["keys"][str(new_id)] = _new_key_entry()
    with _key_file_lock(dest_file):
        _save_key_file(dest_file, fork)
    return dest_file


def retire_refusal(status: dict, key_id: int, *, rotate: str = "KV.KEYRING ROTATE",
                   compact: str = "KV.COMPACT", compacting: bool = False) -> str | None:
    """Why ``key_id`` cannot be retired, from a key ring status report (``Store.encryption_info``
    plus ``usage``: key id -> {"segments": [...]}, as KV.KEYRING STATUS gives it), naming the
    commands that fix it (the server's, or the CLI's), or None when ``Store.retire_key`` may go
    ahead.  Pure, so the server and the CLI say the same thing."""
    if not status.get("enabled"):
        return "encryption at rest is off for this store: there is no key ring to retire from"
    key_ids = status.get("key_ids") or []
    if key_id == 0:
        return ("key id 0 stands for records written without encryption; it is not a key "
                "and cannot be retired")
    if key_id not in key_ids:
        known = ", ".join(map(str, key_ids)) or "none"
        return f"key id {key_id} is not in the key ring (its key ids: {known})"
    if key_id == status.get("active_key_id"):
        return (f"key id {key_id} is the active key (every new write uses it): run "
                f"{rotate}, then {compact}, then retire it")
    usage = status.get("usage") or {}
    segments = (usage.get(str(key_id)) or usage.get(key_id) or {}).get("segments") or []
    if segments:
        listed = ", ".join(map(str, segments[:10])) + (" ..." if len(segments) > 10 else "")
        then = ("a compaction is running: retire it once it has finished"
                if compacting else f"run {compact} to re-encrypt them with the active key, "
                "let it finish, then retire it")
        return (f"key id {key_id} still encrypts stored data in {len(segments)} segment(s) "
                f"({listed}); {then}")
    return None
