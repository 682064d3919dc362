"""Workers KV's rules and limits, with Miniflare's exact messages, in exactly one place.

Every front end (the Python binding, RESP, HTTP, the CLI) funnels through these functions, so a
limit or a message changes here or nowhere.  Two flavours of number parsing exist because the
two callers see different inputs:

* the **binding** flavour mimics workerd, which converts options to integers before sending
  them (``"nan"`` becomes ``0``, so the message says ``of 0``);
* the **wire** flavour mimics Miniflare's server, which ``parseInt``s the raw text and echoes
  the raw text in its message (``Invalid expiration_ttl of abc. ...``).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass

from .errors import (KeyNameError, KeyTooLongError, KVValidationError, PayloadTooLargeError,
                     ResponseTypeError)

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Workers KV's documented limits; tests shrink ``max_value_bytes`` the way Miniflare does."""

    max_key_bytes: int = 512
    max_value_bytes: int = 25 * MIB
    max_metadata_bytes: int = 1024
    min_ttl_seconds: int = 60
    min_cache_ttl_seconds: int = 30
    max_list_keys: int = 1000
    max_bulk_get_keys: int = 100
    max_bulk_get_bytes: int = 25 * MIB
    max_bulk_write_items: int = 10_000
    max_namespaces: int = 1000
    max_title_chars: int = 512


DEFAULT_LIMITS = Limits()

#: The latest expiration a record can carry, in epoch ms.  The record header's ``expire_ms``
#: field is 64 bits; edgekv keeps to its signed half so every reader (RESP's signed 64-bit TTL
#: integers, JSON clients) can show the value it holds.
MAX_EXPIRATION_MS = (1 << 63) - 1
MAX_EXPIRATION_SECONDS = MAX_EXPIRATION_MS // 1000

GET_TYPES = ("text", "json", "bytes", "arrayBuffer", "stream")
BULK_GET_TYPES = ("text", "json")

_PARSE_INT = re.compile(r"\s*([+-]?\d+)")
_BASE64_WRAPPING = re.compile(r"[\r\n\t ]")  # whitespace a base64 value may wrap with


# --------------------------------------------------------------------------- numbers


def js_parse_int(raw) -> int | None:
    """JavaScript's ``parseInt(String(raw))``: leading digits or None (NaN)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return None if not math.isfinite(raw) else int(raw)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    match = _PARSE_INT.match(str(raw))
    return int(match.group(1)) if match else None


def webidl_int(raw) -> int:
    """workerd's conversion of an ``int`` option: truncate, and NaN or junk becomes 0."""
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, (bytes, str)):
        try:
            raw = float(raw)
        except ValueError:
            return 0
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return 0
    return int(value) if math.isfinite(value) else 0


def _as_int(raw, wire: bool) -> tuple[int | None, str]:
    """The parsed number and how the error message shows it."""
    if wire:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return js_parse_int(raw), text
    value = webidl_int(raw)
    return value, str(value)


# --------------------------------------------------------------------------- keys


