"""The command table (server/command_table.py): contents, arity, error texts, and the COMMAND
INFO / DOCS / LIST / GETKEYS / HELP replies compared with a real redis-server.

The comparisons run the table's replies through a RESP encoder and a tiny TCP front end on
a loopback port, so redis-py and a raw RESP reader see exactly what a client of edgekv sees,
and hold that against what redis-server answers to the same request.  They are skipped only
when no ``redis-server`` binary is installed.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading

import pytest
import redis

from server import command_table as ct
from server.command_table import (
    COMMANDS, CommandTableError, ReplySet, SimpleString, arity_ok, command_error,
    command_getkeys, command_list, help_lines, lookup, lookup_fullname, lookup_subcommand,
    unknown_command_error, unknown_subcommand_error, wrong_arity_error,
)
from tests.server.conftest import redis_server


# ---------------------------------------------------------------------------- expectations

STANDARD = {
    # connection and server
    "ping": -1, "echo": 2, "quit": -1, "reset": 1, "hello": -1, "auth": -2, "select": 2,
    "client": -2, "info": -1, "config": -2, "dbsize": 1, "time": 1, "flushdb": -1,
    "flushall": -1, "shutdown": -1, "save": 1, "bgsave": -1, "bgrewriteaof": 1, "lastsave": 1,
    "command": -1, "memory": -2,
    # transactions
    "multi": 1, "exec": 1, "discard": 1, "watch": -2, "unwatch": 1,
    # keys and strings
    "get": 2, "set": -3, "setnx": 3, "setex": 4, "psetex": 4, "getset": 3, "getdel": 2,
    "getex": -2, "mget": -2, "mset": -3, "msetnx": -3, "del": -2, "unlink": -2, "exists": -2,
    "type": 2, "strlen": 2, "append": 3, "incr": 2, "incrby": 3, "decr": 2, "decrby": 3,
    "ttl": 2, "pttl": 2, "expire": -3, "pexpire": -3, "expireat": -3, "pexpireat": -3,
    "expiretime": 2, "pexpiretime": 2, "persist": 2, "keys": 2, "scan": -2,
}

KV = {
    "kv.put": (-3, {"write", "denyoom"}),
    "kv.get": (-2, {"readonly"}),
    "kv.mget": (-2, {"readonly"}),
    "kv.del": (2, {"write"}),
    "kv.list": (-1, {"readonly"}),
    "kv.bulkput": (2, {"write", "denyoom"}),
    "kv.bulkdel": (-2, {"write"}),
    "kv.namespace": (-2, set()),
    "kv.compact": (1, {"admin"}),
    "kv.keyring": (-2, set()),
    "kv.metadata": (2, {"readonly"}),
}

SUBCOMMANDS = {
    "client": {"id": 2, "setname": 3, "getname": 2, "setinfo": 4, "list": -2, "info": 2,
               "kill": -3, "help": 2},
    "config": {"get": -3, "set": -4, "resetstat": 2, "help": 2},
    "command": {"count": 2, "info": -2, "docs": -2, "list": -2, "help": 2, "getkeys": -4},
    "memory": {"doctor": 2, "help": 2, "malloc-stats": 2, "purge": 2, "stats": 2, "usage": -3},
    "kv.namespace": {"create": 3, "list": 2, "get": 3, "rename": 4, "delete": 3, "help": 2},
    "kv.keyring": {"status": 2, "rotate": 2, "retire": 3, "help": 2},
}

#: subcommands Redis 7.2 added, absent from older servers
SINCE_72 = {"client|setinfo"}


def all_specs():
    for spec in COMMANDS.values():
        yield spec
        yield from spec.subcommands.values()


# ---------------------------------------------------------------------------- the table itself


def test_every_command_is_present_with_its_arity():
    assert set(COMMANDS) == set(STANDARD) | set(KV)
    for name, arity in STANDARD.items():
        assert COMMANDS[name].arity == arity, name
    for name, (arity, flags) in KV.items():
        spec = COMMANDS[name]
        assert spec.arity == arity, name
        assert flags <= set(spec.flags), name
        assert spec.group == "kv" and spec.since == "1.0.0", name
    for container, subs in SUBCOMMANDS.items():
        spec = COMMANDS[container]
        assert spec.is_container
        assert {n: s.arity for n, s in spec.subcommands.items()} == subs
        for short, sub in spec.subcommands.items():
            assert sub.name == f"{container}|{short}"
            assert sub.parent == container and sub.subcommand_name == short
            assert not sub.subcommands
    containers = {spec.name for spec in COMMANDS.values() if spec.is_container}
    assert containers == set(SUBCOMMANDS)


def test_specs_are_sane():
    for spec in all_specs():
        assert spec.name == spec.name.lower()
        assert spec.arity != 0
        assert set(spec.flags) <= set(ct.COMMAND_FLAGS)
        assert list(spec.flags) == sorted(spec.flags, key=ct.COMMAND_FLAGS.index)
        assert not {"write", "readonly"} <= set(spec.flags), spec.name
        assert spec.summary and spec.since and spec.group, spec.name
        assert spec.acl_categories and set(spec.acl_categories) <= set(ct.ACL_CATEGORIES)
        assert ("fast" in spec.acl_categories) != ("slow" in spec.acl_categories), spec.name
        if "write" in spec.flags:
            assert "write" in spec.acl_categories
        if "readonly" in spec.flags:
            assert "read" in spec.acl_categories
        if "admin" in spec.flags:
            assert {"admin", "dangerous"} <= set(spec.acl_categories)
        if spec.key_specs:
            assert spec.first_key >= 1 and spec.key_step >= 1, spec.name
            key_args = [a for a in ct._walk(spec.arguments) if a.type == "key"]
            assert key_args, spec.name
            # a key's access flags agree with the command's
            flags = set().union(*(k.flags for k in spec.key_specs))
            if "readonly" in spec.flags:
                assert flags <= {"RO", "access"}, spec.name
            if "write" in spec.flags:
                assert flags & {"RW", "OW", "RM"}, spec.name
        else:
            assert (spec.first_key, spec.last_key, spec.key_step) == (0, 0, 0)
        if spec.is_container:
            assert spec.help, spec.name
            assert "help" in spec.subcommands, spec.name
            # a container's own arity lets "NAME" alone reach the arity error
            assert spec.arity in (-1, -2)
        for arg in ct._walk(spec.arguments):
            assert arg.type in ct.ARG_TYPES
            if arg.type == "key":
                assert 0 <= arg.key_spec_index < len(spec.key_specs)


def test_kv_commands_syntax():
    syntax = {name: COMMANDS[name].syntax for name in KV}
    assert syntax["kv.put"] == ("KV.PUT key value [EXPIRATION unix-seconds] "
                                "[EXPIRATION_TTL seconds] [METADATA json]")
    assert syntax["kv.get"] == ("KV.GET key [TYPE <TEXT | JSON | BYTES>] [CACHETTL seconds] "
                                "[WITHMETADATA]")
    assert syntax["kv.mget"] == "KV.MGET key [key ...] [TYPE <TEXT | JSON>] [WITHMETADATA]"
    assert syntax["kv.del"] == "KV.DEL key"
    assert syntax["kv.list"] == "KV.LIST [PREFIX prefix] [LIMIT count] [CURSOR cursor]"
    assert syntax["kv.bulkput"] == "KV.BULKPUT json-array"
    assert syntax["kv.bulkdel"] == "KV.BULKDEL key [key ...]"
    assert syntax["kv.metadata"] == "KV.METADATA key"
    assert syntax["kv.compact"] == "KV.COMPACT"
    subs = {n: s.syntax for n, s in COMMANDS["kv.namespace"].subcommands.items()}
    assert subs == {
        "create": "KV.NAMESPACE CREATE title", "list": "KV.NAMESPACE LIST",
        "get": "KV.NAMESPACE GET id", "rename": "KV.NAMESPACE RENAME id title",
        "delete": "KV.NAMESPACE DELETE id", "help": "KV.NAMESPACE HELP",
    }


def test_lookup_is_case_insensitive_and_top_level_only():
    get = COMMANDS["get"]
    for name in (b"get", b"GET", b"Get", b"gEt", "get"):
        assert lookup(name) is get
    assert lookup(b"KV.PUT") is COMMANDS["kv.put"] is lookup(b"kv.Put")
    assert lookup(b"nope") is None and lookup(b"") is None
    assert lookup(b"config|get") is None  # not a command name on the wire
    config = COMMANDS["config"]
    assert lookup_subcommand(config, b"GET") is config.subcommands["get"]
    assert lookup_subcommand(config, b"Get") is config.subcommands["get"]
    assert lookup_subcommand(config, b"nope") is None
    assert lookup_subcommand(get, b"x") is None
    assert lookup_fullname(b"CONFIG|GET") is config.subcommands["get"]
    assert lookup_fullname("kv.namespace|create").name == "kv.namespace|create"
    assert lookup_fullname(b"get") is get
    assert lookup_fullname(b"get|x") is None and lookup_fullname(b"config|get|x") is None
    assert ct.resolve([b"config", b"GET", b"x"]) is config.subcommands["get"]
    assert ct.resolve([b"config"]) is config
    assert ct.resolve([b"config", b"nope"]) is None
    assert ct.resolve([b"get", b"k"]) is get


@pytest.mark.parametrize("name,argc,ok", [
    ("get", 2, True), ("get", 1, False), ("get", 3, False),
    ("set", 3, True), ("set", 2, False), ("set", 9, True),
    ("ping", 1, True), ("ping", 2, True), ("ping", 3, True),
    ("reset", 1, True), ("reset", 2, False),
    ("mset", 3, True), ("mset", 2, False),
    ("kv.put", 3, True), ("kv.put", 9, True), ("kv.put", 2, False),
    ("kv.del", 2, True), ("kv.del", 3, False),
    ("kv.list", 1, True), ("kv.list", 7, True),
    ("kv.compact", 1, True), ("kv.compact", 2, False),
    ("config", 1, False), ("config", 2, True),
    ("command", 1, True),
])
def test_arity_ok(name, argc, ok):
    assert arity_ok(COMMANDS[name], argc) is ok


def test_arity_ok_subcommands():
    config = COMMANDS["config"].subcommands
    assert arity_ok(config["get"], 3) and arity_ok(config["get"], 5)
    assert not arity_ok(config["get"], 2)
    assert arity_ok(config["set"], 4) and not arity_ok(config["set"], 3)
    assert arity_ok(config["help"], 2) and not arity_ok(config["help"], 3)
    ns = COMMANDS["kv.namespace"].subcommands
    assert arity_ok(ns["rename"], 4) and not arity_ok(ns["rename"], 3)


def test_error_texts():
    assert unknown_command_error([b"foo", b"a", b"b"]) == \
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    assert unknown_command_error([b"foo"]) == \
        "ERR unknown command 'foo', with args beginning with: "
    assert unknown_command_error([b"FOO", b"A"]) == \
        "ERR unknown command 'FOO', with args beginning with: 'A' "
    # arguments are listed until 128 bytes, the last one cut to fit
    assert unknown_command_error([b"foo", b"a" * 60, b"b" * 60, b"c" * 60, b"d"]) == (
        "ERR unknown command 'foo', with args beginning with: "
        f"'{'a' * 60}' '{'b' * 60}' 'cc' ")
    assert unknown_command_error([b"foo", b"x" * 200]) == \
        f"ERR unknown command 'foo', with args beginning with: '{'x' * 128}' "
    assert unknown_command_error([b"y" * 200]) == \
        f"ERR unknown command '{'y' * 128}', with args beginning with: "
    # C strings: a NUL ends the argument; CR/LF become spaces so the reply stays one line
    assert unknown_command_error([b"foo", b"a\x00b", b"c"]) == \
        "ERR unknown command 'foo', with args beginning with: 'a' 'c' "
    assert unknown_command_error([b"foo", b"a\r\nb"]) == \
        "ERR unknown command 'foo', with args beginning with: 'a  b' "
    assert wrong_arity_error(COMMANDS["get"]) == \
        "ERR wrong number of arguments for 'get' command"
    assert wrong_arity_error(COMMANDS["config"].subcommands["get"]) == \
        "ERR wrong number of arguments for 'config|get' command"
    assert wrong_arity_error("config|get") == \
        "ERR wrong number of arguments for 'config|get' command"
    assert wrong_arity_error(b"KV.PUT") == \
        "ERR wrong number of arguments for 'kv.put' command"
    assert unknown_subcommand_error(COMMANDS["config"], b"foo") == \
        "ERR unknown subcommand 'foo'. Try CONFIG HELP."
    assert unknown_subcommand_error("kv.namespace", b"x") == \
        "ERR unknown subcommand 'x'. Try KV.NAMESPACE HELP."
    assert unknown_subcommand_error(COMMANDS["client"], b"z" * 200) == \
        f"ERR unknown subcommand '{'z' * 128}'. Try CLIENT HELP."
    assert unknown_subcommand_error(COMMANDS["config"], b"a\x00b") == \
        "ERR unknown subcommand 'a'. Try CONFIG HELP."


def test_command_error_follows_redis_order():
    assert command_error([b"get", b"k"]) is None
    assert command_error([b"nope", b"x"]) == \
        "ERR unknown command 'nope', with args beginning with: 'x' "
    assert command_error([b"get"]) == "ERR wrong number of arguments for 'get' command"
    assert command_error([b"CONFIG"]) == "ERR wrong number of arguments for 'config' command"
    assert command_error([b"CONFIG", b"GET"]) == \
        "ERR wrong number of arguments for 'config|get' command"
    assert command_error([b"config", b"nope"]) == \
        "ERR unknown subcommand 'nope'. Try CONFIG HELP."
    assert command_error([b"command"]) is None
    assert command_error([b"KV.NAMESPACE", b"create", b"t"]) is None
    assert command_error([b"kv.namespace", b"create"]) == \
        "ERR wrong number of arguments for 'kv.namespace|create' command"


def test_help_lines():
    lines = help_lines(COMMANDS["kv.namespace"])
    assert lines[0] == "KV.NAMESPACE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == ["HELP", "    Prints this help."]
    body = lines[1:-2]
    assert body[0::2] == ["CREATE <title>", "LIST", "GET <id>", "RENAME <id> <title>",
                          "DELETE <id>"]
    assert all(line.startswith("    ") for line in body[1::2])
    assert help_lines(COMMANDS["config"])[0] == \
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    with pytest.raises(ValueError):
        help_lines(COMMANDS["get"])


def test_getkeys_without_a_server():
    assert command_getkeys([b"get", b"k"]) == [b"k"]
    assert command_getkeys([b"mset", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert command_getkeys([b"KV.MGET", b"a", b"b", b"TYPE", b"json", b"WITHMETADATA"]) == \
        [b"a", b"b"]
    assert command_getkeys([b"kv.mget", b"a", b"withmetadata", b"type", b"text"]) == [b"a"]
    assert command_getkeys([b"kv.mget", b"type"]) == [b"type"]
    assert command_getkeys([b"kv.put", b"k", b"v", b"METADATA", b"{}"]) == [b"k"]
    assert command_getkeys([b"kv.bulkdel", b"a", b"b"]) == [b"a", b"b"]
    for argv, text in [
        ([b"nope", b"a"], "ERR Invalid command specified"),
        ([b"ping"], "ERR The command has no key arguments"),
        ([b"kv.list", b"PREFIX", b"a"], "ERR The command has no key arguments"),
        ([b"get", b"a", b"b"], "ERR Invalid number of arguments specified for command"),
        ([b"config", b"nope"], "ERR Invalid command specified"),
    ]:
        with pytest.raises(CommandTableError) as info:
            command_getkeys(argv)
        assert str(info.value) == text


def test_command_list_filters():
    names = command_list()
    assert names[0] == "ping"  # table order, each container followed by its subcommands
    assert names[names.index("client") + 1] == "client|id"
    assert set(names) == {spec.name for spec in all_specs()}
    assert command_list([b"FILTERBY", b"PATTERN", b"kv.name*"]) == [
        "kv.namespace", "kv.namespace|create", "kv.namespace|list", "kv.namespace|get",
        "kv.namespace|rename", "kv.namespace|delete", "kv.namespace|help"]
    assert command_list([b"filterby", b"pattern", b"CONFIG|G?T"]) == ["config|get"]
    assert "kv.del" in command_list([b"FILTERBY", b"ACLCAT", b"keyspace"])
    assert "kv.get" not in command_list([b"FILTERBY", b"ACLCAT", b"write"])
    assert command_list([b"FILTERBY", b"MODULE", b"x"]) == []
    assert command_list([b"FILTERBY", b"ACLCAT", b"nope"]) == []
    for bad in ([b"x"], [b"FILTERBY", b"PATTERN"], [b"FILTERBY", b"NOPE", b"x"]):
        with pytest.raises(CommandTableError, match="^ERR syntax error$"):
            command_list(bad)


def str_of(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_reply_shapes_use_status_strings_and_ordered_sets():
    info = ct.command_info_reply(COMMANDS["get"])
    assert info[0] == "get" and info[1] == 2
    assert isinstance(info[2], ReplySet) and isinstance(info[2], set)
    assert [str_of(f) for f in info[2]] == ["readonly", "fast"]
    assert all(type(flag) is SimpleString for flag in info[2])
    assert [str_of(c) for c in info[6]] == ["@read", "@string", "@fast"]
    assert all(type(cat) is SimpleString for cat in info[6])
    assert info[3:6] == [1, 1, 1]
    key_spec = list(info[8])[0]
    assert list(key_spec) == ["flags", "begin_search", "find_keys"]
    assert all(type(flag) is SimpleString for flag in key_spec["flags"])
    assert isinstance(info[9], ReplySet) and len(info[9]) == 0
    container = ct.command_info_reply(COMMANDS["kv.namespace"])
    assert type(container[9]) is list and len(container[9]) == 6
    docs = ct.command_docs_reply(COMMANDS["kv.put"])
    assert list(docs) == ["summary", "since", "group", "complexity", "arguments"]
    assert docs["arguments"][0] == {"name": "key", "type": "key", "display_text": "key",
                                    "key_spec_index": 0}
    assert docs["arguments"][2] == {
        "name": "expiration", "type": "unix-time", "display_text": "unix-seconds",
        "token": "EXPIRATION",
        "summary": "Absolute expiration, in seconds since the Unix epoch.",
        "flags": ReplySet([ct._status("optional")]),
    }
    ns_docs = ct.command_docs_reply(COMMANDS["kv.namespace"])
    assert list(ns_docs["subcommands"]) == [f"kv.namespace|{n}" for n in
                                             SUBCOMMANDS["kv.namespace"]]
    # ReplySet behaves as an ordered sequence of possibly unhashable members
    members = ReplySet([{"a": 1}, ["x"]])
    assert len(members) == 2 and list(members) == [{"a": 1}, ["x"]] and ["x"] in members
    assert members == [{"a": 1}, ["x"]] and members != ReplySet()


# ---------------------------------------------------------------------------- wire plumbing
# A reference RESP encoder with the codec's contract (dict → map / flat array, set → set /
# array, SimpleString → +status), used when server/resp.py is not importable; and a raw
# reader that keeps every reply's RESP type, to compare replies exactly.


def reference_encode(value, protocol: int) -> bytes:
    if value is None:
        return b"_\r\n" if protocol == 3 else b"$-1\r\n"
    if isinstance(value, SimpleString):
        text = value if isinstance(value, bytes) else value.encode()
        return b"+" + text + b"\r\n"
    if isinstance(value, bool):
        return (b"#t\r\n" if value else b"#f\r\n") if protocol == 3 else b":%d\r\n" % value
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, dict):
        items = [part for pair in value.items() for part in pair]
        head = b"%%%d\r\n" % len(value) if protocol == 3 else b"*%d\r\n" % len(items)
        return head + b"".join(reference_encode(v, protocol) for v in items)
    if isinstance(value, (set, frozenset)):
        head = b"~%d\r\n" if protocol == 3 else b"*%d\r\n"
        return head % len(value) + b"".join(reference_encode(v, protocol) for v in value)
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % len(value) + b"".join(reference_encode(v, protocol) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def codec_encode():
    try:
        from server.resp import encode
    except ImportError:
        return None
    return encode


ENCODERS = ["reference", "codec"]


def pick_encoder(which: str):
    if which == "reference":
        return reference_encode
    encode = codec_encode()
    if encode is None:
        pytest.skip("server/resp.py (the codec) is not importable yet")
    return encode


class RawClient:
    """Sends commands, reads replies as typed trees: ("+", text), ("$", bytes), (":", int),
    ("*", [...]), ("%", [(k, v), ...]), ("~", [...]), ("-", text), ("null", kind)."""

    def __init__(self, port: int, protocol: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        if protocol == 3:
            hello = self.call(b"HELLO", b"3")
            assert hello[0] == "%", hello

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for arg in args:
            arg = arg.encode() if isinstance(arg, str) else arg
            out += b"$%d\r\n%s\r\n" % (len(arg), arg)
        self.sock.sendall(out)
        return self.read()

    def read(self):
        line = self.file.readline()
        assert line.endswith(b"\r\n"), line
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return ("+", rest.decode())
        if kind == b"-":
            return ("-", rest.decode())
        if kind == b":":
            return (":", int(rest))
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return ("null", "bulk")
            data = self.file.read(n + 2)
            return ("$", data[:-2])
        if kind in (b"*", b"~"):
            n = int(rest)
            if n < 0:
                return ("null", "array")
            return (kind.decode(), [self.read() for _ in range(n)])
        if kind == b"%":
            return ("%", [(self.read(), self.read()) for _ in range(int(rest))])
        if kind == b"_":
            return ("null", "null")
        raise AssertionError(f"unexpected reply {line!r}")


class _Handler(socketserver.StreamRequestHandler):
    """A front end that answers from the command table alone (and +OK to anything else)."""

    def read_command(self):
        line = self.rfile.readline()
        if not line:
            return None
        if not line.startswith(b"*"):
            return line.split()
        argv = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            argv.append(self.rfile.read(size + 2)[:-2])
        return argv

    def handle(self):
        protocol = 2
        encode = self.server.encode
        while True:
            argv = self.read_command()
            if argv is None:
                return
            if not argv:
                continue
            try:
                value = self.dispatch(argv)
            except CommandTableError as exc:
                self.wfile.write(b"-" + str(exc).encode() + b"\r\n")
                continue
            if argv[0].lower() == b"hello" and len(argv) > 1:
                protocol = int(argv[1])
                value = {"server": "edgekv", "version": "0.1.0", "proto": protocol, "id": 1,
                         "mode": "standalone", "role": "master", "modules": []}
            self.wfile.write(encode(value, protocol))

    @staticmethod
    def dispatch(argv):
        error = command_error(argv)
        if error:
            raise CommandTableError(error)
        name = argv[0].lower()
        spec = lookup(name)
        if name == b"command":
            if len(argv) == 1:
                return ct.command_info()
            sub = argv[1].lower()
            if sub == b"info":
                return ct.command_info(argv[2:])
            if sub == b"docs":
                return ct.command_docs(argv[2:])
            if sub == b"count":
                return ct.command_count()
            if sub == b"list":
                return command_list(argv[2:])
            if sub == b"getkeys":
                return command_getkeys(argv[2:])
        if spec.is_container and argv[1].lower() == b"help":
            return [ct._status(line) for line in help_lines(spec)]
        return ct._status("OK")


class TableServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, encode) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.encode = encode
        self.port = self.server_address[1]


@pytest.fixture(scope="module", params=ENCODERS)
def table_server(request):
    server = TableServer(pick_encoder(request.param))
    thread = threading.Thread(target=server.serve_forever, name="table-server", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def real_redis():
    with redis_server() as (client, version):
        if client is None:
            pytest.skip("redis-server is not installed")
        if version < (7, 0) or version >= (8, 0):
            pytest.skip(f"the table models Redis 7.x replies; redis-server is {version}")
        yield RealRedis(client.connection_pool.connection_kwargs["port"], version)


class RealRedis:
    def __init__(self, port: int, version: tuple[int, ...]) -> None:
        self.port = port
        self.version = version

    @property
    def exact(self) -> bool:
        """7.0 and 7.2 servers are compared field by field (summaries: 7.0 only)."""
        return self.version[:2] in ((7, 0), (7, 2))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


# ---------------------------------------------------------------------------- normalising


def strip_info(entry, ours_subs: set[str] | None = None):
    """A COMMAND INFO entry with its subcommand array made a name-keyed dict (Redis lists
    them in hash order), restricted to ``ours_subs`` when given."""
    kind, items = entry
    assert kind == "*" and len(items) == 10, entry
    subs_kind, subs = items[9]
    by_name = {}
    for sub in subs:
        name = sub[1][0][1].decode()
        if ours_subs is None or name in ours_subs:
            by_name[name] = strip_info(sub)
    return items[:9] + [(subs_kind if subs else "empty", by_name)]


def map_items(tree):
    kind, items = tree
    if kind == "%":
        return [(k, v) for k, v in items]
    assert kind == "*" and len(items) % 2 == 0, tree
    return list(zip(items[0::2], items[1::2]))


def has_display_text(tree) -> bool:
    if isinstance(tree, tuple):
        if tree == ("$", b"display_text"):
            return True
        return any(has_display_text(t) for t in tree[1:])
    if isinstance(tree, list):
        return any(has_display_text(t) for t in tree)
    return False


def strip_display_text(tree):
    """Drop display_text pairs (Redis 7.2 added them) from an argument list tree."""
    if isinstance(tree, tuple) and tree[0] in ("%", "*"):
        kind, items = tree
        if kind == "%":
            return (kind, [(k, strip_display_text(v)) for k, v in items
                           if k != ("$", b"display_text")])
        if len(items) % 2 == 0 and items and items[0] == ("$", b"name"):
            pairs = [(k, strip_display_text(v)) for k, v in zip(items[0::2], items[1::2])
                     if k != ("$", b"display_text")]
            return (kind, [x for pair in pairs for x in pair])
        return (kind, [strip_display_text(t) for t in items])
    if isinstance(tree, tuple) and tree[0] == "~":
        return ("~", [strip_display_text(t) for t in tree[1]])
    return tree


def strip_docs(tree, server: RealRedis, ours_subs: set[str] | None, *, ours: bool):
    """A COMMAND DOCS map as a list of pairs, ready to compare with the other side's:
    subcommands keyed by name (and restricted to ours), 7.2-only details dropped for an
    older server, summaries dropped where our wording and the server's differ."""
    pairs = []
    for key, value in map_items(tree):
        name = key[1].decode()
        if name == "summary" and server.version[:2] != (7, 0):
            continue
        if name == "history" and ours:
            kind, entries = value
            entries = [e for e in entries if version_tuple(e[1][0][1].decode()) <= server.version]
            value = (kind, entries)
        if name == "subcommands":
            subs = {}
            for sub_key, sub_value in map_items(value):
                sub_name = sub_key[1].decode()
                if ours_subs is None or sub_name in ours_subs:
                    subs[sub_name] = strip_docs(sub_value, server, None, ours=ours)
            value = subs
        pairs.append((name, value))
    return pairs


