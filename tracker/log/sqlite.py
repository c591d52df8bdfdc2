"""The SQLite event log: append, read, lock. The only module that touches SQLite and the lock.

Every append takes an exclusive `flock` on `events.db.lock`, opens `BEGIN IMMEDIATE`, inserts the
event, folds it into the projection rows and the checkpoint, and commits: one transaction, so a
crash leaves all of it or none of it. Standard library only: the push hook's confirmer imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.errors import LockTimeoutError, LogError, UsageError
from tracker.events import Event, event_from
from tracker.projections import (
    CALL_COLUMNS,
    ROW_COLUMNS,
    DeploymentRow,
    SourceCallRow,
    StoredEvent,
    apply,
    evolve,
    measure_rows,
    row_values,
    source_call,
)

PROJECTION = "deployments"
T = TypeVar("T")
_MIGRATION = re.compile(r"^-- migration: (\d+)\s*$", re.MULTILINE)
_SHA = re.compile(r"^[0-9a-f]{40}$")


def schema_text() -> str:
    """`schema.sql`: inside the package in a wheel, at the repository's top in a checkout."""
    here = Path(__file__).resolve().parents[1]  # the package
    for candidate in (here / "schema.sql", here.parent / "schema.sql"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise LogError(f"schema.sql not found beside {here}: the installation is broken")


def migrations(text: str | None = None) -> list[tuple[int, str]]:
    """The numbered migrations of `schema.sql`, in order."""
    text = schema_text() if text is None else text
    parts = _MIGRATION.split(text)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]


@dataclass(frozen=True)
class Append:
    """One event to append to one stream, with its optional idempotency key."""

    stream: str
    event: Event
    key: str | None = None
    at: float | None = None  # recorded_at; default: the store's clock


@dataclass(frozen=True)
class RebuildReport:
    """What `rebuild` found: the rows that differed between the inline projection and a replay
    (each was then replaced by the replay's)."""

    events: int
    rows: int
    differing: tuple[str, ...]  # commits whose `deployments` row differed
    calls_differing: int  # `source_calls` rows wrong, missing or extra (by seq)
    measures_differing: int = 0  # `deployment_measures` rows wrong, missing or extra
    totals_differing: int = 0  # `call_totals`, `measure_totals` rows not equal to their sums

    @property
    def clean(self) -> bool:
        return not (
            self.differing or self.calls_differing or self.measures_differing
            or self.totals_differing
        )  # fmt: skip