def encode_key(key) -> bytes:
    """Keys are UTF-8 text in Workers KV; bytes are taken as already encoded (Redis keys)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    return str(key).encode("utf-8", "surrogateescape")


def decode_key(key: bytes) -> str:
    """Inverse of ``encode_key``: non-UTF-8 bytes (possible via RESP) survive the round trip."""
    return key.decode("utf-8", "surrogateescape")


_DOT_KEYS = (b".", b"..")


def ordinary_key(key: bytes, limits: Limits = DEFAULT_LIMITS) -> bool:
    """True for a key ``validate_key`` accepts, tested in one expression: the check of every
    fast path (get, put, the server's GET and SET), which leaves the rest to ``validate_key``
    for its error."""
    return 0 < len(key) <= limits.max_key_bytes and key not in _DOT_KEYS


def validate_key(key: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """workerd's ``validateKeyName`` and Miniflare's ``validateKey`` in one."""
    if not key:
        raise KeyNameError("Key name cannot be empty.", "Key names must not be empty")
    if key == b"." or key == b"..":
        text = key.decode()
        raise KeyNameError(f'"{text}" is not allowed as a key name.',
                           f'Illegal key name "{text}". Please use a different name.')
    if len(key) > limits.max_key_bytes:
        raise KeyTooLongError(f"UTF-8 encoded length of {len(key)} exceeds key length limit "
                              f"of {limits.max_key_bytes}.")


def validate_prefix(prefix: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    if len(prefix) > limits.max_key_bytes:
        raise KeyTooLongError(f"UTF-8 encoded length of {len(prefix)} exceeds key length limit "
                              f"of {limits.max_key_bytes}.")


# --------------------------------------------------------------------------- put options


def resolve_expiration_ms(expiration=None, expiration_ttl=None, *, now_ms: int,
                          min_ttl: int = 60, wire: bool = False) -> int:
    """Expiration in epoch ms from KV's two options (0 = none); ``expiration_ttl`` wins.

    Miniflare's order and texts: a TTL that is not a positive integer, then one under the
    minimum; an expiration not in the future, then one under ``min_ttl`` seconds away.  The
    boundaries ``ttl == min_ttl`` and ``expiration == now + min_ttl`` are accepted.  Last,
    edgekv's own bound: neither may end past ``MAX_EXPIRATION_SECONDS`` (Miniflare has none,
    but the record header cannot hold a later time).
    """
    now = now_ms // 1000
    if expiration_ttl is not None:
        ttl, shown = _as_int(expiration_ttl, wire)
        if ttl is None or ttl <= 0:
            raise KVValidationError(f"Invalid expiration_ttl of {shown}. Please specify integer "
                                    f"greater than 0.", code=10034)
        if ttl < min_ttl:
            raise KVValidationError(f"Invalid expiration_ttl of {shown}. Expiration TTL must be "
                                    f"at least {min_ttl}.", code=10034)
        if ttl > MAX_EXPIRATION_SECONDS - now:
            raise KVValidationError(f"Invalid expiration_ttl of {shown}. Expiration TTL must be "
                                    f"at most {MAX_EXPIRATION_SECONDS - now}.", code=10034)
        return (now + ttl) * 1000
    if expiration is not None:
        when, shown = _as_int(expiration, wire)
        if when is None or when <= now:
            raise KVValidationError(f"Invalid expiration of {shown}. Please specify integer "
                                    f"greater than the current number of seconds since the "
                                    f"UNIX epoch.", code=10033)
        if when < now + min_ttl:
            raise KVValidationError(f"Invalid expiration of {shown}. Expiration times must be at "
                                    f"least {min_ttl} seconds in the future.", code=10033)
        if when > MAX_EXPIRATION_SECONDS:
            raise KVValidationError(f"Invalid expiration of {shown}. Expiration times must be at "
                                    f"most {MAX_EXPIRATION_SECONDS} seconds since the UNIX epoch.",
                                    code=10033)
        return when * 1000
    return 0


def check_ttl_ms(ttl_ms: int, min_ttl: int) -> None:
    """Redis-style relative TTLs (EX, PX, EXPIRE...) obey the same floor as expiration_ttl."""
    if ttl_ms < min_ttl * 1000:
        shown = ttl_ms // 1000 if ttl_ms % 1000 == 0 else ttl_ms / 1000
        raise KVValidationError(f"Invalid expiration_ttl of {shown}. Expiration TTL must be at "
                                f"least {min_ttl}.", code=10034)


def encode_metadata(metadata, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Metadata as compact JSON text (``JSON.stringify``), b"" for none; 413 over the limit."""
    if metadata is None:
        return b""
    text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    check_metadata_size(text, limits)
    return text


