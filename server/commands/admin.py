"""Server commands: INFO CONFIG COMMAND TIME SAVE BGSAVE LASTSAVE BGREWRITEAOF SHUTDOWN MEMORY."""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import resource
import sys
import threading
import time

from engine.segment import give_back_free_memory

from .. import command_table
from ..config import parse_size
from ..glob import matches
from ..resp import Verbatim, encode_bulk, encode_int
from ..state import REDIS_COMPAT_VERSION, VERSION
from .base import OK, SYNTAX, CommandError, as_text, command, parse_int, reply
from .subcommands import help_reply, subcommand

# ---------------------------------------------------------------------------- INFO

_DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                     "modules", "keyspace")


def _memory_bytes() -> tuple[int, int]:
    """``(used, rss)``: the process's own memory, and its whole RSS.

    The RSS also counts file-backed pages: the shared libraries, and the pages of sealed
    segments that reads have touched through their mapping (the kernel's page cache, which it
    reclaims as needed).  ``used_memory`` leaves those out, so it grows with keys, the read
    cache and clients, not with how much of the data has been read.
    """
    try:
        with open("/proc/self/statm") as fh:
            fields = fh.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        resident, shared = int(fields[1]) * page, int(fields[2]) * page
        return resident - shared, resident
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak, peak


