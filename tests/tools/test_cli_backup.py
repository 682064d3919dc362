"""``edgekv export``, ``import``, ``snapshot`` and ``stats``."""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import pytest
import redis
from clitest_helpers import edgekv, start_server

from engine import Store
from engine.snapshot import snapshot_store

#: A hung server or prompt fails the test instead of stalling the run.
pytestmark = pytest.mark.timeout(120)


def _fill(where, title, tmp_path):
    exp = int(time.time()) + 7200
    items = [
        {"key": "text", "value": "héllo wörld"},
        {"key": "binary", "value": base64.b64encode(b"\xff\x00\xfe binary").decode(),
         "base64": True, "metadata": {"kind": "blob", "n": [1, 2]}},
        {"key": "expiring", "value": "soon", "expiration": exp, "metadata": "just a string"},
        {"key": "empty", "value": ""},
    ] + [{"key": f"many/{i:04d}", "value": f"v{i}"} for i in range(1500)]
    (tmp_path / f"{title}.json").write_text(json.dumps(items))
    assert edgekv("kv", "bulk", "put", tmp_path / f"{title}.json", "--namespace", title,
                  *where).returncode == 0
    return exp


def _dump(where) -> list[dict]:
    result = edgekv("export", "-", *where)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.text.splitlines()]


def test_export_import_round_trip(where, ns_title, tmp_path):
    exp = _fill(where, ns_title, tmp_path)
    out = tmp_path / "backup.jsonl"
    exported = edgekv("export", out, "--namespace", ns_title, *where, "--json")
    assert exported.returncode == 0, exported.stderr
    assert exported.json()["keys"] == 1504
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_key = {line["key"]: line for line in lines}
    assert by_key["binary"]["base64"] is True
    assert base64.b64decode(by_key["binary"]["value"]) == b"\xff\x00\xfe binary"
    assert by_key["binary"]["metadata"] == {"kind": "blob", "n": [1, 2]}
    assert by_key["expiring"]["expiration"] == exp
    assert by_key["text"] == {"namespace": ns_title, "key": "text", "value": "héllo wörld"}

    fresh = ["--data-dir", tmp_path / "fresh"]
    imported = edgekv("import", out, *fresh, "--json")
    assert imported.returncode == 0, imported.stderr
    assert imported.json() == {"imported": 1504, "skipped_expired": 0, "failed": []}
    again = [line for line in _dump(fresh) if line["namespace"] == ns_title]
    assert again == lines
    got = edgekv("kv", "key", "get", "binary", "--namespace", ns_title, *fresh)
    assert got.stdout == b"\xff\x00\xfe binary"


def test_export_all_namespaces_and_import_remote(server, tmp_path):
    local = ["--data-dir", tmp_path / "src"]
    for title in ("alpha", "beta"):
        assert edgekv("kv", "namespace", "create", title, *local).returncode == 0
        _fill(local, title, tmp_path)
    dump = edgekv("export", "-", *local).stdout
    assert {json.loads(x)["namespace"] for x in dump.splitlines()} == {"alpha", "beta"}

    # Into a server, through stdin, under new titles so the shared server stays tidy.
    suffix = f"-{os.getpid()}-imp"
    renamed = b"\n".join(
        json.dumps(dict(json.loads(x), namespace=json.loads(x)["namespace"] + suffix)).encode()
        for x in dump.splitlines())
    remote = ["--remote", server.url]
    assert edgekv("import", "-", *remote, input=renamed).returncode == 0
    back = [dict(x, namespace=x["namespace"][:-len(suffix)]) for x in _dump(remote)
            if x["namespace"].endswith(suffix)]
    order = (lambda x: (x["namespace"], x["key"]))
    assert sorted(back, key=order) == sorted((json.loads(x) for x in dump.splitlines()),
                                             key=order)
    # --namespace puts everything into one namespace; --no-create refuses unknown titles.
    refused = edgekv("import", "-", "--namespace", "nope" + suffix, "--no-create", *remote,
                     input=dump)
    assert refused.returncode == 1 and "does not exist" in refused.stderr


