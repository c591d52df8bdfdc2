"""The event log as a port: what every backend gives the rest of the tracker, and its records.

Today's backend is SQLite (`tracker.log.sqlite.SQLiteLog`); the fleet's shared MySQL log (SPEC §10)
is the next. Every backend passes the same contract suite (`tests/test_log_contract.py`), in the
style of eventsourcing's recorder tests. The projections are the same pure folds
(`tracker.projections`) whatever the backend. Nothing outside `tracker.log` sees a connection or
the lock: readers get data, `stats_queries` and `query` a read snapshot, `check` plain findings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tracker.errors import TrackerError
    from tracker.events import Event
    from tracker.projections import DeploymentRow, StoredEvent
    from tracker.read.stats import StatsQueries


@dataclass(frozen=True)
class Append:
    """One event to append to one stream, with its optional idempotency key."""

    stream: str
    event: Event
    key: str | None = None
    at: float | None = None  # recorded_at; default: the log's clock


@dataclass(frozen=True)
class Fence:
    """Fleet mode: the watch lease an append is made under (SPEC §10). The shared log stores a
    fenced batch only while `holder` still holds the lease of `app` with this `fence` number."""

    app: str  # `platform:app_id`
    holder: str  # `machine:pid`: one watcher process
    fence: int


@dataclass(frozen=True)
class Lease:
    """Fleet mode: who holds an app's watch lease, and for how long yet on the server's clock
    when it was read (negative: expired)."""

    app: str
    holder: str  # `machine:pid`
    host: str
    pid: int
    fence: int
    remaining_s: float

    @property
    def machine(self) -> str:
        return self.holder.rsplit(":", 1)[0]

    def fence_of(self) -> Fence:
        return Fence(self.app, self.holder, self.fence)


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


@dataclass(frozen=True)
class LogCheck:
    """What `check` found, for `tracker doctor` to word: the storage and the lock, each either
    fine or the error it raised (kept whole: its kind and cause say what to do about it)."""

    location: str  # the file (or the URL, without credentials) the log is kept at
    lock_location: str  # where writers take turns
    integrity: str | None  # `ok`, or what is wrong with the storage; None when it could not run
    events: int | None  # how many events the log holds; None when it could not be read
    storage_error: TrackerError | None = None  # the log could not be opened or checked
    lock_error: TrackerError | None = None  # the lock could not be taken in time

    @property
    def storage_ok(self) -> bool:
        return self.storage_error is None and self.integrity == "ok"

    @property
    def lock_ok(self) -> bool:
        return self.lock_error is None


@dataclass(frozen=True)
class QueryRows:
    """The answer to a read-only statement: its column names and its rows, read as iterated."""

    columns: list[str]
    rows: Iterator[Sequence[Any]]


@runtime_checkable
class EventLog(Protocol):
    """An append-only log of events with its projections folded in the same transaction.

    `lock_timeout` (how long a writer waits for its turn) is given when the log is opened
    (`tracker.log.open_log`) and never changed afterwards; `patience` shortens it for one block.
    """

    def append(
        self, stream: str, event: Event, *, key: str | None = None, at: float | None = None
    ) -> StoredEvent | None:
        """Append one event; None when its key was recorded already (or a late verdict)."""
        ...

    def append_all(self, batch: Sequence[Append]) -> list[StoredEvent]:
        """Append events in one transaction; those actually written, in order."""
        ...

    def events(
        self,
        *,
        stream: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredEvent]:
        """Events in log order after `after_seq` (follow: pass the last seq seen)."""
        ...

    def last_seq(self) -> int:
        """The global position of the newest event (0 for an empty log)."""
        ...

    def deployment(self, sha: str) -> DeploymentRow | None:
        """The projection row of one commit."""
        ...

    def deployments(
        self, *, since: float | None = None, branch: str | None = None
    ) -> list[DeploymentRow]:
        """Projection rows, oldest push first (no push time first), pushed (else last seen)
        since `since`, on `branch`."""
        ...

    def shas_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Commits whose SHA starts with `prefix`."""
        ...

    def known_keys(self, keys: Collection[str]) -> set[str]:
        """Which of these idempotency keys the log holds."""
        ...

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        """API calls in the minute and the hour up to `now` (the rate limits' windows)."""
        ...

    def stats_queries(self) -> AbstractContextManager[StatsQueries]:
        """The queries `tracker stats` and the informed schedule ask, in one read snapshot."""
        ...

    def query(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[QueryRows]:
        """Run one read-only statement (`tracker query`); a statement that would write, or more
        than one, is refused with `UsageError` before anything runs."""
        ...

    def patience(self, seconds: float) -> AbstractContextManager[None]:
        """Within the block, give up on a busy log after `seconds` (readers that must answer)."""
        ...

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """Recompute every projection from the log alone; report what differed."""
        ...

    def check(self) -> LogCheck:
        """Whether the storage is sound and the lock can be taken (for `tracker doctor`)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class BudgetLog(Protocol):
    """A log that also keeps the fleet's API budget per token (fleet mode: `FleetLog`, and
    `MySQLLog`; SPEC §10). A single machine's log has none: its monitors count the calls it
    recorded (`EventLog.api_calls_by_window`)."""

    def reserve_api_calls(
        self, token_id: str, n: int, per_minute: int, per_hour: int
    ) -> float | None:
        """Reserve `n` calls of the token `token_id` (a hash, never the token) in one round
        trip: 0 when reserved, else the seconds until they would fit under both limits; None
        when the budget cannot be reached (the caller runs degraded)."""
        ...

    def add_api_calls(self, token_id: str, n: int) -> bool:
        """Count `n` calls made beyond those reserved, unconditionally; False when unreachable."""
        ...
