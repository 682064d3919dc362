"""Fixes held against a real redis-server where Redis has an answer: KEYS/SCAN MATCH globs in
their corner cases, CLIENT KILL's filter errors, client bytes echoed raw in error texts; and
what a connection sees once its selected namespace is deleted by another client."""

from __future__ import annotations


import pytest
import redis

from tests.server.conftest import module_server, raw_replies as raw, resp_command as cmd


@pytest.fixture(scope="module")
def edgekv(tmp_path_factory):
    yield from module_server(tmp_path_factory, "fixes", "--min-ttl", "60", fsync="everysec")


@pytest.fixture
def r(edgekv):
    client = edgekv.client()
    yield client
    client.close()


def port_of(client: redis.Redis) -> int:
    return client.connection_pool.connection_kwargs["port"]


def same_replies(edgekv, reference, payload: bytes, expected: bytes) -> None:
    """edgekv's raw replies are ``expected``, and so are redis-server's when it is there."""
    assert raw(edgekv.port, payload) == expected
    if reference is not None:
        assert raw(port_of(reference), payload) == expected


# ---------------------------------------------------------------------------- KEYS / SCAN MATCH

KEYS = [b"a", b"b", b"c", b"-", b"]", b"[", b"\\", b"^", b"!", b"`", b"_", b"A", b"z", b"ab",
        b"a]", b"a-", b"a\\", b"\xff", b"\x80", b"\x7f", b"*", b"?", b"hello", b"hallo",
        b"hxllo", b"a[b", b"]a", b"x\\y", b"abc", b"a]b", b"-]", b"^a", b"\\]"]

PATTERNS = [
    b"[a-]", b"[a-]b", b"[a-]]", b"[^a-]", b"[a-]*", b"[--]", b"[-]", b"[---]", b"[-a]",
    b"[]", b"[]a]", b"[]]", b"[]*", b"a[]b", b"[^]", b"[^]*", b"[^]]", b"[^", b"[", b"[[]",
    b"[\\]", b"[\\]]", b"[\\\\]", b"[\\", b"[^\\", b"[a\\-z]", b"[\\a-c]", b"[a-c\\]",
    b"a\\", b"\\", b"\\a", b"\\?", b"x\\\\y", b"*\\*",
    b"[z-a]", b"[a-a]", b"[a-c", b"[a-", b"[!a]",
    b"[a-\xff]", b"[\x80-a]", b"[^\xff]",
    b"h[ae]llo", b"h[^e]llo", b"h*o", b"[*]", b"[?]", b"**", b"*]", b"a*]", b"?", b"??",
    b"*?*", b"*", b"^*",
]

#: what Redis answers for the patterns edgekv used to get wrong (when no redis-server runs)
EXPECTED = {
    b"[a-]": [b"]", b"^", b"_", b"`", b"a"],  # the range from ] to a, then unterminated
    b"[a-]b": [b"]", b"^", b"_", b"`", b"a", b"b"],
    b"[^a-]": [b"!", b"*", b"-", b"?", b"A", b"[", b"\\", b"b", b"c", b"z", b"\x7f", b"\x80",
               b"\xff"],
    b"[--]": [b"-", b"?", b"A", b"[", b"\\", b"]"],
    # range bounds compare as C's signed char: \xff is -1, \x80 is -128
    b"[a-\xff]": [b"!", b"*", b"-", b"?", b"A", b"[", b"\\", b"]", b"^", b"_", b"`", b"a",
                  b"\xff"],
    b"[\x80-a]": [b"!", b"*", b"-", b"?", b"A", b"[", b"\\", b"]", b"^", b"_", b"`", b"a",
                  b"\x80", b"\xff"],
    b"[]": [],
    b"[^]": [b"!", b"*", b"-", b"?", b"A", b"[", b"\\", b"]", b"^", b"_", b"`", b"a", b"b",
             b"c", b"z", b"\x7f", b"\x80", b"\xff"],
    b"[\\]": [b"]"],
    b"a\\": [b"a\\"],
}


@pytest.fixture(scope="module")
def loaded(edgekv, reference):
    for client in (edgekv.client(), reference):
        if client is not None:
            client.flushall()
            client.mset({key: b"1" for key in KEYS})
    return reference


@pytest.mark.parametrize("pattern", PATTERNS, ids=[repr(p)[2:-1] for p in PATTERNS])
def test_keys_and_scan_match_globs_as_redis(edgekv, loaded, r, pattern):
    got = sorted(r.keys(pattern))
    if loaded is not None:
        assert got == sorted(loaded.keys(pattern))
    if pattern in EXPECTED:
        assert got == sorted(EXPECTED[pattern])
    cursor, scanned = 0, []
    while True:
        cursor, batch = r.scan(cursor, match=pattern, count=7)
        scanned += batch
        if cursor == 0:
            break
    assert sorted(scanned) == got


# ---------------------------------------------------------------------------- CLIENT KILL


