"""``edgekv keys status|rotate|retire``: the encryption key ring, on a data directory or a
running server.  The workflow they serve is in docs/encryption.md: rotate, compact (which
re-encrypts older records), check that the old key id has no data left, retire it."""

from __future__ import annotations

from .kv_commands import RAW, target_options
from .output import CLIError, print_json, write_text
from .targets import RedisTarget, RemoteError, open_target

EX_KEYS = """Encryption keys of a store: which are in use, adding a new one, dropping an old one.

example:
  edgekv keys status --data-dir ./edgekv-data
  edgekv keys rotate --remote redis://127.0.0.1:6379
  edgekv compact --remote redis://127.0.0.1:6379
  edgekv keys retire 1 --remote redis://127.0.0.1:6379
"""


def _store_or_remote(target):
    if isinstance(target, RedisTarget) or hasattr(target, "store"):
        return target
    raise CLIError("the REST API has no key management route; use --remote "
                   "redis://HOST:PORT (the same server's RESP port) or --data-dir DIR")


def _status(target) -> dict:
    if isinstance(target, RedisTarget):
        status = target._call("KV.KEYRING", "STATUS")
        return _decoded(status)
    store = target.store
    usage = {str(key_id): used for key_id, used in sorted(store.key_usage().items())}
    return _decoded(dict(store.encryption_info(), usage=usage))


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {_decoded(k): _decoded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decoded(v) for v in value]
    return value


def cmd_keys_status(args) -> int:
    with open_target(args, create=False) as target:
        status = _status(_store_or_remote(target))
    if args.json:
        print_json(status)
        return 0
    if not status.get("enabled"):
        write_text("encryption: off\n")
    else:
        write_text(f"encryption: AES-256-GCM, active key id {status.get('active_key_id')}, "
                   f"key file {status.get('key_file')}\n")
    for key_id, usage in (status.get("usage") or {}).items():
        label = "plaintext" if str(key_id) == "0" else f"key {key_id}"
        details = ", ".join(f"{name} {value}" for name, value in usage.items())
        write_text(f"  {label}: {details}\n")
    return 0


def cmd_keys_rotate(args) -> int:
    with open_target(args, create=False) as target:
        target = _store_or_remote(target)
        if isinstance(target, RedisTarget):
            key_id = int(target._call("KV.KEYRING", "ROTATE"))
        else:
            key_id = target.store.rotate_key()
    if args.json:
        print_json({"active_key_id": key_id})
    else:
        write_text(f"new writes now use key id {key_id}; run `edgekv compact` to "
                   f"rewrite older data with it\n")
    return 0


def _where(args, target) -> str:
    """The target options to repeat in a suggested command (the password left out)."""
    if isinstance(target, RedisTarget):
        return f" --remote {target.description}"
    return f" --data-dir {args.data_dir}" if args.data_dir else ""


def cmd_keys_retire(args) -> int:
    """Check first, from the same status report the server checks (``retire_refusal``), so
    a refusal names what to run next in the CLI's terms; then retire.  Every refusal is
    ``edgekv: cannot retire key id N: <why>`` and exit code 1."""
    from engine import KVError
    from engine.crypto import retire_refusal

    with open_target(args, create=False) as target:
        target = _store_or_remote(target)
        where = _where(args, target)
        try:
            status = _status(target)
        except KVError as exc:  # e.g. an unencrypted store
            raise CLIError(f"cannot retire key id {args.key_id}: {exc.message}") from None
        refusal = retire_refusal(status, args.key_id, rotate=f"`edgekv keys rotate{where}`",
                                 compact=f"`edgekv compact{where}`")
        if refusal is not None:
            raise CLIError(f"cannot retire key id {args.key_id}: {refusal}")
        try:
            if isinstance(target, RedisTarget):
                target._call("KV.KEYRING", "RETIRE", str(args.key_id))
            else:
                target.store.retire_key(args.key_id)
        except RemoteError as exc:
            raise CLIError(f"cannot retire key id {args.key_id}: {exc}") from None
        except KVError as exc:
            raise CLIError(f"cannot retire key id {args.key_id}: {exc.message}") from None
    if args.json:
        print_json({"retired": args.key_id})
    else:
        write_text(f"key id {args.key_id} removed from the key ring\n")
    return 0


def add_keyring(sub) -> None:
    where = target_options()
    keys = sub.add_parser("keys", help="encryption keys: status, rotate, retire",
                          description="Manage the encryption key ring of a store.",
                          epilog=EX_KEYS, formatter_class=RAW)
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    actions.required = True
    p = actions.add_parser("status", help="which key ids stored data still uses",
                           epilog=EX_KEYS, formatter_class=RAW, parents=[where])
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_keys_status)
    p = actions.add_parser("rotate", help="add a new key for all new writes",
                           epilog=EX_KEYS, formatter_class=RAW, parents=[where])
    p.add_argument("--json", action="store_true", help="print the new key id as JSON")
    p.set_defaults(func=cmd_keys_rotate)
    p = actions.add_parser("retire", help="drop a key no stored data uses any more",
                           epilog=EX_KEYS, formatter_class=RAW, parents=[where])
    p.add_argument("key_id", type=int, metavar="ID", help="the key id to drop")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_keys_retire)