def info_sections(session) -> dict[str, list[tuple[str, object]]]:
    state = session.state
    store = state.store
    stats = state.stats
    config = state.config
    st = store.stats()
    now = time.time()
    uptime = int(now - state.started)
    used, rss = _memory_bytes()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    keyspace = []
    for index, ns in enumerate(store.namespace_stats()):
        if ns["keys"]:
            keyspace.append((f"db{index}", f"keys={ns['keys']},expires=0,avg_ttl=0"))
    return {
        "server": [
            ("redis_version", REDIS_COMPAT_VERSION), ("edgekv_version", VERSION),
            ("redis_git_sha1", "00000000"), ("redis_git_dirty", 0), ("redis_build_id", "edgekv"),
            ("redis_mode", "standalone"), ("os", f"{platform.system()} {platform.release()} "
                                                 f"{platform.machine()}"),
            ("arch_bits", 64 if sys.maxsize > 2 ** 32 else 32), ("multiplexing_api", "epoll"),
            ("python_version", platform.python_version()), ("process_id", state.pid),
            ("run_id", state.run_id), ("tcp_port", state.tcp_port),
            ("server_time_usec", int(now * 1_000_000)), ("uptime_in_seconds", uptime),
            ("uptime_in_days", uptime // 86400), ("executable", sys.argv[0]),
            ("config_file", config.extra.get("config_file", "")),
            ("data_dir", store.path),
        ],
        "clients": [
            ("connected_clients", len(state.clients)), ("cluster_connections", 0),
            ("maxclients", config.maxclients), ("blocked_clients", 0), ("tracking_clients", 0),
        ],
        "memory": [
            ("used_memory", used), ("used_memory_human", _human(used)), ("used_memory_rss", rss),
            ("used_memory_rss_human", _human(rss)), ("maxmemory", 0), ("maxmemory_human", "0B"),
            ("maxmemory_policy", "noeviction"), ("mem_allocator", "pymalloc"),
            ("edgekv_read_cache_budget", st["read_cache"]["budget_bytes"]),
            ("edgekv_read_cache_used", st["read_cache"]["used_bytes"]),
            ("edgekv_read_cache_entries", st["read_cache"]["entries"]),
        ],
        "persistence": [
            ("loading", 0), ("async_loading", 0), ("rdb_changes_since_last_save", 0),
            ("rdb_bgsave_in_progress", 0), ("rdb_last_save_time", state.last_save),
            ("aof_enabled", 1),
            ("aof_rewrite_in_progress", int(state.compaction_running)),
            ("edgekv_last_compaction", _compaction_summary(state.last_compaction)),
            ("aof_last_write_status", "err" if st["write_error"] else "ok"),
            ("appendfsync", st["fsync_policy"]), ("edgekv_segments", st["segments"]),
            ("edgekv_disk_bytes", st["disk_bytes"]), ("edgekv_dead_bytes", st["dead_bytes"]),
            ("edgekv_last_seq", st["last_seq"]), ("edgekv_durable_seq", st["durable_seq"]),
            ("edgekv_fsyncs", st["fsync_count"]),
            ("edgekv_corrupt_records", st["corrupt_records"]),
            ("edgekv_recovery_seconds", f"{store.recovery.seconds:.3f}"),
            *_encryption_fields(store),
        ],
        "stats": [
            ("total_connections_received", stats.total_connections),
            ("total_commands_processed", stats.total_commands),
            ("instantaneous_ops_per_sec", 0),
            ("total_net_input_bytes", stats.net_input_bytes),
            ("total_net_output_bytes", stats.net_output_bytes),
            ("rejected_connections", stats.rejected_connections),
            ("expired_keys", stats.expired_keys), ("evicted_keys", 0),
            ("keyspace_hits", stats.keyspace_hits), ("keyspace_misses", stats.keyspace_misses),
            ("edgekv_read_cache_hits", st["read_cache"]["hits"]),
            ("edgekv_read_cache_misses", st["read_cache"]["misses"]),
            ("total_error_replies", 0), ("unexpected_error_replies", 0),
            ("total_auth_failures", stats.failed_auth),
            ("total_protocol_errors", stats.protocol_errors),
        ],
        "replication": [("role", "master"), ("connected_slaves", 0)],
        "cpu": [("used_cpu_sys", f"{usage.ru_stime:.6f}"), ("used_cpu_user", f"{usage.ru_utime:.6f}")],
        "modules": [],
        "keyspace": keyspace,
        "cluster": [("cluster_enabled", 0)],
        "commandstats": [(f"cmdstat_{name}", f"calls={calls},usec=0,usec_per_call=0.00,"
                                             f"rejected_calls=0,failed_calls=0")
                         for name, calls in sorted(stats.command_calls.items())],
    }


def _compaction_summary(result: dict | None) -> str:
    if not result:
        return "none"
    return ",".join(f"{k}={v}" for k, v in result.items()).replace("\n", " ")


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.2f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return f"{n:.2f}G"


@command("info")
def info(session, args):
    sections = info_sections(session)
    wanted = [a.decode("utf-8", "replace").lower() for a in args[1:]] or ["default"]
    names: list[str] = []
    for w in wanted:
        if w in ("all", "everything"):
            names.extend(sections)
        elif w == "default":
            names.extend(_DEFAULT_SECTIONS + ("cluster",))
        elif w in sections:
            names.append(w)
    out = []
    for name in dict.fromkeys(names):
        out.append(f"# {name.capitalize() if name != 'cpu' else 'CPU'}")
        out.extend(f"{key}:{value}" for key, value in sections[name])
        out.append("")
    text = "\r\n".join(out).rstrip("\r\n") + "\r\n"
    return encode_bulk(text.encode())


# ---------------------------------------------------------------------------- CONFIG


def _config_params(session) -> dict[str, str]:
    state = session.state
    c = state.config
    return {
        "appendfsync": state.store.fsync_policy,
        "appendonly": "yes",
        "save": c.extra.get("save", ""),
        "maxclients": str(c.maxclients),
        "requirepass": c.requirepass or "",
        "min-ttl": str(session.namespace.limits.min_ttl_seconds),
        "port": str(c.port),
        "bind": c.bind,
        "dir": state.store.path,
        "databases": str(c.max_namespaces),
        "proto-max-bulk-len": str(c.proto_max_bulk_len),
        "client-query-buffer-limit": str(c.client_query_buffer_limit),
        "client-output-buffer-limit": f"normal {c.client_output_buffer_limit} "
                                      f"{c.client_output_buffer_limit} 0",
        "protected-mode": "yes" if c.protected_mode else "no",
        "maxmemory": c.extra.get("maxmemory", "0"),
        "maxmemory-policy": c.extra.get("maxmemory-policy", "noeviction"),
        "timeout": c.extra.get("timeout", "0"),
        "tcp-keepalive": c.extra.get("tcp-keepalive", "300"),
        "proto-max-multibulk-len": str(c.max_multibulk_len),
    }


_MUTABLE = {"appendfsync", "save", "maxclients", "requirepass", "min-ttl", "proto-max-bulk-len",
            "client-query-buffer-limit", "client-output-buffer-limit", "timeout", "maxmemory",
            "maxmemory-policy", "tcp-keepalive"}


_INT_MAX = (1 << 31) - 1
_LONG_MAX = (1 << 63) - 1
_MIB = 1024 * 1024
_EVICTION_POLICIES = ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
                      "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction")


def _integer(value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError("argument couldn't be parsed into an integer") from None
    if not low <= number <= high:
        raise ValueError(f"argument must be between {low} and {high} inclusive")
    return number


def _memory(value: str, low: int = 0) -> int:
    try:
        size = parse_size(value)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError("argument must be a memory value")
    if size < low:
        raise ValueError(f"argument must be between {low} and {_LONG_MAX} inclusive")
    return size


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"argument(s) must be one of the following: {', '.join(choices)}")
    return value


