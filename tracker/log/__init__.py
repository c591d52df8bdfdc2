"""The event log: the port (`EventLog`) and the one place a log is opened from its location.

The wing's files, one job each: `base` (the port and its records), `sqlite` (`SQLiteLog`: open,
migrate, append, read), `schema` (schema.sql and its migrations), `lock` (the flock), `rows` (how
projection rows are written), `rebuild` (replay and repair), `sqlite_stats` (the stats queries),
`sqlite_query` (`tracker query`'s read-only statement); the fleet's shared log: `mysql`
(`MySQLLog`: append, fold, read, check), `mysql_server` (connect, errors, `migrate --shared`,
the schema's compatibility), `mysql_probe` (what `tracker doctor` asks the server), `mysql_stats`
(the stats queries over the folded projections), `mysql_query` (`tracker query`), `mysql_lease`
(the watchers' leases: one watcher per app fleet-wide), `mysql_budget` (the fleet-wide API
budget: a token's calls reserved in one round trip);
`fleet` (`FleetLog`: this machine's SQLite log as a cache of the shared one, plus an outbox).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.errors import ConfigError
from tracker.log.base import Append, EventLog, LogCheck, QueryRows, RebuildReport

if TYPE_CHECKING:
    from tracker.clock import Clock

__all__ = [
    "Append", "EventLog", "LogCheck", "QueryRows", "RebuildReport", "fleet_url", "open_log"
]  # fmt: skip

LOG_URL_ENV = "TRACKER_LOG_URL"


def fleet_url(env: Mapping[str, str] | None = None) -> str | None:
    """`TRACKER_LOG_URL` when it is set (fleet mode, SPEC §10); None: this machine's log alone,
    exactly as without fleet mode."""
    found = (os.environ if env is None else env).get(LOG_URL_ENV, "").strip()
    return found or None


def open_log(
    target: Path | str, *, clock: Clock | None = None, lock_timeout: float = 10.0, **options: Any
) -> EventLog:
    """The log at `target`: a file path gives the SQLite backend (`tracker.log.sqlite.SQLiteLog`),
    a `mysql://` URL the fleet's shared log (`tracker.log.mysql.MySQLLog`, SPEC §10; password
    from `TRACKER_LOG_PASSWORD`).

    `lock_timeout` (seconds a writer waits for its turn) is fixed here for the log's life: a
    caller that needs a longer wait (a monitor: as long as a deployment may take) opens its own
    log with it rather than change another's."""
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

    url = fleet_url()
    if url is not None:
        from tracker.log.fleet import FleetLog

        return FleetLog.open(
            Path(text), url, clock=clock or SYSTEM_CLOCK, lock_timeout=lock_timeout, **options
        )
    from tracker.log.sqlite import SQLiteLog

    return SQLiteLog(Path(text), clock=clock or SYSTEM_CLOCK, lock_timeout=lock_timeout, **options)
