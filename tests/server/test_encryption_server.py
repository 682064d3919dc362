"""Encryption at rest through the real server: on by default, nothing readable on disk, the
key ring managed with KV.KEYRING, and a server that refuses to start without its key."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]

SECRET_KEY = "customer-4711-private-key"
SECRET_VALUE = "the launch code is 0000-plaintext-marker"
SECRET_META = "metadata-marker-zebra"
SECRET_TITLE = "namespace-title-marker"


def every_file(directory: Path):
    for root, _dirs, files in os.walk(directory):
        for name in files:
            yield Path(root) / name


def assert_no_plaintext(directory: Path, *needles: str) -> None:
    for path in every_file(directory):
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} readable in {path}"


def info_persistence(client: redis.Redis) -> dict:
    return client.info("persistence")


def wait_compaction(client: redis.Redis, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = info_persistence(client)
        if not info["aof_rewrite_in_progress"]:
            return info
        time.sleep(0.05)
    raise AssertionError("compaction did not finish")


def fill(client: redis.Redis, count: int = 200) -> None:
    client.execute_command("KV.NAMESPACE", "CREATE", SECRET_TITLE)
    client.execute_command("KV.PUT", SECRET_KEY, SECRET_VALUE, "METADATA",
                           json.dumps({"tag": SECRET_META}))
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{SECRET_KEY}-{i}", f"{SECRET_VALUE}-{i}" * 3)
    pipe.execute()


def test_default_server_keeps_keys_values_titles_and_metadata_off_the_disk(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    srv = server_factory(data_dir=data_dir, fsync="always")
    client = srv.client()
    fill(client)
    assert client.get(SECRET_KEY) == SECRET_VALUE.encode()
    info = info_persistence(client)
    assert info["edgekv_encryption"] == "aes-256-gcm"
    assert info["edgekv_active_key_id"] >= 1
    # Force a compaction so hint files exist too, then look at every byte on disk.
    client.set(SECRET_KEY, SECRET_VALUE + "-v2")
    client.execute_command("KV.COMPACT")
    wait_compaction(client)
    assert_no_plaintext(data_dir, SECRET_KEY, SECRET_VALUE, SECRET_META, SECRET_TITLE)
    # The key ring is beside the data directory, private to its owner.
    key_file = Path(str(data_dir) + ".keys")
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    srv.stop()
    again = server_factory(data_dir=data_dir)
    assert again.client().get(SECRET_KEY) == (SECRET_VALUE + "-v2").encode()
    assert again.client().get(f"{SECRET_KEY}-7") == (f"{SECRET_VALUE}-7" * 3).encode()


def test_encryption_off_is_explicit_and_plaintext(server_factory, tmp_path):
    data_dir = tmp_path / "plain"
    srv = server_factory("--encryption", "no", data_dir=data_dir)
    client = srv.client()
    client.set(SECRET_KEY, SECRET_VALUE)
    assert info_persistence(client)["edgekv_encryption"] == "off"
    srv.stop()
    found = any(SECRET_VALUE.encode() in p.read_bytes() for p in every_file(data_dir))
    assert found, "with --encryption no the value is stored as is"
    assert not Path(str(data_dir) + ".keys").exists()


def test_keyring_rotate_reencrypt_retire(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    key_file = tmp_path / "elsewhere" / "ring.keys"
    key_file.parent.mkdir()
    srv = server_factory("--key-file", str(key_file), data_dir=data_dir)
    client = srv.client(decode_responses=True, protocol=3)
    fill(client, 300)
    status = client.execute_command("KV.KEYRING", "STATUS")
    old_id = status["active_key_id"]
    new_id = client.execute_command("KV.KEYRING", "ROTATE")
    assert new_id != old_id
    client.set("after-rotation", "x")
    with pytest.raises(redis.ResponseError):
        client.execute_command("KV.KEYRING", "RETIRE", old_id)  # still in use
    client.execute_command("KV.COMPACT")
    wait_compaction(client)
    usage = client.execute_command("KV.KEYRING", "STATUS")["usage"]
    assert str(old_id) not in usage or not any(usage[str(old_id)].values()), usage
    assert client.execute_command("KV.KEYRING", "RETIRE", old_id) == "OK"
    with pytest.raises(redis.ResponseError):
        client.execute_command("KV.KEYRING", "RETIRE", new_id)  # the active key
    srv.stop()
    ring = json.loads(key_file.read_text())
    assert str(old_id) not in ring["keys"] and str(new_id) in ring["keys"]
    again = server_factory("--key-file", str(key_file), data_dir=data_dir)
    assert again.client().get(SECRET_KEY) == SECRET_VALUE.encode()
    assert again.client().get("after-rotation") == b"x"


def test_server_refuses_to_start_without_its_key(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    srv = server_factory(data_dir=data_dir)
    srv.client().set(SECRET_KEY, SECRET_VALUE)
    srv.stop()
    key_file = Path(str(data_dir) + ".keys")
    key_file.rename(tmp_path / "moved.keys")
    before = {p: p.read_bytes() for p in every_file(data_dir)}
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--port", "0",
                           "--data-dir", str(data_dir), "--http-port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert "key" in proc.stderr.lower() and str(key_file) in proc.stderr, proc.stderr
    after = {p: p.read_bytes() for p in every_file(data_dir) if p.name != "LOCK"}
    assert {p: d for p, d in before.items() if p.name != "LOCK"} == after


def test_compression_level_is_set_by_serve_and_reported_by_info(server_factory, tmp_path):
    """``--compression-level`` reaches the engine (INFO shows it, values round-trip) and a
    level out of range is refused before anything opens, naming the range and the value."""
    srv = server_factory("--compression-level", "-3")
    client = srv.client()
    value = b'{"id": 1, "tags": ["alpha", "beta"]}' * 100
    client.set("doc", value)
    assert client.get("doc") == value
    assert client.info("persistence")["edgekv_compression_level"] == -3
    result = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--compression-level",
                             "23", "--data-dir", str(tmp_path / "d")], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "compression-level must be from -7 to 22; got 23" in result.stderr
