"""The sans-IO RESP codec (server/resp.py): request parsing and reply encoding, no sockets.

Parser results are checked three ways: against literal expectations (Redis's own protocol tests
and error texts), against a small independent reference of Redis's request rules fed the whole
stream at once (for any chunking of the same bytes the parser must agree with it), and against
what real client libraries emit (redis-py's packers, hiredis.pack_command).  Replies are
compared with the byte strings of the RESP3 specification and decoded back with hiredis.
"""

from __future__ import annotations

import math
import re
import time
from types import MappingProxyType

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.resp import (
    EMPTY_ARRAY, ERR_EXPECTED_DOLLAR, ERR_INVALID_BULK, ERR_INVALID_MULTIBULK,
    ERR_TOO_BIG_BULK_COUNT, ERR_TOO_BIG_INLINE, ERR_TOO_BIG_MBULK_COUNT,
    ERR_UNBALANCED_QUOTES, NULL2, NULL3, NULL_ARRAY, NULL_ARRAY2, OK, PONG,
    PROTO_INLINE_MAX_SIZE, Attribute, BigNumber, Encoded, ErrorReply, ProtocolError, Push,
    RequestParser, SimpleString, Verbatim, encode, encode_bulk, encode_double, encode_error,
    encode_int, encode_null, encode_simple, format_double, split_args,
)

# ---------------------------------------------------------------------------- helpers


def pack(*args) -> bytes:
    """A canonical multibulk request."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        arg = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def run(chunks, parser: RequestParser | None = None, *, next_command: bool = False,
        per_read: bool = False, **limits):
    """Feed ``chunks`` in order; return (commands, error text or None).  ``per_read``: one
    ``parse(chunk)`` per chunk, as a connection does, instead of ``feed`` + ``commands``."""
    parser = parser or RequestParser(**limits)
    got: list[list[bytes]] = []
    for chunk in chunks:
        if not per_read:
            parser.feed(chunk)
        try:
            if per_read:
                got.extend(parser.parse(chunk))
            elif next_command:
                while (cmd := parser.next_command()) is not None:
                    got.append(cmd)
            else:
                got.extend(parser.commands())
        except ProtocolError as exc:
            got.extend(exc.commands)
            return got, str(exc)
    return got, None


def parse_all(data: bytes, **limits):
    return run([data], **limits)


def parse_bytewise(data: bytes, **limits):
    return run([data[i:i + 1] for i in range(len(data))], **limits)


def assert_error(data: bytes, message: str, commands=(), **limits) -> None:
    assert parse_all(data, **limits) == (list(commands), message)
    assert parse_bytewise(data, **limits) == (list(commands), message)


# -------------------------------------------------------------- an independent reference

_REDIS_INT = re.compile(rb"0|-?[1-9][0-9]*")


def _redis_int(text: bytes):
    if len(text) > 20 or not _REDIS_INT.fullmatch(text):
        return None
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else None


def reference(stream: bytes, max_bulk=32 << 20, max_mb=1 << 20):
    """Redis's processInputBuffer run over a complete stream: (commands, error or None)."""
    cmds: list[list[bytes]] = []
    pos, n = 0, len(stream)
    while pos < n:
        if stream[pos] != ord("*"):
            newline = stream.find(b"\n", pos)
            if newline < 0:
                return cmds, (ERR_TOO_BIG_INLINE if n - pos > PROTO_INLINE_MAX_SIZE else None)
            line = stream[pos:newline]
            if line.endswith(b"\r"):
                line = line[:-1]
            args = split_args(line)
            if args is None:
                return cmds, ERR_UNBALANCED_QUOTES
            if args:
                cmds.append(args)
            pos = newline + 1
            continue
        cr = stream.find(b"\r", pos)
        if cr < 0 or cr + 2 > n:
            too_big = cr < 0 and n - pos > PROTO_INLINE_MAX_SIZE
            return cmds, (ERR_TOO_BIG_MBULK_COUNT if too_big else None)
        count = _redis_int(stream[pos + 1:cr])
        if count is None or count > max_mb:
            return cmds, ERR_INVALID_MULTIBULK
        pos = cr + 2
        args = []
        while len(args) < count:
            cr = stream.find(b"\r", pos)
            if cr < 0 or cr + 2 > n:
                too_big = cr < 0 and n - pos > PROTO_INLINE_MAX_SIZE
                return cmds, (ERR_TOO_BIG_BULK_COUNT if too_big else None)
            if stream[pos] != ord("$"):
                got = chr(stream[pos]) if stream[pos] < 128 else chr(0xDC00 + stream[pos])
                return cmds, ERR_EXPECTED_DOLLAR.format(got)
            size = _redis_int(stream[pos + 1:cr])
            if size is None or size < 0 or size > max_bulk:
                return cmds, ERR_INVALID_BULK
            pos = cr + 2
            if n - pos < size + 2:
                return cmds, None
            args.append(stream[pos:pos + size])
            pos += size + 2
        if args:
            cmds.append(args)
    return cmds, None


# ---------------------------------------------------------------------------- multibulk


def test_single_command():
    assert parse_all(pack("SET", "key", "value")) == ([[b"SET", b"key", b"value"]], None)


def test_pipelined_commands_in_one_read():
    stream = b"".join(pack("INCR", f"k{i}") for i in range(100))
    cmds, error = parse_all(stream)
    assert error is None and cmds == [[b"INCR", f"k{i}".encode()] for i in range(100)]


