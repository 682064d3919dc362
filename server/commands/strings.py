"""Redis string and key commands mapped onto Workers KV semantics.

The mapping rules (``docs/commands.md`` has the full table):

* every SET-family write is a KV put: it replaces value, expiration **and metadata**;
  ``KEEPTTL`` keeps only the expiration;
* commands that edit a value in place (APPEND, INCR...) and the EXPIRE family keep the other
  two parts, as Redis keeps a key's TTL;
* relative TTLs below the minimum (60 s, ``--min-ttl``) are refused with KV's message naming
  the limit and the value; a TTL <= 0 in EXPIRE deletes the key, as in Redis;
* keys and values obey KV's limits (1..512 bytes, not ``.``/``..``; 25 MiB).

Writes never wait for fsync here: the connection releases the replies of a whole batch after
one shared fsync (``fsync=always``).
"""

from __future__ import annotations

import re

from engine import semantics
from engine.errors import KVValidationError
from engine.store import Write

from ..glob import literal_prefix, matches
from ..resp import BULK_HEADERS, encode_bulk, encode_int
from .base import (OK, SYNTAX, CommandError, as_text, bulk_or_null, command, null, parse_int,
                   reply)

# ---------------------------------------------------------------------------- helpers


def check_key(session, key: bytes) -> None:
    limits = session.namespace.store.limits
    if not semantics.ordinary_key(key, limits):
        semantics.validate_key(key, limits)


def check_value(session, value: bytes) -> None:
    if len(value) > session.namespace.limits.max_value_bytes:
        raise semantics.value_too_large(len(value), session.namespace.limits)


def _now_ms(session) -> int:
    return session.state.store.clock_ms()


def _min_ttl(session) -> int:
    return session.namespace.limits.min_ttl_seconds


_INT64_MAX = (1 << 63) - 1
_RELATIVE = ("ex", "px")


