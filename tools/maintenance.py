"""``edgekv verify`` and ``edgekv compact``: thin front ends on the engine's own tools.

They are registered only when the engine provides ``engine.verify`` and ``Store.compact``, so
the command line never offers a command that cannot run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from .kv_commands import RAW, target_options
from .output import CLIError, confirm, print_json, write_text
from .targets import DEFAULT_DATA_DIR, RedisTarget, locked_message, open_target

EX_VERIFY = """Reads every record and hint file of a data directory that no process has open.
Exit status 1 when anything is damaged.

With --repair it then rewrites the damaged segments without their damaged records, after
asking (or with -y/--force), and keeps the originals in DATA_DIR/repair-<time>/.

example:
  edgekv verify ./edgekv-data
  edgekv verify ./edgekv-data --repair --force
"""
EX_COMPACT = """Rewrites the live records into new segments and drops the rest; reads and writes
go on meanwhile.  On a terminal a progress bar shows the bytes copied so far (on stderr; none
with --json or when stderr is not a terminal).

example:
  edgekv compact ./edgekv-data
  edgekv compact --remote redis://127.0.0.1:6379
"""


def available() -> tuple[bool, bool]:
    try:
        from engine import verify
        has_verify = hasattr(verify, "verify_store")
    except ImportError:
        has_verify = False
    from engine import Store
    return has_verify, hasattr(Store, "compact")


def cmd_verify(args) -> int:
    from engine import StoreLockedError
    from engine.verify import verify_store

    if args.remote:
        raise CLIError("verify reads the files of a stopped store: run it where they are, "
                       "with --data-dir DIR, after stopping the server")
    data_dir = args.path or args.data_dir or DEFAULT_DATA_DIR
    if not os.path.isdir(data_dir):
        raise CLIError(f"data directory {data_dir} does not exist; pass --data-dir DIR")
    try:
        report = verify_store(data_dir, key_file=args.key_file)
    except StoreLockedError:
        raise CLIError(locked_message(data_dir).split(": use")[0]
                       + ": verify needs it closed; stop that process first") from None
    if args.json:
        print_json(dict(dataclasses.asdict(report), ok=report.ok))
    else:
        lines = [f"{report.path}: {report.segments} segments, {report.records} records, "
                 f"{report.live_keys} live keys, {report.hints_checked} hint files checked"]
        lines += [f"corrupt: segment {c.segment} offset {c.offset} ({c.length} bytes): {c.reason}"
                  for c in report.corrupt]
        lines += [f"torn tail: segment {c.segment} offset {c.offset} (dropped on open)"
                  for c in report.torn_tails]
        lines += [f"hint: {p}" for p in report.hint_problems]
        lines += [f"note: {n}" for n in report.notes]
        lines.append("OK" if report.ok else "DAMAGED")
        write_text("\n".join(lines) + "\n")
    if args.repair and not report.ok:
        return _repair(data_dir, args)
    return 0 if report.ok else 1


def _repair(data_dir: str, args) -> int:
    from engine.verify import repair

    plan = repair(data_dir, confirm=False, key_file=args.key_file)
    question = (f"Rewrite segments {plan.rewritten_segments} of {data_dir} without their damaged "
                f"records (originals are kept aside)?")
    if not (args.force or confirm(question)):
        raise CLIError("repair not confirmed: nothing was changed (pass -y/--force to skip the "
                       "question)")
    done = repair(data_dir, confirm=True, key_file=args.key_file)
    if args.json:
        print_json(dataclasses.asdict(done))
    else:
        write_text(f"repaired {data_dir}: rewrote segments {done.rewritten_segments}, kept "
                   f"{done.records_kept} records, wrote {done.tombstones_written} tombstones; "
                   f"originals in {done.backup_dir}\n")
    return 0


def cmd_compact(args) -> int:
    args.data_dir = args.path or args.data_dir
    with open_target(args, create=False) as target:
        if isinstance(target, RedisTarget):
            summary = _compact_remote(target, wait=not args.no_wait)
            if summary is None:
                write_text("Background compaction started (INFO persistence shows when it "
                           "ends)\n")
                return 0
        elif not hasattr(target, "store"):
            raise CLIError("the REST API has no compaction route; use --remote "
                           "redis://HOST:PORT (the same server's RESP port)")
        else:
            summary = _compact_local(target.store, show_progress=not args.json)
    if "error" in summary:
        raise CLIError(f"compaction failed: {summary['error']}")
    if args.json:
        print_json(summary)
    else:
        write_text(f"Compacted {summary.get('segments_in', 0)} segments into "
                   f"{summary.get('segments_out', 0)}: {summary.get('bytes_before', 0)} -> "
                   f"{summary.get('bytes_after', 0)} bytes, "
                   f"{summary.get('records_dropped', 0)} records dropped\n")
    return 0


def _compact_local(store, *, show_progress: bool) -> dict:
    """Compact in this process, with a bar of input bytes copied when stderr is a terminal
    (transient: it leaves only the summary behind)."""
    if not (show_progress and sys.stderr.isatty()):
        return store.compact()
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [TextColumn("Compacting"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("compact", total=None)
        return store.compact(progress=lambda done, total: bar.update(task, completed=done,
                                                                      total=total))


def _compaction_state(target) -> tuple[bool, dict]:
    info = target._call("INFO", "persistence")
    if isinstance(info, bytes):
        info = dict(line.split(":", 1) for line in info.decode().splitlines()
                    if ":" in line and not line.startswith("#"))
    last = info.get("edgekv_last_compaction")
    if isinstance(last, (str, bytes)):
        text = last.decode() if isinstance(last, bytes) else last
        last = {} if text == "none" else dict(item.split("=", 1) for item in text.split(","))
    return bool(int(info.get("aof_rewrite_in_progress", 0))), dict(last or {})


def _compact_remote(target, *, wait: bool) -> dict | None:
    """The server compacts in a worker thread (it marks itself running before it replies):
    start it, then follow INFO until it is done."""
    from .targets import RemoteError

    try:
        target._call("KV.COMPACT")
    except RemoteError as exc:
        if "already running" not in str(exc) or not wait:
            raise
        # Someone else started one: its result is as good as ours.
    if not wait:
        return None
    while True:
        running, last = _compaction_state(target)
        if not running:
            return last
        time.sleep(0.1)


def add_maintenance(sub) -> None:
    has_verify, has_compact = available()
    where = target_options()
    if has_verify:
        p = sub.add_parser("verify", help="check every record of a stopped data directory",
                           description="Check every record and hint file of a data directory.",
                           epilog=EX_VERIFY, formatter_class=RAW, parents=[where])
        p.add_argument("path", nargs="?", metavar="DATA_DIR",
                       help="the data directory (same as --data-dir)")
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--repair", action="store_true",
                       help="after the report, rewrite damaged segments without the damaged "
                            "records (asks first; originals kept aside)")
        p.add_argument("-y", "--force", action="store_true", help="repair without asking")
        p.set_defaults(func=cmd_verify)
    if has_compact:
        p = sub.add_parser("compact", help="reclaim the space of overwritten and deleted keys",
                           description="Compact a store: rewrite live records, drop the rest.",
                           epilog=EX_COMPACT, formatter_class=RAW, parents=[where])
        p.add_argument("path", nargs="?", metavar="DATA_DIR",
                       help="the data directory (same as --data-dir)")
        p.add_argument("--json", action="store_true",
                       help="print the summary as JSON (and show no progress bar)")
        p.add_argument("--no-wait", action="store_true",
                       help="with --remote: return once the server has started compacting")
        p.set_defaults(func=cmd_compact)
