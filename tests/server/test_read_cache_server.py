"""The read cache through the real server: --read-cache sizes it, INFO reports it, and a
value overwritten or deleted by any client is never served stale."""

from __future__ import annotations


def test_repeated_gets_hit_the_cache_and_info_reports_it(server_factory):
    srv = server_factory("--read-cache", "1mb")
    client = srv.client()
    pipe = client.pipeline(transaction=False)
    for i in range(500):
        pipe.set(f"key:{i}", f"value-{i}")
    pipe.execute()
    for _ in range(3):
        assert client.mget([f"key:{i}" for i in range(500)]) == \
            [f"value-{i}".encode() for i in range(500)]
    for i in range(0, 500, 50):
        assert client.get(f"key:{i}") == f"value-{i}".encode()
    memory = client.info("memory")
    assert memory["edgekv_read_cache_budget"] == 1024 * 1024
    assert memory["edgekv_read_cache_entries"] == 500
    assert 0 < memory["edgekv_read_cache_used"] <= 1024 * 1024
    stats = client.info("stats")
    assert stats["edgekv_read_cache_misses"] == 0  # every SET put its value in the cache
    assert stats["edgekv_read_cache_hits"] == 3 * 500 + 10
    srv.stop()
    again = server_factory("--read-cache", "1mb", data_dir=srv.data_dir)
    client = again.client()
    assert client.mget([f"key:{i}" for i in range(500)])[7] == b"value-7"
    assert client.get("key:7") == b"value-7"
    stats = client.info("stats")
    assert (stats["edgekv_read_cache_misses"], stats["edgekv_read_cache_hits"]) == (500, 1)


def test_a_second_client_never_reads_a_stale_value(server_factory):
    srv = server_factory()
    reader, writer = srv.client(), srv.client()
    writer.set("k", "one")
    assert reader.get("k") == b"one" and reader.get("k") == b"one"
    writer.set("k", "two")
    assert reader.get("k") == b"two"
    writer.append("k", "+")
    assert reader.get("k") == b"two+"
    writer.delete("k")
    assert reader.get("k") is None
    writer.set("k", "three")
    writer.flushdb()
    assert reader.get("k") is None


def test_read_cache_zero_turns_it_off(server_factory):
    srv = server_factory("--read-cache", "0")
    client = srv.client()
    client.set("k", "v")
    assert client.get("k") == b"v" and client.get("k") == b"v"
    assert client.info("memory")["edgekv_read_cache_budget"] == 0
    assert client.info("stats")["edgekv_read_cache_hits"] == 0


def test_a_bad_read_cache_size_is_refused_naming_the_value(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tools.cli", "serve", "--read-cache", "lots",
                             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "'lots'" in result.stderr
