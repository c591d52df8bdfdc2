"""The fleet's shared event log on MySQL (SPEC §10): the MySQL backend of the log port.

An append is ONE round trip: a multi-statement batch that locks the one-row `log_head` FOR
UPDATE, checks that no key of the batch is stored and that each stream is still at the version
this client folded, inserts the events at head+1, head+2 ... and moves the head, then commits.
Appends are thus serialised, and positions are gapless and in commit order (design/fleet.md §2.1:
AUTO_INCREMENT positions made a tailing reader miss 1-19 % of events). When the check fails (a
key or a stream another client wrote since), nothing is written: the client reads what it
missed, decides again (a repeated key is skipped, a late verdict is dropped) and sends again.

A connection lost mid-append leaves its outcome unknown: the client reconnects and looks for its
first event at the position it was given; found, the batch committed; else it is sent again.
So retries neither lose nor double an event, with or without an idempotency key. Past
`retry_for` (or a server silent for `io_timeout`: a partition) the append raises `LogError` and
its outcome is unknown: a batch still queued on a frozen server may yet commit. Only a keyed
append is safe to send again then (the outbox to come gives every event a key).

The projections are the same pure folds (`tracker.projections`), kept in memory by each client
and brought up to date by reading the events after the last one it folded; MySQL holds events
only. No trigger and no stored function (managed MySQL has no SUPER); append-only is the
`tracker` user's privileges (README). The schema is `schema.mysql.sql`, run only by `migrate`
(`tracker.log.mysql_server`, with connecting and the server's errors). The stats queries answer
from the folded projections (`mysql_stats`); `tracker query` runs one read-only statement
(`mysql_query`); `check` reads the positions and takes the head lock.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.config import MySQLSettings, log_settings
from tracker.errors import LeaseLostError, LockTimeoutError, LogError, TrackerError
from tracker.events import Event, event_from
from tracker.log.base import Append, Fence, Lease, LogCheck, QueryRows, RebuildReport
from tracker.log.mysql_server import (
    LOCK_WAIT,
    RETRY,
    SCHEMA_VERSION,
    connect,
    error_code,
    explain,
    is_lost,
    migrate,
    migrations,
    schema_state,
    schema_text,
    too_new,
)
from tracker.log.mysql_stats import MeasureCache, MySQLStatsQueries, api_calls_by_window, snapshot
from tracker.projections import (
    DeploymentRow,
    SourceCallRow,
    StoredEvent,
    apply,
    evolve,
    measure_rows,
    source_call,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection

__all__ = ["SCHEMA_VERSION", "MySQLLog", "connect", "migrate", "migrations", "schema_text"]

PAGE = 500  # events per read when catching up
MAX_TRIES = 100  # sends of one batch that found the log moved on (each then reads and replans)
_SHA = re.compile(r"^[0-9a-f]{40}$")
_COLUMNS = "seq, stream, version, type, recorded_at, data, ikey"


@dataclass
class _Fold:
    """What this client has folded: each stream's version and row, and the call rows."""

    versions: dict[str, int]
    rows: dict[str, DeploymentRow]
    calls: dict[int, SourceCallRow]
    pulled: int = 0  # every event up to this position is folded
    count: int = 0  # events folded

    @classmethod
    def empty(cls) -> _Fold:
        return cls({}, {}, {})

    def take(self, stored: StoredEvent) -> None:
        """Fold one event in (once: an event of a version already folded is passed over)."""
        if stored.version <= self.versions.get(stored.stream, 0):
            return
        event = event_from(stored.type, stored.data)
        row = evolve(self.rows.get(stored.stream), event, stored)
        if row is not None:
            self.rows[stored.stream] = row
        call = source_call(event, stored, row)
        if call is not None:
            self.calls[stored.seq] = call
        self.versions[stored.stream] = stored.version
        self.count += 1


