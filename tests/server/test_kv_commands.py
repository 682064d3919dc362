"""edgekv's KV.* commands: Workers KV semantics over RESP2 and RESP3."""

from __future__ import annotations

import json
import time

import pytest
import redis


def _as_dict(reply):
    """RESP2 flattens maps into [k1, v1, k2, v2...]; RESP3 gives dicts."""
    if isinstance(reply, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in reply.items()}
    return {reply[i].decode(): reply[i + 1] for i in range(0, len(reply), 2)}


def test_put_get_with_metadata_and_expiration(r):
    exp = int(time.time()) + 3600
    assert r.execute_command("KV.PUT", "user:1", '{"name":"Ada"}', "EXPIRATION", str(exp),
                             "METADATA", '{"plan":"pro"}') == b"OK"
    assert r.execute_command("KV.GET", "user:1") == b'{"name":"Ada"}'
    assert r.execute_command("KV.GET", "user:1", "TYPE", "json") == b'{"name":"Ada"}'
    got = _as_dict(r.execute_command("KV.GET", "user:1", "WITHMETADATA"))
    assert got["value"] == b'{"name":"Ada"}'
    assert json.loads(got["metadata"]) == {"plan": "pro"}
    assert got["expiration"] == exp
    assert r.execute_command("KV.METADATA", "user:1") == b'{"plan":"pro"}'
    assert r.execute_command("KV.GET", "nope") is None


def test_put_validation_messages_are_miniflare_texts(r):
    cases = [
        (["EXPIRATION_TTL", "abc"], "KV PUT failed: 400 Invalid expiration_ttl of abc. Please "
                                    "specify integer greater than 0."),
        (["EXPIRATION_TTL", "30"], "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration "
                                   "TTL must be at least 60."),
        (["EXPIRATION", "1000"], "KV PUT failed: 400 Invalid expiration of 1000. Please specify "
                                 "integer greater than the current number of seconds since the "
                                 "UNIX epoch."),
        (["METADATA", json.dumps({"x": "y" * 1100})],
         "KV PUT failed: 413 Metadata length of 1109 exceeds limit of 1024."),
    ]
    for options, message in cases:
        with pytest.raises(redis.ResponseError) as err:
            r.execute_command("KV.PUT", "k", "v", *options)
        assert str(err.value) == message
    now = int(time.time())
    with pytest.raises(redis.ResponseError, match="Expiration times must be at least 60 seconds"):
        r.execute_command("KV.PUT", "k", "v", "EXPIRATION", str(now + 30))
    # expiration_ttl wins over expiration, which is then not even validated.
    r.execute_command("KV.PUT", "k", "v", "EXPIRATION", "5", "EXPIRATION_TTL", "120")
    assert 118 <= r.ttl("k") <= 120
    with pytest.raises(redis.ResponseError, match="Cache TTL must be at least 30"):
        r.execute_command("KV.GET", "k", "CACHETTL", "10")
    assert r.execute_command("KV.GET", "k", "CACHETTL", "30") == b"v"


def test_kv_mget_text_json_and_metadata(r):
    r.execute_command("KV.PUT", "a", '{"n":1}', "METADATA", '{"m":true}')
    r.execute_command("KV.PUT", "b", "plain")
    got = _as_dict(r.execute_command("KV.MGET", "a", "b", "c"))
    assert got == {"a": b'{"n":1}', "b": b"plain", "c": None}
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("KV.MGET", "a", "b", "TYPE", "json")
    assert str(err.value) == ("KV GET_BULK failed: 400 At least one of the requested keys "
                              "corresponds to a non-json value")
    got = _as_dict(r.execute_command("KV.MGET", "a", "TYPE", "json", "WITHMETADATA"))
    inner = _as_dict(got["a"])
    assert json.loads(inner["value"]) == {"n": 1}
    assert json.loads(inner["metadata"]) == {"m": True}
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("KV.MGET", *[f"k{i}" for i in range(101)])
    assert str(err.value) == "KV GET_BULK failed: 400 You can request a maximum of 100 keys"
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("KV.MGET", "a", "TYPE", "arrayBuffer")
    assert str(err.value) == ('KV GET_BULK failed: 400 "arrayBuffer" is not a valid type. Use '
                              '"json" or "text"')


def test_kv_list_pages_with_cursor_and_prefix(r):
    for i in range(25):
        r.execute_command("KV.PUT", f"user:{i:03d}", "v", "METADATA", json.dumps({"i": i}))
    r.execute_command("KV.PUT", "other", "v")
    names = []
    cursor = None
    pages = 0
    while True:
        args = ["KV.LIST", "PREFIX", "user:", "LIMIT", "10"]
        if cursor:
            args += ["CURSOR", cursor]
        page = _as_dict(r.execute_command(*args))
        pages += 1
        for item in page["keys"]:
            item = _as_dict(item)
            names.append(item["name"].decode())
            assert json.loads(item["metadata"])["i"] == int(item["name"][5:])
        if page["list_complete"] in (1, True):
            assert "cursor" not in page
            break
        cursor = page["cursor"]
    assert pages == 3
    assert names == [f"user:{i:03d}" for i in range(25)]
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("KV.LIST", "LIMIT", "1001")
    assert str(err.value) == ("KV GET failed: 400 Invalid key_count_limit of 1001. Please specify "
                              "an integer less than 1000.")


