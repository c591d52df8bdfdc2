"""The SQLite event log (`SQLiteLog`): open and migrate, append with the inline projection, read.

Every append takes the exclusive `flock` beside the database (`tracker.log.lock`), opens
`BEGIN IMMEDIATE`, inserts the event, folds it into the projection rows (`tracker.log.rows`) and
the checkpoint, and commits: one transaction, so a crash leaves all of it or none of it. The
rebuild (`tracker.log.rebuild`), the stats queries (`sqlite_stats`) and `tracker query`
(`sqlite_query`) live beside it. Standard library only: the push hook's confirmer imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.errors import LockTimeoutError, LogError, TrackerError, UsageError
from tracker.events import Event
from tracker.log import lock, rows
from tracker.log.base import Append, LogCheck, QueryRows, RebuildReport
from tracker.log.errors import log_errors
from tracker.log.rows import PROJECTION
from tracker.log.schema import migrations, run_pending
from tracker.projections import (
    ROW_COLUMNS,
    DeploymentRow,
    StoredEvent,
    apply,
    measure_rows,
    source_call,
)

if TYPE_CHECKING:
    from tracker.log.sqlite_stats import SQLiteStatsQueries

__all__ = ["PROJECTION", "Append", "RebuildReport", "SQLiteLog"]

T = TypeVar("T")
_SHA = re.compile(r"^[0-9a-f]{40}$")


class SQLiteLog:
    """The event log at `path` (created owner-only, migrated on open).

    `lock_timeout` is how long a writer waits for the lock; it is set here, once (`patience`
    shortens the wait for one block without changing it).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lock_timeout: float = 10.0,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self.path = Path(path)
        with log_errors(self.path, "open"):
            directory = not self.path.name or self.path.is_dir()  # is_dir: ENAMETOOLONG raises
        if directory:
            raise LogError(
                f"the log {self.path} is a directory: name a file, such as"
                f" {self.path / 'events.db'}"
            )
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.clock = clock
        self.lock_timeout = lock_timeout
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
            raise UsageError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        self._patience: float | None = None
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection of this process (opened, migrated and replayed if asked, on first use)."""
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
            with log_errors(self.path, "open"):
                pending = rows.replay_pending(self._conn)
            if pending:  # a migration asked for it: rare, so the rebuild is imported only then
                from tracker.log.rebuild import replay_if_pending

                replay_if_pending(self)
        return self._conn

    def _open(self) -> sqlite3.Connection:
        with log_errors(self.path, "open"):
            lock.create_private(self.path)
            busy_ms = self._busy_ms()
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_ms / 1000, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            use_wal(conn, busy_ms / 1000)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
            self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        pending = [(n, sql) for n, sql in migrations() if n > current]
        if not pending:
            return
        with self.locked():
            _begin_immediate(conn, self.path)
            try:
                run_pending(conn, pending)
                conn.execute("COMMIT")
            except BaseException:
                rows.rollback(conn)
                raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lock -------------------------------------------------------------------------------

    @contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive file lock beside the database (kernel `flock`, fair and cheap)."""
        wait = self._lock_wait() if timeout is None else timeout
        with log_errors(self.lock_path, "lock"):
            fd = lock.open_lock_file(self.lock_path)
        try:
            with lock.held(fd, wait, self.lock_path):
                yield
        finally:
            os.close(fd)

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within it, wait at most `seconds` for the lock and for SQLite's own write lock (held
        by another client that ignores ours): a reader taking in the spool gives up quickly and
        answers from what it can read, rather than wait out the lock timeout."""
        saved = self._patience
        self._patience = seconds if saved is None else min(saved, seconds)
        self._set_busy_timeout()
        try:
            yield
        finally:
            self._patience = saved
            self._set_busy_timeout()

    def _lock_wait(self) -> float:
        if self._patience is None:
            return self.lock_timeout
        return min(self.lock_timeout, self._patience)

    def _busy_ms(self) -> int:
        if self._patience is None:
            return int(self.busy_timeout_ms)
        return int(min(self.busy_timeout_ms, int(self._patience * 1000)))

    def _set_busy_timeout(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA busy_timeout = {self._busy_ms()}")

    # -- writing ----------------------------------------------------------------------------

    def append(
        self, stream: str, event: Event, *, key: str | None = None, at: float | None = None
    ) -> StoredEvent | None:
        """Append one event; None when its key was already recorded or it is a late verdict."""
        stored = self.append_all([Append(stream, event, key, at)])
        return stored[0] if stored else None

    def append_all(self, batch: Sequence[Append]) -> list[StoredEvent]:
        """Append events in one transaction; returns those actually written, in order."""
        if not batch:
            return []
        with log_errors(self.path, "append to"):
            return self.transaction(
                lambda conn: [s for s in (self._insert(conn, item) for item in batch) if s]
            )

    def _insert(self, conn: sqlite3.Connection, item: Append) -> StoredEvent | None:
        if item.key is not None:
            hit = conn.execute("SELECT 1 FROM events WHERE key = ?", (item.key,)).fetchone()
            if hit:
                return None
        row = rows.read_row(conn, item.stream)
        if item.event.TERMINAL and row is not None and row.terminal:
            return None  # the outcome is recorded once; a second verdict is not a new fact
        version = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM events WHERE stream = ?", (item.stream,)
        ).fetchone()[0]
        recorded_at = iso(self.clock.now() if item.at is None else item.at)
        data = item.event.to_data()
        cursor = conn.execute(
            "INSERT INTO events (stream, version, type, recorded_at, data, key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (item.stream, version, item.event.TYPE, recorded_at, rows.dumps(data), item.key),
        )
        seq = int(cursor.lastrowid or 0)
        stored = StoredEvent(
            seq, item.stream, version, item.event.TYPE, recorded_at, data, item.key
        )
        new_row = apply(row, item.event, stored)
        if new_row is not None:
            rows.write_row(conn, row, new_row)
            old, new = measure_rows(row), measure_rows(new_row)
            if old != new:
                rows.write_measures(conn, old - new, new - old)
        call = source_call(item.event, stored, new_row)
        if call is not None:
            rows.insert_calls(conn, [call])
        conn.execute(
            "INSERT INTO projection_checkpoints (name, last_seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
            " WHERE excluded.last_seq > projection_checkpoints.last_seq",
            (PROJECTION, seq),
        )
        return stored

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a write transaction under the lock (appends, the rebuild's repair)."""
        conn = self.conn
        with self.locked():
            _begin_immediate(conn, self.path)
            try:
                done = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                rows.rollback(conn)
                raise
        return done

    # -- reading ----------------------------------------------------------------------------

    def deployment(self, sha: str) -> DeploymentRow | None:
        """The projection row of one commit."""
        with log_errors(self.path, "read"):
            return rows.read_row(self.conn, sha)

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        """API calls made by every monitor on this machine in the minute and the hour up to
        `now`: what the token's rate limits (per minute, per hour) count."""
        from tracker.log.sqlite_stats import api_calls_by_window

        with log_errors(self.path, "read"):
            return api_calls_by_window(self.conn, now)

    def events(
        self,
        *,
        stream: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredEvent]:
        """Events in log order; with `newest`, the last `limit` of them (still in log order)."""
        sql = f"SELECT {rows.EVENT_COLUMNS} FROM events WHERE seq > ?"
        args: list[Any] = [after_seq]
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        sql += " ORDER BY seq DESC" if newest else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with log_errors(self.path, "read"):
            found = self.conn.execute(sql, args).fetchall()
        events = [StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in found]
        return events[::-1] if newest else events

    def deployments(
        self, *, since: float | None = None, branch: str | None = None
    ) -> list[DeploymentRow]:
        """Projection rows, oldest push first, optionally since a time and on one branch (the
        watcher reads the app's open pushes so)."""
        sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM deployments WHERE 1"
        args: list[Any] = []
        if since is not None:
            sql += " AND coalesce(pushed_at, last_event_at) >= ?"
            args.append(since)
        if branch is not None:
            sql += " AND branch = ?"
            args.append(branch)
        with log_errors(self.path, "read"):
            found = self.conn.execute(sql + " ORDER BY pushed_at, sha", args).fetchall()
        return [DeploymentRow(*r) for r in found]

    def shas_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Commits in the log whose SHA starts with `prefix` (lowercase hex)."""
        upper = prefix + "g"  # 'g' sorts after every hex digit
        with log_errors(self.path, "read"):
            found = self.conn.execute(
                "SELECT DISTINCT stream FROM events WHERE stream >= ? AND stream < ? LIMIT ?",
                (prefix, upper, limit),
            ).fetchall()
        return [r[0] for r in found if _SHA.match(r[0])]

    def known_keys(self, keys: Collection[str]) -> set[str]:
        """Which of these idempotency keys the log already holds (a read: no lock)."""
        if not keys:
            return set()
        marks = ", ".join("?" for _ in keys)
        with log_errors(self.path, "read"):
            found = self.conn.execute(
                f"SELECT key FROM events WHERE key IN ({marks})", list(keys)
            ).fetchall()
        return {r[0] for r in found}

    def last_seq(self) -> int:
        with log_errors(self.path, "read"):
            return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    @contextmanager
    def stats_queries(self) -> Iterator[SQLiteStatsQueries]:
        """The stats queries (`tracker.log.sqlite_stats`), in one read transaction."""
        from tracker.log.sqlite_stats import SQLiteStatsQueries

        with log_errors(self.path, "read"):
            conn = self.conn
            conn.execute("BEGIN")  # one snapshot for every query
            try:
                yield SQLiteStatsQueries(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextmanager
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[QueryRows]:
        """One read-only statement, on a connection of its own (`tracker.log.sqlite_query`)."""
        from tracker.log.sqlite_query import read_only_query

        with log_errors(self.path, "read"):
            _ = self.conn  # a new log is created and migrated here: there is something to read
        with read_only_query(self.path, sql, params or {}) as found:
            yield found

    # -- upkeep -----------------------------------------------------------------------------

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """Recompute every projection from the log alone, fix the rows that differ, report them
        (`tracker.log.rebuild`: a snapshot, replayed by `workers` processes, appends going on)."""
        from tracker.log.rebuild import rebuild

        with log_errors(self.path, "rebuild"):
            return rebuild(self, workers)

    def integrity_check(self) -> str:
        """`ok`, or what SQLite's `PRAGMA integrity_check` finds wrong with the file."""
        with log_errors(self.path, "check"):
            return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def check(self) -> LogCheck:
        """Whether the file is sound (SQLite's integrity check) and the lock can be taken within
        the lock timeout: each failure is kept, not raised, for `tracker doctor` to word."""
        integrity: str | None = None
        events: int | None = None
        storage_error: TrackerError | None = None
        lock_error: TrackerError | None = None
        try:
            integrity = self.integrity_check()
            events = self.last_seq()
        except TrackerError as exc:
            storage_error = exc
        try:
            with self.locked():
                pass
        except TrackerError as exc:
            lock_error = exc
        return LogCheck(
            str(self.path), str(self.lock_path), integrity, events, storage_error, lock_error
        )


def use_wal(conn: sqlite3.Connection, patience: float) -> None:
    """Put the file in WAL mode (once per file: it stays so). Two processes opening a new file
    at once may both try; SQLite then answers the loser "database is locked" at once, without
    its busy handler, so it is asked again until `patience` has passed."""
    deadline = SYSTEM_CLOCK.monotonic() + patience
    pause = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or SYSTEM_CLOCK.monotonic() > deadline:
                raise
            SYSTEM_CLOCK.sleep(pause)
            pause = min(pause * 2, 0.1)


def _begin_immediate(conn: sqlite3.Connection, path: Path) -> None:
    """`BEGIN IMMEDIATE`; SQLite's write lock still held by another client after the busy
    timeout (one that ignores our file lock: `sqlite3` with `BEGIN EXCLUSIVE`) is a lock that
    could not be taken in time (75, try again), not a broken log (74)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        raise LockTimeoutError(
            f"another SQLite client holds a write transaction on {path}; try again"
        ) from exc
