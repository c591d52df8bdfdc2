"""The log's lock: an exclusive kernel `flock` on a file beside the database, and owner-only files.

Every writer (the hook's confirmer, the monitors, `tracker rebuild`) takes it around its write
transaction, so that events are numbered in commit order. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracker.errors import LockTimeoutError


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file `path` (created owner-only); the caller closes it."""
    create_private(path)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


@contextmanager
def held(fd: int, timeout: float, path: Path) -> Iterator[None]:
    """Hold the exclusive lock on `fd` (the file `path`), waiting at most `timeout` s."""
    flock(fd, timeout, path)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        # Let a waiter woken by this release run before we can come back for the lock:
        # without it a busy writer takes the lock again ahead of the queue (32 writers
        # saturating two cores: p99 80-98 ms without, 56-64 ms with; bench/README.md).
        os.sched_yield()


def create_private(path: Path) -> None:
    """Create `path` (and its directory) readable by the owner only, if missing."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    os.close(fd)


def flock(fd: int, timeout: float, path: Path) -> None:
    """Take an exclusive flock on `fd`, waiting at most `timeout` seconds.

    The fast path is one non-blocking attempt. Under contention a helper thread makes a
    blocking (kernel-queued) `flock` call while we wait on an event with a timeout: the kernel
    wakes the waiter the moment the lock is free, without the polling that starves the holder of
    CPU on a small machine (see reference/sqlite-event-store.md). If we give up first, the helper
    releases the lock as soon as it gets it.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    if timeout <= 0:
        raise lock_timeout(path, timeout)
    helper_fd = os.dup(fd)  # flock locks belong to the open file description, shared by dups
    got = threading.Event()
    abandoned = threading.Event()
    guard = threading.Lock()

    def wait_for_lock() -> None:
        try:
            fcntl.flock(helper_fd, fcntl.LOCK_EX)
            with guard:
                if abandoned.is_set():
                    fcntl.flock(helper_fd, fcntl.LOCK_UN)
                else:
                    got.set()
        finally:
            os.close(helper_fd)

    threading.Thread(target=wait_for_lock, name="tracker-lock", daemon=True).start()
    if got.wait(timeout):
        return
    with guard:
        if got.is_set():
            return
        abandoned.set()
    raise lock_timeout(path, timeout)


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on `fd` if it is free at once; whether it was."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_timeout(path: Path, timeout: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"another process has held the lock {path} for more than {timeout:g} s; try again"
        " (`fuser` on that file shows who holds it)"
    )
