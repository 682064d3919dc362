"""Namespaces: create, list, get, rename, delete, the default namespace, the count limit and
key isolation."""

from __future__ import annotations

import re

import pytest

from engine import (KVValidationError, Limits, NamespaceExistsError, NamespaceNotFoundError,
                    TooManyNamespacesError)
from kvtest_helpers import needs_writes_after_reopen

DUPLICATE = "create namespace: 'A namespace with this account ID and title already exists'"


@pytest.fixture
def store(open_store):
    return open_store()


def test_create_returns_a_32_character_lowercase_hex_id(store):
    ids = {store.create_namespace(f"ns{i}").id for i in range(20)}
    assert len(ids) == 20
    for ns_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", ns_id), ns_id


def test_fresh_store_has_only_the_default_namespace(store):
    [default] = store.list_namespaces()
    assert default.title == "default"
    assert re.fullmatch(r"[0-9a-f]{32}", default.id)
    assert store.namespace().id == default.id
    assert store.namespace("default").id == default.id
    assert default.as_dict() == {"id": default.id, "title": "default",
                                 "supports_url_encoding": True}


def test_default_namespace_keeps_its_id_across_reopens(open_store):
    first = open_store()
    default_id = first.namespace().id
    first.close()
    assert open_store().namespace().id == default_id


def test_list_returns_namespaces_in_creation_order(store):
    for title in ("zebra", "apple", "mango"):
        store.create_namespace(title)
    assert [n.title for n in store.list_namespaces()] == ["default", "zebra", "apple", "mango"]


def test_get_and_find_namespace_by_id_or_title(store):
    info = store.create_namespace("sessions")
    assert store.get_namespace(info.id) == info
    assert store.find_namespace("sessions") == info
    assert store.find_namespace(info.id) == info
    assert store.namespace(info.id).id == info.id
    assert store.namespace("sessions").title == "sessions"


def test_unknown_namespace_is_404_with_code_10013(store):
    for call in (lambda: store.get_namespace("0" * 32), lambda: store.namespace("nope"),
                 lambda: store.find_namespace("nope"), lambda: store.delete_namespace("0" * 32),
                 lambda: store.rename_namespace("0" * 32, "x")):
        with pytest.raises(NamespaceNotFoundError) as info:
            call()
        assert (info.value.status, info.value.code) == (404, 10013)


def test_duplicate_title_is_rejected_with_code_10014(store):
    store.create_namespace("sessions")
    with pytest.raises(NamespaceExistsError) as info:
        store.create_namespace("sessions")
    assert (info.value.status, info.value.code) == (400, 10014)
    assert info.value.message == DUPLICATE
    with pytest.raises(NamespaceExistsError):
        store.create_namespace("default")
    assert [n.title for n in store.list_namespaces()] == ["default", "sessions"]


def test_titles_are_validated(store):
    with pytest.raises(KVValidationError) as info:
        store.create_namespace("")
    assert info.value.code == 10019
    with pytest.raises(KVValidationError) as info:
        store.create_namespace("t" * 513)
    assert info.value.code == 10010
    assert store.create_namespace("t" * 512).title == "t" * 512


def test_rename_changes_the_title_but_not_the_id_or_the_keys(store):
    info = store.create_namespace("old-title")
    ns = store.namespace("old-title")
    ns.put("key", "value")
    renamed = store.rename_namespace(info.id, "new-title")
    assert (renamed.id, renamed.title) == (info.id, "new-title")
    assert ns.get("key") == "value"  # a held Namespace follows the rename
    assert ns.title == "new-title"
    assert store.namespace("new-title").get("key") == "value"
    with pytest.raises(NamespaceNotFoundError):
        store.namespace("old-title")
    store.create_namespace("old-title")  # the old title is free again


def test_rename_to_a_taken_title_is_rejected(store):
    a = store.create_namespace("a")
    store.create_namespace("b")
    with pytest.raises(NamespaceExistsError) as info:
        store.rename_namespace(a.id, "b")
    assert info.value.code == 10014
    assert store.rename_namespace(a.id, "a").title == "a"  # renaming to itself is fine


