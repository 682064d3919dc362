"""``edgekv export``, ``import``, ``snapshot`` and ``stats``: moving and inspecting whole stores.

Export and import use JSON lines so neither side ever holds a store in memory and the file
can be piped, grepped or split.  Each line is one key::

    {"namespace": "default", "key": "a", "value": "1", "expiration": 1790000000,
     "metadata": {"v": 1}}

``value`` is the UTF-8 text when the bytes are valid UTF-8, otherwise base64 with
``"base64": true`` (the same convention as wrangler's bulk files, so an export can be cut
into a ``kv bulk put`` file).  ``expiration`` (epoch seconds) and ``metadata`` appear only
when the key has them.
"""

from __future__ import annotations

import base64
import os
import sys
import time

from .kv_commands import RAW, namespace_options, target_options
from .output import (
    CLIError,
    info,
    json_text,
    parse_json,
    print_json,
    progress,
    shown,
    warn,
    write_text,
)
from .targets import (
    DEFAULT_DATA_DIR,
    LIST_PAGE,
    MAX_BULK_ITEMS,
    LocalTarget,
    Unreadable,
    open_target,
)

#: An import batch is sent when it reaches this many value bytes, whatever its key count.
IMPORT_BATCH_BYTES = 32 * 1024 * 1024


# ============================================================================ export


def _export_line(title: str, key: str, value: bytes, expiration, metadata) -> str:
    line: dict = {"namespace": title, "key": key}
    try:
        line["value"] = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        line["value"] = base64.b64encode(value).decode("ascii")
        line["base64"] = True
    if expiration:
        line["expiration"] = int(expiration)
    if metadata is not None:
        line["metadata"] = metadata
    # A key that is not valid UTF-8 (kept as lone surrogates): its \udcXY escapes round-trip it.
    return json_text(line, separators=(",", ":")) + "\n"


def _entries(target, names: list[str]):
    if hasattr(target, "get_entries"):  # remote targets: many keys per round trip
        yield from zip(names, target.get_entries(names))
    else:
        for name in names:
            yield name, target.get_entry(name)


