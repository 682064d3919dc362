"""Redis string and key commands against a real edgekv process, through redis-py."""

from __future__ import annotations

import time

import pytest
import redis


def test_set_get_roundtrip_binary_safe(r):
    value = bytes(range(256)) * 4
    assert r.set("bin", value) is True
    assert r.get("bin") == value
    assert r.get("missing") is None


def test_set_options_nx_xx_get_keepttl(r):
    assert r.set("k", "v1", nx=True) is True
    assert r.set("k", "v2", nx=True) is None
    assert r.get("k") == b"v1"
    assert r.set("absent", "v", xx=True) is None
    assert r.set("k", "v3", xx=True, get=True) == b"v1"
    r.set("k", "v4", ex=120)
    assert 118 <= r.ttl("k") <= 120
    r.set("k", "v5", keepttl=True)
    assert 118 <= r.ttl("k") <= 120
    r.set("k", "v6")
    assert r.ttl("k") == -1  # a plain SET replaces the expiration, like a KV put


def test_set_ttl_below_minimum_names_limit_and_value(r):
    with pytest.raises(redis.ResponseError) as err:
        r.set("k", "v", ex=10)
    assert str(err.value) == ("KV PUT failed: 400 Invalid expiration_ttl of 10. Expiration TTL "
                              "must be at least 60.")
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.set("k", "v", ex=0)
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.execute_command("SET", "k", "v", "EX", "abc")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "NX", "XX")
    assert r.get("k") is None


def test_min_ttl_can_be_lowered_for_caches(server_factory):
    server = server_factory("--min-ttl", "1")
    c = server.client()
    assert c.set("short", "v", px=1500)
    assert 0 < c.pttl("short") <= 1500
    time.sleep(1.7)
    assert c.get("short") is None
    assert c.exists("short") == 0


def test_exat_pxat_expiration_times(r):
    at = int(time.time()) + 3600
    r.set("a", "1", exat=at)
    assert r.expiretime("a") == at
    r.set("b", "1", pxat=at * 1000)
    assert r.pexpiretime("b") == at * 1000
    with pytest.raises(redis.ResponseError, match="at least 60 seconds in the future"):
        r.set("c", "1", exat=int(time.time()) + 5)


def test_setnx_setex_psetex_getset_getdel_getex(r):
    assert r.setnx("n", "1") is True
    assert r.setnx("n", "2") is False
    assert r.execute_command("SETEX", "e", 100, "v") is True
    assert 98 <= r.ttl("e") <= 100
    assert r.psetex("p", 100_000, "v") is True
    assert 98_000 <= r.pttl("p") <= 100_000
    assert r.getset("n", "3") == b"1"
    assert r.getdel("n") == b"3"
    assert r.get("n") is None
    assert r.getdel("n") is None
    r.set("g", "v")
    assert r.getex("g", ex=200) == b"v"
    assert 198 <= r.ttl("g") <= 200
    assert r.getex("g", persist=True) == b"v"
    assert r.ttl("g") == -1
    with pytest.raises(redis.ResponseError, match="at least 60"):
        r.execute_command("SETEX", "e", 5, "v")


def test_mget_mset_msetnx(r):
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "c") == [b"1", b"2", None]
    assert r.msetnx({"c": "3", "a": "x"}) is False
    assert r.get("c") is None
    assert r.msetnx({"c": "3", "d": "4"}) is True
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
        r.execute_command("MSET", "a", "1", "b")


def test_del_unlink_exists_type(r):
    r.mset({"a": "1", "b": "2", "c": "3"})
    assert r.exists("a", "a", "zz") == 2
    assert r.delete("a", "b", "zz", "a") == 2
    assert r.unlink("c") == 1
    assert r.exists("a", "b", "c") == 0
    r.set("s", "v")
    assert r.type("s") == b"string"
    assert r.type("nope") == b"none"


