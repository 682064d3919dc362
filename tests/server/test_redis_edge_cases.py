"""Edge cases where edgekv once answered differently from redis-server 7 (a differential run):
expirations that overflow int64, Redis's strict integer parsing, GETEX with a past time,
repeated and misplaced options, SCAN cursors, and the multibulk argument limit.

Every case holds Redis's exact reply.  When a ``redis-server`` binary is installed, the same
commands also run against it, so the expected replies are checked against the real thing.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis

from engine import semantics
from engine.errors import KVValidationError
from tests.server.conftest import module_server

INVALID = "invalid expire time in '{}' command"
NOT_INTEGER = "value is not an integer or out of range"
SYNTAX = "syntax error"


class Err(str):
    """An expected error reply: redis-py's ``ResponseError`` text."""


# ---------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def edgekv(tmp_path_factory):
    yield from module_server(tmp_path_factory, "edge", "--min-ttl", "60", fsync="everysec")


@pytest.fixture
def r(edgekv):
    client = edgekv.client()
    client.flushall()
    yield client
    client.close()


def run(client: redis.Redis, args) -> object:
    """The reply as redis-py parses it, without its per-command callbacks (``args`` as bytes)."""
    try:
        return client.execute_command(*(a.encode() for a in args))
    except redis.ResponseError as exc:
        return Err(str(exc))


def check(client: redis.Redis, reference, steps) -> None:
    """Run ``(command, expected reply)`` steps on edgekv, then on redis-server if present."""
    for target in (client, reference):
        if target is None:
            continue
        target.flushall()
        for args, expected in steps:
            got = run(target, args)
            assert got == expected and type(got) is type(expected), (target, args, got)


