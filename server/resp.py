"""A sans-IO RESP codec: request bytes in, argument lists out; Python values in, reply bytes out.

Theory of operation
===================

Nothing here touches a socket, a loop or a clock.  The connection code owns the I/O: it hands
every chunk it reads to :meth:`RequestParser.feed`, asks :meth:`RequestParser.commands` for
whatever complete commands that made available, runs them, and writes the ``bytes`` the
``encode*`` helpers return.  Everything in between is plain data, so the tests drive the codec
byte by byte without a server.

Requests
--------
Redis accepts two request syntaxes on the same stream and chooses per command by its first
byte: ``*`` starts a *multibulk* command (``*N\\r\\n`` then N times ``$len\\r\\n<bytes>\\r\\n``),
anything else is an *inline* command, one line split with the quoting rules of Redis's
``sdssplitargs``.  We follow ``processInputBuffer`` to the letter, including its error texts,
because clients and tests match on them.  The parser keeps the unparsed bytes in one buffer
and a position into it, and takes each multibulk command by one of three routes:

* **Fast path.**  A short read holding a single ``*`` (one command, the unpipelined case),
  arriving at an idle parser (``parse``, which a connection calls per read), is split on
  CRLF: when the first part is ``*N`` for the N arguments that follow and every argument is
  preceded by its own ``$len``, joining the parts back gives exactly the canonical encoding of
  those arguments, which Redis parses one way only.  Anything else (a CRLF in a
  value, a sloppy client, half a command) falls through to what follows, having cost one split.
  Otherwise hiredis's C ``Reader`` is fed the rest of the buffer and drained.  (Not if
  the bytes hold an aggregate header of five digits or more: hiredis allocates a list of that
  many slots the moment it reads one, and a ``*1000000000`` costs a second of CPU to free, so
  such reads go to the slow path, which checks the count against the limit first.)  hiredis
  parses *replies*, so it accepts more than a server may: ``+``, ``(`` and ``=`` elements come
  back as ``bytes`` just like ``$`` bulk strings, ``~`` and ``|`` aggregates as lists, and
  ``$-1``, ``:1`` or nested arrays as ``None``, ``int`` or ``list`` elements.  Its replies are
  taken as they are when every one is a non-empty ``list`` of ``bytes`` and the bytes contain
  none of ``+ ( = ~ | >`` at all (six ``memchr`` scans per read, plus a type check per
  argument): then no element can have been anything but a bulk string nor a command anything
  but an array, and as hiredis reads numbers by Redis's own ``string2ll`` rules (no sign,
  spaces or leading zeros), the commands are exactly what Redis would have parsed.  What is
  left is whether the read ended between two commands: hiredis consumes a header before its
  elements arrive, so ``has_data()`` cannot tell.  A sentinel can: an empty RESP3 push
  (``>0``) fed after the input comes straight back only if hiredis was between replies.  If
  not, the unfinished command starts where the complete ones end, which their argument lengths
  give with a few C-level sums.  When the bytes do hold one of those six (base64 and random
  values often do), each reply is instead checked against the bytes while the reader is
  drained: ``*`` before the command and ``$`` before every argument, where the canonical
  encoding puts them.  A header hiredis accepted is exactly its digits, so each position
  follows from the lengths alone and by induction every type byte is checked; the positions
  end at the end of the read, or where the unfinished command starts.
* **Exact walk.**  Otherwise (garbage, a reply type, a long read) the batch is checked
  command by command against the bytes the same way, plus the limits.  This yields the offset
  where hiredis's answer stops being usable.
* **Slow path.**  From that offset one command is parsed in Python with Redis's own rules, and
  the fast path resumes after it.  The Python parser is resumable: a half-received command
  keeps its finished arguments and its pending bulk length, so a 30 MB value arriving in
  64 KiB reads costs O(1) per read, and the headers of an incomplete command are checked the
  moment they arrive (``*1\\r\\n$4000000000\\r\\n`` fails at once rather than after 4 GB).

hiredis never keeps a partial command across reads: a command that does not complete in one
read belongs to the Python parser (the ``Reader`` that saw it is replaced), so no byte is held
twice, and a drained ``Reader`` is reused.  A degenerate stream that would make us restart
hiredis over and over (inline and multibulk interleaved, ``*0`` everywhere) is finished in
Python, which is linear.  The Python parser is also the reference for the rules: anything
hiredis returns is only ever used when it is provably what the Python parser would return.

Errors.  A malformed request raises :class:`ProtocolError`, whose text is what Redis replies
after ``-ERR`` (``Protocol error: invalid bulk length``...).  Like Redis, which answers and then
closes such a client, the parser is then dead: it ignores further input and raises the same
error again.  Commands that were complete *before* the bad bytes are still delivered: by
``next_command`` one at a time before it raises, and by ``commands`` on the exception's
``commands`` attribute (the list the call would otherwise have returned), so the server runs
and answers them, then sends the error and closes, which is exactly Redis's order.

Replies
-------
Hot replies are constants or one-line helpers with caches (``OK``, ``encode_bulk``,
``encode_int``).  :func:`encode` maps Python values onto RESP2 or RESP3 for the generic case:
``None`` → null, ``bytes``/``str`` → blob string, ``int`` → number, ``bool``, ``float``,
``list``/``tuple`` → array, ``dict`` → map, ``set`` → set, plus marker classes for the types
Python lacks (:class:`SimpleString`, :class:`ErrorReply`, :class:`Verbatim`, :class:`Push`,
:class:`BigNumber`, :class:`Attribute`, :data:`NULL_ARRAY`, :class:`Encoded`).  RESP2 gets
Redis's downgrades: maps flatten to ``k1 v1 k2 v2`` arrays, sets and pushes become arrays,
booleans ``:1``/``:0``, doubles and big numbers bulk strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence, Set
from itertools import chain
from operator import itemgetter
from types import MappingProxyType

import hiredis

__all__ = [
    "ProtocolError", "RequestParser", "split_args", "PROTO_INLINE_MAX_SIZE",
    "ERR_INVALID_MULTIBULK", "ERR_INVALID_BULK", "ERR_TOO_BIG_MBULK_COUNT",
    "ERR_TOO_BIG_BULK_COUNT", "ERR_TOO_BIG_INLINE", "ERR_UNBALANCED_QUOTES",
    "ERR_EXPECTED_DOLLAR", "ERR_QUERY_BUFFER",
    "OK", "PONG", "QUEUED", "NULL2", "NULL3", "NULL_ARRAY2", "EMPTY_ARRAY", "ZERO", "ONE",
    "BULK_HEADERS",
    "encode", "encode_bulk", "encode_int", "encode_error", "encode_simple", "encode_null",
    "encode_double", "format_double",
    "SimpleString", "ErrorReply", "Verbatim", "Push", "BigNumber", "Attribute", "Encoded",
    "NULL_ARRAY",
]

# ---------------------------------------------------------------------------- request errors

#: Redis's ``PROTO_INLINE_MAX_SIZE``: the longest line (inline command, or a ``*``/``$`` header)
#: we wait for before calling it garbage.
PROTO_INLINE_MAX_SIZE = 64 * 1024

# The texts Redis's networking.c sends (after "-ERR ").
ERR_INVALID_MULTIBULK = "Protocol error: invalid multibulk length"
ERR_INVALID_BULK = "Protocol error: invalid bulk length"
ERR_TOO_BIG_MBULK_COUNT = "Protocol error: too big mbulk count string"
ERR_TOO_BIG_BULK_COUNT = "Protocol error: too big bulk count string"
ERR_TOO_BIG_INLINE = "Protocol error: too big inline request"
ERR_UNBALANCED_QUOTES = "Protocol error: unbalanced quotes in request"
ERR_EXPECTED_DOLLAR = "Protocol error: expected '$', got '{}'"
# Redis closes such a client without a word; we say why, naming the setting to raise.
ERR_QUERY_BUFFER = ("Protocol error: client query buffer of {} bytes exceeds "
                    "client-query-buffer-limit ({} bytes)")


class ProtocolError(Exception):
    """The client broke the protocol; the connection must be answered and closed.

    ``str(exc)`` is the text Redis puts after ``-ERR``.  ``commands`` holds the commands that
    were complete before the bad bytes (only ever non-empty when raised by
    :meth:`RequestParser.commands`): run them, answer them, then send the error.
    """

    def __init__(self, message: str, commands: list[list[bytes]] | None = None) -> None:
        super().__init__(message)
        self.commands: list[list[bytes]] = [] if commands is None else commands


class _Fail(Exception):
    """Internal: unwinds the parse loop with a Redis error text."""


class _Untrusted(Exception):
    """Internal: hiredis returned something a request cannot be; check it the slow way."""


def _strict_int(digits) -> int | None:
    """Redis's ``string2ll``: what headers may say.  No '+', spaces, leading zeros or "-0"."""
    if not 0 < len(digits) <= 20:
        return None
    if digits[0] == 45:  # '-'
        body = digits[1:]
        if not body:
            return None
    else:
        body = digits
    if not body.isdigit() or (body[0] == 48 and len(digits) > 1):  # '0' only as "0" itself
        return None
    value = int(digits)
    if not -(1 << 63) <= value < (1 << 63):
        return None
    return value