def _config_value(name: str, value: str):
    """``value`` parsed and checked, with Redis's bounds and texts; nothing is applied yet,
    so a CONFIG SET of several parameters changes all of them or none."""
    if name == "appendfsync":
        return _one_of(value, ("everysec", "always", "no"))
    if name == "maxclients":
        return _integer(value, 1, 4294967295)
    if name == "min-ttl":
        return _integer(value, 1, _INT_MAX)
    if name in ("proto-max-bulk-len", "client-query-buffer-limit"):
        return _memory(value, _MIB)  # below Redis's floor, every client would be cut off
    if name == "client-output-buffer-limit":
        parts = value.split()
        if len(parts) != 4 or parts[0] != "normal":
            raise ValueError("only the 'normal <hard> <soft> <seconds>' class is supported")
        try:
            hard = _memory(parts[1])
            _memory(parts[2])
            _integer(parts[3], 0, _LONG_MAX)
        except ValueError:
            raise ValueError("Error in hard, soft or soft_seconds setting in buffer limit "
                             "configuration.") from None
        return hard
    if name in ("timeout", "tcp-keepalive"):
        return str(_integer(value, 0, _INT_MAX))
    if name == "maxmemory":
        return str(_memory(value))
    if name == "maxmemory-policy":
        return _one_of(value, _EVICTION_POLICIES)
    return value  # save, requirepass


def _config_apply(session, name: str, value) -> None:
    state = session.state
    c = state.config
    store = state.store
    if name == "appendfsync":
        store.set_fsync_policy(value)
        c.fsync = value
    elif name == "maxclients":
        c.maxclients = value
    elif name == "requirepass":
        c.requirepass = value or None
    elif name == "min-ttl":
        store.limits = dataclasses.replace(store.limits, min_ttl_seconds=value)
        c.min_ttl = value
    elif name == "proto-max-bulk-len":
        c.proto_max_bulk_len = value
        state.protocol_limits_changed()
    elif name == "client-query-buffer-limit":
        c.client_query_buffer_limit = value
        state.protocol_limits_changed()
    elif name == "client-output-buffer-limit":
        c.client_output_buffer_limit = value
    else:
        # save: edgekv has no snapshots, every write is already in the log.  timeout,
        # maxmemory, maxmemory-policy, tcp-keepalive: kept and reported, not acted on.
        c.extra[name] = value


@command("config")
def config(session, args):
    sub = subcommand(session, args, "config")
    if sub == "get":
        params = _config_params(session)
        found: dict[str, str] = {}
        for pattern in args[2:]:
            pattern = pattern.lower()
            for name, value in params.items():
                if matches(pattern, name.encode()):
                    found[name] = value
        return reply(session, found)
    if sub == "set":
        pairs = args[2:]
        if len(pairs) % 2:
            raise CommandError("ERR wrong number of arguments for 'config|set' command")
        params = _config_params(session)
        changes: dict[str, object] = {}
        for raw_name, raw_value in zip(pairs[::2], pairs[1::2]):
            name = as_text(raw_name).lower()
            if name not in params:
                raise CommandError(f"ERR Unknown option or number of arguments for CONFIG SET - "
                                   f"'{name}'")
            failed = f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
            if name not in _MUTABLE:
                raise CommandError(failed + "can't set immutable config")
            if name in changes:
                raise CommandError(failed + "duplicate parameter")
            try:
                changes[name] = _config_value(name, as_text(raw_value))
            except ValueError as exc:
                raise CommandError(failed + str(exc)) from None
        for name, value in changes.items():
            _config_apply(session, name, value)
        return OK
    if sub == "resetstat":
        session.state.stats.reset()
        return OK
    return help_reply(session, "config")


# ---------------------------------------------------------------------------- COMMAND


@command("command")
def command_(session, args):
    if len(args) == 1:
        return reply(session, command_table.command_info())
    sub = subcommand(session, args, "command")
    try:
        if sub == "count":
            return encode_int(command_table.command_count())
        if sub == "list":
            return reply(session, command_table.command_list(args[2:]))
        if sub == "info":
            return reply(session, command_table.command_info(args[2:]))
        if sub == "docs":
            return reply(session, command_table.command_docs(args[2:]))
        if sub == "getkeys":
            return reply(session, command_table.command_getkeys(args[2:]))
    except command_table.CommandTableError as exc:
        raise CommandError(str(exc)) from None
    return help_reply(session, "command")


# ---------------------------------------------------------------------------- persistence


