"""Transactions: MULTI EXEC DISCARD WATCH UNWATCH, with Redis's replies and error texts.

Queuing happens in the dispatcher (``Session.execute`` → ``Session._gate``): inside MULTI a
command is checked (name, subcommand, arity, ``no_multi``) and answered ``+QUEUED``; a refused
one dooms the transaction, and EXEC then answers ``EXECABORT``.  EXEC runs the queued commands
back to back in this one call: the server is a single event loop and nothing here yields, so
no other client's command can run in between.  Their writes form one store batch, and the
connection holds EXEC's reply until they are durable under ``fsync=always``, like any write.

WATCH remembers each key's *version* (``Store.record_seq``): the sequence number of the record the
key currently points to, or for a missing key a mark that the key's delete or expiry changes.
Every write of a key (SET, DEL, EXPIRE..., from any client or the REST API) makes a new record
with a new, never reused sequence number; compaction copies records with theirs, so it does not
count as a change.  EXEC compares the versions again, which catches a modification, a deletion,
an expiration, a key created and deleted again, and a FLUSHDB or KV.NAMESPACE DELETE of the
key's namespace, without any work on the write path beyond the engine's.  The missing-key marks
are shared by buckets of keys, so a delete of another key in the same bucket (one in 65,536)
makes EXEC abort too: a retry, never a missed change.
"""

from __future__ import annotations

from engine.errors import NamespaceNotFoundError

from .base import OK, CommandError, command

NULL_ARRAY_RESP2 = b"*-1\r\n"
NULL_ARRAY_RESP3 = b"_\r\n"


def _watched_changed(session) -> bool:
    store = session.state.store
    for (_, key), (namespace, version) in session.watched.items():
        try:
            number = namespace.number
        except NamespaceNotFoundError:
            return True  # the namespace itself was deleted
        if store.record_seq(number, key) != version:
            return True
    return False


@command("multi")
def multi(session, args):
    if session.multi is not None:
        raise CommandError("ERR MULTI calls can not be nested")
    session.begin_multi()
    return OK


@command("discard")
def discard(session, args):
    if session.multi is None:
        raise CommandError("ERR DISCARD without MULTI")
    session.end_multi()
    return OK


@command("exec")
def exec_(session, args):
    queued = session.multi
    if queued is None:
        raise CommandError("ERR EXEC without MULTI")
    failed = session.multi_failed
    try:
        changed = not failed and session.watched is not None and _watched_changed(session)
    finally:
        session.end_multi()  # out of MULTI before running: the commands run, not queue again
    if failed:
        raise CommandError("EXECABORT Transaction discarded because of previous errors.")
    if changed:
        return NULL_ARRAY_RESP3 if session.protocol == 3 else NULL_ARRAY_RESP2
    execute = session.execute
    store = session.state.store
    store.begin_batch()  # the transaction's writes reach the file in one write
    try:
        replies = [execute(argv) for argv in queued]
    finally:
        store.end_batch()
    session.last_command = "exec"
    return b"*%d\r\n" % len(replies) + b"".join(replies)


@command("watch")
def watch(session, args):
    if session.multi is not None:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    namespace = session.namespace
    number = namespace.number  # a deleted namespace is reported here, once
    store = session.state.store
    watched = session.watched
    if watched is None:
        watched = session.watched = {}
    for key in args[1:]:
        slot = (namespace.id, key)
        if slot not in watched:  # watched again: the first version stays, as in Redis
            watched[slot] = (namespace, store.record_seq(number, key))
    return OK


@command("unwatch")
def unwatch(session, args):
    session.watched = None
    return OK