def _byte_char(byte: int) -> str:
    """One request byte for an error text; bytes >= 0x80 survive a surrogateescape encode."""
    return chr(byte) if byte < 128 else chr(0xDC00 + byte)


# ---------------------------------------------------------------------------- inline commands

_ISSPACE = frozenset(b" \t\n\r\x0b\x0c")     # C isspace(): what separates and follows tokens
_TOKEN_END = frozenset(b" \n\r\t")           # what ends an unquoted token (NUL ends the line)
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_args(line: bytes) -> list[bytes] | None:
    """Split one inline request line the way Redis's ``sdssplitargs`` does; None = unbalanced.

    Double quotes take ``\\n \\r \\t \\b \\a \\xHH`` and ``\\<any>`` escapes, single quotes only
    ``\\'``; a closing quote must be followed by a space or the end; a quote may open mid-token
    (``a"b c"`` is one argument, ``ab c``).  The line is a C string to Redis, so a NUL ends it.
    """
    nul = line.find(0)
    if nul >= 0:
        line = line[:nul]
    if 34 not in line and 39 not in line and 11 not in line and 12 not in line:
        return line.split()  # ASCII whitespace minus \v \f: exactly Redis's separators here
    n = len(line)
    out: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return out
        cur = bytearray()
        in_dq = in_sq = False
        while True:
            c = line[i] if i < n else 0
            nxt = line[i + 1] if i + 1 < n else 0
            done = False
            if in_dq:
                if (c == 92 and nxt == 120 and i + 3 < n  # \xHH
                        and line[i + 2] in _HEX and line[i + 3] in _HEX):
                    cur.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and nxt:
                    i += 1
                    cur.append(_ESCAPES.get(nxt, nxt))
                elif c == 34:  # closing "
                    if nxt and nxt not in _ISSPACE:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif in_sq:
                if c == 92 and nxt == 39:
                    i += 1
                    cur.append(39)
                elif c == 39:  # closing '
                    if nxt and nxt not in _ISSPACE:
                        return None
                    done = True
                elif not c:
                    return None
                else:
                    cur.append(c)
            elif not c or c in _TOKEN_END:
                done = True
            elif c == 34:
                in_dq = True
            elif c == 39:
                in_sq = True
            else:
                cur.append(c)
            if i < n:
                i += 1
            if done:
                break
        out.append(bytes(cur))


