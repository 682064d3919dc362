"""A hypothesis state machine: random sequences of KV operations, clock moves and restarts,
checked step by step against a plain-dict model, with ``store._check()`` as invariant."""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine import (KVValidationError, NamespaceExistsError, NamespaceNotFoundError, Store)
from kvtest_helpers import FakeClock, needs_writes_after_reopen

TITLES = ["default", "n1", "n2"]

# A tiny alphabet with multi-byte characters, so keys collide, share prefixes and sort by bytes.
keys = st.text(alphabet="ab/é\U0001F600", min_size=1, max_size=4)
prefixes = st.one_of(st.none(), st.text(alphabet="ab/é\U0001F600", min_size=0, max_size=2))
values = st.binary(max_size=48)
metadata = st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=5),
                     st.dictionaries(st.sampled_from("xyz"), st.integers(0, 9), max_size=2))
ttls = st.one_of(st.none(), st.integers(60, 400))
titles = st.sampled_from(TITLES)


def _order(key: str) -> bytes:
    return key.encode("utf-8")


class KVMachine(RuleBasedStateMachine):
    """Model: ``{title: {key: (value bytes, expire_ms, metadata)}}``."""

    reopen_enabled = False

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="edgekv-sm-")
        self.clock = FakeClock()
        self.store = self._open()
        self.model: dict[str, dict] = {"default": {}}

    def _open(self) -> Store:
        # small segments so rotation happens; fsync="no" because durability is not under test
        return Store.open(self.directory, clock=self.clock, fsync="no", segment_bytes=4096)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def _ns(self, title):
        """The namespace, or None after checking the store agrees it does not exist."""
        if title not in self.model:
            with pytest.raises(NamespaceNotFoundError):
                self.store.namespace(title)
            return None
        return self.store.namespace(title)

    def _expire_model(self) -> None:
        now = self.clock.now_ms
        for entries in self.model.values():
            for key in [k for k, (_, exp, _) in entries.items() if exp and exp <= now]:
                del entries[key]

    # ------------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        assert [n.title for n in self.store.list_namespaces()] == ["default"]

    @rule(title=titles, key=keys, value=values, meta=metadata, ttl=ttls)
    def put(self, title, key, value, meta, ttl):
        ns = self._ns(title)
        if ns is None:
            return
        ns.put(key, value, metadata=meta, expiration_ttl=ttl)
        expire_ms = (self.clock.now_s + ttl) * 1000 if ttl else 0
        self.model[title][key] = (value, expire_ms, meta)

    @rule(title=titles, key=keys, value=values, when=st.integers(60, 400))
    def put_with_absolute_expiration(self, title, key, value, when):
        ns = self._ns(title)
        if ns is None:
            return
        ns.put(key, value, expiration=self.clock.now_s + when)
        self.model[title][key] = (value, (self.clock.now_s + when) * 1000, None)

    @rule(title=titles, key=keys)
    def delete(self, title, key):
        ns = self._ns(title)
        if ns is None:
            return
        ns.delete(key)
        self.model[title].pop(key, None)

    @rule(title=titles, key=keys)
    def get(self, title, key):
        ns = self._ns(title)
        if ns is None:
            return
        got = ns.get_with_metadata(key, "bytes")
        if key in self.model[title]:
            value, expire_ms, meta = self.model[title][key]
            assert got == (value, meta, None, expire_ms // 1000 if expire_ms else None)
        else:
            assert got == (None, None, None, None)

    @rule(title=titles, batch=st.lists(keys, min_size=1, max_size=6))
    def bulk_get(self, title, batch):
        ns = self._ns(title)
        if ns is None:
            return
        got = ns.get(batch)
        for key in batch:
            entry = self.model[title].get(key)
            expected = entry[0].decode("utf-8", "replace") if entry else None
            assert got[key] == expected, key

    @rule(title=titles, prefix=prefixes, limit=st.one_of(st.none(), st.integers(1, 7)))
    def list_all_pages(self, title, prefix, limit):
        ns = self._ns(title)
        if ns is None:
            return
        expected = sorted((k for k in self.model[title] if k.startswith(prefix or "")),
                          key=_order)
        seen: list[dict] = []
        cursor = None
        while True:
            page = ns.list(prefix=prefix, limit=limit, cursor=cursor)
            assert len(page["keys"]) <= (limit or 1000)
            seen += page["keys"]
            if page["list_complete"]:
                assert "cursor" not in page
                break
            assert len(page["keys"]) == limit  # only full pages say there is more
            cursor = page["cursor"]
        assert [k["name"] for k in seen] == expected
        for item in seen:
            _, expire_ms, meta = self.model[title][item["name"]]
            assert item.get("expiration") == (expire_ms // 1000 if expire_ms else None)
            assert item.get("metadata") == meta

    @rule(title=titles, items=st.lists(st.tuples(keys, values, ttls), min_size=1, max_size=8))
    def bulk_put(self, title, items):
        ns = self._ns(title)
        if ns is None:
            return
        result = ns.bulk_put([{"key": k, "value": v.hex(), "expiration_ttl": ttl}
                              for k, v, ttl in items])
        assert result == {"successful_key_count": len(items), "unsuccessful_keys": []}
        for key, value, ttl in items:
            expire_ms = (self.clock.now_s + ttl) * 1000 if ttl else 0
            self.model[title][key] = (value.hex().encode(), expire_ms, None)

    @rule(title=titles, batch=st.lists(keys, min_size=1, max_size=8))
    def bulk_delete(self, title, batch):
        ns = self._ns(title)
        if ns is None:
            return
        result = ns.bulk_delete(batch)
        assert result == {"successful_key_count": len(batch), "unsuccessful_keys": []}
        for key in batch:
            self.model[title].pop(key, None)

    @rule(title=titles)
    def create_namespace(self, title):
        if title in self.model:
            with pytest.raises(NamespaceExistsError):
                self.store.create_namespace(title)
            return
        self.store.create_namespace(title)
        self.model[title] = {}

    @rule(title=titles)
    def delete_namespace(self, title):
        if title == "default":
            with pytest.raises(KVValidationError):
                self.store.delete_namespace(self.store.namespace().id)
            return
        if title not in self.model:
            return
        self.store.delete_namespace(self.store.find_namespace(title).id)
        del self.model[title]

    @rule(ms=st.sampled_from([0, 1, 999, 1000, 30_000, 60_000, 61_000, 150_000]))
    def advance_clock(self, ms):
        self.clock.advance(ms)
        self._expire_model()

    @rule()
    def reap(self):
        self.store.reap_expired()

    @rule()
    def reopen(self):
        if not self.reopen_enabled:
            return
        self.store.close()
        self.store = self._open()
        assert self.store.recovery.truncated == [] and self.store.recovery.corrupt == []

    # ------------------------------------------------------------------ invariants

    @invariant()
    def index_is_consistent(self):
        self.store._check()

    @invariant()
    def namespaces_and_counts_match(self):
        stats = {s["title"]: s["keys"] for s in self.store.namespace_stats()}
        assert set(stats) == set(self.model)
        self.store.reap_expired()
        assert self.store.key_count() == sum(len(m) for m in self.model.values())


class KVMachineWithRestarts(KVMachine):
    reopen_enabled = True


_SETTINGS = settings(max_examples=50, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])

KVMachine.TestCase.settings = _SETTINGS
KVMachineWithRestarts.TestCase.settings = _SETTINGS
test_kv_operations_match_a_dict_model = KVMachine.TestCase


@needs_writes_after_reopen
class TestKVOperationsWithRestartsMatchADictModel(KVMachineWithRestarts.TestCase):
    pass