# ---------------------------------------------------------------------------- against Redis

STANDARD_NAMES = sorted(STANDARD)


def our_sub_names(name: str, server: RealRedis) -> set[str]:
    spec = COMMANDS[name]
    return {s.name for s in spec.subcommands.values()
            if s.name not in SINCE_72 or server.version >= (7, 2)}


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("name", STANDARD_NAMES)
def test_command_info_matches_redis(real_redis, table_server, name, protocol):
    real = RawClient(real_redis.port, protocol)
    ours = RawClient(table_server.port, protocol)
    try:
        theirs_reply = real.call("COMMAND", "INFO", name)
        ours_reply = ours.call("COMMAND", "INFO", name)
    finally:
        real.close()
        ours.close()
    assert theirs_reply[0] == ours_reply[0] == "*"
    subs = our_sub_names(name, real_redis)
    theirs = strip_info(theirs_reply[1][0], subs)
    mine = strip_info(ours_reply[1][0], subs)
    if real_redis.exact:
        assert mine == theirs
    else:  # name, arity, flags, first/last/step, ACL categories
        assert mine[:7] == theirs[:7]
    assert set(mine[9][1]) == subs  # every subcommand of ours exists in Redis


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("name", STANDARD_NAMES)
def test_command_docs_matches_redis(real_redis, table_server, name, protocol):
    if not real_redis.exact:
        pytest.skip("COMMAND DOCS is compared against Redis 7.0 / 7.2 only")
    real = RawClient(real_redis.port, protocol)
    ours = RawClient(table_server.port, protocol)
    try:
        theirs_reply = real.call("COMMAND", "DOCS", name)
        ours_reply = ours.call("COMMAND", "DOCS", name)
    finally:
        real.close()
        ours.close()
    (their_name, theirs), = map_items(theirs_reply)
    (our_name, mine), = map_items(ours_reply)
    assert our_name == their_name == ("$", name.encode())
    if not has_display_text(theirs):
        mine = strip_display_text(mine)
    subs = our_sub_names(name, real_redis)
    assert strip_docs(mine, real_redis, subs, ours=True) == \
        strip_docs(theirs, real_redis, subs, ours=False)


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_parses_ours_like_redis(real_redis, table_server, protocol):
    """redis-py's COMMAND parser gives the same result for both servers."""
    real = redis.Redis(host="127.0.0.1", port=real_redis.port, protocol=protocol,
                       socket_timeout=10)
    ours = redis.Redis(host="127.0.0.1", port=table_server.port, protocol=protocol,
                       socket_timeout=10)
    try:
        for name in ("get", "set", "mset", "ping", "client", "config", "command"):
            theirs = real.execute_command("COMMAND", "INFO", name)[name]
            mine = ours.execute_command("COMMAND", "INFO", name)[name]
            subs = our_sub_names(name, real_redis)
            for parsed in (theirs, mine):
                parsed["subcommands"] = sorted(
                    (s for s in parsed["subcommands"] if s[0].decode() in subs),
                    key=lambda s: s[0])
            assert mine == theirs, name
        table = ours.command()
        assert set(table) == set(COMMANDS)
        assert table["kv.put"]["arity"] == -3
        assert set(table["kv.put"]["flags"]) == {"write", "denyoom"}
        assert table["kv.namespace"]["first_key_pos"] == 0
        # COMMAND DOCS has no redis-py parser: the raw replies have the same shape
        theirs = real.execute_command("COMMAND DOCS", "get")
        mine = ours.execute_command("COMMAND DOCS", "get")
        assert type(mine) is type(theirs)
        if protocol == 3:
            assert list(mine) == list(theirs) == [b"get"]
            assert list(mine[b"get"]) == list(theirs[b"get"])
        else:
            assert mine[0] == theirs[0] == b"get"
            assert mine[1][0::2] == theirs[1][0::2]
    finally:
        real.close()
        ours.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_kv_commands_have_redis_shapes(real_redis, table_server, protocol):
    """KV.PUT and KV.NAMESPACE come back shaped exactly like SETEX and CLIENT: same RESP
    types at every position, so clients parse them without special cases."""
    real = RawClient(real_redis.port, protocol)
    ours = RawClient(table_server.port, protocol)

    def shape(tree):
        kind, value = tree
        if kind in ("*", "~"):
            return (kind, [shape(t) for t in value][:1])
        if kind == "%":
            return (kind, [(shape(k), shape(v)) for k, v in value][:1])
        return kind

    try:
        for ours_name, theirs_name in (("kv.put", "setex"), ("kv.namespace", "client")):
            mine = ours.call("COMMAND", "INFO", ours_name)[1][0]
            theirs = real.call("COMMAND", "INFO", theirs_name)[1][0]
            assert [shape(t) for t in mine[1]] == [shape(t) for t in theirs[1]]
            assert mine[1][0] == ("$", ours_name.encode())
            mine_docs = dict(map_items(map_items(ours.call("COMMAND", "DOCS", ours_name))[0][1]))
            theirs_docs = dict(map_items(map_items(
                real.call("COMMAND", "DOCS", theirs_name))[0][1]))
            for key in (("$", b"summary"), ("$", b"since"), ("$", b"group"),
                        ("$", b"complexity")):
                assert shape(mine_docs[key]) == shape(theirs_docs[key])
            if ours_name == "kv.put":
                mine_args = mine_docs[("$", b"arguments")]
                theirs_args = theirs_docs[("$", b"arguments")]
                assert mine_args[0] == theirs_args[0] == "*"
                first = dict(map_items(mine_args[1][0]))
                assert first[("$", b"name")] == ("$", b"key")
                assert first[("$", b"key_spec_index")] == (":", 0)
            else:
                subs = map_items(mine_docs[("$", b"subcommands")])
                assert [k[1] for k, _ in subs] == [
                    f"kv.namespace|{n}".encode() for n in SUBCOMMANDS["kv.namespace"]]
    finally:
        real.close()
        ours.close()