# ---------------------------------------------------------------------------- request parser

_Reader = hiredis.Reader
_NO_DATA = object()   # hiredis's "need more bytes"; its default, False, is also a RESP3 reply (#f)
# Fed after the input (see "Fast path" above): only a '>' makes a push, and a batch with one
# is never trusted without the exact walk.
_SENTINEL = b">0\r\n"
_Push = hiredis.PushNotification
_HIREDIS_RESTARTS = 4  # per parse call; past this, a degenerate stream is finished in Python

# Single-command reads up to this size are split on CRLF (see parse()); the header lines of
# the canonical encoding, without their CRLF ("*0" never matches: Redis skips empty commands).
_SPLIT_MAX = 1024
_ARRAY_LINES = (None,) + tuple(b"*%d" % n for n in range(1, 512))
_bulk_line = tuple(b"$%d" % n for n in range(1024)).__getitem__
# Bytes that "$n\r\n" + n bytes + "\r\n" take, for n < 4096.
_BULK_SIZE = tuple(5 + n + len(str(n)) for n in range(4096))
# Decimal digits of n, for n < 100000: a canonical header's length without formatting it.
_DIGITS = b"".join(bytes([d]) * (10 ** d - (10 ** (d - 1) if d > 1 else 0)) for d in range(1, 6))


# Digits become '0', and the bytes that start an aggregate hiredis allocates at its header
# ('*', '~', '|', '>') become '*': then one literal search finds every large count.
_AGGREGATE_DIGITS = bytes.maketrans(b"0123456789~|>", b"0000000000***")
_LARGE_COUNT = re.compile(rb"\*00000").search


def _screen(data) -> tuple[bool, bool]:
    """Look at input before hiredis does: ``(unsafe, suspect)``.

    *suspect*: a byte hiredis might read as a string (``+ ( =``) or an aggregate (``~ | >``)
    where Redis would not; without one, only the sentinel can come back as a push.  *unsafe*:
    maybe an aggregate header of five digits or more, for which hiredis would allocate that
    many slots at once (``*1000000000`` costs a second to free): parse such input in Python,
    which checks the count against the limit first.  (Maps are dicts, built as they fill.)
    """
    suspect = (43 in data or 40 in data or 61 in data or 126 in data or 124 in data
               or 62 in data)
    if not suspect and not data.rfind(42) and 13 in data[:6]:
        return False, False  # one '*', the first byte, four digits at most: a common read
    return _LARGE_COUNT(data.translate(_AGGREGATE_DIGITS)) is not None, suspect


def _batch_size(batch: list[list[bytes]]) -> int:
    """Bytes that canonical ``*``/``$`` requests for ``batch`` take (C-level loops only)."""
    if not batch:
        return 0
    counts = list(map(len, batch))
    sizes = list(map(len, chain.from_iterable(batch)))
    total = 3 * len(counts) + 5 * len(sizes) + sum(sizes)
    try:
        return total + _digit_count(counts) + _digit_count(sizes)
    except IndexError:  # a length of 10000 or more
        return total + sum(len(str(n)) for n in counts) + sum(len(str(n)) for n in sizes)


def _digit_count(numbers: list[int]) -> int:
    if len(numbers) == 1:
        return _DIGITS[numbers[0]]
    return sum(itemgetter(*numbers)(_DIGITS))


