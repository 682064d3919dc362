"""One client's state and the command dispatcher; no sockets here.

``Session.execute(args)`` takes one parsed command and returns its encoded reply.  The command
table (``server/command_table.py``) supplies arity and the exact Redis error texts; handlers
registered in ``server/commands`` do the work.  Engine errors are mapped here, once, by type:
a KV error becomes ``-KV PUT failed: 413 ...`` (the binding's text, so Redis clients show the
exact Workers KV message), a client-side one ``-ERR Key name cannot be empty.``.
"""

from __future__ import annotations

import logging
import time

from engine import KVError, Namespace
from engine.errors import CorruptionError, NamespaceNotFoundError, WriteFailedError

from . import command_table
from .commands import HANDLERS, CommandError
from .commands.strings import get_many, set_many
from .resp import encode_error
from .state import ServerState

log = logging.getLogger("edgekv.server")

_NO_AUTH_NEEDED = frozenset(("auth", "hello", "quit", "reset"))  # as Redis
#: Commands a pipeline may run as a batch, in their plain form: name -> (arity, handler of a
#: run); see ``execute_run``.
RUN_HANDLERS = {"set": (3, set_many), "get": (2, get_many)}
#: How clients spell them (Redis names are case-insensitive; other spellings take the
#: ordinary path, which is correct, only slower).
_RUN_SPELLINGS = {spelling: name for name in RUN_HANDLERS
                  for spelling in (name.encode(), name.upper().encode())}


def run_kind(args: list[bytes]) -> str | None:
    """The run a pipelined command can join (its name in ``RUN_HANDLERS``), or None."""
    name = _RUN_SPELLINGS.get(args[0])
    return name if name is not None and len(args) == RUN_HANDLERS[name][0] else None


class Session:
    __slots__ = ("state", "id", "addr", "laddr", "protocol", "authenticated", "namespace", "db",
                 "name", "lib_name", "lib_ver", "created", "last_interaction", "last_command",
                 "close_after_reply", "connection", "calls")

    def __init__(self, state: ServerState, addr: str = "", laddr: str = "") -> None:
        self.state = state
        self.id = next(state.client_ids)
        self.addr = addr
        self.laddr = laddr
        self.protocol = 2
        self.authenticated = not state.config.requirepass
        self.namespace: Namespace = state.store.namespace("default")
        self.db = 0
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.created = time.time()
        self.last_interaction = self.created
        self.last_command = "NULL"
        self.calls = state.stats.command_calls  # per command name, for INFO commandstats
        self.close_after_reply = False  # QUIT: close once this batch's replies are out
        self.connection = None  # the transport-side object; None in sans-IO tests

    # ------------------------------------------------------------------ dispatch

    def execute(self, args: list[bytes]) -> bytes:
        # The hot path of every request: one dict lookup, two comparisons, one call.
        entry = HANDLERS.get(args[0])
        if entry is None:
            entry = HANDLERS.get(args[0].lower())
            if entry is None:
                self.state.stats.unknown_commands += 1
                return encode_error(command_table.unknown_command_error(args))
        spec, handler, op = entry
        name = spec.name
        arity = spec.arity
        if arity > 0:
            if len(args) != arity:
                return encode_error(command_table.wrong_arity_error(spec))
        elif len(args) < -arity:
            return encode_error(command_table.wrong_arity_error(spec))
        if not self.authenticated and name not in _NO_AUTH_NEEDED:
            return b"-NOAUTH Authentication required.\r\n"
        self.last_command = name
        calls = self.calls
        calls[name] = calls.get(name, 0) + 1
        try:
            return handler(self, args)
        except CommandError as exc:
            return encode_error(str(exc))
        except KVError as exc:
            if op is not None:
                exc.with_op(op)
            return encode_error(kv_error_text(exc))
        except Exception:
            log.exception("command %r failed", name)
            return encode_error(f"ERR internal error while running '{name}'; see the "
                                f"server log")

    def execute_run(self, name: str, commands: list[list[bytes]]) -> bytes | None:
        """A pipeline's run of one command in its plain form (``SET key value``, ``GET key``:
        the caller checked the shape; ``RUN_HANDLERS`` lists them), done in one go: one engine
        write for SETs, no per-command dispatch.  The replies of them all, or None when they
        must run one by one (``execute`` then gives each its own reply or error)."""
        if not self.authenticated:
            return None
        try:
            replies = RUN_HANDLERS[name][1](self, commands)
        except KVError:  # nothing was applied: each command meets the error again on its own
            return None
        if replies is not None:
            self.last_command = name
            calls = self.calls
            calls[name] = calls.get(name, 0) + len(commands)
        return replies

    def kill(self) -> None:
        """CLIENT KILL: drop the connection now."""
        if self.connection is not None:
            self.connection.kill()

    def select(self, namespace: Namespace, db: int) -> None:
        self.namespace = namespace
        self.db = db


def kv_error_text(exc: KVError) -> str:
    """The RESP error text for an engine error: Redis-style code word first."""
    if isinstance(exc, CorruptionError):
        return f"CORRUPT {exc.message}"
    if isinstance(exc, WriteFailedError):
        return f"IOERR {exc.message}"
    if isinstance(exc, NamespaceNotFoundError):
        return f"ERR {exc.message}"
    if exc.client_side or exc.op is None:
        return f"ERR {exc.message}"
    return str(exc)
