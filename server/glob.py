"""Redis glob patterns (KEYS, SCAN MATCH, CONFIG GET) as compiled byte regexes.

Redis's ``stringmatchlen``: ``*`` any run, ``?`` one byte, ``[abc]``, ``[^abc]``, ``[a-z]``,
and ``\\x`` for a literal x.  ``fnmatch`` differs (``[!...]``, no escapes), hence this module.
"""

from __future__ import annotations

import functools
import re

_SPECIAL = b"*?[\\"


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> re.Pattern:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i:i + 1]))
        elif c == b"[":
            j = i + 1
            negate = j < n and pattern[j:j + 1] == b"^"
            if negate:
                j += 1
            items = []
            while j < n and pattern[j:j + 1] != b"]":
                if pattern[j:j + 1] == b"\\" and j + 1 < n:
                    j += 1
                    items.append(re.escape(pattern[j:j + 1]))
                elif j + 2 < n and pattern[j + 1:j + 2] == b"-" and pattern[j + 2:j + 3] != b"]":
                    lo, hi = pattern[j:j + 1], pattern[j + 2:j + 3]
                    if lo > hi:
                        lo, hi = hi, lo
                    items.append(re.escape(lo) + b"-" + re.escape(hi))
                    j += 2
                else:
                    items.append(re.escape(pattern[j:j + 1]))
                j += 1
            if not items:
                out.append(b"(?!)" if not negate else b".")
            else:
                out.append(b"[" + (b"^" if negate else b"") + b"".join(items) + b"]")
            i = j  # at the closing bracket (or the end when unterminated, as Redis tolerates)
        else:
            out.append(re.escape(c))
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
    if pattern == b"*":
        return True
    return compile_glob(pattern).match(subject) is not None
