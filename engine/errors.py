"""One typed hierarchy for every failure the engine reports.

Each error carries the HTTP-style ``status`` Workers KV would answer with, the Cloudflare v4 API
``code`` the REST front end puts in its envelope, the bare ``message`` (Miniflare's exact text) and
the ``op`` (``GET``, ``PUT``, ``DELETE``, ``GET_BULK``) that failed.  RESP and HTTP map errors by
type and attributes, never by matching strings.

``str(error)`` is the text the Workers binding throws: ``KV PUT failed: 413 Value length of ...``.
Errors that workerd raises on the client side before any request (empty key, ``.``/``..``, an
unknown response type) are ``TypeError`` subclasses whose text has no prefix, as in JavaScript.
"""

from __future__ import annotations

import json
import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def quoted(value) -> str:
    """User input (a key, a namespace id or title) as messages show it: JSON's double-quoted
    spelling with readable characters kept, and a key byte that is not UTF-8 (given as bytes,
    or as the lone surrogate ``surrogateescape`` makes of it) as its ``\\udcXY`` escape, the
    way the REST API lists such keys.  Never Python's ``b'...'`` or ``'...'`` repr, whose
    quotes and escapes change with the content."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    elif not isinstance(value, str):
        value = str(value)
    text = json.dumps(value, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class KVError(Exception):
    """Base of every error the engine raises on purpose."""

    status = 500
    code = 10001
    #: True for the errors workerd raises before sending a request (no "KV X failed:" prefix).
    client_side = False

    def __init__(self, message: str, *, op: str | None = None, status: int | None = None,
                 code: int | None = None) -> None:
        self.message = message
        self.op = op
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        super().__init__(message)

    def with_op(self, op: str) -> "KVError":
        """Tag the error with the operation that met it, unless an inner call already did."""
        if self.op is None:
            self.op = op
        return self

    def __str__(self) -> str:
        if self.client_side or self.op is None:
            return self.message
        return f"KV {self.op} failed: {self.status} {self.message}"


class KVValidationError(KVError):
    """A request the KV service rejects with 400 (bad TTL, expiration, limit, cache TTL...)."""

    status = 400
    code = 10001


class KeyNameError(KVValidationError, TypeError):
    """An empty, ``.`` or ``..`` key.

    ``message`` is workerd's client-side text (``Key name cannot be empty.``);
    ``server_message`` is Miniflare's text for the same fault reached through bulk get or HTTP
    (``Key names must not be empty``).
    """

    client_side = True
    code = 10023

    def __init__(self, message: str, server_message: str) -> None:
        super().__init__(message)
        self.server_message = server_message


class KeyTooLongError(KVError):
    """A key (or list prefix) over 512 UTF-8 bytes: 414, as Workers KV answers."""

    status = 414
    code = 10030


class PayloadTooLargeError(KVError):
    """A value, metadata or bulk response over its limit: 413."""

    status = 413
    code = 10024


class TooManyRequestsError(KVError):
    """The optional one-write-per-second-per-key limit was hit: 429."""

    status = 429
    code = 10022


class ResponseTypeError(KVError, TypeError):
    """``get(type=...)`` with a type the binding does not know."""

    client_side = True
    status = 400


class NamespaceNotFoundError(KVError):
    status = 404
    code = 10013


class NamespaceDeletedError(NamespaceNotFoundError):
    """The namespace a handle (``Namespace``) or a write names was deleted since: a
    ``NamespaceNotFoundError`` that the RESP server can tell apart from a lookup by name,
    to say which namespace a connection had selected."""


class NamespaceExistsError(KVError):
    status = 400
    code = 10014


class TooManyNamespacesError(KVError):
    status = 400
    code = 10018


class CorruptionError(KVError):
    """Stored bytes failed their checksum (or authentication tag): never served as data."""

    status = 500
    code = 10001

    def __init__(self, message: str, *, segment: int | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset


class StoreError(KVError):
    """The store cannot be opened or used as asked (locked directory, bad format, closed)."""

    status = 500
    code = 10001


class StoreLockedError(StoreError):
    """Another process holds the data directory's lock file."""


class StoreClosedError(StoreError):
    """An operation on a store that was closed."""


class WriteFailedError(StoreError):
    """The disk refused a write or an fsync; the write was not acknowledged."""

    status = 503
    code = 10001