class RequestParser:
    """Incremental RESP request parser: ``feed`` bytes, take complete commands.

    Each command is a non-empty ``list[bytes]`` (never decoded).  The limits may be changed at
    any time (CONFIG SET); they apply from the next header read.
    """

    __slots__ = ("_buf", "_reader", "_mb_left", "_bulklen", "_args", "_argbytes",
                 "_queue", "_error", "_max_bulk", "_max_mb", "_max_qbuf", "_fast_limit",
                 "_split_limit")

    def __init__(self, *, max_bulk_len: int = 32 * 1024 * 1024,
                 max_multibulk_len: int = 1024 * 1024,
                 max_query_buffer: int = 1024 * 1024 * 1024) -> None:
        self._buf: bytes | bytearray = b""  # input not parsed yet
        self._reader = _Reader(notEnoughData=_NO_DATA)  # always drained between calls
        self._mb_left = 0        # Python parser mid-command: arguments still to come...
        self._bulklen = -1       # ...the pending argument's length once its header is read...
        self._args: list[bytes] | None = None  # ...and the arguments read so far
        self._argbytes = 0
        self._queue: list[list[bytes]] = []    # parsed, not yet taken by next_command (reversed)
        self._error: str | None = None
        self._max_bulk = self._max_mb = self._fast_limit = self._split_limit = 0
        self._max_qbuf = max_query_buffer
        self.max_bulk_len = max_bulk_len
        self.max_multibulk_len = max_multibulk_len

    # ------------------------------------------------------------------ limits

    @property
    def max_bulk_len(self) -> int:
        """proto-max-bulk-len: the longest argument, checked on its ``$`` header."""
        return self._max_bulk

    @max_bulk_len.setter
    def max_bulk_len(self, value: int) -> None:
        self._max_bulk = int(value)
        self._update_fast_limit()

    @property
    def max_multibulk_len(self) -> int:
        """The most arguments one command may announce, checked on its ``*`` header."""
        return self._max_mb

    @max_multibulk_len.setter
    def max_multibulk_len(self, value: int) -> None:
        self._max_mb = int(value)
        self._update_fast_limit()

    @property
    def max_query_buffer(self) -> int:
        """client-query-buffer-limit: bytes a client may have us hold for an unfinished command."""
        return self._max_qbuf

    @max_query_buffer.setter
    def max_query_buffer(self, value: int) -> None:
        self._max_qbuf = int(value)

    def _update_fast_limit(self) -> None:
        # A trusted batch of B bytes cannot hold an argument longer than B, nor a command of
        # more than B/6 arguments (``$0\r\n\r\n`` each): below this size the fast path need not
        # look at the limits at all.
        self._fast_limit = min(self._max_bulk, 6 * self._max_mb)
        self._split_limit = min(self._fast_limit, _SPLIT_MAX)

    @property
    def buffered(self) -> int:
        """Bytes held for commands not complete yet (what the query buffer limit measures)."""
        return len(self._buf) + self._argbytes

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Append received bytes.  Parsing happens when commands are asked for."""
        buf = self._buf
        if self._error is not None:
            return  # a dead connection: nothing it sends matters any more
        if not buf:
            # The common case, a read holding whole commands, is parsed in place, no copy.
            self._buf = data if type(data) is bytes else bytes(data)
        elif type(buf) is bytes:
            buf = bytearray(buf)  # a partial command: grow it in place from now on
            buf += data
            self._buf = buf
        else:
            buf += data

    def parse(self, data: bytes) -> list[list[bytes]]:
        """``feed(data)`` then ``commands()``, as one call: what a connection does per read.

        A read that is exactly one canonical command into an idle parser (a client that does
        not pipeline) is split here without buffering it first; anything else takes the
        general path."""
        if (not self._buf and type(data) is bytes and not data.rfind(42)
                and len(data) <= self._split_limit
                and not self._mb_left and not self._queue and self._error is None):
            # ``not rfind(42)``: the read's only '*' is its first byte, so most likely it is one
            # whole command (no pipelining).  Joined back with CRLF the parts are the read, so
            # when every line is the canonical header of what follows, the read is exactly one
            # canonical command.
            parts = data.split(b"\r\n")
            args = parts[2:-1:2]
            try:
                if (not parts[-1] and parts[0] == _ARRAY_LINES[len(args)]
                        and parts[1:-1:2] == list(map(_bulk_line, map(len, args)))):
                    return [args]
            except IndexError:  # an argument of 1 KiB or more
                pass
        self.feed(data)
        return self.commands()

    def commands(self) -> list[list[bytes]]:
        """Every complete command buffered now, in order.

        Raises :class:`ProtocolError` on malformed input; its ``commands`` attribute carries the
        commands that were complete before the bad bytes (what this call would have returned).
        """
        raw = self._buf
        if (raw and raw[0] == 42 and not self._mb_left and self._error is None
                and not self._queue and len(raw) <= self._fast_limit):
            # The fast path of the theory of operation, inlined: this is the per-read hot path.
            # (A read of exactly one command is split by ``parse`` before it gets here.)
            suspect = (43 in raw or 40 in raw or 61 in raw or 126 in raw or 124 in raw
                       or 62 in raw)
            if ((suspect or raw.rfind(42) or 13 not in raw[:6])
                    and _LARGE_COUNT(raw.translate(_AGGREGATE_DIGITS)) is not None):
                return self._finish(self._parse(hiredis=False))  # see _screen()
            reader = self._reader
            reader.feed(raw)
            out: list = []
            append = out.append
            gets = reader.gets
            if suspect:
                return self._take_checked(raw, out)
            try:
                while True:
                    cmd = gets()
                    if cmd is _NO_DATA:
                        break
                    append(cmd)
                    if type(cmd) is not list or not cmd:
                        raise _Untrusted
                    for arg in cmd:
                        if type(arg) is not bytes:
                            raise _Untrusted
            except Exception:  # _Untrusted, or garbage
                return self._finish(self._parse(out, False, False))
            reader.feed(_SENTINEL)
            try:
                cmd = gets()
                at_end = type(cmd) is _Push and not cmd and gets() is _NO_DATA
            except Exception:
                at_end = False
            if not at_end:  # the read ended inside a command
                return self._finish(self._parse(out, True, False, True))
            self._buf = b""
            return out
        return self._finish(self._parse() if raw else [])

    def _take_checked(self, raw, out: list) -> list:
        """The fast path for a read with a byte hiredis might misread: drain the reader,
        checking each command's ``*`` and ``$`` bytes where its canonical encoding puts them."""
        append = out.append
        gets = self._reader.gets
        digits = _DIGITS
        bulk_size = _BULK_SIZE
        pos = 0  # where the next command starts, if every one so far is canonical
        try:
            while True:
                cmd = gets()
                if cmd is _NO_DATA:
                    break
                append(cmd)
                if type(cmd) is not list or not cmd or raw[pos] != 42:
                    raise _Untrusted
                pos += 3 + digits[len(cmd)]
                for arg in cmd:
                    if raw[pos] != 36 or type(arg) is not bytes:
                        raise _Untrusted
                    try:
                        pos += bulk_size[len(arg)]
                    except IndexError:
                        pos += 5 + len(arg) + len(str(len(arg)))
        except Exception:  # _Untrusted, a position past the end, or garbage
            return self._finish(self._parse(out, False))
        if pos != len(raw):  # the read ended inside a command, which hiredis holds
            return self._finish(self._parse(out, pos < len(raw), False, True))
        self._buf = b""
        return out

    def _finish(self, out: list) -> list:
        if self._queue:
            queued = self._queue
            queued.reverse()
            out = queued + out
            self._queue = []
        if self._error is not None:
            raise ProtocolError(self._error, out)
        return out

    def next_command(self) -> list[bytes] | None:
        """The next complete command, or None when more bytes are needed.

        Commands complete before a protocol error are returned first; the call after the last
        of them raises :class:`ProtocolError`.
        """
        queue = self._queue
        if not queue and self._buf and self._error is None:
            queue = self._parse()
            queue.reverse()
            self._queue = queue
        if queue:
            return queue.pop()
        if self._error is not None:
            raise ProtocolError(self._error)
        return None

    # ------------------------------------------------------------------ parsing

    def _parse(self, batch: list | None = None, clean: bool = False, suspect: bool = True,
               probed: bool = False, hiredis: bool = True) -> list[list[bytes]]:
        """Parse every complete command in the buffer; record a protocol error, never raise.

        ``batch``, ``clean``, ``suspect`` and ``probed``: what the fast path in
        :meth:`commands` already knows of the whole buffer (see :meth:`_settle`).
        ``hiredis=False``: parse all of it in Python.
        """
        if self._error is not None:
            self._buf = b""
            return []
        raw = self._buf
        pos = 0
        end = len(raw)
        out: list[list[bytes]] = []
        restarts = _HIREDIS_RESTARTS if hiredis else 0
        more = True
        try:
            if batch is not None:
                restarts -= 1
                pos, more = self._settle(raw, pos, end, batch, clean, suspect, probed, out)
            while more and pos < end:
                if self._mb_left:  # a command the Python parser has started
                    cmd, pos = self._multibulk(raw, pos, end)
                    if cmd is None:
                        break
                    out.append(cmd)
                    continue
                if raw[pos] != 42:  # not '*': an inline command
                    cmd, pos = self._inline(raw, pos, end)
                    if cmd is None:
                        break
                    if cmd:
                        out.append(cmd)
                    continue
                if restarts <= 0:
                    cmd, pos = self._multibulk(raw, pos, end)
                    if cmd is None:
                        break
                    if cmd:
                        out.append(cmd)
                    continue
                restarts -= 1
                # Fast path again, over everything that is left.
                unsafe, suspect = _screen(raw if pos == 0 else raw[pos:])
                if unsafe:
                    restarts = 0
                    continue
                reader = self._reader
                reader.feed(raw, pos)
                batch = []
                append = batch.append
                gets = reader.gets
                clean = True
                try:
                    while True:
                        cmd = gets()
                        if cmd is _NO_DATA:
                            break
                        append(cmd)
                        if type(cmd) is not list or not cmd:
                            raise _Untrusted
                        for arg in cmd:
                            if type(arg) is not bytes:
                                raise _Untrusted
                except Exception:
                    clean = False
                pos, more = self._settle(raw, pos, end, batch, clean, suspect, False, out)
        except _Fail as exc:
            self._fail(str(exc))
            return out

        if pos >= end:
            self._buf = b""
            if not self._argbytes:
                return out
            held = self._argbytes
        else:
            if pos:
                if type(raw) is bytearray:
                    del raw[:pos]  # cheap: CPython just advances the array's start
                else:
                    self._buf = raw[pos:]
            held = end - pos + self._argbytes
        if held > self._max_qbuf:
            self._fail(ERR_QUERY_BUFFER.format(held, self._max_qbuf))
        return out

    def _settle(self, raw, pos: int, end: int, batch: list, clean: bool, suspect: bool,
                probed: bool, out: list):
        """Take what hiredis returned for ``raw[pos:end]`` as far as Redis would agree.

        ``clean``: hiredis ran dry, and every reply was a non-empty list of bytes.
        ``suspect``: see :func:`_screen`.  ``probed``: the sentinel was fed already, and did
        not come back.  Returns ``(pos, go_on)``.
        """
        if clean and not suspect and end - pos <= self._fast_limit:
            # Every reply is exactly a request command: only the end of the input is in doubt.
            out += batch
            if not probed:
                reader = self._reader
                reader.feed(_SENTINEL)
                try:
                    cmd = reader.gets()
                    if type(cmd) is _Push and not cmd and reader.gets() is _NO_DATA:
                        return end, False  # between two commands: the reader stays usable
                except Exception:
                    pass
            # The read ended inside a command, which hiredis holds (with the sentinel):
            # compute where it starts and give it to the Python parser.
            self._reader = _Reader(notEnoughData=_NO_DATA)
            pos += _batch_size(batch)
        else:
            for cmd in batch:
                after = self._walk(raw, pos, end, cmd)
                if after < 0:
                    break
                if cmd:  # Redis skips "*0"
                    out.append(cmd)
                pos = after
            if not (clean and pos >= end):
                self._reader = _Reader(notEnoughData=_NO_DATA)  # holds a partial or bad parse
        if pos >= end:
            return pos, False
        if raw[pos] != 42:  # hiredis read a non-array here: it is an inline command
            return pos, True
        cmd, pos = self._multibulk(raw, pos, end)
        if cmd is None:
            return pos, False
        if cmd:
            out.append(cmd)
        return pos, True

    def _fail(self, message: str) -> None:
        self._error = message
        self._buf = b""
        self._reader = None
        self._mb_left = 0
        self._bulklen = -1
        self._args = None
        self._argbytes = 0

    def _walk(self, raw, p: int, end: int, cmd) -> int:
        """Where ``cmd``, as hiredis parsed it at ``p``, ends; -1 unless Redis would agree.

        hiredis accepted the header digits, so they are canonical and their length follows
        from the number itself: no need to search the bytes for the CR.
        """
        if type(cmd) is not list or p >= end or raw[p] != 42:
            return -1
        count = len(cmd)
        if count > self._max_mb:
            return -1
        p += 3 + (_DIGITS[count] if count < 10000 else len(str(count)))
        max_bulk = self._max_bulk
        for arg in cmd:
            if type(arg) is not bytes or p >= end or raw[p] != 36:
                return -1
            size = len(arg)
            if size > max_bulk:
                return -1
            p += 5 + size + (_DIGITS[size] if size < 10000 else len(str(size)))
        return p if p <= end else -1

    def _multibulk(self, raw, pos: int, end: int):
        """Redis's ``processMultibulkBuffer``, resumable.

        Returns ``(command, pos)``: a list of arguments, ``[]`` for an empty command (``*0``,
        ``*-1``: skipped, as Redis does), or ``None`` when more bytes are needed.
        """
        args = self._args
        if not self._mb_left:
            newline = raw.find(13, pos)
            if newline < 0:
                if end - pos > PROTO_INLINE_MAX_SIZE:
                    raise _Fail(ERR_TOO_BIG_MBULK_COUNT)
                return None, pos
            if newline + 2 > end:  # Redis trusts whatever byte follows the CR
                return None, pos
            count = _strict_int(raw[pos + 1:newline])
            if count is None or count > self._max_mb:
                raise _Fail(ERR_INVALID_MULTIBULK)
            pos = newline + 2
            if count <= 0:
                return [], pos
            self._mb_left = count
            self._bulklen = -1
            self._args = args = []
            self._argbytes = 0
        max_bulk = self._max_bulk
        while True:
            size = self._bulklen
            if size < 0:
                newline = raw.find(13, pos)
                if newline < 0:
                    if end - pos > PROTO_INLINE_MAX_SIZE:
                        raise _Fail(ERR_TOO_BIG_BULK_COUNT)
                    return None, pos
                if newline + 2 > end:
                    return None, pos
                if raw[pos] != 36:
                    raise _Fail(ERR_EXPECTED_DOLLAR.format(_byte_char(raw[pos])))
                size = _strict_int(raw[pos + 1:newline])
                if size is None or size < 0 or size > max_bulk:
                    raise _Fail(ERR_INVALID_BULK)
                pos = newline + 2
                self._bulklen = size
            if end - pos < size + 2:
                return None, pos
            arg = raw[pos:pos + size]
            if type(arg) is not bytes:
                arg = bytes(arg)
            args.append(arg)
            self._argbytes += size
            pos += size + 2  # like Redis, whatever the two bytes after the data are
            self._bulklen = -1
            self._mb_left -= 1
            if not self._mb_left:
                self._args = None
                self._argbytes = 0
                return args, pos

    def _inline(self, raw, pos: int, end: int):
        """Redis's ``processInlineBuffer``: one ``\\n``-terminated line (``\\r`` optional)."""
        newline = raw.find(10, pos)
        if newline < 0:
            if end - pos > PROTO_INLINE_MAX_SIZE:
                raise _Fail(ERR_TOO_BIG_INLINE)
            return None, pos
        stop = newline - 1 if newline > pos and raw[newline - 1] == 13 else newline
        line = raw[pos:stop]
        args = split_args(line if type(line) is bytes else bytes(line))
        if args is None:
            raise _Fail(ERR_UNBALANCED_QUOTES)
        return args, newline + 1


