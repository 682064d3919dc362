"""The asyncio RESP server: connections, pipelining, group-committed replies, clean shutdown.

Theory of operation
-------------------
Each connection is an ``asyncio.Protocol``.  ``data_received`` feeds the sans-IO parser
(``server/resp.py``), runs every complete command at once through its ``Session`` and joins the
replies.  Under ``fsync=always`` a batch that wrote anything is *held*: its replies wait in the
connection's queue, in order, until the ``DurabilityGate`` has fsynced past the batch's last
sequence number.  The gate runs one fsync at a time in a worker thread, so every connection that
wrote during the same loop iteration shares that fsync (group commit), and the loop keeps
serving reads meanwhile.  A batch of reads is sent at once unless an earlier held batch of the
same connection is still waiting (replies never overtake each other).

Backpressure: when a client stops reading, asyncio pauses us (``pause_writing``) and we stop
reading from it; if its pending output passes ``client_output_buffer_limit`` it is
disconnected, like Redis's output buffer limit.  One client's garbage only ever closes that
client: protocol errors are answered with ``-ERR Protocol error: ...`` and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from itertools import groupby

from engine import Store
from engine.durability import UnflushedWritesError
from engine.errors import WriteFailedError
from engine.semantics import Limits

from .config import ServerConfig
from .resp import ProtocolError, RequestParser, encode_error
from .session import Session, kv_error_text, run_kind
from .state import ServerState

log = logging.getLogger("edgekv.server")

_REAP_INTERVAL = 0.1


class DurabilityGate:
    """Releases held replies once the store is durable past them: one fsync for many batches.

    Like Redis with ``appendfsync always``: the fsync runs on the event loop, once per loop
    iteration, after every connection that had data in that iteration has appended its writes,
    and only then are their replies released.  A worker thread was measured to cost more CPU
    per fsync (wakeups, GIL hand-offs) than the fsync blocks the loop on this class of machine.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiting: set["RespConnection"] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def wait_for(self, conn: "RespConnection") -> None:
        self.waiting.add(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._sync_and_release)

    def _sync_and_release(self) -> None:
        self._scheduled = False
        store = self.store
        try:
            store.wait_durable(store.last_seq)
        except WriteFailedError as error:
            if isinstance(error, UnflushedWritesError):  # a full disk: not fatal
                log.error("the disk refused buffered writes: %s", error)
            else:
                log.error("fsync failed, refusing writes until restart: %s", error)
            durable = store.durable_seq  # what was synced before the failure is acknowledged
            for conn in list(self.waiting):
                conn.release(durable)
                if conn.held:
                    conn.fail_held(error)
            self.waiting.clear()
            return
        durable = store.durable_seq
        for conn in list(self.waiting):
            conn.release(durable)
            if not conn.held:
                self.waiting.discard(conn)

    async def drain(self) -> None:
        deadline = time.monotonic() + 10
        while self.waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        pass


