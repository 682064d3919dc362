"""Connection commands: PING ECHO QUIT RESET HELLO AUTH SELECT CLIENT."""

from __future__ import annotations

import hmac
import logging
import time

from engine.errors import NamespaceNotFoundError

from ..resp import encode_bulk, encode_int
from ..state import REDIS_COMPAT_VERSION
from .base import OK, SYNTAX, CommandError, as_text, command, null, parse_int, reply
from .subcommands import subcommand

log = logging.getLogger("edgekv.server")


@command("ping")
def ping(session, args):
    if len(args) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    return b"+PONG\r\n" if len(args) == 1 else encode_bulk(args[1])


@command("echo")
def echo(session, args):
    return encode_bulk(args[1])


@command("quit")
def quit_(session, args):
    session.end_multi()
    session.close_after_reply = True
    return OK


@command("reset")
def reset(session, args):
    session.end_multi()  # discards the transaction and forgets the watched keys
    session.protocol = 2
    session.authenticated = not session.state.config.requirepass
    session.select(session.state.store.namespace("default"), 0)
    session.name = b""
    return b"+RESET\r\n"


def _check_password(session, username: bytes, password: bytes, *, legacy: bool = False) -> None:
    """Redis's rules: without ``requirepass`` the default user takes any password (clients
    such as redis-py with ``username="default"`` send one), but the one-argument ``AUTH``
    form is refused as a likely misconfiguration."""
    required = session.state.config.requirepass
    if not required and legacy:
        raise CommandError("ERR AUTH <password> called without any password configured for the "
                           "default user. Are you sure your configuration is correct?")
    if username != b"default" or (required
                                  and not hmac.compare_digest(password, required.encode())):
        session.state.stats.failed_auth += 1
        log.warning("failed AUTH from %s (client id %d)", session.addr, session.id)
        raise CommandError("WRONGPASS invalid username-password pair or user is disabled.")
    session.authenticated = True


@command("auth")
def auth(session, args):
    if len(args) == 2:
        _check_password(session, b"default", args[1], legacy=True)
    elif len(args) == 3:
        _check_password(session, args[1], args[2])
    else:
        raise CommandError(SYNTAX)
    return OK


@command("hello")
def hello(session, args):
    protocol = session.protocol
    i = 1
    if len(args) > 1:
        protocol = parse_int(args[1], "ERR Protocol version is not an integer or out of range")
        if protocol not in (2, 3):
            raise CommandError("NOPROTO sorry, this protocol version is not supported.")
        i = 2
    name = None
    while i < len(args):
        opt = args[i].lower()
        if opt == b"auth" and i + 2 < len(args):
            _check_password(session, args[i + 1], args[i + 2])
            i += 3
        elif opt == b"setname" and i + 1 < len(args):
            name = _valid_name(args[i + 1])
            i += 2
        else:
            raise CommandError(f"ERR Syntax error in HELLO option '{as_text(args[i])}'")
    if not session.authenticated:
        return (b"-NOAUTH HELLO must be called with the client already authenticated, otherwise "
                b"the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the "
                b"client and select the RESP protocol version at the same time\r\n")
    if name is not None:
        session.name = name
    session.protocol = protocol
    return reply(session, {
        "server": "redis", "version": REDIS_COMPAT_VERSION, "proto": protocol,
        "id": session.id, "mode": "standalone", "role": "master", "modules": [],
    })


@command("select")
def select(session, args):
    store = session.state.store
    target = args[1]
    namespaces = store.list_namespaces()
    try:
        index = parse_int(target)
    except CommandError:
        index = None  # not an index: a title or an id
    if index is not None:
        if not 0 <= index < len(namespaces):
            raise CommandError("ERR DB index is out of range")
        info = namespaces[index]
    else:
        try:
            info = store.find_namespace(as_text(target))
        except NamespaceNotFoundError:
            raise CommandError(f"ERR no namespace with title or id '{as_text(target)}'") from None
        index = next(i for i, ns in enumerate(namespaces) if ns.id == info.id)
    session.select(store.namespace(info.id), index, info.title)
    return OK


# ---------------------------------------------------------------------------- CLIENT


def _valid_name(name: bytes) -> bytes:
    if any(c <= 0x20 or c > 0x7E for c in name):
        raise CommandError("ERR Client names cannot contain spaces, newlines or special "
                           "characters.")
    return name


