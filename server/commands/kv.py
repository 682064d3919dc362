"""The Workers KV commands: KV.PUT KV.GET KV.MGET KV.DEL KV.LIST KV.METADATA KV.BULKPUT
KV.BULKDEL KV.NAMESPACE.  Each is a thin mapping onto ``engine.Namespace`` with wire-style
option parsing, so limits and messages are exactly the engine's (and Miniflare's)."""

from __future__ import annotations

import json

from engine import ValueWithMetadata, semantics
from engine.crypto import retire_refusal
from engine.errors import KVValidationError, StoreError

from ..resp import encode_bulk, encode_int
from .base import OK, CommandError, as_text, bulk_or_null, command, null, parse_int, reply
from .subcommands import help_reply, subcommand


def _options(args: list[bytes], start: int, valued: set[bytes], flags: set[bytes]) -> dict:
    """Parse ``NAME value`` and bare ``FLAG`` options, case-insensitive."""
    found: dict = {}
    i = start
    while i < len(args):
        name = args[i].lower()
        if name in valued and i + 1 < len(args):
            found[name] = args[i + 1]
            i += 2
        elif name in flags:
            found[name] = True
            i += 1
        else:
            raise CommandError(f"ERR syntax error near '{as_text(args[i])}'")
    return found


def _json_text(value) -> bytes | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@command("kv.put", op="PUT")
def kv_put(session, args):
    opts = _options(args, 3, {b"expiration", b"expiration_ttl", b"metadata"}, set())
    session.namespace.put(args[1], args[2], expiration=opts.get(b"expiration"),
                          expiration_ttl=opts.get(b"expiration_ttl"),
                          metadata=opts.get(b"metadata"), durable=False, wire=True)
    return OK


def _typed(value: bytes, type_: str) -> bytes:
    if type_ == "json":
        try:
            json.loads(value)
        except ValueError:
            raise KVValidationError("The stored value is not valid JSON.") from None
    return value


@command("kv.get", op="GET")
def kv_get(session, args):
    opts = _options(args, 2, {b"type", b"cachettl"}, {b"withmetadata"})
    type_ = as_text(opts.get(b"type", b"text")).lower()
    if type_ not in ("text", "json", "bytes", "arraybuffer", "stream"):
        raise CommandError(f"ERR TYPE must be text, json or bytes, got '{type_}'")
    key = args[1]
    semantics.validate_key(key, session.namespace.limits)
    semantics.validate_cache_ttl(opts.get(b"cachettl"), session.namespace.limits, wire=True)
    entry = session.namespace.get_entry(key)
    if entry is None:
        return null(session)
    value = _typed(entry.value, type_)
    if b"withmetadata" not in opts:
        return encode_bulk(value)
    return reply(session, {
        "value": value,
        "metadata": entry.metadata or None,
        "expiration": entry.expire_ms // 1000 if entry.expire_ms else None,
    })


@command("kv.mget", op="GET_BULK")
def kv_mget(session, args):
    keys = list(args[1:])
    type_ = None
    with_metadata = False
    # Options come last: peel them off the end so any key name stays usable.
    while keys:
        if keys[-1].lower() == b"withmetadata":
            with_metadata = True
            keys.pop()
        elif len(keys) >= 2 and keys[-2].lower() == b"type":
            type_ = as_text(keys[-1])
            del keys[-2:]
        else:
            break
    result = session.namespace.get_bulk_wire([as_text(k) for k in keys], type_,
                                             with_metadata=with_metadata)
    out = {}
    for name, value in result.items():
        if isinstance(value, ValueWithMetadata):
            value = {"value": _wire_value(value.value, type_),
                     "metadata": _json_text(value.metadata)}
        else:
            value = _wire_value(value, type_)
        out[name.encode("utf-8", "surrogateescape")] = value
    return reply(session, out)


def _wire_value(value, type_):
    """Bulk-get values back to bytes: JSON values re-serialised, text as UTF-8."""
    if value is None:
        return None
    if type_ == "json":
        return _json_text(value)
    return value.encode("utf-8") if isinstance(value, str) else value


@command("kv.del", op="DELETE")
def kv_del(session, args):
    return encode_int(1 if session.namespace.delete(args[1], durable=False) else 0)


@command("kv.metadata", op="GET")
def kv_metadata(session, args):
    key = args[1]
    semantics.validate_key(key, session.namespace.limits)
    entry = session.namespace.get_entry(key)
    return bulk_or_null(session, entry.metadata or None if entry else None)


@command("kv.list", op="GET")
def kv_list(session, args):
    opts = _options(args, 1, {b"prefix", b"limit", b"cursor"}, set())
    limit = opts.get(b"limit")
    result = session.namespace.list(prefix=opts.get(b"prefix"),
                                    limit=as_text(limit) if limit is not None else None,
                                    cursor=as_text(opts[b"cursor"]) if b"cursor" in opts else None,
                                    wire=True)
    keys = []
    for item in result["keys"]:
        entry = {"name": item["name"].encode("utf-8", "surrogateescape")}
        if "expiration" in item:
            entry["expiration"] = item["expiration"]
        if "metadata" in item:
            entry["metadata"] = _json_text(item["metadata"])
        keys.append(entry)
    out = {"keys": keys, "list_complete": result["list_complete"]}
    if "cursor" in result:
        out["cursor"] = result["cursor"]
    return reply(session, out)