def expire_at_ms(unit: str, arg: bytes, now: int, command_name: str, *,
                 positive: bool = True) -> int:
    """``EX|PX|EXAT|PXAT arg`` as epoch ms, refused exactly where Redis refuses it.

    Redis's ``getExpireMillisecondsOrReply`` (SET, SETEX, PSETEX, GETEX: ``positive``) and
    ``expireGenericCommand`` (the EXPIRE family, where a time <= now deletes the key): seconds
    times 1000, and now plus a relative TTL, must stay within int64.  That bound also keeps
    the record's 64-bit ``expire_ms`` and every TTL reply (a signed RESP integer) valid.  The
    result may be in the past; ``check_min_ttl`` applies edgekv's floor to what is kept.
    """
    amount = parse_int(arg)
    scale = 1000 if unit in ("ex", "exat") else 1
    base = now if unit in _RELATIVE else 0
    if ((positive and amount <= 0) or (scale > 1 and abs(amount) > _INT64_MAX // scale)
            or amount * scale > _INT64_MAX - base):
        raise CommandError(f"ERR invalid expire time in '{command_name}' command")
    return base + amount * scale


def check_min_ttl(session, unit: str, arg: bytes, when: int, now: int) -> None:
    """Workers KV's floor on an expiration that will be stored: a relative TTL gets
    ``expiration_ttl``'s message, an absolute time ``expiration``'s, both naming ``arg``."""
    min_ttl = _min_ttl(session)
    if unit in _RELATIVE:
        semantics.check_ttl_ms(when - now, min_ttl)
    elif when < now + min_ttl * 1000:
        raise KVValidationError(f"Invalid expiration of {arg.decode()}. Expiration times must "
                                f"be at least {min_ttl} seconds in the future.", code=10033)


def _put(session, key: bytes, value: bytes, expire_ms: int = 0, metadata: bytes = b"") -> None:
    session.namespace.put_raw(key, value, expire_ms, metadata, durable=False)


def _counted(session, found):
    """``found`` (an entry, a value or None), counted in INFO's keyspace hits and misses."""
    stats = session.state.stats
    if found is None:
        stats.keyspace_misses += 1
    else:
        stats.keyspace_hits += 1
    return found


def _entry(session, key: bytes):
    check_key(session, key)
    return _counted(session, session.namespace.get_entry(key))


# ---------------------------------------------------------------------------- GET / SET


def _value(session, key: bytes) -> bytes | None:
    """Just the value: the engine's fast path, read cache included.  ``check_key`` written
    out, as this runs for every GET."""
    ns = session.namespace
    store = ns.store
    if not semantics.ordinary_key(key, store.limits):
        semantics.validate_key(key, store.limits)
    return _counted(session, store.get_value(ns.number, key))


def get_many(session, commands: list[list[bytes]]) -> bytes | None:
    """A pipeline's run of ``GET key`` commands: their replies, or None when a key needs
    ``get``'s full path (the caller then runs them one by one)."""
    ns = session.namespace
    get_value = ns.store.get_value
    limits = ns.store.limits
    ordinary_key = semantics.ordinary_key
    number = ns.number
    nil = null(session)
    out = []
    hits = 0
    for args in commands:
        key = args[1]
        if not ordinary_key(key, limits):
            return None
        value = get_value(number, key)
        if value is None:
            out.append(nil)
        else:
            hits += 1
            out.append(encode_bulk(value))
    stats = session.state.stats
    stats.keyspace_hits += hits
    stats.keyspace_misses += len(commands) - hits
    return b"".join(out)


@command("get", op="GET")
def get(session, args):
    value = _value(session, args[1])
    if value is None:
        return null(session)
    size = len(value)
    if size < 1024:  # encode_bulk, inlined
        return BULK_HEADERS[size] + value + b"\r\n"
    return encode_bulk(value)


_SET_FLAGS = {b"nx", b"xx", b"get", b"keepttl"}
_SET_UNITS = {b"ex", b"px", b"exat", b"pxat"}


def _plain_put_ok(key: bytes, value: bytes, store) -> bool:
    """True when ``SET key value`` can go straight to the engine: nothing to validate further,
    nothing to report but OK."""
    limits = store.limits
    return (semantics.ordinary_key(key, limits) and len(value) <= limits.max_value_bytes
            and not store.write_rate_limit)


def set_many(session, commands: list[list[bytes]]) -> bytes | None:
    """A pipeline's run of plain ``SET key value`` commands as one engine write (``put_many``):
    their replies, or None when one of them needs ``set_``'s full path (the caller then runs
    them one by one).  Deferred as a single SET is: see ``set_``."""
    ns = session.namespace
    store = ns.store
    items = []
    for args in commands:
        key, value = args[1], args[2]
        if not _plain_put_ok(key, value, store):
            return None
        items.append((key, value, 0, b""))
    store.put_many(ns.number, items, durable=False, deferred=store.commit.policy != "always")
    return OK * len(items)


@command("set", op="PUT")
def set_(session, args):
    key, value = args[1], args[2]
    if len(args) == 3:  # plain SET: the hot path, straight to the engine's single put
        ns = session.namespace
        store = ns.store
        if _plain_put_ok(key, value, store):
            # Deferred: the server writes the loop iteration's SETs at once before replying.
            # Not under fsync=always, where a refused write must still answer this SET with
            # the error rather than fail the group commit the reply waits for.
            store.put_one(ns.number, key, value, durable=False,
                          deferred=store.commit.policy != "always")
            return OK
    nx = xx = want_old = keepttl = False
    unit = raw = None
    i = 3
    while i < len(args):  # Redis's parseExtendedStringArgumentsOrReply
        opt = args[i].lower()
        if opt == b"nx" and not xx:
            nx = True
        elif opt == b"xx" and not nx:
            xx = True
        elif opt == b"get":
            want_old = True
        elif opt == b"keepttl" and unit is None:
            keepttl = True
        elif opt in _SET_UNITS and unit in (None, opt) and not keepttl and i + 1 < len(args):
            unit, raw = opt, args[i + 1]  # repeating the same unit is allowed: the last wins
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    expire_ms = 0
    if unit is not None:
        unit = unit.decode()
        now = _now_ms(session)
        expire_ms = expire_at_ms(unit, raw, now, "set")
        check_min_ttl(session, unit, raw, expire_ms, now)
    check_key(session, key)
    check_value(session, value)
    old = None
    if nx or xx or want_old or keepttl:
        old = session.namespace.get_entry(key)
        if (nx and old is not None) or (xx and old is None):
            return bulk_or_null(session, old.value if old else None) if want_old else null(session)
        if keepttl and old is not None:
            expire_ms = old.expire_ms
    _put(session, key, value, expire_ms)
    if want_old:
        return bulk_or_null(session, old.value if old else None)
    return OK


@command("setnx", op="PUT")
def setnx(session, args):
    key, value = args[1], args[2]
    check_key(session, key)
    check_value(session, value)
    if session.namespace.store.lookup(session.namespace.number, key) is not None:
        return encode_int(0)
    _put(session, key, value)
    return encode_int(1)


def _setex(session, args, unit: str, name: str):
    key, value, raw = args[1], args[3], args[2]
    now = _now_ms(session)
    expire_ms = expire_at_ms(unit, raw, now, name)
    check_min_ttl(session, unit, raw, expire_ms, now)
    check_key(session, key)
    check_value(session, value)
    _put(session, key, value, expire_ms)
    return OK


@command("setex", op="PUT")
def setex(session, args):
    return _setex(session, args, "ex", "setex")


@command("psetex", op="PUT")
def psetex(session, args):
    return _setex(session, args, "px", "psetex")


@command("getset", op="PUT")
def getset(session, args):
    key, value = args[1], args[2]
    check_value(session, value)
    old = _entry(session, key)
    _put(session, key, value)
    return bulk_or_null(session, old.value if old else None)


@command("getdel", op="DELETE")
def getdel(session, args):
    key = args[1]
    old = _entry(session, key)
    if old is None:
        return null(session)
    session.namespace.delete_raw(key, durable=False)
    return encode_bulk(old.value)


@command("getex", op="PUT")
def getex(session, args):
    """Redis's order: options, then a missing key is nil whatever the amount, then the amount.
    An EXAT/PXAT already past returns the value and deletes the key, as EXPIREAT does."""
    key = args[1]
    unit = raw = None
    persist = False
    i = 2
    while i < len(args):
        opt = args[i].lower()
        if opt in _SET_UNITS and unit in (None, opt) and not persist and i + 1 < len(args):
            unit, raw = opt, args[i + 1]  # the last of a repeated unit wins, as in SET
            i += 1
        elif opt == b"persist" and unit is None:
            persist = True
        else:
            raise CommandError(SYNTAX)
        i += 1
    entry = _entry(session, key)
    if entry is None:
        return null(session)
    if unit is not None:
        unit = unit.decode()
        now = _now_ms(session)
        expire_ms = expire_at_ms(unit, raw, now, "getex")
        if unit not in _RELATIVE and expire_ms <= now:
            session.namespace.delete_raw(key, durable=False)
        else:
            check_min_ttl(session, unit, raw, expire_ms, now)
            _put(session, key, entry.value, expire_ms, entry.metadata)
    elif persist and entry.expire_ms:
        _put(session, key, entry.value, 0, entry.metadata)
    return encode_bulk(entry.value)


@command("mget", op="GET")
def mget(session, args):
    return reply(session, [_value(session, key) for key in args[1:]])


def _pairs(session, args, name: str) -> list[tuple[bytes, bytes]]:
    if len(args) % 2 == 0:
        raise CommandError(f"ERR wrong number of arguments for '{name}' command")
    pairs = list(zip(args[1::2], args[2::2]))
    for key, value in pairs:
        check_key(session, key)
        check_value(session, value)
    return pairs


@command("mset", op="PUT")
def mset(session, args):
    pairs = _pairs(session, args, "mset")
    ns = session.namespace
    ns.store.put_many(ns.number, [(k, v, 0, b"") for k, v in pairs], durable=False)
    return OK


@command("msetnx", op="PUT")
def msetnx(session, args):
    pairs = _pairs(session, args, "msetnx")
    ns = session.namespace
    number = ns.number
    store = ns.store
    with store._lock:
        if any(store.lookup(number, k) is not None for k, _ in pairs):
            return encode_int(0)
        store.put_many(number, [(k, v, 0, b"") for k, v in pairs], durable=False)
    return encode_int(1)


@command("strlen", op="GET")
def strlen(session, args):
    entry = _entry(session, args[1])
    return encode_int(0 if entry is None else len(entry.value))


@command("append", op="PUT")
def append(session, args):
    key, extra = args[1], args[2]
    entry = _entry(session, key)
    if entry is None:
        check_value(session, extra)
        _put(session, key, extra)
        return encode_int(len(extra))
    value = entry.value + extra
    check_value(session, value)
    _put(session, key, value, entry.expire_ms, entry.metadata)
    return encode_int(len(value))


def _incr(session, key: bytes, delta: int):
    entry = _entry(session, key)
    if entry is None:
        current = 0
    else:
        current = parse_int(entry.value) if len(entry.value) <= 20 else None
        if current is None:
            raise CommandError("ERR value is not an integer or out of range")
    result = current + delta
    if not -(1 << 63) <= result < (1 << 63):
        raise CommandError("ERR increment or decrement would overflow")
    if entry is None:
        _put(session, key, str(result).encode())
    else:
        _put(session, key, str(result).encode(), entry.expire_ms, entry.metadata)
    return encode_int(result)


@command("incr", op="PUT")
def incr(session, args):
    return _incr(session, args[1], 1)


@command("decr", op="PUT")
def decr(session, args):
    return _incr(session, args[1], -1)


@command("incrby", op="PUT")
def incrby(session, args):
    return _incr(session, args[1], parse_int(args[2]))


@command("decrby", op="PUT")
def decrby(session, args):
    delta = parse_int(args[2])
    if delta == -(1 << 63):
        raise CommandError("ERR decrement would overflow")
    return _incr(session, args[1], -delta)


# ---------------------------------------------------------------------------- keyspace


def _delete_many(session, keys) -> int:
    ns = session.namespace
    store = ns.store
    number = ns.number
    with store._lock:
        found = []
        seen = set()
        for key in keys:
            check_key(session, key)
            if key not in seen and store.lookup(number, key) is not None:
                found.append(Write(number, key, tombstone=True))
            seen.add(key)
        if found:
            store.write(found, durable=False)
    return len(found)


@command("del", "unlink", op="DELETE")
def delete(session, args):
    return encode_int(_delete_many(session, args[1:]))


@command("exists", op="GET")
def exists(session, args):
    ns = session.namespace
    store = ns.store
    number = ns.number
    count = 0
    for key in args[1:]:
        check_key(session, key)
        if store.lookup(number, key) is not None:
            count += 1
    return encode_int(count)


@command("type", op="GET")
def type_(session, args):
    key = args[1]
    check_key(session, key)
    ns = session.namespace
    found = ns.store.lookup(ns.number, key) is not None
    return b"+string\r\n" if found else b"+none\r\n"


def _ttl_ms(session, key: bytes) -> int:
    """Redis's convention: -2 missing, -1 no expiration, else milliseconds left."""
    check_key(session, key)
    ns = session.namespace
    store = ns.store
    if store.lookup(ns.number, key) is None:
        return -2
    exp = store.expiration_ms(ns.number, key)
    if not exp:
        return -1
    return max(0, exp - _now_ms(session))


@command("ttl", op="GET")
def ttl(session, args):
    ms = _ttl_ms(session, args[1])
    return encode_int(ms if ms < 0 else (ms + 500) // 1000)


@command("pttl", op="GET")
def pttl(session, args):
    return encode_int(_ttl_ms(session, args[1]))


def _expiretime(session, key: bytes, divisor: int) -> int:
    ms = _ttl_ms(session, key)
    if ms < 0:
        return ms
    ns = session.namespace
    return ns.store.expiration_ms(ns.number, key) // divisor


@command("expiretime", op="GET")
def expiretime(session, args):
    return encode_int(_expiretime(session, args[1], 1000))


@command("pexpiretime", op="GET")
def pexpiretime(session, args):
    return encode_int(_expiretime(session, args[1], 1))


def _expire(session, args, unit: str, name: str):
    """Redis's ``expireGenericCommand``: flags first, then the amount, then the key."""
    key = args[1]
    flags = set()
    for arg in args[3:]:
        flag = arg.lower()
        if flag not in (b"nx", b"xx", b"gt", b"lt"):
            raise CommandError(f"ERR Unsupported option {as_text(arg)}")
        flags.add(flag)
    if b"nx" in flags and flags & {b"xx", b"gt", b"lt"}:
        raise CommandError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"gt" in flags and b"lt" in flags:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    now = _now_ms(session)
    when = expire_at_ms(unit, args[2], now, name, positive=False)
    entry = _entry(session, key)
    if entry is None:
        return encode_int(0)
    current = entry.expire_ms
    if ((b"nx" in flags and current) or (b"xx" in flags and not current)
            or (b"gt" in flags and (not current or when <= current))
            or (b"lt" in flags and current and when >= current)):
        return encode_int(0)
    if when <= now:
        session.namespace.delete_raw(key, durable=False)
        return encode_int(1)
    check_min_ttl(session, unit, args[2], when, now)
    _put(session, key, entry.value, when, entry.metadata)
    return encode_int(1)


@command("expire", op="PUT")
def expire(session, args):
    return _expire(session, args, "ex", "expire")


@command("pexpire", op="PUT")
def pexpire(session, args):
    return _expire(session, args, "px", "pexpire")


@command("expireat", op="PUT")
def expireat(session, args):
    return _expire(session, args, "exat", "expireat")


@command("pexpireat", op="PUT")
def pexpireat(session, args):
    return _expire(session, args, "pxat", "pexpireat")


@command("persist", op="PUT")
def persist(session, args):
    key = args[1]
    entry = _entry(session, key)
    if entry is None or not entry.expire_ms:
        return encode_int(0)
    _put(session, key, entry.value, 0, entry.metadata)
    return encode_int(1)


# ---------------------------------------------------------------------------- iteration

_KEYS_CHUNK = 4096


def _walk(session, pattern: bytes):
    """Every live key of the session's namespace matching ``pattern``, in byte order."""
    ns = session.namespace
    prefix = literal_prefix(pattern)
    after = None
    while True:
        rows = ns.store.scan_keys(ns.number, prefix, after, _KEYS_CHUNK)
        for key, _exp, _meta in rows:
            if matches(pattern, key):
                yield key
        if len(rows) < _KEYS_CHUNK:
            return
        after = rows[-1][0]


@command("keys", op="GET")
def keys(session, args):
    return reply(session, list(_walk(session, args[1])))


_CURSOR = re.compile(rb"(?:[+-]?[0-9]+)?")


def _cursor(arg: bytes) -> int:
    """Redis's ``strtoul`` cursor rules (no whitespace, nothing after the digits, ``""`` is 0),
    except that negative cursors are refused rather than wrapped (docs/commands.md)."""
    cursor = int(arg or b"0") if _CURSOR.fullmatch(arg) else -1
    if not 0 <= cursor < (1 << 64):
        raise CommandError("ERR invalid cursor")
    return cursor


@command("scan", op="GET")
def scan(session, args):
    cursor = _cursor(args[1])
    pattern = b"*"
    count = 10
    type_filter = None
    i = 2
    while i < len(args):
        opt = args[i].lower()
        if i + 1 >= len(args):
            raise CommandError(SYNTAX)
        if opt == b"match":
            pattern = args[i + 1]
        elif opt == b"count":
            count = parse_int(args[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"type":
            type_filter = args[i + 1].lower()
        else:
            raise CommandError(SYNTAX)
        i += 2
    ns = session.namespace
    cursors = session.state.scan_cursors
    after = None
    if cursor:
        position = cursors.take(cursor)
        if position is None:
            raise CommandError("ERR invalid cursor")
        after = position[1]
    if type_filter is not None and type_filter != b"string":
        return reply(session, [b"0", []])  # every edgekv key is a string
    prefix = literal_prefix(pattern)
    if after is not None and not after.startswith(prefix) and after > prefix:
        return reply(session, [b"0", []])  # walked past every key the pattern can match
    rows = ns.store.scan_keys(ns.number, prefix, after, min(count, 100_000))
    found = [key for key, _exp, _meta in rows if matches(pattern, key)]
    next_cursor = 0 if len(rows) < count else cursors.save(ns.id, rows[-1][0])
    return reply(session, [str(next_cursor).encode(), found])


@command("dbsize", op="GET")
def dbsize(session, args):
    ns = session.namespace
    return encode_int(ns.store.key_count(ns.number))


@command("flushdb", op="DELETE")
def flushdb(session, args):
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"async", b"sync")):
        raise CommandError(SYNTAX)
    session.state.store.flush_namespace(session.namespace.id)
    return OK


@command("flushall", op="DELETE")
def flushall(session, args):
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"async", b"sync")):
        raise CommandError(SYNTAX)
    store = session.state.store
    for info in store.list_namespaces():
        store.flush_namespace(info.id)
    return OK
