"""The event log: the port (`EventLog`) and the one place a log is opened from its location."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.errors import ConfigError
from tracker.log.base import EventLog

if TYPE_CHECKING:
    from tracker.clock import Clock

__all__ = ["EventLog", "open_log"]


def open_log(
    target: Path | str, *, clock: Clock | None = None, lock_timeout: float = 10.0, **options: Any
) -> EventLog:
    """The log at `target`: a file path gives the SQLite backend (`tracker.log.sqlite.SQLiteLog`),
    a `mysql://` URL the fleet's shared log (`tracker.log.mysql.MySQLLog`, SPEC §10; password
    from `TRACKER_LOG_PASSWORD`)."""
    text = str(target)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme in ("mysql", "mysql+pymysql"):
            from tracker.clock import SYSTEM_CLOCK
            from tracker.log.mysql import MySQLLog

            return MySQLLog.from_url(
                text, clock=clock or SYSTEM_CLOCK, lock_timeout=lock_timeout, **options
            )
        raise ConfigError(
            f"a log at a {scheme}:// URL is not supported: give a file path or mysql://"
        )
    from tracker.clock import SYSTEM_CLOCK
    from tracker.log.sqlite import SQLiteLog

    return SQLiteLog(Path(text), clock=clock or SYSTEM_CLOCK, lock_timeout=lock_timeout, **options)
