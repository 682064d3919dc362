"""Engine error texts that name user input quote it plainly (``"name"``), never with Python's
``'...'``/``b'...'`` repr, whose quotes and escapes depend on the content; a key byte that is
not UTF-8 shows as its ``\\udcXY`` escape, as the REST API and the CLI spell it.  Callers map
errors by type and attributes, so the texts can change without touching them."""

from __future__ import annotations

import base64

import pytest

from engine.errors import KVValidationError, NamespaceNotFoundError


@pytest.mark.parametrize("value, shown", [
    ("nope", '"nope"'),
    ("it's", '"it\'s"'),                   # repr would switch to double quotes here only
    ('say "hi"', '"say \\"hi\\""'),
    ("é✓", '"é✓"'),                        # readable characters kept
    ("line\nbreak", '"line\\nbreak"'),      # nothing that could split a RESP error line
    ("b\udcffk", '"b\\udcffk"'),            # a stray byte, as the REST API lists it
    (b"b\xffk", '"b\\udcffk"'),             # the same key given as bytes: no b'...'
    (b"plain", '"plain"'),
])
def test_quoted(value, shown):
    from engine.errors import quoted  # here, so the other tests run without it
    assert quoted(value) == shown


@pytest.mark.parametrize("name, shown", [
    ("nope", '"nope"'), ("b\udcffx", '"b\\udcffx"')])
def test_namespace_not_found_names_the_namespace_plainly(open_store, name, shown):
    store = open_store()
    for lookup in (store.get_namespace, store.namespace):
        with pytest.raises(NamespaceNotFoundError) as exc:
            lookup(name)
        assert exc.value.message == f"namespace not found: {shown}"
        assert (exc.value.status, exc.value.code) == (404, 10013)


def test_namespace_not_found_keeps_its_bare_text_for_a_deleted_namespace(open_store):
    """The RESP session tells "the selected namespace was deleted" by this exact text."""
    store = open_store()
    store.create_namespace("gone")
    ns = store.namespace("gone")
    store.delete_namespace(ns.id)
    with pytest.raises(NamespaceNotFoundError) as exc:
        ns.put("k", "v")
    assert exc.value.message == "namespace not found"
    # ...and a namespace id that is looked up names the id.
    with pytest.raises(NamespaceNotFoundError) as exc:
        store.get_namespace(ns.id)
    assert exc.value.message == f'namespace not found: "{ns.id}"'


def test_bulk_base64_error_names_a_binary_key_by_its_escape(open_store):
    """Was the raw lone surrogate, which no UTF-8 channel (a RESP error, a log) can carry."""
    ns = open_store().namespace("default")
    errors: list = []
    result = ns.bulk_put([{"key": "b\udcffk", "value": "!!!", "base64": True},
                          {"key": "ok", "value": base64.b64encode(b"\xff").decode(),
                           "base64": True}], errors=errors)
    assert result == {"successful_key_count": 1, "unsuccessful_keys": ["b\udcffk"]}
    (key, exc), = errors
    assert isinstance(exc, KVValidationError) and exc.status == 400
    assert exc.message == 'Value of "b\\udcffk" is not valid base64.'
    assert str(exc) == 'KV PUT failed: 400 Value of "b\\udcffk" is not valid base64.'
    exc.message.encode("utf-8")  # plain text: no lone surrogate left in it
    assert ns.get(b"ok", type="bytes") == b"\xff"

