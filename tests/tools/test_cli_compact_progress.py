"""``edgekv compact DATA_DIR`` shows a progress bar on a terminal, and nothing otherwise.

The terminal is a real pseudo-terminal (``os.openpty``): the command cannot tell it from a
person's.  Without one (a pipe, as in scripts and CI) and with ``--json``, no bar is drawn."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from clitest_helpers import ENV, REPO, edgekv

from engine import Store

BAR_TEXT = "Compacting"
ESC = "\x1b["


@pytest.fixture
def store_with_dead_bytes(tmp_path):
    """A store whose compaction takes long enough for the bar to be drawn a few times."""
    path = tmp_path / "data"
    with Store.open(str(path), fsync="no", segment_bytes=1024 * 1024) as store:
        ns = store.namespace()
        for version in range(3):
            value = b"%d" % version * 200
            for i in range(20_000):
                ns.put_raw(b"key:%08d" % i, value, durable=False)
    return path


def run_in_terminal(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``edgekv ARGS`` with stdin, stdout and stderr on a pseudo-terminal."""
    master, slave = os.openpty()
    env = {**ENV, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", *args], cwd=REPO, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_compact_draws_a_progress_bar_on_a_terminal(store_with_dead_bytes):
    code, screen = run_in_terminal("compact", str(store_with_dead_bytes))
    assert code == 0, screen
    assert BAR_TEXT in screen, screen
    assert ESC in screen  # drawn and redrawn in place
    # The bar counts bytes of the old segments copied ("1.1/16.7 MB"), up to all of them.
    counts = [(float(a), float(b)) for a, b in re.findall(r"([\d.]+)/([\d.]+) [kMG]?B", screen)]
    assert len(counts) >= 2 and all(done <= total for done, total in counts), screen
    assert counts[-1][0] == counts[-1][1], screen
    assert re.search(r"Compacted \d+ segments into \d+", screen), screen


def test_compact_is_quiet_when_not_on_a_terminal(store_with_dead_bytes):
    result = edgekv("compact", str(store_with_dead_bytes))
    assert result.returncode == 0, result.stderr
    assert BAR_TEXT not in result.stderr and ESC not in result.stderr
    assert ESC not in result.text
    assert result.text.startswith("Compacted ")


def test_compact_json_draws_no_bar_even_on_a_terminal(store_with_dead_bytes):
    code, screen = run_in_terminal("compact", str(store_with_dead_bytes), "--json")
    assert code == 0, screen
    assert BAR_TEXT not in screen and ESC not in screen, screen
    summary = json.loads(screen.replace("\r\n", "\n"))
    assert summary["bytes_after"] < summary["bytes_before"]