def _encryption_fields(store) -> list[tuple[str, object]]:
    info = store.encryption_info()
    return [("edgekv_encryption", "aes-256-gcm" if info.get("enabled") else "off"),
            ("edgekv_active_key_id", info.get("active_key_id") or 0),
            ("edgekv_compression_threshold", info.get("compression_threshold") or 0),
            ("edgekv_compression_level", info.get("compression_level", 0))]


@command("time")
def time_(session, args):
    now = time.time_ns() // 1000
    return reply(session, [str(now // 1_000_000).encode(), str(now % 1_000_000).encode()])


@command("save")
def save(session, args):
    session.state.store.sync()
    session.state.last_save = int(time.time())
    return OK


@command("bgsave")
def bgsave(session, args):
    if len(args) > 2 or (len(args) == 2 and args[1].lower() != b"schedule"):
        raise CommandError(SYNTAX)
    state = session.state

    def run():
        state.store.sync()
        state.last_save = int(time.time())
    threading.Thread(target=run, name="edgekv-bgsave", daemon=True).start()
    return b"+Background saving started\r\n"


@command("lastsave")
def lastsave(session, args):
    return encode_int(session.state.last_save)


@command("bgrewriteaof")
def bgrewriteaof(session, args):
    from .kv import start_compaction  # BGREWRITEAOF is compaction for a log-structured store
    if not start_compaction(session.state):
        raise CommandError("ERR Background append only file rewriting already in progress")
    return b"+Background append only file rewriting started\r\n"


@command("shutdown")
def shutdown(session, args):
    flags = {arg.lower() for arg in args[1:]}
    if (flags - {b"nosave", b"save", b"now", b"force", b"abort"}
            or {b"save", b"nosave"} <= flags or (b"abort" in flags and len(flags) > 1)):
        raise CommandError(SYNTAX)  # Redis's conflicts: SAVE with NOSAVE, ABORT with anything
    if b"abort" in flags:
        raise CommandError("ERR No shutdown in progress.")
    requested = session.state.shutdown_requested
    if requested is not None:
        requested()
    session.close_after_reply = True
    return b""  # Redis closes the connection without a reply on success


# ---------------------------------------------------------------------------- MEMORY
# What a key costs edgekv, estimated from the shapes the engine keeps per key (engine/index.py,
# engine/expiry.py): the index entry in memory, and the record (header, key, metadata, value)
# in the log on disk.  Python gives no per-object allocator accounting, so these are
# sys.getsizeof figures of the objects involved, computed once.

_DICT_SLOT = 3 * 8 * 3 // 2  # hash, key and value pointers, at a 2/3 load factor
_INDEX_ENTRY = (_DICT_SLOT + 8  # the location dict's slot + the sorted key list's pointer
                + sys.getsizeof(1 << 50)  # the packed location int
                + sys.getsizeof(b"") + 2)  # the index key's bytes object and namespace prefix
_EXPIRY_ENTRY = _DICT_SLOT + sys.getsizeof(1 << 40) + sys.getsizeof((0, b"")) + 8  # + heap
_METADATA_ENTRY = _DICT_SLOT + sys.getsizeof(b"")  # the in-memory copy's object and slot
_RECORD_HEADER = 32  # engine/record.py HEADER_SIZE
_STARTUP_USED = _memory_bytes()[0]  # once the server's modules are loaded
_NO_MALLOC_STATS = "Stats not supported for the current allocator"


def key_memory_usage(entry) -> int:
    """MEMORY USAGE: the bytes a live key costs, in the log and in the index."""
    key_len = len(entry.key)
    meta_len = len(entry.metadata)
    usage = _RECORD_HEADER + key_len + meta_len + len(entry.value)  # the record on disk
    usage += _INDEX_ENTRY + key_len  # its index entry in memory
    if entry.expire_ms:
        usage += _EXPIRY_ENTRY + key_len + 2
    if meta_len:
        usage += _METADATA_ENTRY + meta_len
    return usage


def _memory_usage(session, args) -> bytes:
    i = 3
    while i < len(args):  # Redis's memoryCommand: the options are checked before the key
        if args[i].lower() == b"samples" and i + 1 < len(args):
            if parse_int(args[i + 1]) < 0:
                raise CommandError(SYNTAX)
            i += 2
        else:
            raise CommandError(SYNTAX)
    namespace = session.namespace
    entry = session.state.store.read_entry(namespace.number, args[2])
    if entry is None:
        return reply(session, None)
    return encode_int(key_memory_usage(entry))


def memory_stats(session) -> dict:
    """MEMORY STATS: Redis's fields in Redis's order, from the process's memory (as INFO
    memory) and the index's shape; then edgekv's own (read cache, log on disk)."""
    store = session.state.store
    st = store.stats()
    used, rss = _memory_bytes()
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, used)
    keys = st["keys"]
    expiring = st["keys_with_expiration"]
    cache_used = st["read_cache"]["used_bytes"]
    startup = min(_STARTUP_USED, used)
    per_db = {}
    for index, ns in enumerate(store.namespace_stats()):
        if ns["keys"]:
            per_db[f"db.{index}"] = {
                "overhead.hashtable.main": ns["keys"] * _INDEX_ENTRY,
                # The engine counts expirations per store, not per namespace: shared pro rata.
                "overhead.hashtable.expires":
                    ns["keys"] * expiring // max(keys, 1) * _EXPIRY_ENTRY,
                "overhead.hashtable.slot-to-keys": 0,
            }
    overhead = (startup + keys * _INDEX_ENTRY + expiring * _EXPIRY_ENTRY
                + st["keys_with_metadata"] * _METADATA_ENTRY + cache_used)
    net = used - startup
    dataset = max(used - overhead, 0)
    stats = {
        "peak.allocated": peak, "total.allocated": used, "startup.allocated": startup,
        "replication.backlog": 0, "clients.slaves": 0, "clients.normal": 0,
        "cluster.links": 0, "aof.buffer": 0, "lua.caches": 0, "functions.caches": 0,
        **per_db,
        "overhead.total": overhead, "keys.count": keys,
        "keys.bytes-per-key": net // keys if keys else 0,
        "dataset.bytes": dataset,
        "dataset.percentage": float(dataset * 100 / net) if net > 0 else 0.0,
        "peak.percentage": float(used * 100 / peak) if peak else 0.0,
        "allocator.allocated": used, "allocator.active": used, "allocator.resident": rss,
        "allocator-fragmentation.ratio": 1.0, "allocator-fragmentation.bytes": 0,
        "allocator-rss.ratio": float(rss / used) if used else 1.0,
        "allocator-rss.bytes": rss - used,
        "rss-overhead.ratio": 1.0, "rss-overhead.bytes": 0,
        "fragmentation": float(rss / used) if used else 1.0,
        "fragmentation.bytes": rss - used,
        "edgekv.read-cache.bytes": cache_used,
        "edgekv.disk.bytes": st["disk_bytes"],
        "edgekv.disk.dead-bytes": st["dead_bytes"],
    }
    return stats


def memory_doctor(session) -> str:
    """MEMORY DOCTOR: one status paragraph, then what to do about anything found."""
    st = session.state.store.stats()
    used, rss = _memory_bytes()
    keys = st["keys"]
    cache = st["read_cache"]
    disk, dead = st["disk_bytes"], st["dead_bytes"]
    lines = [f"edgekv memory report: the process uses {_human(used)} ({_human(rss)} resident, "
             f"with mapped segment pages); {keys} keys, about {_human(keys * _INDEX_ENTRY)} "
             f"of index; read cache {_human(cache['used_bytes'])} of "
             f"{_human(cache['budget_bytes'])}; {_human(disk)} of log on disk, "
             f"{_human(dead)} of it dead."]
    problems = []
    if st["write_error"]:
        problems.append(f"* Writes are failing: {st['write_error']}. Every write is refused "
                        f"until the server restarts with the disk fixed.")
    if disk and dead * 2 > disk:
        problems.append("* More than half of the log is overwritten or deleted records: "
                        "KV.COMPACT (or BGREWRITEAOF) reclaims the space.")
    if problems:
        lines.append("Sam, I detected a few issues in this edgekv instance:")
        lines.extend(problems)
    else:
        lines.append("Sam, I detected no memory problems in this edgekv instance.")
    return "\n".join(lines) + "\n"


def _purge() -> None:
    """MEMORY PURGE: collect garbage cycles and hand free heap pages back to the OS (glibc's
    malloc_trim, the counterpart of jemalloc's purge), where the C library has it."""
    gc.collect()
    give_back_free_memory()


@command("memory")
def memory(session, args):
    sub = subcommand(session, args, "memory")
    if sub == "usage":
        return _memory_usage(session, args)
    if sub == "stats":
        return reply(session, memory_stats(session))
    if sub == "doctor":
        return reply(session, Verbatim(memory_doctor(session)))
    if sub == "malloc-stats":
        return reply(session, Verbatim(_NO_MALLOC_STATS))
    if sub == "purge":
        _purge()
        return OK
    return help_reply(session, "memory")
