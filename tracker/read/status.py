"""The status of a commit: the answer's dataclasses and `status_of`, the arithmetic that turns a
deployment row into it. No I/O: the caller says whether its monitor is alive and whether
anything could watch it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from tracker.clock import iso
from tracker.projections import OPEN_STATES, TERMINAL_STATES, DeploymentRow, exit_code_of

STALE_AFTER_S = 300.0  # an open deployment whose monitor said nothing for this long is stale
NOT_FOUND = 3
NO_SOURCE = "no deployment source is configured; run `tracker doctor`"
UNWATCHED_STATES = frozenset({"pending", "stale"})  # the states nothing may be watching


@dataclass(frozen=True)
class MonitorInfo:
    pid: int | None
    host: str | None
    alive: bool


@dataclass(frozen=True)
class EventRecord:
    """One event of the log, as `tracker events --json` prints it."""

    seq: int
    stream: str
    version: int
    type: str
    recorded_at: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AttemptRecord:
    """An earlier push of the same commit, and how it ended (SPEC §3)."""

    attempt: int
    state: str
    exit_code: int
    deployment_id: str | None
    pushed_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class DeploymentStatus:
    """The status of one commit (SPEC §5: the fields of `tracker status --json`)."""

    sha: str
    short_sha: str
    branch: str | None
    state: str  # pending ... stale, or not_found
    exit_code: int
    phase: str | None = None
    deployment_id: str | None = None
    pushed_at: str | None = None
    finished_at: str | None = None
    push_to_live_s: float | None = None
    polls: int = 0
    api_calls: int = 0
    errors: int = 0
    reason: dict[str, str | None] | None = None
    failed_step: str | None = None
    log_tail: list[str] = field(default_factory=list)
    superseded_by: str | None = None
    monitor: MonitorInfo = MonitorInfo(None, None, False)
    last_event_at: str | None = None
    steps_done: int | None = None
    steps_total: int | None = None
    db_queries: int = 0
    watched: bool = True  # False: nothing is watching it (no monitor, no source configured)
    spooled: bool = False  # True: answered from the hook's spool record, the log being busy
    recent_events: list[EventRecord] = field(default_factory=list)
    attempt: int = 0  # which push of the commit: 1, 2, 3 ... (0: not found, or from the spool)
    previous_attempts: list[AttemptRecord] = field(default_factory=list)  # oldest first
    already_recorded: bool = False  # record_push: this push was in the log already
    not_watched: str | None = None  # why nothing watches it, and the fix (when `watched` is False)
    # fleet mode (SPEC §10): machine, as_of, pulled, offline, unreachable, outbox; None without it
    shared_log: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def state_of(row: DeploymentRow, now: float, alive: bool) -> str:
    """The row's state, or `stale` for an open one whose monitor stopped, died or fell silent
    for `STALE_AFTER_S` (a commit that never had a monitor keeps its state)."""
    if row.state in OPEN_STATES and row.monitor_pid is not None:
        silent = now - row.last_event_at > STALE_AFTER_S
        if row.monitor_stopped or not alive or silent:
            return "stale"
    return row.state


def may_be_unwatched(row: DeploymentRow, now: float, alive: bool) -> bool:
    """Whether `status_of` needs to know if anything could watch the commit: only then need
    the caller find out (it reads the settings)."""
    return not alive and state_of(row, now, alive) in UNWATCHED_STATES


def status_of(
    row: DeploymentRow,
    now: float,
    alive: bool,
    watched: bool,
    recent: list[EventRecord] | None = None,
) -> DeploymentStatus:
    """The status a deployment row answers at `now`. `alive`: its monitor runs; `watched`:
    something could watch it (a deployment source is configured); `recent`: its newest events.
    """
    state = state_of(row, now, alive)
    unwatched = state in UNWATCHED_STATES
    is_watched = not (unwatched and not alive and not watched)
    not_watched = row.not_watched if unwatched else None
    if not_watched:
        is_watched = False
    elif not is_watched:
        not_watched = NO_SOURCE
    reason = None
    if row.reason_code or row.reason_message:
        reason = {"code": row.reason_code, "message": row.reason_message}
    return DeploymentStatus(
        sha=row.sha,
        short_sha=row.sha[:7],
        branch=row.branch,
        state=state,
        exit_code=exit_code_of(state, row.superseded_went_live),
        phase=row.phase,
        deployment_id=row.deployment_id,
        pushed_at=_iso(row.pushed_at),
        finished_at=_iso(row.finished_at),
        push_to_live_s=row.push_to_live_s,
        polls=row.polls,
        api_calls=row.api_calls,
        errors=row.errors,
        reason=reason,
        failed_step=row.failed_step,
        log_tail=json.loads(row.log_tail) if row.log_tail else [],
        superseded_by=row.superseded_by,
        monitor=MonitorInfo(row.monitor_pid, row.monitor_host, alive),
        last_event_at=_iso(row.last_event_at),
        steps_done=row.steps_done,
        steps_total=row.steps_total,
        db_queries=row.db_queries,
        watched=is_watched,
        recent_events=list(recent or []),
        attempt=row.attempt,
        previous_attempts=[attempt_record(p) for p in row.earlier()],
        not_watched=not_watched,
    )


def may_be_unreachable(status: DeploymentStatus) -> bool:
    """Whether the status's reason may be that no source was ever reached (it timed out or
    went stale after errors): then the caller reads the polls to say so."""
    return status.state in {"timed_out", "stale"} and status.errors > 0


def attempt_record(prior: dict[str, Any]) -> AttemptRecord:
    """An earlier attempt, from the row's `earlier()` entries."""
    return AttemptRecord(
        attempt=int(prior["attempt"]),
        state=str(prior["state"]),
        exit_code=int(prior["exit_code"]),
        deployment_id=prior.get("deployment_id"),
        pushed_at=_iso(prior.get("pushed_at")),
        finished_at=_iso(prior.get("finished_at")),
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)
