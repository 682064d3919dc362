"""Edge cases of the REST API (server/http.py) found by a check against Cloudflare's behaviour:
key decoding, keys that are not UTF-8, malformed bodies, JSON types and message wording.

Each test talks raw HTTP to a real server process; none may make the server log a traceback.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tests.server.test_rest_api import ACCOUNT, RW, Api, _multipart, _start

LONE_SURROGATE = ("The request body holds a lone surrogate \\ud800: JSON strings must be "
                  "Unicode text.")


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    server, port = _start(tmp_path_factory.mktemp("rest-edge"), "--api-token", RW,
                          "--account-id", ACCOUNT)
    yield Api(port), server
    server.stop()


@pytest.fixture(autouse=True)
def no_traceback_logged(rest):
    """A malformed request is the client's fault: the server answers it without a traceback."""
    server = rest[1]
    before = len(server.log())
    yield
    assert "Traceback" not in server.log()[before:]


def _resp_put(server, ns: str, key: bytes, value: bytes = b"v") -> None:
    """Write through the Redis protocol, which allows keys that are not UTF-8."""
    client = server.client(single_connection_client=True)
    try:
        client.execute_command("SELECT", ns)
        client.set(key, value)
    finally:
        client.close()


def _raw_request(api: Api, request_line: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """``(status, headers, body)`` for a request line sent byte for byte."""
    head = (request_line + b"\r\nHost: x\r\nAuthorization: Bearer " + RW.encode()
            + b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    headers, _, payload = data.partition(b"\r\n\r\n")
    return int(headers.split(b" ", 2)[1]), headers, payload


def _error_envelope(payload: bytes) -> tuple[int, str]:
    doc = json.loads(payload)
    assert doc["success"] is False and doc["messages"] == []
    return doc["errors"][0]["code"], doc["errors"][0]["message"]


# ---------------------------------------------------------------------------- key decoding


@pytest.mark.parametrize("segment", ["%C3", "%FF%FE", "%ED%A0%80", "%zz", "%", "a%2", "x%G1"])
def test_key_that_does_not_url_decode_is_refused(api, ns, segment):
    for method, route, body in (("PUT", "values", b"v"), ("GET", "values", None),
                                ("DELETE", "values", None), ("GET", "metadata", None)):
        reply = api.call(method, f"/{ns}/{route}/{segment}", body)
        assert reply.error() == (400, 10023, "Could not URL-decode key name"), (method, route)
    assert api.ok("GET", f"/{ns}/keys") == []  # nothing was stored


def test_bad_key_still_needs_credentials_and_a_namespace(api, ns):
    assert api.call("GET", f"/{ns}/values/%zz", token=None).error()[:2] == (403, 10000)
    assert api.call("GET", f"/{uuid.uuid4().hex}/values/%zz").error() == (
        404, 10013, "get: 'namespace not found'")


def test_valid_escapes_still_decode(api, ns):
    api.ok("PUT", f"/{ns}/values/%C3%A9%25zz%2Fx", b"v")
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["é%zz/x"]


# ---------------------------------------------------------------------------- non-UTF-8 keys


def test_keys_that_are_not_utf8_are_listed_as_surrogate_escapes(rest, ns):
    api, server = rest
    _resp_put(server, ns, b"bad\xc3", b"one")
    _resp_put(server, ns, b"good\xc3\xa9", b"two")
    reply = api.call("GET", f"/{ns}/keys")
    assert reply.status == 200
    # \udcXY per stray byte: valid JSON, and Python's surrogateescape gets the bytes back.
    assert b'"bad\\udcc3"' in reply.body
    names = [k["name"] for k in reply.json()["result"]]
    assert [n.encode("utf-8", "surrogateescape") for n in names] == [b"bad\xc3", b"good\xc3\xa9"]
    # The listed name addresses the key in bulk get and bulk delete.
    got = api.call("POST", f"/{ns}/bulk/get", b'{"keys": ["bad\\udcc3", "good\\u00e9"]}',
                   headers={"Content-Type": "application/json"})
    assert got.status == 200
    assert got.json()["result"]["values"] == {"bad\udcc3": "one", "goodé": "two"}
    gone = api.call("POST", f"/{ns}/bulk/delete", b'["bad\\udcc3"]',
                    headers={"Content-Type": "application/json"})
    assert gone.status == 200 and gone.json()["result"]["successful_key_count"] == 1
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["goodé"]


def test_bulk_write_refuses_lone_surrogates(api, ns):
    for key in ("sur\\ud800", "bad\\udc7f"):
        body = b'[{"key": "ok", "value": "v"}, {"key": "' + key.encode() + b'", "value": "v"}]'
        reply = api.call("PUT", f"/{ns}/bulk", body, headers={"Content-Type": "application/json"})
        status, code, message = reply.error()
        assert (status, code) == (400, 10001) and "lone surrogate" in message
    body = b'[{"key": "k", "value": "v", "metadata": {"m": "\\udfff"}}]'
    assert api.call("PUT", f"/{ns}/bulk", body).error()[:2] == (400, 10001)
    # Surrogate pairs are ordinary characters.
    api.ok("PUT", f"/{ns}/bulk", b'[{"key": "emoji\\ud83d\\ude00", "value": "v"}]')
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["emoji😀"]


def test_lone_surrogate_in_a_namespace_title_is_400(api, ns):
    for method, path in (("POST", ""), ("PUT", f"/{ns}")):
        reply = api.call(method, path, b'{"title": "a\\ud800b"}')
        assert reply.error() == (400, 10001, LONE_SURROGATE)
    assert api.call("POST", f"/{ns}/bulk/delete", b'["x\\ud800"]').error()[:2] == (400, 10001)


# ---------------------------------------------------------------------------- routing


def test_key_with_a_newline_is_reachable(api, ns):
    api.ok("PUT", f"/{ns}/bulk", [{"key": "nl\nkey", "value": "from bulk"}])
    assert api.call("GET", f"/{ns}/values/nl%0Akey").body == b"from bulk"
    api.ok("PUT", f"/{ns}/values/a%0Ab%0D%0A", b"single")
    assert api.call("GET", f"/{ns}/values/a%0Ab%0D%0A").body == b"single"
    assert api.ok("GET", f"/{ns}/metadata/nl%0Akey") is None
    api.ok("DELETE", f"/{ns}/values/nl%0Akey")
    assert [k["name"] for k in api.ok("GET", f"/{ns}/keys")] == ["a\nb\r\n"]


@pytest.mark.parametrize("path", ["/%0A", "/client/v4/%0A/x", "/client/v4/accounts/%0A",
                                  "http://x/client/v4/zones"])
def test_unmatched_paths_get_the_envelope(api, path):
    status, headers, payload = _raw_request(api, f"GET {path} HTTP/1.1".encode())
    assert b"application/json" in headers.lower()
    assert (status, *_error_envelope(payload)) == (404, 7003, "No route for the URI")


def test_long_request_line_gets_the_envelope(api, ns):
    assert api.call("GET", f"/{ns}/values/{'a' * 20_000}").error() == (
        414, 10030, "UTF-8 encoded length of 20000 exceeds key length limit of 512.")
    assert api.call("GET", f"/{ns}/keys?prefix={'p' * 9000}").error()[:2] == (414, 10030)
    # A 512-byte key of 4-byte characters, percent-encoded, is far below the limit.
    key = "😀" * 128
    encoded = "".join(f"%{b:02X}" for b in key.encode())
    api.ok("PUT", f"/{ns}/values/{encoded}?expiration_ttl=600", b"v")
    assert api.call("GET", f"/{ns}/values/{encoded}").body == b"v"


# ---------------------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize("ctype, body", [
    ("multipart/form-data", b"garbage"),
    ("multipart/form-data; boundary=xx", b"--xx\r\ngarbage"),
    ("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: form-data; name=value"),
    ("multipart/form-data; boundary=xx", b"not a boundary at all"),
    ("multipart/form-data; boundary=" + "b" * 80, b"x"),
])
def test_malformed_multipart_is_400(api, ns, ctype, body):
    reply = api.call("PUT", f"/{ns}/values/mp", body, headers={"Content-Type": ctype})
    assert reply.error() == (400, 10001, "Malformed multipart/form-data body.")
    assert api.call("GET", f"/{ns}/values/mp").status == 404