def test_kv_list_over_resp3_is_a_map(server):
    c = server.client(protocol=3)
    c.execute_command("KV.PUT", "a", "1", "EXPIRATION_TTL", "100")
    page = c.execute_command("KV.LIST")
    assert isinstance(page, dict)
    assert page[b"list_complete"] is True
    (item,) = page[b"keys"]
    assert item[b"name"] == b"a" and isinstance(item[b"expiration"], int)


def test_kv_bulkput_bulkdel(r):
    items = [{"key": f"k{i}", "value": f"v{i}"} for i in range(100)]
    items.append({"key": "b64", "value": "aGVsbG8=", "base64": True})
    items.append({"key": "ttl", "value": "x", "expiration_ttl": 10})
    result = _as_dict(r.execute_command("KV.BULKPUT", json.dumps(items)))
    assert result["successful_key_count"] == 101
    assert result["unsuccessful_keys"] == [b"ttl"]
    assert r.get("b64") == b"hello"
    result = _as_dict(r.execute_command("KV.BULKDEL", *[f"k{i}" for i in range(50)], ""))
    assert result["successful_key_count"] == 50
    assert result["unsuccessful_keys"] == [b""]
    assert r.dbsize() == 51
    with pytest.raises(redis.ResponseError, match="JSON array"):
        r.execute_command("KV.BULKPUT", "not json")


def test_kv_del_is_idempotent(r):
    r.set("k", "v")
    assert r.execute_command("KV.DEL", "k") == 1
    assert r.execute_command("KV.DEL", "k") == 0


def test_kv_namespace_lifecycle(r):
    created = _as_dict(r.execute_command("KV.NAMESPACE", "CREATE", "sessions"))
    ns_id = created["id"].decode()
    assert len(ns_id) == 32 and all(c in "0123456789abcdef" for c in ns_id)
    with pytest.raises(redis.ResponseError, match="already exists"):
        r.execute_command("KV.NAMESPACE", "CREATE", "sessions")
    listed = [_as_dict(x) for x in r.execute_command("KV.NAMESPACE", "LIST")]
    assert [x["title"] for x in listed] == [b"default", b"sessions"]
    assert _as_dict(r.execute_command("KV.NAMESPACE", "GET", ns_id))["title"] == b"sessions"
    renamed = _as_dict(r.execute_command("KV.NAMESPACE", "RENAME", ns_id, "carts"))
    assert renamed["title"] == b"carts"
    r.execute_command("SELECT", "carts")
    r.set("in-carts", "1")
    assert r.execute_command("KV.NAMESPACE", "DELETE", ns_id) == b"OK"
    with pytest.raises(redis.ResponseError, match="namespace not found"):
        r.execute_command("KV.NAMESPACE", "GET", ns_id)
    with pytest.raises(redis.ResponseError, match="cannot be deleted"):
        default_id = _as_dict(r.execute_command("KV.NAMESPACE", "LIST")[0])["id"]
        r.execute_command("KV.NAMESPACE", "DELETE", default_id)
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        r.execute_command("KV.NAMESPACE", "FROB")


def _wait_for_compaction(r):
    deadline = time.time() + 60
    while time.time() < deadline:
        info = r.info("persistence")
        if not info["aof_rewrite_in_progress"] and info["edgekv_last_compaction"] != "none":
            return info
        time.sleep(0.1)
    raise AssertionError("compaction did not finish")


def test_kv_compact_and_bgrewriteaof_reclaim_space_keep_data(server_factory):
    server = server_factory("--segment-bytes", "65536")
    r = server.client()
    for round_ in range(3):
        pipe = r.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"k{i}", f"v{round_}-{i}" * 5)
        pipe.execute()
    r.delete(*[f"k{i}" for i in range(1000)])
    before = r.info("persistence")["edgekv_disk_bytes"]
    assert r.execute_command("KV.COMPACT") == b"Background compaction started"
    info = _wait_for_compaction(r)
    assert "error" not in str(info["edgekv_last_compaction"])
    assert info["edgekv_disk_bytes"] < before / 2
    assert r.dbsize() == 1000
    assert r.get("k1999") == b"v2-1999" * 5 and r.get("k0") is None
    assert r.bgrewriteaof() is True
    _wait_for_compaction(r)
    assert r.get("k1500") == b"v2-1500" * 5


def test_background_compaction_starts_by_itself_past_the_dead_ratio(server_factory):
    server = server_factory("--segment-bytes", "65536", "--compaction-threshold", "0.5")
    r = server.client()
    for round_ in range(6):
        pipe = r.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"k{i}", f"{round_}" * 100)
        pipe.execute()
    deadline = time.time() + 30
    peak = r.info("persistence")["edgekv_disk_bytes"]
    while time.time() < deadline:
        if r.info("persistence")["edgekv_disk_bytes"] < peak / 2:
            break
        time.sleep(0.2)
    assert r.info("persistence")["edgekv_disk_bytes"] < peak / 2
    assert r.get("k999") == b"5" * 100 and r.dbsize() == 1000