class SQLiteLog:
    """The event log at `path` (created owner-only, migrated on open)."""

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
        with _log_errors(self.path, "open"):
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
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
            with _log_errors(self.path, "open"):
                pending = _replay_pending(self._conn)
            if pending:
                self._replay()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        with _log_errors(self.path, "open"):
            _create_private(self.path)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=self.busy_timeout_ms / 1000,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
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
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                for number, sql in pending:
                    if number > current:
                        for statement in _statements(sql):
                            conn.execute(statement)
                        conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
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
        with _log_errors(self.lock_path, "lock"):
            _create_private(self.lock_path)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            _flock(fd, self.lock_timeout if timeout is None else timeout, self.lock_path)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                # Let a waiter woken by this release run before we can come back for the lock:
                # without it a busy writer takes the lock again ahead of the queue (32 writers
                # saturating two cores: p99 80-98 ms without, 56-64 ms with; bench/README.md).
                os.sched_yield()
        finally:
            os.close(fd)

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within it, wait at most `seconds` for the lock and for SQLite's own write lock (held
        by another client that ignores ours): a reader taking in the spool gives up quickly and
        answers from what it can read, rather than wait out the lock timeout."""
        saved = self.lock_timeout, self.busy_timeout_ms
        self.lock_timeout = min(self.lock_timeout, seconds)
        self.busy_timeout_ms = min(self.busy_timeout_ms, int(seconds * 1000))
        self._set_busy_timeout()
        try:
            yield
        finally:
            self.lock_timeout, self.busy_timeout_ms = saved
            self._set_busy_timeout()

    def _set_busy_timeout(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

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
        with _log_errors(self.path, "append to"):
            return self._write(
                lambda conn: [s for s in (self._insert(conn, item) for item in batch) if s]
            )

    def _insert(self, conn: sqlite3.Connection, item: Append) -> StoredEvent | None:
        if item.key is not None:
            hit = conn.execute("SELECT 1 FROM events WHERE key = ?", (item.key,)).fetchone()
            if hit:
                return None
        row = self._row(conn, item.stream)
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
            (item.stream, version, item.event.TYPE, recorded_at, _dumps(data), item.key),
        )
        seq = int(cursor.lastrowid or 0)
        stored = StoredEvent(
            seq, item.stream, version, item.event.TYPE, recorded_at, data, item.key
        )
        new_row = apply(row, item.event, stored)
        if new_row is not None:
            _write_row(conn, row, new_row)
            old, new = measure_rows(row), measure_rows(new_row)
            if old != new:
                _write_measures(conn, old - new, new - old)
        call = source_call(item.event, stored, new_row)
        if call is not None:
            _insert_calls(conn, [call])
        conn.execute(
            "INSERT INTO projection_checkpoints (name, last_seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
            " WHERE excluded.last_seq > projection_checkpoints.last_seq",
            (PROJECTION, seq),
        )
        return stored

    def _row(self, conn: sqlite3.Connection, sha: str) -> DeploymentRow | None:
        cursor = conn.execute(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM deployments WHERE sha = ?", (sha,)
        )
        found = cursor.fetchone()
        return DeploymentRow(*found) if found else None

    # -- reading ----------------------------------------------------------------------------

    def deployment(self, sha: str) -> DeploymentRow | None:
        """The projection row of one commit."""
        with _log_errors(self.path, "read"):
            return self._row(self.conn, sha)

    def deployments(
        self, *, since: float | None = None, branch: str | None = None
    ) -> list[DeploymentRow]:
        """Projection rows, oldest push first, optionally since a time and on one branch."""
        sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM deployments WHERE 1"
        args: list[Any] = []
        if since is not None:
            sql += " AND coalesce(pushed_at, last_event_at) >= ?"
            args.append(since)
        if branch is not None:
            sql += " AND branch = ?"
            args.append(branch)
        with _log_errors(self.path, "read"):
            rows = self.conn.execute(sql + " ORDER BY pushed_at, sha", args).fetchall()
        return [DeploymentRow(*r) for r in rows]

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        """API calls made by every monitor on this machine in the minute and the hour up to
        `now`: what the token's rate limits (per minute, per hour) count."""
        with _log_errors(self.path, "read"):
            found = self.conn.execute(
                "SELECT coalesce(sum(CASE WHEN at > ? THEN api_calls END), 0),"
                " coalesce(sum(api_calls), 0) FROM source_calls WHERE at > ? AND at <= ?",
                (now - 60.0, now - 3600.0, now),
            ).fetchone()
        return int(found[0]), int(found[1])

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for other modules' read-only queries; failures become `LogError`."""
        with _log_errors(self.path, "read"):
            yield self.conn

    def events(
        self,
        *,
        stream: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredEvent]:
        """Events in log order; with `newest`, the last `limit` of them (still in log order)."""
        sql = "SELECT seq, stream, version, type, recorded_at, data, key FROM events WHERE seq > ?"
        args: list[Any] = [after_seq]
        if stream is not None:
            sql += " AND stream = ?"
            args.append(stream)
        sql += " ORDER BY seq DESC" if newest else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with _log_errors(self.path, "read"):
            rows = self.conn.execute(sql, args).fetchall()
        found = [StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]
        return found[::-1] if newest else found

    def shas_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Commits in the log whose SHA starts with `prefix` (lowercase hex)."""
        upper = prefix + "g"  # 'g' sorts after every hex digit
        with _log_errors(self.path, "read"):
            rows = self.conn.execute(
                "SELECT DISTINCT stream FROM events WHERE stream >= ? AND stream < ? LIMIT ?",
                (prefix, upper, limit),
            ).fetchall()
        return [r[0] for r in rows if _SHA.match(r[0])]

    def known_keys(self, keys: Collection[str]) -> set[str]:
        """Which of these idempotency keys the log already holds (a read: no lock)."""
        if not keys:
            return set()
        marks = ", ".join("?" for _ in keys)
        with _log_errors(self.path, "read"):
            rows = self.conn.execute(
                f"SELECT key FROM events WHERE key IN ({marks})", list(keys)
            ).fetchall()
        return {r[0] for r in rows}

    def last_seq(self) -> int:
        with _log_errors(self.path, "read"):
            return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

    def integrity_check(self) -> str:
        with _log_errors(self.path, "check"):
            return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    # -- rebuild ----------------------------------------------------------------------------

    def replay(self) -> tuple[dict[str, DeploymentRow], list[SourceCallRow], int, int]:
        """Fold the whole log from scratch: rows, call rows, event count, last seq."""
        with _log_errors(self.path, "read"):
            cursor = self.conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq")
            rows, calls, count, last = _fold(cursor)
        return rows, [SourceCallRow(*c) for c in calls], count, last

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """Recompute every projection from the log alone, fix the rows that differ, report them.

        For a moment under the lock (no append can come in), the totals are read and every part
        opens its read transaction: all see the same snapshot. Then, outside the lock, `workers`
        processes (by default one per CPU for a large log) each fold and compare their share of
        the commits, while appends go on. Under the lock again, the commits appended to since the
        snapshot are replayed whole, and the differences are written: a log whose projections
        are right costs no write at all.
        """
        path = str(self.path)
        with _log_errors(self.path, "rebuild"):
            parts = rebuild_parts(workers, self.last_seq())
            started = _start_workers(path, parts) if parts > 1 else []
            try:
                with self.locked():  # only while every part opens its read transaction
                    snapshot = self.last_seq()
                    totals = _read_totals(self.conn)
                    if parts == 1:
                        conn = _open_part(path)
                    else:
                        _open_parts(started, snapshot)
                if parts == 1:
                    found = [_compare_part(conn, snapshot, 1, 0)]
                else:
                    found = [_worker_result(w) for w in started]
            finally:
                _stop(started)  # after a failure, the others are not waited for
            # The triggers add and take away each row's share, so totals minus their rows
            # summed never changes: compared at the snapshot, it tells whether it is 0 now.
            totals_ok = _sums(found) == totals
            report = self._write(lambda conn: self._settle(conn, snapshot, found, totals_ok))
            events, rows = self.conn.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deployments)"
            ).fetchone()
        return dataclasses.replace(report, events=events, rows=rows)

    def _replay(self) -> None:
        """A migration's replay of the log into the projections, by the first store to open it
        (appends go on meanwhile, as for `rebuild`); another store already at it is not joined."""
        guard = self.path.with_name(self.path.name + ".replay")
        with _log_errors(guard, "lock"):
            _create_private(guard)
            fd = os.open(guard, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its projections fill in meanwhile; the appends go on
            with _log_errors(self.path, "read"):
                pending = _replay_pending(self.conn)
            if pending:
                self.rebuild()
        finally:
            os.close(fd)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in a write transaction under the lock."""
        conn = self.conn
        with self.locked():
            _begin_immediate(conn, self.path)
            try:
                done = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return done

    def _settle(
        self,
        conn: sqlite3.Connection,
        snapshot: int,
        found: list[_Diff],
        totals_ok: bool,
    ) -> RebuildReport:
        """Under the lock: replay the commits appended to since `snapshot`, write every
        difference, sum the totals again if they were wrong, set the checkpoint and clear a
        migration's request for a replay. The report's counts are left for the caller."""
        tail = [r[0] for r in conn.execute(
            "SELECT DISTINCT stream FROM events WHERE seq > ?", (snapshot,)
        )]  # fmt: skip
        if tail:
            late = set(tail)
            found = [d.without(late) for d in found]
            found.append(_compare(conn, _streams(tail)))
        diff = _Diff.merge(found)
        diff.write(conn)
        totals_differing = 0 if totals_ok else _rewrite_totals(conn)
        last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        conn.execute(
            "DELETE FROM projection_checkpoints WHERE name IN (?, 'replay')", (PROJECTION,)
        )
        conn.execute(
            "INSERT INTO projection_checkpoints (name, last_seq) VALUES (?, ?)", (PROJECTION, last)
        )
        calls = {c[0] for c in diff.calls_missing} | {c[0] for c in diff.calls_extra}
        measures = {m[:2] for m in diff.measures_missing} | {m[:2] for m in diff.measures_extra}
        return RebuildReport(
            0, 0, tuple(sorted(diff.differing())), len(calls), len(measures), totals_differing
        )


