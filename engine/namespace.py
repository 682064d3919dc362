"""``Namespace``: the Workers KV binding, in Python.

Method for method this mirrors ``KVNamespace``: ``get``, ``get_with_metadata``, ``put``,
``delete``, ``list``, plus the REST API's bulk write and delete.  Validation and messages come
from ``engine/semantics.py``; errors are tagged with the operation (``GET``, ``PUT``,
``DELETE``, ``GET_BULK``) so ``str(error)`` reads like the binding's
``KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.``

Lower-level calls for the servers (``get_entry``, ``put_raw``, ``delete_raw``) take bytes and
already-validated options, and can skip waiting for fsync so a pipeline shares one.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any, Iterable, NamedTuple

from . import semantics
from .catalog import NamespaceInfo
from .errors import KVError, KVValidationError, NamespaceDeletedError, quoted
from .store import Entry, Store, Write

_READ_CHUNK = 1024 * 1024
_FAST_TYPES = ("text", "bytes")


class ValueWithMetadata(NamedTuple):
    """What ``get_with_metadata`` returns; ``cache_status`` is always None (no edge cache)."""

    value: Any
    metadata: Any
    cache_status: None = None
    expiration: int | None = None


def _tag(op: str):
    """Tag KV errors raised inside with the binding's operation name."""
    def wrap(fn):
        @functools.wraps(fn)
        def tagged(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except KVError as exc:
                raise exc.with_op(op)
        return tagged
    return wrap


def _convert(value: bytes, type_: str):
    if type_ == "text":
        return value.decode("utf-8", "replace")
    if type_ == "json":
        return json.loads(value.decode("utf-8", "replace"))
    if type_ == "stream":
        return io.BytesIO(value)
    return value  # "bytes" / "arrayBuffer"


def _parse_metadata(raw: bytes):
    return json.loads(raw) if raw else None


def _expiration_seconds(expire_ms: int) -> int | None:
    return expire_ms // 1000 if expire_ms else None


class Namespace:
    """One namespace of a store.  Cheap to create; safe to share between threads."""

    __slots__ = ("store", "id", "_by_id")

    def __init__(self, store: Store, info: NamespaceInfo) -> None:
        self.store = store
        self.id = info.id
        self._by_id = store._catalog.by_id

    @property
    def limits(self) -> semantics.Limits:
        """The store's limits, read at each use (the server may change the minimum TTL)."""
        return self.store.limits

    def __repr__(self) -> str:
        return f"<Namespace id={self.id}>"

    @property
    def info(self) -> NamespaceInfo:
        """Looked up on every use: a rename, flush or delete elsewhere is seen at once."""
        info = self._by_id.get(self.id)
        if info is None:
            raise NamespaceDeletedError("namespace not found")
        return info

    @property
    def number(self) -> int:
        info = self._by_id.get(self.id)
        if info is None:
            raise NamespaceDeletedError("namespace not found")
        return info.number

    @property
    def title(self) -> str:
        return self.info.title

    # ------------------------------------------------------------------ get

    def get(self, key, type: str = "text", cache_ttl=None):
        """The value of ``key`` (or None), as ``text``, ``json``, ``bytes``/``arrayBuffer`` or
        ``stream``; a list of keys returns a dict (1..100 keys, ``text``/``json`` only)."""
        if cache_ttl is None and type in _FAST_TYPES and key.__class__ in (str, bytes):
            # The common case, without the generic path's layers (about twice as fast).
            raw_key = key.encode("utf-8", "surrogateescape") if key.__class__ is str else key
            if not semantics.ordinary_key(raw_key, self.store.limits):
                return self._get_one(key, type, cache_ttl, with_metadata=False)
            info = self._by_id.get(self.id)
            if info is None:
                raise NamespaceDeletedError("namespace not found", op="GET")
            try:
                value = self.store.get_value(info.number, raw_key)
            except KVError as exc:
                raise exc.with_op("GET")
            if value is None or type == "bytes":
                return value
            return value.decode("utf-8", "replace")
        if isinstance(key, (list, tuple)):
            return self._get_bulk(list(key), type, cache_ttl, with_metadata=False)
        return self._get_one(key, type, cache_ttl, with_metadata=False)

    def get_with_metadata(self, key, type: str = "text", cache_ttl=None):
        """Like ``get`` but returns ``ValueWithMetadata(value, metadata, cache_status)``;
        a missing key gives ``ValueWithMetadata(None, None)``.  Lists work as in ``get``."""
        if isinstance(key, (list, tuple)):
            return self._get_bulk(list(key), type, cache_ttl, with_metadata=True)
        return self._get_one(key, type, cache_ttl, with_metadata=True)

    @_tag("GET")
    def _get_one(self, key, type_: str, cache_ttl, with_metadata: bool):
        raw_key = semantics.encode_key(key)
        semantics.validate_key(raw_key, self.limits)
        semantics.validate_cache_ttl(cache_ttl, self.limits)
        entry = self.get_entry(raw_key)
        if entry is None:
            return ValueWithMetadata(None, None) if with_metadata else None
        semantics.check_get_type(type_)
        value = _convert(entry.value, type_)
        if with_metadata:
            return ValueWithMetadata(value, _parse_metadata(entry.metadata), None,
                                     _expiration_seconds(entry.expire_ms))
        return value

    @_tag("GET_BULK")
    def _get_bulk(self, keys: list, type_: str | None, cache_ttl, with_metadata: bool,
                  wire: bool = False) -> dict:
        semantics.check_bulk_get_request(keys, type_, self.limits)
        type_ = type_ or "text"
        result: dict = {}
        total = 0
        for key in keys:
            raw_key = semantics.encode_key(key)
            semantics.validate_key_server_side(raw_key, self.limits)
            semantics.validate_cache_ttl(cache_ttl, self.limits, wire=wire)
            entry = self.get_entry(raw_key)
            name = key if isinstance(key, str) else semantics.decode_key(raw_key)
            if entry is None:
                result[name] = None
                continue
            text = entry.value.decode("utf-8", "replace")
            total += semantics.utf16_length(text)
            if type_ == "json":
                try:
                    value = json.loads(text)
                except ValueError:
                    raise KVValidationError("At least one of the requested keys corresponds to "
                                            "a non-json value") from None
            else:
                value = text
            if with_metadata:
                # Miniflare: a value that is JSON null comes back as bare null.
                result[name] = None if value is None else ValueWithMetadata(
                    value, _parse_metadata(entry.metadata), None,
                    _expiration_seconds(entry.expire_ms))
            else:
                result[name] = value
        if total > self.limits.max_bulk_get_bytes:
            raise semantics.bulk_get_too_large(self.limits)
        return result

    def get_bulk_wire(self, keys: list, type_: str | None, cache_ttl=None,
                      with_metadata: bool = False) -> dict:
        """Bulk get with wire-style option parsing, for the RESP and HTTP front ends."""
        return self._get_bulk(keys, type_, cache_ttl, with_metadata, wire=True)

    def get_entry(self, key: bytes) -> Entry | None:
        """The raw stored entry (value bytes, expire_ms, metadata JSON), no validation."""
        return self.store.read_entry(self.number, key)

    # ------------------------------------------------------------------ put

    def put(self, key, value, expiration=None, expiration_ttl=None, metadata=None, *,
            durable: bool = True, wire: bool = False) -> None:
        """Store ``value`` (str, bytes, a binary file object or an iterable of bytes) under
        ``key``, replacing its value, expiration and metadata together.

        ``expiration`` is epoch seconds, ``expiration_ttl`` seconds from now (it wins when
        both are given); both must be at least 60 s ahead.  ``metadata`` is any
        JSON-serialisable value of at most 1024 bytes serialised.  ``wire=True`` takes options
        as raw text (metadata as JSON text), the way the RESP and HTTP front ends receive them;
        ``durable=False`` returns before the fsync (see ``Store.wait_durable``).
        """
        try:
            raw_key = (key.encode("utf-8", "surrogateescape") if key.__class__ is str
                       else semantics.encode_key(key))
            limits = self.store.limits
            # The common case (a plain text or bytes value with no options, an ordinary key)
            # goes straight to the store in one call: the checks below, inlined, cost less
            # than the calls that make them (some 10% of an embedded put).
            if (expiration is None and expiration_ttl is None and metadata is None
                    and value.__class__ in (str, bytes) and semantics.ordinary_key(raw_key, limits)
                    and not self.store.write_rate_limit):
                data = value.encode("utf-8") if value.__class__ is str else value
                if len(data) > limits.max_value_bytes:
                    raise semantics.value_too_large(len(data), limits)
                self.store.put_one(self.number, raw_key, data, 0, b"", durable=durable)
                return
            self._put_checked(raw_key, value, expiration, expiration_ttl, metadata, durable,
                              wire)
        except KVError as exc:
            raise exc.with_op("PUT")

    def _put_checked(self, raw_key: bytes, value, expiration, expiration_ttl, metadata,
                     durable: bool, wire: bool) -> None:
        """``put`` with options, a stream, a key that fails a check, or a write rate limit."""
        semantics.validate_key(raw_key, self.limits)
        expire_ms = semantics.resolve_expiration_ms(
            expiration, expiration_ttl, now_ms=self.store.clock_ms(),
            min_ttl=self.limits.min_ttl_seconds, wire=wire)
        if wire:
            meta = (semantics.validate_metadata_json(metadata, self.limits)
                    if metadata is not None else b"")
        else:
            meta = semantics.encode_metadata(metadata, self.limits)
        data = self._read_value(value)
        self.put_raw(raw_key, data, expire_ms, meta, durable=durable)

    def _read_value(self, value):
        """Bytes-like for the record, reading streams once and never past the limit + 1."""
        if isinstance(value, str):
            data = value.encode("utf-8")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = value
        elif value is None:
            data = b""
        elif hasattr(value, "read"):
            data = self._drain(iter(lambda: value.read(_READ_CHUNK), b""), self.limits)
        elif hasattr(value, "__iter__") and not isinstance(value, (dict, int, float)):
            data = self._drain(iter(value), self.limits)
        else:
            raise _ValueTypeError("KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, "
                                  "and ReadableStreams as values.")
        semantics.check_value_size(len(data), self.limits)
        return data

    @staticmethod
    def _drain(chunks, limits: semantics.Limits) -> bytearray:
        limit = limits.max_value_bytes
        buf = bytearray()
        total = 0
        for chunk in chunks:
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            total += len(chunk)
            if total <= limit:
                buf += chunk
        if total > limit:
            # Miniflare reports the full streamed length, so count the rest without keeping it.
            raise semantics.value_too_large(total, limits)
        return buf

    def put_raw(self, key: bytes, value, expire_ms: int = 0, metadata: bytes = b"", *,
                durable: bool = True) -> int:
        """Write an already-validated entry; returns its sequence number."""
        store = self.store
        # The namespace number is read under the lock: a concurrent delete or flush must not
        # let this write land under a number that is already dead.
        if store.write_rate_limit:
            with store._lock:
                store.check_write_rate(self.number, key)
        # put_one reads the namespace number under the store lock: a concurrent delete or flush
        # makes it raise NamespaceNotFoundError instead of writing under a dead number.
        return store.put_one(self.number, key, value, expire_ms, metadata, durable=durable)

    # ------------------------------------------------------------------ delete

    @_tag("DELETE")
    def delete(self, key, *, durable: bool = True) -> bool:
        """Remove ``key``; deleting a missing key is not an error (as in Workers KV).
        Returns whether a live key was removed (the binding itself returns nothing)."""
        raw_key = semantics.encode_key(key)
        semantics.validate_key(raw_key, self.limits)
        return self.delete_raw(raw_key, durable=durable)[0]

    def delete_raw(self, key: bytes, *, durable: bool = True) -> tuple[bool, int]:
        """Delete; returns ``(existed, seq)``.  Missing keys write nothing (seq 0)."""
        store = self.store
        with store._lock:
            number = self.number
            if store.lookup(number, key) is None:
                return False, 0
            seq = store.write([Write(number, key, tombstone=True)], durable=False)
        if durable and store.fsync_policy == "always":
            store.wait_durable(seq)
        return True, seq

    # ------------------------------------------------------------------ list

    @_tag("GET")
    def list(self, prefix=None, limit=None, cursor=None, *, wire: bool = False) -> dict:
        """Keys in UTF-8 byte order: ``{"keys": [{"name", "expiration"?, "metadata"?}],
        "list_complete": bool, "cursor"?: str}``; pass ``cursor`` back for the next page."""
        count = semantics.resolve_list_limit(limit, self.limits, wire=wire)
        raw_prefix = semantics.encode_key(prefix) if prefix else b""
        semantics.validate_prefix(raw_prefix, self.limits)
        start_after = semantics.decode_cursor(cursor) if cursor else None
        rows = self.store.scan_keys(self.number, raw_prefix, start_after, count + 1)
        keys = []
        for key, expire_ms, meta in rows[:count]:
            item: dict = {"name": semantics.decode_key(key)}
            if expire_ms:
                item["expiration"] = expire_ms // 1000
            if meta:
                item["metadata"] = json.loads(meta)
            keys.append(item)
        result: dict = {"keys": keys, "list_complete": len(rows) <= count}
        if len(rows) > count:
            result["cursor"] = semantics.encode_cursor(rows[count - 1][0])
        return result

    # ------------------------------------------------------------------ bulk

    def bulk_put(self, items: Iterable[dict], *, errors: list | None = None,
                 durable: bool = True) -> dict:
        """Write up to 10,000 ``{key, value, expiration?, expiration_ttl?, metadata?, base64?}``
        items in one batch (one fsync).  Items that fail validation are skipped and named in
        ``unsuccessful_keys``; pass ``errors=[]`` to also receive ``(key, KVError)`` pairs."""
        items = list(items)
        if len(items) > self.limits.max_bulk_write_items:
            raise KVValidationError(f"You can write at most {self.limits.max_bulk_write_items} "
                                    f"pairs per request, got {len(items)}.", op="PUT")
        store = self.store
        now_ms = store.clock_ms()
        writes: list[tuple] = []  # (key, value, expire_ms, metadata), as put_many takes them
        failed: list[str] = []
        seq = 0
        for index, item in enumerate(items):
            # Without a key name there is nothing to list in unsuccessful_keys: the request
            # is malformed as a whole (a made-up name such as "None" could be a real key).
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise KVValidationError(f"Bulk item {index} is not an object with a \"key\" "
                                        f"string.", op="PUT")
        with store._lock:
            number = self.number
            for item in items:
                try:
                    writes.append(self._bulk_item(item, number, now_ms))
                except KVError as exc:
                    failed.append(item["key"])
                    if errors is not None:
                        errors.append((item["key"], exc.with_op("PUT")))
            if writes:  # a load of 10,000 keys must not push out what readers use
                seq = store.put_many(number, writes, durable=False, fill_cache=False)
        if seq and durable and store.fsync_policy == "always":
            store.wait_durable(seq)
        return {"successful_key_count": len(writes), "unsuccessful_keys": failed}

    def _bulk_item(self, item, number: int, now_ms: int) -> tuple:
        if not isinstance(item, dict) or "key" not in item or "value" not in item:
            raise KVValidationError("Each bulk item needs a \"key\" and a \"value\".")
        raw_key = semantics.encode_key(item["key"])
        semantics.validate_key_server_side(raw_key, self.limits)
        expire_ms = semantics.resolve_expiration_ms(
            item.get("expiration"), item.get("expiration_ttl"), now_ms=now_ms,
            min_ttl=self.limits.min_ttl_seconds, wire=True)
        meta = semantics.encode_metadata(item.get("metadata"), self.limits)
        value = item["value"]
        if item.get("base64"):
            try:
                value = semantics.decode_base64_value(value)
            except ValueError:
                raise KVValidationError(f"Value of {quoted(item['key'])} is not valid base64.")
        elif isinstance(value, str):
            value = value.encode("utf-8")
        elif not isinstance(value, (bytes, bytearray)):
            raise KVValidationError("A bulk value must be a string.")
        semantics.check_value_size(len(value), self.limits)
        self.store.check_write_rate(number, raw_key)
        return raw_key, value, expire_ms, meta

    def bulk_delete(self, keys: Iterable, *, durable: bool = True) -> dict:
        """Delete up to 10,000 keys in one batch; invalid keys go to ``unsuccessful_keys``."""
        keys = list(keys)
        if len(keys) > self.limits.max_bulk_write_items:
            raise KVValidationError(f"You can delete at most {self.limits.max_bulk_write_items} "
                                    f"keys per request, got {len(keys)}.", op="DELETE")
        store = self.store
        failed: list[str] = []
        ok = 0
        with store._lock:
            number = self.number
            writes = []
            for key in keys:
                raw_key = semantics.encode_key(key)
                try:
                    semantics.validate_key_server_side(raw_key, self.limits)
                except KVError:
                    failed.append(key if isinstance(key, str) else semantics.decode_key(raw_key))
                    continue
                ok += 1
                if store.lookup(number, raw_key) is not None:
                    writes.append(Write(number, raw_key, tombstone=True))
            seq = store.write(writes, durable=False) if writes else 0
        if writes and durable and store.fsync_policy == "always":
            store.wait_durable(seq)
        return {"successful_key_count": ok, "unsuccessful_keys": failed}


class _ValueTypeError(KVError, TypeError):
    client_side = True
    status = 400