def test_client_kill_filter_errors_match_redis(edgekv, reference):
    k = (b"CLIENT", b"KILL")
    payload = (cmd(*k, b"USER", b"nobody") + cmd(*k, b"USER", b"Default")
               + cmd(*k, b"USER", b"nobody", b"ID") + cmd(*k, b"ID", b"999999", b"USER")
               + cmd(*k, b"ID", b"0") + cmd(*k, b"ID", b"-3") + cmd(*k, b"ID", b"abc")
               + cmd(*k, b"TYPE", b"nosuch") + cmd(*k, b"USER", b"default", b"ID", b"999999")
               + cmd(*k, b"TYPE", b"normal", b"ID", b"999999")
               + cmd(*k, b"SKIPME", b"maybe") + cmd(*k, b"USER", b"\xff\xfe"))
    expected = (b"-ERR No such user 'nobody'\r\n-ERR No such user 'Default'\r\n"
                b"-ERR No such user 'nobody'\r\n-ERR syntax error\r\n"
                + b"-ERR client-id should be greater than 0\r\n" * 3
                + b"-ERR Unknown client type 'nosuch'\r\n:0\r\n:0\r\n-ERR syntax error\r\n"
                b"-ERR No such user '\xff\xfe'\r\n")
    same_replies(edgekv, reference, payload, expected)


# ---------------------------------------------------------------------------- raw bytes in errors


def test_error_texts_echo_the_clients_bytes(edgekv, reference):
    payload = (cmd(b"NOSUCH\xff", b"a\xfe") + cmd(b"CLIENT", b"NOPE\xff")
               + cmd(b"CONFIG", b"SET", b"x\xff", b"y") + cmd(b"SET", b"k", b"v")
               + cmd(b"EXPIRE", b"k", b"100", b"\xff") + cmd(b"HELLO", b"3", b"\xc3(")
               + cmd(b"MULTI") + cmd(b"\xff") + cmd(b"EXEC"))
    expected = (b"-ERR unknown command 'NOSUCH\xff', with args beginning with: 'a\xfe' \r\n"
                b"-ERR unknown subcommand 'NOPE\xff'. Try CLIENT HELP.\r\n"
                b"-ERR Unknown option or number of arguments for CONFIG SET - 'x\xff'\r\n"
                b"+OK\r\n-ERR Unsupported option \xff\r\n"
                b"-ERR Syntax error in HELLO option '\xc3('\r\n"
                b"+OK\r\n-ERR unknown command '\xff', with args beginning with: \r\n"
                b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    same_replies(edgekv, reference, payload, expected)


# ---------------------------------------------------------------------------- deleted namespace


def _create(client: redis.Redis, title: str) -> str:
    info = client.execute_command("KV.NAMESPACE", "CREATE", title)
    if not isinstance(info, dict):
        info = dict(zip(info[::2], info[1::2]))
    return info[b"id"].decode()


def test_a_connection_whose_namespace_was_deleted_is_told_which_and_recovers(edgekv):
    admin = edgekv.client()
    client = edgekv.client(single_connection_client=True)
    ns_id = _create(admin, "soon-gone")
    client.execute_command("SELECT", "soon-gone")
    client.set("k", "v")
    admin.execute_command("KV.NAMESPACE", "DELETE", ns_id)

    expected = (f"the selected namespace 'soon-gone' (id {ns_id}) was deleted; SELECT another "
                f"namespace (SELECT 0 is the default one)")
    for args in (("GET", "k"), ("SET", "k", "v"), ("DBSIZE",), ("KEYS", "*"),
                 ("SCAN", "0"), ("KV.PUT", "k", "v"), ("WATCH", "k"), ("GET", "k")):
        with pytest.raises(redis.ResponseError) as exc:
            client.execute_command(*args)
        assert str(exc.value) == expected, args
    assert client.ping() is True  # the connection itself is fine
    # other namespace errors keep their own text
    with pytest.raises(redis.ResponseError, match='namespace not found: "nope"'):
        client.execute_command("KV.NAMESPACE", "GET", "nope")

    assert client.execute_command("SELECT", "0") in (b"OK", "OK", True)
    assert client.get("only-in-default") is None
    client.set("only-in-default", "default's")
    assert admin.get("only-in-default") == b"default's"
    # a new namespace with the same title is a different one: nothing of the old one is back
    _create(admin, "soon-gone")
    client.execute_command("SELECT", "soon-gone")
    assert client.get("k") is None
    client.close()
    admin.close()


def test_deleting_the_own_namespace_moves_back_to_the_default(edgekv):
    client = edgekv.client(single_connection_client=True)
    ns_id = _create(client, "own-gone")
    client.execute_command("SELECT", ns_id)
    client.execute_command("KV.NAMESPACE", "DELETE", ns_id)
    client.set("own", "1")  # no error: this connection chose the deletion
    assert edgekv.client().get("own") == b"1"
    client.close()
