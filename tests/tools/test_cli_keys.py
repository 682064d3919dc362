"""``edgekv keys status|rotate|retire`` and ``--key-file``, locally and against a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clitest_helpers import edgekv, start_server

pytestmark = pytest.mark.timeout(180)


def _put_many(where, count: int = 50) -> None:
    items = ",".join(f'{{"key":"k{i}","value":"secret value {i}"}}' for i in range(count))
    result = edgekv("kv", "bulk", "put", "-", *where, input=f"[{items}]")
    assert result.returncode == 0, result.stderr


def _usage_of(status: dict, key_id: int) -> dict:
    return status["usage"].get(str(key_id)) or {}


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_rotate_reencrypt_retire(tmp_path, mode):
    data_dir = tmp_path / "data"
    key_file = tmp_path / "ring" / "edgekv.keys"
    key_file.parent.mkdir()
    server = None
    if mode == "local":
        where = ["--data-dir", data_dir, "--key-file", key_file]
    else:
        server = start_server(data_dir, tmp_path / "server.log", "--key-file", str(key_file))
        where = ["--remote", server.url]
    try:
        _put_many(where)
        status = edgekv("keys", "status", "--json", *where)
        assert status.returncode == 0, status.stderr
        first = status.json()
        assert first["enabled"] is True
        old_id = first["active_key_id"]
        assert _usage_of(first, old_id), first

        rotated = edgekv("keys", "rotate", "--json", *where)
        assert rotated.returncode == 0, rotated.stderr
        new_id = rotated.json()["active_key_id"]
        assert new_id != old_id

        refused = edgekv("keys", "retire", old_id, *where)
        assert refused.returncode != 0
        assert str(old_id) in refused.stderr

        compacted = edgekv("compact", "--json", *where)
        assert compacted.returncode == 0, compacted.stderr
        after = edgekv("keys", "status", "--json", *where).json()
        assert not any(_usage_of(after, old_id).values()), after

        retired = edgekv("keys", "retire", old_id, *where)
        assert retired.returncode == 0, retired.stderr
        text = edgekv("keys", "status", *where)
        assert f"active key id {new_id}" in text.text
        got = edgekv("kv", "key", "get", "k7", *where)
        assert got.stdout == b"secret value 7"
    finally:
        if server:
            server.stop()
    # The retired key is gone from the ring, and the store still opens and reads.
    assert edgekv("kv", "key", "get", "k3", "--data-dir", data_dir,
                  "--key-file", key_file).stdout == b"secret value 3"


def test_local_commands_need_the_right_key_file(tmp_path):
    data_dir = tmp_path / "data"
    key_file = tmp_path / "ring.keys"
    _put_many(["--data-dir", data_dir, "--key-file", key_file], 5)
    assert key_file.exists() and not Path(str(data_dir) + ".keys").exists()
    missing = edgekv("kv", "key", "get", "k1", "--data-dir", data_dir)
    assert missing.returncode != 0
    assert "key" in missing.stderr.lower() and "Traceback" not in missing.stderr
    via_env = edgekv("kv", "key", "get", "k1", "--data-dir", data_dir,
                     env={"EDGEKV_KEY_FILE": str(key_file)})
    assert via_env.stdout == b"secret value 1", via_env.stderr
    other = tmp_path / "other.keys"
    _put_many(["--data-dir", tmp_path / "other", "--key-file", other], 1)
    wrong = edgekv("kv", "key", "get", "k1", "--data-dir", data_dir, "--key-file", other)
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert os.stat(key_file).st_mode & 0o777 == 0o600


def test_local_commands_leave_a_plaintext_store_plaintext(tmp_path):
    """Reading a store written with --encryption no must not give it a key ring: the server
    would then refuse to start on it with --encryption no."""
    from engine import Store

    data_dir = tmp_path / "data"
    store = Store.open(str(data_dir), encryption=False)
    store.namespace().put("k", "plain value")
    store.close()
    where = ("--data-dir", str(data_dir))
    for args in (("kv", "key", "get", "k"), ("kv", "key", "put", "k2", "v2"), ("stats",),
                 ("keys", "status"), ("export", str(tmp_path / "out.jsonl"))):
        result = edgekv(*args, *where)
        assert result.returncode == 0, (args, result.stderr)
    assert not (tmp_path / "data.keys").exists()
    assert not (data_dir / "KEYCHECK").exists()
    store = Store.open(str(data_dir), encryption=False)
    assert store.namespace().get("k2") == "v2"
    store.close()
    assert b"plain value" in b"".join(p.read_bytes() for p in data_dir.glob("*.seg"))