def test_import_skips_expired_and_reports_bad_lines(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    lines = [{"namespace": "default", "key": "old", "value": "x", "expiration": 1000},
             {"namespace": "default", "key": "ok", "value": "y"}]
    body = "\n".join(json.dumps(x) for x in lines) + "\n"
    result = edgekv("import", "-", *d, input=body)
    assert result.returncode == 0 and "skipped 1 already expired" in result.stderr
    bad = edgekv("import", "-", *d, input=body + "{not json\n")
    assert bad.returncode == 1 and "line 3 is not JSON" in bad.stderr


@pytest.mark.parametrize("bad_line", ["{not json", "[1, 2]"])
def test_import_stopped_by_a_bad_line_keeps_every_line_before_it(tmp_path, bad_line):
    """The message says nothing after the bad line was imported; the lines before it (still in
    the batch being gathered) must be, not dropped with it."""
    d = ["--data-dir", tmp_path / "d"]
    good = "".join(json.dumps({"namespace": "default", "key": f"k{i}", "value": "v"}) + "\n"
                   for i in range(3))
    bad = edgekv("import", "-", *d, input=good + bad_line + "\n" + good.replace("k", "late"))
    assert bad.returncode == 1 and "line 4 " in bad.stderr
    listed = edgekv("kv", "key", "list", *d)
    assert [k["name"] for k in json.loads(listed.stdout)] == ["k0", "k1", "k2"]


def test_stats(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    edgekv("kv", "key", "put", "a", "12345", *d)
    stats = edgekv("stats", "--json", *d).json()
    default = stats["namespaces"][0]
    assert default["title"] == "default" and default["keys"] == 1 and default["bytes"] > 5
    assert stats["keys"] == 1 and stats["disk_bytes"] > 0
    table = edgekv("stats", *d)
    assert table.returncode == 0 and "default" in table.text and "keys" in table.text
    missing = edgekv("stats", "--data-dir", tmp_path / "nowhere")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def _assert_prefix_consistent(path, writer_prefix: str) -> int:
    """Keys written one after another must be present as an unbroken prefix, intact."""
    with Store.open(str(path)) as store:
        ns = store.namespace("default")
        names = []
        cursor = None
        while True:
            page = ns.list(prefix=writer_prefix, cursor=cursor)
            names += [k["name"] for k in page["keys"]]
            if page["list_complete"]:
                break
            cursor = page["cursor"]
        count = len(names)
        assert names == [f"{writer_prefix}{i:06d}" for i in range(count)]
        for i in range(count):
            assert ns.get(f"{writer_prefix}{i:06d}") == f"value-{i}" * 20
        return count


def test_snapshot_while_a_server_writes(tmp_path):
    srv = start_server(tmp_path / "live", tmp_path / "live.log", "--segment-bytes", "65536")
    stop = threading.Event()
    written = [0]

    errors: list = []

    def writer():
        client = redis.Redis(port=srv.port, socket_timeout=30)
        i = 0
        try:
            while not stop.is_set():
                client.set(f"w{i:06d}", f"value-{i}" * 20)
                client.set("counter", str(i))  # overwritten: dead records to compact away
                i += 1
                written[0] = i
        except Exception as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            client.close()

    def compactor():
        client = redis.Redis(port=srv.port, socket_timeout=30)
        try:
            while not stop.is_set():
                try:
                    client.execute_command("KV.COMPACT")  # runs in the server's background
                except redis.ResponseError as exc:
                    if "already running" not in str(exc):
                        raise
                time.sleep(0.02)
        except Exception as exc:
            errors.append(exc)
        finally:
            client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    compacting = threading.Thread(target=compactor)
    compacting.start()
    try:
        deadline = time.monotonic() + 30
        while written[0] < 1500:
            assert not errors and time.monotonic() < deadline, \
                (errors, (tmp_path / "live.log").read_text())
            time.sleep(0.01)
        snap = edgekv("snapshot", tmp_path / "snap", "--data-dir", srv.data_dir, "--json")
        assert snap.returncode == 0, snap.stderr
        info = snap.json()
        assert info["online"] is True and info["linked_segments"] >= 1
    finally:
        stop.set()
        thread.join()
        compacting.join()
        srv.stop()
    assert not errors, errors
    count = _assert_prefix_consistent(tmp_path / "snap", "w")
    assert 1000 <= count <= written[0]
    with Store.open(str(tmp_path / "snap")) as snap:
        assert int(snap.namespace("default").get("counter")) in (count - 1, count - 2)
    # The snapshot is a store of its own: writing to it leaves the original alone.
    assert edgekv("kv", "key", "put", "only-in-snap", "1", "--data-dir",
                  tmp_path / "snap").returncode == 0
    assert edgekv("kv", "key", "get", "only-in-snap", "--data-dir",
                  tmp_path / "live").returncode == 1


def test_snapshot_under_the_store_lock_while_a_thread_writes(tmp_path):
    store = Store.open(str(tmp_path / "src"), fsync="no", segment_bytes=65536)
    stop = threading.Event()
    written = [0]

    def writer():
        ns = store.namespace("default")
        i = 0
        while not stop.is_set():
            ns.put(f"t{i:06d}", f"value-{i}" * 20)
            ns.put("counter", str(i))
            i += 1
            written[0] = i

    def compactor():
        while not stop.is_set():
            store.compact()
            time.sleep(0.01)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    compacting = threading.Thread(target=compactor, daemon=True)
    compacting.start()
    try:
        deadline = time.monotonic() + 30
        while written[0] < 2000:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        info = snapshot_store(store, str(tmp_path / "snap"))
        assert info["linked_segments"] >= 1 and info["copied_segments"] >= 1
    finally:
        stop.set()
        thread.join()
        compacting.join()
        store.close()
    count = _assert_prefix_consistent(tmp_path / "snap", "t")
    assert 2000 <= count <= written[0]
    with Store.open(str(tmp_path / "snap")) as snap:
        # put t{i} then counter=i: the cut falls after one of them.
        assert int(snap.namespace("default").get("counter")) in (count - 1, count - 2)


def test_snapshot_of_a_closed_directory_and_errors(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    edgekv("kv", "key", "put", "k", "v", *d)
    snap = edgekv("snapshot", tmp_path / "s", *d, "--json")
    assert snap.returncode == 0 and snap.json()["online"] is False
    assert edgekv("kv", "key", "get", "k", "--data-dir", tmp_path / "s").stdout == b"v"
    again = edgekv("snapshot", tmp_path / "s", *d)
    assert again.returncode == 1 and "not an empty directory" in again.stderr
    remote = edgekv("snapshot", tmp_path / "r", "--remote", "redis://127.0.0.1:1")
    assert remote.returncode == 1 and "--data-dir" in remote.stderr
    missing = edgekv("snapshot", tmp_path / "x", "--data-dir", tmp_path / "nowhere")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_remote_export_of_a_key_that_is_not_utf8(server):
    """Such a key comes back as text with lone surrogates; sending it to the server again
    (KV.GET during export) failed in redis-py's strict UTF-8 encoding, with a traceback."""
    title = f"binary-{os.getpid()}"
    remote = ["--remote", server.url]
    assert edgekv("kv", "namespace", "create", title, *remote).returncode == 0
    client = redis.Redis.from_url(server.url)
    client.execute_command("SELECT", title)
    client.set(b"\xff\xfex", b"\x00v")
    client.close()
    dump = edgekv("export", "-", *remote)
    assert dump.returncode == 0, dump.stderr
    lines = [json.loads(x) for x in dump.stdout.splitlines()]
    ours = [line for line in lines if line["namespace"] == title]
    assert [line["key"].encode("utf-8", "surrogateescape") for line in ours] == [b"\xff\xfex"]
