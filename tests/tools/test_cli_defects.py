"""Command-line defects fixed together: binary keys across targets, bulk requests over the
server's proto-max-bulk-len, ``redis://HOST:PORT/DB``, where messages go, and what a bad
argument or a missing store prints."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import time

import pytest
import redis
from clitest_helpers import edgekv, free_port, start_server

from tools.targets import RedisTarget

pytestmark = pytest.mark.timeout(180)

#: Keys that are not UTF-8, as RESP can write them, and their values.
BINARY = {
    b"bin\xffkey": b"text value",        # key not UTF-8, value UTF-8
    b"b\xfe\xffk": b"\xff\xfe\x00raw",   # neither
    b"plain": b"\x00\x01\x80",           # value not UTF-8
}


def _escaped(key: bytes) -> str:
    """A key as the export file and `kv key list` spell it (``\\udcXY`` per stray byte)."""
    return key.decode("utf-8", "surrogateescape")


def _client(srv, title: str) -> redis.Redis:
    client = redis.Redis(port=srv.port, single_connection_client=True)
    client.execute_command("SELECT", title)
    return client


def _lines(text: str) -> list[dict]:
    return sorted((json.loads(line) for line in text.splitlines()), key=lambda d: d["key"])


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server of this module's own (tests change its settings), with its REST API."""
    base = tmp_path_factory.mktemp("defects")
    http_port = free_port()
    server = start_server(base / "data", base / "server.log", "--http-port", str(http_port),
                          "--http-anonymous", "yes")
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.05)
    server.http_url = f"http://127.0.0.1:{http_port}"
    yield server
    server.stop()


_count = [0]


def _namespace(srv) -> str:
    _count[0] += 1
    title = f"d{os.getpid()}-{_count[0]}"
    assert edgekv("kv", "namespace", "create", title, "--remote", srv.url).returncode == 0
    return title


# ============================================================================ 1. binary keys


def test_binary_keys_local_to_file_to_server_and_back(srv, tmp_path):
    """local -> file -> server (RESP) -> file -> local: every key byte-exact."""
    local = ["--data-dir", tmp_path / "local"]
    items = [{"key": _escaped(k), "value": base64.b64encode(v).decode(), "base64": True}
             for k, v in BINARY.items()]
    seed = "".join(json.dumps(dict(item, namespace="default")) + "\n" for item in items)
    assert edgekv("import", "-", *local, input=seed).returncode == 0
    first = edgekv("export", tmp_path / "first.jsonl", *local)
    assert first.returncode == 0, first.stderr

    title = _namespace(srv)
    into_server = edgekv("import", tmp_path / "first.jsonl", "--namespace", title,
                         "--remote", srv.url)
    assert into_server.returncode == 0, into_server.stderr
    client = _client(srv, title)
    for key, value in BINARY.items():
        assert client.execute_command("KV.GET", key, "TYPE", "bytes") == value

    second = edgekv("export", tmp_path / "second.jsonl", "--namespace", title,
                    "--remote", srv.url)
    assert second.returncode == 0, second.stderr
    back = ["--data-dir", tmp_path / "back"]
    assert edgekv("import", tmp_path / "second.jsonl", "--namespace", "default",
                  *back).returncode == 0
    third = edgekv("export", "-", *back)
    assert _lines(third.text) == _lines((tmp_path / "first.jsonl").read_text())


def test_binary_keys_written_over_resp_export_exactly(srv, tmp_path):
    """Keys SET over RESP -> export -> local import: the same bytes under the same keys."""
    title = _namespace(srv)
    client = _client(srv, title)
    for key, value in BINARY.items():
        client.set(key, value)
    out = edgekv("export", tmp_path / "e.jsonl", "--namespace", title, "--remote", srv.url)
    assert out.returncode == 0, out.stderr
    local = ["--data-dir", tmp_path / "local"]
    assert edgekv("import", tmp_path / "e.jsonl", "--namespace", "default", *local).returncode == 0
    listed = edgekv("kv", "key", "list", *local)
    # `kv key list` shows a stray byte as its \udcXY escape, as the REST API lists it.
    assert sorted(item["name"] for item in listed.json()) == sorted(map(_escaped, BINARY))
    for key, value in BINARY.items():
        if key == b"plain":
            assert edgekv("kv", "key", "get", "plain", *local).stdout == value


