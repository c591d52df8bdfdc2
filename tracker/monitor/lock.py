"""The watcher's lock: one watcher per app per log (`AppLock`, a `filelock` at
`<log dir>/watch-<platform>-<app>.lock` held for the watcher's life), with who holds it written
next to it (`watch-<platform>-<app>.json`) for the messages. It replaces the per-commit
`monitors/<sha>.lock` of one monitor per commit."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from tracker.clock import SYSTEM_CLOCK, iso


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started_at: str


def _holder(info: Path) -> Holder:
    try:
        data = json.loads(info.read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(0, "unknown", "unknown")


def app_key(platform: str, app: str) -> str:
    """A file-name-safe key for one app of one platform (`digitalocean-<id>`)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", app)[:80]
    if safe != app:  # two ids that differ only in unsafe characters keep two locks
        safe += "-" + hashlib.sha256(app.encode()).hexdigest()[:12]
    return f"{platform}-{safe}"


class AppLock:
    """The one-watcher-per-app lock: `acquire` without waiting; `free` asks whether anyone holds
    it (a reader finding it free while a commit is open resumes the watcher)."""

    def __init__(self, log_dir: Path, key: str) -> None:
        from filelock import FileLock

        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = log_dir / f"watch-{key}.lock"
        self.info = log_dir / f"watch-{key}.json"
        self._lock = FileLock(str(self.path), timeout=0, mode=0o600, thread_local=False)

    @property
    def held(self) -> bool:
        return bool(self._lock.is_locked)

    def acquire(self) -> Holder | None:
        """Take the lock: None when we hold it now, else who does."""
        from filelock import Timeout

        if self._lock.is_locked:
            return None
        try:
            self._lock.acquire()
        except Timeout:
            return _holder(self.info)
        me = Holder(os.getpid(), socket.gethostname(), iso(SYSTEM_CLOCK.now()))
        fd = os.open(self.info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(me.__dict__, out)
        return None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def free(self) -> bool:
        """Whether nobody holds the lock (we take it for an instant to know)."""
        if self._lock.is_locked:
            return False
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            return False
        self._lock.release(force=True)
        return True
