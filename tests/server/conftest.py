"""Start real edgekv server processes on free loopback ports, each on its own data directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@contextmanager
def redis_server():
    """A real ``redis-server`` on a free loopback port, no persistence: ``(client, version)``,
    or ``(None, None)`` when none is installed.  For tests that hold edgekv's replies
    against Redis's own."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None, None
        return
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start (exit {proc.poll()})")
                time.sleep(0.05)
        version = tuple(int(p) for p in client.info("server")["redis_version"].split(".")[:3])
        yield client, version
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, sig=signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def reference():
    """A real redis-server 7 for differential tests, or None when none is installed."""
    with redis_server() as (client, version):
        yield client if version and version[0] == 7 else None


def resp_command(*args: bytes) -> bytes:
    """One command in RESP, as clients send it."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def unparsed(client: redis.Redis, *args):
    """The reply without redis-py's per-command parser (it assumes COMMAND INFO shapes)."""
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command(*args)
        return conn.read_response()
    finally:
        client.connection_pool.release(conn)


def watched_exec(client: redis.Redis, key: str, meddle) -> list | None:
    """WATCH ``key``, run ``meddle()``, then MULTI/SET/EXEC: EXEC's reply (None = aborted)."""
    with client.pipeline() as pipe:
        pipe.watch(key)
        meddle()
        pipe.multi()
        pipe.set("witness", "1")
        try:
            return pipe.execute()
        except redis.WatchError:
            return None


def raw_replies(port: int, payload: bytes) -> bytes:
    """Send ``payload`` on a fresh connection, then an ECHO; return every reply before the
    ECHO's, byte for byte."""
    marker = b"end-of-replies-4e2a"
    end = b"$%d\r\n%s\r\n" % (len(marker), marker)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload + resp_command(b"ECHO", marker))
        data = b""
        while not data.endswith(end):
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed; got {data!r}")
            data += chunk
    return data[:-len(end)]


def start_server(data_dir: Path, log_path: Path, *extra: str, fsync: str = "always",
                 port: int | None = None) -> ServerProcess:
    port = port or free_port()
    cmd = [sys.executable, "-m", "tools.cli", "serve", "--port", str(port), "--data-dir",
           str(data_dir), "--fsync", fsync, "--http-port", "0", *extra]
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    server = ServerProcess(proc, port, data_dir, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edgekv exited with {proc.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64):
                    return server
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"edgekv did not start listening on {port}:\n{server.log()}")


def module_server(tmp_path_factory, name: str, *extra: str, fsync: str):
    """The body of a module-scoped server fixture: ``yield from module_server(...)``."""
    tmp = tmp_path_factory.mktemp(name)
    server = start_server(tmp / "data", tmp / "server.log", *extra, fsync=fsync)
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path):
    started: list[ServerProcess] = []

    def start(*extra: str, fsync: str = "always", data_dir: Path | None = None,
              port: int | None = None) -> ServerProcess:
        directory = data_dir or tmp_path / f"data{len(started)}"
        server = start_server(directory, tmp_path / f"server{len(started)}.log", *extra,
                              fsync=fsync, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)


@pytest.fixture
def server(server_factory) -> ServerProcess:
    return server_factory("--min-ttl", "60")


@pytest.fixture
def r(server) -> redis.Redis:
    client = server.client()
    yield client
    client.close()


# The REST API's modules each start a server as ``rest`` (``(Api, ServerProcess)``, with the
# tokens they test); these two work on any of them.
@pytest.fixture
def api(rest):
    return rest[0]


@pytest.fixture
def ns(api) -> str:
    """A fresh namespace's id."""
    return api.namespace()