_EVENT_COLUMNS = "seq, stream, version, type, recorded_at, data, key"
_MEASURE_COLUMNS = "sha, measure, value, pushed_at, branch"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
PARALLEL_FROM = 200_000  # events: below this, one process folds faster than several start
_Row = tuple[Any, ...]


def _replay_pending(conn: sqlite3.Connection) -> bool:
    """Whether a migration asked for the log to be replayed into the projections."""
    found = conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = 'replay'")
    return found.fetchone() is not None


def rebuild_parts(workers: int | None, events: int) -> int:
    """How many processes replay a log of `events` (`workers` when given)."""
    if workers is not None:
        return max(1, workers)
    return 1 if events < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 4))


def _fold(cursor: Iterable[_Row]) -> tuple[dict[str, DeploymentRow], list[_Row], int, int]:
    """Fold events (in log order) from scratch: rows by commit, call rows as tuples, the number
    of events and the last seq. The hot loop of `rebuild`: it runs once per event."""
    rows: dict[str, DeploymentRow] = {}
    calls: list[_Row] = []
    get, count, last = rows.get, 0, 0
    for seq, stream, version, type_, recorded_at, data, key in cursor:
        stored = StoredEvent(seq, stream, version, type_, recorded_at, _loads(data), key)
        event = event_from(type_, stored.data)
        row = evolve(get(stream), event, stored)
        if row is not None:
            rows[stream] = row
        call = source_call(event, stored, row)
        if call is not None:
            calls.append(call)
        count, last = count + 1, seq
    return rows, calls, count, last


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """`json.loads` of an event's compact JSON, straight through the C scanner: a replay parses
    a million of them, and `loads` adds two regular-expression matches and three calls to each."""
    try:
        return _scan_json(text, 0)[0]
    except (StopIteration, ValueError):  # leading white space: not ours, but valid JSON
        return json.loads(text)