# ---------------------------------------------------------------------------- reply constants

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
NULL2 = b"$-1\r\n"        #: RESP2 null (bulk)
NULL3 = b"_\r\n"          #: RESP3 null
NULL_ARRAY2 = b"*-1\r\n"  #: RESP2 null array (BLPOP timeout, EXEC after WATCH failure...)
EMPTY_ARRAY = b"*0\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
_CRLF = b"\r\n"

_BULK_HEADERS = tuple(b"$%d\r\n" % n for n in range(1024))
BULK_HEADERS = _BULK_HEADERS  #: ``$n\r\n`` for n < 1024, for handlers that inline encode_bulk
_ARRAY_HEADERS = tuple(b"*%d\r\n" % n for n in range(1024))
_INTS = tuple(b":%d\r\n" % n for n in range(-1, 10000))  # _INTS[n + 1]
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def encode_bulk(data: bytes) -> bytes:
    """A blob string.  Any bytes-like object; ``str`` goes through :func:`encode`."""
    size = len(data)
    if size < 1024:
        return _BULK_HEADERS[size] + data + _CRLF  # small: two tiny copies beat formatting
    return b"$%d\r\n%b\r\n" % (size, data)  # large: one copy of the payload


def encode_int(n: int) -> bytes:
    """A RESP number (``:n``); the caller keeps it within int64, as Redis's replies are."""
    if -1 <= n < 10000:
        return _INTS[n + 1]
    return b":%d\r\n" % n