class MySQLLog:
    """The shared event log in the MySQL database `settings` name (schema migrated already)."""

    def __init__(
        self,
        settings: MySQLSettings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lock_timeout: float = 10.0,
        origin: str | None = None,
        retry_for: float = 30.0,
        io_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.origin = origin  # the machine that appends (TRACKER_MACHINE_ID), kept per event
        self.retry_for = retry_for  # how long a lost connection is tried again
        self.io_timeout = io_timeout  # a server silent this long is a lost connection
        self._conn: Connection | None = None
        self._pid = os.getpid()
        # Fleet mode: the watch lease appends are made under (`tracker.log.mysql_lease`); a
        # fenced batch is written only while its holder still holds it (else LeaseLostError).
        self.fence: Fence | None = None
        self._fold = _Fold.empty()
        self._measures = MeasureCache()  # each commit's measure rows, for the stats snapshots
        # What appends met (diagnostics, and what the tests and bench/ count): connections lost
        # mid-append, batches found written after one, batches sent again, plans made again.
        self.retries = {"lost": 0, "found_written": 0, "resent": 0, "replanned": 0}
        self.budget_error: str | None = None  # why the last budget round trip could not be done

    @classmethod
    def from_url(
        cls, url: str, *, env: Mapping[str, str] | None = None, **options: Any
    ) -> MySQLLog:
        """The log at `mysql://user@host:port/db?ssl=required` (password from the environment)."""
        return cls(log_settings(url, os.environ if env is None else env), **options)

    @property
    def url(self) -> str:
        """Where the log is, without the password (which other processes take from the
        environment): what a child process opens."""
        s = self.settings
        query = f"?ssl={s.ssl}" + (f"&ssl_ca={quote(s.ssl_ca)}" if s.ssl_ca else "")
        return f"mysql://{quote(s.user, safe='')}@{s.host}:{s.port}/{quote(s.database)}{query}"

    def __repr__(self) -> str:
        return f"MySQLLog({self.url})"

    # -- connection -------------------------------------------------------------------------

    @property
    def conn(self) -> Connection:
        """The connection, opened (and the schema checked) when there is none; `_Lost` when the
        server cannot be reached or the connection broke while opening."""
        if self._conn is None or self._pid != os.getpid():
            self._conn, self._pid = None, os.getpid()
            try:
                # The head lock may be waited for lock_timeout: the server is not silent then.
                silent = max(self.io_timeout, self.lock_timeout + 5.0)
                conn = connect(self.settings, multi=True, timeout=silent)
            except LogError as exc:
                if exc.__cause__ is not None and is_lost(exc.__cause__):
                    raise _Lost(str(exc)) from exc
                raise
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (self._lock_wait(),))
                    self._check_schema(cur)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.close()
                if is_lost(exc):
                    raise _Lost(explain(self.settings, "reach", exc)) from exc
                if isinstance(exc, LogError):
                    raise
                raise LogError(explain(self.settings, "open", exc)) from exc
            self._conn = conn
        return self._conn

    def _check_schema(self, cur: Any) -> None:
        """Every migration this client knows is applied, and the log does not need a newer
        client (`SchemaState.problem`): else a `LogError` that says what to do. Refused for
        reads and appends alike: a client that does not know the schema's rules can neither
        write by them nor trust its fold of what they wrote (in fleet mode its events wait in
        the outbox, and `status` answers from the cache)."""
        problem = schema_state(cur).problem(self._where())
        if problem is not None:
            raise LogError(problem)

    def connection_id(self) -> int:
        """The server's id of our connection (for `KILL` in tests, and for diagnostics)."""
        found: int = self.conn.thread_id()  # type: ignore[no-untyped-call]
        return found

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _drop(self) -> None:
        """Forget a broken connection (the next use opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> MySQLLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within it, wait at most `seconds` (at least 1: MySQL counts whole seconds) for the
        head lock held by another appender."""
        saved = self.lock_timeout
        self.lock_timeout = min(saved, seconds)
        self._set_lock_wait()
        try:
            yield
        finally:
            self.lock_timeout = saved
            self._set_lock_wait()

    def _lock_wait(self) -> int:
        """The seconds the server waits for the head lock: the lock timeout in whole seconds
        (InnoDB counts no less than 1)."""
        return max(1, math.ceil(self.lock_timeout))

    def _set_lock_wait(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception), self._conn.cursor() as cur:
                cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (self._lock_wait(),))

    # -- writing ----------------------------------------------------------------------------

    def append(
        self, stream: str, event: Event, *, key: str | None = None, at: float | None = None
    ) -> StoredEvent | None:
        """Append one event; None when its key was already recorded or it is a late verdict."""
        stored = self.append_all([Append(stream, event, key, at)])
        return stored[0] if stored else None

    def append_all(self, batch: Sequence[Append]) -> list[StoredEvent]:
        """Append events in one transaction (one round trip); those actually written, in order."""
        if not batch:
            return []
        items = [(a, iso(self.clock.now() if a.at is None else a.at)) for a in batch]
        keys: set[str] = set()  # keys found stored (asked only after a send found one)
        fresh = False  # whether the judged streams were just read
        for _ in range(MAX_TRIES):
            plan = self._plan(items, keys)
            if not plan.events:
                if plan.expected and not fresh:  # a verdict dropped on what we had folded:
                    self._catch_up(plan.expected)  # read its stream, in case it moved on
                    fresh = True
                    continue
                return []
            written = self._send(plan)
            if written is not None:
                self._take_own(written)
                return written
            # The log moved on: a key of ours is stored, or a stream we judged changed.
            self.retries["replanned"] += 1
            keys = self.known_keys({a.key for a, _ in items if a.key is not None})
            self._catch_up(plan.expected)
            fresh = True
        raise LockTimeoutError(
            f"the shared log {self._where()} kept changing under {MAX_TRIES} tries of one append"
        )

    def _plan(self, items: Sequence[tuple[Append, str]], stored_keys: set[str]) -> _Plan:
        """The events to write, decided on what this client has folded: a repeated key and a
        second verdict are left out. A stream whose events were decided on its row (a verdict)
        is sent with the version it was folded at, for the server to check; the others get
        their versions (and every event its position) from the server."""
        items = [(a, at) for a, at in items if a.key is None or a.key not in stored_keys]
        judged = {a.stream for a, _ in items if a.event.TERMINAL}
        plan = _Plan([], {s: self._fold.versions.get(s, 0) for s in judged})
        rows = {s: self._fold.rows.get(s) for s in judged}
        seen: set[str] = set()
        for item, recorded_at in items:
            if item.key is not None and item.key in seen:
                continue
            stream, data = item.stream, item.event.to_data()
            stored = StoredEvent(0, stream, 0, item.event.TYPE, recorded_at, data, item.key)
            if stream in judged:
                row = rows[stream]
                if item.event.TERMINAL and row is not None and row.terminal:
                    continue  # the outcome is recorded once; a second verdict is not a new fact
                rows[stream] = apply(row, item.event, stored) or row
            plan.events.append(stored)
            if item.key is not None:
                seen.add(item.key)
        return plan

    def _send(self, plan: _Plan) -> list[StoredEvent] | None:
        """Send the batch; the events written, or None when the log had moved on (nothing
        written). A lost connection is tried again until `retry_for` has passed: first asking
        whether the batch committed (its transaction id), so nothing is written twice."""
        deadline = SYSTEM_CLOCK.monotonic() + self.retry_for  # an outage lasts real time
        pause = 0.02
        txn = os.urandom(16)
        while True:
            try:
                return self._round_trip(plan, txn)
            except _Lost as lost:
                self.retries["lost"] += 1
                if SYSTEM_CLOCK.monotonic() > deadline:
                    raise LogError(
                        f"the shared log {self._where()} is unreachable: {lost}"
                    ) from lost
            try:
                found = self._query(
                    f"SELECT {_COLUMNS} FROM events WHERE txn = %s ORDER BY seq", (txn,)
                )
            except _Lost:
                SYSTEM_CLOCK.sleep(pause)  # the server is away: try again, less often
                pause = min(pause * 2, 1.0)
                continue
            if found:
                self.retries["found_written"] += 1
                return [_stored(r) for r in found]  # it was written before the break
            self.retries["resent"] += 1

    def _round_trip(self, plan: _Plan, txn: bytes) -> list[StoredEvent] | None:
        """The one-round-trip batch: the events written, or None when its check failed."""
        sql, args, streams = _batch(plan, txn, self.origin, self.fence)
        try:
            cur = self.conn.cursor()
            try:
                cur.execute(sql, args)
                result: tuple[Any, ...] | None = None
                while True:
                    if cur.description:
                        result = cur.fetchone()
                    if not cur.nextset():
                        break
            finally:
                cur.close()
        except Exception as exc:
            self._after_failure(exc)
            raise LogError(explain(self.settings, "append to", exc)) from exc
        if result is None:
            raise LogError(f"the shared log {self._where()} did not say whether it appended")
        ok, floor, fenced, holder, fence, head, *bases = result
        if not ok and floor is not None and int(floor) > SCHEMA_VERSION:
            self._drop()  # a migration raised the floor since we connected: the next open says it
            raise LogError(too_new(self._where(), int(floor)))
        if not fenced:  # another watcher holds the lease now: not a conflict to replan
            raise LeaseLostError(_text(holder) if holder is not None else "nobody", int(fence or 0))
        if not ok:
            return None
        base = {s: int(b) for s, b in zip(streams, bases, strict=True)}
        written = []
        for i, stored in enumerate(plan.events, 1):
            base[stored.stream] += 1
            written.append(replace(stored, seq=int(head) + i, version=base[stored.stream]))
        return written

    def _take_own(self, written: Sequence[StoredEvent]) -> None:
        """Fold our own events in when they follow the fold at once (else a read catches up
        when one needs the projections: an appender alone never reads the log)."""
        fold = self._fold
        if written[0].seq == fold.pulled + 1:
            for stored in written:
                fold.take(stored)
            fold.pulled = written[-1].seq

    def _after_failure(self, exc: BaseException) -> None:
        """Roll back what the failed batch left open, or drop a lost connection; raise `_Lost`
        when the append may be sent again."""
        if isinstance(exc, _Lost | LogError):
            raise exc
        code = error_code(exc)
        if is_lost(exc):
            self._drop()
            raise _Lost(explain(self.settings, "append to", exc)) from exc
        try:
            with self.conn.cursor() as cur:
                cur.execute("ROLLBACK")
        except Exception:
            self._drop()
        if code in RETRY:
            raise _Lost(f"MySQL error {code}, rolled back") from exc
        if code == LOCK_WAIT:
            raise LockTimeoutError(
                f"another appender held the shared log's head for more than"
                f" {self._lock_wait()} s; try again"
            ) from exc

    # -- reading ----------------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        except (LogError, _Lost):
            raise
        except Exception as exc:
            if is_lost(exc):
                self._drop()
                raise _Lost(explain(self.settings, "read", exc)) from exc
            raise LogError(explain(self.settings, "read", exc)) from exc

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """`_query`, with one new connection after a lost one."""
        try:
            return self._query(sql, args)
        except _Lost:
            try:
                return self._query(sql, args)
            except _Lost as lost:
                raise LogError(str(lost)) from lost

    def _catch_up(self, streams: Collection[str] | None = None) -> None:
        """Fold every event after the last one folded; with `streams`, only theirs (what an
        append needs to judge a verdict again)."""
        fold = self._fold
        for stream in streams or ():
            sql = (
                f"SELECT {_COLUMNS} FROM events WHERE stream = %s AND version > %s ORDER BY version"
            )
            for row in self._read(sql, (stream, fold.versions.get(stream, 0))):
                fold.take(_stored(row))
        if streams is not None:
            return
        while True:
            found = self.events(after_seq=fold.pulled, limit=PAGE)
            for stored in found:
                fold.take(stored)
                fold.pulled = stored.seq
            if len(found) < PAGE:
                return

    def events(
        self,
        *,
        stream: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredEvent]:
        """Events in log order; with `newest`, the last `limit` of them (still in log order)."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > %s"
        args: list[Any] = [after_seq]
        if stream is not None:
            sql += " AND stream = %s"
            args.append(stream)
        sql += " ORDER BY seq DESC" if newest else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(int(limit))
        found = [_stored(r) for r in self._read(sql, args)]
        return found[::-1] if newest else found

    def last_seq(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM events")[0][0])

    def deployment(self, sha: str) -> DeploymentRow | None:
        """The projection row of one commit, folded up to its newest event (only its own events
        are read: streams fold independently)."""
        self._catch_up([sha])
        row = self._fold.rows.get(sha)
        return replace(row) if row is not None else None

    def deployments(
        self, *, since: float | None = None, branch: str | None = None
    ) -> list[DeploymentRow]:
        """Projection rows, oldest push first (as SQLite orders them: no push time first)."""
        self._catch_up()
        rows = [
            replace(r)
            for r in self._fold.rows.values()
            if (since is None or (r.pushed_at if r.pushed_at is not None else r.last_event_at)
                >= since)
            and (branch is None or r.branch == branch)
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (r.pushed_at is not None, r.pushed_at or 0.0, r.sha))

    def shas_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        upper = prefix + "g"  # 'g' sorts after every hex digit
        rows = self._read(
            "SELECT DISTINCT stream FROM events WHERE stream >= %s AND stream < %s"
            " ORDER BY stream LIMIT %s",
            (prefix, upper, int(limit)),
        )
        return [s for s in (_text(r[0]) for r in rows) if _SHA.match(s)]

    def known_keys(self, keys: Collection[str]) -> set[str]:
        if not keys:
            return set()
        wanted = list(keys)
        marks = ", ".join("%s" for _ in wanted)
        rows = self._read(f"SELECT ikey FROM events WHERE ikey IN ({marks})", wanted)
        return {_text(r[0]) for r in rows}

    def leases(self) -> list[Lease]:
        """Every app's watch lease now (`tracker.log.mysql_lease`), each with the time it has
        left on the server's clock."""
        from tracker.log.mysql_lease import LEASE_COLUMNS, lease_of

        return [lease_of(r) for r in self._read(f"SELECT {LEASE_COLUMNS} FROM watch_leases")]

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        """API calls recorded in the minute and the hour up to `now` (fleet-wide: every
        machine's monitors append to this log)."""
        self._catch_up()
        return api_calls_by_window(self._fold.calls.values(), now)

    # -- the fleet-wide API budget (tracker.log.mysql_budget) ---------------------------------

    def reserve_api_calls(
        self, token_id: str, n: int, per_minute: int, per_hour: int
    ) -> float | None:
        """Reserve `n` API calls of the token `token_id` in one round trip: 0 when reserved,
        else the seconds until they would fit; None when the shared log cannot be reached or
        refused the reservation (the watcher then runs degraded; `budget_error` says why).
        A connection lost after the commit and tried again counts the calls twice: too many,
        never too few."""
        from tracker.log.mysql_budget import reserve

        return self._budget(lambda conn: reserve(conn, token_id, n, per_minute, per_hour))

    def add_api_calls(self, token_id: str, n: int) -> bool:
        """Count `n` calls made beyond those reserved, whatever the limits; False when the
        shared log could not be reached."""
        from tracker.log.mysql_budget import add

        def work(conn: Connection) -> float:
            add(conn, token_id, n)
            return 0.0

        return self._budget(work) is not None

    def _budget(self, work: Callable[[Connection], float]) -> float | None:
        """Run one budget round trip, once more on a new connection after a lost one; None
        (and the reason in `budget_error`) when it could not be done."""
        for _ in range(2):
            try:
                conn = self.conn
            except LogError as exc:  # cannot connect now, no schema, an older one: degraded
                self.budget_error = str(exc)
                return None
            try:
                found = work(conn)
            except ValueError:
                raise  # a caller's mistake (a token instead of its id, n over a limit)
            except Exception as exc:
                self.budget_error = explain(self.settings, "reserve API calls in", exc)
                if is_lost(exc):  # a connection that broke: once more, on a new one
                    self._drop()
                    continue
                try:  # refused (privileges, the head's lock waited for too long): roll back
                    with conn.cursor() as cur:
                        cur.execute("ROLLBACK")
                except Exception:
                    self._drop()
                return None
            self.budget_error = None
            return found
        return None

    @contextmanager
    def stats_queries(self) -> Iterator[MySQLStatsQueries]:
        """The stats queries over the projections folded up to the newest event now
        (`tracker.log.mysql_stats`): later appends do not change the snapshot's answers."""
        self._catch_up()
        yield snapshot(self._fold.rows, self._fold.calls, self._measures)

    @contextmanager
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> Iterator[QueryRows]:
        """One read-only statement over the shared log's tables, on a connection of its own
        (`tracker.log.mysql_query`); anything but one SELECT is refused with `UsageError`."""
        from tracker.log.mysql_query import read_only_query

        _ = self.conn  # the schema is checked here: a log without one says to migrate
        with read_only_query(self.settings, sql, params or {}, timeout=self.io_timeout) as found:
            yield found

    # -- checking ---------------------------------------------------------------------------

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """Fold the whole log again from scratch, up to the newest event now, and compare with
        the projections kept as it was read (a commit appended to meanwhile is left out of the
        comparison); the replay's rows replace them. `workers` is ignored (one fold)."""
        snapshot = self.last_seq()
        again = _Fold.empty()
        while again.pulled < snapshot:
            found = self.events(after_seq=again.pulled, limit=PAGE * 10)
            for stored in found:
                if stored.seq > snapshot:
                    break
                again.take(stored)
                again.pulled = stored.seq
            if len(found) < PAGE * 10:
                break
        self._catch_up()
        kept = self._fold
        same = [
            s for s in kept.versions.keys() | again.versions.keys()
            if kept.versions.get(s) == again.versions.get(s)
        ]  # fmt: skip
        differing = tuple(sorted(s for s in same if kept.rows.get(s) != again.rows.get(s)))
        compared = set(same)
        mine = {q: c for q, c in kept.calls.items() if c.sha in compared}
        theirs = {q: c for q, c in again.calls.items() if c.sha in compared}
        calls = sum(1 for q in mine.keys() | theirs.keys() if mine.get(q) != theirs.get(q))
        measures = sum(
            measure_rows(kept.rows.get(s)) != measure_rows(again.rows.get(s)) for s in differing
        )
        self._fold = again
        self._catch_up()
        return RebuildReport(again.count, len(again.rows), differing, calls, measures)

    def integrity_check(self) -> str:
        """`ok`, or what is wrong: positions must run 1..n with no gap and the head at n (read
        in one statement: one snapshot, whatever is appended meanwhile)."""
        count, low, high, head = self._read(
            "SELECT count(*), coalesce(min(seq), 1), coalesce(max(seq), 0),"
            " (SELECT max(last_seq) FROM log_head WHERE id = 1) FROM events"
        )[0]
        problems = []
        if int(count) != int(high) or (int(low) != 1 and int(count)):
            problems.append(f"positions are not 1..{high} without gaps ({count} events)")
        if head is None or int(head) != int(high):
            problems.append(f"the head ({'missing' if head is None else head}) is not {high}")
        return "; ".join(problems) or "ok"

    def check(self) -> LogCheck:
        """Whether the log is sound (`integrity_check`) and the head lock, where appenders
        take turns, can be taken within the lock timeout: each failure is kept, not raised,
        for `tracker doctor` to word."""
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
            self._take_head()
        except TrackerError as exc:
            lock_error = exc
        lock = f"{self.url} (table log_head)"
        return LogCheck(self.url, lock, integrity, events, storage_error, lock_error)

    def _take_head(self) -> None:
        """Take the head lock and let it go at once (nothing written): `LockTimeoutError` when
        another appender holds it past the lock timeout."""
        try:
            with self.conn.cursor() as cur:
                cur.execute("START TRANSACTION")
                try:
                    cur.execute("SELECT last_seq FROM log_head WHERE id = 1 FOR UPDATE")
                    cur.fetchall()
                finally:
                    cur.execute("ROLLBACK")
        except TrackerError:
            raise
        except Exception as exc:
            if is_lost(exc):
                self._drop()
            elif error_code(exc) == LOCK_WAIT:
                raise LockTimeoutError(
                    f"another appender has held the shared log's head (table log_head) for"
                    f" more than {self._lock_wait()} s"
                ) from exc
            raise LogError(explain(self.settings, "lock", exc)) from exc

    def _where(self) -> str:
        s = self.settings
        return f"{s.user}@{s.host}:{s.port}/{s.database}"


