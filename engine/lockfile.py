"""The data directory's lock: one process at a time, and a clear error for the second."""

from __future__ import annotations

import fcntl
import os

from .errors import StoreLockedError

LOCK_NAME = "LOCK"


class DirectoryLock:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, LOCK_NAME)
        self._fd = -1

    def acquire(self) -> None:
        # O_CREAT without O_TRUNC: the holder's pid stays readable for the error message.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"data directory {os.path.dirname(self.path)} is in use by another edgekv "
                f"process (pid {holder}); stop it or choose another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = -1