class RespConnection(asyncio.Protocol):
    __slots__ = ("server", "state", "store", "transport", "session", "parser", "held",
                 "pending_out", "unwritten", "_paused", "_closed", "_eof")

    def __init__(self, server: "EdgeKVServer") -> None:
        self.server = server
        self.state = server.state
        self.store = server.state.store
        self.transport = None
        self.session: Session | None = None
        self.held: deque = deque()  # (seq, payload, close_after)
        self.pending_out: list[bytes] = []  # replies to write at the end of this loop iteration
        # Indexes into pending_out of single replies acknowledging a put the store still holds
        # in its buffer: they become errors if the disk refuses it (see _flush_writes).
        self.unwritten: list[int] = []
        self._paused = False
        self._closed = False
        self._eof = False  # the client half-closed: close once everything is answered

    # ------------------------------------------------------------------ lifecycle

    def connection_made(self, transport) -> None:
        self.transport = transport
        state = self.state
        config = state.config
        if self.server.stopping or len(state.clients) >= config.maxclients:
            state.stats.rejected_connections += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self._closed = True
            return
        state.stats.total_connections += 1
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        session = Session(state, _addr(peer), _addr(local))
        session.connection = self
        self.session = session
        state.clients[session.id] = session
        self.parser = RequestParser(max_bulk_len=config.proto_max_bulk_len,
                                    max_multibulk_len=config.max_multibulk_len,
                                    max_query_buffer=config.client_query_buffer_limit)

    def connection_lost(self, exc) -> None:
        self._closed = True
        if self.session is not None:
            self.state.clients.pop(self.session.id, None)
        self.held.clear()
        self.server.gate.waiting.discard(self)

    def eof_received(self) -> bool:
        """The client half-closed (``nc -N``, ``shutdown(SHUT_WR)``): answer everything it
        sent, replies still waiting for their fsync included, then close, as Redis does.
        Returning True keeps the transport open for those replies."""
        self._eof = True
        self._close_if_answered()
        return True

    def _close_if_answered(self) -> None:
        if self._eof and not self.held and not self.pending_out and not self._closed:
            self._closed = True
            self.transport.close()  # after what is buffered has been written

    def kill(self) -> None:
        """Drop the connection now, discarding unsent output (close() would wait for it)."""
        if not self._closed:
            self._closed = True
            self.transport.abort()

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        session = self.session
        self.state.stats.net_input_bytes += len(data)
        session.last_interaction = time.time()
        error = None
        try:
            commands = self.parser.parse(data)
        except ProtocolError as exc:
            commands, error = exc.commands, exc
        store = self.store
        commit = store.commit  # its written_seq moves when the command wrote something
        before = commit.written_seq
        if len(commands) == 1:
            # No pipeline, the common case: one reply, no batch (a single put gains nothing
            # from one), and the output buffer limit is checked when the reply is written.
            payload = session.execute(commands[0])
        elif commands:
            payload = self._run_pipeline(commands)
            if payload is None:
                return  # the client was dropped, or already answered
        else:
            payload = b""
        close_after = session.close_after_reply
        if error is not None and not close_after:
            self.state.stats.protocol_errors += 1
            log.info("protocol error from %s: %s", session.addr, error)
            payload += encode_error(str(error) if str(error).startswith("ERR")
                                    else f"ERR {error}")
            close_after = True
        if self._closed:
            return
        after = commit.written_seq
        if self.held or (after != before and commit.policy == "always"):
            self.held.append((after if after != before else self.held[-1][0], payload,
                              close_after))
            self.server.gate.wait_for(self)
            return
        if close_after:
            self._write_now(payload, True)
        elif payload:  # self._send(payload, False), inlined
            pending = self.pending_out
            if not pending:
                self.server.schedule_write(self)
            if after != before and len(commands) == 1 and store.has_pending_writes:
                self.unwritten.append(len(pending))
            pending.append(payload)

    def _run_pipeline(self, commands: list) -> bytes | None:
        """Run a read's commands as one store batch: its puts reach the file in one write,
        before any of its replies is sent.  None when the client had to be dropped, or was
        already answered (the disk refused the batch)."""
        session = self.session
        execute = session.execute
        out = []
        limit = self.state.config.client_output_buffer_limit or (1 << 62)
        size = self.transport.get_write_buffer_size()
        store = self.store
        try:
            store.begin_batch()
            try:
                answered = 0  # commands replied to (a run has one joined reply)
                for kind, group in groupby(commands, run_kind):
                    if kind is not None:  # a run of plain SETs (or GETs): done in one go
                        run = list(group)
                        answered += len(run)
                        size += self._run(kind, run, out)
                        if size > limit:
                            return self._over_limit(limit)
                        continue
                    for args in group:
                        reply = execute(args)
                        answered += 1
                        out.append(reply)
                        size += len(reply)
                        if size > limit:
                            return self._over_limit(limit)
                        if session.close_after_reply or self._closed:
                            break
                    if session.close_after_reply or self._closed:
                        break
            finally:
                store.end_batch()
        except WriteFailedError as exc:
            # The batch's writes did not reach the file (a full disk): acknowledging them
            # would be a lie.  Every reply of the batch becomes the error, which names the cause.
            log.error("client %s: its writes could not be written: %s", session.addr, exc)
            errors = encode_error(kv_error_text(exc)) * answered
            if self.held:  # earlier replies still wait for their fsync: stay behind them
                self.held.append((self.held[-1][0], errors, session.close_after_reply))
            else:
                self._send(errors, session.close_after_reply)
            return None
        return b"".join(out)

    def _over_limit(self, limit: int) -> None:
        log.warning("closing client %s: output over %d bytes (it is not reading)",
                    self.session.addr, limit)
        self.kill()

    def _run(self, name: str, run: list, out: list) -> int:
        """Reply to a pipeline's run of one plain command (``Session.execute_run``); returns
        the bytes added to ``out``."""
        replies = self.session.execute_run(name, run) if len(run) > 1 else None
        if replies is None:  # each with its own reply or error
            replies = b"".join(map(self.session.execute, run))
        out.append(replies)
        return len(replies)

    # ------------------------------------------------------------------ output

    def _send(self, payload: bytes, close_after: bool) -> None:
        if close_after:
            self._write_now(payload, True)
        elif payload:
            # Replies go out together at the end of the loop iteration (Redis's
            # handleClientsWithPendingWrites): a write to a loopback socket wakes the client at
            # once, and writing mid-iteration hands it the CPU before we read the others.
            self.pending_out.append(payload)
            if len(self.pending_out) == 1:
                self.server.schedule_write(self)

    def flush_out(self) -> None:
        """Write this iteration's replies: ``_write_now`` inlined, as this runs per reply.
        The caller has written the store's deferred puts (``EdgeKVServer._flush_writes``)."""
        pending = self.pending_out
        if pending:
            self.pending_out = []
            if self.unwritten:
                self.unwritten = []
            if self._closed:
                return
            payload = b"".join(pending)  # of one reply: that reply itself, not a copy
            state = self.state
            state.stats.net_output_bytes += len(payload)
            transport = self.transport
            transport.write(payload)
            limit = state.config.client_output_buffer_limit
            if limit and transport.get_write_buffer_size() > limit:
                log.warning("closing client %s: output buffer over %d bytes (it is not reading)",
                            self.session.addr, limit)
                self.kill()
            elif self._eof:
                self._close_if_answered()

    def refuse_unwritten(self, error: bytes) -> None:
        """The disk refused the deferred puts these replies acknowledge: say so instead."""
        for i in self.unwritten:
            self.pending_out[i] = error
        self.unwritten = []

    def _write_now(self, payload: bytes, close_after: bool) -> None:
        try:  # deferred puts reach the file before any reply goes out
            self.store.flush_writes()
        except WriteFailedError as exc:
            log.error("client %s: its writes could not be written: %s", self.session.addr, exc)
            self.kill()  # nothing it wrote may be acknowledged, and it is closing anyway
            return
        if self.pending_out:
            self.unwritten = []
            payload = b"".join(self.pending_out) + payload
            self.pending_out = []
        transport = self.transport
        if payload:
            self.state.stats.net_output_bytes += len(payload)
            transport.write(payload)
            limit = self.state.config.client_output_buffer_limit
            if limit and transport.get_write_buffer_size() > limit:
                log.warning("closing client %s: output buffer over %d bytes (it is not reading)",
                            self.session.addr, limit)
                self.kill()
                return
        if close_after:
            self._closed = True
            transport.close()

    def release(self, durable_seq: int) -> None:
        held = self.held
        while held and held[0][0] <= durable_seq and not self._closed:
            _, payload, close_after = held.popleft()
            self._send(payload, close_after)
        if self._eof:
            self._close_if_answered()

    def fail_held(self, exc: Exception) -> None:
        """The fsync failed: nothing held may be acknowledged, so drop the client."""
        self.held.clear()
        self.kill()

    def pause_writing(self) -> None:
        if not self._paused and not self._closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._paused and not self._closed:
            self._paused = False
            self.transport.resume_reading()


