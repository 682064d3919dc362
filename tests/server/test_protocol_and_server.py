"""Protocol, connection and server behaviour: pipelining, RESP3, inline commands, abuse, auth,
introspection, durability across kill -9, clean shutdown, and the real redis-cli."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
import redis
import redis.asyncio

from tests.server.conftest import unparsed

REDIS_CLI = shutil.which("redis-cli")
needs_redis_cli = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli (redis-tools) missing")


def raw(port: int, payload: bytes, *, read_until: bytes | None = None, timeout=5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if read_until is not None and data.endswith(read_until):
                break
        return data


# ---------------------------------------------------------------------------- protocol


def test_pipeline_of_ten_thousand_commands(r):
    pipe = r.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(f"p{i}", i)
    for i in range(5000):
        pipe.get(f"p{i}")
    results = pipe.execute()
    assert results[:5000] == [True] * 5000
    assert results[5000:] == [str(i).encode() for i in range(5000)]


def test_a_pipelined_run_of_sets_answers_each_set_as_if_run_alone(server_factory, tmp_path):
    """Plain SETs in one read are one engine write; any that needs its own answer (a bad key,
    a value over the limit, no AUTH yet) makes the run go one by one, in order."""
    conf = tmp_path / "edgekv.conf"
    conf.write_text("max-value-bytes 1000\n")
    server = server_factory("--requirepass", "pw", str(conf))
    sets = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(k), k, len(v), v)
                    for k, v in [(b"a", b"1"), (b"", b"empty key"), (b"b", b"2"),
                                 (b"c", b"x" * 1001), (b"a", b"3")])
    noauth = b"-NOAUTH Authentication required.\r\n"
    assert raw(server.port, sets, read_until=noauth * 5) == noauth * 5
    auth = b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
    replies = raw(server.port, auth + sets + b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
                  read_until=b"$1\r\n3\r\n")
    assert replies.split(b"\r\n")[:6] == [
        b"+OK", b"+OK", b"-ERR Key name cannot be empty.", b"+OK",
        b"-KV PUT failed: 413 Value length of 1001 exceeds limit of 1000.", b"+OK"], replies
    client = server.client(password="pw")
    assert client.mget("a", "b", "c") == [b"3", b"2", None]
    pipe = client.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"run{i}", i)
    assert pipe.execute() == [True] * 300
    assert client.get("run299") == b"299" and client.dbsize() == 302
    assert client.info("commandstats")["cmdstat_set"]["calls"] == 5 + 300  # not the refused
    # Runs of GETs likewise: a bad key answers alone, misses are nulls, INFO counts them all.
    stats = client.info("stats")
    gets = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k)
                    for k in (b"a", b"missing", b"b", b".", b"run7"))
    replies = raw(server.port, auth + gets, read_until=b"$1\r\n7\r\n")
    assert replies.split(b"\r\n")[:-1] == [
        b"+OK", b"$1", b"3", b"$-1", b"$1", b"2",
        b'-ERR "." is not allowed as a key name.', b"$1", b"7"], replies
    resp3 = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
    replies = raw(server.port, auth + resp3 + gets.replace(b"$1\r\n.\r\n", b"$1\r\nz\r\n"),
                  read_until=b"$1\r\n7\r\n")
    assert replies.endswith(b"$1\r\n3\r\n_\r\n$1\r\n2\r\n_\r\n$1\r\n7\r\n"), replies
    after = client.info("stats")
    assert after["keyspace_hits"] - stats["keyspace_hits"] == 3 + 3
    assert after["keyspace_misses"] - stats["keyspace_misses"] == 1 + 2
    assert client.info("commandstats")["cmdstat_get"]["calls"] == 2 + 5 + 5  # 2 GETs above


def test_resp3_hello_and_types(server):
    c = server.client(protocol=3)
    hello = c.execute_command("HELLO", "3")
    assert hello[b"proto"] == 3 and hello[b"server"] == b"redis"
    assert c.set("k", "v") is True
    assert c.get("missing") is None
    assert c.config_get("appendfsync") == {b"appendfsync": b"always"} or \
        c.config_get("appendfsync") == {"appendfsync": "always"}
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        c.execute_command("HELLO", "4")


def test_asyncio_client_resp2_and_resp3(server):
    async def main():
        for protocol in (2, 3):
            c = redis.asyncio.Redis(host="127.0.0.1", port=server.port, protocol=protocol)
            await c.set(f"async{protocol}", "v")
            assert await c.get(f"async{protocol}") == b"v"
            results = await asyncio.gather(*(c.incr("counter") for _ in range(100)))
            assert sorted(results)[-1] >= 100
            await c.aclose()
    asyncio.run(main())


def test_inline_commands_like_telnet(server):
    out = raw(server.port, b'SET inline "hello world"\r\nGET inline\r\nPING\r\n',
              read_until=b"+PONG\r\n")
    assert out == b"+OK\r\n$11\r\nhello world\r\n+PONG\r\n"
    out = raw(server.port, b'SET a "unbalanced\r\n', read_until=b"\r\n")
    assert out.startswith(b"-ERR Protocol error: unbalanced quotes")


@pytest.mark.parametrize("fsync", ["always", "everysec"])
@pytest.mark.parametrize("count", [1, 5000])
def test_a_half_closed_client_gets_every_reply_then_eof(server_factory, fsync, count):
    """``nc -N`` and ``shutdown(SHUT_WR)``: the replies, held for their fsync or not, all
    arrive before the server closes (they were dropped with the connection)."""
    server = server_factory(fsync=fsync)
    payload = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$1\r\nv\r\n" % (len(str(i)) + 1, i)
                       for i in range(count))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    assert out == b"+OK\r\n" * count
    assert server.client().dbsize() == count


def test_unknown_command_and_arity_errors_use_redis_wording(r):
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("FOO", "a", "b")
    assert str(err.value) == "unknown command 'FOO', with args beginning with: 'a' 'b' "
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("GET")
    assert str(err.value) == "wrong number of arguments for 'get' command"


def test_protocol_abuse_leaves_server_and_other_clients_unharmed(server):
    good = server.client()
    good.set("survivor", "v")
    out = raw(server.port, b"*1\r\n$4000000000\r\n", read_until=b"\r\n")
    assert out.startswith(b"-ERR Protocol error: invalid bulk length")
    out = raw(server.port, b"*99999999999\r\n", read_until=b"\r\n")
    assert out.startswith(b"-ERR Protocol error: invalid multibulk length")
    out = raw(server.port, b"*2\r\n$3\r\nGET\r\nxyz\r\n", read_until=b"\r\n")
    assert out.startswith(b"-ERR Protocol error")
    # Half a command, then hang up.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
    # Binary garbage.
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(bytes(range(256)) * 8)
        try:
            sock.recv(1024)
        except OSError:
            pass
    assert good.get("survivor") == b"v"
    assert good.get("k") is None
    assert server.proc.poll() is None


def test_client_that_never_reads_is_disconnected(server):
    c = server.client()
    c.config_set("client-output-buffer-limit", "normal 1048576 1048576 0")
    c.set("big", b"x" * 500_000)
    before = c.info("stats")["total_connections_received"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 200
        try:
            for _ in range(10):
                sock.sendall(payload)
        except OSError:
            pass
    deadline = time.time() + 5
    while time.time() < deadline and (
            c.info("stats")["total_connections_received"] <= before or len(c.client_list()) > 1):
        time.sleep(0.05)
    assert len(c.client_list()) == 1
    assert "output over 1048576 bytes" in server.log()
    assert c.get("big") is not None


# ---------------------------------------------------------------------------- auth


def test_requirepass_gates_commands(server_factory):
    server = server_factory("--requirepass", "s3cret")
    out = raw(server.port, b"GET k\r\n", read_until=b"\r\n")
    assert out == b"-NOAUTH Authentication required.\r\n"
    with pytest.raises(redis.AuthenticationError):
        server.client(password="wrong").ping()
    c = server.client(password="s3cret")
    assert c.ping() is True
    c3 = server.client(password="s3cret", protocol=3)
    assert c3.set("k", "v") is True
    assert "failed AUTH" in server.log()


def test_protected_mode_refuses_public_bind_without_password(tmp_path):
    import sys
    from tests.server.conftest import REPO
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--bind", "0.0.0.0",
                           "--port", "0", "--data-dir", str(tmp_path / "d")], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "protected mode" in proc.stderr


# ---------------------------------------------------------------------------- introspection


def test_command_table_introspection(r):
    count = r.command_count()
    assert count >= 60
    info = r.command()  # redis-py parses the whole COMMAND reply
    assert info["get"]["arity"] == 2 and info["set"]["arity"] == -3
    assert r.execute_command("COMMAND", "INFO", "get")["get"]["arity"] == 2
    docs = unparsed(r, "COMMAND", "DOCS", "kv.put")
    if not isinstance(docs, dict):
        docs = dict(zip(docs[::2], docs[1::2]))
    entry = docs[b"kv.put"]
    if not isinstance(entry, dict):
        entry = dict(zip(entry[::2], entry[1::2]))
    assert b"summary" in entry and entry[b"group"] == b"kv"
    assert unparsed(r, "COMMAND", "INFO", "nosuchcommand") == [None]


def test_info_has_the_fields_clients_read(r):
    info = r.info()
    for field in ("redis_version", "arch_bits", "connected_clients", "used_memory",
                  "aof_enabled", "total_commands_processed"):
        assert field in info, field
    assert r.info("cluster")["cluster_enabled"] == 0
    memory = r.info("memory")
    # used_memory leaves out file-backed pages (libraries, mapped segments); the RSS has them.
    assert 0 < memory["used_memory"] < memory["used_memory_rss"]
    r.set("k", "v")
    assert r.info("keyspace")["db0"]["keys"] == 1
    assert "modules" in r.execute_command("INFO", "everything").decode() if isinstance(
        r.execute_command("INFO", "everything"), bytes) else True


def test_config_get_set(r):
    assert r.config_get("appendfsync") == {"appendfsync": "always"}
    assert r.config_set("appendfsync", "everysec") is True
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert r.config_set("save", "") is True
    assert r.config_set("min-ttl", "5") is True
    assert r.set("short", "v", ex=5)
    with pytest.raises(redis.ResponseError, match="Unknown option"):
        r.config_set("no-such-thing", "1")
    with pytest.raises(redis.ResponseError, match="immutable"):
        r.config_set("port", "1")
    assert "maxclients" in r.config_get("max*")
    assert r.config_resetstat() is True


@pytest.mark.parametrize("args, error", [
    (("maxclients", "0"), "argument must be between 1 and 4294967295 inclusive"),
    (("proto-max-bulk-len", "100"), "argument must be between 1048576 and"),
    (("client-query-buffer-limit", "-1"), "argument must be a memory value"),
    (("client-output-buffer-limit", "normal -5 0 0"), "Error in hard, soft or soft_seconds"),
    (("timeout", "abc"), "argument couldn't be parsed into an integer"),
    (("maxmemory-policy", "bogus"), "argument(s) must be one of the following"),
    (("maxclients", "50", "appendfsync", "bogus"), "related to argument 'appendfsync'"),
    (("maxclients", "50", "maxclients", "60"), "duplicate parameter"),
])
def test_config_set_refuses_what_redis_refuses_and_changes_nothing(r, args, error):
    """Out-of-range limits would lock every client out (maxclients 0, a 100-byte bulk limit)."""
    before = r.config_get("*")
    with pytest.raises(redis.ResponseError, match=re.escape(error)):
        r.execute_command("CONFIG", "SET", *args)
    assert r.config_get("*") == before
    assert r.set("still", "works") and r.get("still") == b"works"


def test_config_set_values_are_reported_back(r):
    assert r.config_set("timeout", "300") and r.config_set("maxmemory", "100mb")
    assert r.config_get("timeout") == {"timeout": "300"}
    assert r.config_get("maxmemory") == {"maxmemory": str(100 * 1024 * 1024)}


def test_auth_without_requirepass_and_reset_before_auth(server_factory):
    open_server = server_factory()
    assert open_server.client(username="default", password="anything").ping()
    with pytest.raises(redis.AuthenticationError, match="without any password configured"):
        open_server.client().execute_command("AUTH", "x")
    locked = server_factory("--requirepass", "s3cret")
    out = raw(locked.port, b"RESET\r\nGET k\r\n", read_until=b"Authentication required.\r\n")
    assert out == b"+RESET\r\n-NOAUTH Authentication required.\r\n"


def test_client_commands(server):
    a = server.client()
    b = server.client()
    a.client_setname("alpha")
    assert a.client_getname() == "alpha"
    assert isinstance(a.client_id(), int)
    b.ping()
    names = [c["name"] for c in a.client_list()]
    assert "alpha" in names
    assert a.execute_command("CLIENT", "SETINFO", "LIB-NAME", "tests") == b"OK"
    b_id = b.client_id()
    assert a.client_kill_filter(_id=b_id) == 1
    assert len(a.client_list()) == 1
    assert "id=" in a.execute_command("CLIENT", "INFO").decode()
    assert a.time()[0] > 1_700_000_000


# ---------------------------------------------------------------------------- durability


def test_client_kill_of_the_calling_client_answers_it_first(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"CLIENT ID\r\n")
        own_id = int(sock.recv(100)[1:-2])
        sock.sendall(b"CLIENT KILL ID %d SKIPME no\r\nPING\r\n" % own_id)
        out = b""
        while chunk := sock.recv(100):
            out += chunk
    assert out == b":1\r\n"  # answered, then closed: the PING after it is not run
    r = server.client()
    assert r.client_kill_filter(_id=r.client_id(), skipme=False) == 1


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_acknowledged_writes_survive_kill_9(server_factory, tmp_path, fsync):
    """Pipelined SETs (written as runs) and single ones: a process kill loses none of them
    under either policy (everysec: they are in the page cache before any reply)."""
    data_dir = tmp_path / "durable"
    server = server_factory(data_dir=data_dir, fsync=fsync)
    c = server.client()
    pipe = c.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"ack{i}", f"value{i}")
    assert all(pipe.execute())
    for i in range(200):
        c.set(f"single{i}", i)
    server.kill9()
    again = server_factory(data_dir=data_dir)
    c = again.client()
    assert c.dbsize() == 2200
    assert c.mget([f"ack{i}" for i in range(2000)]) == [f"value{i}".encode() for i in range(2000)]
    assert c.get("single199") == b"199"


def test_sigterm_and_shutdown_stop_cleanly(server_factory, tmp_path):
    data_dir = tmp_path / "clean"
    server = server_factory("--fsync", "no", data_dir=data_dir)
    server.client().set("k", "v")
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped cleanly" in server.log()
    again = server_factory(data_dir=data_dir)
    c = again.client()
    assert c.get("k") == b"v"
    for conflicting in (("NOSAVE", "SAVE"), ("ABORT", "NOW")):  # Redis: syntax errors
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("SHUTDOWN", *conflicting)
    with pytest.raises(redis.ResponseError, match="No shutdown in progress"):
        c.execute_command("SHUTDOWN", "ABORT")
    c.shutdown()  # redis-py expects the server to hang up, as Redis does
    again.proc.wait(timeout=15)
    assert again.proc.returncode == 0


def test_second_server_on_same_directory_is_refused(server_factory, tmp_path):
    data_dir = tmp_path / "locked"
    server_factory(data_dir=data_dir)
    with pytest.raises(RuntimeError, match="in use by another edgekv process"):
        server_factory(data_dir=data_dir)


# ---------------------------------------------------------------------------- redis-cli


def cli(port: int, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([REDIS_CLI, "-p", str(port), *args], input=stdin, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_redis_cli
def test_redis_cli_interaction(server):
    assert cli(server.port, "PING").strip() == "PONG"
    assert cli(server.port, "SET", "greeting", "hello world").strip() == "OK"
    assert cli(server.port, "GET", "greeting").strip() == "hello world"
    assert cli(server.port, "KV.PUT", "doc", "{}", "METADATA", '{"a":1}').strip() == "OK"
    assert cli(server.port, "KV.METADATA", "doc").strip() == '{"a":1}'
    out = cli(server.port, "SET", "x", "v", "EX", "5")
    assert "Expiration TTL must be at least 60" in out
    piped = cli(server.port, stdin="SET a 1\nINCR a\nGET a\n")
    assert piped.split() == ["OK", "2", "2"]


@needs_redis_cli
def test_redis_cli_scan_and_db_selection(server):
    c = server.client()
    c.execute_command("KV.NAMESPACE", "CREATE", "second")
    for i in range(300):
        c.set(f"user:{i}", "v")
    out = cli(server.port, "--scan", "--pattern", "user:*").split()
    assert sorted(out) == sorted(f"user:{i}" for i in range(300))
    assert out == sorted(out, key=str.encode)
    assert cli(server.port, "-n", "1", "SET", "only-in-1", "x").strip() == "OK"
    assert cli(server.port, "-n", "1", "DBSIZE").strip() == "1"
    assert cli(server.port, "DBSIZE").strip() == "300"


@needs_redis_cli
def test_scan_iter_across_namespaces(server):
    c = server.client()
    for title in ("ns-a", "ns-b"):
        c.execute_command("KV.NAMESPACE", "CREATE", title)
    for db in range(3):
        client = server.client(db=db)
        pipe = client.pipeline(transaction=False)
        for i in range(10_000 // 3 + db):
            pipe.set(f"db{db}:{i:05d}", "v")
        pipe.execute()
    for db in range(3):
        client = server.client(db=db)
        keys = list(client.scan_iter(count=500))
        assert len(keys) == len(set(keys)) == 10_000 // 3 + db
        assert all(k.startswith(f"db{db}:".encode()) for k in keys)
