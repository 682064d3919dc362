"""RESP gaps closed: MEMORY (held against a real redis-server 7 and driven by the real
``redis-cli --memkeys``), WATCH noticing a watched missing key created and deleted again,
``keys retire`` against a remote server, KV.BULKPUT with a body that is not UTF-8, and port
bounds in a config file.  Real edgekv processes, sockets and redis-py throughout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import redis

from tests.server.conftest import (REPO, raw_replies, resp_command as cmd, unparsed,
                                   watched_exec)


def both(server, reference, *requests: list[bytes]) -> tuple[bytes, bytes]:
    """The raw replies of edgekv and of redis-server to the same commands."""
    payload = b"".join(cmd(*args) for args in requests)
    port = reference.connection_pool.connection_kwargs["port"]
    return raw_replies(server.port, payload), raw_replies(port, payload)


@pytest.fixture
def ref(reference):
    if reference is None:
        pytest.skip("redis-server 7 is not installed")
    reference.flushall()
    return reference


# ---------------------------------------------------------------------------- MEMORY


@pytest.mark.parametrize("request_", [
    [b"MEMORY", b"USAGE", b"nope"],
    [b"MEMORY", b"USAGE", b"nope", b"SAMPLES", b"x"],  # options are checked before the key
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES"],
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES", b"x"],
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES", b"-1"],
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES", b"007"],
    [b"MEMORY", b"USAGE", b"k", b"BAR", b"1"],
    [b"MEMORY", b"USAGE"],
    [b"MEMORY"],
    [b"MEMORY", b"FOO"],
    [b"MEMORY", b"DOCTOR", b"x"],
    [b"MEMORY", b"STATS", b"x"],
    [b"MEMORY", b"PURGE"],
    [b"memory", b"help"],
])
def test_memory_errors_nil_and_ok_are_redis_byte_for_byte(server, ref, request_):
    setup = [b"SET", b"k", b"v"]
    ours, theirs = both(server, ref, setup, request_)
    assert ours == theirs


@pytest.mark.parametrize("protocol", [2, 3])
def test_memory_usage_is_an_integer_estimate_that_follows_the_data(server, ref, protocol):
    r = server.client(protocol=protocol)
    r.set("small", "v")
    r.set("big", "x" * 10_000)
    r.execute_command("KV.PUT", "meta", "v", "METADATA", '{"plan":"pro","n":1}',
                      "EXPIRATION_TTL", "3600")
    ref.set("small", "v")
    ours, theirs = both(server, ref, [b"MEMORY", b"USAGE", b"small", b"SAMPLES", b"0"])
    assert ours[:1] == theirs[:1] == b":"
    small = r.memory_usage("small")
    big = r.memory_usage("big", samples=5)
    meta = r.memory_usage("meta")
    assert isinstance(small, int) and small > len("small") + len("v") + 32
    assert big - small >= 10_000 - 1 - 2 * 2  # the longer value (and "big" is shorter)
    assert meta > small + len('{"plan":"pro","n":1}')  # metadata and expiration cost too
    assert r.memory_usage("nope") is None
    r.delete("big")
    assert r.memory_usage("big") is None


@pytest.mark.parametrize("protocol", [2, 3])
def test_memory_stats_has_redis_fields_and_parses_in_redis_py(server, ref, protocol):
    r = server.client(protocol=protocol)
    r.mset({f"key:{i}": "v" * 100 for i in range(200)})
    r.execute_command("SELECT", "0")
    theirs = redis.Redis(port=ref.connection_pool.connection_kwargs["port"],
                         protocol=protocol)
    theirs.set("a", "b")
    mine, real = r.memory_stats(), theirs.memory_stats()
    theirs.close()
    assert {k for k in real if not k.startswith("db.")} <= set(mine)
    assert set(mine["db.0"]) >= set(real["db.0"])
    assert mine["keys.count"] == 200
    for name in ("peak.allocated", "total.allocated", "startup.allocated", "overhead.total",
                 "dataset.bytes", "keys.bytes-per-key"):
        assert isinstance(mine[name], int) and mine[name] >= 0, name
    assert mine["peak.allocated"] >= mine["total.allocated"] > 0
    assert mine["db.0"]["overhead.hashtable.main"] > 0
    assert mine["edgekv.disk.bytes"] > 200 * 100
    # the reply's own types: RESP3 map and doubles as Redis sends them, flat array in RESP2
    ours_raw, theirs_raw = both(server, ref, [b"HELLO", b"3"], [b"MEMORY", b"STATS"])
    stats_ours = ours_raw[ours_raw.index(b"\r\n%", ours_raw.index(b"modules")):]
    stats_theirs = theirs_raw[theirs_raw.index(b"\r\n%", theirs_raw.index(b"modules")):]
    assert b"$18\r\ndataset.percentage\r\n," in stats_ours
    assert b"$18\r\ndataset.percentage\r\n," in stats_theirs
    ours_raw, _ = both(server, ref, [b"MEMORY", b"STATS"])
    assert ours_raw.startswith(b"*") and b"$14\r\npeak.allocated\r\n:" in ours_raw


def test_memory_doctor_malloc_stats_and_help_have_redis_shapes(server, ref):
    for sub in (b"DOCTOR", b"MALLOC-STATS"):
        ours, theirs = both(server, ref, [b"MEMORY", sub])
        assert ours[:1] == theirs[:1] == b"$"  # a bulk string in RESP2
        ours, theirs = both(server, ref, [b"HELLO", b"3"], [b"MEMORY", sub])
        assert b"\r\n=" in ours and b"txt:" in ours  # a verbatim string in RESP3
        assert b"\r\n=" in theirs
    report = server.client(decode_responses=True).execute_command("MEMORY", "DOCTOR")
    assert "edgekv" in report and "keys" in report
    ours, theirs = both(server, ref, [b"MEMORY", b"HELP"])
    assert ours == theirs


def test_memory_is_in_command_info_and_docs_as_in_redis(server, ref):
    port = ref.connection_pool.connection_kwargs["port"]

    def normal(reply):  # subcommands in name order: Redis lists them in hash order
        if isinstance(reply, list):
            items = [normal(x) for x in reply]
            if items and all(isinstance(x, list) and x and isinstance(x[0], bytes)
                             and x[0].startswith(b"memory|") for x in items):
                items.sort(key=lambda x: x[0])
            return items
        return reply

    def strip_display(reply):  # COMMAND DOCS without Redis 7.2's display_text
        if isinstance(reply, dict):
            return {k: strip_display(v) for k, v in reply.items() if k != b"display_text"}
        if isinstance(reply, list):
            return [strip_display(x) for x in reply]
        return reply

    call = unparsed  # redis-py's COMMAND callback cannot read DOCS

    ours = redis.Redis(port=server.port, protocol=3)
    theirs = redis.Redis(port=port, protocol=3)
    try:
        mine, real = (call(c, "COMMAND", "INFO", "memory") for c in (ours, theirs))
        assert normal(mine) == normal(real)
        mine, real = (call(c, "COMMAND", "DOCS", "memory") for c in (ours, theirs))
        if b"display_text" not in repr(real).encode():  # Redis 7.2 added it; 7.0 has none
            mine = strip_display(mine)
        assert mine == real
        assert call(ours, "COMMAND", "GETKEYS", "MEMORY", "USAGE", "k") == [b"k"]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_memkeys_finds_the_biggest_key(server):
    r = server.client()
    r.mset({f"key:{i}": "v" * (10 + i) for i in range(40)})
    r.set("the-big-one", "x" * 50_000)
    for extra in ([], ["--memkeys-samples", "0"]):
        run = subprocess.run(["redis-cli", "-p", str(server.port), "--memkeys", *extra],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "Biggest string found '\"the-big-one\"' has" in run.stdout, run.stdout
        assert "41 strings with" in run.stdout, run.stdout
        assert "ERR" not in run.stdout + run.stderr


# ---------------------------------------------------------------------------- WATCH


def _transaction_runs(client: redis.Redis, key: str, meanwhile) -> bool:
    """Whether EXEC ran after WATCH ``key`` and ``meanwhile()`` (False: it returned nil)."""
    return watched_exec(client, key, meanwhile) is not None


def test_watch_of_a_missing_key_created_and_deleted_aborts_as_in_redis(server, ref):
    port = ref.connection_pool.connection_kwargs["port"]
    for target in (server.client(), redis.Redis(port=port)):
        other = redis.Redis(connection_pool=redis.ConnectionPool(
            **target.connection_pool.connection_kwargs))
        try:
            # created and deleted again by another client: aborts
            assert not _transaction_runs(target, "w", lambda: (other.set("w", "1"),
                                                               other.delete("w")))
            # nothing touched it, or only a no-op delete and other keys: runs
            assert _transaction_runs(target, "w", lambda: None)
            assert _transaction_runs(target, "w", lambda: (other.delete("w"),
                                                           other.set("not-w", "1")))
        finally:
            other.close()
            target.close()


def test_watch_sees_creates_of_every_kind_of_write(server):
    r = server.client()
    other = server.client()
    created_then_deleted = {
        "pipelined SET run": lambda: other.pipeline(transaction=False)
        .set("w", "1").set("w2", "2").execute(),
        "another client's MULTI": lambda: other.pipeline().set("w", "1").delete("w")
        .execute(),
        "KV.BULKPUT": lambda: other.execute_command(
            "KV.BULKPUT", '[{"key":"x","value":"1"},{"key":"w","value":"2"}]'),
        "KV.PUT": lambda: other.execute_command("KV.PUT", "w", "v"),
        "INCR": lambda: other.incr("w"),
        "APPEND": lambda: other.append("w", "x"),
        "MSET": lambda: other.mset({"a": "1", "w": "2"}),
        "SET NX": lambda: other.set("w", "1", nx=True),
        "GETSET": lambda: other.getset("w", "1"),
    }
    for name, create in created_then_deleted.items():
        def meanwhile():
            create()
            other.delete("w")
            other.execute_command("FLUSHDB")
        assert not _transaction_runs(r, "w", meanwhile), name
        assert _transaction_runs(r, "w", lambda: other.set("elsewhere", "1")), name
    # created then flushed, in another namespace the watcher did not select: no effect
    other.execute_command("KV.NAMESPACE", "CREATE", "second")
    other.execute_command("SELECT", "1")
    assert _transaction_runs(r, "w", lambda: (other.set("w", "1"), other.delete("w")))
    # a failed SET XX does not create the key: no abort, as in Redis
    assert _transaction_runs(r, "w", lambda: server.client().set("w", "1", xx=True))
    other.close()


def test_unwatch_and_closed_watchers_stop_the_watch(server):
    r = server.client()
    other = server.client()
    assert not _transaction_runs(r, "w", lambda: (other.set("w", "1"), other.delete("w")))
    with r.pipeline() as pipe:
        pipe.watch("w")
        pipe.unwatch()
        other.set("w", "1")
        other.delete("w")
        pipe.multi()
        pipe.set("tx", "1")
        assert pipe.execute() == [True]
    # a client that watched a missing key and went away leaves nothing behind
    gone = server.client()
    gone.execute_command("WATCH", "w2")
    gone.close()
    for i in range(5000):  # past the registry's sweep interval
        other.set("w2", str(i))
    assert _transaction_runs(r, "w2", lambda: None)
    other.close()


# ---------------------------------------------------------------------------- keys retire


def _cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_keys_retire_over_resp_says_what_is_refused_and_why(server_factory):
    srv = server_factory("--compaction-threshold", "0", fsync="everysec")
    url = f"redis://127.0.0.1:{srv.port}"
    r = srv.client()
    r.mset({f"k{i}": f"secret {i}" for i in range(20)})
    first = _cli("keys", "status", "--json", "--remote", url)
    assert first.returncode == 0, first.stderr
    rotated = _cli("keys", "rotate", "--json", "--remote", url)
    new_id = int(rotated.stdout.split(":")[1].strip(" }\n"))
    old_id = new_id - 1
    cases = {
        old_id: [f"cannot retire key id {old_id}: key id {old_id} still encrypts stored "
                 f"data in 1 segment(s)", f"`edgekv compact --remote {url}`"],
        new_id: [f"key id {new_id} is the active key", f"`edgekv keys rotate --remote {url}`"],
        9: ["key id 9 is not in the key ring (its key ids: "],
        0: ["key id 0 stands for records written without encryption"],
    }
    for key_id, expected in cases.items():
        run = _cli("keys", "retire", key_id, "--remote", url)
        assert run.returncode == 1, (key_id, run.stdout, run.stderr)
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("edgekv: "), run.stderr
        for text in expected:
            assert text in run.stderr, (key_id, run.stderr)
        assert "KV PUT failed" not in run.stderr and "500" not in run.stderr
    # the server's own reply: an ERR naming its commands, not a KV PUT failure
    with pytest.raises(redis.ResponseError) as info:
        r.execute_command("KV.KEYRING", "RETIRE", old_id)
    assert str(info.value).startswith(f"key id {old_id} still encrypts stored data")
    assert "KV.COMPACT" in str(info.value)
    with pytest.raises(redis.ResponseError) as info:
        r.execute_command("KV.KEYRING", "RETIRE", "+1")
    assert str(info.value) == "key id is not an integer or out of range"
    # the fix it names works
    assert _cli("compact", "--remote", url).returncode == 0
    done = _cli("keys", "retire", old_id, "--remote", url)
    assert done.returncode == 0, done.stderr
    assert r.get("k3") == b"secret 3"


def test_key_ring_commands_on_a_server_without_encryption(server_factory):
    srv = server_factory("--encryption", "no")
    r = srv.client()
    assert r.execute_command("KV.KEYRING", "STATUS")[b"enabled"] in (0, False)
    for args in (("ROTATE",), ("RETIRE", "1")):
        with pytest.raises(redis.ResponseError) as info:
            r.execute_command("KV.KEYRING", *args)
        assert str(info.value).startswith("encryption at rest is off on this server")
    run = _cli("keys", "retire", "1", "--remote", f"redis://127.0.0.1:{srv.port}")
    assert run.returncode == 1
    assert "cannot retire key id 1: encryption at rest is off" in run.stderr


# ---------------------------------------------------------------------------- KV.BULKPUT


@pytest.mark.parametrize("body, problem", [
    (b'[{"key":"a","value":"\xff"}]',
     "the body is not valid UTF-8: byte 0xff at byte offset 21 cannot start a character"),
    (b'[{"key":"a","value":"\xc3("}]',
     "the body is not valid UTF-8: the multi-byte character starting with byte 0xc3 at "
     "byte offset 21 is incomplete"),
    (b'[{"key":"a","value":"x"}]\xe2\x82',
     "the body is not valid UTF-8: it ends inside the multi-byte character starting at "
     "byte offset 25"),
])
def test_bulkput_names_the_bad_utf8_byte_and_its_offset(server, body, problem):
    reply = raw_replies(server.port, cmd(b"KV.BULKPUT", body))
    expected = ("-ERR KV.BULKPUT expects a JSON array of {key, value, ...} objects: "
                + problem + "\r\n").encode()
    assert reply == expected
    r = server.client(decode_responses=True)
    assert r.get("a") is None
    # what json.loads took before still goes through: UTF-8 with a BOM, multi-byte text
    body = '\ufeff[{"key":"é","value":"ü€"}]'.encode("utf-8")
    assert r.execute_command("KV.BULKPUT", body)["successful_key_count"] == 1
    assert r.get("é") == "ü€"


# ---------------------------------------------------------------------------- config file


@pytest.mark.parametrize("line, message", [
    ("port 70000", "port: 70000 is not a TCP port (0-65535)"),
    ("port -1", "port: -1 is not a TCP port (0-65535)"),
    ("port abc", "port: not a port number: 'abc'"),
    ("http-port 99999", "http-port: 99999 is not a TCP port (0-65535)"),
])
def test_config_file_port_out_of_range_is_refused_like_the_flag(tmp_path, line, message):
    conf = tmp_path / "edgekv.conf"
    conf.write_text(f"# settings\n{line}\n")
    run = _cli("serve", conf, "--data-dir", tmp_path / "data", "--http-port", "0",
               timeout=30)
    assert run.returncode == 2, run.stderr
    assert run.stderr == f"edgekv serve: {conf}:2: {message}\n"
    assert not (tmp_path / "data").exists()  # refused before anything was opened
    flag = line.split()[0]
    value = line.split()[1]
    by_flag = _cli("serve", f"--{flag}", value, "--data-dir", tmp_path / "data", timeout=30)
    assert by_flag.returncode == 2
    assert message.split(": ", 1)[1] in by_flag.stderr  # the same words as the flag's
