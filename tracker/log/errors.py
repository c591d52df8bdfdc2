"""SQLite's and the file system's failures, said as one clear `LogError` line."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracker.errors import LogError


@contextmanager
def log_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn SQLite and file-system failures into `LogError` with one clear line."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise LogError(_explain(path, doing, exc)) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise LogError(f"cannot {doing} the log {path}: the disk is full") from exc
        raise LogError(f"cannot {doing} the log {path}: {exc.strerror or exc}") from exc


def _explain(path: Path, doing: str, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (
            f"the log {path} is corrupt ({text}); move it aside (mv {path} {path}.corrupt) to"
            f" start a new one, and try `sqlite3 {path}.corrupt .recover` to save its events"
        )
    if "disk is full" in text or "disk I/O" in text:
        return f"cannot {doing} the log {path}: {text} (is the disk full?)"
    if "readonly" in text or "unable to open" in text:
        return f"cannot {doing} the log {path}: {text} (check the permissions of its directory)"
    return f"cannot {doing} the log {path}: {text}"