@dataclass(frozen=True)
class _Scope:
    """Which events to replay and which projection rows to compare them with."""

    events: str
    events_args: tuple[Any, ...]
    shas: str
    shas_args: tuple[Any, ...]
    measures: str = ""  # the condition on `deployment_measures.sha` when not `shas`


def _partition(snapshot: int, parts: int, part: int) -> _Scope:
    """The events up to `snapshot` of one `part` of the commits (by the SHA's last digit)."""
    if parts == 1:
        return _Scope("seq <= ?", (snapshot,), "1", ())
    share = "coalesce(unicode(substr({}, -1)), 0) % ? = ?"  # ('' has no last character)
    return _Scope(
        "seq <= ? AND " + share.format("stream"), (snapshot, parts, part),
        share.format("sha"), (parts, part),
    )  # fmt: skip


def _streams(streams: Sequence[str]) -> _Scope:
    """Every event of some commits (and the measures of their earlier attempts, `N:sha`)."""
    listed = (json.dumps(list(streams)),)
    inside = "{} IN (SELECT value FROM json_each(?))"
    return _Scope(
        inside.format("stream"), listed, inside.format("sha"), listed,
        inside.format("substr(sha, instr(sha, ':') + 1)"),
    )  # fmt: skip


def _commit_of(key: str) -> str:
    """The commit of a `deployment_measures.sha`: the SHA itself, or an earlier attempt's
    `N:sha` (projections.attempt_key)."""
    return key.partition(":")[2] or key


