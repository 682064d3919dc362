"""How the command line talks: JSON for scripts, messages on stderr, progress for humans.

Progress bars only appear when stderr is a terminal, so pipes, CI logs and tests see nothing
but the data they asked for.
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager


class CLIError(Exception):
    """A failure the user can act on: printed as ``edgekv: <message>``, exit code 1."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def print_json(value, *, indent: int | None = 2) -> None:
    """Wrangler prints ``JSON.stringify(value, null, 2)``; ``ensure_ascii`` off keeps keys
    readable.  A key byte that is not UTF-8 (held as a lone surrogate, ``surrogateescape``) is
    written as its ``\\udcXY`` escape, as the REST API lists it: a U+FFFD in its place would
    make two keys look alike, and a bulk delete of the listed names reach the wrong one."""
    write_text(json_text(value, indent=indent) + "\n")


def json_text(value, *, indent: int | None = None, separators=None) -> str:
    """JSON as UTF-8-safe text: readable characters kept, and a key byte that is not UTF-8 (a
    lone surrogate ``\\udcXY`` in Python, from ``surrogateescape``) written as that escape.
    The RESP ``KV.BULKPUT`` and the REST bulk routes read the escape back as the byte; sent
    raw, the byte would make the whole body invalid UTF-8 and the request would fail."""
    return shown(json.dumps(value, indent=indent, ensure_ascii=False, separators=separators))


def shown(text: str) -> str:
    """Text for a message: a lone surrogate (a key byte that is not UTF-8) as its escape."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def has_lone_surrogate(text: str) -> bool:
    return _LONE_SURROGATE.search(text) is not None


def parse_json(text, what: str):
    """``json.loads`` for user input, as strict as JSON itself: ``NaN`` and ``Infinity`` (which
    Python accepts and JavaScript's ``JSON.parse`` does not) are refused, and so is nesting too
    deep to parse, all as ``ValueError`` with a message that reads without Python."""
    def no_constant(name):
        raise ValueError(f"{name} is not a JSON value")
    try:
        return json.loads(text, parse_constant=no_constant)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc.msg.lower()} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"{what} is not usable JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def write_text(text: str) -> None:
    sys.stdout.write(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    sys.stdout.flush()


def info(message: str) -> None:
    """Human-readable status that must not pollute machine-readable stdout."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str) -> bool:
    """Ask on the terminal; callers decide what a non-interactive run means."""
    sys.stderr.write(f"{question} [y/n] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def total(self, n: int) -> None:
        pass


class _RichProgress:
    def __init__(self, progress, task) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def total(self, n: int) -> None:
        self._progress.update(self._task, total=n)


@contextmanager
def progress(description: str, total: int | None = None, *, enabled: bool | None = None):
    """A progress bar on stderr when it is a terminal (and ``rich`` is installed)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _NoProgress()
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        yield _NoProgress()
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield _RichProgress(bar, bar.add_task(description, total=total))