def test_arguments_are_exact_bytes_objects():
    parser = RequestParser()
    parser.feed(bytearray(pack("SET", "a", "b")[:7]))  # arrives in pieces, as a bytearray
    parser.feed(memoryview(pack("SET", "a", "b")[7:]))
    (cmd,) = parser.commands()
    assert cmd == [b"SET", b"a", b"b"] and all(type(arg) is bytes for arg in cmd)


BINARY_VALUES = [b"", b"\r\n", b"a\r\nb", b"\x00", b"\x00\r\n\x00", bytes(range(256)),
                 b"*1\r\n$4\r\nPING\r\n", b"$-1\r\n", b"+OK", b"=15", b"(1", b"~", b"|",
                 b"\r", b"\n", b"\n\r", "h\u00e9llo \u2603".encode()]


@pytest.mark.parametrize("value", BINARY_VALUES)
def test_binary_safe_arguments(value):
    stream = pack("SET", value, value) + pack("GET", value)
    expected = [[b"SET", value, value], [b"GET", value]]
    assert parse_all(stream) == (expected, None)
    assert parse_bytewise(stream) == (expected, None)


def test_every_split_point_of_a_mixed_stream():
    stream = (pack("SET", "k", "v\r\n") + b"PING\r\n" + pack("ECHO", "x=y+z") + b"\r\n"
              + b"SET a \"b c\"\n" + b"*0\r\n" + b"*-1\r\n" + pack("MGET", "a", "b", "c")
              + b"   \r\n" + pack("DEL", bytes(range(256))))
    expected = [[b"SET", b"k", b"v\r\n"], [b"PING"], [b"ECHO", b"x=y+z"],
                [b"SET", b"a", b"b c"], [b"MGET", b"a", b"b", b"c"], [b"DEL", bytes(range(256))]]
    assert parse_all(stream) == (expected, None)
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], stream[cut:]]) == (expected, None), cut
    for cut in range(0, len(stream) + 1, 7):
        for cut2 in range(cut, len(stream) + 1, 5):
            chunks = [stream[:cut], stream[cut:cut2], stream[cut2:]]
            assert run(chunks) == (expected, None), (cut, cut2)
    assert parse_bytewise(stream) == (expected, None)
    assert run([stream], next_command=True) == (expected, None)


def test_a_large_value_arriving_in_small_reads_is_linear():
    value = bytes(range(256)) * (16 * 1024)  # 4 MiB
    stream = pack("SET", "big", value) + pack("GET", "big")
    parser = RequestParser()
    started = time.perf_counter()
    got = []
    for i in range(0, len(stream), 1024):
        parser.feed(stream[i:i + 1024])
        got.extend(parser.commands())
        assert parser.buffered < len(value) + 1024
    assert time.perf_counter() - started < 20  # quadratic copying would take far longer
    assert got == [[b"SET", b"big", value], [b"GET", b"big"]]
    assert parser.buffered == 0


@pytest.mark.parametrize("value", [b"xxx", b"a=b", b"y" * 12_000, b"z" * 9_999 + b">"])
@pytest.mark.parametrize("read_size", [4096, 65536])
def test_long_pipelines_cut_by_fixed_size_reads(value, read_size):
    # Reads that end inside a command, with values hiredis alone could vouch for and not.
    commands = [[b"SET", b"key:%06d" % i, value] for i in range(300)]
    stream = b"".join(pack(*c) for c in commands)
    chunks = [stream[i:i + read_size] for i in range(0, len(stream), read_size)]
    assert run(chunks) == (commands, None)


def test_interleaved_inline_and_multibulk_in_one_read():
    stream = (b"PING\r\n" + pack("ECHO", "a") + b"*0\r\n" + b"*-1\r\n") * 2000
    cmds, error = parse_all(stream)
    assert error is None and cmds == [[b"PING"], [b"ECHO", b"a"]] * 2000


def test_buffered_counts_bytes_held_for_incomplete_commands():
    parser = RequestParser()
    assert parser.buffered == 0
    parser.feed(pack("PING") + b"*2\r\n$3\r\nGET\r\n$5\r\nab")
    assert parser.commands() == [[b"PING"]]
    # "GET" is parsed already but still held, as are the two bytes of the next argument.
    assert parser.buffered == 3 + 2
    parser.feed(b"cde\r\n")
    assert parser.commands() == [[b"GET", b"abcde"]]
    assert parser.buffered == 0
    parser.feed(b"PIN")
    assert parser.commands() == [] and parser.buffered == 3


def test_empty_and_negative_multibulk_counts_are_skipped():
    # Redis's "Negative multibulk length" test: *-10 is ignored, the next command works.
    assert parse_all(b"*-10\r\n" + pack("PING")) == ([[b"PING"]], None)
    assert parse_all(b"*0\r\n*-1\r\n" + pack("PING") + b"*0\r\n") == ([[b"PING"]], None)


def test_cr_ending_a_header_is_enough_like_in_redis():
    # Redis takes the first CR as the end of a header line and skips the next byte unseen, and
    # never looks at the two bytes after a bulk's data.
    assert parse_all(b"*1\r\n$3\rxfoo\r\n") == ([[b"foo"]], None)
    assert parse_all(b"*1\r\n$3\r\nfooXY" + pack("PING")) == ([[b"foo"], [b"PING"]], None)


