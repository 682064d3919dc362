"""``edgekv kv namespace|key|bulk ...``: wrangler's KV commands, on a local or remote store.

Names, flags and output follow ``wrangler kv`` so scripts and habits carry over; where wrangler
needs a Wrangler file (``--binding``), edgekv takes ``--namespace TITLE`` instead, and the
``default`` namespace is used when neither ``--namespace`` nor ``--namespace-id`` is given.
"""

from __future__ import annotations

import argparse
import sys

from .output import (
    CLIError,
    confirm,
    info,
    interactive,
    parse_json,
    print_json,
    progress,
    shown,
    warn,
    write_text,
)
from .targets import DEFAULT_DATA_DIR, MAX_BULK_GET, MAX_BULK_ITEMS, open_target

RAW = argparse.RawDescriptionHelpFormatter


def target_options() -> argparse.ArgumentParser:
    """``--data-dir`` / ``--remote``: shared by every command that opens a store."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("where")
    g.add_argument("--data-dir", "--persist-to", dest="data_dir", metavar="DIR",
                   help=f"local data directory (default {DEFAULT_DATA_DIR})")
    g.add_argument("--remote", metavar="URL",
                   help="act on a running server instead: redis://[:PASSWORD@]HOST:PORT[/DB], "
                        "or its REST API: http(s)://HOST:PORT[/client/v4]")
    g.add_argument("--api-token", dest="api_token", metavar="TOKEN",
                   help="with an http(s):// --remote: the API token (default "
                        "$CLOUDFLARE_API_TOKEN)")
    g.add_argument("--account-id", dest="account_id", metavar="ID",
                   help="with an http(s):// --remote: the account id (default "
                        "$CLOUDFLARE_ACCOUNT_ID, else 'local')")
    g.add_argument("--local", action="store_true",
                   help="act on the local data directory (the default; for wrangler habits)")
    g.add_argument("--key-file", dest="key_file", metavar="FILE",
                   help="the local data directory's encryption key ring (default "
                        "$EDGEKV_KEY_FILE, else DIR.keys beside the data directory)")
    return p


def namespace_options(required: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("namespace (default: the one titled 'default')")
    m = g.add_mutually_exclusive_group(required=required)
    m.add_argument("--namespace-id", dest="namespace_id", metavar="ID", help="namespace id")
    m.add_argument("--namespace", "--binding", dest="namespace", metavar="TITLE",
                   help="namespace title")
    return p


def _select(target, args) -> dict:
    ns = target.resolve_namespace(args.namespace_id, args.namespace)
    target.use_namespace(ns["id"])
    return ns


# ============================================================================ namespace


def cmd_namespace_create(args) -> int:
    with open_target(args) as target:
        if not args.json:
            info(f'Creating namespace with title "{args.title}"')
        ns = target.create_namespace(args.title)
    if args.json:
        print_json(ns)
    else:
        write_text(f'Success!\nCreated namespace "{ns["title"]}" with id {ns["id"]}\n')
    return 0


def cmd_namespace_list(args) -> int:
    with open_target(args) as target:
        print_json(target.list_namespaces())
    return 0


def cmd_namespace_delete(args) -> int:
    with open_target(args, create=False) as target:
        ns = target.resolve_namespace(args.namespace_id, args.namespace)
        if not args.force:
            if not interactive():
                raise CLIError(f"refusing to delete namespace {ns['id']} ({ns['title']!r}) "
                               f"without confirmation: not a terminal; pass -y/--force")
            if not confirm(f"Are you sure you want to delete namespace {ns['id']} "
                           f"({ns['title']!r})?"):
                info("Not deleting.")
                return 1
        info(f"Deleting namespace {ns['id']}")
        target.delete_namespace(ns["id"])
    write_text(f"Deleted namespace {ns['id']}\n")
    return 0


def cmd_namespace_rename(args) -> int:
    if args.old_title is not None and (args.namespace is not None or args.namespace_id):
        raise CLIError("give the namespace either as OLD_TITLE or with --namespace/"
                       "--namespace-id, not both", exit_code=2)
    title = args.old_title if args.old_title is not None else args.namespace
    if title is None and args.namespace_id is None:
        raise CLIError("which namespace? give OLD_TITLE or --namespace-id ID", exit_code=2)
    with open_target(args, create=False) as target:
        ns = target.resolve_namespace(args.namespace_id, title)
        renamed = target.rename_namespace(ns["id"], args.new_name)
    if args.json:
        print_json(renamed)
    else:
        write_text(f'Renamed namespace {renamed["id"]} from "{ns["title"]}" to '
                   f'"{renamed["title"]}"\n')
    return 0


# ============================================================================ key


def _parse_metadata(text: str | None):
    """Workers KV metadata is any JSON value (an object, array, string, number or boolean)
    of at most 1024 bytes as ``JSON.stringify`` writes it; ``null`` means none.  The size
    is the store's limit, checked where the key is written; the text must be JSON here."""
    if text is None:
        return None
    try:
        return parse_json(text, "--metadata")
    except ValueError as exc:
        raise CLIError(f"{exc}; give a JSON value, quoted for the shell, e.g. "
                       f"--metadata '{{\"plan\":\"pro\"}}'", exit_code=2) from None


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None


