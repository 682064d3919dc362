"""The command table, kept as data the way Redis keeps ``src/commands/*.json``.

Every command the server answers has one :class:`CommandSpec` entry below: its name, arity
(Redis's convention: positive = exact argument count including the name, negative = minimum),
flags, ACL categories, key specs, documentation (group, since, summary, complexity, history)
and arguments.  Containers (CLIENT, CONFIG, COMMAND, KV.NAMESPACE) hold their subcommands, each
a full spec whose name is ``container|sub`` as in Redis.

Everything the server says *about* commands comes from here: COMMAND, COMMAND COUNT/INFO/DOCS/
LIST/GETKEYS, the arity and unknown-command errors, and the HELP texts.  The functions are pure
(no I/O) and return plain values for the RESP codec: ``str`` for bulk strings, ``int``,
``list`` for arrays, ``dict`` for maps, :class:`SimpleString` where Redis sends a status reply,
and :class:`ReplySet` where Redis sends a RESP3 set.

The standard commands carry Redis's own data (arity, flags, ACL categories, tips, key specs,
arguments, history, summaries) exactly as redis-server 7.0 reports it, which the tests check
against a real server, plus what Redis 7.2 added for them: CLIENT SETINFO, the 7.2.0 CLIENT
LIST history entry, and the ``display_text`` of the arguments in COMMAND DOCS.  (Redis 7.2
also reworded the summaries; the 7.0 wording is kept.)  Only the subcommands edgekv
implements are listed under each container.  The ``KV.*`` commands are edgekv's own, in
group ``kv``: the Cloudflare Workers KV operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Sequence

try:  # the codec's status-reply marker
    from server.resp import SimpleString
except ModuleNotFoundError as exc:  # pragma: no cover - only while the codec is absent
    if exc.name not in ("server", "server.resp"):
        raise

    class SimpleString(str):
        """A RESP simple string (status reply), e.g. ``+readonly``."""

        __slots__ = ()


# ---------------------------------------------------------------------------- vocabulary
# Names exactly as Redis spells them in its replies, in the order Redis lists them.

#: Command flags (COMMAND INFO's third element).
COMMAND_FLAGS = (
    "write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript", "blocking",
    "loading", "stale", "skip_monitor", "skip_slowlog", "asking", "fast", "no_auth",
    "may_replicate", "no_mandatory_keys", "no_async_loading", "no_multi", "movablekeys",
    "allow_busy",
)

#: ACL categories, without the leading ``@``.
ACL_CATEGORIES = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
    "connection", "transaction", "scripting",
)

#: Key-spec flags.
KEY_SPEC_FLAGS = (
    "RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key", "incomplete",
    "variable_flags",
)

#: Argument types (COMMAND DOCS ``type``).
ARG_TYPES = (
    "string", "integer", "double", "key", "pattern", "unix-time", "pure-token", "oneof", "block",
)

#: Documentation flags (COMMAND DOCS ``doc_flags``).
DOC_FLAGS = ("deprecated", "syscmd")

_FLAG_ORDER = {name: i for i, name in enumerate(COMMAND_FLAGS)}
_ACL_ORDER = {name: i for i, name in enumerate(ACL_CATEGORIES)}
_KEY_FLAG_ORDER = {name: i for i, name in enumerate(KEY_SPEC_FLAGS)}
_DOC_FLAG_ORDER = {name: i for i, name in enumerate(DOC_FLAGS)}


class ReplySet(set):
    """An ordered RESP3 set (``~``); a plain array in RESP2.

    Redis answers COMMAND INFO/DOCS with sets whose members can be maps or arrays, and in a
    fixed order.  A Python ``set`` can hold neither, so this subclass keeps its members in a
    list: iteration, ``len`` and ``in`` follow that list, while ``isinstance(x, set)`` still
    tells the codec to write a set.  The base set storage stays empty.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable = ()) -> None:
        super().__init__()
        self._items = list(items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, item) -> bool:
        return item in self._items

    def __eq__(self, other) -> bool:
        if isinstance(other, ReplySet):
            return self._items == other._items
        if isinstance(other, (list, tuple)):
            return self._items == list(other)
        return NotImplemented

    def __ne__(self, other) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReplySet({self._items!r})"

    def __reduce__(self):
        return (ReplySet, (self._items,))

    def copy(self) -> "ReplySet":
        return ReplySet(self._items)