def client_info_line(s) -> str:
    now = time.time()
    in_multi = s.multi is not None
    return (f"id={s.id} addr={s.addr} laddr={s.laddr} fd=-1 name={as_text(s.name)} "
            f"age={int(now - s.created)} idle={int(now - s.last_interaction)} "
            f"flags={'x' if in_multi else 'N'} db={s.db} sub=0 psub=0 ssub=0 "
            f"multi={len(s.multi) if in_multi else -1} qbuf=0 qbuf-free=0 argv-mem=0 "
            f"multi-mem=0 rbs=0 rbp=0 "
            f"obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={s.last_command.lower()} "
            f"user=default redir=-1 resp={s.protocol} lib-name={as_text(s.lib_name)} "
            f"lib-ver={as_text(s.lib_ver)}")


@command("client")
def client(session, args):
    sub = subcommand(session, args, "client")
    clients = session.state.clients
    if sub == "id":
        return encode_int(session.id)
    if sub == "setname":
        session.name = _valid_name(args[2])
        return OK
    if sub == "getname":
        return encode_bulk(session.name) if session.name else null(session)
    if sub == "setinfo":
        attr = args[2].lower()
        if attr == b"lib-name":
            session.lib_name = _valid_name(args[3])
        elif attr == b"lib-ver":
            session.lib_ver = _valid_name(args[3])
        else:
            raise CommandError(f"ERR Unrecognized option '{as_text(args[2])}'")
        return OK
    if sub == "info":
        return encode_bulk((client_info_line(session) + "\n").encode())
    if sub == "list":
        chosen = list(clients.values())
        if len(args) > 2:
            opt = args[2].lower()
            if opt == b"id" and len(args) > 3:
                ids = {parse_int(a) for a in args[3:]}
                chosen = [c for c in chosen if c.id in ids]
            elif opt == b"type" and len(args) == 4:
                kind = args[3].lower()
                if kind not in (b"normal", b"master", b"replica", b"pubsub"):
                    raise CommandError(f"ERR Unknown client type '{as_text(args[3])}'")
                chosen = chosen if kind == b"normal" else []
            else:
                raise CommandError(SYNTAX)
        text = "".join(client_info_line(c) + "\n" for c in chosen)
        return encode_bulk(text.encode())
    if sub == "kill":
        return _client_kill(session, args[2:])
    if sub == "help":
        from .subcommands import help_reply
        return help_reply(session, "client")
    raise CommandError(f"ERR unknown subcommand '{as_text(args[1])}'. Try CLIENT HELP.")


def _kill(session, victim) -> None:
    """Drop ``victim`` now; the calling client itself is answered first, then closed, as
    Redis does (its client would otherwise retry the command on a new connection)."""
    if victim is session:
        session.close_after_reply = True
    else:
        victim.kill()


def _client_kill(session, rest: list[bytes]):
    clients = session.state.clients
    if len(rest) == 1:  # old form: CLIENT KILL addr:port
        for c in list(clients.values()):
            if c.addr == as_text(rest[0]):
                _kill(session, c)
                return OK
        raise CommandError("ERR No such client")
    skipme = True
    filters = []
    # Redis's order: each filter is checked as it is read, a dangling name is a syntax error
    # only once reached.
    for i in range(0, len(rest), 2):
        if i + 1 >= len(rest):
            raise CommandError(SYNTAX)
        key, value = rest[i].lower(), rest[i + 1]
        if key == b"id":
            wanted = parse_int(value, "ERR client-id should be greater than 0")
            if wanted < 1:
                raise CommandError("ERR client-id should be greater than 0")
            filters.append(lambda c, w=wanted: c.id == w)
        elif key == b"addr":
            filters.append(lambda c, w=as_text(value): c.addr == w)
        elif key == b"laddr":
            filters.append(lambda c, w=as_text(value): c.laddr == w)
        elif key == b"user":
            if value != b"default":  # the only user; Redis's user names are case-sensitive
                raise CommandError(f"ERR No such user '{as_text(value)}'")
        elif key == b"type":
            kind = value.lower()
            if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                raise CommandError(f"ERR Unknown client type '{as_text(value)}'")
            filters.append(lambda c, w=kind: w == b"normal")
        elif key == b"maxage":
            age = parse_int(value)
            filters.append(lambda c, a=age: time.time() - c.created >= a)
        elif key == b"skipme":
            if value.lower() not in (b"yes", b"no"):
                raise CommandError(SYNTAX)
            skipme = value.lower() == b"yes"
        else:
            raise CommandError(SYNTAX)
    killed = 0
    for c in list(clients.values()):
        if skipme and c is session:
            continue
        if all(f(c) for f in filters):
            _kill(session, c)
            killed += 1
    return encode_int(killed)
