"""Recently read or written values, by record location: a hit skips pread, checksum,
decryption and zstd.

Why by location and not by key: a record, once written at a location, never changes, and
locations are never reused while a store is open (segment numbers only grow, and a failed
write's location is never indexed).  So a put, delete, expiry, namespace flush or compaction
needs no invalidation: the index simply stops pointing at the old location, and the cached
value becomes unreachable until eviction drops it.  (Compaction re-adds a cached value under
its record's new location, so what is hot stays cached through it.)  A value enters the cache only after its
record passed the checksum (and, encrypted, the GCM tag), or from the single put that wrote
it (the bytes the caller gave, not re-read), so a hit serves what is stored.  Bulk writes do not
fill it: a load of 10,000 keys would push out what readers use.

Eviction is first-in first-out by a byte budget: a dict for lookups (a hit is one
``dict.get``, no lock) and a deque for the order.  FIFO rather than LRU because a hit must
cost nothing beyond the lookup; a hot key that falls out simply comes back on its next read.

Cheaper adds were tried and measured through the server (``bench/server_cpu.py --base``):
generations of whole dicts, retired a few entries per add (an add 0.35 µs instead of 1.0-1.2
µs in process), cut SET ``-P 16`` CPU to 0.88-0.91x.  With two generations of half the budget
the cache held only half to all of it (a re-read of 300,000 keys hit 90 % and ran at 250k/s
against 345k/s); with four, a hit outside the young one cost up to four lookups and an add, and
GET ``-P 16`` took 1.21x the CPU.  FIFO by generations of location lists (one lookup per hit,
an add 0.7 µs) measured 0.97-1.05x, within the noise.  None was kept.
"""

from __future__ import annotations

import threading
from collections import deque

#: Bytes a cached value costs beyond its own length: about 61 for the dict and deque slots
#: (tracemalloc, CPython 3.11, 200k entries; the location int is the index's own object) and
#: 33 for the bytes object's header, rounded up.  The budget counts both.
ENTRY_OVERHEAD = 100
#: Store.open's default budget.  0 turns the cache off.
DEFAULT_READ_CACHE_BYTES = 64 * 1024 * 1024


class ReadCache:
    __slots__ = ("budget", "values", "_order", "used", "hits", "misses", "_lock", "_max_item")

    def __init__(self, budget: int = DEFAULT_READ_CACHE_BYTES) -> None:
        if budget < 0:
            raise ValueError(f"read cache budget must be >= 0 bytes, got {budget}")
        self.budget = budget
        self.values: dict[int, bytes] = {}  # location -> value; read lock-free by the get path
        self._order: deque[int] = deque()
        self.used = 0
        self.hits = 0  # both counted by the caller, on its hot path
        self.misses = 0
        self._lock = threading.Lock()
        self._max_item = budget // 16  # one large value must not flush everything else

    def add(self, loc: int, value: bytes) -> None:
        """Remember ``value``, the decoded value stored at ``loc``."""
        size = len(value) + ENTRY_OVERHEAD
        if size > self._max_item:
            return
        with self._lock:
            values = self.values
            if loc in values:
                return
            values[loc] = value
            self._order.append(loc)
            used = self.used + size
            if used > self.budget:
                order = self._order
                while used > self.budget and order:
                    used -= len(values.pop(order.popleft())) + ENTRY_OVERHEAD
            self.used = used

    def clear(self) -> None:
        with self._lock:
            self.values = {}
            self._order.clear()
            self.used = 0

    def stats(self) -> dict:
        return {"budget_bytes": self.budget, "used_bytes": self.used,
                "entries": len(self.values), "hits": self.hits, "misses": self.misses}