@dataclass
class _Diff:
    """How the projection rows of some commits differ from a replay of their events."""

    rows_changed: list[_Row] = dataclasses.field(default_factory=list)  # the replay's rows
    rows_extra: list[str] = dataclasses.field(default_factory=list)  # rows the replay has not
    calls_missing: list[_Row] = dataclasses.field(default_factory=list)
    calls_extra: list[_Row] = dataclasses.field(default_factory=list)
    measures_missing: list[_Row] = dataclasses.field(default_factory=list)
    measures_extra: list[_Row] = dataclasses.field(default_factory=list)
    # The rows read from `source_calls` and `deployment_measures`, summed as the totals are.
    call_sums: dict[_Row, list[int]] = dataclasses.field(default_factory=dict)
    measure_sums: dict[_Row, list[int]] = dataclasses.field(default_factory=dict)

    def without(self, shas: set[str]) -> _Diff:
        """This difference, leaving out some commits (not from the sums)."""
        return _Diff(
            [r for r in self.rows_changed if r[0] not in shas],
            [sha for sha in self.rows_extra if sha not in shas],
            [c for c in self.calls_missing if c[_CALL_SHA] not in shas],
            [c for c in self.calls_extra if c[_CALL_SHA] not in shas],
            [m for m in self.measures_missing if _commit_of(m[0]) not in shas],
            [m for m in self.measures_extra if _commit_of(m[0]) not in shas],
            self.call_sums,
            self.measure_sums,
        )

    @staticmethod
    def merge(diffs: Iterable[_Diff]) -> _Diff:
        total = _Diff()
        for d in diffs:
            total.rows_changed += d.rows_changed
            total.rows_extra += d.rows_extra
            total.calls_missing += d.calls_missing
            total.calls_extra += d.calls_extra
            total.measures_missing += d.measures_missing
            total.measures_extra += d.measures_extra
        return total

    def differing(self) -> set[str]:
        return {r[0] for r in self.rows_changed} | set(self.rows_extra)

    def write(self, conn: sqlite3.Connection) -> None:
        """Make the projection rows the replay's (in the caller's transaction)."""
        conn.executemany("DELETE FROM deployments WHERE sha = ?", ((s,) for s in self.rows_extra))
        conn.executemany(_UPSERT_ROW, self.rows_changed)
        conn.executemany(
            "DELETE FROM source_calls WHERE seq = ?", ((c[0],) for c in self.calls_extra)
        )
        conn.executemany(_INSERT_CALL, self.calls_missing)
        _write_measures(conn, self.measures_extra, self.measures_missing)


def _sums(found: Iterable[_Diff]) -> _Totals:
    """The parts' sums of the rows they read, added up."""
    calls: dict[_Row, list[int]] = {}
    measures: dict[_Row, list[int]] = {}
    for d in found:
        for mine, theirs in ((calls, d.call_sums), (measures, d.measure_sums)):
            for key, values in theirs.items():
                _add(mine, key, values)
    return calls, measures


def _add(sums: dict[_Row, list[int]], key: _Row, values: Sequence[int]) -> None:
    """Add `values` to the sums kept under `key`."""
    found = sums.get(key)
    if found is None:
        sums[key] = list(values)
    else:
        for i, v in enumerate(values):
            found[i] += v


