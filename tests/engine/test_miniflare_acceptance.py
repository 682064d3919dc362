"""Miniflare's KV binding acceptance tests (packages/miniflare/test/plugins/kv/index.spec.ts),
case for case, against the engine's Python binding.

Setup as in Miniflare: a fake clock at TIME_NOW = 1000 s (TIME_FUTURE = 1500 s) and test-mode
limits (values and the bulk-get total at most 1024 bytes).  The JS API maps onto ours as
``get(key, type=...)``, ``get_with_metadata`` → ``ValueWithMetadata``, ``get([k1, k2])`` → dict,
``list(prefix=, limit=, cursor=)`` → dict without ``cursor`` once complete.  Case #49
(in-memory persistence across option reloads) has no equivalent in an on-disk engine.
"""

from __future__ import annotations

import io

import pytest

from engine import KVError
from kvtest_helpers import TEST_LIMITS, TIME_NOW_S

TIME_FUTURE_S = 1500


@pytest.fixture
def store(open_store):
    return open_store(limits=TEST_LIMITS)


@pytest.fixture
def kv(store):
    return store.namespace("default")


def _error(fn, *args, **kwargs) -> Exception:
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return info.value


def _assert_validates_key(call, op: str) -> None:
    """Cases #1, #18, #29: the client-side TypeErrors, then the 414 from the service."""
    for key, text in (("", "Key name cannot be empty."),
                      (".", '"." is not allowed as a key name.'),
                      ("..", '".." is not allowed as a key name.')):
        exc = _error(call, key)
        assert isinstance(exc, TypeError), (key, exc)
        assert str(exc) == text
    exc = _error(call, "x" * 513)
    assert isinstance(exc, KVError) and not isinstance(exc, TypeError)
    assert exc.status == 414
    assert str(exc) == (f"KV {op} failed: 414 UTF-8 encoded length of 513 exceeds key length "
                        f"limit of 512.")


# --------------------------------------------------------------------------- get


def test_01_get_validates_key(kv):
    _assert_validates_key(kv.get, "GET")


def test_02_get_returns_value(kv):
    kv.put("key", "value")
    assert kv.get("key") == "value"


def test_03_get_returns_array_buffer_values(kv):
    data = bytes([0, 1, 2, 127, 128, 254, 255])
    kv.put("key", data)
    got = kv.get("key", "arrayBuffer")
    assert isinstance(got, bytes) and got == data
    assert kv.get("key", type="bytes") == data


def test_04_get_returns_stream_values(kv):
    data = bytes([255, 0, 10, 20, 30, 200])
    kv.put("key", io.BytesIO(data))
    stream = kv.get("key", "stream")
    assert hasattr(stream, "read")
    assert stream.read() == data


def test_05_bulk_get_returns_values_and_none_for_missing(kv):
    kv.put("key1", "value1")
    assert kv.get(["key1", "key2"]) == {"key1": "value1", "key2": None}


def test_06_bulk_get_rejects_more_than_100_keys(kv):
    exc = _error(kv.get, [f"key{i}" for i in range(101)])
    assert str(exc) == "KV GET_BULK failed: 400 You can request a maximum of 100 keys"


def test_06b_bulk_get_accepts_exactly_100_keys(kv):
    assert kv.get([f"key{i}" for i in range(100)]) == {f"key{i}": None for i in range(100)}


def test_07_bulk_get_requires_at_least_one_key(kv):
    exc = _error(kv.get, [])
    assert str(exc) == "KV GET_BULK failed: 400 You must request a minimum of 1 key"


def test_08_bulk_get_rejects_invalid_type(kv):
    exc = _error(kv.get, ["key"], type="invalid")
    assert str(exc) == 'KV GET_BULK failed: 400 "invalid" is not a valid type. Use "json" or "text"'
    for type_ in ("arrayBuffer", "stream"):
        exc = _error(kv.get, ["key"], type=type_)
        assert str(exc) == (f'KV GET_BULK failed: 400 "{type_}" is not a valid type. '
                            f'Use "json" or "text"')


def test_09_bulk_get_json_type_parses_and_rejects_non_json(kv):
    kv.put("key1", '{"example": "ex"}')
    kv.put("key2", "example")
    assert kv.get(["key1"]) == {"key1": '{"example": "ex"}'}
    assert kv.get(["key1"], "json") == {"key1": {"example": "ex"}}
    exc = _error(kv.get, ["key1", "key2"], "json")
    assert str(exc) == ("KV GET_BULK failed: 400 At least one of the requested keys corresponds "
                        "to a non-json value")


