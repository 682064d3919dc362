"""Real small and failing disks for the full-disk tests: a tmpfs of a given size, a file that
fills it, and ext4 on a loop device whose fsync fails with EIO.  Needs root (mount, losetup);
each helper skips the test when the machine does not allow it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def unmount(path: Path) -> None:
    if run("umount", str(path)).returncode != 0:
        run("umount", "-l", str(path))


@contextmanager
def tmpfs(path: Path, size: str):
    """Mount a tmpfs of ``size`` at ``path`` for the block; skip the test if mounting is not
    permitted here."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        unmount(path)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file until the disk is full; deleting it gives the space back."""
    path = directory / name
    chunk = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    break
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    finally:
        os.close(fd)
    return path


@contextmanager
def ext4_that_fails_fsync(tmp_path: Path, backing_size: str = "3m"):
    """ext4 (64 MiB as far as it knows) on a loop device whose backing file sits on a tmpfs of
    ``backing_size``: writes land in the page cache, and the fsync that has to write them
    back past the tmpfs's end fails with EIO.  Yields ``(mountpoint, grow)``; ``grow()``
    unmounts, enlarges the tmpfs, checks the file system and mounts it again, which is how
    the acknowledged data is read back after the failure."""
    for tool in ("losetup", "mkfs.ext4", "e2fsck"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    with tmpfs(tmp_path / "backing", backing_size) as backing:
        image = backing / "disk.img"
        with open(image, "wb") as f:
            f.truncate(64 * 1024 * 1024)
        made = run("mkfs.ext4", "-q", "-F", str(image))
        if made.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
        attached = run("losetup", "-f", "--show", str(image))
        if attached.returncode != 0:
            pytest.skip(f"no loop device: {attached.stderr.strip()}")
        device = attached.stdout.strip()
        mnt = tmp_path / "ext4"
        mnt.mkdir()
        mounted = False
        try:
            result = run("mount", device, str(mnt))
            if result.returncode != 0:
                pytest.skip(f"cannot mount ext4 on {device}: {result.stderr.strip()}")
            mounted = True

            def grow() -> None:
                nonlocal mounted
                unmount(mnt)
                mounted = False
                assert run("mount", "-o", "remount,size=96m", str(backing)).returncode == 0
                run("losetup", "-c", device)
                checked = run("e2fsck", "-fy", device)
                assert checked.returncode in (0, 1, 2), checked.stdout + checked.stderr
                again = run("mount", device, str(mnt))
                assert again.returncode == 0, again.stderr
                mounted = True

            yield mnt, grow
        finally:
            if mounted:
                unmount(mnt)
            run("losetup", "-d", device)