def _ordered(names: Iterable[str], order: Mapping[str, int], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in order:
            raise ValueError(f"unknown {what} {name!r}")
    return tuple(sorted(names, key=order.__getitem__))


# ---------------------------------------------------------------------------- the data types


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument as COMMAND DOCS describes it (Redis's ``arguments`` entries)."""

    name: str
    type: str
    token: str | None = None
    optional: bool = False
    multiple: bool = False
    multiple_token: bool = False
    key_spec_index: int = -1
    since: str | None = None
    deprecated_since: str | None = None
    summary: str | None = None
    #: the placeholder shown in syntax (``display`` in Redis's JSON); defaults to ``name``
    display: str | None = None
    arguments: tuple["Arg", ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ARG_TYPES:
            raise ValueError(f"argument {self.name!r}: unknown type {self.type!r}")
        if (self.type == "key") != (self.key_spec_index >= 0):
            raise ValueError(f"argument {self.name!r}: key arguments, and only they, "
                             f"need a key_spec_index")
        if (self.type in ("oneof", "block")) != bool(self.arguments):
            raise ValueError(f"argument {self.name!r}: oneof/block, and only they, "
                             f"have nested arguments")
        if self.type == "pure-token" and not self.token:
            raise ValueError(f"argument {self.name!r}: a pure-token needs its token")

    @property
    def display_text(self) -> str | None:
        if self.type in ("oneof", "block"):
            return None
        return self.display or self.name

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("optional", self.optional),
                                           ("multiple", self.multiple),
                                           ("multiple_token", self.multiple_token)) if on)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Where a command's keys are: begin at argument ``index``, then a range of keys.

    ``lastkey`` is relative to ``index`` (0 = one key, -1 = up to the last argument), keys are
    every ``keystep`` arguments; ``limit`` is Redis's range limit (0 = none).  Every spec in
    this table uses Redis's "index" begin-search and "range" find-keys types.
    """

    flags: tuple[str, ...]
    index: int = 1
    lastkey: int = 0
    keystep: int = 1
    limit: int = 0
    notes: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", _ordered(self.flags, _KEY_FLAG_ORDER, "key-spec flag"))

    def positions(self, argc: int) -> list[int] | None:
        """The argument positions holding keys, or None if ``argc`` cannot fit the spec."""
        first = self.index
        if first >= argc:
            return []
        if self.lastkey >= 0:
            last = first + self.lastkey
        elif not self.limit:
            last = argc + self.lastkey
        else:
            last = first + ((argc - first) // self.limit + self.lastkey)
        if last >= argc or last < first:
            return None
        return list(range(first, last + 1, self.keystep))


_NO_SUBCOMMANDS: Mapping[str, "CommandSpec"] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class CommandSpec:
    """One command (or subcommand) of the table.

    ``name`` is the full lower-case name Redis shows: ``get``, ``kv.put``, ``config|get``.
    ``acl`` lists the ACL categories given explicitly (as Redis's JSON ``acl_categories``);
    ``acl_categories`` adds the ones Redis derives from the flags (write → @write, readonly →
    @read, admin → @admin @dangerous, fast → @fast, otherwise @slow).
    """

    name: str
    arity: int
    summary: str
    since: str
    group: str
    complexity: str | None = None
    flags: tuple[str, ...] = ()
    acl: tuple[str, ...] = ()
    tips: tuple[str, ...] = ()
    key_specs: tuple[KeySpec, ...] = ()
    arguments: tuple[Arg, ...] = ()
    history: tuple[tuple[str, str], ...] = ()
    doc_flags: tuple[str, ...] = ()
    deprecated_since: str | None = None
    replaced_by: str | None = None
    #: lower-case subcommand name (``get``) -> spec (``config|get``); empty unless a container
    subcommands: Mapping[str, "CommandSpec"] = field(default_factory=lambda: _NO_SUBCOMMANDS)
    #: a container's HELP body: the lines between Redis's header and its ``HELP`` footer
    help: tuple[str, ...] = ()
    #: key positions for commands whose keys the key specs cannot pin down (movablekeys)
    getkeys: Callable[[Sequence[bytes]], list[int]] | None = None

    # derived in __post_init__
    acl_categories: tuple[str, ...] = field(init=False)
    first_key: int = field(init=False)
    last_key: int = field(init=False)
    key_step: int = field(init=False)

    def __post_init__(self) -> None:
        if self.name != self.name.lower():
            raise ValueError(f"command names are lower-case: {self.name!r}")
        if self.arity == 0:
            raise ValueError(f"{self.name}: arity 0 means nothing; use 1 or -1")
        flags = _ordered(self.flags, _FLAG_ORDER, "command flag")
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "doc_flags", _ordered(self.doc_flags, _DOC_FLAG_ORDER, "doc flag"))
        explicit = set(_ordered(self.acl, _ACL_ORDER, "ACL category"))
        if "write" in flags:
            explicit.add("write")
        if "readonly" in flags:
            explicit.add("read")
        if "admin" in flags:
            explicit |= {"admin", "dangerous"}
        if "pubsub" in flags:
            explicit.add("pubsub")
        if "fast" in flags:
            explicit.add("fast")
        if "fast" not in explicit:
            explicit.add("slow")
        object.__setattr__(self, "acl_categories", _ordered(explicit, _ACL_ORDER, "ACL category"))
        first = last = step = 0
        for spec in self.key_specs:  # Redis's "legacy range": the first index/range key spec
            first = spec.index
            last = spec.index + spec.lastkey if spec.lastkey >= 0 else spec.lastkey
            step = spec.keystep
            break
        object.__setattr__(self, "first_key", first)
        object.__setattr__(self, "last_key", last)
        object.__setattr__(self, "key_step", step)
        for arg in _walk(self.arguments):
            if arg.type == "key" and arg.key_spec_index >= len(self.key_specs):
                raise ValueError(f"{self.name}: argument {arg.name!r} points at key spec "
                                 f"{arg.key_spec_index}, which does not exist")

    @property
    def is_container(self) -> bool:
        return bool(self.subcommands)

    @property
    def parent(self) -> str | None:
        """The container's name for a subcommand (``config`` for ``config|get``)."""
        return self.name.split("|", 1)[0] if "|" in self.name else None

    @property
    def subcommand_name(self) -> str:
        """The last part of the name: ``get`` for ``config|get``, the name itself otherwise."""
        return self.name.rsplit("|", 1)[-1]

    @property
    def syntax(self) -> str:
        """The usage line, e.g. ``KV.GET key [TYPE <TEXT | JSON | BYTES>] ...``."""
        words = self.name.upper().split("|")
        return " ".join(words + [_syntax(a) for a in self.arguments])


def _walk(args: Iterable[Arg]):
    for arg in args:
        yield arg
        yield from _walk(arg.arguments)


def _syntax(arg: Arg) -> str:
    if arg.type == "pure-token":
        body = arg.token or ""
    elif arg.type == "oneof":
        body = "<" + " | ".join(_syntax(a) for a in arg.arguments) + ">"
    elif arg.type == "block":
        body = " ".join(_syntax(a) for a in arg.arguments)
    else:
        body = arg.display_text or arg.name
    lead = f"{arg.token} " if arg.token and arg.type != "pure-token" else ""
    if not arg.multiple:
        text = lead + body
    elif arg.multiple_token:
        text = f"{lead}{body} [{lead}{body} ...]"
    else:
        text = f"{lead}{body} [{body} ...]"
    return f"[{text}]" if arg.optional else text


# ---------------------------------------------------------------------------- building blocks


class A:
    """Argument constructors, so the table reads like Redis's JSON: ``A.key("key", 0)``."""

    @staticmethod
    def key(name: str, key_spec_index: int, **kw) -> Arg:
        return Arg(name, "key", key_spec_index=key_spec_index, **kw)

    @staticmethod
    def string(name: str, **kw) -> Arg:
        return Arg(name, "string", **kw)

    @staticmethod
    def integer(name: str, **kw) -> Arg:
        return Arg(name, "integer", **kw)

    @staticmethod
    def double(name: str, **kw) -> Arg:
        return Arg(name, "double", **kw)

    @staticmethod
    def pattern(name: str, **kw) -> Arg:
        return Arg(name, "pattern", **kw)

    @staticmethod
    def unix_time(name: str, **kw) -> Arg:
        return Arg(name, "unix-time", **kw)

    @staticmethod
    def token(name: str, token: str, **kw) -> Arg:
        return Arg(name, "pure-token", token=token, **kw)

    @staticmethod
    def oneof(name: str, *arguments: Arg, **kw) -> Arg:
        return Arg(name, "oneof", arguments=arguments, **kw)

    @staticmethod
    def block(name: str, *arguments: Arg, **kw) -> Arg:
        return Arg(name, "block", arguments=arguments, **kw)


def command(name: str, arity: int, **kw) -> CommandSpec:
    return CommandSpec(name, arity, **kw)


#: a subcommand; ``container()`` prefixes its name with the container's
sub = command


def container(name: str, *subcommands: CommandSpec, arity: int = -2, **kw) -> CommandSpec:
    """A container command: its subcommands become ``name|sub``."""
    subs = {}
    for spec in subcommands:
        short = spec.name
        if "|" in short:
            raise ValueError(f"{name}: subcommand {short!r} already has a container")
        subs[short] = replace(spec, name=f"{name}|{short}")
    return CommandSpec(name, arity, subcommands=MappingProxyType(subs), **kw)


def _kv_mget_keys(argv: Sequence[bytes]) -> list[int]:
    """KV.MGET's keys: every argument after the name but the trailing TYPE / WITHMETADATA."""
    end = len(argv)
    while end > 1:
        if argv[end - 1].lower() == b"withmetadata":
            end -= 1
        elif end > 2 and argv[end - 2].lower() == b"type":
            end -= 2
        else:
            break
    return list(range(1, end))


_HELP_LINES = ("HELP", "    Prints this help.")


# ---------------------------------------------------------------------------- the table

_TABLE: tuple[CommandSpec, ...] = (
    # ------------------------------------------------------------ connection
    command(
        "ping", -1,
        summary="Ping the server",
        since="1.0.0", group="connection",
        complexity="O(1)",
        flags=("fast",),
        acl=("connection",),
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
        arguments=(
            A.string("message", optional=True),
        ),
    ),

    command(
        "echo", 2,
        summary="Echo the given string",
        since="1.0.0", group="connection",
        complexity="O(1)",
        flags=("loading", "stale", "fast"),
        acl=("connection",),
        arguments=(
            A.string("message"),
        ),
    ),

    command(
        "quit", -1,
        summary="Close the connection",
        since="1.0.0", group="connection",
        complexity="O(1)",
        flags=("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        acl=("connection",),
    ),

    command(
        "reset", 1,
        summary="Reset the connection",
        since="6.2.0", group="connection",
        complexity="O(1)",
        flags=("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        acl=("connection",),
    ),

    command(
        "hello", -1,
        summary="Handshake with Redis",
        since="6.0.0", group="connection",
        complexity="O(1)",
        flags=("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        acl=("connection",),
        history=(
            ("6.2.0", (
                "`protover` made optional; when called without arguments the "
                "command reports the current connection's context."
            )),
        ),
        arguments=(
            A.block("arguments",
                A.integer("protover"),
                A.block("username_password",
                    A.string("username"),
                    A.string("password"),
                    token="AUTH", optional=True,
                ),
                A.string("clientname", token="SETNAME", optional=True),
                optional=True,
            ),
        ),
    ),

    command(
        "auth", -2,
        summary="Authenticate to the server",
        since="1.0.0", group="connection",
        complexity="O(N) where N is the number of passwords defined for the user",
        flags=("noscript", "loading", "stale", "fast", "no_auth", "allow_busy"),
        acl=("connection",),
        history=(
            ("6.0.0", "Added ACL style (username and password)."),
        ),
        arguments=(
            A.string("username", since="6.0.0", optional=True),
            A.string("password"),
        ),
    ),

    command(
        "select", 2,
        summary="Change the selected database for the current connection",
        since="1.0.0", group="connection",
        complexity="O(1)",
        flags=("loading", "stale", "fast"),
        acl=("connection",),
        arguments=(
            A.integer("index"),
        ),
    ),

    # ------------------------------------------------------------ transactions
    command(
        "multi", 1,
        summary="Mark the start of a transaction block",
        since="1.2.0", group="transactions",
        complexity="O(1)",
        flags=("noscript", "loading", "stale", "fast", "allow_busy"),
        acl=("transaction",),
    ),

    command(
        "exec", 1,
        summary="Execute all commands issued after MULTI",
        since="1.2.0", group="transactions",
        complexity="Depends on commands in the transaction",
        flags=("noscript", "loading", "stale", "skip_slowlog"),
        acl=("transaction",),
    ),

    command(
        "discard", 1,
        summary="Discard all commands issued after MULTI",
        since="2.0.0", group="transactions",
        complexity="O(N), when N is the number of queued commands",
        flags=("noscript", "loading", "stale", "fast", "allow_busy"),
        acl=("transaction",),
    ),

    command(
        "watch", -2,
        summary="Watch the given keys to determine execution of the MULTI/EXEC block",
        since="2.2.0", group="transactions",
        complexity="O(1) for every key.",
        flags=("noscript", "loading", "stale", "fast", "allow_busy"),
        acl=("transaction",),
        key_specs=(KeySpec(("RO",), lastkey=-1),),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    command(
        "unwatch", 1,
        summary="Forget about all watched keys",
        since="2.2.0", group="transactions",
        complexity="O(1)",
        flags=("noscript", "loading", "stale", "fast", "allow_busy"),
        acl=("transaction",),
    ),

    container(
        "client",
        sub(
            "id", 2,
            summary="Returns the client ID for the current connection",
            since="5.0.0", group="connection",
            complexity="O(1)",
            flags=("noscript", "loading", "stale"),
            acl=("connection",),
        ),

        sub(
            "setname", 3,
            summary="Set the current connection name",
            since="2.6.9", group="connection",
            complexity="O(1)",
            flags=("noscript", "loading", "stale"),
            acl=("connection",),
            arguments=(
                A.string("connection-name"),
            ),
        ),

        sub(
            "getname", 2,
            summary="Get the current connection name",
            since="2.6.9", group="connection",
            complexity="O(1)",
            flags=("noscript", "loading", "stale"),
            acl=("connection",),
        ),

        sub(
            "setinfo", 4,
            summary="Sets information specific to the client or connection.",
            since="7.2.0", group="connection",
            complexity="O(1)",
            flags=("noscript", "loading", "stale"),
            acl=("connection",),
            arguments=(
                A.oneof("attr",
                    A.string("libname", token="LIB-NAME"),
                    A.string("libver", token="LIB-VER"),
                ),
            ),
        ),

        sub(
            "list", -2,
            summary="Get the list of client connections",
            since="2.4.0", group="connection",
            complexity="O(N) where N is the number of client connections",
            flags=("admin", "noscript", "loading", "stale"),
            acl=("connection",),
            tips=("nondeterministic_output",),
            history=(
                ("2.8.12", "Added unique client `id` field."),
                ("5.0.0", "Added optional `TYPE` filter."),
                ("6.0.0", "Added `user` field."),
                ("6.2.0", (
                    "Added `argv-mem`, `tot-mem`, `laddr` and `redir` fields and "
                    "the optional `ID` filter."
                )),
                ("7.0.0", "Added `resp`, `multi-mem`, `rbs` and `rbp` fields."),
                ("7.0.3", "Added `ssub` field."),
                ("7.2.0", "Added `lib-name` and `lib-ver` fields."),
            ),
            arguments=(
                A.oneof("normal_master_replica_pubsub",
                    A.token("normal", "NORMAL"),
                    A.token("master", "MASTER"),
                    A.token("replica", "REPLICA"),
                    A.token("pubsub", "PUBSUB"),
                    token="TYPE", since="5.0.0", optional=True,
                ),
                A.block("id",
                    A.integer("client-id", multiple=True),
                    token="ID", since="6.2.0", optional=True,
                ),
            ),
        ),

        sub(
            "info", 2,
            summary="Returns information about the current client connection.",
            since="6.2.0", group="connection",
            complexity="O(1)",
            flags=("noscript", "loading", "stale"),
            acl=("connection",),
            tips=("nondeterministic_output",),
        ),

        sub(
            "kill", -3,
            summary="Kill the connection of a client",
            since="2.4.0", group="connection",
            complexity="O(N) where N is the number of client connections",
            flags=("admin", "noscript", "loading", "stale"),
            acl=("connection",),
            history=(
                ("2.8.12", "Added new filter format."),
                ("2.8.12", "`ID` option."),
                ("3.2.0", "Added `master` type in for `TYPE` option."),
                ("5.0.0", (
                    "Replaced `slave` `TYPE` with `replica`. `slave` still "
                    "supported for backward compatibility."
                )),
                ("6.2.0", "`LADDR` option."),
            ),
            arguments=(
                A.oneof("filter",
                    A.string("ip:port", deprecated_since="2.8.12"),
                    A.oneof("new-format",
                        A.integer("client-id", token="ID", since="2.8.12", optional=True),
                        A.oneof("normal_master_slave_pubsub",
                            A.token("normal", "NORMAL"),
                            A.token("master", "MASTER", since="3.2.0"),
                            A.token("slave", "SLAVE"),
                            A.token("replica", "REPLICA", since="5.0.0"),
                            A.token("pubsub", "PUBSUB"),
                            token="TYPE", since="2.8.12", optional=True,
                        ),
                        A.string("username", token="USER", optional=True),
                        A.string("ip:port", token="ADDR", optional=True),
                        A.string("ip:port", token="LADDR", since="6.2.0", optional=True),
                        A.string("yes/no", token="SKIPME", optional=True),
                        multiple=True,
                    ),
                ),
            ),
        ),

        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="5.0.0", group="connection",
            complexity="O(1)",
            flags=("loading", "stale"),
            acl=("connection",),
        ),
        summary="A container for client connection commands",
        since="2.4.0", group="connection",
        complexity="Depends on subcommand.",
        help=(
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are:",
            "    * ADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made from the specified address",
            "    * LADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made to specified local address",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Kill connections by type.",
            "    * USER <username>",
            "      Kill connections authenticated by <username>.",
            "    * SKIPME (YES|NO)",
            "      Skip killing current connection (default: yes).",
            "LIST [options ...]",
            "    Return information about client connections. Options:",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Return clients of specified type.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are:",
            "    * LIB-NAME: the client lib name.",
            "    * LIB-VER: the client lib version.",
        ),
    ),

    # ------------------------------------------------------------ server
    command(
        "info", -1,
        summary="Get information and statistics about the server",
        since="1.0.0", group="server",
        complexity="O(1)",
        flags=("loading", "stale"),
        acl=("dangerous",),
        tips=("nondeterministic_output", "request_policy:all_shards", "response_policy:special"),
        history=(
            ("7.0.0", "Added support for taking multiple section arguments."),
        ),
        arguments=(
            A.string("section", optional=True, multiple=True),
        ),
    ),

    command(
        "dbsize", 1,
        summary="Return the number of keys in the selected database",
        since="1.0.0", group="server",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        tips=("request_policy:all_shards", "response_policy:agg_sum"),
    ),

    command(
        "time", 1,
        summary="Return the current server time",
        since="2.6.0", group="server",
        complexity="O(1)",
        flags=("loading", "stale", "fast"),
        tips=("nondeterministic_output",),
    ),

    command(
        "flushdb", -1,
        summary="Remove all keys from the current database",
        since="1.0.0", group="server",
        complexity="O(N) where N is the number of keys in the selected database",
        flags=("write",),
        acl=("keyspace", "dangerous"),
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
        history=(
            ("4.0.0", "Added the `ASYNC` flushing mode modifier."),
            ("6.2.0", "Added the `SYNC` flushing mode modifier."),
        ),
        arguments=(
            A.oneof("async",
                A.token("async", "ASYNC", since="4.0.0"),
                A.token("sync", "SYNC", since="6.2.0"),
                optional=True,
            ),
        ),
    ),

    command(
        "flushall", -1,
        summary="Remove all keys from all databases",
        since="1.0.0", group="server",
        complexity="O(N) where N is the total number of keys in all databases",
        flags=("write",),
        acl=("keyspace", "dangerous"),
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
        history=(
            ("4.0.0", "Added the `ASYNC` flushing mode modifier."),
            ("6.2.0", "Added the `SYNC` flushing mode modifier."),
        ),
        arguments=(
            A.oneof("async",
                A.token("async", "ASYNC", since="4.0.0"),
                A.token("sync", "SYNC", since="6.2.0"),
                optional=True,
            ),
        ),
    ),

    command(
        "shutdown", -1,
        summary="Synchronously save the dataset to disk and then shut down the server",
        since="1.0.0", group="server",
        complexity=(
            "O(N) when saving, where N is the total number of keys in all databases "
            "when saving data, otherwise O(1)"
        ),
        flags=("admin", "noscript", "loading", "stale", "no_multi", "allow_busy"),
        history=(
            ("7.0.0", "Added the `NOW`, `FORCE` and `ABORT` modifiers."),
        ),
        arguments=(
            A.oneof("nosave_save",
                A.token("nosave", "NOSAVE"),
                A.token("save", "SAVE"),
                optional=True,
            ),
            A.token("now", "NOW", since="7.0.0", optional=True),
            A.token("force", "FORCE", since="7.0.0", optional=True),
            A.token("abort", "ABORT", since="7.0.0", optional=True),
        ),
    ),

    command(
        "save", 1,
        summary="Synchronously save the dataset to disk",
        since="1.0.0", group="server",
        complexity="O(N) where N is the total number of keys in all databases",
        flags=("admin", "noscript", "no_async_loading", "no_multi"),
    ),

    command(
        "bgsave", -1,
        summary="Asynchronously save the dataset to disk",
        since="1.0.0", group="server",
        complexity="O(1)",
        flags=("admin", "noscript", "no_async_loading"),
        history=(
            ("3.2.2", "Added the `SCHEDULE` option."),
        ),
        arguments=(
            A.token("schedule", "SCHEDULE", since="3.2.2", optional=True),
        ),
    ),

    command(
        "bgrewriteaof", 1,
        summary="Asynchronously rewrite the append-only file",
        since="1.0.0", group="server",
        complexity="O(1)",
        flags=("admin", "noscript", "no_async_loading"),
    ),

    command(
        "lastsave", 1,
        summary="Get the UNIX time stamp of the last successful save to disk",
        since="1.0.0", group="server",
        complexity="O(1)",
        flags=("loading", "stale", "fast"),
        acl=("admin", "dangerous"),
        tips=("nondeterministic_output",),
    ),

    container(
        "config",
        sub(
            "get", -3,
            summary="Get the values of configuration parameters",
            since="2.0.0", group="server",
            complexity="O(N) when N is the number of configuration parameters provided",
            flags=("admin", "noscript", "loading", "stale"),
            history=(
                ("7.0.0", (
                    "Added the ability to pass multiple pattern parameters in one"
                    " call"
                )),
            ),
            arguments=(
                A.block("parameter",
                    A.string("parameter"),
                    multiple=True,
                ),
            ),
        ),

        sub(
            "set", -4,
            summary="Set configuration parameters to the given values",
            since="2.0.0", group="server",
            complexity="O(N) when N is the number of configuration parameters provided",
            flags=("admin", "noscript", "loading", "stale"),
            tips=("request_policy:all_nodes", "response_policy:all_succeeded"),
            history=(
                ("7.0.0", "Added the ability to set multiple parameters in one call."),
            ),
            arguments=(
                A.block("parameter_value",
                    A.string("parameter"),
                    A.string("value"),
                    multiple=True,
                ),
            ),
        ),

        sub(
            "resetstat", 2,
            summary="Reset the stats returned by INFO",
            since="2.0.0", group="server",
            complexity="O(1)",
            flags=("admin", "noscript", "loading", "stale"),
        ),

        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="5.0.0", group="server",
            complexity="O(1)",
            flags=("loading", "stale"),
        ),
        summary="A container for server configuration commands",
        since="2.0.0", group="server",
        complexity="Depends on subcommand.",
        help=(
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
        ),
    ),

    container(
        "command",
        sub(
            "count", 2,
            summary="Get total number of Redis commands",
            since="2.8.13", group="server",
            complexity="O(1)",
            flags=("loading", "stale"),
            acl=("connection",),
        ),

        sub(
            "info", -2,
            summary=(
                "Get array of specific Redis command details, or all when no argument is "
                "given."
            ),
            since="2.8.13", group="server",
            complexity="O(N) where N is the number of commands to look up",
            flags=("loading", "stale"),
            acl=("connection",),
            tips=("nondeterministic_output_order",),
            history=(
                ("7.0.0", (
                    "Allowed to be called with no argument to get info on all "
                    "commands."
                )),
            ),
            arguments=(
                A.string("command-name", optional=True, multiple=True),
            ),
        ),

        sub(
            "docs", -2,
            summary="Get array of specific Redis command documentation",
            since="7.0.0", group="server",
            complexity="O(N) where N is the number of commands to look up",
            flags=("loading", "stale"),
            acl=("connection",),
            tips=("nondeterministic_output_order",),
            arguments=(
                A.string("command-name", optional=True, multiple=True),
            ),
        ),

        sub(
            "list", -2,
            summary="Get an array of Redis command names",
            since="7.0.0", group="server",
            complexity="O(N) where N is the total number of Redis commands",
            flags=("loading", "stale"),
            acl=("connection",),
            tips=("nondeterministic_output_order",),
            arguments=(
                A.oneof("filterby",
                    A.string("module-name", token="MODULE"),
                    A.string("category", token="ACLCAT"),
                    A.pattern("pattern", token="PATTERN"),
                    token="FILTERBY", optional=True,
                ),
            ),
        ),

        sub(
            "getkeys", -4,
            summary="Extract keys given a full Redis command",
            since="2.8.13", group="server",
            complexity="O(N) where N is the number of arguments to the command",
            flags=("loading", "stale"),
            acl=("connection",),
        ),

        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="5.0.0", group="server",
            complexity="O(1)",
            flags=("loading", "stale"),
            acl=("connection",),
        ),
        arity=-1,
        summary="Get array of Redis command details",
        since="2.8.13", group="server",
        complexity="O(N) where N is the total number of Redis commands",
        flags=("loading", "stale"),
        acl=("connection",),
        tips=("nondeterministic_output_order",),
        help=(
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
        ),
    ),

    container(
        "memory",
        sub(
            "doctor", 2,
            summary="Outputs memory problems report",
            since="4.0.0", group="server",
            complexity="O(1)",
            tips=("nondeterministic_output", "request_policy:all_shards",
                  "response_policy:special"),
        ),

        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="4.0.0", group="server",
            complexity="O(1)",
            flags=("loading", "stale"),
        ),

        sub(
            "malloc-stats", 2,
            summary="Show allocator internal stats",
            since="4.0.0", group="server",
            complexity="Depends on how much memory is allocated, could be slow",
            tips=("nondeterministic_output", "request_policy:all_shards",
                  "response_policy:special"),
        ),

        sub(
            "purge", 2,
            summary="Ask the allocator to release memory",
            since="4.0.0", group="server",
            complexity="Depends on how much memory is allocated, could be slow",
            tips=("request_policy:all_shards", "response_policy:all_succeeded"),
        ),

        sub(
            "stats", 2,
            summary="Show memory usage details",
            since="4.0.0", group="server",
            complexity="O(1)",
            tips=("nondeterministic_output", "request_policy:all_shards",
                  "response_policy:special"),
        ),

        sub(
            "usage", -3,
            summary="Estimate the memory usage of a key",
            since="4.0.0", group="server",
            complexity="O(N) where N is the number of samples.",
            flags=("readonly",),
            key_specs=(KeySpec(("RO",), index=2),),
            arguments=(
                A.key("key", 0),
                A.integer("count", token="SAMPLES", optional=True),
            ),
        ),
        summary="A container for memory diagnostics commands",
        since="4.0.0", group="server",
        complexity="Depends on subcommand.",
        help=(
            "DOCTOR",
            "    Return memory problems reports.",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "STATS",
            "    Return information about the memory usage of the server.",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ),
    ),

    # ------------------------------------------------------------ keys and strings
    command(
        "get", 2,
        summary="Get the value of a key",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RO", "access")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "set", -3,
        summary="Set the string value of a key",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom"),
        acl=("string",),
        key_specs=(
        KeySpec(("RW", "access", "update", "variable_flags"),
                notes="RW and ACCESS due to the optional `GET` argument"),
    ),
        history=(
            ("2.6.12", "Added the `EX`, `PX`, `NX` and `XX` options."),
            ("6.0.0", "Added the `KEEPTTL` option."),
            ("6.2.0", "Added the `GET`, `EXAT` and `PXAT` option."),
            ("7.0.0", "Allowed the `NX` and `GET` options to be used together."),
        ),
        arguments=(
            A.key("key", 0),
            A.string("value"),
            A.oneof("condition",
                A.token("nx", "NX"),
                A.token("xx", "XX"),
                since="2.6.12", optional=True,
            ),
            A.token("get", "GET", since="6.2.0", optional=True),
            A.oneof("expiration",
                A.integer("seconds", token="EX", since="2.6.12"),
                A.integer("milliseconds", token="PX", since="2.6.12"),
                A.unix_time("unix-time-seconds", token="EXAT", since="6.2.0"),
                A.unix_time("unix-time-milliseconds", token="PXAT", since="6.2.0"),
                A.token("keepttl", "KEEPTTL", since="6.0.0"),
                optional=True,
            ),
        ),
    ),

    command(
        "setnx", 3,
        summary="Set the value of a key, only if the key does not exist",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("OW", "insert")),),
        arguments=(
            A.key("key", 0),
            A.string("value"),
        ),
    ),

    command(
        "setex", 4,
        summary="Set the value and expiration of a key",
        since="2.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom"),
        acl=("string",),
        key_specs=(KeySpec(("OW", "update")),),
        arguments=(
            A.key("key", 0),
            A.integer("seconds"),
            A.string("value"),
        ),
    ),

    command(
        "psetex", 4,
        summary="Set the value and expiration in milliseconds of a key",
        since="2.6.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom"),
        acl=("string",),
        key_specs=(KeySpec(("OW", "update")),),
        arguments=(
            A.key("key", 0),
            A.integer("milliseconds"),
            A.string("value"),
        ),
    ),

    command(
        "getset", 3,
        summary="Set the string value of a key and return its old value",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "update")),),
        doc_flags=("deprecated",),
        deprecated_since="6.2.0",
        replaced_by="`SET` with the `!GET` argument",
        arguments=(
            A.key("key", 0),
            A.string("value"),
        ),
    ),

    command(
        "getdel", 2,
        summary="Get the value of a key and delete the key",
        since="6.2.0", group="string",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "delete")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "getex", -2,
        summary="Get the value of a key and optionally set its expiration",
        since="6.2.0", group="string",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("string",),
        key_specs=(
        KeySpec(("RW", "access", "update"), notes="RW and UPDATE because it changes the TTL"),
    ),
        arguments=(
            A.key("key", 0),
            A.oneof("expiration",
                A.integer("seconds", token="EX"),
                A.integer("milliseconds", token="PX"),
                A.unix_time("unix-time-seconds", token="EXAT"),
                A.unix_time("unix-time-milliseconds", token="PXAT"),
                A.token("persist", "PERSIST"),
                optional=True,
            ),
        ),
    ),

    command(
        "mget", -2,
        summary="Get the values of all the given keys",
        since="1.0.0", group="string",
        complexity="O(N) where N is the number of keys to retrieve.",
        flags=("readonly", "fast"),
        acl=("string",),
        tips=("request_policy:multi_shard",),
        key_specs=(KeySpec(("RO", "access"), lastkey=-1),),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    command(
        "mset", -3,
        summary="Set multiple keys to multiple values",
        since="1.0.1", group="string",
        complexity="O(N) where N is the number of keys to set.",
        flags=("write", "denyoom"),
        acl=("string",),
        tips=("request_policy:multi_shard", "response_policy:all_succeeded"),
        key_specs=(KeySpec(("OW", "update"), lastkey=-1, keystep=2),),
        arguments=(
            A.block("key_value",
                A.key("key", 0),
                A.string("value"),
                multiple=True,
            ),
        ),
    ),

    command(
        "msetnx", -3,
        summary="Set multiple keys to multiple values, only if none of the keys exist",
        since="1.0.1", group="string",
        complexity="O(N) where N is the number of keys to set.",
        flags=("write", "denyoom"),
        acl=("string",),
        tips=("request_policy:multi_shard", "response_policy:agg_min"),
        key_specs=(KeySpec(("OW", "insert"), lastkey=-1, keystep=2),),
        arguments=(
            A.block("key_value",
                A.key("key", 0),
                A.string("value"),
                multiple=True,
            ),
        ),
    ),

    command(
        "del", -2,
        summary="Delete a key",
        since="1.0.0", group="generic",
        complexity=(
            "O(N) where N is the number of keys that will be removed. When a key to "
            "remove holds a value other than a string, the individual complexity for "
            "this key is O(M) where M is the number of elements in the list, set, "
            "sorted set or hash. Removing a single key that holds a string value is "
            "O(1)."
        ),
        flags=("write",),
        acl=("keyspace",),
        tips=("request_policy:multi_shard", "response_policy:agg_sum"),
        key_specs=(KeySpec(("RM", "delete"), lastkey=-1),),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    command(
        "unlink", -2,
        summary=(
            "Delete a key asynchronously in another thread. Otherwise it is just as "
            "DEL, but non blocking."
        ),
        since="4.0.0", group="generic",
        complexity=(
            "O(1) for each key removed regardless of its size. Then the command does "
            "O(N) work in a different thread in order to reclaim memory, where N is "
            "the number of allocations the deleted objects where composed of."
        ),
        flags=("write", "fast"),
        acl=("keyspace",),
        tips=("request_policy:multi_shard", "response_policy:agg_sum"),
        key_specs=(KeySpec(("RM", "delete"), lastkey=-1),),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    command(
        "exists", -2,
        summary="Determine if a key exists",
        since="1.0.0", group="generic",
        complexity="O(N) where N is the number of keys to check.",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        tips=("request_policy:multi_shard", "response_policy:agg_sum"),
        key_specs=(KeySpec(("RO",), lastkey=-1),),
        history=(
            ("3.0.3", "Accepts multiple `key` arguments."),
        ),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    command(
        "type", 2,
        summary="Determine the type stored at key",
        since="1.0.0", group="generic",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RO",)),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "strlen", 2,
        summary="Get the length of the value stored in a key",
        since="2.2.0", group="string",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RO",)),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "append", 3,
        summary="Append a value to a key",
        since="2.0.0", group="string",
        complexity=(
            "O(1). The amortized time complexity is O(1) assuming the appended value "
            "is small and the already present value is of any size, since the dynamic"
            " string library used by Redis will double the free space available on "
            "every reallocation."
        ),
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "insert")),),
        arguments=(
            A.key("key", 0),
            A.string("value"),
        ),
    ),

    command(
        "incr", 2,
        summary="Increment the integer value of a key by one",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "update")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "incrby", 3,
        summary="Increment the integer value of a key by the given amount",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "update")),),
        arguments=(
            A.key("key", 0),
            A.integer("increment"),
        ),
    ),

    command(
        "decr", 2,
        summary="Decrement the integer value of a key by one",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "update")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "decrby", 3,
        summary="Decrement the integer value of a key by the given number",
        since="1.0.0", group="string",
        complexity="O(1)",
        flags=("write", "denyoom", "fast"),
        acl=("string",),
        key_specs=(KeySpec(("RW", "access", "update")),),
        arguments=(
            A.key("key", 0),
            A.integer("decrement"),
        ),
    ),

    command(
        "ttl", 2,
        summary="Get the time to live for a key in seconds",
        since="1.0.0", group="generic",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        tips=("nondeterministic_output",),
        key_specs=(KeySpec(("RO", "access")),),
        history=(
            ("2.8.0", "Added the -2 reply."),
        ),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "pttl", 2,
        summary="Get the time to live for a key in milliseconds",
        since="2.6.0", group="generic",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        tips=("nondeterministic_output",),
        key_specs=(KeySpec(("RO", "access")),),
        history=(
            ("2.8.0", "Added the -2 reply."),
        ),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "expire", -3,
        summary="Set a key's time to live in seconds",
        since="1.0.0", group="generic",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RW", "update")),),
        history=(
            ("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`."),
        ),
        arguments=(
            A.key("key", 0),
            A.integer("seconds"),
            A.oneof("condition",
                A.token("nx", "NX"),
                A.token("xx", "XX"),
                A.token("gt", "GT"),
                A.token("lt", "LT"),
                since="7.0.0", optional=True,
            ),
        ),
    ),

    command(
        "pexpire", -3,
        summary="Set a key's time to live in milliseconds",
        since="2.6.0", group="generic",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RW", "update")),),
        history=(
            ("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`."),
        ),
        arguments=(
            A.key("key", 0),
            A.integer("milliseconds"),
            A.oneof("condition",
                A.token("nx", "NX"),
                A.token("xx", "XX"),
                A.token("gt", "GT"),
                A.token("lt", "LT"),
                since="7.0.0", optional=True,
            ),
        ),
    ),

    command(
        "expireat", -3,
        summary="Set the expiration for a key as a UNIX timestamp",
        since="1.2.0", group="generic",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RW", "update")),),
        history=(
            ("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`."),
        ),
        arguments=(
            A.key("key", 0),
            A.unix_time("unix-time-seconds"),
            A.oneof("condition",
                A.token("nx", "NX"),
                A.token("xx", "XX"),
                A.token("gt", "GT"),
                A.token("lt", "LT"),
                since="7.0.0", optional=True,
            ),
        ),
    ),

    command(
        "pexpireat", -3,
        summary=(
            "Set the expiration for a key as a UNIX timestamp specified in "
            "milliseconds"
        ),
        since="2.6.0", group="generic",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RW", "update")),),
        history=(
            ("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`."),
        ),
        arguments=(
            A.key("key", 0),
            A.unix_time("unix-time-milliseconds"),
            A.oneof("condition",
                A.token("nx", "NX"),
                A.token("xx", "XX"),
                A.token("gt", "GT"),
                A.token("lt", "LT"),
                since="7.0.0", optional=True,
            ),
        ),
    ),

    command(
        "expiretime", 2,
        summary="Get the expiration Unix timestamp for a key",
        since="7.0.0", group="generic",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RO", "access")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "pexpiretime", 2,
        summary="Get the expiration Unix timestamp for a key in milliseconds",
        since="7.0.0", group="generic",
        complexity="O(1)",
        flags=("readonly", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RO", "access")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "persist", 2,
        summary="Remove the expiration from a key",
        since="2.2.0", group="generic",
        complexity="O(1)",
        flags=("write", "fast"),
        acl=("keyspace",),
        key_specs=(KeySpec(("RW", "update")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "keys", 2,
        summary="Find all keys matching the given pattern",
        since="1.0.0", group="generic",
        complexity=(
            "O(N) with N being the number of keys in the database, under the "
            "assumption that the key names in the database and the given pattern have"
            " limited length."
        ),
        flags=("readonly",),
        acl=("keyspace", "dangerous"),
        tips=("request_policy:all_shards", "nondeterministic_output_order"),
        arguments=(
            A.pattern("pattern"),
        ),
    ),

    command(
        "scan", -2,
        summary="Incrementally iterate the keys space",
        since="2.8.0", group="generic",
        complexity=(
            "O(1) for every call. O(N) for a complete iteration, including enough "
            "command calls for the cursor to return back to 0. N is the number of "
            "elements inside the collection."
        ),
        flags=("readonly",),
        acl=("keyspace",),
        tips=("nondeterministic_output", "request_policy:special"),
        history=(
            ("6.0.0", "Added the `TYPE` subcommand."),
        ),
        arguments=(
            A.integer("cursor"),
            A.pattern("pattern", token="MATCH", optional=True),
            A.integer("count", token="COUNT", optional=True),
            A.string("type", token="TYPE", since="6.0.0", optional=True),
        ),
    ),

    # ------------------------------------------------------------ edgekv: Workers KV (group kv)
    command(
        "kv.put", -3,
        summary=(
            "Writes a value to a key of the current namespace, with optional "
            "expiration and JSON metadata, as Workers KV put() does."
        ),
        since="1.0.0", group="kv",
        complexity="O(1) plus the size of the value",
        flags=("write", "denyoom"),
        acl=("string",),
        key_specs=(KeySpec(("OW", "update")),),
        arguments=(
            A.key("key", 0),
            A.string("value"),
            A.unix_time("expiration", token="EXPIRATION", display="unix-seconds",
                        summary="Absolute expiration, in seconds since the Unix epoch.",
                        optional=True),
            A.integer("expiration-ttl", token="EXPIRATION_TTL", display="seconds",
                      summary="Expiration relative to now, in seconds.", optional=True),
            A.string("metadata", token="METADATA", display="json",
                     summary="A JSON value stored with the key and returned with it.",
                     optional=True),
        ),
    ),

    command(
        "kv.get", -2,
        summary=(
            "Returns the value of a key of the current namespace, optionally with its "
            "metadata, as Workers KV get() / getWithMetadata() do."
        ),
        since="1.0.0", group="kv",
        complexity="O(1) plus the size of the value",
        flags=("readonly",),
        acl=("string",),
        key_specs=(KeySpec(("RO", "access")),),
        arguments=(
            A.key("key", 0),
            A.oneof("type",
                A.token("text", "TEXT"),
                A.token("json", "JSON"),
                A.token("bytes", "BYTES"),
                token="TYPE", summary="How to read the value (default: text).",
                optional=True,
            ),
            A.integer("cache-ttl", token="CACHETTL", display="seconds",
                      summary="How long an edge may cache the value, in seconds.",
                      optional=True),
            A.token("withmetadata", "WITHMETADATA",
                    summary="Reply with a map of value, metadata and expiration.",
                    optional=True),
        ),
    ),

    command(
        "kv.mget", -2,
        summary=(
            "Returns the values of up to 100 keys of the current namespace, as Workers "
            "KV get() with an array of keys does."
        ),
        since="1.0.0", group="kv",
        complexity="O(N) where N is the number of keys to retrieve.",
        flags=("readonly", "movablekeys"),
        acl=("string",),
        key_specs=(KeySpec(("RO", "access"), lastkey=-1,
                           notes="The trailing TYPE and WITHMETADATA options are not keys"),),
        getkeys=_kv_mget_keys,
        arguments=(
            A.key("key", 0, multiple=True),
            A.oneof("type",
                A.token("text", "TEXT"),
                A.token("json", "JSON"),
                token="TYPE", summary="How to read the values (default: text).",
                optional=True,
            ),
            A.token("withmetadata", "WITHMETADATA",
                    summary="Give each key a map of value and metadata.", optional=True),
        ),
    ),

    command(
        "kv.del", 2,
        summary="Deletes a key of the current namespace, as Workers KV delete() does.",
        since="1.0.0", group="kv",
        complexity="O(1)",
        flags=("write",),
        acl=("keyspace",),
        key_specs=(KeySpec(("RM", "delete")),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "kv.list", -1,
        summary=(
            "Lists the keys of the current namespace in lexicographic order, a page "
            "at a time, as Workers KV list() does."
        ),
        since="1.0.0", group="kv",
        complexity=(
            "O(log(N)+M) where N is the number of keys in the namespace and M the "
            "number of keys returned."
        ),
        flags=("readonly",),
        acl=("keyspace",),
        arguments=(
            A.string("prefix", token="PREFIX",
                     summary="Only keys that start with this prefix.", optional=True),
            A.integer("limit", token="LIMIT", display="count",
                      summary="Keys per page, at most 1000 (the default).", optional=True),
            A.string("cursor", token="CURSOR",
                     summary="Where the previous page ended.", optional=True),
        ),
    ),

    command(
        "kv.metadata", 2,
        summary="Returns the JSON metadata of a key of the current namespace.",
        since="1.0.0", group="kv",
        complexity="O(1)",
        flags=("readonly",),
        acl=("keyspace",),
        key_specs=(KeySpec(("RO",)),),
        arguments=(
            A.key("key", 0),
        ),
    ),

    command(
        "kv.bulkput", 2,
        summary=(
            "Writes many keys of the current namespace at once from a JSON array of "
            "{key, value, expiration, expiration_ttl, metadata, base64} objects."
        ),
        since="1.0.0", group="kv",
        complexity="O(N) where N is the number of keys to write.",
        flags=("write", "denyoom"),
        acl=("string",),
        arguments=(
            A.string("json-array"),
        ),
    ),

    command(
        "kv.bulkdel", -2,
        summary="Deletes many keys of the current namespace at once.",
        since="1.0.0", group="kv",
        complexity="O(N) where N is the number of keys to delete.",
        flags=("write",),
        acl=("keyspace",),
        key_specs=(KeySpec(("RM", "delete"), lastkey=-1),),
        arguments=(
            A.key("key", 0, multiple=True),
        ),
    ),

    container(
        "kv.namespace",
        sub(
            "create", 3,
            summary="Creates a namespace with the given title and returns it.",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("write", "denyoom", "admin", "noscript"),
            acl=("keyspace",),
            arguments=(
                A.string("title"),
            ),
        ),
        sub(
            "list", 2,
            summary="Lists the namespaces.",
            since="1.0.0", group="kv",
            complexity="O(N) where N is the number of namespaces.",
            flags=("readonly",),
            acl=("keyspace",),
        ),
        sub(
            "get", 3,
            summary="Returns a namespace by its id.",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("readonly",),
            acl=("keyspace",),
            arguments=(
                A.string("id"),
            ),
        ),
        sub(
            "rename", 4,
            summary="Changes the title of a namespace.",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("write", "admin", "noscript"),
            acl=("keyspace",),
            arguments=(
                A.string("id"),
                A.string("title"),
            ),
        ),
        sub(
            "delete", 3,
            summary="Deletes a namespace and all of its keys.",
            since="1.0.0", group="kv",
            complexity="O(N) where N is the number of keys in the namespace.",
            flags=("write", "admin", "noscript"),
            acl=("keyspace",),
            arguments=(
                A.string("id"),
            ),
        ),
        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("loading", "stale"),
        ),
        summary="A container for namespace management commands, as the Workers KV API has.",
        since="1.0.0", group="kv",
        complexity="Depends on subcommand.",
        help=(
            "CREATE <title>",
            "    Create a namespace titled <title>; reply with its id and title.",
            "LIST",
            "    List the namespaces.",
            "GET <id>",
            "    Return the namespace <id>.",
            "RENAME <id> <title>",
            "    Change the title of namespace <id> to <title>.",
            "DELETE <id>",
            "    Delete namespace <id> and all of its keys.",
        ),
    ),

    command(
        "kv.compact", 1,
        summary=(
            "Rewrites the storage segments to reclaim the space of overwritten, "
            "deleted and expired values, re-encrypting older records with the active key."
        ),
        since="1.0.0", group="kv",
        complexity="O(N) where N is the size of the stored data.",
        flags=("admin", "noscript"),
    ),

    container(
        "kv.keyring",
        sub(
            "status", 2,
            summary=(
                "Reports the encryption settings and, per key id, the live records and "
                "segments that still use it."
            ),
            since="1.0.0", group="kv",
            complexity="O(N) where N is the number of segments.",
            flags=("admin", "noscript", "loading", "stale"),
        ),
        sub(
            "rotate", 2,
            summary="Adds a new encryption key and uses it for every new write; returns its id.",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("admin", "noscript"),
        ),
        sub(
            "retire", 3,
            summary="Removes a key that no stored record uses any more from the key ring.",
            since="1.0.0", group="kv",
            complexity="O(N) where N is the number of segments.",
            flags=("admin", "noscript"),
            arguments=(
                A.integer("id"),
            ),
        ),
        sub(
            "help", 2,
            summary="Show helpful text about the different subcommands",
            since="1.0.0", group="kv",
            complexity="O(1)",
            flags=("loading", "stale"),
        ),
        summary="A container for encryption key management commands.",
        since="1.0.0", group="kv",
        complexity="Depends on subcommand.",
        help=(
            "STATUS",
            "    Show the encryption settings and which key ids stored data still uses.",
            "ROTATE",
            "    Add a new key for all new writes; KV.COMPACT then rewrites older data with it.",
            "RETIRE <id>",
            "    Drop key <id> from the key ring once no stored data uses it.",
        ),
    ),
)


#: lower-case name -> spec, in table order; containers hold ``.subcommands``
COMMANDS: Mapping[str, CommandSpec] = MappingProxyType({spec.name: spec for spec in _TABLE})
if len(COMMANDS) != len(_TABLE):  # pragma: no cover - a duplicated entry in the table
    raise ValueError("the command table names a command twice")

# Per-request lookups: the lower-case and the upper-case spelling as bytes, so the common
# cases need one dict probe and no .lower().
_BY_BYTES: dict[bytes, CommandSpec] = {}
_SUBS_BY_BYTES: dict[str, dict[bytes, CommandSpec]] = {}
for _spec in _TABLE:
    _BY_BYTES[_spec.name.encode()] = _spec
    _BY_BYTES[_spec.name.upper().encode()] = _spec
    if _spec.subcommands:
        _subs: dict[bytes, CommandSpec] = {}
        for _short, _sub in _spec.subcommands.items():
            _subs[_short.encode()] = _sub
            _subs[_short.upper().encode()] = _sub
        _SUBS_BY_BYTES[_spec.name] = _subs
del _spec


class CommandTableError(ValueError):
    """A Redis error reply computed from the table; ``str(exc)`` is the full text."""


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


# ---------------------------------------------------------------------------- lookups


def lookup(name: bytes | str) -> CommandSpec | None:
    """The top-level command called ``name`` (any case), or None.  Never a subcommand."""
    if isinstance(name, str):
        name = _as_bytes(name)
    spec = _BY_BYTES.get(name)
    if spec is None:
        spec = _BY_BYTES.get(name.lower())
    return spec


def lookup_subcommand(spec: CommandSpec, sub: bytes | str) -> CommandSpec | None:
    """The subcommand ``sub`` (any case) of the container ``spec``, or None."""
    subs = _SUBS_BY_BYTES.get(spec.name)
    if subs is None:
        return None
    if isinstance(sub, str):
        sub = _as_bytes(sub)
    found = subs.get(sub)
    if found is None:
        found = subs.get(sub.lower())
    return found


def lookup_fullname(name: bytes | str) -> CommandSpec | None:
    """A command by the full name COMMAND INFO/DOCS take: ``get`` or ``config|get``."""
    name = _as_bytes(name)
    spec = lookup(name)
    if spec is None and b"|" in name:
        head, _, tail = name.partition(b"|")
        container_spec = lookup(head)
        if container_spec is not None and b"|" not in tail:
            spec = lookup_subcommand(container_spec, tail)
    return spec


def resolve(argv: Sequence[bytes]) -> CommandSpec | None:
    """The spec a request runs, as Redis's lookupCommand: a container's subcommand when one
    is given (None if it does not exist), else the command itself."""
    if not argv:
        return None
    spec = lookup(argv[0])
    if spec is None or not spec.subcommands or len(argv) < 2:
        return spec
    return lookup_subcommand(spec, argv[1])


def arity_ok(spec: CommandSpec, argc: int) -> bool:
    """Whether ``argc`` arguments (the command name included) fit the spec's arity."""
    arity = spec.arity
    return argc == arity if arity > 0 else argc >= -arity


# ---------------------------------------------------------------------------- error texts


def _c_string(arg: bytes, limit: int) -> bytes:
    """What C's ``%.{limit}s`` prints of an argument: up to a NUL, at most ``limit`` bytes."""
    end = arg.find(b"\0")
    if end >= 0:
        arg = arg[:end]
    return arg[:max(limit, 0)]


def _error_text(raw: bytes) -> str:
    # Redis replaces CR and LF in error texts with spaces, so the reply stays one line.  The
    # client's bytes go back as they came (Redis echoes them raw): decoded with
    # surrogateescape, which the codec's encode_error turns back into the same bytes.
    return raw.replace(b"\r", b" ").replace(b"\n", b" ").decode("utf-8", "surrogateescape")


def unknown_command_error(args: Sequence[bytes]) -> str:
    """``ERR unknown command 'foo', with args beginning with: 'a' 'b' `` exactly as Redis:
    the name cut at 128 bytes, then arguments, each quoted and followed by a space, until
    the list reaches 128 bytes (the last one cut to fit)."""
    name = _c_string(_as_bytes(args[0]) if args else b"", 128)
    listed = b""
    for arg in args[1:]:
        if len(listed) >= 128:
            break
        listed += b"'" + _c_string(_as_bytes(arg), 128 - len(listed)) + b"' "
    return _error_text(b"ERR unknown command '" + name + b"', with args beginning with: "
                       + listed)


def wrong_arity_error(spec_or_full_name: CommandSpec | bytes | str) -> str:
    """``ERR wrong number of arguments for 'get' command`` (``'config|get'`` for a sub)."""
    if isinstance(spec_or_full_name, CommandSpec):
        name = spec_or_full_name.name
    else:
        name = _as_bytes(spec_or_full_name).lower().decode("utf-8", "surrogateescape")
    return _error_text(f"ERR wrong number of arguments for '{name}' command".encode())


def unknown_subcommand_error(container_spec: CommandSpec | bytes | str,
                             sub: bytes | str) -> str:
    """``ERR unknown subcommand 'foo'. Try CONFIG HELP.``"""
    if isinstance(container_spec, CommandSpec):
        container_name = container_spec.name
    else:
        container_name = _as_bytes(container_spec).decode("utf-8", "surrogateescape")
    return _error_text(b"ERR unknown subcommand '" + _c_string(_as_bytes(sub), 128)
                       + b"'. Try " + _as_bytes(container_name.upper()) + b" HELP.")


def command_error(argv: Sequence[bytes]) -> str | None:
    """Redis's dispatch checks, in its order: the unknown command, the unknown subcommand
    of a container, and the arity.  The error text, or None when the request may run."""
    if not argv:
        return unknown_command_error([b""])
    spec = lookup(argv[0])
    if spec is None:
        return unknown_command_error(argv)
    if spec.subcommands and len(argv) >= 2:
        sub_spec = lookup_subcommand(spec, argv[1])
        if sub_spec is None:
            return unknown_subcommand_error(spec, argv[1])
        spec = sub_spec
    if not arity_ok(spec, len(argv)):
        return wrong_arity_error(spec)
    return None


# ---------------------------------------------------------------------------- COMMAND replies


def _status(text: str) -> SimpleString:
    if issubclass(SimpleString, bytes):  # a bytes-based marker takes the encoded text
        return SimpleString(text.encode())
    return SimpleString(text)


def _statuses(names: Iterable[str]) -> ReplySet:
    return ReplySet(_status(name) for name in names)


def _key_spec_reply(spec: KeySpec) -> dict:
    reply: dict = {}
    if spec.notes:
        reply["notes"] = spec.notes
    reply["flags"] = _statuses(spec.flags)
    reply["begin_search"] = {"type": "index", "spec": {"index": spec.index}}
    reply["find_keys"] = {"type": "range", "spec": {"lastkey": spec.lastkey,
                                                    "keystep": spec.keystep,
                                                    "limit": spec.limit}}
    return reply


def command_info_reply(spec: CommandSpec) -> list:
    """One command's COMMAND INFO entry: name, arity, flags, first key, last key, step, ACL
    categories, tips, key specs, subcommands (an array of entries like this one)."""
    if spec.subcommands:
        subcommands: list | ReplySet = [command_info_reply(s) for s in spec.subcommands.values()]
    else:
        subcommands = ReplySet()
    return [
        spec.name,
        spec.arity,
        _statuses(spec.flags),
        spec.first_key,
        spec.last_key,
        spec.key_step,
        _statuses("@" + category for category in spec.acl_categories),
        ReplySet(spec.tips),
        ReplySet(_key_spec_reply(k) for k in spec.key_specs),
        subcommands,
    ]


def _arg_reply(arg: Arg) -> dict:
    reply: dict = {"name": arg.name, "type": arg.type}
    if arg.display_text is not None:
        reply["display_text"] = arg.display_text
    if arg.type == "key":
        reply["key_spec_index"] = arg.key_spec_index
    if arg.token:
        reply["token"] = arg.token
    if arg.summary:
        reply["summary"] = arg.summary
    if arg.since:
        reply["since"] = arg.since
    if arg.deprecated_since:
        reply["deprecated_since"] = arg.deprecated_since
    if arg.flags:
        reply["flags"] = _statuses(arg.flags)
    if arg.arguments:
        reply["arguments"] = [_arg_reply(a) for a in arg.arguments]
    return reply


def command_docs_reply(spec: CommandSpec) -> dict:
    """One command's COMMAND DOCS map: summary, since, group, then what it has of
    complexity, doc_flags, deprecated_since, replaced_by, history, arguments, subcommands."""
    reply: dict = {"summary": spec.summary, "since": spec.since, "group": spec.group}
    if spec.complexity:
        reply["complexity"] = spec.complexity
    if spec.doc_flags:
        reply["doc_flags"] = _statuses(spec.doc_flags)
    if spec.deprecated_since:
        reply["deprecated_since"] = spec.deprecated_since
    if spec.replaced_by:
        reply["replaced_by"] = spec.replaced_by
    if spec.history:
        reply["history"] = ReplySet([since, change] for since, change in spec.history)
    if spec.arguments:
        reply["arguments"] = [_arg_reply(a) for a in spec.arguments]
    if spec.subcommands:
        reply["subcommands"] = {s.name: command_docs_reply(s)
                                for s in spec.subcommands.values()}
    return reply


def command_count() -> int:
    """COMMAND COUNT: the number of top-level commands."""
    return len(COMMANDS)


def command_info(names: Sequence[bytes | str] = ()) -> list:
    """COMMAND INFO [name ...] (and bare COMMAND with no names): an entry per name, None for
    a name that is not a command; every command when no name is given."""
    if not names:
        return [command_info_reply(spec) for spec in _TABLE]
    out = []
    for name in names:
        spec = lookup_fullname(name)
        out.append(None if spec is None else command_info_reply(spec))
    return out


def command_docs(names: Sequence[bytes | str] = ()) -> dict:
    """COMMAND DOCS [name ...]: full name -> docs map; unknown names are left out."""
    specs = _TABLE if not names else [lookup_fullname(name) for name in names]
    return {spec.name: command_docs_reply(spec) for spec in specs if spec is not None}


def _all_specs() -> Iterable[CommandSpec]:
    for spec in _TABLE:
        yield spec
        yield from spec.subcommands.values()


def command_list(args: Sequence[bytes] = ()) -> list[str]:
    """COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: full names,
    subcommands included.  ``args`` are the arguments after LIST.  No module is loaded, so
    FILTERBY MODULE lists nothing.  Raises CommandTableError (``ERR syntax error``)."""
    args = [_as_bytes(a) for a in args]
    if not args:
        return [spec.name for spec in _all_specs()]
    if len(args) != 3 or args[0].lower() != b"filterby":
        raise CommandTableError("ERR syntax error")
    kind, value = args[1].lower(), args[2]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        category = value.lower().decode("utf-8", "replace")
        return [spec.name for spec in _all_specs() if category in spec.acl_categories]
    if kind == b"pattern":
        from server.glob import compile_glob  # Redis's stringmatchlen rules

        regex = compile_glob(value.lower())
        return [spec.name for spec in _all_specs() if regex.match(spec.name.encode())]
    raise CommandTableError("ERR syntax error")


def get_keys(spec: CommandSpec, argv: Sequence[bytes]) -> list[bytes]:
    """The key arguments of a full command line ``argv`` (the command name first) that runs
    ``spec``: from its key specs, or its own extractor for movable keys.  An empty list
    when it has no keys or ``argv`` is too short to hold them."""
    if spec.getkeys is not None:
        return [argv[i] for i in spec.getkeys(argv)]
    keys: list[bytes] = []
    for key_spec in spec.key_specs:
        positions = key_spec.positions(len(argv))
        if positions is None:
            return []
        keys.extend(argv[i] for i in positions)
    return keys


def command_getkeys(argv: Sequence[bytes]) -> list[bytes]:
    """COMMAND GETKEYS <full-command>, ``argv`` being the full command.  Raises
    CommandTableError with Redis's texts when the command is unknown, has no key arguments,
    does not fit its arity, or its arguments hold no keys."""
    spec = resolve(argv)
    if spec is None:
        raise CommandTableError("ERR Invalid command specified")
    if not spec.key_specs and spec.getkeys is None:
        raise CommandTableError("ERR The command has no key arguments")
    if not arity_ok(spec, len(argv)):
        raise CommandTableError("ERR Invalid number of arguments specified for command")
    keys = get_keys(spec, argv)
    if not keys and "no_mandatory_keys" not in spec.flags:
        raise CommandTableError("ERR Invalid arguments specified for command")
    return keys


# ---------------------------------------------------------------------------- HELP


def help_lines(container_spec: CommandSpec) -> list[str]:
    """The lines of ``<CONTAINER> HELP``, each sent as a status reply, in Redis's layout."""
    if not container_spec.subcommands:
        raise ValueError(f"{container_spec.name} is not a container command")
    header = (f"{container_spec.name.upper()} <subcommand> [<arg> [value] [opt] ...]. "
              f"Subcommands are:")
    return [header, *container_spec.help, *_HELP_LINES]


__all__ = [
    "A", "ACL_CATEGORIES", "ARG_TYPES", "Arg", "COMMANDS", "COMMAND_FLAGS", "CommandSpec",
    "CommandTableError", "DOC_FLAGS", "KEY_SPEC_FLAGS", "KeySpec", "ReplySet", "SimpleString",
    "arity_ok", "command_count", "command_docs", "command_docs_reply", "command_error",
    "command_getkeys", "command_info", "command_info_reply", "command_list", "container",
    "get_keys", "help_lines", "lookup", "lookup_fullname", "lookup_subcommand", "resolve",
    "unknown_command_error", "unknown_subcommand_error", "wrong_arity_error",
]