def test_10_bulk_get_with_metadata(kv):
    kv.put("key1", "value1", expiration=TIME_FUTURE_S, metadata={"testing": True})
    kv.put("key2", "value2")
    result = kv.get_with_metadata(["key1", "key2"])
    assert set(result) == {"key1", "key2"}
    assert (result["key1"].value, result["key1"].metadata) == ("value1", {"testing": True})
    assert (result["key2"].value, result["key2"].metadata) == ("value2", None)


def test_11_bulk_get_with_integer_metadata(kv):
    kv.put("key1", "value1", metadata=123)
    result = kv.get_with_metadata(["key1"])
    assert (result["key1"].value, result["key1"].metadata) == ("value1", 123)


def test_12_bulk_get_with_string_metadata(kv):
    kv.put("key1", "value1", metadata="example")
    result = kv.get_with_metadata(["key1"])
    assert (result["key1"].value, result["key1"].metadata) == ("value1", "example")


def test_13_bulk_get_with_metadata_of_missing_key_is_none(kv):
    assert kv.get_with_metadata(["key1"]) == {"key1": None}


def test_14_bulk_get_over_total_size_limit(kv):
    kv.put("key1", "x" * 1024)
    kv.put("key2", "x" * 1024)
    exc = _error(kv.get_with_metadata, ["key1", "key2"])
    assert str(exc) == "KV GET_BULK failed: 413 Total size of request exceeds the limit of 0.0009765625MB"
    exc = _error(kv.get, ["key1", "key2"])
    assert exc.status == 413


def test_15_get_returns_none_for_missing_key(kv):
    assert kv.get("key") is None
    assert kv.get_with_metadata("key") == (None, None, None, None)


def test_16_get_returns_none_for_expired_key(kv, clock):
    kv.put("key", "value", expiration_ttl=60)
    assert kv.get("key") == "value"
    clock.advance(60_000)
    assert kv.get("key") is None


def test_17_get_validates_but_ignores_cache_ttl(kv):
    kv.put("key", "value")
    exc = _error(kv.get, "key", cache_ttl="not a number")
    assert str(exc) == "KV GET failed: 400 Invalid cache_ttl of 0. Cache TTL must be at least 30."
    exc = _error(kv.get, "key", cache_ttl=10)
    assert str(exc) == "KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30."
    assert kv.get("key", cache_ttl=30) == "value"
    assert kv.get("key", cache_ttl=60) == "value"


# --------------------------------------------------------------------------- put


def test_18_put_validates_key(kv):
    _assert_validates_key(lambda key: kv.put(key, "value"), "PUT")


def test_19_put_stores_value_expiration_and_metadata(kv):
    kv.put("key", "value", expiration=TIME_FUTURE_S, metadata={"testing": True})
    got = kv.get_with_metadata("key")
    assert got.value == "value"
    assert got.metadata == {"testing": True}
    assert got.cache_status is None
    assert got.expiration == TIME_FUTURE_S
    assert kv.list()["keys"][0]["expiration"] == TIME_FUTURE_S


def test_20_put_empty_value_reads_back_empty_not_none(kv):
    kv.put("key", "")
    assert kv.get("key") == ""


def test_21_bulk_get_keeps_metadata_for_empty_value(kv):
    kv.put("key", "", metadata={"testing": True})
    result = kv.get_with_metadata(["key"])
    assert (result["key"].value, result["key"].metadata) == ("", {"testing": True})


def test_22_bulk_get_keeps_metadata_for_falsy_json_values(kv):
    kv.put("key1", "0", metadata={"testing": True})
    kv.put("key2", "false", metadata={"testing": True})
    result = kv.get_with_metadata(["key1", "key2"], "json")
    assert (result["key1"].value, result["key1"].metadata) == (0, {"testing": True})
    assert (result["key2"].value, result["key2"].metadata) == (False, {"testing": True})
    assert result["key2"].value is False


def test_23_put_overrides_existing_key(kv):
    kv.put("key", "value1")
    kv.put("key", "value2", expiration=TIME_FUTURE_S, metadata={"testing": True})
    got = kv.get_with_metadata("key")
    assert (got.value, got.metadata, got.expiration) == ("value2", {"testing": True}, TIME_FUTURE_S)


