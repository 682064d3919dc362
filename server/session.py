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
from engine.errors import (CorruptionError, NamespaceDeletedError, NamespaceNotFoundError,
                           WriteFailedError)

from . import command_table
from .commands import HANDLERS, CommandError
from .commands.strings import get_many, set_many
from .resp import encode_error
from .state import ServerState

log = logging.getLogger("edgekv.server")

_NO_AUTH_NEEDED = frozenset(("auth", "hello", "quit", "reset"))  # as Redis
#: What runs at once inside MULTI instead of being queued (Redis's processCommand list).
_NOT_QUEUED = frozenset(("exec", "discard", "multi", "watch", "quit", "reset"))
_NOAUTH = "NOAUTH Authentication required."
_QUEUED = b"+QUEUED\r\n"
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
    __slots__ = ("state", "id", "addr", "laddr", "protocol", "_authenticated", "namespace", "db",
                 "namespace_title", "name", "lib_name", "lib_ver", "created", "last_interaction",
                 "last_command", "close_after_reply", "connection", "calls", "gated", "multi",
                 "multi_failed", "watched")

    def __init__(self, state: ServerState, addr: str = "", laddr: str = "") -> None:
        self.state = state
        self.id = next(state.client_ids)
        self.addr = addr
        self.laddr = laddr
        self.protocol = 2
        # MULTI: the queued commands (None outside a transaction), and whether one of them
        # was refused while queuing (EXEC then answers EXECABORT).
        self.multi: list[list[bytes]] | None = None
        self.multi_failed = False
        #: WATCH: (namespace id, key) -> (namespace, the key's version when watched); None
        #: when nothing is watched.  See ``commands/transactions.py``.
        self.watched: dict | None = None
        self.authenticated = not state.config.requirepass  # also sets ``gated``
        self.namespace: Namespace = state.store.namespace("default")
        self.namespace_title = "default"  # as it was at SELECT: named if it is deleted
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

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @authenticated.setter
    def authenticated(self, value: bool) -> None:
        self._authenticated = value
        self.gated = not value or self.multi is not None

    # ------------------------------------------------------------------ MULTI

    def begin_multi(self) -> None:
        self.multi = []
        self.multi_failed = False
        self.gated = True

    def end_multi(self) -> None:
        """Leave the transaction, if any, and forget the watched keys (EXEC, DISCARD, RESET,
        QUIT), as Redis's discardTransaction does."""
        self.multi = None
        self.multi_failed = False
        self.watched = None
        self.gated = not self._authenticated

    def _refuse(self, text: str, name: str = "") -> bytes:
        """An error for a command refused before it ran; inside MULTI it also dooms the
        transaction, as Redis's rejectCommand flags it.  A refused EXEC discards the
        transaction and says so (Redis's execCommandAbort), in MULTI or not."""
        if name == "exec":
            self.end_multi()
            return encode_error("EXECABORT Transaction discarded because of: "
                                + text.removeprefix("ERR "))
        if self.multi is not None:
            self.multi_failed = True
        return encode_error(text)

    def _gate(self, name: str, args: list[bytes]) -> bytes | None:
        """The checks of a session that is not authenticated or is inside MULTI (``gated``):
        the reply when the command must not run now (refused, or queued), else None."""
        if not self._authenticated and name not in _NO_AUTH_NEEDED:
            return self._refuse(_NOAUTH, name)
        if self.multi is None or name in _NOT_QUEUED:
            return None
        # A container's subcommand and its arity are checked by its handler outside MULTI;
        # here they must be checked before queuing, as Redis does.
        error = command_table.command_error(args)
        if error is not None:
            return self._refuse(error)
        if "no_multi" in command_table.resolve(args).flags:
            return self._refuse("ERR Command not allowed inside a transaction")
        self.multi.append(args)
        return _QUEUED

    # ------------------------------------------------------------------ dispatch

    def execute(self, args: list[bytes]) -> bytes:
        # The hot path of every request: one dict lookup, two comparisons, one call.
        entry = HANDLERS.get(args[0])
        if entry is None:
            entry = HANDLERS.get(args[0].lower())
            if entry is None:
                self.state.stats.unknown_commands += 1
                return self._refuse(command_table.unknown_command_error(args))
        spec, handler, op = entry
        name = spec.name
        arity = spec.arity
        if arity > 0:
            if len(args) != arity:
                return self._refuse(command_table.wrong_arity_error(spec), name)
        elif len(args) < -arity:
            return self._refuse(command_table.wrong_arity_error(spec), name)
        if self.gated:  # not authenticated, or inside MULTI: see _gate
            refused = self._gate(name, args)
            if refused is not None:
                return refused
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
            if isinstance(exc, NamespaceDeletedError) and self.namespace_deleted():
                return encode_error(self.deleted_namespace_error())
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
        if self.gated:  # not authenticated, or inside MULTI (each command is queued)
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

    def select(self, namespace: Namespace, db: int, title: str | None = None) -> None:
        self.namespace = namespace
        self.db = db
        if title is None:
            try:
                title = namespace.title
            except NamespaceNotFoundError:
                title = namespace.id
        self.namespace_title = title

    def namespace_deleted(self) -> bool:
        """Whether the selected namespace was deleted (by another client: KV.NAMESPACE
        DELETE, or the REST API) since this connection selected it."""
        try:
            self.namespace.info
        except NamespaceNotFoundError:
            return True
        return False

    def deleted_namespace_error(self) -> str:
        """What every command using the keyspace answers once the selected namespace is gone:
        which one, and how to recover.  The connection is not moved elsewhere on its own, as
        its next writes would then land in a namespace it never chose."""
        return (f"ERR the selected namespace '{self.namespace_title}' (id {self.namespace.id}) "
                f"was deleted; SELECT another namespace (SELECT 0 is the default one)")


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
