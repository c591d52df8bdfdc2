"""The fleet's watch leases on MySQL (SPEC §10, design/fleet.md §2.3): one watcher per app.

A lease is a row of `watch_leases` (schema.mysql.sql, migration 2) with an expiry on the
server's clock (`NOW(6)`: no client clock counts, so clock skew does not matter). A watcher
takes it (inserting it, or taking over an expired one: the fence number moves on), renews it
every TTL/3 while it still holds it (its holder and fence unchanged), and lets it expire at once
when it leaves. Each append it makes is fenced with (holder, fence) (`tracker.log.mysql`), so
once another watcher has taken over, the old holder's late appends are refused.

A holder that takes its own expired lease again (its renewals could not reach the server for a
while, and nobody took over) keeps its fence: its tenure never ended, and its appends waiting in
the outbox meanwhile are still its facts. A lease row no one holds any longer is never deleted.

Functions over a pymysql cursor, and `LeaseLink`: one connection of its own (a watcher renews
from a thread, beside the appends of its main thread), with the server's failures as `LogError`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracker.config import MySQLSettings
from tracker.errors import LogError
from tracker.log.base import Lease
from tracker.log.mysql_server import connect, explain

if TYPE_CHECKING:
    from pymysql.connections import Connection

LEASE_TTL_ENV = "TRACKER_LEASE_TTL"
DEFAULT_LEASE_TTL_S = 15.0
LEASE_COLUMNS = "app, holder, host, pid, fence, TIMESTAMPDIFF(MICROSECOND, NOW(6), expires_at)"

# Assignments run left to right (MySQL; MariaDB without SIMULTANEOUS_ASSIGNMENT), so each one
# below still sees the holder before the take; only `expires_at` sees the new one.
_TAKE = """INSERT INTO watch_leases (app, holder, host, pid, fence, expires_at)
VALUES (%s, %s, %s, %s, 1, NOW(6) + INTERVAL %s MICROSECOND)
ON DUPLICATE KEY UPDATE
  fence = IF(expires_at < NOW(6) AND holder <> VALUES(holder), fence + 1, fence),
  host = IF(expires_at < NOW(6) OR holder = VALUES(holder), VALUES(host), host),
  pid = IF(expires_at < NOW(6) OR holder = VALUES(holder), VALUES(pid), pid),
  holder = IF(expires_at < NOW(6), VALUES(holder), holder),
  expires_at = IF(holder = VALUES(holder), NOW(6) + INTERVAL %s MICROSECOND, expires_at)"""


def lease_ttl(env: Mapping[str, str] | None = None) -> float:
    """`TRACKER_LEASE_TTL` (default 15 s): how long a watcher's lease lasts unrenewed (it is
    renewed every third of it), so how soon another machine resumes a watcher that died."""
    from tracker.config import parse_duration

    value = (os.environ if env is None else env).get(LEASE_TTL_ENV, "").strip()
    if not value:
        return DEFAULT_LEASE_TTL_S
    return parse_duration(value, LEASE_TTL_ENV, positive=True, maximum=3600.0, example="15 or 1m")


def _micros(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))


def lease_of(row: Any) -> Lease:
    app, holder, host, pid, fence, left = row
    return Lease(_text(app), _text(holder), _text(host), int(pid), int(fence), int(left) / 1e6)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def read(cur: Any, app: str) -> Lease | None:
    """The lease of `app` now; None when nobody ever took it."""
    cur.execute(f"SELECT {LEASE_COLUMNS} FROM watch_leases WHERE app = %s", (app,))
    found = cur.fetchone()
    return None if found is None else lease_of(found)


def read_all(cur: Any) -> list[Lease]:
    """Every app's lease now (what a pull keeps, for `status` to judge `stale` by)."""
    cur.execute(f"SELECT {LEASE_COLUMNS} FROM watch_leases ORDER BY app")
    return [lease_of(r) for r in cur.fetchall()]


def take(cur: Any, app: str, holder: str, host: str, pid: int, ttl: float) -> Lease:
    """Take the lease of `app` for `ttl` seconds unless another holder's has not expired; the
    lease as it is now (ours iff its holder is `holder`)."""
    cur.execute(_TAKE, (app, holder, host, pid, _micros(ttl), _micros(ttl)))
    found = read(cur, app)
    if found is None:  # not possible after the insert: a server that lost it
        raise LogError(f"the lease of {app} was not stored")
    return found


def renew(cur: Any, app: str, holder: str, fence: int, ttl: float) -> Lease | None:
    """Move the expiry `ttl` on while (holder, fence) still holds the lease; the lease now (not
    ours when another watcher took it over)."""
    cur.execute(
        "UPDATE watch_leases SET expires_at = NOW(6) + INTERVAL %s MICROSECOND"
        " WHERE app = %s AND holder = %s AND fence = %s",
        (_micros(ttl), app, holder, fence),
    )
    return read(cur, app)


def release(cur: Any, app: str, holder: str, fence: int) -> None:
    """Let the lease expire now, if it is still ours (the next watcher need not wait)."""
    cur.execute(
        "UPDATE watch_leases SET expires_at = NOW(6) WHERE app = %s AND holder = %s AND fence = %s",
        (app, holder, fence),
    )


class LeaseLink:
    """A connection of its own to the shared log, for taking, renewing and releasing a lease;
    a failure is a `LogError` (the connection is opened again next time)."""

    def __init__(self, settings: MySQLSettings, *, timeout: float = 5.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._conn: Connection | None = None

    def _run(self, doing: str, work: Any) -> Any:
        try:
            if self._conn is None:
                self._conn = connect(self.settings, timeout=self.timeout)
            with self._conn.cursor() as cur:
                return work(cur)
        except LogError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise LogError(explain(self.settings, doing, exc)) from exc

    def take(self, app: str, holder: str, host: str, pid: int, ttl: float) -> Lease:
        found: Lease = self._run(
            "take a lease in", lambda cur: take(cur, app, holder, host, pid, ttl)
        )
        return found

    def renew(self, app: str, holder: str, fence: int, ttl: float) -> Lease | None:
        found: Lease | None = self._run(
            "renew a lease in", lambda cur: renew(cur, app, holder, fence, ttl)
        )
        return found

    def release(self, app: str, holder: str, fence: int) -> None:
        self._run("release a lease in", lambda cur: release(cur, app, holder, fence))

    def read(self, app: str) -> Lease | None:
        found: Lease | None = self._run("read a lease in", lambda cur: read(cur, app))
        return found

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