def test_default_namespace_cannot_be_deleted_or_renamed(store):
    default = store.namespace()
    default.put("key", "value")
    with pytest.raises(KVValidationError) as info:
        store.delete_namespace(default.id)
    assert info.value.status == 400
    with pytest.raises(KVValidationError):
        store.rename_namespace(default.id, "something-else")
    assert store.namespace("default").get("key") == "value"


def test_renamed_title_persists_across_reopen(open_store):
    store = open_store()
    info = store.create_namespace("before")
    store.namespace("before").put("key", "value")
    store.rename_namespace(info.id, "after")
    store.close()
    store = open_store()
    assert [n.title for n in store.list_namespaces()] == ["default", "after"]
    assert store.namespace("after").get("key") == "value"


def test_delete_makes_keys_unreachable_at_once(store):
    info = store.create_namespace("scratch")
    ns = store.namespace("scratch")
    for i in range(50):
        ns.put(f"key{i}", "value", expiration_ttl=3600, metadata={"i": i})
    store.namespace().put("key0", "default value")
    assert store.key_count() == 51
    store.delete_namespace(info.id)
    assert store.key_count() == 1
    assert store.key_count(info.number) == 0
    for call in (lambda: ns.get("key0"), lambda: ns.put("key0", "v"), lambda: ns.list(),
                 lambda: ns.delete("key0"), lambda: store.namespace("scratch")):
        with pytest.raises(NamespaceNotFoundError):
            call()
    with pytest.raises(NamespaceNotFoundError):
        store.delete_namespace(info.id)
    assert store.namespace().get("key0") == "default value"
    assert [n.title for n in store.list_namespaces()] == ["default"]
    assert store.stats()["keys_with_expiration"] == 0
    assert store.stats()["keys_with_metadata"] == 0
    store._check()


def test_recreating_a_deleted_title_gives_an_empty_namespace(store):
    old = store.create_namespace("scratch")
    store.namespace("scratch").put("key", "old")
    store.delete_namespace(old.id)
    new = store.create_namespace("scratch")
    assert new.id != old.id
    assert new.number > old.number  # numbers are never reused
    assert store.namespace("scratch").get("key") is None
    assert store.namespace("scratch").list() == {"keys": [], "list_complete": True}


def test_namespace_limit_counts_the_default_namespace(open_store):
    store = open_store(limits=Limits(max_namespaces=5))
    infos = [store.create_namespace(f"ns{i}") for i in range(4)]
    with pytest.raises(TooManyNamespacesError) as info:
        store.create_namespace("one-too-many")
    assert (info.value.status, info.value.code) == (400, 10018)
    assert "limit of 5" in info.value.message
    assert len(store.list_namespaces()) == 5
    store.delete_namespace(infos[0].id)
    store.create_namespace("fits-again")
    with pytest.raises(TooManyNamespacesError):
        store.create_namespace("over-again")


def test_default_limit_is_1000_namespaces(store):
    assert store.limits.max_namespaces == 1000


def test_namespaces_isolate_keys(store):
    store.create_namespace("a")
    store.create_namespace("b")
    a, b, default = store.namespace("a"), store.namespace("b"), store.namespace()
    a.put("shared", "in a", metadata={"ns": "a"})
    b.put("shared", "in b", expiration_ttl=600)
    a.put("only-a", "x")
    assert a.get("shared") == "in a"
    assert b.get_with_metadata("shared") == ("in b", None, None, 1600)
    assert default.get("shared") is None
    assert b.get("only-a") is None
    assert [k["name"] for k in a.list()["keys"]] == ["only-a", "shared"]
    assert b.list()["keys"] == [{"name": "shared", "expiration": 1600}]
    assert default.list()["keys"] == []
    assert a.get(["shared", "only-a"]) == {"shared": "in a", "only-a": "x"}
    assert b.get(["shared", "only-a"]) == {"shared": "in b", "only-a": None}
    b.delete("shared")
    assert a.get("shared") == "in a"
    b.bulk_put([{"key": "only-a", "value": "now in b too"}])
    assert a.get("only-a") == "x"
    a.bulk_delete(["shared", "only-a"])
    assert b.get("only-a") == "now in b too"
    assert a.list()["keys"] == []
    assert {s["title"]: s["keys"] for s in store.namespace_stats()} == {
        "default": 0, "a": 0, "b": 1}