def _compare(conn: sqlite3.Connection, scope: _Scope) -> _Diff:
    """Replay the events of `scope` and compare the result with its projection rows.

    Both sides are built in the same order (commits by SHA, calls by seq, measures by commit
    and name), so that a projection that is right, the usual case, costs one comparison of two
    lists rather than hashing every row; the differences are worked out only when they differ.
    """
    cursor = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE {scope.events} ORDER BY seq", scope.events_args
    )
    rows, calls, _, _ = _fold(cursor)
    replayed = [row_values(rows[sha]) for sha in sorted(rows)]
    measured = [m for values in replayed for m in sorted(measure_rows(rows[values[0]]))]
    if any(row.previous_attempts is not None for row in rows.values()):
        measured.sort()  # earlier attempts' keys (`N:sha`) sort apart from their commits
    diff = _Diff()
    table = _select(conn, "deployments", ", ".join(ROW_COLUMNS), scope, "sha")
    if table != replayed:
        old = {r[0]: r for r in table}
        diff.rows_changed = [r for r in replayed if old.pop(r[0], None) != r]
        diff.rows_extra = list(old)
    table = _select(conn, "source_calls", ", ".join(CALL_COLUMNS), scope, "seq")
    if table != calls:
        diff.calls_missing, diff.calls_extra = _differences(calls, table)
    diff.call_sums = _call_sums(table)
    # (NOT INDEXED: a scan and a sort beat a walk of the (sha, measure) index that looks up
    # every row it passes)
    measures = dataclasses.replace(scope, shas=scope.measures) if scope.measures else scope
    table = _select(
        conn, "deployment_measures NOT INDEXED", _MEASURE_COLUMNS, measures, "sha, measure"
    )
    if table != measured:
        diff.measures_missing, diff.measures_extra = _differences(measured, table)
    diff.measure_sums = _measure_sums(table)
    return diff


# These sum rows exactly as the triggers of schema.sql do (CAST truncates toward zero, as int()).
_C_AT, _C_SOURCE, _C_API, _C_DB, _C_OK, _C_KIND, _C_RETRY, _C_BRANCH = (
    CALL_COLUMNS.index(c)
    for c in ("at", "source", "api_calls", "db_queries", "ok", "error_kind", "retry", "branch")
)


def _call_sums(calls: Iterable[_Row]) -> dict[_Row, list[int]]:
    sums: dict[_Row, list[int]] = {}
    for c in calls:
        ok, kind, branch = c[_C_OK], c[_C_KIND], c[_C_BRANCH]
        key = (
            int(c[_C_AT] / 3600), "" if branch is None else branch, c[_C_SOURCE], ok,
            "" if ok else "unknown" if kind is None else kind, c[_C_RETRY],
        )  # fmt: skip
        _add(sums, key, (1, c[_C_API], c[_C_DB]))
    return sums


def _measure_sums(measured: Iterable[_Row]) -> dict[_Row, list[int]]:
    sums: dict[_Row, list[int]] = {}
    for _, measure, value, pushed_at, branch in measured:
        _add(sums, (measure, "" if branch is None else branch, int(pushed_at / 3600)), (1, value))
    return sums


def _select(
    conn: sqlite3.Connection, table: str, columns: str, scope: _Scope, order: str
) -> list[_Row]:
    return conn.execute(
        f"SELECT {columns} FROM {table} WHERE {scope.shas} ORDER BY {order}", scope.shas_args
    ).fetchall()


def _differences(replayed: list[_Row], table: list[_Row]) -> tuple[list[_Row], list[_Row]]:
    """Rows the table lacks, and rows the replay does not have."""
    new, old = set(replayed), set(table)
    return [r for r in replayed if r not in old], [r for r in table if r not in new]