def test_24_put_keys_are_case_sensitive(kv):
    kv.put("key", "lower")
    kv.put("KEY", "upper")
    assert kv.get("key") == "lower"
    assert kv.get("KEY") == "upper"


def test_25_put_validates_expiration_ttl(kv):
    exc = _error(kv.put, "key", "value", expiration_ttl="nan")
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer "
                        "greater than 0.")
    exc = _error(kv.put, "key", "value", expiration_ttl=0)
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer "
                        "greater than 0.")
    exc = _error(kv.put, "key", "value", expiration_ttl=30)
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be "
                        "at least 60.")
    assert kv.get("key") is None


def test_26_put_validates_expiration(kv):
    exc = _error(kv.put, "key", "value", expiration="nan")
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration of 0. Please specify integer "
                        "greater than the current number of seconds since the UNIX epoch.")
    exc = _error(kv.put, "key", "value", expiration=TIME_NOW_S)
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration of 1000. Please specify integer "
                        "greater than the current number of seconds since the UNIX epoch.")
    exc = _error(kv.put, "key", "value", expiration=TIME_NOW_S + 30)
    assert str(exc) == ("KV PUT failed: 400 Invalid expiration of 1030. Expiration times must be "
                        "at least 60 seconds in the future.")
    assert kv.get("key") is None