def test_binary_keys_over_rest(srv, tmp_path):
    """Binary keys and values cross the REST API exactly: bulk writes take ``\\udcXY`` key
    escapes, and export reads a value that is not text with bulk get's ``base64`` type."""
    title = _namespace(srv)
    client = _client(srv, title)
    for key, value in BINARY.items():
        client.set(key, value)
    rest = ["--remote", srv.http_url]
    out = edgekv("export", tmp_path / "r.jsonl", "--namespace", title, *rest)
    assert out.returncode == 0, out.stderr
    over_resp = edgekv("export", tmp_path / "full.jsonl", "--namespace", title, "--remote",
                       srv.url)
    assert over_resp.returncode == 0, over_resp.stderr
    lines = _lines((tmp_path / "r.jsonl").read_text())
    assert lines == _lines((tmp_path / "full.jsonl").read_text())
    assert [line["key"] for line in lines] == sorted(map(_escaped, BINARY))

    target = _namespace(srv)
    imported = edgekv("import", tmp_path / "r.jsonl", "--namespace", target, *rest)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 3 keys" in imported.stderr and "Traceback" not in imported.stderr
    copy = _client(srv, target)
    for key, value in BINARY.items():
        assert copy.execute_command("KV.GET", key, "TYPE", "bytes") == value, key


def test_binary_key_bulk_delete_and_single_ops_over_rest(srv):
    title = _namespace(srv)
    client = _client(srv, title)
    client.set(b"gone\xff", b"x")
    rest = ["--namespace", title, "--remote", srv.http_url]
    got = edgekv("kv", "key", "get", _escaped(b"gone\xff"), *rest)
    assert got.returncode == 1 and got.stderr.startswith("edgekv: the key is not valid UTF-8")
    assert got.stderr.count("\n") == 1
    deleted = edgekv("kv", "bulk", "delete", "-", "--force", *rest,
                     input=json.dumps([_escaped(b"gone\xff")]))
    assert deleted.returncode == 0, deleted.stderr
    assert client.exists(b"gone\xff") == 0


# ============================================================================ 2. bulk size


