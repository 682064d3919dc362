"""Help, exit codes, error messages, prompts and progress: the command line as a user meets it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest
from clitest_helpers import ENV, REPO, edgekv, free_port, start_server

from tools.maintenance import available

#: A hung server or prompt fails the test instead of stalling the run.
pytestmark = pytest.mark.timeout(120)

LEAVES = [
    ["kv", "namespace", "create"], ["kv", "namespace", "list"], ["kv", "namespace", "delete"],
    ["kv", "namespace", "rename"], ["kv", "key", "put"], ["kv", "key", "get"],
    ["kv", "key", "list"], ["kv", "key", "delete"], ["kv", "bulk", "put"],
    ["kv", "bulk", "delete"], ["kv", "bulk", "get"], ["export"], ["import"], ["snapshot"],
    ["stats"], ["serve"], ["kv"], ["kv", "namespace"], ["kv", "key"], ["kv", "bulk"],
] + [[name] for name, present in zip(("verify", "compact"), available()) if present]


@pytest.mark.parametrize("words", LEAVES, ids=" ".join)
def test_every_command_has_help_with_an_example(words):
    result = edgekv(*words, "--help")
    assert result.returncode == 0
    assert "example:" in result.text and "edgekv " in result.text.split("example:")[1]


def test_usage_errors_exit_2():
    assert edgekv().returncode == 2
    assert edgekv("kv").returncode == 2
    assert edgekv("kv", "key", "put").returncode == 2
    assert edgekv("kv", "key", "put", "k", "v", "--ttl", "soon").returncode == 2
    wrong = edgekv("kv", "key", "list", "--remote", "ftp://x")
    assert wrong.returncode == 2 and "redis://" in wrong.stderr
    for url in ("http://[::1", "redis://[::1", "http://localhost:abc"):
        wrong = edgekv("kv", "key", "list", "--remote", url)
        assert wrong.returncode == 2, (url, wrong.stderr)
        assert wrong.stderr.startswith(f"edgekv: bad --remote URL '{url}': ")
        assert "Traceback" not in wrong.stderr


def test_locked_data_directory_points_at_remote(server):
    result = edgekv("kv", "key", "list", "--data-dir", server.data_dir)
    assert result.returncode == 1
    assert f"data directory {server.data_dir} is in use by a running server (pid " \
        f"{server.proc.pid})" in result.stderr
    assert "use --remote redis://" in result.stderr


def test_remote_errors(tmp_path):
    unreachable = edgekv("kv", "key", "list", "--remote", "redis://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot reach the server" in unreachable.stderr and "edgekv serve" in unreachable.stderr
    rest = edgekv("kv", "key", "list", "--remote", f"http://127.0.0.1:{free_port()}")
    assert rest.returncode == 1 and "cannot reach the REST API" in rest.stderr

    srv = start_server(tmp_path / "pw", tmp_path / "pw.log", "--requirepass", "s3cret")
    try:
        denied = edgekv("kv", "key", "list", "--remote", f"redis://:wrong@127.0.0.1:{srv.port}")
        assert denied.returncode == 1 and "password" in denied.stderr
        assert "wrong" not in denied.stderr  # the URL is shown with the password masked
        url = f"redis://:s3cret@127.0.0.1:{srv.port}"
        assert edgekv("kv", "key", "put", "k", "v", "--remote", url).returncode == 0
        assert edgekv("kv", "key", "get", "k", "--remote", url).stdout == b"v"
        # /N selects the namespace at index N, as redis-cli -n N does.
        assert edgekv("kv", "namespace", "create", "second", "--remote", url).returncode == 0
        assert edgekv("kv", "key", "put", "in-second", "2", "--remote",
                      url + "/1").returncode == 0
        assert edgekv("kv", "key", "get", "in-second", "--namespace", "second", "--remote",
                      url).stdout == b"2"
        out_of_range = edgekv("kv", "key", "list", "--remote", url + "/7")
        assert out_of_range.returncode == 1 and "out of range" in out_of_range.stderr
    finally:
        srv.stop()


def _run_in_pty(args, answer: bytes | None, timeout: float = 30) -> tuple[int, str]:
    """Run edgekv with a terminal as stdin/stdout/stderr, answering its prompt."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", *map(str, args)], cwd=REPO,
                            env={**ENV, "COLUMNS": "100"}, stdin=child, stdout=child, stderr=child)
    os.close(child)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if answer is not None and not answered and b"[y/n]" in output:
            os.write(main, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    proc.wait(timeout=10)
    os.close(main)
    return proc.returncode, output.decode("utf-8", "replace")


def test_namespace_delete_asks_on_a_terminal(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    assert edgekv("kv", "namespace", "create", "keepme", *d).returncode == 0
    code, out = _run_in_pty(["kv", "namespace", "delete", "--namespace", "keepme", *d], b"n\n")
    assert "Are you sure you want to delete namespace" in out and code == 1
    assert any(n["title"] == "keepme" for n in edgekv("kv", "namespace", "list", *d).json())
    code, out = _run_in_pty(["kv", "namespace", "delete", "--namespace", "keepme", *d], b"y\n")
    assert code == 0 and "Deleted namespace" in out
    assert all(n["title"] != "keepme" for n in edgekv("kv", "namespace", "list", *d).json())


def test_bulk_delete_asks_on_a_terminal_and_not_in_scripts(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    (tmp_path / "keys.json").write_text('["a"]')
    edgekv("kv", "key", "put", "a", "1", *d)
    code, out = _run_in_pty(["kv", "bulk", "delete", tmp_path / "keys.json", *d], b"n\n")
    assert code == 1 and "Are you sure you want to delete all keys in" in out
    assert edgekv("kv", "key", "get", "a", *d).stdout == b"1"
    # Without a terminal wrangler goes ahead, and so does edgekv.
    assert edgekv("kv", "bulk", "delete", tmp_path / "keys.json", *d).returncode == 0
    assert edgekv("kv", "key", "get", "a", *d).returncode == 1


def test_progress_bar_only_on_a_terminal(tmp_path):
    d = ["--data-dir", tmp_path / "d"]
    (tmp_path / "items.json").write_text(
        "[" + ",".join(f'{{"key":"k{i}","value":"v"}}' for i in range(20_000)) + "]")
    quiet = edgekv("kv", "bulk", "put", tmp_path / "items.json", *d)
    # No bar without a terminal: stderr holds the status line only, stdout nothing.
    assert quiet.returncode == 0 and quiet.stderr == "Success!\n" and quiet.stdout == b""
    code, out = _run_in_pty(["kv", "bulk", "put", tmp_path / "items.json", *d], None)
    assert code == 0 and "Success!" in out
    assert "Writing" in out  # rich's bar, drawn on the terminal