def _stream(n):
    yield b"x" * (n // 2)
    yield b"x" * (n - n // 2)


def test_27_put_validates_value_size(kv):
    exc = _error(kv.put, "key", b"x" * 1025)
    assert str(exc) == "KV PUT failed: 413 Value length of 1025 exceeds limit of 1024."
    assert kv.get("key") is None
    kv.put("key", _stream(1024))
    assert kv.get("key", "bytes") == b"x" * 1024


def test_27_put_validates_streamed_value_size_against_store_limit(kv):
    exc = _error(kv.put, "key", _stream(1025))
    assert str(exc) == "KV PUT failed: 413 Value length of 1025 exceeds limit of 1024."
    exc = _error(kv.put, "key", io.BytesIO(b"x" * 1025))
    assert str(exc) == "KV PUT failed: 413 Value length of 1025 exceeds limit of 1024."
    assert kv.get("key") is None


def test_28_put_validates_metadata_size(kv):
    metadata = {"key": "x" * (1024 - len('{"key":""}') + 1)}
    exc = _error(kv.put, "key", "value", metadata=metadata)
    assert str(exc) == "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024."
    metadata = {"key": "x" * (1024 - len('{"key":""}'))}
    kv.put("key", "value", metadata=metadata)
    assert kv.get_with_metadata("key").metadata == metadata


# --------------------------------------------------------------------------- delete


def test_29_delete_validates_key(kv):
    _assert_validates_key(kv.delete, "DELETE")


def test_30_delete_removes_existing_key(kv):
    kv.put("key", "value")
    assert kv.get("key") == "value"
    kv.delete("key")
    assert kv.get("key") is None


def test_31_delete_of_missing_key_does_nothing(kv, store):
    before = store.last_seq
    kv.delete("key")
    assert kv.get("key") is None
    assert store.last_seq == before


# --------------------------------------------------------------------------- list


def _names(result) -> list[str]:
    return [k["name"] for k in result["keys"]]


def test_32_list_returns_keys_in_sorted_order(kv):
    for key in ("key3", "key1", "key2"):
        kv.put(key, "value")
    result = kv.list()
    assert result == {"keys": [{"name": "key1"}, {"name": "key2"}, {"name": "key3"}],
                      "list_complete": True}
    assert "cursor" not in result


def test_33_list_filters_by_prefix(kv):
    for key in ("section1key1", "section1key2", "section2key1"):
        kv.put(key, "value")
    assert kv.list(prefix="section1") == {
        "keys": [{"name": "section1key1"}, {"name": "section1key2"}], "list_complete": True}


def test_34_list_prefix_is_case_sensitive(kv):
    for key in ("key1", "KEY1", "key2", "KEY2"):
        kv.put(key, "value")
    assert _names(kv.list(prefix="KEY")) == ["KEY1", "KEY2"]


def test_35_list_prefix_has_no_wildcards(kv):
    for key in ("key1", "key\\_%1", "key\\_%2", "key\\_%3", "keyX_%4", "key\\a%5"):
        kv.put(key, "value")
    assert _names(kv.list(prefix="key\\_%")) == ["key\\_%1", "key\\_%2", "key\\_%3"]


def test_36_list_includes_expiration(kv):
    kv.put("key1", "value1", expiration=TIME_FUTURE_S)
    kv.put("key2", "value2", expiration=TIME_FUTURE_S + 100)
    kv.put("key3", "value3", expiration_ttl=3600)
    assert kv.list()["keys"] == [
        {"name": "key1", "expiration": TIME_FUTURE_S},
        {"name": "key2", "expiration": TIME_FUTURE_S + 100},
        {"name": "key3", "expiration": TIME_NOW_S + 3600},
    ]


def test_37_list_includes_metadata(kv):
    kv.put("key1", "value1", metadata={"testing": 1})
    kv.put("key2", "value2", metadata={"testing": 2})
    assert kv.list()["keys"] == [{"name": "key1", "metadata": {"testing": 1}},
                                 {"name": "key2", "metadata": {"testing": 2}}]


def test_38_list_includes_expiration_and_metadata(kv):
    kv.put("key1", "value1", expiration=TIME_FUTURE_S, metadata={"testing": 1})
    kv.put("key2", "value2", expiration=TIME_FUTURE_S + 100, metadata={"testing": 2})
    assert kv.list()["keys"] == [
        {"name": "key1", "expiration": TIME_FUTURE_S, "metadata": {"testing": 1}},
        {"name": "key2", "expiration": TIME_FUTURE_S + 100, "metadata": {"testing": 2}},
    ]


def test_39_list_of_empty_namespace_is_empty_and_complete(kv):
    assert kv.list() == {"keys": [], "list_complete": True}


def test_40_list_with_unmatched_prefix_is_empty(kv):
    kv.put("key1", "value")
    assert kv.list(prefix="none") == {"keys": [], "list_complete": True}


def test_41_list_paginates(kv):
    for key in ("key1", "key2", "key3"):
        kv.put(key, "value")
    page = kv.list(limit=2)
    assert _names(page) == ["key1", "key2"]
    assert page["list_complete"] is False
    assert isinstance(page["cursor"], str) and page["cursor"]
    page = kv.list(limit=2, cursor=page["cursor"])
    assert page == {"keys": [{"name": "key3"}], "list_complete": True}


def test_42_list_paginates_with_prefix(kv):
    for key in ("section1key1", "section1key2", "section1key3", "section2key1"):
        kv.put(key, "value")
    page = kv.list(prefix="section1", limit=2)
    assert _names(page) == ["section1key1", "section1key2"]
    assert page["list_complete"] is False and isinstance(page["cursor"], str)
    page = kv.list(prefix="section1", limit=2, cursor=page["cursor"])
    assert page == {"keys": [{"name": "section1key3"}], "list_complete": True}


def test_43_list_accepts_512_byte_prefix(kv):
    key = "x" * 512
    kv.put(key, "value")
    assert kv.list(prefix=key) == {"keys": [{"name": key}], "list_complete": True}
    exc = _error(kv.list, prefix="x" * 513)
    assert str(exc) == ("KV GET failed: 414 UTF-8 encoded length of 513 exceeds key length limit "
                        "of 512.")


def test_44_list_paginates_with_variable_limit(kv):
    for key in ("key1", "key2", "key3"):
        kv.put(key, "value")
    page = kv.list(limit=1)
    assert _names(page) == ["key1"] and page["list_complete"] is False
    page = kv.list(limit=2, cursor=page["cursor"])
    assert page == {"keys": [{"name": "key2"}, {"name": "key3"}], "list_complete": True}


def test_45_list_returns_keys_inserted_while_paginating(kv):
    for key in ("key1", "key3", "key5"):
        kv.put(key, "value")
    page = kv.list(limit=2)
    assert _names(page) == ["key1", "key3"] and page["list_complete"] is False
    kv.put("key2", "value")  # behind the cursor: skipped
    kv.put("key4", "value")  # ahead of the cursor: seen
    page = kv.list(limit=2, cursor=page["cursor"])
    assert page == {"keys": [{"name": "key4"}, {"name": "key5"}], "list_complete": True}


def test_46_list_ignores_expired_keys(kv, clock):
    for i in (1, 2, 3):
        kv.put(f"key{i}", "value", expiration=TIME_NOW_S + i * 60)
    clock.advance(130_000)
    assert kv.list() == {"keys": [{"name": "key3", "expiration": TIME_NOW_S + 180}],
                         "list_complete": True}


def test_47_list_sorts_lexicographically(kv):
    kv.put(", ", "value")
    kv.put("!", "value")
    assert _names(kv.list()) == ["!", ", "]


def test_48_list_validates_limit(kv):
    exc = _error(kv.list, limit=1001)
    assert str(exc) == ("KV GET failed: 400 Invalid key_count_limit of 1001. Please specify an "
                        "integer less than 1000.")
    assert kv.list(limit=1000) == {"keys": [], "list_complete": True}


# --------------------------------------------------------------------------- persistence


def test_50_data_persists_across_store_restarts(tmp_path, open_store):
    store = open_store(limits=TEST_LIMITS)
    kv = store.namespace()
    kv.put("key", "value", expiration=TIME_FUTURE_S, metadata={"testing": True})
    store.close()
    assert (tmp_path / "data").is_dir()
    assert any(p.suffix == ".seg" for p in (tmp_path / "data").iterdir())
    store = open_store(limits=TEST_LIMITS)
    got = store.namespace().get_with_metadata("key")
    assert (got.value, got.metadata, got.expiration) == ("value", {"testing": True}, TIME_FUTURE_S)


def test_50b_separate_directories_are_separate_stores(tmp_path, open_store):
    a = open_store(path=tmp_path / "a")
    b = open_store(path=tmp_path / "b")
    a.namespace().put("key", "in a")
    assert b.namespace().get("key") is None


# --------------------------------------------------------------------------- related rules


def test_get_with_unknown_type_is_type_error_only_for_found_keys(kv):
    assert kv.get("missing", type="invalid") is None
    kv.put("key", "value")
    exc = _error(kv.get, "key", type="invalid")
    assert isinstance(exc, TypeError)
    assert str(exc) == ('Unknown response type. Possible types are "text", "arrayBuffer", '
                        '"json", and "stream".')


def test_bulk_get_validates_keys_with_server_wording(kv):
    exc = _error(kv.get, [""])
    assert str(exc) == "KV GET_BULK failed: 400 Key names must not be empty"
    exc = _error(kv.get, ["."])
    assert str(exc) == 'KV GET_BULK failed: 400 Illegal key name ".". Please use a different name.'
    exc = _error(kv.get, ["x" * 513])
    assert str(exc) == ("KV GET_BULK failed: 414 UTF-8 encoded length of 513 exceeds key length "
                        "limit of 512.")


def test_bulk_get_size_limit_counts_utf16_units_not_bytes(kv):
    # 256 emoji: 1024 UTF-8 bytes, 512 UTF-16 units.  Two of them are 1024 units: at the limit.
    kv.put("a", "\U0001F600" * 256)
    kv.put("b", "\U0001F600" * 256)
    result = kv.get(["a", "b"])
    assert result["a"] == "\U0001F600" * 256
    # 2-byte characters count once: 512 "é" are 1024 bytes but 512 units.
    kv.put("c", "é" * 512)
    kv.put("d", "é" * 512)
    assert kv.get(["c", "d"]) == {"c": "é" * 512, "d": "é" * 512}


def test_bulk_get_size_limit_counts_astral_characters_twice(kv):
    # 3 x 200 emoji = 600 code points but 1200 UTF-16 units: over the 1024 limit.
    for key in ("a", "b", "c"):
        kv.put(key, "\U0001F600" * 200)
    assert kv.get(["a", "b"])["a"] == "\U0001F600" * 200
    exc = _error(kv.get, ["a", "b", "c"])
    assert str(exc) == "KV GET_BULK failed: 413 Total size of request exceeds the limit of 0.0009765625MB"


def test_bulk_get_json_null_value_comes_back_bare_none_with_metadata(kv):
    kv.put("key", "null", metadata={"m": 1})
    assert kv.get_with_metadata(["key"], "json") == {"key": None}


def test_put_without_expiration_clears_old_expiration_and_metadata(kv):
    kv.put("key", "v1", expiration=TIME_FUTURE_S, metadata={"m": 1})
    kv.put("key", "v2")
    got = kv.get_with_metadata("key")
    assert got == ("v2", None, None, None)
    assert kv.list()["keys"] == [{"name": "key"}]


def test_put_rejects_unsupported_value_types_with_client_side_text(kv):
    exc = _error(kv.put, "key", 123)
    assert isinstance(exc, TypeError)
    assert str(exc) == ("KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and "
                        "ReadableStreams as values.")