def cmd_key_put(args) -> int:
    if (args.value is None) == (args.path is None):
        raise CLIError("give exactly one of VALUE or --path FILE", exit_code=2)
    metadata = _parse_metadata(args.metadata)
    value = _read_file(args.path) if args.path is not None else args.value.encode("utf-8")
    with open_target(args) as target:
        ns = _select(target, args)
        # Status, not data: stderr, so `... > file` or a pipe gets only what was asked for.
        if args.path is not None:
            info(f'Writing the contents of {args.path} to the key "{args.key}" on '
                 f'namespace {ns["id"]}.')
        else:
            info(f'Writing the value "{args.value}" to key "{args.key}" on namespace '
                 f'{ns["id"]}.')
        target.put(args.key, value, expiration=args.expiration, expiration_ttl=args.ttl,
                   metadata=metadata)
    return 0


def cmd_key_get(args) -> int:
    with open_target(args, create=False) as target:
        _select(target, args)
        value = target.get(args.key)
    if value is None:
        print("Value not found", file=sys.stderr)
        return 1
    if args.text:
        write_text(bytes(value).decode("utf-8", "replace") + "\n")
    else:
        sys.stdout.buffer.write(value)
        sys.stdout.flush()
    return 0


def cmd_key_list(args) -> int:
    with open_target(args, create=False) as target:
        _select(target, args)
        print_json(list(target.list_all(args.prefix)))
    return 0


def cmd_key_delete(args) -> int:
    with open_target(args, create=False) as target:
        ns = _select(target, args)
        info(f'Deleting the key "{args.key}" on namespace {ns["id"]}.')
        target.delete(args.key)
    return 0


# ============================================================================ bulk

BULK_ITEM_SHAPE = ('{"key": string, "value": string, "expiration"?: number, '
                   '"expiration_ttl"?: number, "metadata"?: object, "base64"?: boolean}')


def _load_json_array(path: str) -> list:
    data = _read_file(path)
    try:
        items = parse_json(data, path)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if not isinstance(items, list):
        raise CLIError(f"{path} must hold a JSON array")
    return items


def _key_names(items: list, path: str) -> list[str]:
    """Wrangler accepts key strings or the objects ``kv key list`` prints."""
    keys, bad = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            keys.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            keys.append(item["name"])
        else:
            bad.append(i)
    if bad:
        raise CLIError(f"{path}: items {_positions(bad)} are neither strings nor "
                       f'{{"name": string}} objects')
    return keys


def _positions(indexes: list[int]) -> str:
    shown = ", ".join(str(i) for i in indexes[:10])
    return shown + (f" and {len(indexes) - 10} more" if len(indexes) > 10 else "")


#: A bulk request is also cut when its values reach this size, so 25 MiB values do not pile
#: up 10,000 to a request.
BATCH_BYTES = 32 * 1024 * 1024


def _batches(items: list, size: int, value_bytes=None):
    batch: list = []
    weight = 0
    for item in items:
        batch.append(item)
        if value_bytes is not None:
            weight += value_bytes(item)
        if len(batch) >= size or weight >= BATCH_BYTES:
            yield batch
            batch, weight = [], 0
    if batch:
        yield batch


def _report_failures(failures: list[tuple[str, str]], total: int, verb: str) -> None:
    warn(f"{len(failures)} of {total} keys could not be {verb}:")
    for key, message in failures[:1000]:
        warn(f"  {shown(key)}: {message}")
    if len(failures) > 1000:
        warn(f"  ... and {len(failures) - 1000} more")


def cmd_bulk_put(args) -> int:
    items = _load_json_array(args.filename)
    bad = [i for i, item in enumerate(items)
           if not isinstance(item, dict) or not isinstance(item.get("key"), str)
           or not isinstance(item.get("value"), str)]
    if bad:
        raise CLIError(f"unexpected JSON input from {args.filename}: items {_positions(bad)} "
                       f"do not match {BULK_ITEM_SHAPE}")
    failures: list[tuple[str, str]] = []
    ok = 0
    with open_target(args) as target:
        _select(target, args)
        with progress("Writing", len(items)) as bar:
            for batch in _batches(items, args.batch_size, lambda item: len(item["value"])):
                result = target.bulk_put(batch)
                ok += result["successful_key_count"]
                failures.extend(result["errors"] or
                                [(k, "rejected") for k in result["unsuccessful_keys"]])
                bar.advance(len(batch))
    return _bulk_outcome(args, ok, failures, len(items), "written")