@pytest.mark.parametrize("stream", [
    pack("SET", "k", "a\r\n$1\r\nb"),          # a value holding CRLF and a header look-alike
    pack("SET", "k", "\r\n"),
    pack("GET", "k") + b"PING\r\n",            # a complete command, then an inline one
    pack("GET", "k") + b"PING",                # ... and half of one
    b"*2\r\n$1\r\na\r\n",                      # fewer arguments than announced
    b"*1\r\n$1\r\na\r\n$1\r\nb\r\n",           # more lines than announced
    b"*1\r\n$03\r\nfoo\r\n",                   # a header that is not canonical
    b"*1\r\n$3\r\nfooXY",                      # no CRLF after the data
    b"*1\r\n$3\r\nfoo\n\n",
    b"*0\r\n", b"*-1\r\n",
    b"*1\r\n+PING\r\n", b"*1\r\n=8\r\ntxt:PING\r\n",
])
def test_single_command_reads_agree_with_the_reference(stream):
    # A read with one '*' is first taken apart on CRLF (the unpipelined fast path): anything
    # that is not exactly one canonical command must fall through to the exact rules.
    assert run([stream], per_read=True) == reference(stream)
    assert parse_all(stream) == reference(stream)
    assert parse_bytewise(stream) == reference(stream)


def test_a_single_command_read_still_meets_the_limits():
    # parse() splits a one-command read without buffering it: the bulk length limit applies
    # all the same, as does the state of a parser that is mid-command.
    stream = pack("SET", "k", "x" * 20)
    assert run([stream], per_read=True, max_bulk_len=10) == reference(stream, max_bulk=10)
    assert reference(stream, max_bulk=10)[1] is not None
    head, tail = pack("GET", "k")[:5], pack("GET", "k")[5:]
    assert run([head, tail, pack("PING")], per_read=True) == ([[b"GET", b"k"], [b"PING"]], None)


@pytest.mark.parametrize("element", [b"+OK\r\n", b"(12\r\n", b"=8\r\ntxt:abcd\r\n", b":1\r\n",
                                     b"*1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n"])
def test_reply_types_behind_values_hiredis_might_misread_are_refused(element):
    # Values holding '+ ( = ~ | >' send a read through the checked drain, which must still
    # catch an element that is not a bulk string, anywhere in the pipeline.
    good = pack("SET", "k", "a=b>c+d(e") * 3
    stream = good + b"*3\r\n$3\r\nSET\r\n" + element + b"$1\r\nv\r\n" + pack("PING")
    message = ERR_EXPECTED_DOLLAR.format(chr(element[0]))
    assert parse_all(stream) == ([[b"SET", b"k", b"a=b>c+d(e"]] * 3, message)
    assert parse_all(stream) == reference(stream)
    # Sizes that would cancel out: a '=' element is longer than its bulk, a '+' one shorter.
    stream = good + b"*3\r\n$3\r\nSET\r\n=14\r\ntxt:0123456789\r\n+0123456789\r\n"
    assert parse_all(stream) == ([[b"SET", b"k", b"a=b>c+d(e"]] * 3,
                                 ERR_EXPECTED_DOLLAR.format("="))


def test_pipelines_with_suspect_values_cut_anywhere():
    commands = [[b"SET", b"key:%d" % i, b"VX=[5V>_X^b?+(O~K|" * (i + 1)] for i in range(6)]
    commands.append([b"GET", b"x" * 2000])  # longer than the size table the walk uses
    stream = b"".join(pack(*c) for c in commands)
    for cut in range(len(stream) + 1):
        assert run([stream[:cut], stream[cut:]]) == (commands, None), cut
    # Redis never reads the two bytes after an argument: neither may the position checks.
    sloppy = b"*1\r\n$3\r\na=bXY" + pack("PING") + b"*1\r\n$3\r\n>>>??" + pack("PING")
    assert parse_all(sloppy) == ([[b"a=b"], [b"PING"], [b">>>"], [b"PING"]], None)


# ---------------------------------------------------------------------------- inline commands


@pytest.mark.parametrize("line, expected", [
    (b"PING", [b"PING"]),
    (b"  PING \t ", [b"PING"]),
    (b"SET a b", [b"SET", b"a", b"b"]),
    (b'SET a "b c"', [b"SET", b"a", b"b c"]),
    (b"SET a 'b c'", [b"SET", b"a", b"b c"]),
    (b'SET "" \'\'', [b"SET", b"", b""]),
    (b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\z"', [b"ECHO", b"\n\r\t\b\a\\\"z"]),
    (b'ECHO "\\x41\\x7a\\xff\\x00"', [b"ECHO", b"Az\xff\x00"]),
    (b'ECHO "\\x4g"', [b"ECHO", b"x4g"]),         # not two hex digits: \x is just "x"
    (b"ECHO 'it\\'s' 'a\\b'", [b"ECHO", b"it's", b"a\\b"]),  # only \' in single quotes
    (b'ECHO a"b c"d', None),                      # closing quote must end the token
    (b'ECHO a"b c"', [b"ECHO", b"ab c"]),         # but a quote may open mid-token
    (b'ECHO "a"\t"b"', [b"ECHO", b"a", b"b"]),
    (b'ECHO "a"\x0b"b"', [b"ECHO", b"a", b"b"]),  # isspace() after a quote includes \v
    (b"ECHO a\x0bb", [b"ECHO", b"a\x0bb"]),       # but \v does not end an unquoted token
    (b"ECHO a\rb", [b"ECHO", b"a", b"b"]),
    (b'ECHO "a\rb"', [b"ECHO", b"a\rb"]),
    (b"ECHO a\x00 b", [b"ECHO", b"a"]),           # the line is a C string: NUL ends it
    (b'ECHO "unterminated', None),
    (b"ECHO 'unterminated", None),
    (b'ECHO "a\\"', None),
    (b'set """test-key""" test-value', None),     # Redis's "Unbalanced number of quotes"
    (b"", []),
    (b" \t\x0b\x0c", []),
])
def test_split_args_follows_sdssplitargs(line, expected):
    assert split_args(line) == expected


