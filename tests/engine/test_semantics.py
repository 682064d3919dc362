"""Unit tests for engine/semantics.py: Workers KV's limits, rules and exact messages."""

from __future__ import annotations

import base64

import pytest

from engine import semantics
from engine.errors import (KeyNameError, KeyTooLongError, KVValidationError, PayloadTooLargeError,
                           ResponseTypeError)
from engine.semantics import DEFAULT_LIMITS, MIB, Limits

NOW_MS = 1_000_000  # 1000 s
TEST = Limits(max_value_bytes=1024, max_bulk_get_bytes=1024)


def _raises(exc_type, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- limits


def test_default_limits_are_workers_kv_documented_limits():
    assert DEFAULT_LIMITS == Limits()
    assert DEFAULT_LIMITS.max_key_bytes == 512
    assert DEFAULT_LIMITS.max_value_bytes == 25 * 1024 * 1024 == 26214400
    assert DEFAULT_LIMITS.max_metadata_bytes == 1024
    assert DEFAULT_LIMITS.min_ttl_seconds == 60
    assert DEFAULT_LIMITS.min_cache_ttl_seconds == 30
    assert DEFAULT_LIMITS.max_list_keys == 1000
    assert DEFAULT_LIMITS.max_bulk_get_keys == 100
    assert DEFAULT_LIMITS.max_bulk_get_bytes == 25 * MIB
    assert DEFAULT_LIMITS.max_bulk_write_items == 10_000
    assert DEFAULT_LIMITS.max_namespaces == 1000
    assert DEFAULT_LIMITS.max_title_chars == 512


def test_limits_are_immutable():
    with pytest.raises(Exception):
        DEFAULT_LIMITS.max_value_bytes = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- number parsing


@pytest.mark.parametrize("raw, expected", [
    ("12abc", 12), ("  42", 42), ("-5", -5), ("+7", 7), ("abc", None), ("", None),
    ("1e3", 1), ("3.9", 3), (3.9, 3), (-3.9, -3), (float("nan"), None), (float("inf"), None),
    (True, None), (b"77", 77), (120, 120),
])
def test_js_parse_int_takes_leading_digits_like_javascript(raw, expected):
    assert semantics.js_parse_int(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("nan", 0), ("not a number", 0), ("12abc", 0), ("3.9", 3), (3.9, 3), (-3.9, -3),
    (float("nan"), 0), (float("inf"), 0), (True, 1), (None, 0), ("120", 120), (b"90", 90),
])
def test_webidl_int_turns_junk_into_zero_like_workerd(raw, expected):
    assert semantics.webidl_int(raw) == expected


# --------------------------------------------------------------------------- keys


def test_key_validation_rejects_empty_dot_and_dotdot_client_side():
    for key, text, server in (
            (b"", "Key name cannot be empty.", "Key names must not be empty"),
            (b".", '"." is not allowed as a key name.',
             'Illegal key name ".". Please use a different name.'),
            (b"..", '".." is not allowed as a key name.',
             'Illegal key name "..". Please use a different name.')):
        exc = _raises(KeyNameError, semantics.validate_key, key)
        assert isinstance(exc, TypeError)
        assert exc.message == text and str(exc) == text
        assert exc.server_message == server
        assert exc.status == 400 and exc.code == 10023
        exc = _raises(KVValidationError, semantics.validate_key_server_side, key)
        assert not isinstance(exc, TypeError)
        assert exc.message == server and exc.status == 400


def test_key_dots_inside_longer_names_are_fine():
    for key in (b"...", b"a.", b".a", b"./", b" "):
        semantics.validate_key(key)


def test_key_length_is_counted_in_utf8_bytes_up_to_512():
    semantics.validate_key(b"x" * 512)
    semantics.validate_key(("é" * 256).encode())  # 512 bytes, 256 characters
    exc = _raises(KeyTooLongError, semantics.validate_key, ("é" * 256 + "a").encode())
    assert exc.status == 414 and exc.code == 10030
    assert exc.message == "UTF-8 encoded length of 513 exceeds key length limit of 512."
    exc = _raises(KeyTooLongError, semantics.validate_key_server_side, b"x" * 600)
    assert exc.message == "UTF-8 encoded length of 600 exceeds key length limit of 512."


def test_prefix_length_limit_is_the_key_limit():
    semantics.validate_prefix(b"x" * 512)
    semantics.validate_prefix(b"")
    exc = _raises(KeyTooLongError, semantics.validate_prefix, b"x" * 513)
    assert exc.message == "UTF-8 encoded length of 513 exceeds key length limit of 512."


def test_key_encoding_round_trips_text_and_raw_bytes():
    assert semantics.encode_key("ключ") == "ключ".encode()
    assert semantics.encode_key(b"\xff\x00") == b"\xff\x00"
    assert semantics.encode_key(bytearray(b"ab")) == b"ab"
    raw = b"caf\xe9\xff"  # not UTF-8: must survive decode/encode unchanged
    assert semantics.encode_key(semantics.decode_key(raw)) == raw


