"""What every command module shares: registration, argument parsing, protocol-aware replies."""

from __future__ import annotations

import re
from typing import Callable

from ..resp import encode, encode_bulk, encode_int

#: lower-case command name -> (handler, KV operation its engine errors are reported as)
REGISTRY: dict[str, tuple[Callable, str | None]] = {}

OK = b"+OK\r\n"
NULL_RESP2 = b"$-1\r\n"
NULL_RESP3 = b"_\r\n"
NOT_INTEGER = "ERR value is not an integer or out of range"
SYNTAX = "ERR syntax error"
_INTEGER = re.compile(rb"-?[1-9][0-9]*|0")


class CommandError(Exception):
    """A Redis-style error reply; the text starts with its code word (ERR, WRONGPASS...)."""


def command(*names: str, op: str | None = None):
    """Register a handler ``fn(session, args) -> bytes`` for the given lower-case names.

    ``op`` (``GET``, ``PUT``, ``DELETE``, ``GET_BULK``) names the KV operation, so an engine
    error reads ``KV PUT failed: 413 ...`` exactly as the Workers binding would say it.
    """
    def register(fn):
        for name in names:
            REGISTRY[name] = (fn, op)
        return fn
    return register


def null(session) -> bytes:
    return NULL_RESP3 if session.protocol == 3 else NULL_RESP2


def bulk_or_null(session, value: bytes | None) -> bytes:
    return null(session) if value is None else encode_bulk(value)


def reply(session, value) -> bytes:
    """Encode any Python value (dict → map, set → set, bool...) in the client's protocol."""
    return encode(value, session.protocol)


def parse_int(arg: bytes, message: str = NOT_INTEGER) -> int:
    """Redis's ``string2ll``: ``0``, or an optional ``-`` then digits with no leading zero.

    Python's ``int()`` also takes ``007``, ``-0``, ``+1``, ``1_0`` and surrounding whitespace;
    Redis refuses them all, so INCR leaves a stored ``"007"`` alone and ``EXPIRE k -0`` does
    not delete the key.
    """
    if len(arg) > 20 or _INTEGER.fullmatch(arg) is None:
        raise CommandError(message)
    value = int(arg)
    if not -(1 << 63) <= value < (1 << 63):
        raise CommandError(message)
    return value


def as_text(arg: bytes) -> str:
    return arg.decode("utf-8", "surrogateescape")


__all__ = ["REGISTRY", "OK", "CommandError", "command", "null", "bulk_or_null", "reply",
           "parse_int", "as_text", "encode_bulk", "encode_int", "NOT_INTEGER", "SYNTAX"]
