"""Command handlers, joined with the command table into one lookup: name bytes → entry.

Both the lower-case and the upper-case spelling are keys, so the common cases (``GET`` from
redis-benchmark, ``get`` from redis-py) resolve with one dict lookup and no ``.lower()``.
"""

from __future__ import annotations

from .. import command_table
from . import admin, connection, kv, strings, transactions  # noqa: F401  (registration)
from .base import REGISTRY, CommandError


def _build() -> dict:
    handlers = {}
    for name, spec in command_table.COMMANDS.items():
        registered = REGISTRY.get(name)
        if registered is None:
            continue
        fn, op = registered
        entry = (spec, fn, op)
        handlers[name.encode()] = entry
        handlers[name.upper().encode()] = entry
    return handlers


HANDLERS = _build()

missing = sorted(set(command_table.COMMANDS) - set(REGISTRY))
unknown = sorted(set(REGISTRY) - set(command_table.COMMANDS))

__all__ = ["HANDLERS", "CommandError", "missing", "unknown"]