def cmd_bulk_delete(args) -> int:
    keys = _key_names(_load_json_array(args.filename), args.filename)
    failures: list[tuple[str, str]] = []
    ok = 0
    with open_target(args, create=False) as target:
        ns = _select(target, args)
        if not args.force and interactive():
            if not confirm(f'Are you sure you want to delete all keys in {args.filename} from '
                           f'kv-namespace with id "{ns["id"]}"?'):
                info("Not deleting keys.")
                return 1
        with progress("Deleting", len(keys)) as bar:
            for batch in _batches(keys, args.batch_size):
                result = target.bulk_delete(batch)
                ok += result["successful_key_count"]
                failures.extend((k, "invalid key name") for k in result["unsuccessful_keys"])
                bar.advance(len(batch))
    return _bulk_outcome(args, ok, failures, len(keys), "deleted")


def _bulk_outcome(args, ok: int, failures: list, total: int, verb: str) -> int:
    if args.json:
        print_json({"successful_key_count": ok,
                    "unsuccessful_keys": [key for key, _ in failures]})
    if failures:
        _report_failures(failures, total, verb)
        return 1
    if not args.json:
        info("Success!")
    return 0


def cmd_bulk_get(args) -> int:
    keys = _key_names(_load_json_array(args.filename), args.filename)
    result: dict = {}
    with open_target(args, create=False) as target:
        _select(target, args)
        with progress("Reading", len(keys)) as bar:
            for batch in _batches(keys, MAX_BULK_GET):
                result.update(target.get_many(batch, args.metadata))
                bar.advance(len(batch))
    print_json(result)
    return 0


# ============================================================================ parsers

EX_NS_CREATE = """example:
  edgekv kv namespace create sessions
  edgekv kv namespace create sessions --remote redis://127.0.0.1:6379 --json
"""
EX_NS_LIST = """example:
  edgekv kv namespace list | jq '.[].title'
"""
EX_NS_DELETE = """example:
  edgekv kv namespace delete --namespace sessions          # asks for confirmation
  edgekv kv namespace delete --namespace-id 0f2a... --force
"""
EX_NS_RENAME = """example:
  edgekv kv namespace rename sessions --new-name sessions-v2
  edgekv kv namespace rename --namespace-id 0f2a... --new-name sessions-v2
"""
EX_KEY_PUT = """example:
  edgekv kv key put greeting hello --ttl 3600 --metadata '{"lang":"en"}'
  edgekv kv key put logo.png --path ./logo.png --namespace assets
"""
EX_KEY_GET = """example:
  edgekv kv key get greeting --text
  edgekv kv key get logo.png --namespace assets > logo.png
"""
EX_KEY_LIST = """example:
  edgekv kv key list --prefix user: | jq '.[].name'
"""
EX_KEY_DELETE = """example:
  edgekv kv key delete greeting --remote redis://127.0.0.1:6379
"""
EX_BULK_PUT = """The file is a JSON array of items:
  [{"key": "a", "value": "1", "expiration_ttl": 3600, "metadata": {"v": 1}},
   {"key": "b", "value": "aGk=", "base64": true}]
Items are written in batches of up to 10,000; keys that fail are listed on stderr and
make the exit status 1.

example:
  edgekv kv bulk put ./items.json --namespace sessions
"""
EX_BULK_DELETE = """The file is a JSON array of key names, or of {"name": ...} objects as printed by
`edgekv kv key list`.

example:
  edgekv kv key list --prefix tmp: > keys.json && edgekv kv bulk delete keys.json --force
"""
EX_BULK_GET = """The file is a JSON array of key names, or of {"name": ...} objects.  Prints a JSON
object of key -> value (null for missing keys).

example:
  echo '["a", "b"]' | edgekv kv bulk get - --metadata
"""


def _leaf(sub, name, help_, example, func, parents, description=None):
    p = sub.add_parser(name, help=help_, description=description or help_, epilog=example,
                       formatter_class=RAW, parents=parents)
    p.set_defaults(func=func)
    return p


