"""``edgekv kv namespace|key|bulk``, each on a local data directory and on a running server."""

from __future__ import annotations

import json
import time

import pytest
from clitest_helpers import edgekv

#: A hung server or prompt fails the test instead of stalling the run.
pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------- namespace

def test_namespace_create_list_rename_delete(where):
    created = edgekv("kv", "namespace", "create", "ns-crud-a", *where, "--json")
    assert created.returncode == 0, created.stderr
    ns = created.json()
    assert set(ns) == {"id", "title"} and ns["title"] == "ns-crud-a"

    listed = edgekv("kv", "namespace", "list", *where)
    assert listed.returncode == 0
    namespaces = listed.json()
    assert {"id": ns["id"], "title": "ns-crud-a"} in namespaces
    assert any(n["title"] == "default" for n in namespaces)
    assert all(set(n) == {"id", "title"} for n in namespaces)

    dup = edgekv("kv", "namespace", "create", "ns-crud-a", *where)
    assert dup.returncode == 1 and "ns-crud-a" in dup.stderr

    renamed = edgekv("kv", "namespace", "rename", "ns-crud-a", "--new-name", "ns-crud-b", *where)
    assert renamed.returncode == 0, renamed.stderr
    assert '"ns-crud-b"' in renamed.text
    by_id = edgekv("kv", "namespace", "rename", "--namespace-id", ns["id"], "--new-name",
                   "ns-crud-c", *where, "--json")
    assert by_id.json() == {"id": ns["id"], "title": "ns-crud-c"}

    refused = edgekv("kv", "namespace", "delete", "--namespace", "ns-crud-c", *where)
    assert refused.returncode == 1
    assert "--force" in refused.stderr and "confirmation" in refused.stderr
    assert any(n["id"] == ns["id"] for n in edgekv("kv", "namespace", "list", *where).json())

    deleted = edgekv("kv", "namespace", "delete", "--namespace-id", ns["id"], "-y", *where)
    assert deleted.returncode == 0, deleted.stderr
    assert f"Deleted namespace {ns['id']}" in deleted.text
    assert all(n["id"] != ns["id"] for n in edgekv("kv", "namespace", "list", *where).json())

    again = edgekv("kv", "namespace", "delete", "--namespace-id", ns["id"], "--force", *where)
    assert again.returncode == 1 and "no namespace with id" in again.stderr


def test_namespace_delete_needs_a_namespace(tmp_path):
    result = edgekv("kv", "namespace", "delete", "--data-dir", tmp_path / "d")
    assert result.returncode == 2 and "--namespace" in result.stderr


# ---------------------------------------------------------------------------- key

def test_key_put_get_list_delete(where, ns_title, tmp_path):
    n = ["--namespace", ns_title]
    put = edgekv("kv", "key", "put", "greeting", "hello", *n, *where, "--ttl", "3600",
                 "--metadata", '{"lang":"en"}')
    assert put.returncode == 0, put.stderr
    # Status lines go to stderr; stdout carries data only.
    assert put.stdout == b""
    assert put.stderr.startswith('Writing the value "hello" to key "greeting" on namespace ')

    got = edgekv("kv", "key", "get", "greeting", *n, *where)
    assert got.returncode == 0 and got.stdout == b"hello"  # raw, no newline
    text = edgekv("kv", "key", "get", "greeting", "--text", *n, *where)
    assert text.stdout == b"hello\n"

    blob = bytes(range(256)) * 3
    (tmp_path / "blob.bin").write_bytes(blob)
    put = edgekv("kv", "key", "put", "blob", "--path", tmp_path / "blob.bin", *n, *where)
    assert put.returncode == 0 and "Writing the contents of" in put.stderr
    assert edgekv("kv", "key", "get", "blob", *n, *where).stdout == blob

    exp = int(time.time()) + 7200
    assert edgekv("kv", "key", "put", "later", "x", "--expiration", exp, *n,
                  *where).returncode == 0
    stdin_put = edgekv("kv", "key", "put", "piped", "--path", "-", *n, *where, input=b"from stdin")
    assert stdin_put.returncode == 0
    assert edgekv("kv", "key", "get", "piped", *n, *where).stdout == b"from stdin"

    listed = edgekv("kv", "key", "list", *n, *where).json()
    names = [k["name"] for k in listed]
    assert names == ["blob", "greeting", "later", "piped"]
    greeting = listed[1]
    assert greeting["metadata"] == {"lang": "en"}
    assert abs(greeting["expiration"] - (time.time() + 3600)) < 60
    assert listed[2]["expiration"] == exp
    assert "expiration" not in listed[0] and "metadata" not in listed[0]
    prefixed = edgekv("kv", "key", "list", "--prefix", "g", *n, *where).json()
    assert [k["name"] for k in prefixed] == ["greeting"]

    deleted = edgekv("kv", "key", "delete", "greeting", *n, *where)
    assert deleted.returncode == 0
    assert deleted.stdout == b""
    assert deleted.stderr.startswith('Deleting the key "greeting" on namespace ')
    missing = edgekv("kv", "key", "get", "greeting", *n, *where)
    assert missing.returncode == 1 and missing.stdout == b""
    assert missing.stderr.strip() == "Value not found"


