"""Expirations: the authoritative per-key expiry plus a min-heap to find what is due.

Only keys that have an expiration cost memory here.  The heap may hold stale entries (the key
was overwritten, deleted or given another expiration): an entry counts only while it still
equals the key's current expiration, which is how lazy deletion avoids an O(n) heap removal.
Reads check ``is_expired`` directly, so a key is gone the moment it expires even if nobody has
popped the heap yet.
"""

from __future__ import annotations

import heapq


class ExpiryTracker:
    __slots__ = ("_expire_ms", "_heap")

    def __init__(self) -> None:
        self._expire_ms: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []

    @classmethod
    def from_dict(cls, expire_ms: dict[bytes, int]) -> "ExpiryTracker":
        """Adopt a recovered key → expiration map; heapify is O(n), n pushes are O(n log n)."""
        tracker = cls()
        tracker._expire_ms = expire_ms
        tracker._heap = [(exp, k) for k, exp in expire_ms.items()]
        heapq.heapify(tracker._heap)
        return tracker

    def __len__(self) -> int:
        return len(self._expire_ms)

    def get(self, ikey: bytes) -> int:
        """The key's expiration in epoch ms, 0 when it never expires."""
        return self._expire_ms.get(ikey, 0)

    def set(self, ikey: bytes, expire_ms: int) -> None:
        if expire_ms:
            self._expire_ms[ikey] = expire_ms
            heapq.heappush(self._heap, (expire_ms, ikey))
        else:
            self._expire_ms.pop(ikey, None)

    def discard(self, ikey: bytes) -> None:
        self._expire_ms.pop(ikey, None)

    def is_expired(self, ikey: bytes, now_ms: int) -> bool:
        exp = self._expire_ms.get(ikey)
        return exp is not None and exp <= now_ms

    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[bytes]:
        """Keys whose current expiration is ``<= now_ms`` (at most ``limit`` per call)."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms and len(due) < limit:
            exp, ikey = heapq.heappop(heap)
            if self._expire_ms.get(ikey) == exp:
                del self._expire_ms[ikey]
                due.append(ikey)
        if len(heap) > 64 and len(heap) > 4 * len(self._expire_ms):
            self._compact_heap()
        return due

    def _compact_heap(self) -> None:
        """Rebuild the heap from live entries when stale ones dominate it."""
        self._heap = [(exp, k) for k, exp in self._expire_ms.items()]
        heapq.heapify(self._heap)
