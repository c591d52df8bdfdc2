"""The fleet log (`FleetLog`, SPEC §10): this machine's SQLite log as a cache of the shared MySQL
log, in global order, plus an outbox of what this machine has not forwarded yet.

- **The cache** is an ordinary `SQLiteLog` whose `events` hold exactly the shared log's events,
  each at its global position (`seq`), version, time and key, folded through the same pure
  projections as any append (`tracker.projections`). Only `pull` writes it, in global order, so
  `rebuild` gives the same rows on every machine, and the first verdict in global order wins
  everywhere (the shared log drops a later one; the cache never sees it).
- **The outbox** is a separate SQLite file beside the log (`events.db.outbox`, its tables in
  `schema.outbox.sql`), not a table of
  the log. Chosen so: the log's schema (schema.sql and its migrations) and the single-machine
  path stay exactly as they are; an append to the outbox never waits for the log's lock (held by
  a pull, a rebuild or a monitor's append); and the cache's `events` table stays a pure mirror
  of the global log (every row has its global position; a row of this machine's own that is not
  yet global cannot be mistaken for one). Every outbox event has an idempotency key (the
  caller's, else one made of the machine id and a random part), so forwarding it again after a
  lost connection stores it once.
- **An append** goes to the outbox at once (one local transaction), then `forward` sends the
  outbox to the shared log in one batch (one round trip) and `pull` brings the result into the
  cache; only then are the sent entries deleted. With MySQL unreachable the append still
  succeeds: the event waits in the outbox until a later `forward` (any append, `tracker sync`).
  An outbox verdict that lost to another machine's is dropped by the shared log and deleted from
  the outbox: superseded on pull, never applied twice.
- **Reads** answer from the cache plus the outbox: a commit's row is the cache's row with this
  machine's unsent events folded on top (provisional positions after the cache's last). `events`
  and `last_seq` are the global positions only (the cache): a follower's position stays stable.
- **The watcher's fence** (`fence`, SPEC §10 one watcher per app): each event appended while it
  is set waits in the outbox with it, and is forwarded in a batch of its fence alone. The shared
  log refuses such a batch once another watcher took the app's lease over: the batch is deleted
  from the outbox (a stale holder's late facts are not facts of the shared log), and in the
  process whose fence it is, `LeaseLostError` reaches the appender (the watcher stops). Events
  appended without a fence (pushes, readers) are never refused.
- **The leases** are read by each pull and kept beside the outbox with the time each had left on
  the server's clock and this machine's time of reading, so that `status` judges an app's
  watcher alive on one clock (`lease`) without asking the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.errors import LeaseLostError, LockTimeoutError, LogError, TrackerError
from tracker.events import Event, event_from
from tracker.log import lock, rows
from tracker.log.base import Append, Fence, Lease, LogCheck, QueryRows, RebuildReport
from tracker.log.errors import log_errors
from tracker.log.rows import PROJECTION
from tracker.log.schema import migrations, run_pending
from tracker.log.sqlite import SQLiteLog, use_wal
from tracker.projections import DeploymentRow, StoredEvent, apply, measure_rows, source_call

if TYPE_CHECKING:
    from tracker.log.mysql import MySQLLog
    from tracker.read.stats import StatsQueries

__all__ = ["FleetLog", "NotACacheError", "SyncState", "machine_id", "sync_deadline"]

MACHINE_ID_ENV = "TRACKER_MACHINE_ID"
SYNC_DEADLINE_ENV = "TRACKER_SYNC_DEADLINE"
DEFAULT_SYNC_DEADLINE_S = 1.0
FORWARD_BATCH = 200  # events forwarded in one round trip
FORWARD_BACKOFF_S = 5.0  # after a failure, appends only outbox for this long ...
FORWARD_BACKOFF_MAX_S = 60.0  # ... doubled after each failure in a row, up to this
# The longest an append waits for the shared log's head (held by another machine's append for
# one round trip): a watcher's long patience is for the local log's lock, not for this.
SHARED_LOCK_TIMEOUT_S = 10.0
PAGE = 1000  # events pulled per read


class NotACacheError(LogError):
    """The local log is not (or cannot become) the cache of this shared log."""


@dataclass(frozen=True)
class SyncState:
    """When this machine last reached the shared log, and what stopped it since (if anything)."""

    pulled_at: float | None  # the last successful pull (any process of this machine)
    error: str | None  # why the last attempt to reach the shared log failed; None when it worked
    outbox: int  # events waiting to be forwarded


def sync_deadline(env: Mapping[str, str] | None = None) -> float:
    """`TRACKER_SYNC_DEADLINE` (default 1 s): how long `status` may wait for its one pull."""
    from tracker.config import parse_duration

    value = (os.environ if env is None else env).get(SYNC_DEADLINE_ENV, "").strip()
    if not value:
        return DEFAULT_SYNC_DEADLINE_S
    return parse_duration(value, SYNC_DEADLINE_ENV, positive=True, maximum=60.0, example="1 or 2s")


def machine_id(log_path: Path, env: Mapping[str, str] | None = None) -> str:
    """`TRACKER_MACHINE_ID`, else the id kept in a file beside the local log (made once, at
    random, owner-only: every process of this clone gives the same id)."""
    return known_machine_id(log_path, env) or keep_machine_id(log_path, new_machine_id())


def known_machine_id(log_path: Path, env: Mapping[str, str] | None = None) -> str | None:
    """`TRACKER_MACHINE_ID`, else the id kept beside the local log; None when none is kept yet
    (a read makes nothing: the id is kept by the first write, `keep_machine_id`)."""
    env = os.environ if env is None else env
    given = env.get(MACHINE_ID_ENV, "").strip()
    if given:
        return given
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        found = _id_path(log_path).read_text(encoding="utf-8").strip()
        if found:
            return found
    return None


def new_machine_id() -> str:
    return f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"


def keep_machine_id(log_path: Path, made: str) -> str:
    """Keep `made` beside the local log, unless another process kept one first (theirs is the
    id then)."""
    path = _id_path(log_path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip() or made
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(made + "\n")
    return made


def _id_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".machine-id")


class FleetLog:
    """The fleet log: `cache` (this machine's `SQLiteLog`) plus an outbox beside it, over the
    shared `MySQLLog` (see the module's docstring)."""

    def __init__(
        self,
        cache: SQLiteLog,
        shared: MySQLLog,
        *,
        machine: str | None = None,
        forward_on_append: bool = True,
        keep_id: bool = False,
    ) -> None:
        self.cache = cache
        self.shared = shared
        self.path = cache.path  # what the spool intake and the read side name
        self.lock_path = cache.lock_path
        self.clock: Clock = cache.clock
        self.outbox_path = cache.path.with_name(cache.path.name + ".outbox")
        self.machine = machine or machine_id(cache.path)
        self._keep_id = keep_id  # `machine` is not kept beside the log yet: the first write does
        self.forward_on_append = forward_on_append
        self._outbox: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._mirror_checked = False
        self.fence: Fence | None = None  # the watcher's lease, set on its own log (module doc)

    @classmethod
    def open(
        cls,
        path: Path | str,
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lock_timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        retry_for: float = 2.0,
        io_timeout: float = 10.0,
        **options: Any,
    ) -> FleetLog:
        """The fleet log of the local log at `path` and the shared log at `url` (password from
        the environment). A shared log that cannot be reached now is no error here.

        `lock_timeout` is the local log's; the shared log's head is waited for at most
        `SHARED_LOCK_TIMEOUT_S` (a monitor opens its log with the patience of a whole
        deployment: with the shared log away, each forward of its appends would otherwise
        wait that long for an answer, and its polls with it)."""
        from tracker.log.mysql import MySQLLog

        env = os.environ if env is None else env
        cache = SQLiteLog(Path(path), clock=clock, lock_timeout=lock_timeout, **options)
        known = known_machine_id(cache.path, env)  # a read creates nothing (no id file either)
        machine = known or new_machine_id()
        shared = MySQLLog.from_url(
            url, env=env, clock=clock, lock_timeout=min(lock_timeout, SHARED_LOCK_TIMEOUT_S),
            origin=machine, retry_for=retry_for, io_timeout=io_timeout,
        )  # fmt: skip
        return cls(cache, shared, machine=machine, keep_id=known is None)

    def __repr__(self) -> str:
        return f"FleetLog({self.cache.path}, {self.shared.url})"

    # -- the outbox file ----------------------------------------------------------------------

    @property
    def outbox(self) -> sqlite3.Connection:
        if self._outbox is None or self._pid != os.getpid():
            with log_errors(self.outbox_path, "open"):
                lock.create_private(self.outbox_path)
                conn = sqlite3.connect(
                    self.outbox_path, isolation_level=None, timeout=30.0, check_same_thread=False
                )
                conn.execute("PRAGMA busy_timeout = 30000")
                use_wal(conn, 30.0)
                conn.execute("PRAGMA synchronous = FULL")
                _migrate_outbox(conn)
                if self._keep_id:  # the machine's first file: its id is kept beside it
                    self.machine = keep_machine_id(self.cache.path, self.machine)
                    self.shared.origin, self._keep_id = self.machine, False
            self._outbox, self._pid = conn, os.getpid()
        return self._outbox

    def _reading(self) -> sqlite3.Connection | None:
        """The outbox for a read; None when there is none yet (a read creates no file, and no
        directory: a fresh machine's outbox is empty)."""
        if self._outbox is None and not self.outbox_path.exists():
            return None
        return self.outbox

    def _waiting(
        self, stream: str | None = None
    ) -> list[tuple[int, str, str, str, str, float, str | None]]:
        sql = "SELECT n, key, stream, type, data, at, fence FROM outbox"
        args: list[Any] = []
        if stream is not None:
            sql += " WHERE stream = ?"
            args.append(stream)
        with log_errors(self.outbox_path, "read"):
            conn = self._reading()
            return [] if conn is None else list(conn.execute(sql + " ORDER BY n", args))

    def outbox_events(self) -> list[Append]:
        """What waits to be forwarded, oldest first (each with its key and its time)."""
        return [
            Append(stream, event_from(kind, json.loads(data)), key, at)
            for _, key, stream, kind, data, at, _fence in self._waiting()
        ]

    def _note(self, **values: str | None) -> None:
        with log_errors(self.outbox_path, "write"):
            for name, value in values.items():
                if value is None:
                    self.outbox.execute("DELETE FROM sync_state WHERE name = ?", (name,))
                else:
                    self.outbox.execute(
                        "INSERT INTO sync_state (name, value) VALUES (?, ?) ON CONFLICT (name)"
                        " DO UPDATE SET value = excluded.value",
                        (name, value),
                    )

    def sync_state(self) -> SyncState:
        """When the shared log was last pulled (by any process here), and the last failure."""
        with log_errors(self.outbox_path, "read"):
            conn = self._reading()
            if conn is None:
                return SyncState(None, None, 0)
            found = dict(conn.execute("SELECT name, value FROM sync_state").fetchall())
            waiting = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        pulled = found.get("pulled_at")
        return SyncState(float(pulled) if pulled else None, found.get("error"), waiting)

    # -- writing ------------------------------------------------------------------------------

    def append(
        self, stream: str, event: Event, *, key: str | None = None, at: float | None = None
    ) -> StoredEvent | None:
        """Append one event; None when its key was recorded already (or a late verdict)."""
        stored = self.append_all([Append(stream, event, key, at)])
        return stored[0] if stored else None

    def append_all(self, batch: Sequence[Append]) -> list[StoredEvent]:
        """Put the events in the outbox at once (one local transaction), then forward them
        (a shared log that cannot be reached leaves them waiting: no error). Returns the events
        as the shared log stored them when forwarded, else as they wait (provisional positions
        after the cache's last); a repeated key or a late verdict (by this machine's view) is
        skipped, as every backend skips it."""
        if not batch:
            return []
        written = self._to_outbox(batch)
        if not written or not self.forward_on_append or self._backing_off():
            return written
        try:
            sent = self.forward()
        except LeaseLostError:  # our own fence refused: the watcher must stop, not go on
            raise
        except TrackerError as exc:  # in the outbox all the same: said by `status` and `sync`
            self._failed(exc)
            return written
        if sent is None:
            return written
        by_key = {s.key: s for s in sent}
        return [by_key[s.key] for s in written if s.key in by_key]

    def _to_outbox(self, batch: Sequence[Append]) -> list[StoredEvent]:
        conn = self.outbox
        made: list[StoredEvent] = []
        with log_errors(self.outbox_path, "append to"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                keys = [a.key for a in batch if a.key is not None]
                known = self.cache.known_keys(keys) if keys else set()
                views: dict[str, DeploymentRow | None] = {}
                base = self.cache.last_seq() + self._count()
                fence = _fence_text(self.fence)
                for item in batch:
                    key = item.key or f"{self.machine}:{uuid.uuid4().hex}"
                    if (
                        key in known
                        or conn.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone()
                    ):
                        continue
                    if item.stream not in views:
                        views[item.stream] = self.deployment(item.stream)
                    row = views[item.stream]
                    if item.event.TERMINAL and row is not None and row.terminal:
                        continue  # the outcome is recorded once
                    at = self.clock.now() if item.at is None else item.at
                    data = item.event.to_data()
                    conn.execute(
                        "INSERT INTO outbox (key, stream, type, data, at, fence)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (key, item.stream, item.event.TYPE, rows.dumps(data), at, fence),
                    )
                    base += 1
                    stored = StoredEvent(base, item.stream, 0, item.event.TYPE, iso(at), data, key)
                    views[item.stream] = apply(row, item.event, stored) or row
                    made.append(stored)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        return made

    def _count(self) -> int:
        return int(self.outbox.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def forward(self) -> list[StoredEvent] | None:
        """Send the outbox to the shared log, `FORWARD_BATCH` events of one fence a round trip
        (keyed: a batch sent again after a lost connection is stored once), pulling and deleting
        what was sent after each. A fenced batch refused (its lease taken over) is deleted; when
        the fence is this log's own, `LeaseLostError` is raised after. Returns the events the
        shared log stored now; None when it could not be reached (what was not sent stays in
        the outbox)."""
        self._check_mirror()
        waiting = self._waiting()
        if not waiting:
            return [] if self.pull() is not None else None
        sent: list[StoredEvent] = []
        lost: LeaseLostError | None = None
        for chunk in _runs(waiting):
            fence = _fence_of(chunk[0][6])
            batch = [
                Append(stream, event_from(kind, json.loads(data)), key, at)
                for _, key, stream, kind, data, at, _ in chunk
            ]
            self.shared.fence = fence
            try:
                sent += self.shared.append_all(batch)
            except LeaseLostError as refused:
                self._drop([row[0] for row in chunk])  # not facts of the shared log
                if fence == self.fence:
                    lost = refused
                continue
            except (LogError, LockTimeoutError) as exc:
                self._failed(exc)
                return None
            finally:
                self.shared.fence = None
            if self.pull() is None:
                return None  # stored, not yet in the cache: kept, and sent again (once) later
            self._drop([row[0] for row in chunk])
        if lost is not None:
            raise lost
        return sent

    def _drop(self, numbers: Sequence[int]) -> None:
        with log_errors(self.outbox_path, "write"):
            for start in range(0, len(numbers), 500):
                part = list(numbers[start : start + 500])
                marks = ", ".join("?" for _ in part)
                self.outbox.execute(f"DELETE FROM outbox WHERE n IN ({marks})", part)

    def _failed(self, exc: BaseException) -> None:
        with contextlib.suppress(LogError):
            failures = self._state().get("failures", "0")
            self._note(
                error=str(exc) or type(exc).__name__,
                failed_at=repr(self.clock.now()),
                failures=str(int(failures) + 1 if failures.isdigit() else 1),
            )

    def _state(self) -> dict[str, str]:
        with log_errors(self.outbox_path, "read"):
            return dict(self.outbox.execute("SELECT name, value FROM sync_state").fetchall())

    def _backing_off(self) -> bool:
        """Whether the shared log failed (in any process here) less than `FORWARD_BACKOFF_S`
        ago, doubled for each failure in a row (up to `FORWARD_BACKOFF_MAX_S`): an append then
        only outboxes, rather than wait out the connection's timeout again (a monitor's polls
        stay on time through a long partition; `forward`, `sync` and the next append after it
        try)."""
        found = self._state()
        if "error" not in found or "failed_at" not in found:
            return False
        failures = found.get("failures", "1")
        doubled = min(int(failures) if failures.isdigit() else 1, 8) - 1
        wait = min(FORWARD_BACKOFF_S * 2 ** max(doubled, 0), FORWARD_BACKOFF_MAX_S)
        return bool(self.clock.now() - float(found["failed_at"]) < wait)

    def pull(self, *, limit: int | None = None) -> int | None:
        """Bring the shared log's events after the cache's last global position into the cache,
        in global order, folded as they come. Returns how many; None when the shared log could
        not be reached (the failure is kept for `sync_state`)."""
        self._check_mirror()
        count = 0
        while limit is None or count < limit:
            after = self.cache.last_seq()
            page = PAGE if limit is None else min(PAGE, limit - count)
            try:
                found = self.shared.events(after_seq=after, limit=page)
            except (LogError, LockTimeoutError) as exc:
                self._failed(exc)
                return None
            if found:  # a local failure (the cache's lock, a gap) is raised, not noted
                count += self.cache.transaction(partial(_mirror_all, found=found))
            if len(found) < page:
                break
        try:
            leases = self.shared.leases()
        except (LogError, LockTimeoutError) as exc:
            self._failed(exc)
            return None
        self._keep_leases(leases, replace_all=True)
        self._note(pulled_at=repr(self.clock.now()), error=None, failed_at=None, failures=None)
        return count

    def _keep_leases(self, leases: Sequence[Lease], *, replace_all: bool = False) -> None:
        """Keep the leases as read now (all of them after a pull; a watcher's own as it takes
        or renews it)."""
        now = self.clock.now()
        conn = self.outbox
        with log_errors(self.outbox_path, "write"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    conn.execute("DELETE FROM leases")
                for lease in leases:
                    conn.execute(
                        "INSERT INTO leases (app, holder, host, pid, fence, remaining_s, read_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app) DO UPDATE SET"
                        " holder = excluded.holder, host = excluded.host, pid = excluded.pid,"
                        " fence = excluded.fence, remaining_s = excluded.remaining_s,"
                        " read_at = excluded.read_at",
                        (lease.app, lease.holder, lease.host, lease.pid, lease.fence,
                         lease.remaining_s, now),
                    )  # fmt: skip
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise

    def note_lease(self, lease: Lease) -> None:
        """Keep a lease as a watcher here just took or renewed it (readers here need no pull)."""
        self._keep_leases([lease])

    def lease(self, app: str) -> Lease | None:
        """The lease of `app` as last read (by a pull, or a watcher here), its `remaining_s`
        reckoned to now on this machine's clock (the server's clock counted only what was left
        when read); None when none was read."""
        with log_errors(self.outbox_path, "read"):
            found = self.outbox.execute(
                "SELECT holder, host, pid, fence, remaining_s, read_at FROM leases WHERE app = ?",
                (app,),
            ).fetchone()
        if found is None:
            return None
        holder, where, pid, fence, left, read_at = found
        now = self.clock.now()
        return Lease(app, holder, where, int(pid), int(fence), float(left) - (now - float(read_at)))

    def claim_resume(self, app: str, every: float) -> bool:
        """Whether this process may start a watcher for `app` now: no process here did in the
        last `every` seconds (readers that find its lease expired resume it once, not each)."""
        name = f"resumed:{app}"
        now = self.clock.now()
        conn = self.outbox
        with log_errors(self.outbox_path, "write"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    "SELECT value FROM sync_state WHERE name = ?", (name,)
                ).fetchone()
                free = found is None or not 0 <= now - float(found[0]) < every
                if free:
                    conn.execute(
                        "INSERT INTO sync_state (name, value) VALUES (?, ?) ON CONFLICT (name)"
                        " DO UPDATE SET value = excluded.value",
                        (name, repr(now)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        return free

    @contextmanager
    def local_appends(self) -> Iterator[None]:
        """Within it, appends only go to the outbox (a reader taking in the spool never waits
        for the network: what it appends is forwarded by the next append or sync)."""
        saved, self.forward_on_append = self.forward_on_append, False
        try:
            yield
        finally:
            self.forward_on_append = saved

    def twin(self, seconds: float) -> FleetLog:
        """The same fleet log on connections of its own (for another thread: a bounded pull, a
        watcher's lease renewals), each wait and retry bounded by `seconds`."""
        from tracker.log.mysql import MySQLLog

        return FleetLog(
            SQLiteLog(self.cache.path, clock=self.clock, lock_timeout=seconds),
            MySQLLog(
                self.shared.settings, clock=self.clock, lock_timeout=seconds,
                origin=self.machine, retry_for=0.0, io_timeout=seconds,
            ),
            machine=self.machine,
            keep_id=self._keep_id,
        )  # fmt: skip

    def pull_within(self, seconds: float) -> int | None:
        """One pull that gives up after `seconds` (`status`'s bounded pull): run on connections
        of its own in a thread left behind if the shared log does not answer in time (it then
        finishes or fails on its own; the cache takes a pull whole or not at all). None when it
        could not pull in time; the reason is kept for `sync_state`."""
        done: list[int | None] = []

        def work() -> None:
            other = self.twin(seconds)
            try:
                done.append(other.pull())
            except TrackerError as exc:
                other._failed(exc)
                done.append(None)
            finally:
                other.close()

        thread = threading.Thread(target=work, name="tracker-pull", daemon=True)
        thread.start()
        thread.join(seconds)
        if not done:
            self._failed(LogError(f"no answer from {self.shared.url} within {seconds:g} s"))
            return None
        return done[0]

    def shared_report(self, *, pulled: bool, offline: bool = False) -> dict[str, Any]:
        """What `status` says of the shared log: which machine this is, as of when the cache
        is (its last pull), whether this answer pulled, why the shared log is unreachable (the
        last attempt's failure), and how many events wait in the outbox."""
        state = self.sync_state()
        return {
            "machine": self.machine,
            "as_of": None if state.pulled_at is None else iso(state.pulled_at),
            "pulled": pulled,
            "offline": offline,
            "unreachable": state.error,
            "outbox": state.outbox,
        }

    def _check_mirror(self) -> None:
        """The cache mirrors one shared log from its first position: a local log that holds
        events of its own (kept before fleet mode) or another shared log's is refused, never
        mixed (its positions are not the global ones)."""
        if self._mirror_checked:
            return
        s = self.shared.settings
        ours = f"{s.host}:{s.port}/{s.database}"
        with log_errors(self.outbox_path, "read"):
            found = self.outbox.execute(
                "SELECT value FROM sync_state WHERE name = 'mirror_of'"
            ).fetchone()
        if found is None:
            held = self.cache.last_seq()
            if held:
                raise NotACacheError(
                    f"the local log {self.cache.path} holds {held} events recorded without"
                    f" fleet mode: it cannot become the cache of the shared log {ours}; move it"
                    " aside (it stays readable with TRACKER_LOG_URL unset) and sync again"
                )
            self._note(mirror_of=ours)
        elif found[0] != ours:
            raise NotACacheError(
                f"the local log {self.cache.path} is the cache of the shared log {found[0]},"
                f" not of {ours}: move it aside, or set TRACKER_LOG_URL back"
            )
        self._mirror_checked = True

    # -- reading ------------------------------------------------------------------------------

    def deployment(self, sha: str) -> DeploymentRow | None:
        """The cache's row of `sha` with this machine's unsent events of it folded on top."""
        row = self.cache.deployment(sha)
        waiting = self._waiting(sha)
        if not waiting:
            return row
        known = self.cache.known_keys([w[1] for w in waiting])
        base = self.cache.last_seq()
        for n, (_, key, stream, kind, text, at, _fence) in enumerate(waiting, start=1):
            if key in known:
                continue  # pulled already: folded in the cache
            event = event_from(kind, json.loads(text))
            if event.TERMINAL and row is not None and row.terminal:
                continue
            stored = StoredEvent(base + n, stream, 0, kind, iso(at), json.loads(text), key)
            row = apply(row, event, stored) or row
        return row

    def deployments(
        self, *, since: float | None = None, branch: str | None = None
    ) -> list[DeploymentRow]:
        """The cache's rows, each with this machine's unsent events folded on top (as
        `deployment`), plus commits only the outbox knows yet, in the cache's order."""
        rows = {r.sha: r for r in self.cache.deployments(since=since, branch=branch)}
        with log_errors(self.outbox_path, "read"):
            conn = self._reading()
            found = [] if conn is None else conn.execute("SELECT DISTINCT stream FROM outbox")
            waiting = {r[0] for r in found}
        for sha in waiting:
            row = self.deployment(sha)
            if row is None:
                continue
            pushed = row.pushed_at if row.pushed_at is not None else row.last_event_at
            if (since is None or (pushed is not None and pushed >= since)) and (
                branch is None or row.branch == branch
            ):
                rows[sha] = row
            else:
                rows.pop(sha, None)
        return sorted(
            rows.values(), key=lambda r: (r.pushed_at is not None, r.pushed_at or 0.0, r.sha)
        )

    def events(
        self,
        *,
        stream: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredEvent]:
        """The cache's events: the global log as far as pulled, at global positions."""
        return self.cache.events(stream=stream, after_seq=after_seq, limit=limit, newest=newest)

    def last_seq(self) -> int:
        return self.cache.last_seq()

    def shas_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        found = self.cache.shas_with_prefix(prefix, limit)
        upper = prefix + "g"
        with log_errors(self.outbox_path, "read"):
            conn = self._reading()
            more = [] if conn is None else conn.execute(
                "SELECT DISTINCT stream FROM outbox WHERE stream >= ? AND stream < ? LIMIT ?",
                (prefix, upper, limit),
            ).fetchall()  # fmt: skip
        for (stream,) in more:
            if stream not in found and len(stream) == 40:
                found.append(stream)
        return found[:limit]

    def known_keys(self, keys: Collection[str]) -> set[str]:
        if not keys:
            return set()
        found = self.cache.known_keys(keys)
        rest = [k for k in keys if k not in found]
        conn = self._reading() if rest else None
        if conn is not None:
            marks = ", ".join("?" for _ in rest)
            with log_errors(self.outbox_path, "read"):
                found |= {
                    r[0]
                    for r in conn.execute(f"SELECT key FROM outbox WHERE key IN ({marks})", rest)
                }
        return found

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        return self.cache.api_calls_by_window(now)

    def reserve_api_calls(
        self, token_id: str, n: int, per_minute: int, per_hour: int
    ) -> float | None:
        """Reserve `n` API calls of the token in the fleet's budget (`MySQLLog`, one round
        trip): 0 when reserved, else the seconds until they would fit; None when the shared log
        is unreachable (the caller runs degraded) or failed less than `FORWARD_BACKOFF_S` ago
        (not tried again yet: a poll is not held up by a server that does not answer)."""
        if self._backing_off():
            return None
        found = self.shared.reserve_api_calls(token_id, n, per_minute, per_hour)
        if found is None:
            self._failed(LogError(self.shared.budget_error or "the API budget was not reserved"))
        return found

    def add_api_calls(self, token_id: str, n: int) -> bool:
        """Count `n` calls made beyond those reserved (`MySQLLog.add_api_calls`)."""
        if self._backing_off():
            return False
        done = self.shared.add_api_calls(token_id, n)
        if not done:
            self._failed(LogError(self.shared.budget_error or "the API calls were not counted"))
        return done

    def stats_queries(self) -> AbstractContextManager[StatsQueries]:
        return self.cache.stats_queries()

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[QueryRows]:
        return self.cache.query(sql, params)

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        with self.cache.patience(seconds), self.shared.patience(seconds):
            yield

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """The cache's rebuild: the same rows on every machine that pulled as far."""
        return self.cache.rebuild(workers=workers)

    def check(self) -> LogCheck:
        return self.cache.check()

    def close(self) -> None:
        self.cache.close()
        self.shared.close()
        if self._outbox is not None:
            with contextlib.suppress(sqlite3.Error):
                self._outbox.close()
            self._outbox = None

    def __enter__(self) -> FleetLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mirror_all(conn: sqlite3.Connection, *, found: Sequence[StoredEvent]) -> int:
    """Insert the shared log's events into the cache at their global positions, folding each
    as an append does (`SQLiteLog._insert`); those another process pulled first are skipped."""
    last = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    count = 0
    for stored in found:
        if stored.seq <= last:
            continue
        if stored.seq != last + 1:
            raise LogError(
                f"the shared log skipped from position {last} to {stored.seq}: not mirrored"
            )
        _mirror(conn, stored)
        last = stored.seq
        count += 1
    return count


def _mirror(conn: sqlite3.Connection, stored: StoredEvent) -> None:
    event = event_from(stored.type, stored.data)
    row = rows.read_row(conn, stored.stream)
    conn.execute(
        "INSERT INTO events (seq, stream, version, type, recorded_at, data, key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (stored.seq, stored.stream, stored.version, stored.type, stored.recorded_at,
         rows.dumps(stored.data), stored.key),
    )  # fmt: skip
    new_row = apply(row, event, stored)
    if new_row is not None:
        rows.write_row(conn, row, new_row)
        old, new = measure_rows(row), measure_rows(new_row)
        if old != new:
            rows.write_measures(conn, old - new, new - old)
    call = source_call(event, stored, new_row)
    if call is not None:
        rows.insert_calls(conn, [call])
    conn.execute(
        "INSERT INTO projection_checkpoints (name, last_seq) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
        " WHERE excluded.last_seq > projection_checkpoints.last_seq",
        (PROJECTION, stored.seq),
    )


def _fence_text(fence: Fence | None) -> str | None:
    if fence is None:
        return None
    return json.dumps({"app": fence.app, "holder": fence.holder, "fence": fence.fence})


def _fence_of(text: str | None) -> Fence | None:
    if text is None:
        return None
    data = json.loads(text)
    return Fence(str(data["app"]), str(data["holder"]), int(data["fence"]))


def _runs(
    waiting: Sequence[tuple[int, str, str, str, str, float, str | None]],
) -> Iterator[list[tuple[int, str, str, str, str, float, str | None]]]:
    """The outbox in order, cut into batches of one fence each, `FORWARD_BATCH` at most."""
    run: list[tuple[int, str, str, str, str, float, str | None]] = []
    for row in waiting:
        if run and (row[6] != run[0][6] or len(run) >= FORWARD_BATCH):
            yield run
            run = []
        run.append(row)
    if run:
        yield run


def outbox_schema_text() -> str:
    """`schema.outbox.sql`: inside the package in a wheel, at the repository's top in a checkout."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "schema.outbox.sql", here.parent / "schema.outbox.sql"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise LogError(f"schema.outbox.sql not found beside {here}: the installation is broken")


def _migrate_outbox(conn: sqlite3.Connection) -> None:
    """Run the outbox file's pending migrations (`PRAGMA user_version`), in one transaction."""
    found = migrations(outbox_schema_text())
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(found):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        run_pending(conn, found)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