def test_key_list_follows_cursors(where, ns_title, tmp_path):
    items = [{"key": f"k{i:05d}", "value": "v"} for i in range(2500)]
    (tmp_path / "items.json").write_text(json.dumps(items))
    n = ["--namespace", ns_title]
    assert edgekv("kv", "bulk", "put", tmp_path / "items.json", *n, *where).returncode == 0
    listed = edgekv("kv", "key", "list", *n, *where).json()
    assert [k["name"] for k in listed] == [i["key"] for i in items]


def test_default_namespace_and_namespace_id(where):
    assert edgekv("kv", "key", "put", "in-default", "1", *where).returncode == 0
    default = next(n for n in edgekv("kv", "namespace", "list", *where).json()
                   if n["title"] == "default")
    got = edgekv("kv", "key", "get", "in-default", "--namespace-id", default["id"], *where)
    assert got.stdout == b"1"
    unknown = edgekv("kv", "key", "get", "x", "--namespace", "no-such-ns", *where)
    assert unknown.returncode == 1 and "no namespace titled 'no-such-ns'" in unknown.stderr


def test_key_errors(where, ns_title):
    n = ["--namespace", ns_title]
    short = edgekv("kv", "key", "put", "k", "v", "--ttl", "5", *n, *where)
    assert short.returncode == 1 and "60" in short.stderr
    bad_meta = edgekv("kv", "key", "put", "k", "v", "--metadata", "{nope", *n, *where)
    assert bad_meta.returncode == 2 and "--metadata is not valid JSON" in bad_meta.stderr
    neither = edgekv("kv", "key", "put", "k", *n, *where)
    assert neither.returncode == 2 and "VALUE or --path" in neither.stderr
    both_ns = edgekv("kv", "key", "get", "k", "--namespace", "a", "--namespace-id", "b", *where)
    assert both_ns.returncode == 2
    big_meta = edgekv("kv", "key", "put", "k", "v", "--metadata", json.dumps("x" * 2000), *n,
                      *where)
    assert big_meta.returncode == 1 and "1024" in big_meta.stderr
    assert "Traceback" not in short.stderr + bad_meta.stderr + big_meta.stderr


# ---------------------------------------------------------------------------- bulk

def test_bulk_put_get_delete(where, ns_title, tmp_path):
    n = ["--namespace", ns_title]
    exp = int(time.time()) + 3600
    items = [
        {"key": "a", "value": "1"},
        {"key": "b", "value": "aGk=", "base64": True, "metadata": {"m": 2}},
        {"key": "c", "value": "3", "expiration": exp},
        {"key": "d", "value": "4", "expiration_ttl": 600},
    ]
    (tmp_path / "put.json").write_text(json.dumps(items))
    put = edgekv("kv", "bulk", "put", tmp_path / "put.json", *n, *where)
    assert put.returncode == 0, put.stderr
    assert put.stdout == b"" and put.stderr == "Success!\n"
    assert edgekv("kv", "key", "get", "b", *n, *where).stdout == b"hi"

    (tmp_path / "get.json").write_text(json.dumps(["a", {"name": "b"}, "zz"]))
    got = edgekv("kv", "bulk", "get", tmp_path / "get.json", *n, *where)
    assert got.returncode == 0 and got.json() == {"a": "1", "b": "hi", "zz": None}
    with_meta = edgekv("kv", "bulk", "get", "-", "--metadata", *n, *where, input='["b", "a"]')
    assert with_meta.json() == {"b": {"value": "hi", "metadata": {"m": 2}},
                                "a": {"value": "1", "metadata": None}}

    listed = {k["name"]: k for k in edgekv("kv", "key", "list", *n, *where).json()}
    assert listed["c"]["expiration"] == exp and "expiration" in listed["d"]

    # Deletes accept what `kv key list` prints.
    (tmp_path / "del.json").write_text(json.dumps([{"name": "a"}, "b", {"name": "c"}]))
    deleted = edgekv("kv", "bulk", "delete", tmp_path / "del.json", *n, *where)
    assert deleted.returncode == 0 and deleted.stdout == b"" and deleted.stderr == "Success!\n"
    assert [k["name"] for k in edgekv("kv", "key", "list", *n, *where).json()] == ["d"]