def test_deeply_nested_json_is_400(api, ns):
    deep = b"[" * 200_000 + b"]" * 200_000
    for method, path in (("PUT", f"/{ns}/bulk"), ("POST", f"/{ns}/bulk/get"), ("POST", "")):
        assert api.call(method, path, deep).error() == (
            400, 10001, "The request body is nested too deeply.")
    body, ctype = _multipart([("value", b"v", None),
                              ("metadata", b"[" * 20_000 + b"]" * 20_000, None)])
    assert api.call("PUT", f"/{ns}/values/k", body, headers={"Content-Type": ctype}).error() == (
        400, 10012, "Metadata must be valid JSON text.")


def test_json_body_wording(api, ns):
    assert api.call("PUT", f"/{ns}/bulk", {"a": 1}).error()[2] == \
        "The request body must be a JSON array."
    assert api.call("POST", f"/{ns}/bulk/get", [1]).error()[2] == \
        "The request body must be a JSON object."
    assert api.call("GET", "?order=size").error()[2] == 'Invalid order "size": use id or title.'


# ---------------------------------------------------------------------------- metadata size


def test_metadata_limit_is_on_compact_json(api, ns):
    compact_1024 = {"a": "x" * 1016}
    assert len(json.dumps(compact_1024, separators=(",", ":"))) == 1024
    spaced = json.dumps(compact_1024).encode()  # '{"a": "x..."}': 1025 bytes as sent
    body, ctype = _multipart([("value", b"v", None), ("metadata", spaced, None)])
    api.ok("PUT", f"/{ns}/values/m1", body, headers={"Content-Type": ctype})
    assert api.ok("GET", f"/{ns}/metadata/m1") == compact_1024
    # \u escapes count as the UTF-8 they stand for: 808 bytes, not 2409 as sent.
    accented = {"a": "é" * 400}
    body, ctype = _multipart([("value", b"v", None), ("metadata", json.dumps(accented).encode(),
                                                      None)])
    api.ok("PUT", f"/{ns}/values/m2", body, headers={"Content-Type": ctype})
    assert api.ok("GET", f"/{ns}/metadata/m2") == accented
    over = {"a": "x" * 1017}
    body, ctype = _multipart([("value", b"v", None), ("metadata", json.dumps(over).encode(),
                                                      None)])
    assert api.call("PUT", f"/{ns}/values/m3", body, headers={"Content-Type": ctype}).error() == (
        413, 10024, "Metadata length of 1025 exceeds limit of 1024.")
    # The bulk path agrees on both sides of the limit.
    reply = api.call("PUT", f"/{ns}/bulk", [{"key": "b1", "value": "v", "metadata": compact_1024},
                                            {"key": "b2", "value": "v", "metadata": over}])
    assert reply.json()["result"] == {"successful_key_count": 1, "unsuccessful_keys": ["b2"]}


