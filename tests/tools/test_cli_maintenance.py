"""``edgekv verify`` and ``edgekv compact`` (present when the engine provides them)."""

from __future__ import annotations

import os

import pytest
from clitest_helpers import edgekv

from tools.maintenance import available

HAS_VERIFY, HAS_COMPACT = available()

#: A hung server or prompt fails the test instead of stalling the run.
pytestmark = pytest.mark.timeout(120)


@pytest.mark.skipif(not HAS_COMPACT, reason="the engine has no Store.compact")
def test_compact(where, ns_title):
    n = ["--namespace", ns_title]
    for i in range(3):
        assert edgekv("kv", "key", "put", "k", f"v{i}", *n, *where).returncode == 0
    result = edgekv("compact", "--json", *where)
    assert result.returncode == 0, result.stderr
    assert {"segments_in", "segments_out", "records_dropped"} <= set(result.json())
    assert edgekv("kv", "key", "get", "k", *n, *where).stdout == b"v2"
    assert "Compacted" in edgekv("compact", *where).text
    if where[0] == "--remote":
        started = edgekv("compact", "--no-wait", *where)
        assert started.returncode in (0, 1)
        assert "started" in started.text or "already running" in started.stderr


@pytest.mark.skipif(not HAS_VERIFY, reason="the engine has no verify")
def test_verify(tmp_path, server):
    d = ["--data-dir", tmp_path / "d"]
    assert edgekv("kv", "bulk", "put", "-", *d,
                  input='[' + ",".join(f'{{"key":"b{i}","value":"{"y" * 100}"}}'
                                       for i in range(50)) + ']').returncode == 0
    ok = edgekv("verify", *d)
    assert ok.returncode == 0 and ok.text.rstrip().endswith("OK")
    assert edgekv("verify", "--json", *d).json()["ok"] is True

    segment = sorted(p for p in os.listdir(tmp_path / "d") if p.endswith(".seg"))[-1]
    path = tmp_path / "d" / segment
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the middle of a record
    path.write_bytes(bytes(data))
    bad = edgekv("verify", *d)
    assert bad.returncode == 1 and "DAMAGED" in bad.text and "corrupt" in bad.text

    busy = edgekv("verify", "--data-dir", server.data_dir)
    assert busy.returncode == 1 and "stop that process first" in busy.stderr
    missing = edgekv("verify", "--data-dir", tmp_path / "nowhere")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.skipif(not HAS_VERIFY, reason="the engine has no verify")
def test_verify_repair_asks_then_rewrites_without_the_damaged_record(tmp_path):
    d = tmp_path / "d"
    items = ",".join(f'{{"key":"k{i:03d}","value":"{"z" * 200}"}}' for i in range(40))
    assert edgekv("kv", "bulk", "put", "-", "--data-dir", d, input=f"[{items}]").returncode == 0
    segment = sorted(p for p in os.listdir(d) if p.endswith(".seg"))[-1]
    data = bytearray((d / segment).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / segment).write_bytes(bytes(data))

    refused = edgekv("verify", d, "--repair")  # no terminal, no --force: nothing changes
    assert refused.returncode == 1 and "not confirmed" in refused.stderr
    assert (d / segment).read_bytes() == bytes(data)

    repaired = edgekv("verify", d, "--repair", "--force")
    assert repaired.returncode == 0, repaired.stderr
    assert "originals in" in repaired.text
    assert any(name.startswith("repair-") for name in os.listdir(d))
    again = edgekv("verify", d)
    assert again.returncode == 0 and again.text.rstrip().endswith("OK")
    listed = edgekv("kv", "key", "list", "--data-dir", d)
    assert listed.returncode == 0 and 30 <= len(listed.json()) < 40