def test_bulk_put_reports_failing_keys(where, ns_title, tmp_path):
    n = ["--namespace", ns_title]
    items = [{"key": "good", "value": "1"},
             {"key": "short-ttl", "value": "2", "expiration_ttl": 5},
             {"key": "good2", "value": "3"}]
    (tmp_path / "put.json").write_text(json.dumps(items))
    result = edgekv("kv", "bulk", "put", tmp_path / "put.json", *n, *where, "--json")
    assert result.returncode == 1
    assert result.json() == {"successful_key_count": 2, "unsuccessful_keys": ["short-ttl"]}
    assert "1 of 3 keys could not be written" in result.stderr
    assert "short-ttl" in result.stderr
    assert edgekv("kv", "key", "get", "good2", *n, *where).stdout == b"3"


def test_bulk_rejects_malformed_files(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    (tmp_path / "notjson.json").write_text("[{")
    r = edgekv("kv", "bulk", "put", tmp_path / "notjson.json", *d)
    assert r.returncode == 1 and "not valid JSON" in r.stderr
    (tmp_path / "shape.json").write_text(json.dumps([{"key": "a"}, {"key": "b", "value": 1}]))
    r = edgekv("kv", "bulk", "put", tmp_path / "shape.json", *d)
    assert r.returncode == 1 and "items 0, 1" in r.stderr
    (tmp_path / "obj.json").write_text("{}")
    r = edgekv("kv", "bulk", "delete", tmp_path / "obj.json", *d)
    assert r.returncode == 1 and "JSON array" in r.stderr
    (tmp_path / "keys.json").write_text(json.dumps(["a", 3]))
    r = edgekv("kv", "bulk", "delete", tmp_path / "keys.json", *d)
    assert r.returncode == 1 and "items 1" in r.stderr
    r = edgekv("kv", "bulk", "put", tmp_path / "missing.json", *d)
    assert r.returncode == 1 and "cannot read" in r.stderr
    r = edgekv("kv", "bulk", "put", tmp_path / "keys.json", "--batch-size", "20000", *d)
    assert r.returncode == 2


def test_bulk_100k_keys(where, ns_title, tmp_path):
    n = ["--namespace", ns_title]
    items = [{"key": f"key-{i:06d}", "value": f"value-{i}"} for i in range(100_000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(items))
    started = time.monotonic()
    put = edgekv("kv", "bulk", "put", path, *n, *where)
    assert put.returncode == 0, put.stderr
    stats = edgekv("stats", "--json", *where).json()
    assert next(s for s in stats["namespaces"] if s["title"] == ns_title)["keys"] == 100_000
    (tmp_path / "del.json").write_text(json.dumps([i["key"] for i in items[:50_000]]))
    deleted = edgekv("kv", "bulk", "delete", tmp_path / "del.json", "--force", *n, *where)
    assert deleted.returncode == 0, deleted.stderr
    stats = edgekv("stats", "--json", *where).json()
    assert next(s for s in stats["namespaces"] if s["title"] == ns_title)["keys"] == 50_000
    assert time.monotonic() - started < 30


def test_a_key_that_is_not_utf8_is_listed_apart_and_deleted_by_its_listed_name(tmp_path):
    """Listed as U+FFFD, a binary key looked like a real U+FFFD key, and a bulk delete of the
    listed names removed that one instead."""
    from engine import Store

    data_dir = tmp_path / "data"
    store = Store.open(str(data_dir), key_file=str(tmp_path / "k"))
    ns = store.namespace()
    ns.put_raw(b"\xff\xfex", b"binary key")
    ns.put("\ufffd\ufffdx", "text key")
    store.close()
    d = ["--data-dir", data_dir, "--key-file", tmp_path / "k"]
    listed = edgekv("kv", "key", "list", *d)
    assert listed.returncode == 0, listed.stderr
    assert b'"\\udcff\\udcfex"' in listed.stdout
    names = [k["name"] for k in json.loads(listed.stdout)]
    assert len(set(names)) == 2
    binary = next(n for n in names if n.startswith("\udcff"))
    (tmp_path / "del.json").write_text(json.dumps([binary]))
    assert edgekv("kv", "bulk", "delete", tmp_path / "del.json", *d).returncode == 0
    store = Store.open(str(data_dir), key_file=str(tmp_path / "k"))
    assert store.namespace().get_entry(b"\xff\xfex") is None
    assert store.namespace().get("\ufffd\ufffdx") == "text key"
    store.close()
