"""Redis glob patterns (KEYS, SCAN MATCH, CONFIG GET) as compiled byte regexes.

Redis's ``stringmatchlen``: ``*`` any run, ``?`` one byte, ``[abc]``, ``[^abc]``, ``[a-z]``,
and ``\\x`` for a literal x, including its corner cases (``[]``, ``[^]``, ``[a-]``, an
unterminated class, a trailing backslash), which ``tests/server/test_server_fixes.py`` holds
against a real redis-server.  ``fnmatch`` differs (``[!...]``, no escapes), hence this module.
"""

from __future__ import annotations

import functools
import re

_SPECIAL = b"*?[\\"


def _signed(c: int) -> int:
    """A byte as C's (signed, on the platforms Redis ships for) ``char``: Redis compares
    range bounds that way, so ``[a-\\xff]`` is the range from -1 to 97."""
    return c - 256 if c >= 128 else c


def _bracket(pattern: bytes, i: int) -> tuple[bytes, int]:
    """The class starting after the ``[`` at ``i - 1``: (its regex, the index after it).

    Redis's ``stringmatchlen`` loop, step by step: ``\\x`` is a literal x (a backslash that
    is the pattern's last byte is itself); ``]`` closes the class, even right after ``[`` or
    ``[^`` (so ``[]`` matches nothing, ``[^]`` any byte); ``x-y`` is a range whenever two
    bytes follow the x, whatever they are (``[a-]`` is the range from ``]`` to ``a``, and
    the class goes on after it); a class the pattern ends inside matches what it has read.
    The bytes it matches are worked out one by one, so the regex is exact.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == 0x5E  # ^
    if negate:
        i += 1
    literals: set[int] = set()
    ranges: list[tuple[int, int]] = []
    while True:
        if i >= n:  # unterminated: the class ends with the pattern
            break
        c = pattern[i]
        if c == 0x5C and n - i >= 2:  # backslash escape
            literals.add(pattern[i + 1])
            i += 2
        elif c == 0x5D:  # ]
            i += 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # x-y
            lo, hi = _signed(c), _signed(pattern[i + 2])
            if lo > hi:
                lo, hi = hi, lo
            ranges.append((lo, hi))
            i += 3
        else:
            literals.add(c)
            i += 1
    members = [b for b in range(256)
               if (b in literals or any(lo <= _signed(b) <= hi for lo, hi in ranges)) != negate]
    if not members:
        return b"(?!)", i
    if len(members) == 256:
        return b".", i
    parts = []
    start = prev = members[0]
    for b in members[1:] + [None]:
        if b is not None and b == prev + 1:
            prev = b
            continue
        parts.append(b"\\x%02x" % start if start == prev
                     else b"\\x%02x-\\x%02x" % (start, prev))
        if b is not None:
            start = prev = b
    return b"[" + b"".join(parts) + b"]", i


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> re.Pattern:
    """The regex matching exactly what Redis's ``stringmatchlen`` matches (case-sensitive)
    for a non-empty subject; ``matches`` handles the empty one."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *: a run of them is one
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            out.append(b".*")
            i += 1
        elif c == 0x3F:  # ?
            out.append(b".")
            i += 1
        elif c == 0x5B:  # [
            regex, i = _bracket(pattern, i + 1)
            out.append(regex)
        elif c == 0x5C and i + 1 < n:  # \x: x itself; a trailing backslash is literal
            out.append(re.escape(pattern[i + 1:i + 2]))
            i += 2
        else:
            out.append(re.escape(pattern[i:i + 1]))
            i += 1
    return re.compile(b"".join(out) + b"\\Z", re.DOTALL)


def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every match must start with: lets SCAN MATCH seek instead of walking all."""
    out = bytearray()
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == 0x5C and i + 1 < len(pattern):  # backslash escape
            out.append(pattern[i + 1])
            i += 2
            continue
        if c in _SPECIAL:
            break
        out.append(c)
        i += 1
    return bytes(out)


def matches(pattern: bytes, subject: bytes) -> bool:
    if not subject:  # stringmatchlen compares nothing then: only the empty pattern matches
        return not pattern
    if pattern == b"*":
        return True
    return compile_glob(pattern).match(subject) is not None
