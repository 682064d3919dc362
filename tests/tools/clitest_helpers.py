"""Run the real ``edgekv`` entry point in subprocesses, and real servers to point it at.

A module of its own, with a name no other test folder uses: ``conftest`` is ambiguous when
the whole suite runs, so test modules import helpers from here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8")

    def json(self):
        return json.loads(self.stdout)


def edgekv(*args, input: bytes | str | None = None, timeout: float = 120,
           env: dict | None = None) -> Result:
    if isinstance(input, str):
        input = input.encode("utf-8")
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=REPO,
                          env={**ENV, **(env or {})}, input=input if input is not None else b"",
                          capture_output=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir: Path, log_path: Path, *extra: str) -> Server:
    port = free_port()
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--port", str(port),
                             "--data-dir", str(data_dir), "--http-port", "0", *extra],
                            cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edgekv exited with {proc.returncode}: {log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64):
                    return Server(proc, port, data_dir)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"edgekv did not start: {log_path.read_text()}")