def raw(port: int, payload: bytes, expect: int) -> bytes:
    """Send ``payload``; return what came back once ``expect`` bytes have (or the socket shut)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while len(data) < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


# ---------------------------------------------------------------------------- A: int64 overflow

OVERFLOW = [
    (("SET", "k", "v"), b"OK"),
    (("EXPIRE", "k", "9223372036854775807"), Err(INVALID.format("expire"))),
    (("EXPIRE", "k", "18446744073709552"), Err(INVALID.format("expire"))),
    (("EXPIRE", "k", "9223372036854775"), Err(INVALID.format("expire"))),  # now + ttl overflows
    (("PEXPIRE", "k", "9223372036854775807"), Err(INVALID.format("pexpire"))),
    (("EXPIREAT", "k", "92233720368547758"), Err(INVALID.format("expireat"))),
    (("EXPIRE", "k", "-9223372036854775808"), Err(INVALID.format("expire"))),
    (("EXPIRE", "k", "-9223372036854776"), Err(INVALID.format("expire"))),
    (("EXISTS", "k"), 1),
    (("TTL", "k"), -1),
    (("SET", "k", "v", "EXAT", "9223372036854775807"), Err(INVALID.format("set"))),
    (("SET", "h", "v", "EXAT", "18446744073709551"), Err(INVALID.format("set"))),
    (("SET", "k", "v", "PX", "9223372036854775807"), Err(INVALID.format("set"))),
    (("SET", "k", "v", "EX", "9223372036854775"), Err(INVALID.format("set"))),
    (("EXISTS", "h"), 0),
    (("GETEX", "k", "EXAT", "9223372036854775807"), Err(INVALID.format("getex"))),
    (("GETEX", "k", "EXAT", "9223372036854775808"), Err(NOT_INTEGER)),
    (("SETEX", "k", "9223372036854776", "v"), Err(INVALID.format("setex"))),
    (("PSETEX", "k", "9223372036854775807", "v"), Err(INVALID.format("psetex"))),
    (("TTL", "k"), -1),
    # The largest absolute time Redis keeps, and the last one its int64 arithmetic allows.
    (("PEXPIREAT", "k", "9223372036854775807"), 1),
    (("PEXPIRETIME", "k"), 9223372036854775807),
    (("SET", "k", "v", "PXAT", "9223372036854775807"), b"OK"),
    (("PEXPIRETIME", "k"), 9223372036854775807),
    (("SET", "k", "v"), b"OK"),
    (("EXPIRE", "k", "-9223372036854775"), 1),  # the most negative that converts: deletes
    (("EXISTS", "k"), 0),
]


def test_expirations_overflowing_int64_are_refused_as_redis_does(r, reference, edgekv):
    check(r, reference, OVERFLOW)
    assert "Traceback" not in edgekv.log()


def test_relative_ttls_up_to_the_int64_bound_are_kept_and_replied(edgekv, r):
    """Beyond 2^62 ms (the old cut-off) and up to int64: accepted, and PTTL stays an int64."""
    ttl = (1 << 62) + 1
    assert r.set("k", "v", px=ttl) is True
    left = r.pttl("k")
    assert ttl - 10_000 < left <= ttl
    assert r.pexpire("k", ttl) is True
    reply = raw(edgekv.port, b"PTTL k\r\n", 1)
    assert reply.startswith(b":") and 0 < int(reply[1:-2]) < (1 << 63)


def test_kv_put_refuses_expirations_the_record_cannot_hold(r):
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("KV.PUT", "z", "v", "EXPIRATION", "18446744073709552")
    assert str(err.value) == ("KV PUT failed: 400 Invalid expiration of 18446744073709552. "
                              "Expiration times must be at most 9223372036854775 seconds since "
                              "the UNIX epoch.")
    with pytest.raises(redis.ResponseError,
                       match=r"^KV PUT failed: 400 Invalid expiration_ttl of 18446744073709552\. "
                             r"Expiration TTL must be at most \d+\.$"):
        r.execute_command("KV.PUT", "z", "v", "EXPIRATION_TTL", "18446744073709552")
    assert r.exists("z") == 0
    assert r.execute_command("KV.PUT", "z", "v", "EXPIRATION", "9223372036854775") == b"OK"
    assert r.pexpiretime("z") == 9223372036854775000
    result = r.execute_command(
        "KV.BULKPUT", '[{"key":"a","value":"1","expiration_ttl":18446744073709552},'
                      '{"key":"b","value":"2"}]')
    assert result == {b"successful_key_count": 1, b"unsuccessful_keys": [b"a"]}


def test_semantics_bound_the_expiration_for_every_front_end():
    now_ms = 1_700_000_000_000
    limit = semantics.MAX_EXPIRATION_SECONDS
    assert limit * 1000 <= (1 << 63) - 1
    assert semantics.resolve_expiration_ms(limit, now_ms=now_ms) == limit * 1000
    with pytest.raises(KVValidationError, match=f"Invalid expiration of {limit + 1}. "):
        semantics.resolve_expiration_ms(limit + 1, now_ms=now_ms)
    ttl = limit - now_ms // 1000
    assert semantics.resolve_expiration_ms(None, ttl, now_ms=now_ms) == limit * 1000
    with pytest.raises(KVValidationError, match=f"must be at most {ttl}.$"):
        semantics.resolve_expiration_ms(None, ttl + 1, now_ms=now_ms)
    with pytest.raises(KVValidationError, match="Expiration TTL must be at most"):
        semantics.resolve_expiration_ms(None, 1e30, now_ms=now_ms)  # the binding's flavour


# ---------------------------------------------------------------------------- B: strict integers

STRICT_INTEGERS = [
    (("SET", "n", "007"), b"OK"),
    (("INCR", "n"), Err(NOT_INTEGER)),
    (("GET", "n"), b"007"),
    (("SET", "n", "-0"), b"OK"),
    (("INCR", "n"), Err(NOT_INTEGER)),
    (("SET", "n", "\t5"), b"OK"),
    (("INCR", "n"), Err(NOT_INTEGER)),
    (("SET", "n", "5\n"), b"OK"),
    (("DECR", "n"), Err(NOT_INTEGER)),
    (("SET", "n", "\x0c5"), b"OK"),
    (("INCRBY", "n", "1"), Err(NOT_INTEGER)),
    (("SET", "n", "5\x0b"), b"OK"),
    (("DECRBY", "n", "1"), Err(NOT_INTEGER)),
    (("SET", "n", "+5"), b"OK"),
    (("INCR", "n"), Err(NOT_INTEGER)),
    (("SET", "n", "9223372036854775808"), b"OK"),
    (("INCR", "n"), Err(NOT_INTEGER)),
    (("SET", "n", "5"), b"OK"),
    (("INCRBY", "n", "01"), Err(NOT_INTEGER)),
    (("INCRBY", "n", "00"), Err(NOT_INTEGER)),
    (("INCRBY", "n", "-0"), Err(NOT_INTEGER)),
    (("INCRBY", "n", "\t1"), Err(NOT_INTEGER)),
    (("INCRBY", "n", "1\n"), Err(NOT_INTEGER)),
    (("INCRBY", "n", "+1"), Err(NOT_INTEGER)),
    (("DECRBY", "n", "01"), Err(NOT_INTEGER)),
    (("GET", "n"), b"5"),
    (("INCRBY", "n", "-5"), 0),
    (("INCR", "n"), 1),
    (("APPEND", "a", "0"), 1),
    (("APPEND", "a", "10"), 3),
    (("INCR", "a"), Err(NOT_INTEGER)),  # "010"
    (("SET", "k", "v", "EX", "0100"), Err(NOT_INTEGER)),
    (("SETEX", "k", "0100", "v"), Err(NOT_INTEGER)),
    (("PSETEX", "k", "0100000", "v"), Err(NOT_INTEGER)),
    (("SET", "k", "v"), b"OK"),
    (("GETEX", "k", "EX", "0100"), Err(NOT_INTEGER)),
    (("EXPIRE", "k", "100\n"), Err(NOT_INTEGER)),
    (("EXPIRE", "k", "-0"), Err(NOT_INTEGER)),  # once deleted the key
    (("EXISTS", "k"), 1),
    (("SCAN", "0", "COUNT", "010"), Err(NOT_INTEGER)),
    (("SCAN", "0", "COUNT", "\t1"), Err(NOT_INTEGER)),
    (("HELLO", "02"), Err("Protocol version is not an integer or out of range")),
    (("HELLO", "-0"), Err("Protocol version is not an integer or out of range")),
]


def test_integers_follow_redis_string2ll(r, reference):
    check(r, reference, STRICT_INTEGERS)


def test_incr_refusal_is_the_exact_error_reply(edgekv, r):
    r.set("n", "007")
    expected = b"-ERR value is not an integer or out of range\r\n"
    assert raw(edgekv.port, b"INCR n\r\n", len(expected)) == expected
    assert r.get("n") == b"007"


# ---------------------------------------------------------------------------- C: GETEX in the past

GETEX_PAST = [
    (("SET", "k", "v"), b"OK"),
    (("GETEX", "k", "EXAT", "1"), b"v"),
    (("EXISTS", "k"), 0),
    (("SET", "k", "v"), b"OK"),
    (("GETEX", "k", "PXAT", "1"), b"v"),
    (("EXISTS", "k"), 0),
    (("SET", "k", "v"), b"OK"),
    (("GETEX", "k", "EXAT", "-5"), Err(INVALID.format("getex"))),  # > 0 comes first
    (("GETEX", "k", "PX", "0"), Err(INVALID.format("getex"))),
    (("EXISTS", "k"), 1),
]


def test_getex_with_a_past_absolute_time_returns_the_value_and_deletes(r, reference):
    check(r, reference, GETEX_PAST)


def test_getex_exat_seconds_ago_deletes_and_a_too_near_time_keeps_the_key(edgekv, r):
    r.execute_command("KV.PUT", "k", "v", "METADATA", '{"a":1}')
    past = int(time.time()) - 10
    assert raw(edgekv.port, f"GETEX k EXAT {past}\r\n".encode(), 7) == b"$1\r\nv\r\n"
    assert r.exists("k") == 0
    # Still ahead but under the minimum TTL: the documented KV floor, and the key stays.
    r.set("k", "v")
    with pytest.raises(redis.ResponseError, match="Expiration times must be at least 60"):
        r.getex("k", exat=int(time.time()) + 5)
    assert r.get("k") == b"v"


# ---------------------------------------------------------------------------- D: options

OPTIONS = [
    # D1: a repeated unit is allowed, the last one wins (and only it is parsed).
    (("SET", "k", "v", "EX", "100", "EX", "200"), b"OK"),
    (("TTL", "k"), 200),
    (("SET", "k", "v", "EX", "abc", "EX", "200"), b"OK"),
    (("TTL", "k"), 200),
    (("SET", "k", "v", "PX", "100000", "PX", "300000"), b"OK"),
    (("TTL", "k"), 300),
    (("SET", "k", "v", "EX", "0", "EX", "0"), Err(INVALID.format("set"))),
    (("SET", "k", "v", "EX", "100", "PX", "200000"), Err(SYNTAX)),
    (("SET", "k", "v", "EX", "100", "KEEPTTL"), Err(SYNTAX)),
    (("SET", "k", "v", "EX", "abc", "FOO"), Err(SYNTAX)),  # options before the amount
    (("SET", "k", "v", "KEEPTTL", "KEEPTTL"), b"OK"),
    (("GETEX", "k", "PERSIST", "PERSIST"), b"v"),
    (("TTL", "k"), -1),
    (("GETEX", "k", "EX", "100", "EX", "300"), b"v"),
    (("TTL", "k"), 300),
    (("GETEX", "k", "PERSIST", "EX", "100"), Err(SYNTAX)),
    (("GETEX", "k", "EX", "100", "PERSIST"), Err(SYNTAX)),
    # D2: a missing key is nil whatever the amount; the options are still checked first.
    (("GETEX", "missing", "EX", "abc"), None),
    (("GETEX", "missing", "EX", "0"), None),
    (("GETEX", "missing", "EX", "-1"), None),
    (("GETEX", "missing", "PX", "-7"), None),
    (("GETEX", "missing", "FOO"), Err(SYNTAX)),
    (("GETEX", "missing", "EX", "1", "PX", "2"), Err(SYNTAX)),
    # D3: EXPIRE's flags come before its amount; the unsupported one is named.
    (("EXPIRE", "k", "50", "NX", "FOO"), Err("Unsupported option FOO")),
    (("EXPIRE", "k", "abc", "FOO"), Err("Unsupported option FOO")),
    (("EXPIRE", "k", "abc", "NX", "XX"),
     Err("NX and XX, GT or LT options at the same time are not compatible")),
    (("EXPIRE", "k", "abc", "GT", "LT"),
     Err("GT and LT options at the same time are not compatible")),
    (("EXPIRE", "k", "abc", "GT"), Err(NOT_INTEGER)),
    (("EXPIRE", "k", "400", "gt"), 1),
    (("TTL", "k"), 400),
    # D4: SCAN cursors are read like strtoul, without leading whitespace or trailing junk.
    (("SCAN", " 0"), Err("invalid cursor")),
    (("SCAN", "\t0"), Err("invalid cursor")),
    (("SCAN", "0 "), Err("invalid cursor")),
    (("SCAN", "1_0"), Err("invalid cursor")),
    (("SCAN", "+"), Err("invalid cursor")),
    (("SCAN", "+0"), [b"0", [b"k"]]),
    (("SCAN", "-0"), [b"0", [b"k"]]),
]


def test_option_parsing_matches_redis(r, reference):
    check(r, reference, OPTIONS)


# ---------------------------------------------------------------------------- E1: argument limit


def test_more_than_a_million_arguments_is_a_protocol_error(edgekv, r):
    limit = 1024 * 1024
    reply = raw(edgekv.port, b"*%d\r\n" % (limit + 1), 100)
    assert reply == b"-ERR Protocol error: invalid multibulk length\r\n"  # and then closed
    r.set("k0", "v")
    request = b"*%d\r\n$3\r\nDEL\r\n" % limit + b"$2\r\nk0\r\n" * (limit - 1)
    assert raw(edgekv.port, request, 4) == b":1\r\n"
    assert r.config_get("proto-max-multibulk-len") == {"proto-max-multibulk-len": str(limit)}
