"""The event log as a port: what every backend gives the rest of the tracker.

Today's backend is SQLite (`tracker.log.sqlite.SQLiteLog`); the fleet's shared MySQL log (SPEC §10)
is the next. Every backend passes the same contract suite (`tests/test_log_contract.py`), in the
style of eventsourcing's recorder tests. The projections are the same pure folds
(`tracker.projections`) whatever the backend.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tracker.events import Event
    from tracker.log.sqlite import Append, RebuildReport
    from tracker.projections import DeploymentRow, StoredEvent


@runtime_checkable
class EventLog(Protocol):
    """An append-only log of events with its projections folded in the same transaction."""

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
        """Projection rows, oldest push first."""
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

    def patience(self, seconds: float) -> AbstractContextManager[None]:
        """Within the block, give up on a busy log after `seconds` (readers that must answer)."""
        ...

    def rebuild(self, *, workers: int | None = None) -> RebuildReport:
        """Recompute every projection from the log alone; report what differed."""
        ...

    def integrity_check(self) -> str:
        """`ok`, or what is wrong with the log's storage."""
        ...

    def close(self) -> None: ...