def test_inline_commands():
    assert parse_all(b"PING\r\n") == ([[b"PING"]], None)
    assert parse_all(b"PING\n") == ([[b"PING"]], None)
    assert parse_all(b'SET a "b c"\r\nGET a\n') == ([[b"SET", b"a", b"b c"], [b"GET", b"a"]], None)
    assert parse_all(b"PING\r\r\n") == ([[b"PING"]], None)
    assert parse_all(b"PING") == ([], None)  # no newline yet


def test_empty_inline_lines_are_skipped():
    # Redis's "Handle an empty query".
    assert parse_all(b"\r\n" + pack("PING")) == ([[b"PING"]], None)
    assert parse_all(b"\n\n  \r\n\t\n" + b"PING\r\n") == ([[b"PING"]], None)


def test_unbalanced_quotes():
    assert_error(b"PING\r\nSET a \"b\r\nPING\r\n", ERR_UNBALANCED_QUOTES, [[b"PING"]])
    assert_error(b"ECHO 'x\n", ERR_UNBALANCED_QUOTES)


def test_non_array_type_bytes_start_inline_commands():
    # hiredis would read "~1..." as a set and ">1..." as a push; Redis sees inline commands.
    for marker in (b"~", b">", b"%", b"|", b"$", b"+", b":"):
        stream = pack("PING") + marker + b"1\r\n$1\r\na\r\n"
        expected = [[b"PING"], [marker + b"1"], [b"$1"], [b"a"]]
        assert parse_all(stream) == (expected, None), marker
        assert parse_bytewise(stream) == (expected, None), marker


def test_too_big_inline_request():
    assert parse_all(b"x" * PROTO_INLINE_MAX_SIZE) == ([], None)  # at the limit: still waits
    assert_error(b"PING\r\n" + b"x" * (PROTO_INLINE_MAX_SIZE + 1), ERR_TOO_BIG_INLINE, [[b"PING"]])
    parser = RequestParser()
    assert run([b"x" * 40000, b"y" * 40000], parser) == ([], ERR_TOO_BIG_INLINE)
    # A long line is fine when its newline arrives with it.
    long_line = b"ECHO " + b"z" * 100_000 + b"\r\n"
    assert parse_all(long_line) == ([[b"ECHO", b"z" * 100_000]], None)


# ---------------------------------------------------------------------------- malformed headers