def _open_private(path: str):
    """``path`` for writing, readable by its owner only: an export holds the store's data.
    An existing file of that name (a ``.partial`` left by an interrupted run) is narrowed too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")
    except BaseException:
        os.close(fd)
        raise


def _export_namespaces(target, args) -> list[dict]:
    if args.namespace_id is not None or args.namespace is not None:
        return [target.resolve_namespace(args.namespace_id, args.namespace)]
    if target.url_namespace is not None:  # redis://host:port/DB: that namespace only
        return [target.url_namespace]
    return target.list_namespaces()


def cmd_export(args) -> int:
    out = None
    count = 0
    total = 0
    unreadable: list[tuple[str, str]] = []
    with open_target(args, create=False) as target:
        namespaces = _export_namespaces(target, args)
        to_stdout = args.file == "-"
        try:
            out = sys.stdout if to_stdout else _open_private(args.file + ".partial")
        except OSError as exc:
            raise CLIError(f"cannot write {args.file}: {exc.strerror}") from None
        try:
            with progress("Exporting") as bar:
                for ns in namespaces:
                    target.use_namespace(ns["id"])
                    if args.prefix is None:
                        total += target.count_keys() or 0
                        bar.total(total)
                    cursor = None
                    while True:
                        page = target.list_page(args.prefix, cursor, LIST_PAGE)
                        names = [item["name"] for item in page["keys"]]
                        for name, entry in _entries(target, names):
                            if entry is None:  # deleted or expired since the listing
                                continue
                            if isinstance(entry, Unreadable):
                                unreadable.append((f"{ns['title']}/{name}", entry.reason))
                                continue
                            out.write(_export_line(ns["title"], name, *entry))
                            count += 1
                        bar.advance(len(names))
                        cursor = page.get("cursor")
                        if page.get("list_complete") or not cursor:
                            break
            out.flush()
            if not to_stdout:
                os.fsync(out.fileno())
        finally:
            if not to_stdout:
                out.close()
    if not to_stdout:
        os.replace(args.file + ".partial", args.file)
    summary = {"keys": count, "namespaces": len(namespaces), "file": args.file,
               "not_exported": [key for key, _ in unreadable]}
    if args.json and not to_stdout:
        print_json(summary)
    else:
        info(f"Exported {count} keys from {len(namespaces)} namespace(s) to "
             f"{'stdout' if to_stdout else args.file}")
    if unreadable:
        warn(f"{len(unreadable)} keys could not be exported exactly and are not in the "
             f"export:")
        for key, reason in unreadable[:1000]:
            warn(f"  {shown(key)}: {reason}")
        return 1
    return 0


# ============================================================================ import


class _Importer:
    """Groups lines into per-namespace batches bounded by count and bytes."""

    def __init__(self, target, override: str | None, create: bool, bar) -> None:
        self.target = target
        self.override = override
        self.create = create
        self.bar = bar
        self.ids = {ns["title"]: ns["id"] for ns in target.list_namespaces()}
        self.title: str | None = None
        self.batch: list[dict] = []
        self.batch_bytes = 0
        self.ok = 0
        self.skipped_expired = 0
        self.failures: list[tuple[str, str]] = []
        self.now = int(time.time())

    def add(self, line: dict, lineno: int) -> None:
        title = self.override or line.get("namespace") or "default"
        if not isinstance(line.get("key"), str) or not isinstance(line.get("value"), str):
            raise CLIError(f"line {lineno}: each line needs string \"key\" and \"value\"")
        if not isinstance(title, str):
            raise CLIError(f"line {lineno}: \"namespace\" must be a namespace title (a string)")
        try:
            # \udc80-\udcff stand for key bytes that are not UTF-8; any other lone surrogate
            # stands for nothing a key can hold.
            line["key"].encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            self.failures.append((f"{title}/{line['key']}",
                                  "the key holds a lone surrogate escape that is not a byte "
                                  "(only \\udc80-\\udcff are)"))
            self.bar.advance(1)
            return
        expiration = line.get("expiration")
        if expiration is not None and isinstance(expiration, (int, float)) \
                and expiration <= self.now:
            self.skipped_expired += 1
            self.bar.advance(1)
            return
        if title != self.title:
            self.flush()
            self.title = title
        item = {"key": line["key"], "value": line["value"]}
        for field in ("expiration", "metadata", "base64"):
            if line.get(field) is not None:
                item[field] = line[field]
        self.batch.append(item)
        self.batch_bytes += len(line["value"])
        if len(self.batch) >= MAX_BULK_ITEMS or self.batch_bytes >= IMPORT_BATCH_BYTES:
            self.flush()

    def _namespace_id(self, title: str) -> str:
        ns_id = self.ids.get(title)
        if ns_id is None:
            if not self.create:
                raise CLIError(f"namespace {title!r} does not exist; create it or drop "
                               f"--no-create")
            ns_id = self.target.create_namespace(title)["id"]
            self.ids[title] = ns_id
        return ns_id

    def flush(self) -> None:
        if not self.batch:
            return
        self.target.use_namespace(self._namespace_id(self.title))
        result = self.target.bulk_put(self.batch)
        self.ok += result["successful_key_count"]
        self.failures.extend((f"{self.title}/{key}", message)
                             for key, message in result["errors"])
        self.bar.advance(len(self.batch))
        self.batch = []
        self.batch_bytes = 0


def _lines(path: str):
    if path == "-":
        yield from sys.stdin
        return
    try:
        f = open(path, encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield from f


def cmd_import(args) -> int:
    with open_target(args) as target, progress("Importing") as bar:
        override = args.namespace
        if override is None and target.url_namespace is not None:
            override = target.url_namespace["title"]  # redis://host:port/DB: into that one
        importer = _Importer(target, override, not args.no_create, bar)
        for lineno, text in enumerate(_lines(args.file), 1):
            if not text.strip():
                continue
            try:
                line = parse_json(text, "it")
                why = None if isinstance(line, dict) else "is not a JSON object"
            except ValueError as exc:
                why = str(exc).removeprefix("it ").replace("is not valid JSON", "is not JSON")
            if why:
                # Stop here, but keep the promise of the message: everything before this line
                # is imported (the batch being gathered included), nothing after it.
                importer.flush()
                done = ("nothing was imported" if lineno == 1 else
                        f"the lines before it were imported, nothing after line {lineno - 1}")
                raise CLIError(f"{args.file} line {lineno} {why}; {done}")
            importer.add(line, lineno)
        importer.flush()
    summary = {"imported": importer.ok, "skipped_expired": importer.skipped_expired,
               "failed": [key for key, _ in importer.failures]}
    if args.json:
        print_json(summary)
    else:
        info(f"Imported {importer.ok} keys"
             + (f"; skipped {importer.skipped_expired} already expired" if
                importer.skipped_expired else ""))
    if importer.failures:
        warn(f"{len(importer.failures)} keys could not be imported:")
        for key, message in importer.failures[:1000]:
            warn(f"  {shown(key)}: {message}")
        if len(importer.failures) > 1000:
            warn(f"  ... and {len(importer.failures) - 1000} more")
        return 1
    return 0


# ============================================================================ snapshot


def cmd_snapshot(args) -> int:
    from engine import StoreLockedError
    from engine.snapshot import snapshot_directory, snapshot_store

    from .targets import open_local_store

    if args.remote:
        raise CLIError("snapshot copies a local data directory: run it where the server's "
                       "files are, with --data-dir DIR (it works while the server runs)")
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    if not os.path.isdir(data_dir):
        raise CLIError(f"data directory {data_dir} does not exist; pass --data-dir DIR")
    try:
        store = open_local_store(data_dir, args.key_file)
    except StoreLockedError:
        # A running server holds the directory: copy the append-only log without its lock.
        result = snapshot_directory(data_dir, args.dir, key_file=args.key_file)
        result["online"] = True
    else:
        try:
            result = snapshot_store(store, args.dir)
            result["online"] = False
        finally:
            store.close()
    if args.json:
        print_json(result)
    else:
        write_text(f"Snapshot of {data_dir} written to {args.dir} "
                   f"({result['linked_segments']} segments linked, "
                   f"{result['copied_segments']} copied, {result['copied_bytes']} bytes)\n")
    return 0


# ============================================================================ stats


def _local_stats(store) -> dict:
    from engine.index import unpack_location

    overall = store.stats()
    namespaces = []
    for info_ in store.list_namespaces():
        keys = 0
        size = 0
        after = None
        while True:
            page = store.scan_keys(info_.number, b"", after, 10_000)
            for key, _exp, _meta in page:
                loc = store.lookup(info_.number, key)
                if loc is None:
                    continue
                seg_no, offset, length = unpack_location(loc)
                size += length or store._record_size(seg_no, offset)
                keys += 1
            if len(page) < 10_000:
                break
            after = page[-1][0]
        namespaces.append({"id": info_.id, "title": info_.title, "keys": keys, "bytes": size})
    return {"path": overall["path"], "keys": overall["keys"], "disk_bytes": overall["disk_bytes"],
            "dead_bytes": overall["dead_bytes"], "segments": overall["segments"],
            "namespaces": namespaces}


def _remote_stats(target) -> dict:
    """Keys only: neither RESP nor REST tells how many bytes a namespace holds."""
    namespaces = []
    chosen = [target.url_namespace] if target.url_namespace else target.list_namespaces()
    for ns in chosen:
        target.use_namespace(ns["id"])
        keys = target.count_keys()
        if keys is None:  # no count over REST: list the keys
            keys = sum(1 for _ in target.list_all())
        namespaces.append({"id": ns["id"], "title": ns["title"], "keys": keys, "bytes": None})
    return {"remote": target.description, "keys": sum(n["keys"] for n in namespaces),
            "namespaces": namespaces}


def cmd_stats(args) -> int:
    with open_target(args, create=False) as target:
        if not isinstance(target, LocalTarget):
            stats = _remote_stats(target)
        else:
            stats = _local_stats(target.store)
    if args.json:
        print_json(stats)
        return 0
    rows = [(n["title"], n["id"], str(n["keys"]), "-" if n["bytes"] is None else str(n["bytes"]))
            for n in stats["namespaces"]]
    header = ("namespace", "id", "keys", "bytes")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                       for i, c in enumerate(r)) for r in [header] + rows]
    if "disk_bytes" in stats:
        lines.append(f"\n{stats['keys']} keys; {stats['disk_bytes']} bytes on disk in "
                     f"{stats['segments']} segments, {stats['dead_bytes']} of them reclaimable")
    else:
        lines.append(f"\n{stats['keys']} keys on {stats['remote']}")
    write_text("\n".join(lines) + "\n")
    return 0


# ============================================================================ parsers

EX_EXPORT = """Writes one JSON object per line: {"namespace", "key", "value", "base64"?,
"expiration"?, "metadata"?}.  Non-UTF-8 values are base64 with "base64": true.

