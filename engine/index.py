"""The in-memory index: every live key, sorted, mapped to where its record lives.

Keys are *index keys*: a 2-byte big-endian namespace number followed by the key's UTF-8 bytes.
Sorting index keys bytewise therefore sorts by namespace, then by key bytes, which is exactly
Workers KV's list order, so ``list(prefix, cursor)`` is one bisect plus a walk.

A location is packed into one int below 2**60 (a 32-byte int object instead of a ~150-byte
tuple)::

    bits 42..59  segment number (18 bits)
    bits 14..41  offset of the record in the segment (28 bits: segments stay under 256 MiB)
    bits  0..13  record size in bytes, or 0 when it is 16 KiB or more (read the header first)

Complexities: get/contains O(1); set/pop O(log n) (sortedcontainers' SortedList); a walk of k
keys from a bisect O(log n + k).
"""

from __future__ import annotations

from typing import Iterator

from sortedcontainers import SortedList

SEGMENT_BITS = 18
OFFSET_BITS = 28
SIZE_BITS = 14
MAX_SEGMENT_NO = (1 << SEGMENT_BITS) - 1
MAX_OFFSET = (1 << OFFSET_BITS) - 1
_SIZE_LIMIT = 1 << SIZE_BITS
_SIZE_MASK = _SIZE_LIMIT - 1
_OFFSET_MASK = MAX_OFFSET
_OFFSET_SHIFT = SIZE_BITS
_SEGMENT_SHIFT = SIZE_BITS + OFFSET_BITS

NS_PREFIX_BYTES = 2


def pack_location(seg_no: int, offset: int, size: int) -> int:
    if seg_no > MAX_SEGMENT_NO or offset > MAX_OFFSET:
        raise ValueError(f"location out of range: segment {seg_no}, offset {offset}")
    return (seg_no << _SEGMENT_SHIFT) | (offset << _OFFSET_SHIFT) | (size if size < _SIZE_LIMIT else 0)


def unpack_location(loc: int) -> tuple[int, int, int]:
    """``(segment, offset, size)``; size 0 means "large: read the header for the size"."""
    return loc >> _SEGMENT_SHIFT, (loc >> _OFFSET_SHIFT) & _OFFSET_MASK, loc & _SIZE_MASK


def location_segment(loc: int) -> int:
    return loc >> _SEGMENT_SHIFT


def ns_prefix(ns: int) -> bytes:
    return ns.to_bytes(NS_PREFIX_BYTES, "big")


def index_key(ns: int, key: bytes) -> bytes:
    return ns.to_bytes(NS_PREFIX_BYTES, "big") + key


class KeyIndex:
    """Sorted map of index key → packed location.  Not thread-safe: the store locks around it."""

    __slots__ = ("_locations", "_sorted")

    def __init__(self, items: dict[bytes, int] | None = None, *, copy: bool = True) -> None:
        if items is None:
            items = {}
        elif copy:
            items = dict(items)
        self._locations: dict[bytes, int] = items
        # Building the SortedList from all keys at once sorts once: O(n log n) in C, instead
        # of n Python-level inserts.
        self._sorted = SortedList(self._locations)

    def __len__(self) -> int:
        return len(self._locations)

    def __contains__(self, ikey: bytes) -> bool:
        return ikey in self._locations

    def get(self, ikey: bytes) -> int | None:
        return self._locations.get(ikey)

    def set(self, ikey: bytes, loc: int) -> int | None:
        """Point ``ikey`` at ``loc``; return the location it replaced, if any."""
        old = self._locations.get(ikey)
        self._locations[ikey] = loc
        if old is None:
            self._sorted.add(ikey)
        return old

    def pop(self, ikey: bytes) -> int | None:
        old = self._locations.pop(ikey, None)
        if old is not None:
            self._sorted.remove(ikey)
        return old

    def walk(self, start: bytes, *, inclusive: bool = True) -> Iterator[bytes]:
        """Index keys ``>= start`` (or ``> start``) in order; stop the walk yourself."""
        return self._sorted.irange(minimum=start, inclusive=(inclusive, True))

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        out = []
        for ikey in self._sorted.irange(minimum=prefix):
            if not ikey.startswith(prefix):
                break
            out.append(ikey)
        return out

    def remove_prefix(self, prefix: bytes) -> list[bytes]:
        """Drop every key starting with ``prefix`` (a namespace); return them."""
        lo = self._sorted.bisect_left(prefix)
        removed = self.keys_with_prefix(prefix)
        if removed:
            del self._sorted[lo:lo + len(removed)]
            for ikey in removed:
                del self._locations[ikey]
        return removed

    def count_prefix(self, prefix: bytes) -> int:
        return len(self.keys_with_prefix(prefix))

    def items(self) -> Iterator[tuple[bytes, int]]:
        return iter(self._locations.items())

    def _check(self) -> None:
        """Invariant check for stress tests: the sorted list and the dict hold the same keys."""
        assert len(self._sorted) == len(self._locations)
        assert all(k in self._locations for k in self._sorted)
        self._sorted._check()