def add_kv(sub) -> None:
    kv = sub.add_parser("kv", help="manage namespaces and keys, like `wrangler kv`",
                        description="Manage Workers KV namespaces and keys, like `wrangler kv`.",
                        epilog="example:\n  edgekv kv key put greeting hello\n"
                               "  edgekv kv key get greeting --text\n", formatter_class=RAW)
    groups = kv.add_subparsers(dest="kv_group", metavar="GROUP")
    groups.required = True
    where = target_options()

    ns = groups.add_parser("namespace", help="create, list, rename and delete namespaces",
                           description="Create, list, rename and delete namespaces.",
                           epilog=EX_NS_CREATE, formatter_class=RAW)
    ns_sub = ns.add_subparsers(dest="ns_command", metavar="COMMAND")
    ns_sub.required = True
    p = _leaf(ns_sub, "create", "create a namespace", EX_NS_CREATE, cmd_namespace_create, [where])
    p.add_argument("title", help="the new namespace's title")
    p.add_argument("--json", action="store_true", help='print {"id", "title"} as JSON')
    _leaf(ns_sub, "list", "list namespaces as a JSON array", EX_NS_LIST, cmd_namespace_list,
          [where])
    p = _leaf(ns_sub, "delete", "delete a namespace and all its keys", EX_NS_DELETE,
              cmd_namespace_delete, [where, namespace_options(required=True)])
    p.add_argument("-y", "--force", action="store_true", help="do not ask for confirmation")
    p = _leaf(ns_sub, "rename", "give a namespace a new title", EX_NS_RENAME,
              cmd_namespace_rename, [where, namespace_options()])
    p.add_argument("old_title", nargs="?", metavar="OLD_TITLE", help="the current title")
    p.add_argument("--new-name", dest="new_name", required=True, metavar="TITLE",
                   help="the new title")
    p.add_argument("--json", action="store_true", help='print {"id", "title"} as JSON')

    key = groups.add_parser("key", help="put, get, list and delete single keys",
                            description="Put, get, list and delete single keys.",
                            epilog=EX_KEY_PUT, formatter_class=RAW)
    key_sub = key.add_subparsers(dest="key_command", metavar="COMMAND")
    key_sub.required = True
    nso = namespace_options()
    p = _leaf(key_sub, "put", "write one key", EX_KEY_PUT, cmd_key_put, [where, nso])
    p.add_argument("key", help="the key to write")
    p.add_argument("value", nargs="?", help="the value (or use --path)")
    p.add_argument("--path", metavar="FILE", help="read the value from FILE ('-' = stdin)")
    p.add_argument("--ttl", type=int, metavar="SECONDS",
                   help="expire after SECONDS (at least 60); wins over --expiration")
    p.add_argument("--expiration", type=int, metavar="EPOCH",
                   help="expire at this UNIX time in seconds")
    p.add_argument("--metadata", metavar="JSON", help="JSON metadata, at most 1024 bytes")
    p = _leaf(key_sub, "get", "read one value (raw bytes to stdout)", EX_KEY_GET, cmd_key_get,
              [where, nso])
    p.add_argument("key", help="the key to read")
    p.add_argument("--text", action="store_true", help="decode the value as UTF-8 text")
    p = _leaf(key_sub, "list", "list all keys as a JSON array", EX_KEY_LIST, cmd_key_list,
              [where, nso])
    p.add_argument("--prefix", help="only keys starting with this prefix")
    p = _leaf(key_sub, "delete", "delete one key", EX_KEY_DELETE, cmd_key_delete, [where, nso])
    p.add_argument("key", help="the key to delete")

    bulk = groups.add_parser("bulk", help="put, get and delete many keys from a JSON file",
                             description="Put, get and delete many keys from a JSON file.",
                             epilog=EX_BULK_PUT, formatter_class=RAW)
    bulk_sub = bulk.add_subparsers(dest="bulk_command", metavar="COMMAND")
    bulk_sub.required = True
    for name, help_, example, func in (
            ("put", "write the items of a JSON file", EX_BULK_PUT, cmd_bulk_put),
            ("delete", "delete the keys listed in a JSON file", EX_BULK_DELETE, cmd_bulk_delete),
            ("get", "read the keys listed in a JSON file", EX_BULK_GET, cmd_bulk_get)):
        p = _leaf(bulk_sub, name, help_, example, func, [where, nso])
        p.add_argument("filename", metavar="FILE", help="JSON file ('-' = stdin)")
        if name == "get":
            p.add_argument("--metadata", action="store_true",
                           help='print {"value", "metadata"} for each key')
            continue
        p.add_argument("--batch-size", type=_batch_size, default=MAX_BULK_ITEMS, metavar="N",
                       help=f"keys per request (1-{MAX_BULK_ITEMS}, default {MAX_BULK_ITEMS})")
        p.add_argument("--json", action="store_true",
                       help='print {"successful_key_count", "unsuccessful_keys"} as JSON')
        if name == "delete":
            p.add_argument("-f", "-y", "--force", action="store_true",
                           help="do not ask for confirmation")


def _batch_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= n <= MAX_BULK_ITEMS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_BULK_ITEMS}")
    return n
