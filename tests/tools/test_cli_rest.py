"""``edgekv kv ... --remote http://...``: the command line over the server's REST API."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from clitest_helpers import ENV, REPO, edgekv, free_port, start_server

pytestmark = pytest.mark.timeout(120)

TOKEN = "cli-rest-token"
ACCOUNT = "acct-1"


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest")
    port = free_port()
    srv = start_server(base / "data", base / "server.log", "--http-port", str(port),
                       "--api-token", TOKEN, "--account-id", ACCOUNT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                srv.stop()
                raise
            time.sleep(0.05)
    yield srv, f"http://127.0.0.1:{port}"
    srv.stop()


@pytest.fixture
def where(rest):
    return ["--remote", rest[1], "--api-token", TOKEN, "--account-id", ACCOUNT]


_counter = [0]


@pytest.fixture
def ns_title(where):
    _counter[0] += 1
    title = f"rest{os.getpid()}-{_counter[0]}"
    result = edgekv("kv", "namespace", "create", title, *where, "--json")
    assert result.returncode == 0, result.stderr
    return title


def test_namespace_create_list_rename_delete(where):
    created = edgekv("kv", "namespace", "create", "ns-life", *where, "--json")
    assert created.returncode == 0, created.stderr
    ns = created.json()
    assert ns["title"] == "ns-life" and ns["id"]
    listed = edgekv("kv", "namespace", "list", *where)
    assert ns in listed.json()
    # The /client/v4 suffix may be given or left out.
    with_root = [where[0], where[1] + "/client/v4/", *where[2:]]
    renamed = edgekv("kv", "namespace", "rename", "ns-life", "--new-name", "ns-life2",
                     *with_root, "--json")
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.json() == {"id": ns["id"], "title": "ns-life2"}
    dup = edgekv("kv", "namespace", "create", "ns-life2", *where)
    assert dup.returncode == 1 and "exists" in dup.stderr.lower()
    deleted = edgekv("kv", "namespace", "delete", "--namespace-id", ns["id"], "--force", *where)
    assert deleted.returncode == 0, deleted.stderr
    assert ns["id"] not in [n["id"] for n in edgekv("kv", "namespace", "list", *where).json()]
    gone = edgekv("kv", "key", "list", "--namespace-id", ns["id"], *where)
    assert gone.returncode == 1 and "no namespace with id" in gone.stderr


def test_key_put_get_list_delete(where, ns_title, tmp_path):
    nso = ["--namespace", ns_title]
    put = edgekv("kv", "key", "put", "user/1?x=%20 é", "hello", "--ttl", "3600",
                 "--metadata", '{"plan":"pro","n":[1,2]}', *nso, *where)
    assert put.returncode == 0, put.stderr
    got = edgekv("kv", "key", "get", "user/1?x=%20 é", *nso, *where)
    assert got.returncode == 0 and got.stdout == b"hello"
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\xff\x00\xfe raw")
    assert edgekv("kv", "key", "put", "blob", "--path", blob, *nso, *where).returncode == 0
    assert edgekv("kv", "key", "get", "blob", *nso, *where).stdout == b"\xff\x00\xfe raw"

    listed = edgekv("kv", "key", "list", *nso, *where).json()
    by_name = {item["name"]: item for item in listed}
    assert set(by_name) == {"blob", "user/1?x=%20 é"}
    item = by_name["user/1?x=%20 é"]
    assert item["metadata"] == {"plan": "pro", "n": [1, 2]}
    assert 3500 < item["expiration"] - time.time() <= 3600
    assert "expiration" not in by_name["blob"]
    assert edgekv("kv", "key", "list", "--prefix", "us", *nso, *where).json() == [item]

    bad_ttl = edgekv("kv", "key", "put", "k", "v", "--ttl", "10", *nso, *where)
    assert bad_ttl.returncode == 1 and "expiration_ttl" in bad_ttl.stderr.lower()

    assert edgekv("kv", "key", "delete", "user/1?x=%20 é", *nso, *where).returncode == 0
    missing = edgekv("kv", "key", "get", "user/1?x=%20 é", *nso, *where)
    assert missing.returncode == 1 and "Value not found" in missing.stderr
    # Deleting a missing key is not an error, as with every target.
    assert edgekv("kv", "key", "delete", "nope", *nso, *where).returncode == 0


def test_list_follows_cursors(where, ns_title, tmp_path):
    items = [{"key": f"k{i:05d}", "value": str(i)} for i in range(2500)]
    (tmp_path / "items.json").write_text(json.dumps(items))
    nso = ["--namespace", ns_title]
    put = edgekv("kv", "bulk", "put", tmp_path / "items.json", "--batch-size", "1000",
                 *nso, *where, "--json")
    assert put.returncode == 0, put.stderr
    assert put.json() == {"successful_key_count": 2500, "unsuccessful_keys": []}
    names = [item["name"] for item in edgekv("kv", "key", "list", *nso, *where).json()]
    assert names == [item["key"] for item in items]


def test_bulk_put_get_delete(where, ns_title, tmp_path):
    nso = ["--namespace", ns_title]
    items = [{"key": "a", "value": "1", "metadata": {"v": 1}},
             {"key": "b", "value": base64.b64encode(b"two").decode(), "base64": True},
             {"key": "c", "value": "3", "expiration_ttl": 600},
             {"key": "bad", "value": "x", "expiration_ttl": 5}]
    (tmp_path / "items.json").write_text(json.dumps(items))
    put = edgekv("kv", "bulk", "put", tmp_path / "items.json", *nso, *where, "--json")
    assert put.returncode == 1
    assert put.json() == {"successful_key_count": 3, "unsuccessful_keys": ["bad"]}
    assert "bad:" in put.stderr and "60" in put.stderr

    get = edgekv("kv", "bulk", "get", "-", *nso, *where, input='["a", "b", "zz"]')
    assert get.returncode == 0, get.stderr
    assert get.json() == {"a": "1", "b": "two", "zz": None}
    meta = edgekv("kv", "bulk", "get", "-", "--metadata", *nso, *where, input='["a", "c"]')
    assert meta.json() == {"a": {"value": "1", "metadata": {"v": 1}},
                           "c": {"value": "3", "metadata": None}}

    delete = edgekv("kv", "bulk", "delete", "-", "--force", *nso, *where, "--json",
                    input='["a", {"name": "b"}, "missing"]')
    assert delete.returncode == 0, delete.stderr
    assert [k["name"] for k in edgekv("kv", "key", "list", *nso, *where).json()] == ["c"]


def test_export_import_across_rest(rest, where, ns_title, tmp_path):
    exp = int(time.time()) + 7200
    items = [{"key": "text", "value": "héllo"},
             {"key": "binary", "value": base64.b64encode(b"\xff\x00bin").decode(),
              "base64": True, "metadata": {"kind": "blob"}},
             {"key": "expiring", "value": "soon", "expiration": exp, "metadata": "s"},
             {"key": "empty", "value": ""}] + \
            [{"key": f"many/{i:04d}", "value": f"v{i}"} for i in range(250)]
    (tmp_path / "items.json").write_text(json.dumps(items))
    assert edgekv("kv", "bulk", "put", tmp_path / "items.json", "--namespace", ns_title,
                  *where).returncode == 0
    out = tmp_path / "dump.jsonl"
    exported = edgekv("export", out, "--namespace", ns_title, *where, "--json")
    assert exported.returncode == 0, exported.stderr
    assert exported.json()["keys"] == 254
    lines = {json.loads(line)["key"]: json.loads(line) for line in out.read_text().splitlines()}
    assert lines["binary"] == {"namespace": ns_title, "key": "binary",
                               "value": base64.b64encode(b"\xff\x00bin").decode(),
                               "base64": True, "metadata": {"kind": "blob"}}
    assert lines["expiring"]["expiration"] == exp and lines["expiring"]["metadata"] == "s"
    assert lines["text"]["value"] == "héllo" and lines["empty"]["value"] == ""

    # Back in over REST, into a namespace the import creates...
    copy = ns_title + "-copy"
    imported = edgekv("import", out, "--namespace", copy, *where, "--json")
    assert imported.returncode == 0, imported.stderr
    assert imported.json()["imported"] == 254
    again = edgekv("export", "-", "--namespace", copy, *where)
    assert sorted(json.loads(line)["key"] for line in again.text.splitlines()) == sorted(lines)
    assert edgekv("kv", "key", "get", "binary", "--namespace", copy, *where).stdout == \
        b"\xff\x00bin"
    # ...and into a local directory: the same lines come out of both.
    local = ["--data-dir", tmp_path / "local"]
    assert edgekv("import", out, *local).returncode == 0
    local_lines = edgekv("export", "-", "--namespace", ns_title, *local).text.splitlines()
    assert {json.loads(line)["key"]: json.loads(line) for line in local_lines} == lines

    stats = edgekv("stats", *where, "--json")
    assert stats.returncode == 0, stats.stderr
    row = next(n for n in stats.json()["namespaces"] if n["title"] == copy)
    assert row["keys"] == 254 and row["bytes"] is None


def test_auth_failures(rest, where):
    url = rest[1]
    wrong = edgekv("kv", "namespace", "list", "--remote", url, "--api-token", "nope",
                   "--account-id", ACCOUNT)
    assert wrong.returncode == 1
    assert "Authentication error" in wrong.stderr and "--api-token" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    account = edgekv("kv", "key", "get", "k", "--remote", url, "--api-token", TOKEN)
    assert account.returncode == 1 and "'local'" in account.stderr
    # wrangler's environment variables work as well.
    env = {**ENV, "CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT}
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "kv", "namespace", "list",
                           "--remote", url], cwd=REPO, env=env, capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), list)


def test_unreachable_and_unsupported(where):
    port = free_port()
    down = edgekv("kv", "namespace", "list", "--remote", f"http://127.0.0.1:{port}")
    assert down.returncode == 1 and "cannot reach the REST API" in down.stderr
    compact = edgekv("compact", *where)
    assert compact.returncode == 1 and "redis://" in compact.stderr