# --------------------------------------------------------------------------- expiration


def test_expiration_ttl_becomes_absolute_ms_from_whole_seconds_now():
    assert semantics.resolve_expiration_ms(expiration_ttl=120, now_ms=NOW_MS) == 1_120_000
    # "now" is floor(ms / 1000): a fraction of a second does not leak into the result
    assert semantics.resolve_expiration_ms(expiration_ttl=120, now_ms=NOW_MS + 999) == 1_120_000


def test_no_expiration_options_mean_never_expires():
    assert semantics.resolve_expiration_ms(now_ms=NOW_MS) == 0


def test_expiration_ttl_boundary_of_60_is_accepted_and_59_is_not():
    assert semantics.resolve_expiration_ms(expiration_ttl=60, now_ms=NOW_MS) == 1_060_000
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl=59,
                  now_ms=NOW_MS)
    assert exc.message == "Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    assert exc.status == 400 and exc.code == 10034


def test_expiration_boundary_of_now_plus_60_is_accepted_and_59_is_not():
    assert semantics.resolve_expiration_ms(expiration=1060, now_ms=NOW_MS) == 1_060_000
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration=1059,
                  now_ms=NOW_MS)
    assert exc.message == ("Invalid expiration of 1059. Expiration times must be at least 60 "
                           "seconds in the future.")
    assert exc.status == 400 and exc.code == 10033


def test_expiration_not_in_the_future_is_rejected():
    for raw in (1000, 999, 0, -5):
        exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration=raw,
                      now_ms=NOW_MS)
        assert exc.message == (f"Invalid expiration of {raw}. Please specify integer greater "
                               f"than the current number of seconds since the UNIX epoch.")


def test_expiration_ttl_not_positive_is_rejected():
    for raw in (0, -1):
        exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl=raw,
                      now_ms=NOW_MS)
        assert exc.message == (f"Invalid expiration_ttl of {raw}. Please specify integer "
                               f"greater than 0.")


def test_expiration_ttl_wins_over_expiration_which_is_then_not_validated():
    assert semantics.resolve_expiration_ms(expiration="garbage", expiration_ttl=120,
                                           now_ms=NOW_MS) == 1_120_000
    assert semantics.resolve_expiration_ms(expiration=5000, expiration_ttl=120,
                                           now_ms=NOW_MS) == 1_120_000
    assert semantics.resolve_expiration_ms(expiration=1, expiration_ttl=60, wire=True,
                                           now_ms=NOW_MS) == 1_060_000
    # ...and a bad TTL is reported even next to a valid expiration
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration=5000,
                  expiration_ttl=30, now_ms=NOW_MS)
    assert "expiration_ttl of 30" in exc.message


def test_binding_parsing_shows_junk_as_zero():
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl="nan",
                  now_ms=NOW_MS)
    assert exc.message == "Invalid expiration_ttl of 0. Please specify integer greater than 0."
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl="90abc",
                  now_ms=NOW_MS)
    assert exc.message == "Invalid expiration_ttl of 0. Please specify integer greater than 0."
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration="nan",
                  now_ms=NOW_MS)
    assert exc.message.startswith("Invalid expiration of 0. ")
    # floats truncate
    assert semantics.resolve_expiration_ms(expiration_ttl=60.9, now_ms=NOW_MS) == 1_060_000


def test_wire_parsing_uses_parse_int_and_echoes_the_raw_text():
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl="abc",
                  now_ms=NOW_MS, wire=True)
    assert exc.message == "Invalid expiration_ttl of abc. Please specify integer greater than 0."
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl=b"30",
                  now_ms=NOW_MS, wire=True)
    assert exc.message == "Invalid expiration_ttl of 30. Expiration TTL must be at least 60."
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration="soon",
                  now_ms=NOW_MS, wire=True)
    assert exc.message.startswith("Invalid expiration of soon. Please specify integer")
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration="1030xyz",
                  now_ms=NOW_MS, wire=True)
    assert exc.message == ("Invalid expiration of 1030xyz. Expiration times must be at least 60 "
                           "seconds in the future.")
    # parseInt takes the leading digits
    assert semantics.resolve_expiration_ms(expiration_ttl="90abc", now_ms=NOW_MS,
                                           wire=True) == 1_090_000
    assert semantics.resolve_expiration_ms(expiration=b"2000", now_ms=NOW_MS,
                                           wire=True) == 2_000_000


def test_min_ttl_is_configurable():
    assert semantics.resolve_expiration_ms(expiration_ttl=1, now_ms=NOW_MS, min_ttl=1) == 1_001_000
    exc = _raises(KVValidationError, semantics.resolve_expiration_ms, expiration_ttl=5,
                  now_ms=NOW_MS, min_ttl=10)
    assert exc.message == "Invalid expiration_ttl of 5. Expiration TTL must be at least 10."