def test_import_splits_batches_under_proto_max_bulk_len(srv, tmp_path):
    """Batches are cut by bytes: 3 MB of items through a 1 MiB proto-max-bulk-len."""
    admin = redis.Redis(port=srv.port)
    admin.config_set("proto-max-bulk-len", 1024 * 1024)
    try:
        title = _namespace(srv)
        lines = [{"namespace": title, "key": f"k{i:03d}", "value": "v" * 100_000}
                 for i in range(30)]
        # 900 kB of bytes: 1.2 MB as base64 JSON, too big for any KV.BULKPUT, fine as KV.PUT.
        blob = os.urandom(900_000)
        lines.append({"namespace": title, "key": "blob", "base64": True,
                      "value": base64.b64encode(blob).decode()})
        (tmp_path / "big.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        result = edgekv("import", tmp_path / "big.jsonl", "--remote", srv.url)
        assert result.returncode == 0, result.stderr
        assert "Imported 31 keys" in result.stderr
        client = _client(srv, title)
        assert client.execute_command("DBSIZE") == 31
        assert client.execute_command("KV.GET", "blob", "TYPE", "bytes") == blob

        # One item that cannot travel at all: a clear per-key error naming limit and size.
        (tmp_path / "huge.json").write_text(json.dumps(
            [{"key": "huge", "value": "h" * 1_200_000}, {"key": "small", "value": "s"}]))
        huge = edgekv("kv", "bulk", "put", tmp_path / "huge.json", "--namespace", title,
                      "--remote", srv.url)
        assert huge.returncode == 1
        assert "huge: the value is 1200000 bytes" in huge.stderr
        assert "proto-max-bulk-len of 1048576 bytes" in huge.stderr
        assert client.execute_command("KV.GET", "small") == b"s"
    finally:
        admin.config_set("proto-max-bulk-len", 32 * 1024 * 1024)


def test_import_over_32_mib_at_the_default_limit(srv, tmp_path):
    title = _namespace(srv)
    value = "x" * (1024 * 1024)
    with open(tmp_path / "big.jsonl", "w") as f:
        for i in range(36):
            f.write(json.dumps({"namespace": title, "key": f"k{i}", "value": value}) + "\n")
    result = edgekv("import", tmp_path / "big.jsonl", "--remote", srv.url)
    assert result.returncode == 0, result.stderr
    assert _client(srv, title).execute_command("DBSIZE") == 36


# ============================================================================ 3. /DB


def test_url_db_is_honoured_everywhere(srv, tmp_path):
    titles = [_namespace(srv) for _ in range(2)]
    listing = edgekv("kv", "namespace", "list", "--remote", srv.url).json()
    index = [ns["title"] for ns in listing].index(titles[1])
    assert index > 0
    url = f"{srv.url}/{index}"
    assert edgekv("kv", "key", "put", "here", "1", "--remote", url).returncode == 0
    assert edgekv("kv", "key", "put", "elsewhere", "2", "--namespace", titles[0],
                  "--remote", srv.url).returncode == 0

    exported = edgekv("export", "-", "--remote", url)
    assert exported.returncode == 0, exported.stderr
    assert [(d["namespace"], d["key"]) for d in _lines(exported.text)] == [(titles[1], "here")]

    stats = edgekv("stats", "--json", "--remote", url).json()
    assert [(n["title"], n["keys"]) for n in stats["namespaces"]] == [(titles[1], 1)]

    # Import through /DB lands in that namespace, whatever the lines say.
    line = json.dumps({"namespace": titles[0], "key": "imported", "value": "3"}) + "\n"
    assert edgekv("import", "-", "--remote", url, input=line).returncode == 0
    names = [k["name"] for k in edgekv("kv", "key", "list", "--remote", url).json()]
    assert sorted(names) == ["here", "imported"]

    bad = edgekv("export", "-", "--remote", f"{srv.url}/notanumber")
    assert bad.returncode == 2 and bad.stderr.startswith("edgekv: bad --remote URL")
    far = edgekv("export", "-", "--remote", f"{srv.url}/9999")
    assert far.returncode == 1 and "out of range" in far.stderr and far.stdout == b""


def test_reconnection_keeps_the_selected_namespace(srv):
    """redis-py reconnects on its own; the new connection must select the same namespace,
    not fall back to index 0 and write there."""
    title = _namespace(srv)
    target = RedisTarget(srv.url)
    try:
        ns = target.resolve_namespace(None, title)
        target.use_namespace(ns["id"])
        target.client.connection.disconnect()  # as a server restart or idle timeout would
        target.put("after-reconnect", b"v")
        assert target.get("after-reconnect") == b"v"
    finally:
        target.close()
    assert _client(srv, title).execute_command("KV.GET", "after-reconnect") == b"v"
    assert redis.Redis(port=srv.port).execute_command("KV.GET", "after-reconnect") is None


# ============================================================================ 4. messages


def test_status_to_stderr_data_to_stdout(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    put = edgekv("kv", "key", "put", "k", "v", *d)
    assert put.returncode == 0 and put.stdout == b"" and "Writing the value" in put.stderr
    exported = edgekv("export", "-", *d)
    assert json.loads(exported.stdout)["key"] == "k" and "Exported 1 keys" in exported.stderr
    imported = edgekv("import", "-", "--data-dir", tmp_path / "e", input=exported.stdout)
    assert imported.stdout == b"" and "Imported 1 keys" in imported.stderr
    (tmp_path / "keys.json").write_text('["k"]')
    deleted = edgekv("kv", "bulk", "delete", tmp_path / "keys.json", *d)
    assert deleted.stdout == b"" and deleted.stderr == "Success!\n"


def test_export_file_is_private(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    assert edgekv("kv", "key", "put", "secret", "v", *d).returncode == 0
    old = os.umask(0o022)
    try:
        (tmp_path / "out.jsonl.partial").write_text("left over")  # an earlier, broken run
        os.chmod(tmp_path / "out.jsonl.partial", 0o644)
        assert edgekv("export", tmp_path / "out.jsonl", *d).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.jsonl").st_mode) == 0o600


@pytest.mark.parametrize("text, stored", [
    ('{"plan":"pro"}', {"plan": "pro"}), ('"just text"', "just text"), ("123", 123),
    ("[1,2]", [1, 2]), ("true", True), ("null", None)])
def test_metadata_any_json_value(tmp_path, text, stored):
    d = ["--data-dir", tmp_path / "d"]
    put = edgekv("kv", "key", "put", "k", "v", "--metadata", text, *d)
    assert put.returncode == 0, put.stderr
    listed = edgekv("kv", "key", "list", *d).json()
    assert listed[0].get("metadata") == stored


@pytest.mark.parametrize("text, words", [
    ("NaN", "NaN is not a JSON value"), ('{"a": Infinity}', "Infinity is not a JSON value"),
    ("[" * 100_000, "nested too deeply"), ("{bad", "--metadata is not valid JSON")])
def test_metadata_that_is_not_json(tmp_path, text, words):
    result = edgekv("kv", "key", "put", "k", "v", "--metadata", text, "--data-dir", tmp_path)
    assert result.returncode == 2
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_metadata_over_1024_bytes(tmp_path):
    text = json.dumps({"a": "x" * 1100})
    result = edgekv("kv", "key", "put", "k", "v", "--metadata", text, "--data-dir", tmp_path)
    assert result.returncode == 1 and "exceeds limit of 1024" in result.stderr


# ============================================================================ 5. tracebacks


def test_rest_url_at_a_resp_port_is_one_line(srv):
    result = edgekv("kv", "key", "list", "--remote", f"http://127.0.0.1:{srv.port}")
    assert result.returncode == 1
    assert result.stderr.startswith("edgekv: ") and result.stderr.count("\n") == 1
    assert "did not answer as an HTTP server" in result.stderr


def test_serve_refuses_a_port_out_of_range(tmp_path):
    result = edgekv("serve", "--port", "99999999", "--data-dir", tmp_path / "d", timeout=30)
    assert result.returncode == 2 and "not a TCP port" in result.stderr


def test_bad_input_files_are_one_line(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    (tmp_path / "latin1.json").write_bytes(b'[{"key": "caf\xe9", "value": "x"}]')
    result = edgekv("kv", "bulk", "put", tmp_path / "latin1.json", *d)
    assert result.returncode == 1 and "is not UTF-8 text" in result.stderr
    assert "codec" not in result.stderr and result.stderr.count("\n") == 1
    deep = edgekv("kv", "bulk", "put", "-", *d, input="[" * 100_000)
    assert deep.returncode == 1 and "nested too deeply" in deep.stderr
    # A lone surrogate that stands for no byte: reported for its key, the rest imported.
    lines = '{"key": "\\ud800x", "value": "a"}\n{"key": "fine", "value": "b"}\n'
    imported = edgekv("import", "-", *d, input=lines)
    assert imported.returncode == 1 and "Traceback" not in imported.stderr
    assert "Imported 1 keys" in imported.stderr and "lone surrogate" in imported.stderr


def test_serve_failures_are_plain_sentences(srv, tmp_path):
    missing = edgekv("serve", tmp_path / "nope.conf", "--port", "0", timeout=30)
    assert missing.returncode == 2
    assert missing.stderr == f"edgekv serve: cannot read {tmp_path / 'nope.conf'}: " \
                             f"No such file or directory\n"
    busy = edgekv("serve", "--port", srv.port, "--http-port", "0", "--data-dir",
                  tmp_path / "d", timeout=30)
    assert busy.returncode == 1
    assert busy.stderr.endswith(f"cannot listen on 127.0.0.1:{srv.port}: address already in "
                                f"use\n")
    assert "(" not in busy.stderr.splitlines()[-1]  # no Python tuple