class _Lost(LogError):
    """The connection broke: whether the statement ran is not known (retried inside this
    module; one that escapes is a `LogError`)."""


@dataclass
class _Plan:
    """A batch to send: its events (seq and version 0 until the server gives them), and the
    version each judged stream must still be at."""

    events: list[StoredEvent]
    expected: dict[str, int]


def _batch(
    plan: _Plan, txn: bytes, origin: str | None, fence: Fence | None = None
) -> tuple[str, list[Any], list[str]]:
    """The multi-statement append (design/fleet.md §2.1, `locked1`): values bound by the driver,
    names constant. Its last statement selects whether it was written, the compatibility floor,
    whether its fence held (TRUE when unfenced) and the lease's holder and fence then, the head
    before it and each stream's version before it (the streams, in that order, are returned too).

    A fenced batch is written only while (holder, fence) still holds the app's lease: refused
    once another watcher took it over. Not refused for having expired alone: while nobody took
    over, the holder's tenure goes on (its renewals may have been cut off by an outage) and what
    it learnt meanwhile is the only word on the app. The lease is read after the head is locked:
    a takeover's first append comes after every append the old tenure had made."""
    # Every stream written, and every judged one (a verdict dropped there is checked too).
    streams = list(dict.fromkeys([*(s.stream for s in plan.events), *plan.expected]))
    sql = [
        "START TRANSACTION",
        "SELECT last_seq INTO @tracker_head FROM log_head WHERE id = 1 FOR UPDATE",
        # The compatibility floor, read again in the append itself: a connection opened before
        # a migration raised it learns so here, at no extra round trip (nothing is written).
        "SELECT coalesce(max(min_client), 0) INTO @tracker_floor FROM schema_compat",
    ]
    args: list[Any] = []
    for n, stream in enumerate(streams):
        sql.append(
            f"SELECT coalesce(max(version), 0) INTO @tracker_v{n} FROM events WHERE stream = %s"
        )
        args.append(stream)
    if fence is None:
        sql.append("SET @tracker_fenced = TRUE, @tracker_lh = NULL, @tracker_lf = NULL")
    else:
        sql.append(
            "SET @tracker_lh = (SELECT holder FROM watch_leases WHERE app = %s),"
            " @tracker_lf = (SELECT fence FROM watch_leases WHERE app = %s)"
        )
        sql.append("SET @tracker_fenced = coalesce(@tracker_lh = %s AND @tracker_lf = %s, FALSE)")
        args += [fence.app, fence.app, fence.holder, fence.fence]
    checks = [f"@tracker_floor <= {int(SCHEMA_VERSION)}"]
    for n, stream in enumerate(streams):
        if stream in plan.expected:
            checks.append(f"@tracker_v{n} = %s")
            args.append(plan.expected[stream])
    keys = [s.key for s in plan.events if s.key is not None]
    if keys:
        marks = ", ".join(["%s"] * len(keys))
        checks.append(f"NOT EXISTS (SELECT 1 FROM events WHERE ikey IN ({marks}))")
        args += keys
    checks.append("@tracker_fenced")
    sql.append(f"SET @tracker_ok = ({' AND '.join(checks)})")
    counts = dict.fromkeys(streams, 0)
    for i, stored in enumerate(plan.events, 1):
        counts[stored.stream] += 1
        n = streams.index(stored.stream)
        sql.append(
            "INSERT INTO events (seq, stream, version, type, recorded_at, data, ikey, origin, txn)"
            f" SELECT @tracker_head + {i}, %s, @tracker_v{n} + {counts[stored.stream]},"
            " %s, %s, %s, %s, %s, %s FROM DUAL WHERE @tracker_ok"
        )
        args += [stored.stream, stored.type, stored.recorded_at, _dumps(stored.data),
                 stored.key, origin, txn]  # fmt: skip
    sql += [
        f"UPDATE log_head SET last_seq = @tracker_head + {len(plan.events)}"
        " WHERE id = 1 AND @tracker_ok",
        "COMMIT",
        "SELECT @tracker_ok, @tracker_floor, @tracker_fenced, @tracker_lh, @tracker_lf,"
        " @tracker_head, " + ", ".join(f"@tracker_v{n}" for n in range(len(streams))),
    ]
    return ";\n".join(sql), args, streams


def _stored(r: Sequence[Any]) -> StoredEvent:
    return StoredEvent(
        int(r[0]), _text(r[1]), int(r[2]), _text(r[3]), _text(r[4]), json.loads(_text(r[5])),
        None if r[6] is None else _text(r[6]),
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)