@pytest.mark.parametrize("stream, message", [
    # Redis's own protocol tests (tests/unit/protocol.tcl).
    (b"*20000000\r\n", ERR_INVALID_MULTIBULK),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", ERR_INVALID_BULK),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", ERR_INVALID_BULK),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", ERR_INVALID_BULK),
    (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
    # Numbers must be what string2ll accepts.
    (b"*abc\r\n", ERR_INVALID_MULTIBULK),
    (b"*\r\n", ERR_INVALID_MULTIBULK),
    (b"*01\r\n", ERR_INVALID_MULTIBULK),
    (b"*-0\r\n", ERR_INVALID_MULTIBULK),
    (b"*+1\r\n", ERR_INVALID_MULTIBULK),
    (b"* 1\r\n", ERR_INVALID_MULTIBULK),
    (b"*1 \r\n", ERR_INVALID_MULTIBULK),
    (b"*99999999999999999999\r\n", ERR_INVALID_MULTIBULK),
    (b"*1\r\n$\r\n", ERR_INVALID_BULK),
    (b"*1\r\n$03\r\nfoo\r\n", ERR_INVALID_BULK),
    (b"*1\r\n$+3\r\nfoo\r\n", ERR_INVALID_BULK),
    (b"*1\r\n$-1\r\n", ERR_INVALID_BULK),
    (b"*1\r\n$-0\r\n", ERR_INVALID_BULK),
    (b"*1\r\n$3 \r\nfoo\r\n", ERR_INVALID_BULK),
    # RESP types hiredis would happily read as array elements.
    (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
    (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n_\r\n", "Protocol error: expected '$', got '_'"),
    (b"*1\r\n(12\r\n", "Protocol error: expected '$', got '('"),
    (b"*1\r\n,1.5\r\n", "Protocol error: expected '$', got ','"),
    (b"*1\r\n#t\r\n", "Protocol error: expected '$', got '#'"),
    (b"*1\r\n=8\r\ntxt:PING\r\n", "Protocol error: expected '$', got '='"),
    (b"*1\r\n-ERR x\r\n", "Protocol error: expected '$', got '-'"),
    (b"*1\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'"),
    (b"*1\r\n%1\r\n$1\r\na\r\n$1\r\nb\r\n", "Protocol error: expected '$', got '%'"),
    (b"*1\r\n|1\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", "Protocol error: expected '$', got '|'"),
    (b"*2\r\n$1\r\na\r\n\r\n", "Protocol error: expected '$', got '\r'"),
    (b"*1\r\n\xff\r\n", "Protocol error: expected '$', got '\udcff'"),
])
def test_malformed_requests_get_redis_error_texts(stream, message):
    assert_error(stream, message)
    assert_error(pack("PING") + stream, message, [[b"PING"]])


def test_expected_dollar_error_encodes_like_redis():
    # Redis turns CR/LF in an error into spaces and sends other bytes raw.
    assert encode_error("ERR " + ERR_EXPECTED_DOLLAR.format("\r")) == (
        b"-ERR Protocol error: expected '$', got ' '\r\n")
    assert encode_error("ERR " + ERR_EXPECTED_DOLLAR.format("\udcff")) == (
        b"-ERR Protocol error: expected '$', got '\xff'\r\n")


def test_too_big_count_strings():
    stream = b"*" + b"1" * (PROTO_INLINE_MAX_SIZE + 1)
    assert_error(stream, ERR_TOO_BIG_MBULK_COUNT)
    stream = b"*1\r\n$" + b"1" * (PROTO_INLINE_MAX_SIZE + 1)
    assert_error(stream, ERR_TOO_BIG_BULK_COUNT)
    assert parse_all(b"*1\r\n$" + b"1" * 100) == ([], None)  # short: just wait


# ---------------------------------------------------------------------------- limits


def test_bulk_over_limit_is_refused_on_its_header_alone():
    assert parse_all(b"*1\r\n$4000000000\r\n") == ([], ERR_INVALID_BULK)
    parser = RequestParser(max_bulk_len=10)
    assert run([pack("SET", "k", "x" * 10)], parser) == ([[b"SET", b"k", b"x" * 10]], None)
    parser = RequestParser(max_bulk_len=10)
    assert run([b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\n"], parser) == ([], ERR_INVALID_BULK)
    assert parser.buffered == 0
    # Also when the oversized command is complete and pipelined behind good ones.
    stream = pack("PING") + pack("SET", "k", "x" * 11)
    assert run([stream], max_bulk_len=10) == ([[b"PING"]], ERR_INVALID_BULK)


def test_multibulk_count_over_limit():
    assert parse_all(b"*1048577\r\n") == ([], ERR_INVALID_MULTIBULK)
    assert parse_all(b"*1048576\r\n") == ([], None)
    assert run([pack("PING") + pack("a", "b", "c")], max_multibulk_len=2) == (
        [[b"PING"]], ERR_INVALID_MULTIBULK)
    assert run([pack("a", "b")], max_multibulk_len=2) == ([[b"a", b"b"]], None)


def test_huge_counts_never_reach_an_allocation():
    # hiredis allocates an array when it reads the header (and a list of 10**9 slots takes a
    # second to free): such headers must be judged before hiredis sees them.
    for count in (10**9, 4 * 10**9, 2**32, 2**63 - 1):
        started = time.perf_counter()
        assert parse_all(pack("PING") + b"*%d\r\n" % count) == ([[b"PING"]], ERR_INVALID_MULTIBULK)
        assert time.perf_counter() - started < 0.5
    for marker in (b"~", b">", b"|"):
        started = time.perf_counter()
        stream = pack("PING") + b"*1\r\n" + marker + b"1000000000\r\n"
        assert parse_all(stream) == ([[b"PING"]], ERR_EXPECTED_DOLLAR.format(marker.decode()))
        assert time.perf_counter() - started < 0.5


def test_commands_with_many_arguments():
    # Counts of five digits or more skip hiredis (see above); the result is the same.
    args = [b"MSET"] + [b"k%d" % i for i in range(30_000)]
    stream = pack(*args) + pack("PING")
    assert parse_all(stream) == ([args, [b"PING"]], None)
    chunks = [stream[i:i + 50_000] for i in range(0, len(stream), 50_000)]
    assert run(chunks) == ([args, [b"PING"]], None)
    assert run([stream], max_multibulk_len=30_000) == ([], ERR_INVALID_MULTIBULK)


def test_limits_can_change_after_construction():
    parser = RequestParser()
    parser.max_bulk_len = 5
    assert parser.max_bulk_len == 5
    assert run([pack("SET", "k", "123456")], parser) == ([], ERR_INVALID_BULK)
    parser = RequestParser()
    assert parser.commands() == []
    parser.feed(pack("SET", "k", "123456"))
    assert parser.commands() == [[b"SET", b"k", b"123456"]]
    parser.max_multibulk_len = 2
    parser.feed(pack("SET", "k", "v"))
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.commands()


def test_query_buffer_limit():
    parser = RequestParser(max_query_buffer=1000)
    parser.feed(b"*2\r\n$3\r\nSET\r\n$5000\r\n" + b"x" * 900)
    assert parser.commands() == []
    parser.feed(b"x" * 200)
    with pytest.raises(ProtocolError) as info:
        parser.commands()
    assert str(info.value).startswith("Protocol error: client query buffer of ")
    assert "client-query-buffer-limit (1000 bytes)" in str(info.value)
    # Inline garbage counts too; complete commands do not (they are not held).
    assert run([b"x" * 1001], max_query_buffer=1000)[1].startswith(
        "Protocol error: client query buffer")
    many = b"".join(pack("SET", f"k{i}", "v" * 50) for i in range(100))
    assert len(run([many], max_query_buffer=1000)[0]) == 100


# ---------------------------------------------------------------------------- after an error


def test_commands_before_a_protocol_error_are_delivered():
    stream = pack("SET", "a", "1") + b"PING\r\n" + pack("GET", "a") + b"*1\r\n$x\r\n" + pack("X")
    parser = RequestParser()
    parser.feed(stream)
    with pytest.raises(ProtocolError) as info:
        parser.commands()
    assert str(info.value) == ERR_INVALID_BULK
    assert info.value.commands == [[b"SET", b"a", b"1"], [b"PING"], [b"GET", b"a"]]
    # The parser is dead now: same error, no commands run twice, input ignored.
    parser.feed(pack("PING"))
    with pytest.raises(ProtocolError) as again:
        parser.commands()
    assert str(again.value) == ERR_INVALID_BULK and again.value.commands == []
    assert parser.buffered == 0


def test_next_command_delivers_then_raises():
    parser = RequestParser()
    parser.feed(pack("A") + pack("B") + b"*1\r\n+C\r\n")
    assert parser.next_command() == [b"A"]
    assert parser.next_command() == [b"B"]
    for _ in range(2):
        with pytest.raises(ProtocolError, match=re.escape("expected '$', got '+'")):
            parser.next_command()


def test_next_command_and_commands_mix():
    parser = RequestParser()
    assert parser.next_command() is None
    parser.feed(pack("A") + pack("B") + pack("C"))
    assert parser.next_command() == [b"A"]
    parser.feed(pack("D"))
    assert parser.commands() == [[b"B"], [b"C"], [b"D"]]
    assert parser.next_command() is None


def test_error_after_queued_commands_via_commands():
    parser = RequestParser()
    parser.feed(pack("A") + pack("B") + b"*x\r\n")
    assert parser.next_command() == [b"A"]
    with pytest.raises(ProtocolError) as info:
        parser.commands()
    assert info.value.commands == [[b"B"]]


# ---------------------------------------------------------------------------- real clients


def test_redis_py_packers_round_trip():
    from redis.connection import Connection, PythonRespSerializer

    conn = Connection()  # packs without connecting
    args = ("SET", "ключ", b"v\r\n\x00", 12, 1.5, "x" * 10_000)
    expected = [b"SET", "ключ".encode(), b"v\r\n\x00", b"12", b"1.5", b"x" * 10_000]
    stream = b"".join(conn.pack_command(*args))
    assert parse_all(stream) == ([expected], None)
    pipeline = b"".join(conn.pack_commands([args, ("GET", "k"), ("PING",)]))
    assert parse_bytewise(pipeline) == ([expected, [b"GET", b"k"], [b"PING"]], None)
    python_packer = PythonRespSerializer(6000, conn.encoder.encode)  # splits big args
    stream = b"".join(python_packer.pack(*args))
    assert run([stream[i:i + 777] for i in range(0, len(stream), 777)]) == ([expected], None)


def test_hiredis_pack_command_round_trip():
    args = (b"HSET", b"h", b"f\r\n", b"", b"\x00" * 3)
    assert parse_all(hiredis.pack_command(args)) == ([list(args)], None)


# ---------------------------------------------------------------------------- property tests

_args = st.lists(st.binary(max_size=40) | st.sampled_from(BINARY_VALUES), min_size=1, max_size=6)
_token = st.text(alphabet="abcXYZ019:-_.*$", min_size=1, max_size=8).map(str.encode)
_piece = st.one_of(
    _args.map(lambda a: pack(*a)),
    st.lists(_token, min_size=1, max_size=4).map(lambda t: b" ".join(t) + b"\r\n"),
    st.lists(_token, min_size=1, max_size=3).map(lambda t: b'"' + b" ".join(t) + b'"\n'),
    st.sampled_from([b"\r\n", b"\n", b"*0\r\n", b"*-1\r\n", b" \t\r\n"]),
)
_garbage = st.sampled_from([
    b"*1\r\n+PING\r\n", b"*2\r\n$1\r\na\r\n:1\r\n", b"*x\r\n", b"*1\r\n$-1\r\n",
    b'ECHO "x\r\n', b"*1\r\n$100\r\n", b"*1\r\n*1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n",
    b"*1\r\n$3\rxfoo\r\n", b"*1\r\n$3\r\nfooXY", b"*-7\r\n", b"*1\r\n$03\r\nfoo\r\n",
])


@st.composite
def _stream_and_cuts(draw):
    pieces = draw(st.lists(_piece | _garbage, max_size=12))
    stream = b"".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    return stream, cuts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream_and_cuts())
def test_any_chunking_agrees_with_the_reference(case):
    stream, cuts = case
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    expected = reference(stream)
    assert run(chunks) == expected
    assert run(chunks, next_command=True) == expected
    assert run(chunks, per_read=True) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(_args, min_size=1, max_size=30), st.integers(1, 64))
def test_pipelines_split_into_equal_reads(commands, size):
    stream = b"".join(pack(*a) for a in commands)
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    assert run(chunks) == ([list(a) for a in commands], None)
    assert run(chunks, per_read=True) == ([list(a) for a in commands], None)


# ---------------------------------------------------------------------------- encoder


def test_reply_constants():
    assert (OK, PONG, NULL2, NULL3, NULL_ARRAY2, EMPTY_ARRAY) == (
        b"+OK\r\n", b"+PONG\r\n", b"$-1\r\n", b"_\r\n", b"*-1\r\n", b"*0\r\n")
    assert encode_null(2) == b"$-1\r\n" and encode_null(3) == b"_\r\n"


@pytest.mark.parametrize("value", [b"", b"hello world", b"\r\n", b"x" * 1023, b"x" * 1024,
                                   b"y" * 100_000, bytearray(b"ba"), memoryview(b"mv")])
def test_encode_bulk(value):
    assert encode_bulk(value) == b"$%d\r\n%s\r\n" % (len(value), bytes(value))


def test_blob_string_examples_from_the_spec():
    assert encode_bulk(b"hello world") == b"$11\r\nhello world\r\n"
    assert encode_bulk(b"") == b"$0\r\n\r\n"


@pytest.mark.parametrize("n", [0, 1, -1, -2, 1234, 9998, 9999, 10000, 2**63 - 1, -2**63])
def test_encode_int(n):
    assert encode_int(n) == b":%d\r\n" % n


def test_encode_int_spec_example_and_bools():
    assert encode_int(1234) == b":1234\r\n"
    assert encode_int(True) == b":1\r\n" and encode_int(False) == b":0\r\n"


def test_encode_error_and_simple():
    assert encode_error("ERR this is the error description") == (
        b"-ERR this is the error description\r\n")
    assert encode_error("ERR bad\r\nthing\n") == b"-ERR bad  thing \r\n"  # framing stays intact
    assert encode_error("-WRONGTYPE x") == b"-WRONGTYPE x\r\n"
    assert encode_error("") == b"-ERR\r\n"
    assert encode_error("ERR caf\u00e9") == "-ERR caf\u00e9\r\n".encode()
    assert encode_simple("hello world") == b"+hello world\r\n"
    assert encode_simple("a\r\nb") == b"+a  b\r\n"


@pytest.mark.parametrize("value, text", [
    (1.23, b"1.23"), (1.5, b"1.5"), (-1.5, b"-1.5"), (0.1, b"0.1"), (3.0, b"3"), (-3.0, b"-3"),
    (0.0, b"0"), (-0.0, b"-0"), (math.inf, b"inf"), (-math.inf, b"-inf"), (math.nan, b"nan"),
    (1e-7, b"1e-7"), (1.5e-7, b"1.5e-7"), (0.000123, b"0.000123"), (1.23e-5, b"1.23e-5"),
    (123456.789, b"123456.789"), (1e20, b"1e+20"), (-2.5e100, b"-2.5e+100"),
    (1.2345678901234567e19, b"12345678901234567000"), (1e300, b"1e+300"),
    (4611686018427387904.0, b"4611686018427387904"),  # the last integer d2string keeps whole
    (9.223372036854776e18, b"9223372036854776000"), (5e-324, b"5e-324"),
    (2**53 + 0.0, b"9007199254740992"), (0.30000000000000004, b"0.30000000000000004"),
])
def test_format_double_like_redis(value, text):
    assert format_double(value) == text


@settings(max_examples=300)
@given(st.floats(allow_nan=False))
def test_format_double_round_trips(value):
    assert float(format_double(value)) == value


def test_double_encoding():
    assert encode_double(1.23, 3) == b",1.23\r\n"
    assert encode_double(1.23, 2) == b"$4\r\n1.23\r\n"
    assert encode(math.inf, 3) == b",inf\r\n" and encode(-math.inf, 3) == b",-inf\r\n"
    assert encode(math.nan, 3) == b",nan\r\n" and encode(math.nan, 2) == b"$3\r\nnan\r\n"


class OrderedSet(set):
    """A set that remembers insertion order (what a command with a fixed order would use)."""

    def __init__(self, items=()):
        super().__init__()
        self._items = list(items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


SPEC_CASES = [
    # (value, RESP3 bytes from the RESP3 spec, RESP2 downgrade)
    (b"hello world", b"$11\r\nhello world\r\n", b"$11\r\nhello world\r\n"),
    (SimpleString("hello world"), b"+hello world\r\n", b"+hello world\r\n"),
    (ErrorReply("ERR this is the error description"),
     b"-ERR this is the error description\r\n", b"-ERR this is the error description\r\n"),
    (1234, b":1234\r\n", b":1234\r\n"),
    (None, b"_\r\n", b"$-1\r\n"),
    (NULL_ARRAY, b"_\r\n", b"*-1\r\n"),
    (1.23, b",1.23\r\n", b"$4\r\n1.23\r\n"),
    (True, b"#t\r\n", b":1\r\n"),
    (False, b"#f\r\n", b":0\r\n"),
    (Verbatim("Some string"), b"=15\r\ntxt:Some string\r\n", b"$11\r\nSome string\r\n"),
    (Verbatim(b"# Title", "mkd"), b"=11\r\nmkd:# Title\r\n", b"$7\r\n# Title\r\n"),
    (BigNumber(3492890328409238509324850943850943825024385),
     b"(3492890328409238509324850943850943825024385\r\n",
     b"$43\r\n3492890328409238509324850943850943825024385\r\n"),
    (2**64, b"(18446744073709551616\r\n", b"$20\r\n18446744073709551616\r\n"),
    ([1, 2, 3], b"*3\r\n:1\r\n:2\r\n:3\r\n", b"*3\r\n:1\r\n:2\r\n:3\r\n"),
    ([[1, b"hello", 2], False], b"*2\r\n*3\r\n:1\r\n$5\r\nhello\r\n:2\r\n#f\r\n",
     b"*2\r\n*3\r\n:1\r\n$5\r\nhello\r\n:2\r\n:0\r\n"),
    ({SimpleString("first"): 1, SimpleString("second"): 2},
     b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", b"*4\r\n+first\r\n:1\r\n+second\r\n:2\r\n"),
    (OrderedSet([SimpleString("orange"), SimpleString("apple"), True, 100, 999]),
     b"~5\r\n+orange\r\n+apple\r\n#t\r\n:100\r\n:999\r\n",
     b"*5\r\n+orange\r\n+apple\r\n:1\r\n:100\r\n:999\r\n"),
    (Push([SimpleString("message"), SimpleString("somechannel"),
           SimpleString("this is the message")]),
     b">3\r\n+message\r\n+somechannel\r\n+this is the message\r\n",
     b"*3\r\n+message\r\n+somechannel\r\n+this is the message\r\n"),
    (Attribute([2039123, 9543892], {SimpleString("key-popularity"): {b"a": 0.1923, b"b": 0.0012}}),
     b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
     b"*2\r\n:2039123\r\n:9543892\r\n",
     b"*2\r\n:2039123\r\n:9543892\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ({}, b"%0\r\n", b"*0\r\n"),
    ("h\u00e9", b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
    ([Encoded(b"+QUEUED\r\n"), Encoded(b":1\r\n")], b"*2\r\n+QUEUED\r\n:1\r\n",
     b"*2\r\n+QUEUED\r\n:1\r\n"),
    ((b"a", None), b"*2\r\n$1\r\na\r\n_\r\n", b"*2\r\n$1\r\na\r\n$-1\r\n"),
    (frozenset([b"x"]), b"~1\r\n$1\r\nx\r\n", b"*1\r\n$1\r\nx\r\n"),
    (MappingProxyType({"k": [b"v"]}), b"%1\r\n$1\r\nk\r\n*1\r\n$1\r\nv\r\n",
     b"*2\r\n$1\r\nk\r\n*1\r\n$1\r\nv\r\n"),
    ([ErrorReply("ERR a\r\nb"), SimpleString("x")], b"*2\r\n-ERR a  b\r\n+x\r\n",
     b"*2\r\n-ERR a  b\r\n+x\r\n"),
]


@pytest.mark.parametrize("value, resp3, resp2", SPEC_CASES, ids=lambda v: repr(v)[:40])
def test_encode_matches_the_spec(value, resp3, resp2):
    assert encode(value, 3) == resp3
    assert encode(value, 2) == resp2


def test_nested_maps_flatten_for_resp2():
    docs = {"get": {"summary": "Returns the value", "arguments": [{"name": "key", "type": "key"}],
                    "history": OrderedSet([["1.0.0", "Added"]])}}
    assert encode(docs, 3) == (
        b"%1\r\n$3\r\nget\r\n%3\r\n$7\r\nsummary\r\n$17\r\nReturns the value\r\n"
        b"$9\r\narguments\r\n*1\r\n%2\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n"
        b"$7\r\nhistory\r\n~1\r\n*2\r\n$5\r\n1.0.0\r\n$5\r\nAdded\r\n")
    assert encode(docs, 2) == (
        b"*2\r\n$3\r\nget\r\n*6\r\n$7\r\nsummary\r\n$17\r\nReturns the value\r\n"
        b"$9\r\narguments\r\n*1\r\n*4\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n"
        b"$7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n1.0.0\r\n$5\r\nAdded\r\n")


def test_markers():
    assert isinstance(SimpleString("x"), str) and isinstance(ErrorReply("x"), str)
    assert isinstance(BigNumber(5), int) and isinstance(Push([1]), list)
    assert Verbatim("a") == Verbatim("a") and Verbatim("a") != Verbatim("a", "mkd")
    with pytest.raises(ValueError):
        Verbatim("a", "markdown")
    assert not NULL_ARRAY and repr(NULL_ARRAY) == "NULL_ARRAY"
    with pytest.raises(TypeError, match="cannot encode object"):
        encode(object(), 2)
    with pytest.raises(TypeError):
        encode([1, object()], 3)


# ---------------------------------------------------------------------------- round trips


def decode(data: bytes, protocol: int):
    """Decode one reply with hiredis, checking it uses every byte."""
    reader = hiredis.Reader(notEnoughData=Ellipsis)
    reader.feed(data)
    value = reader.gets()
    assert value is not Ellipsis and reader.gets() is Ellipsis and not reader.has_data()
    return value


def expected_decoding(value, protocol: int):
    """What hiredis should give back for ``encode(value, protocol)``."""
    resp3 = protocol == 3
    if value is None:
        return None
    if isinstance(value, bool):
        return value if resp3 else int(value)
    if isinstance(value, int):
        return value if -2**63 <= value < 2**63 else str(value).encode()
    if isinstance(value, float):
        return value if resp3 else format_double(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        if resp3:
            return {expected_decoding(k, protocol): expected_decoding(v, protocol)
                    for k, v in value.items()}
        return [expected_decoding(x, protocol) for pair in value.items() for x in pair]
    return [expected_decoding(x, protocol) for x in value]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.integers(2**63, 2**80),
    st.floats(), st.binary(max_size=30), st.text(max_size=10))
_keys = st.one_of(st.binary(max_size=8), st.integers(-1000, 1000))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                            st.dictionaries(_keys, inner, max_size=4),
                            st.frozensets(st.binary(max_size=5), max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values, st.sampled_from([2, 3]))
def test_hiredis_decodes_what_we_encode(value, protocol):
    decoded = decode(encode(value, protocol), protocol)
    assert same(decoded, expected_decoding(value, protocol)), (value, decoded)


def test_resp3_types_decode_with_hiredis():
    assert decode(encode(Verbatim("Some string"), 3), 3) == b"Some string"
    assert decode(encode(BigNumber(10**30), 3), 3) == b"1" + b"0" * 30
    push = decode(encode(Push([b"message", b"ch", b"hi"]), 3), 3)
    assert isinstance(push, hiredis.PushNotification) and push == [b"message", b"ch", b"hi"]
    error = decode(encode(ErrorReply("WRONGTYPE no"), 3), 3)
    assert isinstance(error, hiredis.ReplyError) and str(error) == "WRONGTYPE no"
    assert decode(encode(SimpleString("OK"), 3), 3) == b"OK"
    reader = hiredis.Reader(notEnoughData=Ellipsis)
    reader.feed(encode(Attribute(b"v", {b"ttl": 3600}), 3))
    assert reader.gets() == [b"ttl", 3600] and reader.gets() == b"v"
    assert decode(encode(NULL_ARRAY, 2), 2) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=50), min_size=1, max_size=8))
def test_an_encoded_array_of_bulks_is_a_valid_request(args):
    # The encoder's array of blob strings is exactly the request syntax: parse it back.
    assert parse_all(encode(args, 2)) == ([args], None)