def _addr(info) -> str:
    if not info:
        return ""
    if isinstance(info, tuple):
        host, port = info[0], info[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(info)


class EdgeKVServer:
    """Owns the store, the listening sockets and the background tasks of one server."""

    def __init__(self, config: ServerConfig) -> None:
        config.check()
        self.config = config
        limits = Limits(max_value_bytes=config.max_value_bytes, min_ttl_seconds=config.min_ttl,
                        max_namespaces=config.max_namespaces)
        self.store = Store.open(config.data_dir, fsync=config.fsync,
                                segment_bytes=config.segment_bytes, limits=limits,
                                write_rate_limit=config.write_rate_limit,
                                compaction_threshold=config.compaction_threshold or None,
                                **config.store_data_options())
        self.state = ServerState(self.store, config)
        self.state.protocol_limits_changed = self._protocol_limits_changed
        self.gate = DurabilityGate(self.store)
        self._write_queue: list[RespConnection] = []
        # The loop's call_soon, bound once in start(): on Python 3.11 every
        # asyncio.get_running_loop() makes a getpid() system call, once per loop iteration here.
        self._call_soon = None
        self.stopping = False
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped = asyncio.Event()
        self._reaper: asyncio.Task | None = None
        self.http_runner = None

    def schedule_write(self, conn: RespConnection) -> None:
        if not self._write_queue:
            (self._call_soon or asyncio.get_running_loop().call_soon)(self._flush_writes)
        self._write_queue.append(conn)

    def _flush_writes(self) -> None:
        """Once per loop iteration: write the SETs it left in the store's buffer, then every
        reply; if the disk refuses those SETs, their replies become the error."""
        queue, self._write_queue = self._write_queue, []
        try:
            self.store.flush_writes()
        except WriteFailedError as exc:
            log.error("writes could not be written: %s", exc)
            error = encode_error(kv_error_text(exc))
            for conn in queue:
                if conn.unwritten:
                    conn.refuse_unwritten(error)
        for conn in queue:
            conn.flush_out()

    def _protocol_limits_changed(self) -> None:
        c = self.config
        for session in list(self.state.clients.values()):
            parser = session.connection.parser
            parser.max_bulk_len = c.proto_max_bulk_len
            parser.max_query_buffer = c.client_query_buffer_limit

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._call_soon = loop.call_soon
        self.state.shutdown_requested = lambda: loop.create_task(self.stop())
        self.gate.start(loop)
        for host in self.config.bind_addresses():
            srv = await loop.create_server(lambda: RespConnection(self), host, self.config.port,
                                           reuse_address=True, backlog=511)
            self._servers.append(srv)
            if self.config.port == 0:
                self.state.tcp_port = srv.sockets[0].getsockname()[1]
        self._reaper = loop.create_task(self._reap_expired())
        await self._start_http()
        log.info("edgekv listening on %s port %d (data %s, fsync %s, %d keys recovered in %.2fs)",
                 self.config.bind, self.state.tcp_port, self.store.path, self.store.fsync_policy,
                 self.store.recovery.live_keys, self.store.recovery.seconds)

    async def _start_http(self) -> None:
        if self.config.http_port is None:
            return
        try:
            from . import http
        except ImportError as exc:
            log.warning("REST API disabled: %s (install edgekv's dependencies)", exc)
            return
        self.http_runner = await http.start(self)

    @property
    def port(self) -> int:
        return self.state.tcp_port

    async def _reap_expired(self) -> None:
        while True:
            await asyncio.sleep(_REAP_INTERVAL)
            try:
                self.state.stats.expired_keys += self.store.reap_expired(limit=2000)
            except Exception:
                log.exception("expiry reaper failed")

    async def stop(self) -> None:
        """Stop accepting, let in-flight batches finish their fsync, close clients and store."""
        if self.stopping:
            await self._stopped.wait()
            return
        self.stopping = True
        log.info("shutting down: no new connections, finishing in-flight replies")
        for srv in self._servers:
            srv.close()
        if self._reaper is not None:
            self._reaper.cancel()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        await self.gate.drain()
        for session in list(self.state.clients.values()):
            session.kill()
        for srv in self._servers:
            await srv.wait_closed()
        self.gate.close()
        try:
            self.store.close()
        except Exception as exc:  # the files are released either way; do not hang the exit
            log.error("closing the store failed: %s", exc)
        else:
            log.info("edgekv stopped cleanly")
        self._stopped.set()

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, lambda: loop.create_task(self.stop()))
            except (NotImplementedError, RuntimeError):
                pass
        await self.start()
        await self._stopped.wait()


def run(config: ServerConfig) -> None:
    """Run a server until SIGTERM, SIGINT or SHUTDOWN (uvloop when it is installed)."""
    async def main() -> None:
        server = EdgeKVServer(config)
        await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