DISPATCH_ERRORS = [
    [b"foo", b"a", b"b"], [b"foo"], [b"FOO", b"A"], [b"foo", b"x" * 200],
    [b"foo", b"a" * 60, b"b" * 60, b"c" * 60, b"d"], [b"y" * 200],
    [b"foo", b"a\r\nb"], [b"foo", b"a\x00b", b"c"],
    [b"config", b"foo"], [b"Config", b"foo"], [b"config"], [b"config", b"get"],
    [b"CONFIG", b"GET"], [b"config", b"set", b"a"], [b"config", b"help", b"x"],
    [b"config", b"x" * 200], [b"client"], [b"client", b"setname"], [b"client", b"kill"],
    [b"client", b"nope"], [b"command", b"foo"], [b"COMMAND", b"COUNT", b"x"],
    [b"command", b"getkeys", b"get"], [b"get"], [b"GET", b"a", b"b"], [b"set", b"a"],
    [b"mset", b"a"], [b"reset", b"x"], [b"echo"], [b"select"], [b"expire", b"k"],
    [b"keys"], [b"scan"], [b"dbsize", b"x"], [b"time", b"x"], [b"lastsave", b"x"],
]


def test_dispatch_errors_match_redis(real_redis):
    real = RawClient(real_redis.port)
    try:
        for argv in DISPATCH_ERRORS:
            kind, text = real.call(*argv)
            assert kind == "-", argv
            assert command_error(argv) == text, argv
    finally:
        real.close()


