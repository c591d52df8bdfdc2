"""`MySQLSource`: the deployments table, one bound-parameter query per poll (pymysql).

The table and column names enter the SQL only after the identifier check, backquoted; the SHA is
always a bound parameter. One connection is kept across polls (autocommit, so every poll sees
rows committed since the last one) and dropped on any connection failure, so the next poll
reconnects. `poll` never raises: every failure becomes an `Observation` with a short, scrubbed
error that never carries the password.

Each poll, connecting and querying together, ends within `connect_timeout` of real time whatever
the server does: pymysql's timeouts bound each read, so a handshake dripped a byte a second would
go on for minutes. We open the socket ourselves and an `_Alarm` shuts it down at the deadline,
which wakes the blocked read at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tracker.clock import MAX_CLOCK_SKEW_S, SYSTEM_CLOCK, Clock, parse_iso
from tracker.config import MySQLSettings, identifier
from tracker.monitor.sources.base import LogTail, Observation, Tick
from tracker.mysqlwire import (
    describe_error,
    timeout_message,
    tls_arguments,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection

SUCCESS_STATUS = "success"
FAILED_STATUS = "failed"
CHECK_SHA = "0" * 40  # a commit no table holds: `check()` proves the query runs, not a match
MAX_STATUS_CHARS = 200  # a status value is a word; a column of megabytes is not kept whole


def build_query(settings: MySQLSettings, *, with_time: bool = False) -> str:
    """The poll query with the checked, backquoted names; `%s` is the bound SHA.

    `with_time` also selects the row's time (for a commit pushed again: only a row created at
    or after that push is its own)."""
    table = identifier(settings.table, "TRACKER_MYSQL_TABLE")
    sha = identifier(settings.sha_column, "TRACKER_MYSQL_SHA_COLUMN")
    status = identifier(settings.status_column, "TRACKER_MYSQL_STATUS_COLUMN")
    created = identifier(settings.time_column, "TRACKER_MYSQL_TIME_COLUMN")
    what = f"`{status}`, `{created}`" if with_time else f"`{status}`"
    return f"SELECT {what} FROM `{table}` WHERE `{sha}` = %s ORDER BY `{created}` DESC LIMIT 1"


def build_query_all(settings: MySQLSettings, count: int) -> str:
    """The watcher's query: every row of `count` commits (`%s` each), newest first, with the
    SHA and the time, so that one query answers for every open commit of the app."""
    table = identifier(settings.table, "TRACKER_MYSQL_TABLE")
    sha = identifier(settings.sha_column, "TRACKER_MYSQL_SHA_COLUMN")
    status = identifier(settings.status_column, "TRACKER_MYSQL_STATUS_COLUMN")
    created = identifier(settings.time_column, "TRACKER_MYSQL_TIME_COLUMN")
    marks = ", ".join(["%s"] * max(count, 1))
    return (
        f"SELECT `{sha}`, `{status}`, `{created}` FROM `{table}` WHERE `{sha}` IN ({marks})"
        f" ORDER BY `{created}` DESC"
    )


def row_time(value: Any) -> float | None:
    """A row's time as epoch seconds: a DATETIME without a zone is taken as UTC (as
    `UTC_TIMESTAMP()` writes it), a number as epoch seconds; None when it is neither."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str | bytes):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return parse_iso(text.strip().replace(" ", "T", 1))
    return None


def phase_of(status: str | None) -> str | None:
    """`success` is ACTIVE, `failed` is ERROR; anything else (or no row) is still in progress."""
    normalised = (status or "").strip().lower()
    return {SUCCESS_STATUS: "ACTIVE", FAILED_STATUS: "ERROR"}.get(normalised)


