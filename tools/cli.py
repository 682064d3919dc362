"""``edgekv``: the command-line entry point.

    edgekv serve [--port 6379] [--data-dir ./edgekv-data] [--fsync always|everysec|no] ...
    edgekv kv namespace|key|bulk ...     (tools/kv_commands.py, like `wrangler kv`)
    edgekv export|import|snapshot|stats  (tools/backup.py)
    edgekv verify|compact                (tools/maintenance.py, when the engine has them)
    edgekv keys status|rotate|retire     (tools/keyring.py, encryption keys)

Each subcommand lives in its own function; argparse builds ``--help`` (with an example) from
the parser definitions below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

EXAMPLES_SERVE = """example:
  edgekv serve --port 6379 --data-dir ./edgekv-data --fsync always
  redis-cli -p 6379 SET greeting hello
"""


def _size(text: str) -> int:
    """A byte size as the config file takes it: ``64mb``, ``512kb``, plain bytes."""
    from server.config import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 64mb or 0, got '{text}'")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: '{text}'") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the RESP (and REST) server",
                       description="Run edgekv's Redis-protocol server on a data directory.",
                       epilog=EXAMPLES_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config_file", nargs="?", help="optional redis.conf-style settings file")
    p.add_argument("--port", type=_port, help="TCP port (default 6379; 0 picks a free one)")
    p.add_argument("--bind", help="addresses to listen on, space separated (default 127.0.0.1)")
    p.add_argument("--data-dir", "--persist-to", dest="data_dir",
                   help="data directory (default ./edgekv-data)")
    p.add_argument("--fsync", choices=("always", "everysec", "no"),
                   help="when writes reach the disk (default always)")
    p.add_argument("--requirepass", help="password clients must AUTH with")
    p.add_argument("--maxclients", type=int, help="most simultaneous clients (default 10000)")
    p.add_argument("--min-ttl", dest="min_ttl", type=int,
                   help="smallest TTL in seconds a write may set (default 60, Workers KV's floor)")
    p.add_argument("--protected-mode", dest="protected_mode", choices=("yes", "no"),
                   help="refuse non-loopback binds without a password (default yes)")
    p.add_argument("--http-port", dest="http_port", type=_port,
                   help="port of the Cloudflare-compatible REST API (default 8787, 0 = off)")
    p.add_argument("--api-token", dest="api_tokens", action="append", metavar="TOKEN",
                   help="REST API bearer token with read-write access (repeatable)")
    p.add_argument("--api-read-token", dest="api_read_tokens", action="append", metavar="TOKEN",
                   help="REST API bearer token with read-only access (repeatable)")
    p.add_argument("--auth-email", dest="auth_email",
                   help="REST API X-Auth-Email accepted with --auth-key (read-write)")
    p.add_argument("--auth-key", dest="auth_key", help="REST API X-Auth-Key (global key)")
    p.add_argument("--account-id", dest="account_id",
                   help="the only account id the REST API answers for (default: any)")
    p.add_argument("--http-anonymous", dest="http_anonymous", choices=("yes", "no"),
                   help="serve the REST API without credentials (loopback binds only)")
    p.add_argument("--compaction-threshold", dest="compaction_threshold", type=float,
                   help="compact in the background when a sealed segment is this fraction "
                        "dead (default 0.5; 0 = only on demand)")
    p.add_argument("--encryption", choices=("yes", "no"),
                   help="encrypt data at rest with AES-256-GCM (default yes)")
    p.add_argument("--key-file", dest="key_file",
                   help="the encryption key ring (default $EDGEKV_KEY_FILE, else DATA_DIR.keys "
                        "beside the data directory); keep a copy: without it the data is lost")
    p.add_argument("--compression-threshold", dest="compression_threshold", type=int,
                   help="zstd-compress values of at least this many bytes (0 = never)")
    p.add_argument("--compression-level", dest="compression_level", type=int,
                   help="zstd level from -7 to 22 (default -1, a fast level); 1 and up "
                        "compress more for several times the CPU")
    p.add_argument("--read-cache", dest="read_cache", type=_size,
                   help="memory for recently read values, e.g. 64mb (default) or 0 = off")
    p.add_argument("--segment-bytes", dest="segment_bytes", type=int,
                   help="rotate segment files at this size (default 64 MiB)")
    p.add_argument("--log-level", dest="log_level", default=None,
                   help="DEBUG, INFO (default), WARNING or ERROR")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from server import config as server_config
    from server.app import run

    overrides = {
        "port": args.port, "bind": args.bind, "data_dir": args.data_dir, "fsync": args.fsync,
        "requirepass": args.requirepass, "maxclients": args.maxclients, "min_ttl": args.min_ttl,
        "segment_bytes": args.segment_bytes, "log_level": args.log_level,
        "compaction_threshold": args.compaction_threshold,
        "key_file": args.key_file, "compression_threshold": args.compression_threshold,
        "compression_level": args.compression_level,
        "read_cache": args.read_cache,
        "api_tokens": args.api_tokens, "api_read_tokens": args.api_read_tokens,
        "auth_email": args.auth_email, "auth_key": args.auth_key, "account_id": args.account_id,
    }
    if args.http_anonymous is not None:
        overrides["http_anonymous"] = args.http_anonymous == "yes"
    if args.encryption is not None:
        overrides["encryption"] = args.encryption == "yes"
    if args.protected_mode is not None:
        overrides["protected_mode"] = args.protected_mode == "yes"
    if args.http_port is not None:
        overrides["http_port"] = args.http_port  # 0 turns the REST API off (see config.build)
    try:
        config = server_config.build(args.config_file, **overrides)
        if args.config_file:
            config.extra["config_file"] = args.config_file
        config.check()
    except OSError as exc:  # the settings file
        where = f"cannot read {exc.filename}: " if exc.filename else ""
        print(f"edgekv serve: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgekv serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from engine import StoreError
    try:
        run(config)
    except StoreError as exc:
        print(f"edgekv serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename:  # the data directory or the key file, not the socket
            print(f"edgekv serve: cannot use {exc.filename}: {exc.strerror or exc}",
                  file=sys.stderr)
        else:
            # asyncio's text quotes the address as a Python tuple: the errno says it plainly.
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            print(f"edgekv serve: cannot listen on {config.bind}:{config.port}: {reason}",
                  file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgekv", description="edgekv: a self-hosted Workers KV "
                                     "with a Redis-protocol front end.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_serve(sub)
    from .backup import add_backup
    from .keyring import add_keyring
    from .kv_commands import add_kv
    from .maintenance import add_maintenance
    add_kv(sub)
    add_backup(sub)
    add_maintenance(sub)
    add_keyring(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is cmd_serve:
        return args.func(args)
    return _run(args)


def _run(args) -> int:
    """Every failure becomes one line on stderr and an exit status, never a traceback:
    1 for errors, 2 for usage, 130 for Ctrl-C."""
    from engine import KVError

    from .output import CLIError
    from .targets import RemoteError
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"edgekv: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KVError, RemoteError) as exc:
        print(f"edgekv: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (head, jq...) went away: not an error of ours.
        sys.stderr.close()
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"edgekv: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgekv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
