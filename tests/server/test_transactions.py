"""MULTI / EXEC / DISCARD / WATCH / UNWATCH: redis-py's transactional pipelines (its default),
``watch`` and ``WatchError``, ``Redis.transaction``, both protocols, sync and asyncio; the raw
replies and error texts held against a real redis-server; what a WATCH notices; atomicity;
and EXEC's reply waiting for fsync like any write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import redis
import redis.asyncio

from tests.server.conftest import (module_server, raw_replies as raw, resp_command as cmd,
                                   watched_exec)


@pytest.fixture(scope="module")
def edgekv(tmp_path_factory):
    yield from module_server(tmp_path_factory, "multi", "--min-ttl", "1", fsync="always")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


@pytest.fixture
def r(edgekv, protocol):
    client = edgekv.client(protocol=protocol)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def other(edgekv):
    client = edgekv.client()
    yield client
    client.close()


# ---------------------------------------------------------------------------- redis-py


def test_default_pipeline_is_a_transaction(r):
    with r.pipeline() as pipe:  # transaction=True: MULTI ... EXEC
        pipe.set("a", "1").incr("a").get("a").set("b", "x").mget("a", "b")
        assert pipe.execute() == [True, 2, b"2", True, [b"2", b"x"]]
    assert r.get("a") == b"2"


def test_an_error_inside_exec_is_its_commands_reply_and_the_others_run(r):
    r.set("s", "not a number")
    with r.pipeline() as pipe:
        pipe.set("a", "1").incr("s").set("b", "2")
        replies = pipe.execute(raise_on_error=False)
    assert replies[0] is True and replies[2] is True
    assert isinstance(replies[1], redis.ResponseError)
    assert str(replies[1]) == "value is not an integer or out of range"
    assert r.mget("a", "b") == [b"1", b"2"]


def test_a_queuing_error_aborts_the_transaction(r):
    with r.pipeline() as pipe:
        pipe.set("a", "1")
        pipe.execute_command("SET", "only-a-key")  # wrong arity, refused while queuing
        with pytest.raises(redis.ResponseError) as exc:
            pipe.execute()
    # redis-py reports the queuing error (it saw EXECABORT and looks for the cause)
    assert "wrong number of arguments for 'set' command" in str(exc.value)
    assert r.get("a") is None  # nothing ran


def test_watch_then_exec_runs_when_nothing_changed(r):
    r.set("k", "1")
    with r.pipeline() as pipe:
        pipe.watch("k")
        value = int(pipe.get("k"))
        pipe.multi()
        pipe.set("k", value + 1)
        assert pipe.execute() == [True]
    assert r.get("k") == b"2"


def test_watch_error_when_another_client_modifies_the_key(r, other):
    r.set("k", "1")
    with r.pipeline() as pipe:
        pipe.watch("k")
        other.set("k", "changed")
        pipe.multi()
        pipe.set("k", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("k") == b"changed"


def test_transaction_helper_retries_after_a_conflict(r, other):
    r.set("counter", "10")
    attempts = []

    def bump(pipe):
        value = int(pipe.get("counter"))
        attempts.append(value)
        if len(attempts) == 1:
            other.incr("counter")  # a concurrent change: the first EXEC must fail
        pipe.multi()
        pipe.set("counter", value + 1)

    assert r.transaction(bump, "counter") == [True]
    assert attempts == [10, 11]
    assert r.get("counter") == b"12"


def test_asyncio_pipeline_and_watch(edgekv, protocol):
    async def main():
        client = redis.asyncio.Redis(host="127.0.0.1", port=edgekv.port, protocol=protocol)
        other = redis.asyncio.Redis(host="127.0.0.1", port=edgekv.port)
        try:
            await client.flushall()
            async with client.pipeline() as pipe:
                pipe.set("a", "1").incr("a").get("a")
                assert await pipe.execute() == [True, 2, b"2"]
            async with client.pipeline() as pipe:
                await pipe.watch("a")
                await other.set("a", "5")
                pipe.multi()
                pipe.set("a", "6")
                with pytest.raises(redis.WatchError):
                    await pipe.execute()
            assert await client.get("a") == b"5"

            async def add(pipe):
                value = int(await pipe.get("a"))
                pipe.multi()
                pipe.set("a", value + 1)
            assert await client.transaction(add, "a") == [True]
            assert await client.get("a") == b"6"
        finally:
            await client.aclose()
            await other.aclose()
    asyncio.run(main())


# ---------------------------------------------------------------------------- raw replies


SCRIPTS = {
    "errors": (cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"MULTI") + cmd(b"WATCH", b"a")
               + cmd(b"INCR", b"a") + cmd(b"SET", b"a") + cmd(b"EXEC") + cmd(b"EXEC")
               + cmd(b"DISCARD") + cmd(b"GET", b"a")),
    "runtime-error": (cmd(b"MULTI") + cmd(b"SET", b"a", b"x") + cmd(b"INCR", b"a")
                      + cmd(b"GET", b"a") + cmd(b"EXEC") + cmd(b"EXEC")),
    "unknown-command": (cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"NOSUCH\xff", b"x")
                        + cmd(b"EXEC") + cmd(b"EXISTS", b"a")),
    "no-multi": cmd(b"MULTI") + cmd(b"SAVE") + cmd(b"PING") + cmd(b"EXEC"),
    "subcommand": (cmd(b"MULTI") + cmd(b"CLIENT", b"NOPE") + cmd(b"EXEC") + cmd(b"MULTI")
                   + cmd(b"CLIENT", b"SETNAME") + cmd(b"EXEC")),
    "discard": (cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"DISCARD") + cmd(b"EXISTS", b"a")
                + cmd(b"EXEC")),
    "empty": cmd(b"MULTI") + cmd(b"EXEC"),
    "nested-not-fatal": (cmd(b"MULTI") + cmd(b"WATCH", b"a") + cmd(b"MULTI")
                         + cmd(b"SET", b"a", b"1") + cmd(b"EXEC")),
    "quit": (cmd(b"SET", b"q", b"0") + cmd(b"MULTI") + cmd(b"SET", b"q", b"1") + cmd(b"QUIT")),
    "watch-unwatch": (cmd(b"WATCH", b"a", b"b") + cmd(b"SET", b"a", b"1") + cmd(b"UNWATCH")
                      + cmd(b"MULTI") + cmd(b"GET", b"a") + cmd(b"EXEC")),
    "watch-own-write": (cmd(b"WATCH", b"a") + cmd(b"SET", b"a", b"1") + cmd(b"MULTI")
                        + cmd(b"GET", b"a") + cmd(b"EXEC") + cmd(b"MULTI") + cmd(b"GET", b"a")
                        + cmd(b"EXEC")),
    "watch-missing": (cmd(b"WATCH", b"nope") + cmd(b"MULTI") + cmd(b"SET", b"x", b"1")
                      + cmd(b"EXEC")),
    "reset": (cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"RESET") + cmd(b"EXEC")
              + cmd(b"EXISTS", b"a")),
    "arity": cmd(b"MULTI", b"x") + cmd(b"EXEC", b"x") + cmd(b"WATCH") + cmd(b"UNWATCH", b"x"),
    "resp3": (cmd(b"HELLO", b"3") + cmd(b"WATCH", b"a") + cmd(b"SET", b"a", b"2")
              + cmd(b"MULTI") + cmd(b"GET", b"a") + cmd(b"EXEC") + cmd(b"MULTI")
              + cmd(b"GET", b"a") + cmd(b"GET", b"missing") + cmd(b"EXEC")),
}


def _raw_or_closed(port: int, payload: bytes) -> bytes:
    """The replies of a script ending with QUIT (the connection closes after them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _without_hello(reply: bytes) -> bytes:
    """HELLO's map differs between servers by design (version, id): keep what follows it."""
    if reply.startswith(b"%"):
        hello_end = reply.index(b"modules\r\n*0\r\n") + len(b"modules\r\n*0\r\n")
        return reply[hello_end:]
    return reply


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_raw_replies_match_redis(edgekv, reference, name):
    """Every reply byte for byte as redis-server 7 sends it (and the expected texts when no
    redis-server is installed)."""
    script = SCRIPTS[name]
    send = _raw_or_closed if name == "quit" else raw
    edgekv.client().flushall()
    got = _without_hello(send(edgekv.port, script))
    if reference is not None:
        reference.flushall()
        port = reference.connection_pool.connection_kwargs["port"]
        assert got == _without_hello(send(port, script))
        if name == "quit":
            assert reference.get("q") == b"0"
    expected = {
        "errors": (b"+OK\r\n+QUEUED\r\n-ERR MULTI calls can not be nested\r\n"
                   b"-ERR WATCH inside MULTI is not allowed\r\n+QUEUED\r\n"
                   b"-ERR wrong number of arguments for 'set' command\r\n"
                   b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                   b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n$-1\r\n"),
        "unknown-command": (b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH\xff', with args "
                            b"beginning with: 'x' \r\n"
                            b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                            b":0\r\n"),
        "no-multi": (b"+OK\r\n-ERR Command not allowed inside a transaction\r\n+QUEUED\r\n"
                     b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
        "watch-own-write": (b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n+OK\r\n+QUEUED\r\n"
                            b"*1\r\n$1\r\n1\r\n"),
        "resp3": (b"+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n_\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n"
                  b"*2\r\n$1\r\n2\r\n_\r\n"),
        "empty": b"+OK\r\n*0\r\n",
        "nested-not-fatal": (b"+OK\r\n-ERR WATCH inside MULTI is not allowed\r\n"
                             b"-ERR MULTI calls can not be nested\r\n+QUEUED\r\n*1\r\n+OK\r\n"),
        "quit": b"+OK\r\n+OK\r\n+QUEUED\r\n+OK\r\n",  # QUIT discards the transaction
    }.get(name)
    if expected is not None:
        assert got == expected
    if name == "quit":
        assert edgekv.client().get("q") == b"0"


def test_exec_refused_before_running_discards_the_transaction(edgekv, reference):
    """A refused EXEC (wrong arity, or NOAUTH) answers Redis's execCommandAbort text."""
    payload = (cmd(b"EXEC", b"x") + cmd(b"MULTI") + cmd(b"SET", b"a", b"1") + cmd(b"EXEC", b"x")
               + cmd(b"EXEC") + cmd(b"CONFIG", b"SET", b"requirepass", b"pw"))
    expected = (b"-EXECABORT Transaction discarded because of: wrong number of arguments for "
                b"'exec' command\r\n+OK\r\n+QUEUED\r\n"
                b"-EXECABORT Transaction discarded because of: wrong number of arguments for "
                b"'exec' command\r\n-ERR EXEC without MULTI\r\n+OK\r\n")
    unauthenticated = cmd(b"EXEC") + cmd(b"MULTI") + cmd(b"AUTH", b"pw") + cmd(b"MULTI")
    expected_unauthenticated = (
        b"-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n"
        b"-NOAUTH Authentication required.\r\n+OK\r\n+OK\r\n")
    done = cmd(b"EXEC") + cmd(b"CONFIG", b"SET", b"requirepass", b"")
    ports = [edgekv.port]
    if reference is not None:
        ports.append(reference.connection_pool.connection_kwargs["port"])
    for port in ports:
        try:
            assert raw(port, payload) == expected
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(unauthenticated)
                data = b""
                while len(data) < len(expected_unauthenticated):
                    data += sock.recv(1000)
                assert data == expected_unauthenticated
                sock.sendall(done)
                while not data.endswith(b"*0\r\n+OK\r\n"):
                    data += sock.recv(1000)
        finally:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(cmd(b"AUTH", b"pw") + cmd(b"CONFIG", b"SET", b"requirepass", b""))
                sock.recv(100)


def test_client_list_shows_a_transaction_in_progress(edgekv, other):
    with socket.create_connection(("127.0.0.1", edgekv.port), timeout=10) as sock:
        sock.sendall(cmd(b"CLIENT", b"SETNAME", b"in-multi") + cmd(b"MULTI")
                     + cmd(b"SET", b"a", b"1"))
        data = b""
        while data != b"+OK\r\n+OK\r\n+QUEUED\r\n":
            data += sock.recv(100)
        line = next(line for line in other.execute_command("CLIENT", "LIST").splitlines()
                    if b"name=in-multi " in line)
        assert b" flags=x " in line and b" multi=1 " in line
        sock.sendall(cmd(b"EXEC"))
        data = b""
        while data != b"*1\r\n+OK\r\n":
            data += sock.recv(100)
    assert other.get("a") == b"1"


# ---------------------------------------------------------------------------- what WATCH sees


def test_watch_sees_deletion_expiry_flush_and_rewrites(edgekv, r, other):
    r.set("k", "v")
    assert watched_exec(r, "k", lambda: other.delete("k")) is None
    r.set("k", "v")
    assert watched_exec(r, "k", lambda: other.set("k", "v")) is None  # same value: a write
    assert watched_exec(r, "k", lambda: other.expire("k", 100)) is None
    assert watched_exec(r, "k", lambda: other.persist("k")) is None
    assert watched_exec(r, "k", lambda: other.flushdb()) is None
    assert watched_exec(r, "k", lambda: other.set("k", "new")) is None  # missing, then set
    r.set("k", "v")
    assert watched_exec(r, "k", lambda: other.get("k")) == [True]  # reads change nothing
    assert watched_exec(r, "k", lambda: other.set("other-key", "x")) == [True]
    assert watched_exec(r, "k", lambda: other.delete("never-there")) == [True]
    # a key that expires between WATCH and EXEC (min-ttl is 1 s on this server)
    r.set("k", "v", px=1000)
    assert watched_exec(r, "k", lambda: time.sleep(1.2)) is None


def test_watch_survives_compaction(edgekv, r):
    """Compaction moves records but keeps their sequence numbers: not a modification."""
    for i in range(50):
        r.set(f"filler{i}", "x" * 100)
        r.set(f"filler{i}", "y" * 100)
    r.set("k", "v")

    def compact():
        r.execute_command("KV.COMPACT")
        deadline = time.monotonic() + 30
        while r.info("persistence")["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "error" not in str(r.info("persistence")["edgekv_last_compaction"])

    assert watched_exec(r, "k", compact) == [True]


def test_watch_in_a_namespace_deleted_meanwhile_aborts(edgekv, r, other):
    info = other.execute_command("KV.NAMESPACE", "CREATE", f"tx-{time.monotonic_ns()}")
    ns_id = info[b"id"] if isinstance(info, dict) else dict(zip(info[::2], info[1::2]))[b"id"]
    r.execute_command("SELECT", ns_id)
    r.set("k", "v")
    r.execute_command("WATCH", "k")
    other.execute_command("KV.NAMESPACE", "DELETE", ns_id)
    r.execute_command("SELECT", "0")
    assert r.execute_command("MULTI") in (b"OK", "OK", True)
    r.execute_command("SET", "witness", "1")
    assert r.execute_command("EXEC") is None
    assert r.exists("witness") == 0


# ---------------------------------------------------------------------------- atomicity


def test_exec_is_atomic_for_other_clients(edgekv):
    """Transactions moving one unit between two keys, while another client reads both: the
    reader never sees a half-done transfer."""
    setup = edgekv.client()
    setup.mset({"x": 1000, "y": 0})
    stop = threading.Event()
    seen = []

    def reader():
        client = edgekv.client()
        while not stop.is_set():
            x, y = client.mget("x", "y")
            seen.append(int(x) + int(y))
        client.close()

    thread = threading.Thread(target=reader)
    thread.start()
    writer = edgekv.client()
    try:
        for _ in range(200):
            with writer.pipeline() as pipe:
                pipe.decr("x").incr("y")
                pipe.execute()
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert setup.mget("x", "y") == [b"800", b"200"]
    assert seen and set(seen) == {1000}
    setup.close()


# ---------------------------------------------------------------------------- fsync=always


class _Transport:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
def test_exec_reply_waits_for_fsync_under_always(tmp_path, pipelined):
    """EXEC's reply is held until its writes are durable, alone or inside a pipeline (the
    connection's queue, observed in-process: a real socket cannot show the ordering)."""
    from server.app import EdgeKVServer, RespConnection
    from server.config import ServerConfig

    async def main():
        server = EdgeKVServer(ServerConfig(data_dir=str(tmp_path / "data"), fsync="always",
                                           http_port=None, compaction_threshold=0))
        server.gate.start(asyncio.get_running_loop())
        server._call_soon = asyncio.get_running_loop().call_soon
        conn = RespConnection(server)
        transport = _Transport()
        conn.connection_made(transport)
        conn.data_received(cmd(b"MULTI"))
        await asyncio.sleep(0.01)
        transport.data = b""
        queued = cmd(b"SET", b"a", b"1") + cmd(b"SET", b"b", b"2")
        if pipelined:
            conn.data_received(queued + cmd(b"EXEC"))
        else:
            conn.data_received(queued)
            await asyncio.sleep(0.01)
            transport.data = b""
            conn.data_received(cmd(b"EXEC"))
        store = server.store
        assert conn.held and store.durable_seq < store.last_seq  # held: not yet durable
        assert b"*2" not in transport.data
        deadline = time.monotonic() + 5
        while b"*2\r\n+OK\r\n+OK\r\n" not in transport.data:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert store.durable_seq >= store.last_seq
        store.close()
    asyncio.run(main())
