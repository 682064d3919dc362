"""REST gaps closed together: key names that are not UTF-8 (``\\udcXY`` escapes) in bulk write,
an exact (base64) bulk get for their values, the CLI carrying such keys over REST, and engine
error texts as RESP and REST clients see them.

Every test talks to a real server process over real sockets (raw HTTP, redis-py, the CLI).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis

from tests.server.conftest import REPO
from tests.server.test_rest_api import ACCOUNT, RW, Api
# the REST server of these tests, and the check that none of them logs a traceback
from tests.server.test_rest_api_edge_cases import no_traceback_logged, rest  # noqa: F401

JSON = {"Content-Type": "application/json"}
LONE = "The request body holds a lone surrogate \\u{:04x}: JSON strings must be Unicode text."


def _resp(server, ns: str) -> redis.Redis:
    client = server.client(single_connection_client=True)
    client.execute_command("SELECT", ns)
    return client


def _names(api: Api, ns: str) -> list[bytes]:
    return [k["name"].encode("utf-8", "surrogateescape") for k in api.ok("GET", f"/{ns}/keys")]


# ---------------------------------------------------------------------------- bulk write


def test_bulk_write_maps_byte_escapes_in_key_names_to_the_bytes(rest, ns):
    """A key listed as ``"b\\udcfe\\udcffk"`` can be written back under the same bytes, with a
    binary value, metadata and an expiration: what an export over REST needs to import."""
    api, server = rest
    body = (b'[{"key": "b\\udcfe\\udcffk", "value": "' + base64.b64encode(b"\xff\xfe\x00raw")
            + b'", "base64": true, "metadata": {"m": "\\u00e9"}, "expiration_ttl": 3600},'
            b' {"key": "plain", "value": "v"}]')
    assert api.ok("PUT", f"/{ns}/bulk", body, headers=JSON) == {
        "successful_key_count": 2, "unsuccessful_keys": []}
    assert _names(api, ns) == [b"b\xfe\xffk", b"plain"]
    listed = api.ok("GET", f"/{ns}/keys")[0]
    assert listed["metadata"] == {"m": "é"} and listed["expiration"] > 0
    client = _resp(server, ns)
    try:
        assert client.get(b"b\xfe\xffk") == b"\xff\xfe\x00raw"
        assert client.get("b\udcfe\udcffk".encode("utf-8", "surrogatepass")) is None
    finally:
        client.close()


def test_bulk_write_names_a_failed_binary_key_by_its_escape(api, ns):
    """A binary key that fails validation is reported in valid JSON, under the name sent."""
    body = (b'[{"key": "bad\\udcc3", "value": "v", "expiration_ttl": 10},'
            b' {"key": "good", "value": "v"}]')
    reply = api.call("PUT", f"/{ns}/bulk", body, headers=JSON)
    assert reply.status == 400 and b'"bad\\udcc3"' in reply.body
    doc = reply.json()
    assert doc["result"] == {"successful_key_count": 1, "unsuccessful_keys": ["bad\udcc3"]}
    assert doc["errors"][0]["code"] == 10034
    assert _names(api, ns) == [b"good"]


@pytest.mark.parametrize("escape", ["\\ud800", "\\udc7f", "\\udc00", "\\udbff", "\\ude00"])
def test_bulk_write_still_refuses_escapes_that_are_not_bytes(api, ns, escape):
    """Only U+DC80..U+DCFF stand for bytes; any other lone surrogate refuses the request,
    while the byte escape beside it is fine on its own."""
    code = int(escape[2:], 16)
    good = b'{"key": "ok\\udcc3", "value": "v"}'
    body = b"[" + good + b', {"key": "k' + escape.encode() + b'", "value": "v"}]'
    assert api.call("PUT", f"/{ns}/bulk", body, headers=JSON).error() == (
        400, 10001, LONE.format(code))
    assert api.ok("GET", f"/{ns}/keys") == []
    assert api.ok("PUT", f"/{ns}/bulk", b"[" + good + b"]", headers=JSON)[
        "successful_key_count"] == 1
    assert _names(api, ns) == [b"ok\xc3"]


@pytest.mark.parametrize("item", [
    b'{"key": "k\\udcff", "value": "bin\\udcc3"}',                     # a value
    b'{"key": "k\\udcff", "value": "v", "metadata": {"m": "\\udcc3"}}',  # metadata, as a value
    b'{"key": "k\\udcff", "value": "v", "metadata": {"\\udcc3": 1}}',    # metadata, as a name
    b'{"key": "k\\udcff", "value": "v", "\\udcc3": 1}',                  # a field name
])
def test_bulk_write_byte_escapes_only_in_key_names(api, ns, item):
    """Values and metadata are Unicode text: a byte escape there is still a 400, though the
    same escape in the item's key name is a byte."""
    reply = api.call("PUT", f"/{ns}/bulk", b"[" + item + b"]", headers=JSON)
    assert reply.error() == (400, 10001, LONE.format(0xdcc3))
    assert api.ok("GET", f"/{ns}/keys") == []
    api.ok("PUT", f"/{ns}/bulk", b'[{"key": "k\\udcff", "value": "v"}]', headers=JSON)
    assert _names(api, ns) == [b"k\xff"]