_BULKPUT_SHAPE = "ERR KV.BULKPUT expects a JSON array of {key, value, ...} objects"


def _encoding_problem(exc: UnicodeDecodeError) -> str:
    """Where and how a body fails to decode, in words rather than the codec's text."""
    at, byte = exc.start, exc.object[exc.start]
    if not exc.encoding.startswith("utf-8"):
        return f"the body is not valid {exc.encoding.upper()} (bad data at byte offset {at})"
    if exc.reason == "invalid start byte":
        return (f"the body is not valid UTF-8: byte 0x{byte:02x} at byte offset {at} cannot "
                f"start a character")
    if exc.reason == "invalid continuation byte":
        return (f"the body is not valid UTF-8: the multi-byte character starting with byte "
                f"0x{byte:02x} at byte offset {at} is incomplete")
    return (f"the body is not valid UTF-8: it ends inside the multi-byte character starting "
            f"at byte offset {at}")


@command("kv.bulkput", op="PUT")
def kv_bulkput(session, args):
    body = args[1]
    encoding = json.detect_encoding(body)  # as json.loads(bytes): UTF-8, a BOM, UTF-16/32
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:  # name the offset, not the codec's text
        raise CommandError(f"{_BULKPUT_SHAPE}: {_encoding_problem(exc)}") from None
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{_BULKPUT_SHAPE}: {exc}") from None
    if not isinstance(items, list):
        raise CommandError(_BULKPUT_SHAPE)
    return reply(session, session.namespace.bulk_put(items, durable=False))


@command("kv.bulkdel", op="DELETE")
def kv_bulkdel(session, args):
    keys = [as_text(k) for k in args[1:]]
    return reply(session, session.namespace.bulk_delete(keys, durable=False))


@command("kv.namespace")
def kv_namespace(session, args):
    sub = subcommand(session, args, "kv.namespace")
    store = session.state.store
    if sub == "create":
        return reply(session, store.create_namespace(as_text(args[2])).as_dict())
    if sub == "list":
        return reply(session, [dict(info.as_dict(), index=i)
                               for i, info in enumerate(store.list_namespaces())])
    if sub == "get":
        return reply(session, store.get_namespace(as_text(args[2])).as_dict())
    if sub == "rename":
        return reply(session, store.rename_namespace(as_text(args[2]), as_text(args[3])).as_dict())
    if sub == "delete":
        ns_id = as_text(args[2])
        store.delete_namespace(ns_id)
        if session.namespace.id == ns_id:
            session.select(store.namespace("default"), 0)
        return OK
    return help_reply(session, "kv.namespace")


@command("kv.compact", op="PUT")
def kv_compact(session, args):
    """Compaction runs in a worker thread: at a million keys it takes tens of seconds, and
    requests keep flowing meanwhile.  INFO persistence reports its progress and last result.
    It also re-encrypts whatever it copies under an older key, which is how keys retire."""
    if not start_compaction(session.state):
        raise CommandError("ERR a compaction is already running")
    return b"+Background compaction started\r\n"


@command("kv.keyring")
def kv_keyring(session, args):
    """Encryption keys: which are in use, rotation and retirement (see docs/encryption.md).

    No KV operation name: a refusal here is about the key ring, so it reads ``ERR <why>``
    rather than ``KV PUT failed: 500 ...``, and names the server commands that fix it."""
    sub = subcommand(session, args, "kv.keyring")
    store = session.state.store
    if sub == "help":
        return help_reply(session, "kv.keyring")
    if sub == "status":
        return reply(session, keyring_status(store))
    if not store.encryption_info().get("enabled"):
        action = "add a key to" if sub == "rotate" else "retire a key from"
        raise CommandError(f"ERR encryption at rest is off on this server (started with "
                           f"--encryption no): there is no key ring to {action}")
    if sub == "rotate":
        return encode_int(store.rotate_key())
    key_id = parse_int(args[2], "ERR key id is not an integer or out of range")
    refusal = retire_refusal(keyring_status(store), key_id,
                             compacting=session.state.compaction_running)
    if refusal is not None:
        raise CommandError(f"ERR {refusal}")
    try:
        store.retire_key(key_id)
    except StoreError as exc:  # another store sharing the key file, or a race with a write
        raise CommandError(f"ERR {exc.message}") from None
    return OK


def keyring_status(store) -> dict:
    """The encryption settings and, per key id, how much stored data still needs it."""
    info = dict(store.encryption_info())
    info["usage"] = {str(key_id): usage for key_id, usage in sorted(store.key_usage().items())}
    return info


def start_compaction(state) -> bool:
    """Start ``store.compact()`` in a thread unless one is running; record the outcome."""
    import threading

    if state.compaction_running:
        return False
    state.compaction_running = True

    def run() -> None:
        try:
            state.last_compaction = state.store.compact()
        except Exception as exc:  # reported through INFO; the store stays usable
            state.last_compaction = {"error": str(exc)}
        finally:
            state.compaction_running = False

    threading.Thread(target=run, name="edgekv-compact", daemon=True).start()
    return True
