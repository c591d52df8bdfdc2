"""The monitors' locks: one monitor per commit, held for the monitor's life (a `filelock` beside
the log), with who holds it written next to it for the messages."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracker.clock import SYSTEM_CLOCK, iso


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started_at: str


@contextmanager
def commit_lock(log_dir: Path, sha: str) -> Iterator[Holder | None]:
    """Hold the one-monitor-per-commit lock; yields None when we hold it, else who does."""
    from filelock import FileLock, Timeout

    folder = log_dir / "monitors"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{sha}.lock"), timeout=0, mode=0o600, thread_local=False)
    info = folder / f"{sha}.json"
    try:
        lock.acquire()
    except Timeout:
        yield _holder(info)
        return
    try:
        me = Holder(os.getpid(), socket.gethostname(), iso(SYSTEM_CLOCK.now()))
        fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(me.__dict__, out)
        yield None
    finally:
        lock.release()


def _holder(info: Path) -> Holder:
    try:
        data = json.loads(info.read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(0, "unknown", "unknown")