def test_counters_and_append_keep_ttl_and_metadata(r):
    assert r.incr("n") == 1
    assert r.incrby("n", 10) == 11
    assert r.decr("n") == 10
    assert r.decrby("n", 5) == 5
    r.set("s", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
        r.incr("s")
    r.set("big", str(2 ** 63 - 1))
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incr("big")
    r.execute_command("KV.PUT", "m", "5", "METADATA", '{"tag":1}', "EXPIRATION_TTL", "600")
    assert r.incr("m") == 6
    assert r.append("m", "0") == 2
    assert r.get("m") == b"60"
    assert r.execute_command("KV.METADATA", "m") == b'{"tag":1}'
    assert 590 <= r.ttl("m") <= 600
    assert r.strlen("m") == 2
    assert r.strlen("none") == 0


def test_expire_family_and_persist(r):
    r.set("k", "v")
    assert r.ttl("k") == -1
    assert r.ttl("missing") == -2
    assert r.expire("k", 100) is True
    assert 98 <= r.ttl("k") <= 100
    assert r.expire("k", 200, nx=True) is False
    assert r.expire("k", 200, gt=True) is True
    assert r.expire("k", 150, lt=True) is True
    assert 148 <= r.ttl("k") <= 150
    assert r.pexpire("k", 120_000) is True
    assert r.expireat("k", int(time.time()) + 500) is True
    assert r.pexpireat("k", (int(time.time()) + 700) * 1000) is True
    assert 690 <= r.ttl("k") <= 700
    assert r.persist("k") is True
    assert r.persist("k") is False
    assert r.ttl("k") == -1
    with pytest.raises(redis.ResponseError, match="at least 60"):
        r.expire("k", 30)
    assert r.expire("k", -1) is True  # Redis: a non-positive TTL deletes the key
    assert r.exists("k") == 0
    assert r.expire("missing", 100) is False


def test_key_and_value_limits_are_kv_limits(r):
    with pytest.raises(redis.ResponseError) as err:
        r.set("x" * 513, "v")
    assert str(err.value) == ("KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length "
                              "limit of 512.")
    with pytest.raises(redis.ResponseError, match="Key name cannot be empty"):
        r.set("", "v")
    with pytest.raises(redis.ResponseError, match='"." is not allowed as a key name'):
        r.get(".")
    big = b"x" * (25 * 1024 * 1024 + 1)
    with pytest.raises(redis.ResponseError) as err:
        r.set("big", big)
    assert str(err.value) == ("KV PUT failed: 413 Value length of 26214401 exceeds limit of "
                              "26214400.")
    assert r.ping()


def test_keys_and_scan_in_byte_order(r):
    names = ["b", "a", "é", "Z", "a:1", "a:2", "😀", "~"]
    for n in names:
        r.set(n, "v")
    expected = sorted(n.encode() for n in names)
    assert r.keys("*") == expected
    assert r.keys("a*") == [b"a", b"a:1", b"a:2"]
    assert r.keys("a:?") == [b"a:1", b"a:2"]
    assert r.keys("[ab]") == [b"a", b"b"]
    seen = list(r.scan_iter(count=3))
    assert seen == expected
    assert list(r.scan_iter(match="a:*", count=1)) == [b"a:1", b"a:2"]
    assert list(r.scan_iter(_type="hash")) == []
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.scan(cursor=123456789)


def test_scan_returns_every_stable_key_once_under_concurrent_writes(r):
    for i in range(2000):
        r.set(f"k{i:05d}", "v")
    seen = []
    cursor = 0
    first = True
    extra = 0
    while first or cursor != 0:
        first = False
        cursor, keys = r.scan(cursor=cursor, count=97)
        seen.extend(keys)
        r.set(f"new{extra}", "v")  # keys added during the iteration may or may not show up
        r.delete(f"k{(extra * 7) % 2000:05d}x")
        extra += 1
    stable = [k for k in seen if k.startswith(b"k")]
    assert len(stable) == len(set(stable)) == 2000


def test_dbsize_flushdb_flushall(r):
    r.mset({f"k{i}": "v" for i in range(50)})
    assert r.dbsize() == 50
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.set("a", "1")
    r.execute_command("KV.NAMESPACE", "CREATE", "other")
    r.execute_command("SELECT", "other")
    r.set("b", "2")
    assert r.flushall() is True
    assert r.dbsize() == 0
    r.execute_command("SELECT", "0")
    assert r.dbsize() == 0


def test_select_by_index_title_and_id(server):
    c = server.client()
    created = c.execute_command("KV.NAMESPACE", "CREATE", "sessions")
    ns_id = created[created.index(b"id") + 1].decode() if isinstance(created, list) else \
        created[b"id"].decode()
    c.set("shared-name", "default-ns")
    other = server.client(db=1)
    assert other.get("shared-name") is None
    other.set("shared-name", "sessions-ns")
    assert c.get("shared-name") == b"default-ns"
    assert c.execute_command("SELECT", ns_id) is True
    assert c.get("shared-name") == b"sessions-ns"
    assert c.execute_command("SELECT", "default") is True
    assert c.get("shared-name") == b"default-ns"
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        c.execute_command("SELECT", "42")


def test_flushdb_keeps_each_select_index_on_its_namespace(server):
    """redis-py's db=N sends SELECT N on every connection: after a FLUSHDB the same index must
    still reach the same namespace, or writes land in another one."""
    c = server.client()
    c.execute_command("KV.NAMESPACE", "CREATE", "alpha")
    c.execute_command("KV.NAMESPACE", "CREATE", "beta")
    server.client(db=2).set("in-beta", "1")
    assert server.client(db=1).flushdb() is True
    server.client(db=1).set("in-alpha", "1")
    assert c.execute_command("SELECT", "alpha") is True
    assert c.keys("*") == [b"in-alpha"]
    assert c.execute_command("SELECT", "beta") is True
    assert sorted(c.keys("*")) == [b"in-beta"]


def test_expired_keys_vanish_from_get_exists_and_scan(server_factory):
    server = server_factory("--min-ttl", "1")
    c = server.client()
    c.set("gone", "v", ex=1)
    c.set("stays", "v")
    time.sleep(1.3)
    assert c.get("gone") is None
    assert c.keys("*") == [b"stays"]
    assert c.dbsize() == 1
