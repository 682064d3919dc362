"""The Cloudflare-compatible REST API (server/http.py) against a real server process.

Three clients speak to it: plain HTTP (every endpoint and error), the official ``cloudflare``
Python SDK, and, when it is installed, the real ``wrangler`` CLI.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.server.conftest import REPO, free_port, start_server

RW, RO = "rw-token-" + uuid.uuid4().hex, "ro-token-" + uuid.uuid4().hex
EMAIL, GLOBAL_KEY = "ops@example.com", "global-" + uuid.uuid4().hex
ACCOUNT = "acct0123"
MIB = 1024 * 1024


class Api:
    def __init__(self, port: int, account: str = ACCOUNT) -> None:
        self.port = port
        self.account = account

    @property
    def base(self) -> str:
        return f"/client/v4/accounts/{self.account}/storage/kv/namespaces"

    def call(self, method: str, path: str, body=None, *, token: str | None = RW,
             headers: dict | None = None, raw_path: bool = False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", f"Bearer {token}")
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path if raw_path else self.base + path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def ok(self, method: str, path: str, body=None, **kw):
        reply = self.call(method, path, body, **kw)
        assert reply.status == 200, (reply.status, reply.body[:500])
        return reply.json()["result"]

    def namespace(self, title: str | None = None) -> str:
        return self.ok("POST", "", {"title": title or "ns-" + uuid.uuid4().hex})["id"]


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def error(self) -> tuple[int, int, str]:
        doc = self.json()
        assert doc["success"] is False and doc["messages"] == [] and "result" in doc
        return self.status, doc["errors"][0]["code"], doc["errors"][0]["message"]


def _wait_http(port: int, proc) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert proc.poll() is None, "server exited"
            time.sleep(0.05)
    raise RuntimeError(f"REST API did not listen on {port}")


def _start(tmp: Path, *extra: str):
    tmp.mkdir(parents=True, exist_ok=True)
    http_port = free_port()
    server = start_server(tmp / "data", tmp / "server.log", "--http-port", str(http_port), *extra)
    _wait_http(http_port, server.proc)
    return server, http_port


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rest")
    server, port = _start(tmp, "--api-token", RW, "--api-read-token", RO, "--auth-email", EMAIL,
                          "--auth-key", GLOBAL_KEY, "--account-id", ACCOUNT)
    yield Api(port), server
    server.stop()


# ---------------------------------------------------------------------------- namespaces


def test_namespace_create_get_rename_delete(api):
    title = "orders-" + uuid.uuid4().hex
    created = api.ok("POST", "", {"title": title})
    assert created["title"] == title and len(created["id"]) == 32
    assert created["supports_url_encoding"] is True
    assert api.ok("GET", f"/{created['id']}") == created
    renamed = api.ok("PUT", f"/{created['id']}", {"title": title + "-2"})
    assert renamed == {**created, "title": title + "-2"}
    assert api.ok("DELETE", f"/{created['id']}") == {}
    assert api.call("GET", f"/{created['id']}").error() == (
        404, 10013, "get namespace: 'namespace not found'")
    assert api.call("DELETE", f"/{created['id']}").error()[:2] == (404, 10013)


def test_namespace_duplicate_title_and_bad_bodies(api):
    title = "dup-" + uuid.uuid4().hex
    api.ok("POST", "", {"title": title})
    assert api.call("POST", "", {"title": title}).error() == (
        400, 10014, "create namespace: 'A namespace with this account ID and title already exists'")
    assert api.call("POST", "", {"title": ""}).error()[:2] == (400, 10019)
    assert api.call("POST", "", b"{not json").error()[:2] == (400, 10001)
    other = api.namespace()
    assert api.call("PUT", f"/{other}", {"title": title}).error()[:2] == (400, 10014)


def test_namespace_list_pages_order_and_direction(api):
    prefix = "page-" + uuid.uuid4().hex[:8]
    for i in range(5):
        api.ok("POST", "", {"title": f"{prefix}-{i}"})
    doc = api.call("GET", "?per_page=1000&order=title&direction=asc").json()
    titles = [n["title"] for n in doc["result"]]
    assert titles == sorted(titles)
    total = doc["result_info"]["total_count"]
    assert doc["result_info"] == {"page": 1, "per_page": 1000, "count": total, "total_count": total}
    desc = [n["title"] for n in api.ok("GET", "?per_page=1000&order=title&direction=desc")]
    assert desc == titles[::-1]
    ids = [n["id"] for n in api.ok("GET", "?per_page=1000")]
    assert ids == sorted(ids)  # default order: id, ascending
    seen, page = [], 1
    while True:
        doc = api.call("GET", f"?per_page=2&page={page}&order=title").json()
        assert doc["result_info"]["page"] == page and doc["result_info"]["per_page"] == 2
        if not doc["result"]:
            break
        seen += [n["title"] for n in doc["result"]]
        page += 1
    assert seen == titles
    past = api.call("GET", f"?page={page + 5}").json()
    assert past["result"] == [] and past["result_info"]["count"] == 0
    assert api.call("GET", "?page=0").error()[:2] == (400, 10007)
    assert api.call("GET", "?per_page=1001").error()[:2] == (400, 10008)
    assert api.call("GET", "?order=size").error()[0] == 400


# ---------------------------------------------------------------------------- values


WEIRD_KEYS = ["a/b/c", "what?x=1&y=2", "100%", "with space", "naïve-ключ-🔑", "/lead", "tail/",
              "a+b", "#hash", "%2F-literal"]


@pytest.mark.parametrize("key", WEIRD_KEYS)
def test_weird_keys_round_trip(api, ns, key):
    path = f"/{ns}/values/{quote(key, safe='')}"
    api.ok("PUT", path, key.encode() + b"!")
    assert api.call("GET", path).body == key.encode() + b"!"
    names = [k["name"] for k in api.ok("GET", f"/{ns}/keys")]
    assert names == [key]
    api.ok("DELETE", path)
    assert api.call("GET", path).status == 404


def test_raw_slash_in_key_path_is_part_of_the_key(api, ns):
    api.ok("PUT", f"/{ns}/values/dir/sub/file.txt", b"x")
    assert api.call("GET", f"/{ns}/values/dir%2Fsub%2Ffile.txt").body == b"x"
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["dir/sub/file.txt"]


def test_value_put_get_binary_and_headers(api, ns):
    blob = bytes(range(256)) * 3
    api.ok("PUT", f"/{ns}/values/bin", blob,
           headers={"Content-Type": "application/octet-stream"})
    reply = api.call("GET", f"/{ns}/values/bin")
    assert reply.status == 200 and reply.body == blob
    assert reply.headers["content-type"] == "application/octet-stream"
    assert "expiration" not in reply.headers
    # Any non-multipart body is the value, even JSON (what an SDK's JSON body would be).
    api.ok("PUT", f"/{ns}/values/js", {"value": "v", "metadata": {"m": 1}})
    assert api.call("GET", f"/{ns}/values/js").json() == {"value": "v", "metadata": {"m": 1}}
    assert api.ok("GET", f"/{ns}/metadata/js") is None
    api.ok("PUT", f"/{ns}/values/empty", b"")
    assert api.call("GET", f"/{ns}/values/empty").body == b""


def test_value_expiration_and_ttl(api, ns):
    now = int(time.time())
    api.ok("PUT", f"/{ns}/values/ttl?expiration_ttl=120", b"v")
    exp = int(api.call("GET", f"/{ns}/values/ttl").headers["expiration"])
    assert now + 119 <= exp <= now + 122
    api.ok("PUT", f"/{ns}/values/abs?expiration={now + 3600}", b"v")
    assert api.call("GET", f"/{ns}/values/abs").headers["expiration"] == str(now + 3600)
    # expiration_ttl wins when both are given
    api.ok("PUT", f"/{ns}/values/both?expiration={now + 3600}&expiration_ttl=600", b"v")
    assert abs(int(api.call("GET", f"/{ns}/values/both").headers["expiration"]) - now - 600) <= 2
    keys = {k["name"]: k for k in api.ok("GET", f"/{ns}/keys")}
    assert keys["abs"]["expiration"] == now + 3600
    assert api.call("PUT", f"/{ns}/values/bad?expiration_ttl=30", b"v").error() == (
        400, 10034, "Invalid expiration_ttl of 30. Expiration TTL must be at least 60.")
    assert api.call("PUT", f"/{ns}/values/bad?expiration_ttl=abc", b"v").error() == (
        400, 10034, "Invalid expiration_ttl of abc. Please specify integer greater than 0.")
    assert api.call("PUT", f"/{ns}/values/bad?expiration=10", b"v").error()[:2] == (400, 10033)
    assert api.call("GET", f"/{ns}/values/bad").status == 404


def _multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    boundary = "----edgekv" + uuid.uuid4().hex
    out = b""
    for name, data, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_multipart_value_and_metadata(api, ns):
    body, ctype = _multipart([("value", b"hello\x00world", "blob"),
                              ("metadata", b'{"lang":"en","n":[1,2]}', None)])
    api.ok("PUT", f"/{ns}/values/mp", body, headers={"Content-Type": ctype})
    assert api.call("GET", f"/{ns}/values/mp").body == b"hello\x00world"
    assert api.ok("GET", f"/{ns}/metadata/mp") == {"lang": "en", "n": [1, 2]}
    listed = api.ok("GET", f"/{ns}/keys")
    assert listed == [{"name": "mp", "metadata": {"lang": "en", "n": [1, 2]}}]
    # a put replaces value, expiration and metadata together
    api.ok("PUT", f"/{ns}/values/mp", b"plain")
    assert api.ok("GET", f"/{ns}/metadata/mp") is None
    body, ctype = _multipart([("metadata", b"{}", None)])
    assert api.call("PUT", f"/{ns}/values/mp", body,
                    headers={"Content-Type": ctype}).error() == (400, 10001, "Missing value field")
    body, ctype = _multipart([("value", b"v", None), ("metadata", b"{nope", None)])
    assert api.call("PUT", f"/{ns}/values/mp", body,
                    headers={"Content-Type": ctype}).error()[:2] == (400, 10012)
    body, ctype = _multipart([("value", b"v", None), ("metadata", b'"' + b"x" * 1100 + b'"', None)])
    status, code, message = api.call("PUT", f"/{ns}/values/mp", body,
                                     headers={"Content-Type": ctype}).error()
    assert (status, code, message) == (413, 10024, "Metadata length of 1102 exceeds limit of 1024.")
    body, ctype = _multipart([("value", b"v", None), ("metadata[a]", b"1", None)])
    assert api.call("PUT", f"/{ns}/values/mp", body,
                    headers={"Content-Type": ctype}).error()[:2] == (400, 10001)


def test_missing_things_and_key_validation(api, ns):
    assert api.call("GET", f"/{ns}/values/nope").error() == (404, 10009, "get: 'key not found'")
    assert api.call("GET", f"/{ns}/metadata/nope").error() == (404, 10009, "get: 'key not found'")
    assert api.ok("DELETE", f"/{ns}/values/nope") == {}  # idempotent, as in Workers KV
    gone = uuid.uuid4().hex
    assert api.call("GET", f"/{gone}/keys").error() == (
        404, 10013, "list keys: 'namespace not found'")
    assert api.call("GET", f"/{gone}/values/k").error() == (
        404, 10013, "get: 'namespace not found'")
    assert api.call("PUT", f"/{gone}/values/k", b"v").error() == (
        404, 10013, "put: 'namespace not found'")
    assert api.call("DELETE", f"/{gone}/values/k").error() == (
        404, 10013, "remove key: 'namespace not found'")
    assert api.call("POST", f"/{gone}/bulk/get", {"keys": ["a"]}).error() == (
        404, 10013, "bulk get keys: 'namespace not found'")
    assert api.call("PUT", f"/{ns}/values/%2E%2E", b"v").error() == (
        400, 10023, 'Illegal key name "..". Please use a different name.')
    long_key = "k" * 513
    assert api.call("PUT", f"/{ns}/values/{long_key}", b"v").error() == (
        414, 10030, "UTF-8 encoded length of 513 exceeds key length limit of 512.")


def test_unknown_routes_and_methods(api, ns):
    for path in ("/client/v4/zones", "/client/v4/accounts/x/workers/scripts", "/",
                 f"{api.base}/{ns}/nothing-here"):
        assert api.call("GET", path, raw_path=True).error() == (404, 7003, "No route for the URI")
    assert api.call("PATCH", f"/{ns}/values/k").status == 405


# ---------------------------------------------------------------------------- keys list


def test_list_keys_prefix_limit_cursor(api, ns):
    names = sorted(f"user:{i:03d}" for i in range(25)) + ["zeta"]
    api.ok("PUT", f"/{ns}/bulk", [{"key": k, "value": "v"} for k in names])
    got, cursor, pages = [], None, 0
    while True:
        q = "?prefix=user:&limit=10" + (f"&cursor={quote(cursor)}" if cursor else "")
        doc = api.call("GET", f"/{ns}/keys{q}").json()
        assert doc["result_info"]["count"] == len(doc["result"])
        got += [k["name"] for k in doc["result"]]
        pages += 1
        cursor = doc["result_info"]["cursor"]
        if cursor == "":
            break
    assert got == names[:-1] and pages == 3
    doc = api.call("GET", f"/{ns}/keys").json()
    assert doc["result_info"] == {"count": 26, "cursor": ""}
    assert api.call("GET", f"/{ns}/keys?limit=5").error()[:2] == (400, 10028)
    assert api.call("GET", f"/{ns}/keys?limit=1001").error()[:2] == (400, 10028)
    assert api.call("GET", f"/{ns}/keys?limit=1000").status == 200


# ---------------------------------------------------------------------------- bulk


def test_bulk_write_base64_expiration_metadata(api, ns):
    now = int(time.time())
    items = [
        {"key": "plain", "value": "text"},
        {"key": "b64", "value": base64.b64encode(b"\x00\xffbin").decode(), "base64": True},
        {"key": "meta", "value": "m", "metadata": {"a": 1}, "expiration": now + 3600},
        {"key": "ttl", "value": "t", "expiration_ttl": 300},
    ]
    assert api.ok("PUT", f"/{ns}/bulk", items) == {"successful_key_count": 4,
                                                   "unsuccessful_keys": []}
    assert api.call("GET", f"/{ns}/values/b64").body == b"\x00\xffbin"
    assert api.call("GET", f"/{ns}/values/meta").headers["expiration"] == str(now + 3600)
    assert api.ok("GET", f"/{ns}/metadata/meta") == {"a": 1}
    reply = api.call("PUT", f"/{ns}/bulk", [{"key": "good", "value": "g"},
                                            {"key": "short", "value": "s", "expiration_ttl": 5}])
    status, code, _ = reply.error()
    assert (status, code) == (400, 10034)
    assert reply.json()["result"] == {"successful_key_count": 1, "unsuccessful_keys": ["short"]}
    assert api.call("GET", f"/{ns}/values/good").body == b"g"  # the valid items were written
    assert api.call("PUT", f"/{ns}/bulk", {"not": "a list"}).error()[:2] == (400, 10001)
    too_many = [{"key": f"k{i}", "value": "v"} for i in range(10_001)]
    assert api.call("PUT", f"/{ns}/bulk", too_many).status == 400


def test_bulk_delete_both_routes(api, ns):
    api.ok("PUT", f"/{ns}/bulk", [{"key": f"d{i}", "value": "v"} for i in range(6)])
    assert api.ok("POST", f"/{ns}/bulk/delete", ["d0", "d1", "missing"]) == {
        "successful_key_count": 3, "unsuccessful_keys": []}
    assert api.ok("DELETE", f"/{ns}/bulk", ["d2", "d3"])["successful_key_count"] == 2
    left = [k["name"] for k in api.ok("GET", f"/{ns}/keys")]
    assert left == ["d4", "d5"]
    reply = api.call("POST", f"/{ns}/bulk/delete", ["d4", ""])
    assert reply.status == 400 and reply.json()["result"]["unsuccessful_keys"] == [""]
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["d5"]


def test_bulk_get(api, ns):
    now = int(time.time())
    api.ok("PUT", f"/{ns}/bulk", [{"key": "j", "value": '{"x": 1}', "metadata": {"m": True}},
                                  {"key": "t", "value": "text", "expiration": now + 3600}])
    assert api.ok("POST", f"/{ns}/bulk/get", {"keys": ["j", "t", "nope"]}) == {
        "values": {"j": '{"x": 1}', "t": "text", "nope": None}}
    assert api.ok("POST", f"/{ns}/bulk/get", {"keys": ["j"], "type": "json"}) == {
        "values": {"j": {"x": 1}}}
    assert api.ok("POST", f"/{ns}/bulk/get", {"keys": ["j", "t", "nope"],
                                              "withMetadata": True}) == {"values": {
        "j": {"value": '{"x": 1}', "metadata": {"m": True}},
        "t": {"value": "text", "metadata": None, "expiration": now + 3600},
        "nope": None}}
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": ["t"], "type": "json"}).error() == (
        400, 10001, "At least one of the requested keys corresponds to a non-json value")
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": ["j"], "type": "arrayBuffer"}).error()[2] \
        == '"arrayBuffer" is not a valid type. Use "json" or "text"'
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": [f"k{i}" for i in range(101)]}).error() \
        == (400, 10001, "You can request a maximum of 100 keys")
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": []}).error()[2] == \
        "You must request a minimum of 1 key"
    # a bulk get only reads: the read-only token may use it
    assert api.call("POST", f"/{ns}/bulk/get", {"keys": ["j"]}, token=RO).status == 200


# ---------------------------------------------------------------------------- auth


def test_auth_schemes_and_read_only_tokens(api, ns):
    denied = (403, 10000, "Authentication error")
    assert api.call("GET", "", token=None).error() == denied
    assert api.call("GET", "", token="wrong").error() == denied
    basic = {"Authorization": "Basic " + RW}
    assert api.call("GET", "", headers=basic, token=None).error() == denied
    assert api.call("GET", "", token=RO).status == 200
    assert api.call("GET", f"/{ns}/keys", token=RO).status == 200
    for method, path in (("POST", ""), ("PUT", f"/{ns}"), ("DELETE", f"/{ns}"),
                         ("PUT", f"/{ns}/values/k"), ("DELETE", f"/{ns}/values/k"),
                         ("PUT", f"/{ns}/bulk"), ("DELETE", f"/{ns}/bulk"),
                         ("POST", f"/{ns}/bulk/delete")):
        assert api.call(method, path, b"[]", token=RO).error() == denied, (method, path)
    email = {"X-Auth-Email": EMAIL.upper(), "X-Auth-Key": GLOBAL_KEY}
    assert api.call("PUT", f"/{ns}/values/k", b"v", token=None, headers=email).status == 200
    bad = {"X-Auth-Email": EMAIL, "X-Auth-Key": "nope"}
    assert api.call("GET", "", token=None, headers=bad).error() == denied
    assert api.call("GET", "", token=None, headers={"X-Auth-Key": GLOBAL_KEY}).error() == denied


def test_account_id_must_match(api, ns):
    other = Api(api.port, account="someone-else")
    assert other.call("GET", "").error() == (403, 10000, "Authentication error")
    assert other.call("GET", f"/{ns}/values/k").error()[:2] == (403, 10000)


def test_no_credentials_refuses_everything_unless_anonymous(tmp_path):
    closed, port = _start(tmp_path / "closed")
    try:
        assert Api(port).call("GET", "", token=None).error()[:2] == (403, 10000)
        assert Api(port).call("GET", "", token="anything").error()[:2] == (403, 10000)
        assert "no credentials configured" in closed.log()
    finally:
        closed.stop()
    open_, port = _start(tmp_path / "open", "--http-anonymous", "yes")
    try:
        api = Api(port, account="any-account")  # no --account-id: any account id is accepted
        ns = api.namespace()
        api.ok("PUT", f"/{ns}/values/k", b"v", token=None)
        assert api.call("GET", f"/{ns}/values/k", token=None).body == b"v"
    finally:
        open_.stop()


def test_credentials_from_config_file():
    from server.config import ServerConfig, coerce
    assert coerce("api_tokens", "one two") == ["one", "two"]
    assert coerce("http_anonymous", "yes") is True
    config = ServerConfig(api_read_tokens=["r"])
    assert config.has_api_credentials()
    with pytest.raises(ValueError, match="together"):
        ServerConfig(auth_email="a@b.c").check()
    # REST credentials make a public REST bind acceptable without a RESP password
    ServerConfig(http_bind="0.0.0.0", api_tokens=["t"]).check()
    with pytest.raises(ValueError, match="protected mode"):
        ServerConfig(http_bind="0.0.0.0").check()


def test_anonymous_refused_on_public_bind(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--bind", "0.0.0.0",
                           "--requirepass", "x", "--port", "0", "--http-port", str(free_port()),
                           "--http-anonymous", "yes", "--data-dir", str(tmp_path / "d")],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "http-anonymous" in proc.stderr


# ---------------------------------------------------------------------------- sizes


def test_25_mib_value_and_oversize(api, ns):
    limit = 25 * MIB
    blob = os.urandom(1024) * (limit // 1024)
    api.ok("PUT", f"/{ns}/values/big", blob)
    reply = api.call("GET", f"/{ns}/values/big")
    assert reply.status == 200 and reply.body == blob
    assert api.call("PUT", f"/{ns}/values/big2", blob + b"x").error() == (
        413, 10024, f"Value length of {limit + 1} exceeds limit of {limit}.")
    body, ctype = _multipart([("value", blob + b"xy", "f")])
    assert api.call("PUT", f"/{ns}/values/big2", body, headers={"Content-Type": ctype}).error() \
        == (413, 10024, f"Value length of {limit + 2} exceeds limit of {limit}.")
    assert api.call("GET", f"/{ns}/values/big2").status == 404


def test_chunked_upload_counted_while_streaming(api, ns):
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    chunks = [b"a" * MIB] * 26
    conn.request("PUT", f"{api.base}/{ns}/values/chunked", body=iter(chunks),
                 headers={"Authorization": f"Bearer {RW}"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["errors"][0]["code"] == 10024
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
    conn.request("PUT", f"{api.base}/{ns}/values/chunked", body=iter([b"ab", b"cd"]),
                 headers={"Authorization": f"Bearer {RW}"}, encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert api.call("GET", f"/{ns}/values/chunked").body == b"abcd"


def test_oversized_declared_bodies_refused_before_reading(api, ns):
    for path, length in ((f"/{ns}/values/k", 25 * MIB + 1), (f"/{ns}/bulk", 100 * MIB + 1)):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.putrequest("PUT", api.base + path)
        conn.putheader("Authorization", f"Bearer {RW}")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()  # and no body at all: the answer must not wait for it
        resp = conn.getresponse()
        assert resp.status == 413
        assert json.loads(resp.read())["errors"][0]["code"] == 10024
        conn.close()


def test_rest_and_resp_share_the_store(rest):
    api, server = rest
    default = next(n["id"] for n in api.ok("GET", "?per_page=1000") if n["title"] == "default")
    api.ok("PUT", f"/{default}/values/shared-key", b"from-rest")
    client = server.client()
    try:
        assert client.get("shared-key") == b"from-rest"
        client.set("from-resp", "hi")
    finally:
        client.close()
    assert api.call("GET", f"/{default}/values/from-resp").body == b"hi"


def test_acknowledged_writes_survive_kill9(tmp_path):
    server, port = _start(tmp_path, "--api-token", RW)
    api = Api(port)
    ns = api.namespace("durable")
    for i in range(20):
        api.ok("PUT", f"/{ns}/values/k{i}", f"v{i}".encode())
    api.ok("PUT", f"/{ns}/bulk", [{"key": f"b{i}", "value": "x"} for i in range(50)])
    api.ok("DELETE", f"/{ns}/values/k0")
    server.kill9()
    again = start_server(tmp_path / "data", tmp_path / "again.log", "--http-port", str(port),
                         "--api-token", RW)
    try:
        _wait_http(port, again.proc)
        names = {k["name"] for k in api.ok("GET", f"/{ns}/keys")}
        assert names == {f"k{i}" for i in range(1, 20)} | {f"b{i}" for i in range(50)}
        assert api.call("GET", f"/{ns}/values/k19").body == b"v19"
    finally:
        again.stop()


def test_slow_upload_does_not_block_resp(rest):
    api, server = rest
    ns = api.namespace()
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=10)
    try:
        head = (f"PUT {api.base}/{ns}/values/slow HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {RW}\r\nContent-Length: 8\r\n\r\nhalf")
        sock.sendall(head.encode())
        client = server.client()
        try:
            started = time.monotonic()
            assert client.ping() is True
            assert time.monotonic() - started < 2
        finally:
            client.close()
        sock.sendall(b"done")
        assert b" 200 " in sock.recv(4096).split(b"\r\n", 1)[0] + b" "
    finally:
        sock.close()
    assert api.call("GET", f"/{ns}/values/slow").body == b"halfdone"


# ---------------------------------------------------------------------------- Python SDK


def _sdk(api: Api, **kwargs):
    cloudflare = pytest.importorskip(
        "cloudflare", reason="the cloudflare SDK is not installed (pip install cloudflare)")
    return cloudflare, cloudflare.Cloudflare(
        base_url=f"http://127.0.0.1:{api.port}/client/v4", max_retries=0,
        **(kwargs or {"api_token": RW}))


def test_python_sdk_every_kv_method(api):
    cloudflare, cf = _sdk(api)
    kv = cf.kv.namespaces
    title = "sdk-" + uuid.uuid4().hex
    created = kv.create(account_id=ACCOUNT, title=title)
    ns = created.id
    assert created.title == title
    assert kv.get(ns, account_id=ACCOUNT).title == title
    listed = [n.title for n in kv.list(account_id=ACCOUNT, per_page=2)]  # auto-paginates
    assert title in listed
    kv.update(ns, account_id=ACCOUNT, title=title + "-renamed")
    assert kv.get(ns, account_id=ACCOUNT).title == title + "-renamed"

    key = "sdk/key with spaces?&%"
    kv.values.update(key, account_id=ACCOUNT, namespace_id=ns, value=b"hello",
                     metadata=json.dumps({"from": "sdk"}), expiration_ttl=600)
    assert kv.values.get(key, account_id=ACCOUNT, namespace_id=ns).text() == "hello"
    assert kv.metadata.get(key, account_id=ACCOUNT, namespace_id=ns) == {"from": "sdk"}
    kv.values.update("bin", account_id=ACCOUNT, namespace_id=ns, value=b"\x00\x01")
    assert kv.values.get("bin", account_id=ACCOUNT, namespace_id=ns).read() == b"\x00\x01"

    result = kv.bulk_update(ns, account_id=ACCOUNT, body=[
        {"key": f"bulk{i}", "value": f"v{i}"} for i in range(15)])
    assert result.successful_key_count == 15 and result.unsuccessful_keys == []
    names = [k.name for k in kv.keys.list(ns, account_id=ACCOUNT, limit=10)]  # follows cursor
    assert names == sorted(["bin", key] + [f"bulk{i}" for i in range(15)])
    got = kv.bulk_get(ns, account_id=ACCOUNT, keys=["bulk1", key, "none"], with_metadata=True)
    assert got.values["bulk1"].value == "v1"
    assert got.values[key].metadata == {"from": "sdk"}
    assert got.values["none"] is None
    deleted = kv.bulk_delete(ns, account_id=ACCOUNT, body=[f"bulk{i}" for i in range(15)])
    assert deleted.successful_key_count == 15
    kv.values.delete(key, account_id=ACCOUNT, namespace_id=ns)
    with pytest.raises(cloudflare.NotFoundError):
        kv.values.get(key, account_id=ACCOUNT, namespace_id=ns)
    assert [k.name for k in kv.keys.list(ns, account_id=ACCOUNT)] == ["bin"]
    kv.delete(ns, account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError):
        kv.get(ns, account_id=ACCOUNT)


def test_python_sdk_errors_and_global_key(api):
    cloudflare, cf = _sdk(api, api_email=EMAIL, api_key=GLOBAL_KEY)
    ns = cf.kv.namespaces.create(account_id=ACCOUNT, title="sdk-" + uuid.uuid4().hex).id
    with pytest.raises(cloudflare.BadRequestError) as info:
        cf.kv.namespaces.values.update("k", account_id=ACCOUNT, namespace_id=ns, value=b"v",
                                       expiration_ttl=10)
    assert info.value.body["errors"][0]["code"] == 10034
    _, readonly = _sdk(api, api_token=RO)
    with pytest.raises(cloudflare.PermissionDeniedError):
        readonly.kv.namespaces.create(account_id=ACCOUNT, title="nope")
    _, wrong = _sdk(api, api_token="wrong")
    with pytest.raises(cloudflare.PermissionDeniedError):
        wrong.kv.namespaces.get(ns, account_id=ACCOUNT)


# ---------------------------------------------------------------------------- wrangler


def _wrangler_cmd() -> list[str] | None:
    local = os.environ.get("EDGEKV_WRANGLER")
    if local:
        return [local]
    if shutil.which("wrangler"):
        return ["wrangler"]
    local = REPO / "node_modules" / ".bin" / "wrangler"
    if local.exists():
        return [str(local)]
    return None


@pytest.fixture
def wrangler(api, tmp_path):
    cmd = _wrangler_cmd()
    if cmd is None:
        pytest.skip("wrangler is not installed (npm install -g wrangler, or set "
                    "EDGEKV_WRANGLER to its path)")
    env = {**os.environ, "CLOUDFLARE_API_BASE_URL": f"http://127.0.0.1:{api.port}/client/v4",
           "CLOUDFLARE_API_TOKEN": RW, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
           "WRANGLER_SEND_METRICS": "false", "CI": "true", "NO_UPDATE_NOTIFIER": "1",
           "WRANGLER_LOG_PATH": str(tmp_path / "wrangler-logs"), "HOME": str(tmp_path)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True,
                              timeout=180)
        if check:
            assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc
    return run


def test_wrangler_kv_commands(api, wrangler, tmp_path):
    title = "wr-" + uuid.uuid4().hex[:12]
    out = wrangler("kv", "namespace", "create", title).stdout.decode()
    ns = next(n["id"] for n in api.ok("GET", "?per_page=1000") if n["title"] == title)
    assert ns in out
    assert title in wrangler("kv", "namespace", "list").stdout.decode()
    remote = ("--namespace-id", ns, "--remote")
    wrangler("kv", "key", "put", "dir/key?1", "hello wrangler", "--metadata", '{"by":"wrangler"}',
             "--ttl", "600", *remote)
    assert api.call("GET", f"/{ns}/values/{quote('dir/key?1', safe='')}").body == b"hello wrangler"
    assert api.ok("GET", f"/{ns}/metadata/{quote('dir/key?1', safe='')}") == {"by": "wrangler"}
    assert wrangler("kv", "key", "get", "dir/key?1", "--text", *remote).stdout.decode() \
        .strip().endswith("hello wrangler")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    wrangler("kv", "key", "put", "file", "--path", str(blob), *remote)
    assert api.call("GET", f"/{ns}/values/file").body == bytes(range(256))
    out = wrangler("kv", "key", "list", *remote).stdout.decode()
    listed = json.JSONDecoder().raw_decode(out[out.index("["):])[0]
    assert {k["name"] for k in listed} == {"dir/key?1", "file"}
    wrangler("kv", "key", "delete", "file", *remote)
    assert api.call("GET", f"/{ns}/values/file").status == 404
    bulk = tmp_path / "bulk.json"
    bulk.write_text(json.dumps([{"key": f"b{i}", "value": f"v{i}"} for i in range(3)] +
                               [{"key": "b64", "value": base64.b64encode(b"\x00x").decode(),
                                 "base64": True}]))
    wrangler("kv", "bulk", "put", str(bulk), *remote)
    assert api.call("GET", f"/{ns}/values/b64").body == b"\x00x"
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(["b0", "b1"]))
    wrangler("kv", "bulk", "delete", str(gone), "--force", *remote)
    names = [k["name"] for k in api.ok("GET", f"/{ns}/keys")]
    assert names == ["b2", "b64", "dir/key?1"]
    wanted = tmp_path / "wanted.json"
    wanted.write_text(json.dumps(["b2", "missing"]))
    out = wrangler("kv", "bulk", "get", str(wanted), *remote).stdout.decode()
    assert json.JSONDecoder().raw_decode(out[out.index("{"):])[0] == {"b2": "v2", "missing": None}
    wrangler("kv", "namespace", "rename", title, "--new-name", title + "-renamed")
    assert api.ok("GET", f"/{ns}")["title"] == title + "-renamed"
    wrangler("kv", "namespace", "delete", "--namespace-id", ns, "--skip-confirmation")
    assert api.call("GET", f"/{ns}").status == 404