def test_bulk_get_and_delete_refuse_escapes_outside_key_names(api, ns):
    api.ok("PUT", f"/{ns}/bulk", [{"key": "k", "value": "v"}])
    reply = api.call("POST", f"/{ns}/bulk/get", b'{"keys": ["k"], "type": "t\\udcc3"}',
                     headers=JSON)
    assert reply.error() == (400, 10001, LONE.format(0xdcc3))
    reply = api.call("POST", f"/{ns}/bulk/delete", b'[{"name": "k", "x": "\\udcc3"}]',
                     headers=JSON)
    assert reply.error() == (400, 10001, LONE.format(0xdcc3))
    assert api.call("POST", f"/{ns}/bulk/get", b'{"keys": ["k\\udc7f"]}',
                    headers=JSON).error() == (400, 10001, LONE.format(0xdc7f))
    assert _names(api, ns) == [b"k"]


# ---------------------------------------------------------------------------- bulk get base64


def test_bulk_get_base64_reads_the_exact_bytes(rest, ns):
    """``type: text`` can only give U+FFFD for bytes that are not UTF-8; ``base64`` is exact."""
    api, server = rest
    client = _resp(server, ns)
    try:
        client.set(b"b\xfe\xffk", b"\xff\xfe\x00raw")
        client.execute_command("KV.PUT", b"meta", b"\xc3", "METADATA", '{"a":1}',
                               "EXPIRATION_TTL", "3600")
    finally:
        client.close()
    text = api.ok("POST", f"/{ns}/bulk/get", b'{"keys": ["b\\udcfe\\udcffk"]}', headers=JSON)
    assert text["values"]["b\udcfe\udcffk"] == "\ufffd\ufffd\x00raw"
    got = api.ok("POST", f"/{ns}/bulk/get",
                 b'{"keys": ["b\\udcfe\\udcffk", "missing"], "type": "base64"}', headers=JSON)
    assert got["values"] == {"b\udcfe\udcffk": base64.b64encode(b"\xff\xfe\x00raw").decode(),
                             "missing": None}
    meta = api.ok("POST", f"/{ns}/bulk/get",
                  {"keys": ["meta"], "type": "base64", "withMetadata": True})["values"]["meta"]
    assert meta["value"] == base64.b64encode(b"\xc3").decode() and meta["metadata"] == {"a": 1}
    assert meta["expiration"] > 0
    # The bulk-get rules hold for the new type too.
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": [], "type": "base64"}).error() == (
        400, 10001, "You must request a minimum of 1 key")
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": [""], "type": "base64"}).error() == (
        400, 10023, "Key names must not be empty")


# ---------------------------------------------------------------------------- the CLI


