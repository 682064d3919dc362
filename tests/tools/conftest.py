"""Fixtures for the command-line tests: a shared server and per-test targets."""

from __future__ import annotations

import os

import pytest
from clitest_helpers import edgekv, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    srv = start_server(base / "data", base / "server.log")
    yield srv
    srv.stop()


_counter = [0]


@pytest.fixture(params=["local", "remote"])
def where(request, tmp_path):
    """CLI arguments that point at a fresh namespace-isolated store, locally or remotely."""
    if request.param == "local":
        return ["--data-dir", str(tmp_path / "data")]
    srv = request.getfixturevalue("server")
    return ["--remote", srv.url]


@pytest.fixture
def ns_title(where):
    """A namespace of its own for each test, so remote tests can share one server."""
    _counter[0] += 1
    title = f"t{os.getpid()}-{_counter[0]}"
    result = edgekv("kv", "namespace", "create", title, *where, "--json")
    assert result.returncode == 0, result.stderr
    return title