class MySQLSource:
    """The `DeploymentSource` for a MySQL/MariaDB deployments table."""

    name = "mysql"

    def __init__(self, settings: MySQLSettings, clock: Clock = SYSTEM_CLOCK) -> None:
        self._settings = settings
        self._clock = clock
        self._query = build_query(settings)
        self._timed_query = build_query(settings, with_time=True)
        self._since: dict[str, float] = {}  # sha pushed again -> its rows from this time on
        self._conn: Connection[Any] | None = None
        self._guard: socket.socket | None = None  # a second handle on the connection's socket

    @property
    def query(self) -> str:
        return self._query

    @property
    def server_thread_id(self) -> int | None:
        """The server's id of our connection (for `KILL` in tests, and for diagnostics)."""
        if self._conn is None:
            return None
        thread_id: int = self._conn.thread_id()  # type: ignore[no-untyped-call]
        return thread_id

    def expect(
        self, sha: str, pushed_at: float, *, exclude: Collection[str] = (), again: bool = False
    ) -> None:
        """Say when `sha` was pushed: when it was pushed `again`, a row created before that push
        (give or take the clock skew) judged an earlier attempt and is not found (SPEC §3)."""
        if again:
            self._since[sha] = pushed_at - MAX_CLOCK_SKEW_S
        else:
            self._since.pop(sha, None)

    def poll(self, sha: str) -> Observation:
        """One query for the newest row of `sha`; failures come back as `ok=False`."""
        started = self._clock.monotonic()
        alarm = _Alarm(self._settings.connect_timeout)
        try:
            with alarm:
                row = self._fetch(sha, alarm)
        except Exception as exc:  # a monitor must never crash on a bad answer
            return self._failure(exc, started, timed_out=alarm.rang)
        if alarm.rang:
            self.close()  # it rang as the answer came: the socket is shut, the answer is whole
        latency = self._latency_ms(started)
        since = self._since.get(sha)
        if row is not None and since is not None and not (row_time(row[-1]) or 0.0) >= since:
            row = None  # the newest row is older than this push: an earlier attempt's
        if row is None:
            return Observation(self.name, ok=True, found=False, latency_ms=latency, db_queries=1)
        status = None if row[0] is None else str(row[0])[:MAX_STATUS_CHARS]
        return Observation(
            self.name,
            ok=True,
            found=True,
            phase=phase_of(status),
            status=status,
            latency_ms=latency,
            db_queries=1,
        )

    def poll_all(self, shas: Sequence[str]) -> Tick:
        """One query for every commit in `shas`: each one's newest row (SPEC §6)."""
        started = self._clock.monotonic()
        alarm = _Alarm(self._settings.connect_timeout)
        wanted = list(dict.fromkeys(shas))
        try:
            with alarm:
                rows = self._fetch_all(wanted, alarm)
        except Exception as exc:  # a watcher must never crash on a bad answer
            failed = self._failure(exc, started, timed_out=alarm.rang)
            free = dataclasses.replace(failed, db_queries=0, latency_ms=0.0)
            return Tick(failed, {sha: free for sha in wanted})
        if alarm.rang:
            self.close()
        latency = self._latency_ms(started)
        newest: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            sha = str(row[0] or "").lower()
            since = self._since.get(sha)
            if since is not None and not (row_time(row[2]) or 0.0) >= since:
                continue  # older than this push: an earlier attempt's
            newest.setdefault(sha, row)
        found: dict[str, Observation] = {}
        for sha in wanted:
            mine = newest.get(sha.lower())
            if mine is None:
                found[sha] = Observation(self.name, ok=True, found=False)
                continue
            status = None if mine[1] is None else str(mine[1])[:MAX_STATUS_CHARS]
            found[sha] = Observation(
                self.name, ok=True, found=True, phase=phase_of(status), status=status
            )
        cost = Observation(self.name, ok=True, latency_ms=latency, db_queries=1)
        return Tick(cost, found)

    def _fetch_all(self, shas: Sequence[str], alarm: _Alarm) -> list[tuple[Any, ...]]:
        conn = self._connection(alarm)
        alarm.watch(self._guard)
        with conn.cursor() as cursor:
            cursor.execute(build_query_all(self._settings, len(shas)), tuple(shas))
            rows: list[tuple[Any, ...]] = list(cursor.fetchall())
        return rows

    def fetch_logs(self, deployment_id: str, lines: int = 20) -> LogTail:
        """The table holds no logs."""
        return LogTail()

    def check(self) -> Observation:
        """One real query: proves the server is reachable, we are let in, and the table fits."""
        return self.poll(CHECK_SHA)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        guard, self._guard = self._guard, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone is as good as closed
                conn.close()
        if guard is not None:
            guard.close()

    def _fetch(self, sha: str, alarm: _Alarm) -> tuple[Any, ...] | None:
        conn = self._connection(alarm)
        alarm.watch(self._guard)
        with conn.cursor() as cursor:
            cursor.execute(self._timed_query if sha in self._since else self._query, (sha,))
            row: tuple[Any, ...] | None = cursor.fetchone()
        return row

    def _connection(self, alarm: _Alarm) -> Connection[Any]:
        if self._conn is None:
            import pymysql

            cfg = self._settings
            conn = pymysql.connect(
                defer_connect=True,  # we connect the socket, so that the alarm can shut it
                host=cfg.host,
                port=cfg.port,
                user=cfg.user,
                password=cfg.password,
                database=cfg.database,
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.connect_timeout,
                write_timeout=cfg.connect_timeout,
                # Each SELECT its own transaction: under REPEATABLE READ an open one would hide
                # rows added after the first poll, and hold a metadata lock that blocks the
                # application's own migrations (ALTER TABLE) for as long as the monitor runs.
                autocommit=True,
                charset="utf8mb4",
                **tls_arguments(cfg),
            )
            sock = socket.create_connection((cfg.host, cfg.port), alarm.left())
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                guard = sock.dup()  # TLS takes over `sock`; the duplicate still reaches it
            except OSError:
                sock.close()
                raise
            alarm.watch(guard)
            try:
                conn.connect(sock)
            except BaseException:
                guard.close()
                sock.close()
                raise
            self._conn, self._guard = conn, guard
        return self._conn

    def _failure(self, exc: Exception, started: float, *, timed_out: bool) -> Observation:
        kind, message = describe_error(exc, self._settings)
        if timed_out:
            kind, message = "timeout", timeout_message(self._settings)
        self.close()  # whatever broke, the next poll starts from a fresh connection
        return Observation(
            self.name,
            ok=False,
            error=message,
            error_kind=kind,
            latency_ms=self._latency_ms(started),
            db_queries=1,
        )

    def _latency_ms(self, started: float) -> float:
        return round((self._clock.monotonic() - started) * 1000.0, 3)


class _Alarm:
    """Shuts down the watched socket once `seconds` of real time have passed since entering:
    a read blocked on a server that drips or stays silent then returns at once."""

    def __init__(self, seconds: float) -> None:
        self._until = SYSTEM_CLOCK.monotonic() + seconds
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.rang = False
        self._timer = threading.Timer(seconds, self._ring)
        self._timer.daemon = True

    def left(self) -> float:
        """Seconds until it rings (a tiny positive number once it has)."""
        return max(self._until - SYSTEM_CLOCK.monotonic(), 0.001)

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.rang:
                self._shut()

    def _ring(self) -> None:
        with self._lock:
            if self._done:
                return
            self.rang = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed by the other side
                self._sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Alarm:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
