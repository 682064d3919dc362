"""A real server on a real full disk, and on a disk whose fsync fails, through redis-py and HTTP.

The data directory sits on a small tmpfs mounted for the test ("no space left on device"
comes from the kernel), or on ext4 over a loop device whose backing tmpfs is too small (the
fsync's writeback fails with EIO).  Space returns by deleting a file on the same tmpfs.  Both
need root to mount; without it the tests skip and say why.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import signal
import time
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.disk_faults import ext4_that_fails_fsync, fill, tmpfs
from tests.server.conftest import ServerProcess, free_port, start_server

ENOSPC_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device"
VALUE = b"v" * 1000
TOKEN = "rw-" + uuid.uuid4().hex


def client(server: ServerProcess) -> redis.Redis:
    """No automatic retries: a dropped connection must show as one, not as a second try."""
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=30,
                       retry=Retry(NoBackoff(), 0))


def set_until_refused(r: redis.Redis, acknowledged: dict[bytes, bytes],
                      limit: int = 50_000) -> Exception:
    for i in range(limit):
        key = b"k%06d" % i
        try:
            assert r.set(key, VALUE) is True
        except (redis.ResponseError, redis.ConnectionError) as exc:
            return exc
        acknowledged[key] = VALUE
    raise AssertionError("the disk never filled up")


def assert_all_readable(r: redis.Redis, expected: dict[bytes, bytes]) -> None:
    keys = list(expected)
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        values = r.mget(chunk)
        lost = [k for k, v in zip(chunk, values) if v != expected[k]]
        assert not lost, f"acknowledged keys lost: {lost[:5]}"


def wait_for_compaction(r: redis.Redis, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = r.info("persistence")
        if not info["aof_rewrite_in_progress"]:
            return info
        time.sleep(0.05)
    raise AssertionError("compaction did not end")


def rest_put(port: int, ns_id: str, key: str, value: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", f"/client/v4/accounts/a/storage/kv/namespaces/{ns_id}/values/{key}",
                 body=value, headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


def default_namespace_id(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/client/v4/accounts/a/storage/kv/namespaces",
                 headers={"Authorization": f"Bearer {TOKEN}"})
    result = json.loads(conn.getresponse().read())["result"]
    conn.close()
    return next(ns["id"] for ns in result if ns["title"] == "default")


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_full_disk_clear_errors_reads_go_on_writes_resume_nothing_acknowledged_lost(
        tmp_path, fsync):
    http_port = free_port()
    with tmpfs(tmp_path / "disk", "2m") as disk:
        spare = disk / "spare"
        spare.write_bytes(b"\0" * 256 * 1024)
        data = disk / "data"
        extra = ("--segment-bytes", "262144", "--http-port", str(http_port),
                 "--api-token", TOKEN)
        server = start_server(data, tmp_path / "server.log", *extra, fsync=fsync)
        acknowledged: dict[bytes, bytes] = {}
        try:
            r = client(server)
            error = set_until_refused(r, acknowledged)
            # A clear error that names the cause, on the same connection.
            assert isinstance(error, redis.ResponseError), error
            assert str(error).startswith("IOERR") and ENOSPC_TEXT in str(error), str(error)
            assert len(acknowledged) > 500
            assert r.ping()

            # Reads go on while the disk is full.
            assert_all_readable(r, acknowledged)
            refused = b"k%06d" % len(acknowledged)
            if fsync == "always":  # written on its own: a refused SET leaves nothing behind
                assert r.dbsize() == len(acknowledged) and r.get(refused) is None
            else:  # written with its loop iteration's SETs: refused, kept in memory like a pipeline
                assert r.dbsize() == len(acknowledged) + (r.get(refused) is not None)

            # A pipeline's writes reach the file in one write: refused as a whole, every reply
            # is the error, and the connection stays usable.
            pipe = r.pipeline(transaction=False)
            for i in range(20):
                pipe.set(b"pipe%02d" % i, VALUE)
            replies = pipe.execute(raise_on_error=False)
            assert all(isinstance(x, redis.ResponseError) and ENOSPC_TEXT in str(x)
                       for x in replies), replies
            assert r.get(b"k000000") == VALUE

            # The REST API answers 503 with a JSON error naming the cause.
            ns_id = default_namespace_id(http_port)
            status, body = rest_put(http_port, ns_id, "rest-full", VALUE)
            assert status == 503 and body["success"] is False, (status, body)
            assert ENOSPC_TEXT in body["errors"][0]["message"]

            # Compaction fails cleanly: reported in INFO, no half-written file left behind.
            assert r.execute_command("KV.COMPACT") == b"Background compaction started"
            last = wait_for_compaction(r)["edgekv_last_compaction"]
            assert isinstance(last, dict) and ENOSPC_TEXT in last["error"], last  # error=...
            assert [n for n in os.listdir(data) if n.endswith(".tmp") or n == "COMPACTION"] == []
            assert_all_readable(r, acknowledged)

            # Space returns: writes work again without a restart.
            spare.unlink()
            assert r.set(b"after", b"space returned") is True
            acknowledged[b"after"] = b"space returned"
            pipe = r.pipeline(transaction=False)
            for i in range(5):
                pipe.set(b"after-pipe%d" % i, b"x")
                acknowledged[b"after-pipe%d" % i] = b"x"
            assert pipe.execute() == [True] * 5
            assert rest_put(http_port, ns_id, "rest-after", b"y")[0] == 200
            acknowledged[b"rest-after"] = b"y"
            assert_all_readable(r, acknowledged)

            # Full again, with a refused pipeline still buffered: SIGTERM still exits cleanly.
            filler = fill(disk)
            pipe = r.pipeline(transaction=False)
            for i in range(20):
                pipe.set(b"late%02d" % i, VALUE)
            assert all(isinstance(x, redis.ResponseError)
                       for x in pipe.execute(raise_on_error=False))
            r.close()
            assert server.stop(signal.SIGTERM, timeout=20) == 0, server.log()[-3000:]
            filler.unlink()

            # Every acknowledged write is there after the restart.
            server = start_server(data, tmp_path / "server2.log", *extra, fsync=fsync)
            r = client(server)
            assert_all_readable(r, acknowledged)
            assert r.set(b"after-restart", b"ok") is True
            info = r.info("persistence")
            assert info["edgekv_corrupt_records"] == 0
            r.close()
        finally:
            server.stop(signal.SIGKILL)


# --------------------------------------------------------------------------- failed fsync


def test_failed_fsync_is_never_acknowledged_and_writes_stop_until_restart(tmp_path):
    """fsync=always and the kernel reports EIO: the write waiting for that fsync gets no
    "OK" (its connection is dropped, as Redis exits), every later write is refused with
    IOERR naming the failure, reads go on, and after a restart every acknowledged write is
    there and writes work again."""
    with ext4_that_fails_fsync(tmp_path) as (mnt, grow):
        data = mnt / "data"
        server = start_server(data, tmp_path / "server.log", "--segment-bytes", "1048576",
                              fsync="always")
        acknowledged: dict[bytes, bytes] = {}
        try:
            r = client(server)
            error = set_until_refused(r, acknowledged, limit=20_000)
            assert isinstance(error, (redis.ConnectionError, redis.ResponseError)), error
            r.close()
            r = client(server)
            with pytest.raises(redis.ResponseError,
                               match="IOERR writes are disabled after a failed fsync"):
                r.set(b"later", b"x")
            assert r.info("persistence")["aof_last_write_status"] == "err"
            assert_all_readable(r, acknowledged)  # reads go on
            r.close()
            server.stop(signal.SIGTERM, timeout=20)
            assert "fsync failed, refusing writes until restart" in server.log()
        finally:
            server.stop(signal.SIGKILL)
        grow()
        server = start_server(data, tmp_path / "server2.log", fsync="always")
        try:
            r = client(server)
            assert_all_readable(r, acknowledged)
            assert r.get(b"later") is None
            assert r.set(b"later", b"x") is True
            r.close()
        finally:
            server.stop()