def test_relative_ttl_in_ms_obeys_the_same_floor():
    semantics.check_ttl_ms(60_000, 60)
    exc = _raises(KVValidationError, semantics.check_ttl_ms, 59_000, 60)
    assert exc.message == "Invalid expiration_ttl of 59. Expiration TTL must be at least 60."
    exc = _raises(KVValidationError, semantics.check_ttl_ms, 1500, 60)
    assert exc.message == "Invalid expiration_ttl of 1.5. Expiration TTL must be at least 60."


# --------------------------------------------------------------------------- metadata and values


def test_metadata_is_compact_json_and_none_means_absent():
    assert semantics.encode_metadata(None) == b""
    assert semantics.encode_metadata({"a": 1, "b": [1, 2]}) == b'{"a":1,"b":[1,2]}'
    assert semantics.encode_metadata(123) == b"123"
    assert semantics.encode_metadata("x") == b'"x"'
    assert semantics.encode_metadata({"k": "é"}) == '{"k":"é"}'.encode()  # not \u00e9


def test_metadata_size_is_counted_in_utf8_bytes_up_to_1024():
    ok = "é" * 511  # JSON '"' + 1022 bytes + '"' = 1024 bytes
    assert len(semantics.encode_metadata(ok)) == 1024
    exc = _raises(PayloadTooLargeError, semantics.encode_metadata, "é" * 512)
    assert exc.message == "Metadata length of 1026 exceeds limit of 1024."
    assert exc.status == 413 and exc.code == 10024


def test_wire_metadata_must_be_valid_json_within_the_limit():
    assert semantics.validate_metadata_json('{"a": 1}') == b'{"a": 1}'
    assert semantics.validate_metadata_json(b"123") == b"123"
    exc = _raises(KVValidationError, semantics.validate_metadata_json, "{not json")
    assert exc.status == 400 and exc.code == 10012
    exc = _raises(PayloadTooLargeError, semantics.validate_metadata_json,
                  '"' + "x" * 1023 + '"')
    assert exc.message == "Metadata length of 1025 exceeds limit of 1024."


def test_value_size_limit_is_inclusive():
    semantics.check_value_size(25 * MIB)
    exc = _raises(PayloadTooLargeError, semantics.check_value_size, 25 * MIB + 1)
    assert exc.message == "Value length of 26214401 exceeds limit of 26214400."
    semantics.check_value_size(1024, TEST)
    exc = _raises(PayloadTooLargeError, semantics.check_value_size, 1025, TEST)
    assert exc.message == "Value length of 1025 exceeds limit of 1024."


# --------------------------------------------------------------------------- get options


def test_cache_ttl_minimum_is_30():
    semantics.validate_cache_ttl(None)
    semantics.validate_cache_ttl(30)
    semantics.validate_cache_ttl(86400)
    exc = _raises(KVValidationError, semantics.validate_cache_ttl, 29)
    assert exc.message == "Invalid cache_ttl of 29. Cache TTL must be at least 30."
    exc = _raises(KVValidationError, semantics.validate_cache_ttl, "not a number")
    assert exc.message == "Invalid cache_ttl of 0. Cache TTL must be at least 30."
    exc = _raises(KVValidationError, semantics.validate_cache_ttl, "abc", wire=True)
    assert exc.message == "Invalid cache_ttl of abc. Cache TTL must be at least 30."
    semantics.validate_cache_ttl("45s", wire=True)


def test_get_types():
    for type_ in ("text", "json", "bytes", "arrayBuffer", "stream"):
        semantics.check_get_type(type_)
    exc = _raises(ResponseTypeError, semantics.check_get_type, "blob")
    assert isinstance(exc, TypeError)
    assert str(exc) == ('Unknown response type. Possible types are "text", "arrayBuffer", '
                        '"json", and "stream".')


def test_bulk_get_checks_type_then_too_many_then_too_few():
    exc = _raises(KVValidationError, semantics.check_bulk_get_request, [], "stream")
    assert exc.message == '"stream" is not a valid type. Use "json" or "text"'
    exc = _raises(KVValidationError, semantics.check_bulk_get_request, ["k"] * 101, "arrayBuffer")
    assert exc.message == '"arrayBuffer" is not a valid type. Use "json" or "text"'
    exc = _raises(KVValidationError, semantics.check_bulk_get_request, ["k"] * 101, "json")
    assert exc.message == "You can request a maximum of 100 keys"
    exc = _raises(KVValidationError, semantics.check_bulk_get_request, [], None)
    assert exc.message == "You must request a minimum of 1 key"
    semantics.check_bulk_get_request(["k"] * 100, None)
    semantics.check_bulk_get_request(["k"], "text")