def test_metadata_is_stored_compact_and_bad_metadata_is_plain_text(api, ns):
    body, ctype = _multipart([("value", b"v", None), ("metadata", b' { "a" :   1 } ', None)])
    api.ok("PUT", f"/{ns}/values/k", body, headers={"Content-Type": ctype})
    assert api.ok("GET", f"/{ns}/metadata/k") == {"a": 1}
    for bad in (b"plain string", b'"\\ud800"', b"\xff"):
        body, ctype = _multipart([("value", b"v", None), ("metadata", bad, None)])
        assert api.call("PUT", f"/{ns}/values/k", body, headers={"Content-Type": ctype}).error() \
            == (400, 10012, "Metadata must be valid JSON text.")


def test_python_sdk_dict_metadata(api, ns):
    cloudflare = pytest.importorskip("cloudflare")
    cf = cloudflare.Cloudflare(api_token=RW, base_url=f"http://127.0.0.1:{api.port}/client/v4",
                               max_retries=0)
    meta = {"a": "x" * 1016}
    cf.kv.namespaces.values.update("sdk", account_id=ACCOUNT, namespace_id=ns, value=b"v",
                                   metadata=meta)
    assert cf.kv.namespaces.metadata.get("sdk", account_id=ACCOUNT, namespace_id=ns) == meta


# ---------------------------------------------------------------------------- JSON types


@pytest.mark.parametrize("flag", ["false", "yes", 1, None, []])
def test_with_metadata_must_be_a_boolean(api, ns, flag):
    reply = api.call("POST", f"/{ns}/bulk/get", {"keys": ["k"], "withMetadata": flag})
    assert reply.error() == (400, 10001,
                             f"withMetadata: expected true or false, got {json.dumps(flag)}")


def test_base64_must_be_a_boolean(api, ns):
    reply = api.call("PUT", f"/{ns}/bulk", [{"key": "ok", "value": "v"},
                                            {"key": "b", "value": "aGk=", "base64": "yes"}])
    assert reply.error() == (400, 10001, 'body[1].base64: expected true or false, got "yes"')
    assert api.ok("GET", f"/{ns}/keys") == []  # a schema error refuses the whole request


def test_bulk_items_without_a_key_refuse_the_request(api, ns):
    cases = [(["str"], 'body[0]: expected an object with "key" and "value"'),
             ([{"key": "a", "value": "v"}, {"value": "nok"}], "body[1].key: a string is required"),
             ([{"key": 5, "value": "v"}], "body[0].key: a string is required"),
             ([{"key": "novalue"}], "body[0].value: is required"),
             ([{"key": "t", "value": "v", "expiration_ttl": True}],
              "body[0].expiration_ttl: expected a number, got true")]
    for items, message in cases:
        reply = api.call("PUT", f"/{ns}/bulk", items)
        assert reply.error() == (400, 10001, message)
        assert reply.json()["result"] is None
    for body, message in ((["a", None], "body[1]: a key name (a string) is required"),
                          ([{"name": 5}], "body[0]: a key name (a string) is required")):
        assert api.call("POST", f"/{ns}/bulk/delete", body).error() == (400, 10001, message)
    assert api.ok("GET", f"/{ns}/keys") == []