def _start_workers(path: str, parts: int) -> list[subprocess.Popen[bytes]]:
    """Start one process per part: a fresh interpreter running `_worker` (unlike
    multiprocessing, nothing of the caller's `__main__` is imported again), which waits for
    the snapshot to replay up to (`_open_parts`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    code = "import sys; from tracker.log.sqlite import _worker; _worker(sys.argv[1:])"
    started: list[subprocess.Popen[bytes]] = []
    try:
        for part in range(parts):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, path, str(parts), str(part)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
        for worker in started:  # imports done: the lock will be held only for the opening
            assert worker.stdout is not None
            if worker.stdout.readline() != _WAITING:
                raise LogError("a rebuild worker did not start; see above")
    except BaseException:
        _stop(started)
        raise
    return started


def _open_parts(started: Sequence[subprocess.Popen[bytes]], snapshot: int) -> None:
    """Tell every worker the snapshot; return once each has opened its read transaction."""
    for worker in started:
        assert worker.stdin is not None
        worker.stdin.write(b"%d\n" % snapshot)
        worker.stdin.close()
    for worker in started:
        assert worker.stdout is not None
        if worker.stdout.readline() != _READY:
            raise LogError("a rebuild worker could not open the log; see above")


def _stop(started: Iterable[subprocess.Popen[bytes]]) -> None:
    """Kill the workers still running, and close every pipe."""
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


_WAITING, _READY = b"waiting\n", b"ready\n"


def _worker_result(worker: subprocess.Popen[bytes]) -> _Diff:
    assert worker.stdout is not None
    out = worker.stdout.read()
    if worker.wait() != 0:
        raise LogError(f"a rebuild worker failed (exit status {worker.returncode}); see above")
    found = pickle.loads(out)  # noqa: S301 (our own child wrote it, just now)
    assert isinstance(found, _Diff)
    return found


def _worker(argv: Sequence[str]) -> None:
    """A rebuild worker's main: read the snapshot from stdin, open a read transaction, say so,
    compare one part, write the pickled `_Diff` to stdout."""
    path, parts, part = argv[0], int(argv[1]), int(argv[2])
    sys.stdout.buffer.write(_WAITING)
    sys.stdout.buffer.flush()
    snapshot = int(sys.stdin.buffer.readline())
    conn = _open_part(path)
    sys.stdout.buffer.write(_READY)
    sys.stdout.buffer.flush()
    pickle.dump(_compare_part(conn, snapshot, parts, part), sys.stdout.buffer, protocol=5)


def _open_part(path: str) -> sqlite3.Connection:
    """A connection of its own, in a read transaction that has read: its snapshot is fixed."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM projection_checkpoints").fetchone()
    return conn


def _compare_part(conn: sqlite3.Connection, snapshot: int, parts: int, part: int) -> _Diff:
    """`_compare` for one part of the commits, in the read transaction of `conn` (closed)."""
    try:
        return _compare(conn, _partition(snapshot, parts, part))
    finally:
        conn.close()


# Each totals table: its key columns, its other columns, the same sums computed again from the
# rows the triggers count.
_TOTALS = (
    (
        "call_totals",
        "hour, branch, source, ok, error_kind, retry",
        "calls, api_calls, db_queries",
        """SELECT CAST(at / 3600 AS INTEGER), coalesce(branch, ''), source, ok,
               CASE WHEN ok THEN '' ELSE coalesce(error_kind, 'unknown') END, retry,
               count(*), sum(api_calls), sum(db_queries)
           FROM source_calls GROUP BY 1, 2, 3, 4, 5, 6""",
    ),
    (
        "measure_totals",
        "measure, branch, hour",
        "count, total",
        """SELECT measure, coalesce(branch, ''), CAST(pushed_at / 3600 AS INTEGER), count(*),
               sum(value)
           FROM deployment_measures GROUP BY 1, 2, 3""",
    ),
)


_Totals = tuple[dict[_Row, list[int]], dict[_Row, list[int]]]


def _read_totals(conn: sqlite3.Connection) -> _Totals:
    """The totals tables, keyed as `_call_sums` and `_measure_sums` key them."""
    found = []
    for table, key, values, _ in _TOTALS:
        width = key.count(",") + 1
        found.append(
            {
                tuple(r[:width]): list(r[width:])
                for r in conn.execute(f"SELECT {key}, {values} FROM {table}")
            }
        )
    return found[0], found[1]


def _totals_differing(conn: sqlite3.Connection) -> int:
    """How many rows (keys) of the totals tables are wrong, missing or extra against their sums
    computed again (one statement: one snapshot of every table)."""
    parts = []
    for table, key, values, again in _TOTALS:
        mine = f"SELECT {key}, {values} FROM {table}"
        parts.append(
            f"(SELECT count(*) FROM (SELECT 1 FROM (SELECT * FROM ({mine} EXCEPT {again})"
            f" UNION SELECT * FROM ({again} EXCEPT {mine})) GROUP BY {key}))"
        )
    return int(conn.execute("SELECT " + " + ".join(parts)).fetchone()[0])


def _rewrite_totals(conn: sqlite3.Connection) -> int:
    """Sum the totals tables again from their rows; returns how many rows had differed."""
    differing = _totals_differing(conn)
    for table, key, values, again in _TOTALS:
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} ({key}, {values}) {again}")
    return differing