def test_bulk_get_size_message_shows_megabytes_like_javascript():
    assert semantics.bulk_get_too_large().message == \
        "Total size of request exceeds the limit of 25MB"
    assert semantics.bulk_get_too_large(TEST).message == \
        "Total size of request exceeds the limit of 0.0009765625MB"
    assert semantics.bulk_get_too_large(TEST).status == 413


def test_utf16_length_counts_astral_characters_twice():
    assert semantics.utf16_length("") == 0
    assert semantics.utf16_length("abc") == 3
    assert semantics.utf16_length("é") == 1
    assert semantics.utf16_length("€") == 1
    assert semantics.utf16_length("\U0001F600") == 2
    assert semantics.utf16_length("a\U0001F600b") == 4


# --------------------------------------------------------------------------- list


@pytest.mark.parametrize("raw, expected", [
    (None, 1000), (0, 1000), (-5, 1000), ("abc", 1000), (float("nan"), 1000),
    (1, 1), (2, 2), (999, 999), (1000, 1000), ("7", 7),
])
def test_binding_list_limit_drops_non_positive_values(raw, expected):
    assert semantics.resolve_list_limit(raw) == expected


def test_list_limit_above_1000_is_rejected_but_1000_is_allowed():
    assert semantics.resolve_list_limit(1000) == 1000
    exc = _raises(KVValidationError, semantics.resolve_list_limit, 1001)
    assert exc.message == ("Invalid key_count_limit of 1001. Please specify an integer less "
                           "than 1000.")
    assert exc.status == 400 and exc.code == 10028


def test_wire_list_limit_must_be_1_to_1000():
    assert semantics.resolve_list_limit("1", wire=True) == 1
    assert semantics.resolve_list_limit("1000", wire=True) == 1000
    assert semantics.resolve_list_limit("10abc", wire=True) == 10
    assert semantics.resolve_list_limit(None, wire=True) == 1000
    for raw in ("0", "-3", "abc"):
        exc = _raises(KVValidationError, semantics.resolve_list_limit, raw, wire=True)
        assert exc.message == (f"Invalid key_count_limit of {raw}. Please specify an integer "
                               f"greater than 0.")
    exc = _raises(KVValidationError, semantics.resolve_list_limit, "1001", wire=True)
    assert exc.message == ("Invalid key_count_limit of 1001. Please specify an integer less "
                           "than 1000.")


def test_cursor_is_standard_padded_base64_of_the_last_key():
    assert semantics.encode_cursor(b"key1") == "a2V5MQ=="
    assert semantics.encode_cursor(b"key12") == base64.b64encode(b"key12").decode()
    for key in (b"a", b"ab", b"abc", "ключ/😀".encode(), b"\xff\xfe\x00", b"x" * 512):
        cursor = semantics.encode_cursor(key)
        assert cursor == base64.b64encode(key).decode("ascii")
        assert semantics.decode_cursor(cursor) == key


def test_cursor_decoding_is_lenient_like_node_buffer():
    assert semantics.decode_cursor(None) == b""
    assert semantics.decode_cursor("") == b""
    assert semantics.decode_cursor("a2V5MQ") == b"key1"  # padding missing
    assert semantics.decode_cursor("a2V5MQ=") == b"key1"  # padding short
    assert semantics.decode_cursor(b"a2V5MQ==") == b"key1"  # bytes accepted
    assert semantics.decode_cursor("a2V5\nMQ==") == b"key1"  # junk characters skipped
    url_safe = base64.urlsafe_b64encode(b"\xfb\xff\xbf").decode()
    assert semantics.decode_cursor(url_safe) == b"\xfb\xff\xbf"  # URL-safe alphabet accepted
    assert semantics.decode_cursor("!!!!") == b""
    assert semantics.decode_cursor("a") == b""  # a lone sextet holds no byte
    assert semantics.decode_cursor("a2V5M") == b"key"


@pytest.mark.parametrize("junk", ["%%%", "====", "a", "ab", "é", "\x00", "a2V5MQ==a2V5", "-_-_"])
def test_cursor_decoding_never_raises(junk):
    assert isinstance(semantics.decode_cursor(junk), bytes)


# --------------------------------------------------------------------------- titles


def test_namespace_titles_must_be_non_empty_and_at_most_512_characters():
    assert semantics.validate_title("x" * 512) == "x" * 512
    assert semantics.validate_title("é" * 512) == "é" * 512  # characters, not bytes
    for bad in ("", "   ", None, 5):
        exc = _raises(KVValidationError, semantics.validate_title, bad)
        assert exc.code == 10019
    exc = _raises(KVValidationError, semantics.validate_title, "x" * 513)
    assert exc.code == 10010
    assert exc.message == "Namespace title of 513 characters exceeds limit of 512."