example:
  edgekv export backup.jsonl
  edgekv export - --namespace sessions --remote redis://127.0.0.1:6379 | gzip > s.jsonl.gz
"""
EX_IMPORT = """Reads the lines `edgekv export` writes; namespaces missing from the target are
created.  Keys whose expiration has passed are skipped.

example:
  edgekv import backup.jsonl --data-dir ./restored
  gunzip -c s.jsonl.gz | edgekv import - --remote redis://127.0.0.1:6379
"""
EX_SNAPSHOT = """Sealed segments are hard-linked, the active one copied up to its current size; the
result is a data directory of its own.  Works while a server is running on --data-dir.

example:
  edgekv snapshot ./backups/2026-01-01 --data-dir ./edgekv-data
  edgekv serve --data-dir ./backups/2026-01-01 --port 6380
"""
EX_STATS = """example:
  edgekv stats --data-dir ./edgekv-data
  edgekv stats --json | jq '.namespaces[] | {title, keys}'
"""


def add_backup(sub) -> None:
    where = target_options()
    p = sub.add_parser("export", help="write every key to a JSON-lines file",
                       description="Write keys, values, metadata and expirations as JSON lines.",
                       epilog=EX_EXPORT, formatter_class=RAW,
                       parents=[where, namespace_options()])
    p.add_argument("file", metavar="FILE", help="output file ('-' = stdout)")
    p.add_argument("--prefix", help="only keys starting with this prefix")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_export, namespace_id=None)

    p = sub.add_parser("import", help="load a JSON-lines file written by export",
                       description="Load keys from a JSON-lines file written by `edgekv export`.",
                       epilog=EX_IMPORT, formatter_class=RAW, parents=[where])
    p.add_argument("file", metavar="FILE", help="input file ('-' = stdin)")
    p.add_argument("--namespace", metavar="TITLE",
                   help="put every key into this namespace instead of the one on its line")
    p.add_argument("--no-create", action="store_true",
                   help="fail instead of creating namespaces that do not exist")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("snapshot", help="consistent point-in-time copy of a data directory",
                       description="Make a consistent point-in-time copy of a local data "
                                   "directory into DIR (new or empty).",
                       epilog=EX_SNAPSHOT, formatter_class=RAW, parents=[where])
    p.add_argument("dir", metavar="DIR", help="where to write the snapshot")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("stats", help="keys and bytes per namespace",
                       description="Keys and bytes per namespace (bytes: live records on disk; "
                                   "local only).", epilog=EX_STATS, formatter_class=RAW,
                       parents=[where])
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stats)