GETKEYS = [
    [b"get", b"k"], [b"set", b"k", b"v", b"GET"], [b"mset", b"a", b"1", b"b", b"2"],
    [b"mset", b"a", b"b", b"c"], [b"mget", b"a", b"b", b"c"], [b"del", b"a", b"b"],
    [b"msetnx", b"a", b"1"], [b"expire", b"k", b"10"], [b"getex", b"k", b"PERSIST"],
    [b"nope", b"a"], [b"ping", b"a"], [b"keys", b"*"], [b"get", b"a", b"b"],
    [b"config", b"get", b"x"], [b"config|get", b"x"], [b"scan", b"0"],
]


def test_getkeys_matches_redis(real_redis):
    real = RawClient(real_redis.port)
    try:
        for argv in GETKEYS:
            kind, value = real.call(b"COMMAND", b"GETKEYS", *argv)
            if kind == "-":
                with pytest.raises(CommandTableError) as info:
                    command_getkeys(argv)
                assert str(info.value) == value, argv
            else:
                assert command_getkeys(argv) == [v for _, v in value], argv
    finally:
        real.close()


def test_command_list_matches_redis(real_redis):
    real = RawClient(real_redis.port)
    ours = {spec.name for spec in all_specs()} - SINCE_72
    try:
        _, everything = real.call(b"COMMAND", b"LIST")
        theirs = {v.decode() for _, v in everything}
        standard = {n for n in ours if not n.startswith("kv.")}
        assert standard <= theirs
        for args in ([b"FILTERBY", b"PATTERN", b"conf*"], [b"FILTERBY", b"ACLCAT", b"connection"],
                     [b"FILTERBY", b"ACLCAT", b"KEYSPACE"], [b"FILTERBY", b"PATTERN", b"*ex*"],
                     [b"FILTERBY", b"MODULE", b"x"], [b"FILTERBY", b"ACLCAT", b"nope"]):
            _, listed = real.call(b"COMMAND", b"LIST", *args)
            theirs = {v.decode() for _, v in listed}
            mine = set(command_list(args)) - SINCE_72
            assert {n for n in mine if not n.startswith("kv.")} == theirs & standard, args
        kind, text = real.call(b"COMMAND", b"LIST", b"foo")
        with pytest.raises(CommandTableError) as info:
            command_list([b"foo"])
        assert (kind, str(info.value)) == ("-", text)
    finally:
        real.close()