def _line_text(text) -> bytes:
    """Status/error text as bytes, with CR and LF turned into spaces (Redis does the same)."""
    if type(text) is not bytes:
        text = str(text).encode("utf-8", "surrogateescape")
    if 13 in text or 10 in text:
        text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    return text


def encode_error(msg: str) -> bytes:
    """An error reply; ``msg`` starts with its code word (``ERR ...``, ``WRONGTYPE ...``)."""
    text = _line_text(msg)
    if text[:1] == b"-":  # tolerate a caller that already wrote the marker
        text = text[1:]
    return b"-" + (text or b"ERR") + _CRLF


def encode_simple(s: str) -> bytes:
    """A simple (status) string such as ``+OK``."""
    return b"+" + _line_text(s) + _CRLF


def encode_null(protocol: int) -> bytes:
    return NULL3 if protocol == 3 else NULL2


_LL_HALF = float((1 << 63) // 2)


def format_double(value: float) -> bytes:
    """A double the way Redis 7.2+ writes it (``d2string``): integers without a fraction,
    otherwise the shortest round-trip digits in ``fpconv_dtoa``'s layout; ``inf``, ``-inf``,
    ``nan``."""
    if value != value:
        return b"nan"
    if value in (math.inf, -math.inf):
        return b"inf" if value > 0 else b"-inf"
    if value == 0:
        return b"-0" if math.copysign(1.0, value) < 0 else b"0"
    if -_LL_HALF <= value <= _LL_HALF and value.is_integer():
        return b"%d" % int(value)
    negative = value < 0
    mantissa, _, exponent = repr(-value if negative else value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    k = (int(exponent) if exponent else 0) - len(fraction)  # value == digits * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    ndigits = len(digits)
    exp = abs(k + ndigits - 1)
    if k >= 0 and exp < ndigits + 7:
        text = digits + "0" * k
    elif k < 0 and (k > -7 or exp < 4):
        point = ndigits + k
        text = ("0." + "0" * -point + digits) if point <= 0 else (
            digits[:point] + "." + digits[point:])
    else:
        text = digits[0] + ("." + digits[1:] if ndigits > 1 else "") + (
            "e-" if k + ndigits - 1 < 0 else "e+") + str(exp)
    return (("-" + text) if negative else text).encode()


def encode_double(value: float, protocol: int) -> bytes:
    """A RESP3 double (``,1.5``), or in RESP2 the same text as a blob string, as Redis does."""
    text = format_double(value)
    if protocol == 3:
        return b"," + text + _CRLF
    return _BULK_HEADERS[len(text)] + text + _CRLF


# ---------------------------------------------------------------------------- reply markers


class SimpleString(str):
    """A status reply (``+text``) rather than a blob string."""

    __slots__ = ()


class ErrorReply(str):
    """An error reply (``-CODE text``) as a value, e.g. inside an EXEC result array."""

    __slots__ = ()


class BigNumber(int):
    """A RESP3 big number (``(digits``); a blob string of the digits in RESP2."""

    __slots__ = ()


class Push(list):
    """Out-of-band data (``>`` in RESP3, e.g. pub/sub messages); a plain array in RESP2."""

    __slots__ = ()


class Encoded(bytes):
    """Bytes that already are RESP, embedded as they are (e.g. a reply inside EXEC's array)."""

    __slots__ = ()


class Verbatim:
    """A RESP3 verbatim string (``=len\\r\\ntxt:...``); a blob string of the text in RESP2."""

    __slots__ = ("text", "format")

    def __init__(self, text: bytes | str, format: str = "txt") -> None:
        if len(format) != 3 or not format.isascii():
            raise ValueError("a verbatim string format is exactly three ASCII characters")
        self.text = text
        self.format = format

    def __repr__(self) -> str:
        return f"Verbatim({self.text!r}, {self.format!r})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Verbatim) and self.text == other.text
                and self.format == other.format)

    __hash__ = None  # type: ignore[assignment]


class Attribute:
    """A reply with RESP3 attributes (``|``) in front; RESP2 clients get just the value."""

    __slots__ = ("value", "attributes")

    def __init__(self, value, attributes: Mapping) -> None:
        self.value = value
        self.attributes = attributes

    def __repr__(self) -> str:
        return f"Attribute({self.value!r}, {self.attributes!r})"


class _NullArray:
    """The marker type of :data:`NULL_ARRAY`."""

    __slots__ = ()
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NULL_ARRAY"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_NullArray, ())


#: A null *array*: ``*-1`` in RESP2 (not ``$-1``), ``_`` in RESP3.
NULL_ARRAY = _NullArray()


# ---------------------------------------------------------------------------- generic encoder


def encode(value, protocol: int) -> bytes:
    """Encode any reply value for a client speaking RESP ``protocol`` (2 or 3).

    Nesting is free (maps of maps of sets...).  Unknown types raise ``TypeError``.
    """
    kind = type(value)
    if kind is bytes:
        return encode_bulk(value)
    if value is None:
        return NULL3 if protocol == 3 else NULL2
    if kind is int and _INT64_MIN <= value <= _INT64_MAX:
        return encode_int(value)
    out: list[bytes] = []
    _encode_into(value, protocol == 3, out)
    return b"".join(out)


def _encode_into(value, resp3: bool, out: list) -> None:
    handler = _HANDLERS.get(type(value))
    if handler is None:
        handler = _find_handler(type(value))
    handler(value, resp3, out)


def _find_handler(kind):
    for base in kind.__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            break
    else:
        if issubclass(kind, Mapping):
            handler = _enc_map
        elif issubclass(kind, Set):
            handler = _enc_set
        elif issubclass(kind, Sequence):
            handler = _enc_array
        else:
            raise TypeError(f"cannot encode {kind.__name__} as a RESP reply")
    _HANDLERS[kind] = handler
    return handler


def _enc_bulk(value, resp3, out):
    out.append(encode_bulk(value))


def _enc_str(value, resp3, out):
    out.append(encode_bulk(value.encode("utf-8", "surrogateescape")))


def _enc_int(value, resp3, out):
    if _INT64_MIN <= value <= _INT64_MAX:
        out.append(encode_int(value))
    else:
        _enc_bignum(value, resp3, out)


def _enc_bool(value, resp3, out):
    if resp3:
        out.append(b"#t\r\n" if value else b"#f\r\n")
    else:
        out.append(ONE if value else ZERO)


def _enc_float(value, resp3, out):
    out.append(encode_double(value, 3 if resp3 else 2))


def _enc_none(value, resp3, out):
    out.append(NULL3 if resp3 else NULL2)


def _enc_null_array(value, resp3, out):
    out.append(NULL3 if resp3 else NULL_ARRAY2)


def _enc_aggregate(marker: bytes, items, resp3, out) -> None:
    size = len(items)
    out.append(_ARRAY_HEADERS[size] if marker == b"*" and size < 1024
               else b"%b%d\r\n" % (marker, size))
    append = out.append
    for item in items:
        if type(item) is bytes:
            size = len(item)
            append(_BULK_HEADERS[size] + item + _CRLF if size < 1024 else encode_bulk(item))
        else:
            _encode_into(item, resp3, out)


def _enc_array(value, resp3, out):
    _enc_aggregate(b"*", value, resp3, out)


def _enc_set(value, resp3, out):
    _enc_aggregate(b"~" if resp3 else b"*", value, resp3, out)


def _enc_push(value, resp3, out):
    _enc_aggregate(b">" if resp3 else b"*", value, resp3, out)


def _enc_pairs(marker: bytes, mapping, resp3, out) -> None:
    out.append(b"%b%d\r\n" % (marker, len(mapping) if resp3 else 2 * len(mapping)))
    for key, item in mapping.items():
        _encode_into(key, resp3, out)
        _encode_into(item, resp3, out)


def _enc_map(value, resp3, out):
    _enc_pairs(b"%" if resp3 else b"*", value, resp3, out)


def _enc_simple(value, resp3, out):
    out.append(encode_simple(value))


def _enc_error(value, resp3, out):
    out.append(encode_error(value))


def _enc_bignum(value, resp3, out):
    digits = b"%d" % value
    out.append(b"(" + digits + _CRLF if resp3 else encode_bulk(digits))


def _enc_verbatim(value, resp3, out):
    text = value.text
    if type(text) is not bytes:
        text = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    if resp3:
        out.append(b"=%d\r\n%b:%b\r\n" % (len(text) + 4, value.format.encode(), text))
    else:
        out.append(encode_bulk(text))


def _enc_attribute(value, resp3, out):
    if resp3:
        _enc_pairs(b"|", value.attributes, resp3, out)
    _encode_into(value.value, resp3, out)


def _enc_encoded(value, resp3, out):
    out.append(bytes(value))


_HANDLERS = {
    bytes: _enc_bulk, bytearray: _enc_bulk, memoryview: _enc_bulk, str: _enc_str,
    int: _enc_int, bool: _enc_bool, float: _enc_float, type(None): _enc_none,
    list: _enc_array, tuple: _enc_array, dict: _enc_map, MappingProxyType: _enc_map,
    set: _enc_set, frozenset: _enc_set,
    SimpleString: _enc_simple, ErrorReply: _enc_error, BigNumber: _enc_bignum, Push: _enc_push,
    Encoded: _enc_encoded, Verbatim: _enc_verbatim, Attribute: _enc_attribute,
    _NullArray: _enc_null_array,
}
