"""Container commands (CLIENT, CONFIG, COMMAND, KV.NAMESPACE): subcommand lookup and HELP,
both driven by the command table so arity errors and help texts never drift from it."""

from __future__ import annotations

from .. import command_table
from ..resp import SimpleString
from .base import CommandError, as_text, reply


def subcommand(session, args: list[bytes], container: str) -> str:
    """The lower-case subcommand name after checking it exists and its arity."""
    spec = command_table.COMMANDS[container]
    sub = command_table.lookup_subcommand(spec, args[1])
    if sub is None:
        raise CommandError(command_table.unknown_subcommand_error(spec, args[1]))
    if not command_table.arity_ok(sub, len(args)):
        raise CommandError(command_table.wrong_arity_error(sub))
    return sub.name.split("|", 1)[-1]


def help_reply(session, container: str) -> bytes:
    lines = command_table.help_lines(command_table.COMMANDS[container])
    return reply(session, [SimpleString(line) for line in lines])


__all__ = ["subcommand", "help_reply", "as_text"]