def validate_metadata_json(text, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Metadata that arrives as JSON text on the wire: must parse, then obey the size limit."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        shown = json.dumps(raw[:64].decode("utf-8", "replace"), ensure_ascii=False)
        raise KVValidationError(f"Metadata must be valid JSON, got {shown}.", code=10012)
    check_metadata_size(raw, limits)
    return raw


def check_metadata_size(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    if len(raw) > limits.max_metadata_bytes:
        raise PayloadTooLargeError(f"Metadata length of {len(raw)} exceeds limit of "
                                   f"{limits.max_metadata_bytes}.")


def value_too_large(length: int, limits: Limits = DEFAULT_LIMITS) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"Value length of {length} exceeds limit of "
                                f"{limits.max_value_bytes}.")


def check_value_size(length: int, limits: Limits = DEFAULT_LIMITS) -> None:
    if length > limits.max_value_bytes:
        raise value_too_large(length, limits)


# --------------------------------------------------------------------------- get options


def validate_cache_ttl(cache_ttl, limits: Limits = DEFAULT_LIMITS, *, wire: bool = False) -> None:
    """Validated, then ignored: edgekv has no edge cache to hold values in."""
    if cache_ttl is None:
        return
    value, shown = _as_int(cache_ttl, wire)
    if value is None or value < limits.min_cache_ttl_seconds:
        raise KVValidationError(f"Invalid cache_ttl of {shown}. Cache TTL must be at least "
                                f"{limits.min_cache_ttl_seconds}.")


def check_get_type(type_: str) -> None:
    if type_ not in GET_TYPES:
        raise ResponseTypeError('Unknown response type. Possible types are "text", '
                                '"arrayBuffer", "json", and "stream".')


def check_bulk_get_request(keys: list, type_: str | None, limits: Limits = DEFAULT_LIMITS) -> None:
    """Miniflare's bulk-get checks, in its order: type, too many keys, too few keys."""
    if type_ is not None and type_ not in BULK_GET_TYPES:
        raise KVValidationError(f'"{type_}" is not a valid type. Use "json" or "text"')
    if len(keys) > limits.max_bulk_get_keys:
        raise KVValidationError(f"You can request a maximum of {limits.max_bulk_get_keys} keys")
    if len(keys) < 1:
        raise KVValidationError("You must request a minimum of 1 key")


def validate_key_server_side(key: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Key checks as Miniflare's server words them (bulk get and HTTP paths)."""
    try:
        validate_key(key, limits)
    except KeyNameError as exc:
        raise KVValidationError(exc.server_message, code=exc.code) from None


def bulk_get_too_large(limits: Limits = DEFAULT_LIMITS) -> PayloadTooLargeError:
    mb = limits.max_bulk_get_bytes / 1024 / 1024
    shown = str(int(mb)) if mb == int(mb) else repr(mb)
    return PayloadTooLargeError(f"Total size of request exceeds the limit of {shown}MB")


def utf16_length(text: str) -> int:
    """JavaScript's ``string.length``: Miniflare sums this, not bytes, for bulk-get size."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


# --------------------------------------------------------------------------- list


def resolve_list_limit(limit, limits: Limits = DEFAULT_LIMITS, *, wire: bool = False) -> int:
    """The binding drops limits ``<= 0`` (default 1000); the wire rejects them.  1000 is allowed."""
    if limit is None:
        return limits.max_list_keys
    value, shown = _as_int(limit, wire)
    if not wire and (value is None or value <= 0):
        return limits.max_list_keys
    if value is None or value < 1:
        raise KVValidationError(f"Invalid key_count_limit of {shown}. Please specify an integer "
                                f"greater than 0.", code=10028)
    if value > limits.max_list_keys:
        raise KVValidationError(f"Invalid key_count_limit of {shown}. Please specify an integer "
                                f"less than {limits.max_list_keys}.", code=10028)
    return value


def encode_cursor(last_key: bytes) -> str:
    """Miniflare's cursor: standard base64 (with padding) of the last key returned."""
    return base64.b64encode(last_key).decode("ascii")


def decode_cursor(cursor) -> bytes:
    """Lenient like Node's ``Buffer.from(c, "base64")``: junk decodes to what it can."""
    if not cursor:
        return b""
    text = cursor.decode("ascii", "ignore") if isinstance(cursor, bytes) else str(cursor)
    text = re.sub(r"[^A-Za-z0-9+/]", "", text.replace("-", "+").replace("_", "/"))
    text = text[: len(text) - len(text) % 4 if len(text) % 4 == 1 else len(text)]
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text)
    except ValueError:
        return b""


# --------------------------------------------------------------------------- namespaces


def validate_title(title, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(title, str) or not title.strip():
        raise KVValidationError("A namespace title must be a non-empty string.", code=10019)
    if len(title) > limits.max_title_chars:
        raise KVValidationError(f"Namespace title of {len(title)} characters exceeds limit of "
                                f"{limits.max_title_chars}.", code=10010)
    return title


def decode_base64_value(text) -> bytes:
    """A bulk item's ``base64`` value as bytes; ``ValueError`` when it is not base64.  Strict
    (line breaks aside): a lenient decoder skips what is not base64, so "!!!" would be stored
    as an empty value and reported written."""
    try:
        return base64.b64decode(_BASE64_WRAPPING.sub("", text), validate=True)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        raise ValueError("not valid base64") from None