def _edgekv(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=REPO,
                          input=input, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO),
                               "CLOUDFLARE_API_TOKEN": RW, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT})


def test_cli_exports_and_imports_binary_keys_over_rest(rest, tmp_path):
    """A binary key with a binary value crosses export -> file -> import over REST exactly,
    with its metadata and expiration; the command exits 0."""
    api, server = rest
    source, target = (f"gaps-{uuid.uuid4().hex[:8]}" for _ in range(2))
    src_id = api.namespace(source)
    dst_id = api.namespace(target)
    stored = {b"b\xfe\xffk": b"\xff\xfe\x00raw", b"bin\xffkey": b"text value",
              b"plain": b"\x00\x01\x80"}
    client = _resp(server, src_id)
    try:
        for key, value in stored.items():
            client.set(key, value)
        client.execute_command("KV.PUT", b"m\xff", b"\xfe", "METADATA", '{"a":1}',
                               "EXPIRATION_TTL", "3600")
    finally:
        client.close()
    stored[b"m\xff"] = b"\xfe"
    url = f"http://127.0.0.1:{api.port}"
    out = tmp_path / "binary.jsonl"
    exported = _edgekv("export", out, "--namespace", source, "--remote", url)
    assert exported.returncode == 0, exported.stderr
    lines = {json.loads(line)["key"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(lines) == {k.decode("utf-8", "surrogateescape") for k in stored}
    assert lines["m\udcff"]["metadata"] == {"a": 1} and lines["m\udcff"]["expiration"] > 0

    imported = _edgekv("import", out, "--namespace", target, "--remote", url)
    assert imported.returncode == 0, imported.stderr
    client = _resp(server, dst_id)
    try:
        for key, value in stored.items():
            assert client.get(key) == value, key
        reply = client.execute_command("KV.GET", b"m\xff", "TYPE", "bytes", "WITHMETADATA")
        reply = dict(zip(reply[::2], reply[1::2])) if isinstance(reply, list) else reply
        assert reply[b"metadata"] == b'{"a":1}' and reply[b"expiration"] > 0
        assert client.ttl(b"m\xff") > 3000
    finally:
        client.close()


def test_cli_bulk_put_over_rest_names_keys_that_spell_no_bytes(rest):
    """``kv bulk put`` over REST writes the binary key and names only the one that is no key."""
    api, server = rest
    title = f"gaps-{uuid.uuid4().hex[:8]}"
    ns_id = api.namespace(title)
    items = [{"key": "b\udcffk", "value": "v\udcfe"}, {"key": "x\ud800", "value": "v"}]
    put = _edgekv("kv", "bulk", "put", "-", "--namespace", title,
                  "--remote", f"http://127.0.0.1:{api.port}",
                  input=json.dumps(items))
    assert put.returncode == 1
    assert "1 of 2 keys could not be written" in put.stderr
    assert "x\\ud800: the key holds a lone surrogate escape that is not a byte" in put.stderr
    assert _names(api, ns_id) == [b"b\xffk"]
    client = _resp(server, ns_id)
    try:
        assert client.get(b"b\xffk") == b"v\xfe"
    finally:
        client.close()


# ---------------------------------------------------------------------------- error texts


def test_namespace_not_found_reads_without_python_repr(rest):
    """The engine's text quotes the name plainly; RESP and REST still map the error by type
    (REST answers Cloudflare's own 404/10013 text, whatever the engine says)."""
    api, server = rest
    client = server.client()
    try:
        for name, shown in (("nope", '"nope"'), ("it's", '"it\'s"'),
                            ("b\udcffx", '"b\\udcffx"')):
            with pytest.raises(redis.ResponseError) as exc:
                client.execute_command("KV.NAMESPACE", "GET",
                                       name.encode("utf-8", "surrogateescape"))
            assert str(exc.value) == f"namespace not found: {shown}"
    finally:
        client.close()
    assert api.call("GET", f"/{uuid.uuid4().hex}").error() == (
        404, 10013, "get namespace: 'namespace not found'")