@pytest.mark.parametrize("container", ["client", "config", "command"])
def test_help_matches_redis(real_redis, table_server, container):
    real = RawClient(real_redis.port)
    ours = RawClient(table_server.port)
    try:
        kind, theirs = real.call(container.upper(), "HELP")
        our_kind, mine = ours.call(container.upper(), "HELP")
    finally:
        real.close()
        ours.close()
    assert kind == our_kind == "*"
    assert all(t[0] == "+" for t in theirs + mine)
    theirs = [t[1] for t in theirs]
    mine = [t[1] for t in mine]
    assert mine == help_lines(COMMANDS[container])
    assert mine[0] == theirs[0]
    assert mine[-2:] == theirs[-2:]
    newer = set()
    if real_redis.version < (7, 2):  # CLIENT SETINFO's lines
        start = mine.index("SETINFO <option> <value>") if container == "client" else len(mine)
        newer = set(mine[start:start + 4])
    missing = [line for line in mine[1:-2] if line not in theirs and line not in newer]
    assert not missing
    # the documented subcommands are the ones the table has
    documented = {re.split(r"[ (]", line, maxsplit=1)[0].lower() for line in mine[1:]
                  if not line.startswith(" ") and not line.startswith("(")}
    assert documented == set(COMMANDS[container].subcommands)
