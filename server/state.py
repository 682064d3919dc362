"""What every connection of one server shares: the store, settings, clients, counters, cursors."""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from engine import Store

from .config import ServerConfig

VERSION = "0.1.0"
#: The Redis version edgekv answers to (HELLO, INFO): clients gate features on it.
REDIS_COMPAT_VERSION = "7.2.4"


@dataclass
class Stats:
    total_connections: int = 0
    unknown_commands: int = 0
    rejected_connections: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0
    expired_keys: int = 0
    net_input_bytes: int = 0
    net_output_bytes: int = 0
    failed_auth: int = 0
    protocol_errors: int = 0
    command_calls: dict = field(default_factory=dict)

    @property
    def total_commands(self) -> int:
        """Counted per command name on the hot path; the total is summed when INFO asks."""
        return sum(self.command_calls.values()) + self.unknown_commands

    def reset(self) -> None:
        calls = self.command_calls
        self.__init__()
        calls.clear()  # sessions hold this dict: keep the object, drop the counts
        self.command_calls = calls


class ScanCursors:
    """SCAN's cursors: clients parse them as unsigned 64-bit integers, but our position is a
    key of up to 512 bytes, so we hand out small numbers and remember the key behind each.

    Bounded (oldest forgotten first); an unknown cursor is an error rather than a silent
    restart that would return keys twice.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self._positions: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._ids = itertools.count(1)
        self.capacity = capacity

    def save(self, ns_id: str, last_key: bytes) -> int:
        cursor = next(self._ids)
        self._positions[cursor] = (ns_id, last_key)
        while len(self._positions) > self.capacity:
            self._positions.popitem(last=False)
        return cursor

    def take(self, cursor: int) -> tuple[str, bytes] | None:
        return self._positions.pop(cursor, None)


class ServerState:
    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.started = time.time()
        self.stats = Stats()
        self.clients: dict[int, object] = {}  # client id -> Session
        self.client_ids = itertools.count(1)
        self.scan_cursors = ScanCursors()
        self.last_save = int(time.time())
        self.pid = os.getpid()
        self.shutdown_requested = None  # set by the app: a callable that starts a clean stop
        self.tcp_port = config.port
        self.run_id = os.urandom(20).hex()
        self.compaction_running = False
        self.last_compaction: dict | None = None