def test_list_pagination_never_crosses_into_another_namespace(store):
    store.create_namespace("a")
    store.create_namespace("b")
    for i in range(5):
        store.namespace("a").put(f"k{i}", "a")
        store.namespace("b").put(f"k{i}", "b")
    store.namespace().put("zzz", "default")
    names, cursor = [], None
    while True:
        page = store.namespace("a").list(limit=2, cursor=cursor)
        names += [k["name"] for k in page["keys"]]
        if page["list_complete"]:
            break
        cursor = page["cursor"]
    assert names == [f"k{i}" for i in range(5)]


def test_flush_empties_one_namespace_only(store):
    info = store.create_namespace("cache")
    store.namespace("cache").put("k", "v")
    store.namespace().put("k", "default")
    assert store.flush_namespace(info.id) == 1
    assert store.namespace("cache").get("k") is None
    assert store.namespace("cache").id == info.id
    assert store.namespace().get("k") == "default"
    store._check()


def test_a_flush_keeps_the_namespace_s_place_in_creation_order(open_store):
    """SELECT's indexes follow this order: a flushed namespace must not move to the end."""
    store = open_store()
    store.create_namespace("alpha")
    store.create_namespace("beta")
    store.flush_namespace(store.namespace("alpha").id)
    store.flush_namespace(store.namespace("alpha").id)
    store.rename_namespace(store.namespace("alpha").id, "gamma")
    assert [n.title for n in store.list_namespaces()] == ["default", "gamma", "beta"]
    store.close()
    store = open_store()
    assert [n.title for n in store.list_namespaces()] == ["default", "gamma", "beta"]
    store.compact()
    store.close()
    store = open_store()
    assert [n.title for n in store.list_namespaces()] == ["default", "gamma", "beta"]


def test_namespaces_and_their_keys_survive_reopen(open_store):
    store = open_store()
    a = store.create_namespace("a")
    b = store.create_namespace("b")
    store.namespace("a").put("key", "in a")
    store.namespace("b").put("key", "in b")
    store.close()
    store = open_store()
    assert [(n.id, n.title) for n in store.list_namespaces()][1:] == [(a.id, "a"), (b.id, "b")]
    assert store.namespace("a").get("key") == "in a"
    assert store.namespace(b.id).get("key") == "in b"


@needs_writes_after_reopen
def test_namespace_numbers_are_not_reused_after_reopen(open_store):
    store = open_store()
    a = store.create_namespace("a")
    store.namespace("a").put("key", "in a")
    store.delete_namespace(a.id)
    store.close()
    store = open_store()
    b = store.create_namespace("b")
    assert b.number > a.number
    assert store.namespace("b").get("key") is None
    store.close()
    store = open_store()
    assert store.namespace("b").get("key") is None


def test_put_racing_with_namespace_delete_leaves_no_orphan_key(store):
    info = store.create_namespace("doomed")
    ns = store.namespace("doomed")

    def delete_in_between(number, key):
        # runs inside put_raw, after the namespace number was read and before the write:
        # the same interleaving another thread's delete_namespace can produce
        store.delete_namespace(info.id)

    store.check_write_rate = delete_in_between
    try:
        ns.put("key", "value")
    except NamespaceNotFoundError:
        pass  # refusing the put is fine; acknowledging it into a dead namespace is not
    assert store.key_count() == sum(s["keys"] for s in store.namespace_stats())
    store._check()