def _write_measures(
    conn: sqlite3.Connection, extra: Collection[_Row], missing: Collection[_Row]
) -> None:
    """Replace measure rows `extra` by rows `missing`: a row whose only change is its value is
    updated in place (the API calls of every poll), others are deleted and inserted."""
    gone = {m[:2]: m for m in extra}
    updated = [m for m in missing if (o := gone.get(m[:2])) is not None and o[3:] == m[3:]]
    for m in updated:
        del gone[m[:2]]
    if gone:
        conn.executemany(
            "DELETE FROM deployment_measures WHERE sha = ? AND measure = ?", list(gone)
        )
    for m in updated:
        conn.execute(
            "UPDATE deployment_measures SET value = ? WHERE sha = ? AND measure = ?",
            (m[2], m[0], m[1]),
        )
    if len(updated) < len(missing):
        done = {m[:2] for m in updated}
        conn.executemany(
            f"INSERT INTO deployment_measures ({_MEASURE_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            [m for m in missing if m[:2] not in done],
        )


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


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction without hiding why it failed.

    SQLite has already rolled back after some errors (a COMMIT that hit a full disk):
    a second ROLLBACK would raise "no transaction is active" in place of "disk is full".
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


_UPSERT_ROW = (
    f"INSERT OR REPLACE INTO deployments ({', '.join(ROW_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)


def _write_row(conn: sqlite3.Connection, old: DeploymentRow | None, new: DeploymentRow) -> None:
    """Write a commit's new row: only its changed columns when it has one (an append changes
    a few counters, and an UPDATE of those leaves the indexes alone)."""
    values = row_values(new)
    if old is None or old.sha != new.sha:
        conn.execute(_UPSERT_ROW, values)
        return
    before = row_values(old)
    changed = [i for i in range(len(values)) if values[i] != before[i]]
    if changed:
        assignments = ", ".join(f"{ROW_COLUMNS[i]} = ?" for i in changed)
        conn.execute(
            f"UPDATE deployments SET {assignments} WHERE sha = ?",
            [values[i] for i in changed] + [new.sha],
        )


_INSERT_CALL = (
    f"INSERT INTO source_calls ({', '.join(CALL_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)
_CALL_SHA = CALL_COLUMNS.index("sha")


def _insert_calls(conn: sqlite3.Connection, calls: Iterable[SourceCallRow]) -> None:
    conn.executemany(_INSERT_CALL, calls)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (triggers contain `;` inside BEGIN ... END)."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


# What a read-only connection may do: read tables and views, select, call functions, and ask
# the pragmas that only describe the schema (SQLite's authorizer action codes; everything else,
# from INSERT to ATTACH, transactions and every other PRAGMA, is denied).
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_DESCRIBING_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info"})


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection to the log at `path` that can only read, for SQL from outside.

    Two guards, each enough alone: the file is opened read-only (`mode=ro`), and an authorizer
    refuses at prepare time every action but reading (writes, ATTACH, PRAGMA, transactions).
    """
    uri = path.absolute().as_uri() + "?mode=ro"
    with _log_errors(path, "read"):
        conn = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
        # SQLite builds a table-valued function's table on its first use, and asks the authorizer
        # about the schema as it does: build the JSON ones before the authorizer is in place.
        conn.execute("SELECT 1 FROM json_each('[]'), json_tree('[]')").fetchall()
        conn.set_authorizer(_authorize_read)
    return conn


def _authorize_read(action: int, name: str | None, *_: str | None) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (name or "").lower() in _DESCRIBING_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _create_private(path: Path) -> None:
    """Create `path` (and its directory) readable by the owner only, if missing."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    os.close(fd)


def _flock(fd: int, timeout: float, path: Path) -> None:
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
        raise _lock_timeout(path, timeout)
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
    raise _lock_timeout(path, timeout)


def _lock_timeout(path: Path, timeout: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"another process has held the lock {path} for more than {timeout:g} s; try again"
        " (`fuser` on that file shows who holds it)"
    )


@contextmanager
def _log_errors(path: Path, doing: str) -> Iterator[None]:
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
