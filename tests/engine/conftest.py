"""Fixtures for the engine tests: a fake clock and stores on real temporary directories."""

from __future__ import annotations

import pytest

from engine import Store
from kvtest_helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_store(tmp_path, clock):
    """``open_store(**kwargs)`` opens ``tmp_path/"data"`` (or ``path=``) with the fake clock;
    every store it opened is closed at teardown (closing twice is harmless)."""
    opened: list[Store] = []

    def _open(path=None, **kwargs) -> Store:
        kwargs.setdefault("clock", clock)
        store = Store.open(str(path or tmp_path / "data"), **kwargs)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
