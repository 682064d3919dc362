"""Encryption at rest on real files: nothing readable on disk, tampering caught, keys rotated and
retired, and a wrong or missing key refused before anything is touched."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat

import pytest
import xxhash

from engine import CorruptionError, Store, StoreError
from engine.crypto import KEY_FILE_ENV, KEYCHECK, default_key_file
from engine.snapshot import snapshot_store
from engine.verify import repair, verify_store
from kvtest_helpers import (RECORD_HEADER, RECORD_HEADER_SIZE, data_keys, disk_records,
                            find_record, flip_byte, read_file, segment_paths)

FLAG_ENCRYPTED = 0x04
#: Distinctive strings that must never reach the disk in plaintext.
SECRET_KEY = "needle-key-0f4c2a"
SECRET_VALUE = "needle-value-93be71"
SECRET_TITLE = "needle-title-5d18e2"
SECRET_META = "needle-meta-a7c03b"
SECRET_RENAMED = "needle-renamed-2e9f44"
NEEDLES = [s.encode() for s in (SECRET_KEY, SECRET_VALUE, SECRET_TITLE, SECRET_META,
                                SECRET_RENAMED)]


def _fill_with_secrets(store: Store, round_: int = 0) -> None:
    """Keys, values, metadata and titles, in every kind of record and file the store makes."""
    ns = store.namespace()
    ns.put(SECRET_KEY, SECRET_VALUE, metadata={"note": SECRET_META})
    ns.put("small", SECRET_VALUE)
    ns.put("json", json.dumps({"v": SECRET_VALUE, "pad": ["x" * 40] * 60}))  # compressed
    ns.put("random-big", os.urandom(3000) + SECRET_VALUE.encode())  # stored uncompressed
    ns.put("large", SECRET_VALUE * 20_000)  # the writev-sized path
    ns.put(SECRET_KEY + "-deleted", SECRET_VALUE)
    ns.delete(SECRET_KEY + "-deleted")  # a tombstone carries the key
    other = store.namespace(store.create_namespace(f"{SECRET_TITLE}-{round_}").id)
    other.put(SECRET_KEY, SECRET_VALUE, metadata=SECRET_META)
    store.create_namespace(f"to-rename-{round_}")
    store.rename_namespace(store.find_namespace(f"to-rename-{round_}").id,
                           f"{SECRET_RENAMED}-{round_}")


def _files_holding(directory, needles) -> dict[str, list[bytes]]:
    """Every file under ``directory`` (recursively) that contains one of ``needles``."""
    found = {}
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            data = read_file(path)
            hits = [n for n in needles if n in data]
            if hits:
                found[os.path.relpath(path, directory)] = hits
    return found


def _reseal_checksum(path: str, offset: int) -> None:
    """Recompute the xxh3 checksum of the record at ``offset``, as someone who tampers (and
    knows the format) would: only the authentication tag can catch it then."""
    data = read_file(path)
    payload_len = RECORD_HEADER.unpack_from(data, offset)[4]
    end = offset + RECORD_HEADER_SIZE + payload_len
    digest = xxhash.xxh3_64_intdigest(data[offset + 8:end]).to_bytes(8, "little")
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, digest, offset)
    finally:
        os.close(fd)


def _tree(directory) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(root, name), directory):
            read_file(os.path.join(root, name))
            for root, _dirs, files in os.walk(directory) for name in files}


# --------------------------------------------------------------------------- nothing in plaintext


def test_no_key_value_title_or_metadata_is_stored_in_plaintext(open_store, tmp_path):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=8192)
    _fill_with_secrets(store)
    store.compact()  # hint files, compaction outputs
    _fill_with_secrets(store, 1)  # and the same again in the active segment
    snapshot_store(store, str(tmp_path / "snap"))
    store.close()
    assert any(n.endswith(".hint") for n in os.listdir(data))
    assert _files_holding(data, NEEDLES) == {}
    assert _files_holding(tmp_path / "snap", NEEDLES) == {}
    for path in segment_paths(data):
        assert all(r.flags & FLAG_ENCRYPTED for r in disk_records(path))
    # Everything is still there.
    with Store.open(str(data)) as again:
        ns = again.namespace()
        assert ns.get_with_metadata(SECRET_KEY).metadata == {"note": SECRET_META}
        assert ns.get("large") == SECRET_VALUE * 20_000
        assert again.find_namespace(f"{SECRET_RENAMED}-1").id
        assert again.namespace(f"{SECRET_TITLE}-0").get(SECRET_KEY) == SECRET_VALUE


def test_the_plaintext_search_finds_secrets_when_encryption_is_off(open_store, tmp_path):
    """The search above can fail: without encryption it finds every needle."""
    store = open_store(fsync="no", segment_bytes=8192, encryption=False,
                       compression_threshold=0)
    _fill_with_secrets(store)
    store.compact()
    store.close()
    found = {n for hits in _files_holding(tmp_path / "data", NEEDLES).values() for n in hits}
    assert found == set(NEEDLES)
    assert not os.path.exists(default_key_file(str(tmp_path / "data")))


def test_repair_leaves_nothing_in_plaintext(open_store, tmp_path):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=4096)
    _fill_with_secrets(store)
    for i in range(60):
        store.namespace().put(f"filler{i}", "x" * 100)
    store.close()
    [(path, record)] = [(p, r) for p in segment_paths(data) for r in disk_records(p)
                        if r.key == SECRET_KEY.encode() and r.ns == 1]  # the default namespace
    flip_byte(path, record.end - 1)
    result = repair(str(data), confirm=True)
    assert result.tombstones_written == 1 and result.backup_dir
    assert _files_holding(data, NEEDLES) == {}
    assert verify_store(str(data)).ok
    with Store.open(str(data)) as again:
        assert again.namespace().get(SECRET_KEY) is None  # the damaged newest version is gone
        assert again.namespace().get("small") == SECRET_VALUE


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce", "expiration", "key_id"])
def test_tampered_record_is_caught_like_a_checksum_failure(open_store, tmp_path, where):
    store = open_store(read_cache_bytes=0)  # every read goes to the file
    ns = store.namespace()
    ns.put("victim", "precious", metadata={"m": 1})
    ns.put("bystander", "fine")
    path, record = find_record(store.path, b"victim")
    position = {"ciphertext": record.offset + RECORD_HEADER_SIZE + 14,
                "tag": record.end - 1, "nonce": record.offset + RECORD_HEADER_SIZE + 3,
                "expiration": record.offset + 24, "key_id": record.offset + 11}[where]
    flip_byte(path, position, 0x01 if where != "key_id" else 0x03)
    _reseal_checksum(path, record.offset)
    with pytest.raises(CorruptionError) as info:
        ns.get("victim")
    assert (info.value.segment, info.value.offset) == (1, record.offset)
    with pytest.raises(CorruptionError):
        ns.get_with_metadata("victim")
    assert ns.get("bystander") == "fine"
    store.close()

    report = verify_store(store.path)
    assert [c.offset for c in report.corrupt] == [record.offset]
    with Store.open(store.path) as reopened:
        [damage] = reopened.recovery.corrupt
        assert damage.offset == record.offset and not damage.torn_tail
        assert reopened.recovery.truncated == []
        try:  # never served: absent, or an error
            assert reopened.namespace().get("victim") is None
        except CorruptionError:
            pass
        assert reopened.namespace().get("bystander") == "fine"


def test_a_header_moved_onto_another_record_fails_the_tag(open_store):
    """The header is associated data: swapping two records' sequence numbers (checksums
    recomputed) is caught, so a replayed old record cannot pose as a newer one."""
    store = open_store()
    ns = store.namespace()
    ns.put("k", "old")
    ns.put("k", "new")
    store.close()
    seg = segment_paths(store.path)[0]
    old, new = [r for r in disk_records(seg) if r.key == b"k"]
    data = bytearray(read_file(seg))
    data[old.offset + 16:old.offset + 24] = new.seq.to_bytes(8, "little")
    data[new.offset + 16:new.offset + 24] = old.seq.to_bytes(8, "little")
    with open(seg, "wb") as f:
        f.write(data)
    _reseal_checksum(seg, old.offset)
    _reseal_checksum(seg, new.offset)
    with Store.open(store.path) as reopened:
        assert {d.offset for d in reopened.recovery.corrupt} == {old.offset, new.offset}
        try:
            assert reopened.namespace().get("k") not in ("old", "new")
        except CorruptionError:
            pass


def test_torn_tail_of_an_encrypted_segment_is_truncated_not_reported(open_store, tmp_path):
    store = open_store()
    store.namespace().put("a", "1")
    store.namespace().put("b", "2" * 500)
    store.close()
    seg = segment_paths(tmp_path / "data")[-1]
    last = disk_records(seg)[-1]
    assert last.flags & FLAG_ENCRYPTED
    os.truncate(seg, last.end - 5)  # the tag is cut short
    with Store.open(str(tmp_path / "data")) as reopened:
        [torn] = reopened.recovery.truncated
        assert torn.offset == last.offset and reopened.recovery.corrupt == []
        assert reopened.namespace().get("a") == "1" and reopened.namespace().get("b") is None


# --------------------------------------------------------------------------- keys


def test_a_new_store_gets_a_key_file_beside_it_with_mode_0600(open_store, tmp_path):
    store = open_store()
    info = store.encryption_info()
    key_file = str(tmp_path / "data.keys")
    assert info["enabled"] and info["key_file"] == key_file and info["active_key_id"] == 1
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert default_key_file(str(tmp_path / "data")) == key_file
    ring = json.loads(read_file(key_file))
    assert list(ring["keys"]) == ["1"] and ring["active"] == 1
    check = json.loads(read_file(os.path.join(store.path, KEYCHECK)))
    assert check["encrypted"] and list(check["keys"]) == ["1"]
    assert check["keys"]["1"] not in read_file(key_file).decode()  # a check value, not the key


def test_key_file_from_the_environment_and_a_warning_when_inside(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "elsewhere" / "edgekv.keys"))
    with Store.open(str(tmp_path / "a")) as store:
        assert store.encryption_info()["key_file"] == str(tmp_path / "elsewhere" / "edgekv.keys")
    assert os.path.exists(tmp_path / "elsewhere" / "edgekv.keys")
    monkeypatch.delenv(KEY_FILE_ENV)
    with caplog.at_level(logging.WARNING, logger="edgekv.engine"):
        Store.open(str(tmp_path / "b"), key_file=str(tmp_path / "b" / "inside.keys")).close()
    assert any("inside the data directory" in r.getMessage() for r in caplog.records)


def test_wrong_key_file_refuses_to_open_and_changes_nothing(open_store, tmp_path):
    store = open_store()
    store.namespace().put("k", "v")
    store.close()
    Store.open(str(tmp_path / "other")).close()  # a store with a key file of its own
    before = _tree(tmp_path)
    with pytest.raises(StoreError) as info:
        Store.open(str(tmp_path / "data"), key_file=str(tmp_path / "other.keys"))
    message = str(info.value)
    assert "other.keys" in message and "key id 1" in message and "wrong key file" in message
    assert _tree(tmp_path) == before
    with Store.open(str(tmp_path / "data")) as again:
        assert again.namespace().get("k") == "v"


def test_missing_key_file_refuses_to_open_and_creates_nothing(open_store, tmp_path):
    store = open_store()
    store.namespace().put("k", "v")
    store.close()
    os.rename(tmp_path / "data.keys", tmp_path / "saved.keys")
    before = _tree(tmp_path)
    with pytest.raises(StoreError) as info:
        Store.open(str(tmp_path / "data"))
    assert "data.keys does not exist" in str(info.value)
    assert _tree(tmp_path) == before  # above all, no new key was generated
    with pytest.raises(StoreError) as info:
        Store.open(str(tmp_path / "data"), encryption=False)
    assert "is encrypted" in str(info.value)
    with pytest.raises(StoreError):
        verify_store(str(tmp_path / "data"))
    with Store.open(str(tmp_path / "data"), key_file=str(tmp_path / "saved.keys")) as again:
        assert again.namespace().get("k") == "v"


def test_segments_copied_without_keycheck_still_refuse_a_missing_or_wrong_key(open_store,
                                                                              tmp_path):
    store = open_store()
    store.namespace().put("k", "v")
    store.close()
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in segment_paths(tmp_path / "data"):
        shutil.copy(path, bare)
    with pytest.raises(StoreError) as info:
        Store.open(str(bare))
    assert "holds encrypted records" in str(info.value)
    assert not os.path.exists(tmp_path / "bare.keys")
    Store.open(str(tmp_path / "stranger")).close()
    with pytest.raises(StoreError) as info:
        Store.open(str(bare), key_file=str(tmp_path / "stranger.keys"))
    assert "wrong key file" in str(info.value)
    with Store.open(str(bare), key_file=str(tmp_path / "data.keys")) as adopted:
        assert adopted.namespace().get("k") == "v"


def test_rotate_compact_then_the_old_key_is_unused_and_retired(open_store, tmp_path):
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(200):
        ns.put(f"k{i:03d}", f"value-{i}" * 5, metadata={"i": i} if i % 3 == 0 else None)
    store.compact()
    assert store.key_usage()[1]["live_records"] == 200 + 1  # the keys and the namespace
    assert store.rotate_key() == 2
    for i in range(0, 200, 2):
        ns.put(f"k{i:03d}", f"newer-{i}")
    usage = store.key_usage()
    assert usage[1]["segments"] and usage[1]["live_records"] == 100 + 1 and not usage[1]["active"]
    assert usage[2]["active"] and usage[2]["live_records"] == 100
    with pytest.raises(StoreError, match="still used"):
        store.retire_key(1)
    with pytest.raises(StoreError, match="active key"):
        store.retire_key(2)
    store.compact()
    usage = store.key_usage()
    assert usage[1]["segments"] == [] and usage[1]["live_records"] == 0
    assert usage[2]["live_records"] == 200 + 1
    store.retire_key(1)
    assert store.encryption_info()["key_ids"] == [2]
    store.close()
    ring = json.loads(read_file(str(tmp_path / "data.keys")))
    assert list(ring["keys"]) == ["2"] and ring["active"] == 2
    for path in segment_paths(tmp_path / "data"):
        assert {r.flags & FLAG_ENCRYPTED for r in disk_records(path)} <= {FLAG_ENCRYPTED}
        assert all(RECORD_HEADER.unpack_from(read_file(path), r.offset)[3] == 2
                   for r in disk_records(path))
    with Store.open(str(tmp_path / "data"), segment_bytes=4096) as again:
        assert not again.recovery.corrupt and not again.recovery.hint_problems
        ns = again.namespace()
        assert ns.get("k000") == "newer-0" and ns.get("k001") == "value-1" * 5
        assert ns.get_with_metadata("k003").metadata == {"i": 3}
        assert set(again.key_usage()) == {2}


def test_a_snapshot_gets_a_key_file_of_its_own_that_seals_with_a_new_key(open_store, tmp_path):
    store = open_store(fsync="no")
    store.namespace().put("k", "v1")
    snapshot_store(store, str(tmp_path / "snap"))
    original = json.loads(read_file(str(tmp_path / "data.keys")))
    fork = json.loads(read_file(str(tmp_path / "snap.keys")))
    assert stat.S_IMODE(os.stat(tmp_path / "snap.keys").st_mode) == 0o600
    assert fork["keys"]["1"] == original["keys"]["1"]  # to read what was copied
    assert fork["active"] == 2 and fork["keys"]["2"]["key"] != original["keys"]["1"]["key"]
    # The original rotates, compacts and retires key 1: the snapshot does not depend on it.
    store.rotate_key()
    store.namespace().put("k", "v2")
    store.compact()
    store.retire_key(1)
    with Store.open(str(tmp_path / "snap")) as snap:
        assert snap.namespace().get("k") == "v1"
        snap.namespace().put("only-in-snap", "x")
        assert snap.encryption_info()["active_key_id"] == 2
    snap_records = [r for p in segment_paths(tmp_path / "snap") for r in disk_records(p)]
    key_ids = {RECORD_HEADER.unpack_from(read_file(p), r.offset)[3]
               for p in segment_paths(tmp_path / "snap") for r in disk_records(p)
               if r.key == b"only-in-snap"}
    assert key_ids == {2} and snap_records  # never sealed again under the original's key 1


def test_retiring_a_key_a_snapshot_sharing_the_key_file_needs_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "shared.keys"))
    store = Store.open(str(tmp_path / "data"), fsync="no")
    try:
        store.namespace().put("k", "v1")
        snapshot_store(store, str(tmp_path / "snap"))
        assert not os.path.exists(tmp_path / "snap.keys")  # the one shared file, not a copy
        store.rotate_key()
        store.namespace().put("k", "v2")
        store.compact()
        with pytest.raises(StoreError) as info:
            store.retire_key(1)
        assert str(tmp_path / "snap") in str(info.value)
        with Store.open(str(tmp_path / "snap")) as snap:
            assert snap.namespace().get("k") == "v1"
        shutil.rmtree(tmp_path / "snap")
        store.retire_key(1)
        assert store.encryption_info()["key_ids"] == [2]
    finally:
        store.close()


def test_a_plaintext_store_opened_with_encryption_is_encrypted_by_compaction(tmp_path):
    data = str(tmp_path / "data")
    with Store.open(data, encryption=False) as plain:
        _fill_with_secrets(plain)
    assert _files_holding(data, NEEDLES)
    with Store.open(data) as store:  # encryption on: old records stay readable
        assert store.namespace().get(SECRET_KEY) == SECRET_VALUE
        store.namespace().put("new", SECRET_VALUE)
        assert store.key_usage()[0]["live_records"] > 0
        store.compact()
        assert 0 not in store.key_usage()
    assert _files_holding(data, NEEDLES) == {}
    with pytest.raises(StoreError, match="is encrypted"):
        Store.open(data, encryption=False)
    with Store.open(data) as store:
        assert store.namespace().get(SECRET_KEY) == SECRET_VALUE
        assert store.namespace().get("new") == SECRET_VALUE


# --------------------------------------------------------------------------- nonces


def _nonces(directory) -> list[bytes]:
    out = []
    for path in segment_paths(directory):
        data = read_file(path)
        for r in disk_records(path):
            start = r.offset + RECORD_HEADER_SIZE
            out.append(data[start:start + 12])
    return out


def test_nonces_never_repeat_across_opens_even_with_an_old_key_file(tmp_path):
    data = str(tmp_path / "data")
    with Store.open(data) as store:
        store.namespace().put("k0", "v")
        epochs = [store.encryption_info()["epoch"]]
    old_key_file = read_file(str(tmp_path / "data.keys"))
    for i in range(1, 4):
        if i == 3:  # a restored, older key file: KEYCHECK still knows the newer epoch
            with open(tmp_path / "data.keys", "wb") as f:
                f.write(old_key_file)
        with Store.open(data) as store:
            epochs.append(store.encryption_info()["epoch"])
            for j in range(20):
                store.namespace().put(f"k{i}-{j}", "v")
            store.compact()  # compaction seals with nonces of the same counter
    assert epochs == sorted(set(epochs)) and len(epochs) == 4
    nonces = _nonces(data)
    assert len(nonces) == len(set(nonces))
    assert {int.from_bytes(n[:4], "big") for n in nonces} <= set(epochs)
    assert data_keys(data)


def test_hint_files_are_encrypted_and_still_used_to_open(open_store, tmp_path):
    data = tmp_path / "data"
    store = open_store(fsync="no", segment_bytes=4096)
    ns = store.namespace()
    for i in range(300):
        ns.put(f"{SECRET_KEY}-{i:03d}", "x" * 30, metadata={"m": SECRET_META})
    store.compact()
    store.close()
    hints = sorted(n for n in os.listdir(data) if n.endswith(".hint"))
    assert hints and _files_holding(data, NEEDLES) == {}
    store = open_store(fsync="no", segment_bytes=4096)
    assert store.recovery.hints_loaded == len(hints) and not store.recovery.hint_problems
    assert store.namespace().get_with_metadata(f"{SECRET_KEY}-007").metadata == {"m": SECRET_META}
    store.close()
    # Tamper with a hint's ciphertext (its checksum recomputed): the tag fails, the segment
    # is scanned instead, and nothing is lost.
    path = str(data / hints[0])
    body = bytearray(read_file(path))
    body[40] ^= 0x01
    body[-8:] = xxhash.xxh3_64_intdigest(bytes(body[:-8])).to_bytes(8, "little")
    with open(path, "wb") as f:
        f.write(body)
    store = open_store(fsync="no", segment_bytes=4096)
    assert len(store.recovery.hint_problems) == 1
    assert "authentication tag" in store.recovery.hint_problems[0]
    assert store.key_count() == 300
    store.close()
    assert verify_store(store.path).hint_problems
