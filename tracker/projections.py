"""Projections: pure folds of the event log into the rows of `schema.sql`'s projection tables.

No I/O and no clock here. `apply(row, event)` is the fold step: the store calls it inside the
append transaction (the inline projection), and `tracker rebuild` replays the whole log through
it; the two must give identical rows.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

from tracker.clock import MAX_CLOCK_SKEW_S, parse_iso
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    LogsFetched,
    MonitorNotStarted,
    MonitorStarted,
    MonitorStopped,
    MonitorTimedOut,
    NotificationIngested,
    PushConfirmed,
    PushRecorded,
    PushRejected,
)
from tracker.policies import baseline_polls
from tracker.words import timed_out_reason

TERMINAL_STATES = frozenset(
    {"succeeded", "failed", "canceled", "superseded", "timed_out", "rejected"}
)
OPEN_STATES = frozenset({"pending", "in_progress"})
# Every terminal state but `rejected` (a push that never deployed): what stats calls finished.
FINISHED_STATES = ("succeeded", "failed", "canceled", "superseded", "timed_out")


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it: its position, stream, version and time."""

    seq: int
    stream: str
    version: int
    type: str
    recorded_at: str
    data: dict[str, Any]
    key: str | None = None

    @property
    def at(self) -> float:
        """`recorded_at` as epoch seconds (parsed once: a replay asks for it several times)."""
        found: float | None = self.__dict__.get("_at")
        if found is None:
            found = self.__dict__["_at"] = parse_iso(self.recorded_at) or 0.0
        return found


@dataclass
class DeploymentRow:
    """One row of the `deployments` table: everything known about one commit."""

    sha: str
    state: str
    first_seq: int
    last_seq: int
    last_event_at: float
    branch: str | None = None
    remote: str | None = None
    remote_url: str | None = None
    pushed_by: str | None = None
    host: str | None = None
    push_source: str | None = None
    phase: str | None = None
    deployment_id: str | None = None
    pushed_at: float | None = None
    confirmed_at: float | None = None
    first_seen_at: float | None = None
    finished_at: float | None = None
    push_to_live_s: float | None = None
    platform_finished_at: float | None = None
    detection_lag_s: float | None = None
    polls: int = 0
    api_calls: int = 0
    db_queries: int = 0
    errors: int = 0
    retries: int = 0
    steps_done: int | None = None
    steps_total: int | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    failed_step: str | None = None
    log_tail: str | None = None
    superseded_by: str | None = None
    superseded_went_live: int | None = None
    phases: str | None = None
    monitor_pid: int | None = None
    monitor_host: str | None = None
    monitor_started_at: float | None = None
    monitor_stopped: int = 0
    terminal_source: str | None = None
    event_count: int = 0
    attempt: int = 1  # the push this row follows: 1, 2, 3 ... within the commit (SPEC §3)
    previous_attempts: str | None = None  # JSON list: each earlier attempt, summed up (`retire`)
    not_watched: str | None = None  # why nothing can watch it, and the fix (cleared by a monitor)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def earlier(self) -> list[dict[str, Any]]:
        """The commit's earlier attempts, oldest first (see `retire`)."""
        return json.loads(self.previous_attempts) if self.previous_attempts else []

    def judged_before(self, deployment_id: str | None) -> bool:
        """Whether `deployment_id` already judged an earlier attempt (it never judges this one)."""
        if self.previous_attempts is None or not deployment_id:
            return False
        return any(p.get("deployment_id") == deployment_id for p in self.earlier())


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DeploymentRow))
# A row's values in column order (the rows are flat: `attrgetter` builds the tuple without
# `astuple`'s recursive deep copy).
row_values: Callable[[DeploymentRow], tuple[Any, ...]] = attrgetter(*ROW_COLUMNS)


class SourceCallRow(NamedTuple):
    """One row of the `source_calls` table: one event that cost calls to a source (a tuple:
    a replay makes hundreds of thousands of them)."""

    seq: int
    sha: str
    at: float
    source: str
    kind: str
    api_calls: int
    db_queries: int
    ok: int
    error_kind: str | None
    retry: int
    latency_ms: float | None
    ratelimit_remaining: int | None
    branch: str | None = None  # the commit's branch when the call was made


CALL_COLUMNS: tuple[str, ...] = SourceCallRow._fields


def measures(row: DeploymentRow) -> dict[str, int]:
    """What `tracker stats` counts, sums and ranks of one commit: its `deployment_measures`.

    Integers (milliseconds or counts), so that SQLite orders and sums them exactly:
    `state:NAME` (1), `superseded_live` (1: superseded by a live successor), `push_to_live_ms`,
    `detection_lag_ms`, `api_calls` (when any) and
    `phase:NAME` (from a phase's first sighting to the next phase's); for a finished deployment
    that made API calls, `compared_api_calls` and `fixed_10s_polls`, the polls the baseline
    fixed poll would have made to see the same end (the platform's time, or ours) from the same
    start (the monitor's, or the push).
    """
    found = {"state:" + row.state: 1}
    if row.state == "superseded" and row.superseded_went_live:
        found["superseded_live"] = 1  # exit 0, as a success: the success rate counts it
    if row.push_to_live_s is not None:
        found["push_to_live_ms"] = round(row.push_to_live_s * 1000)
    if row.detection_lag_s is not None:
        found["detection_lag_ms"] = round(row.detection_lag_s * 1000)
    if row.api_calls > 0:
        found["api_calls"] = row.api_calls
        span = compared_span(row)
        if span is not None:
            found["compared_api_calls"] = row.api_calls
            found["fixed_10s_polls"] = baseline_polls(span)
    if row.phases is not None and "," in row.phases:  # two phases at least
        for name, seconds in phase_spans(json.loads(row.phases)):
            found["phase:" + name] = round(seconds * 1000)
    return found


def compared_span(row: DeploymentRow) -> float | None:
    """For a finished deployment that made API calls: the time a fixed poll would have needed to
    see its end (the platform's time, or ours) from its start (the monitor's, or the push)."""
    if row.api_calls <= 0 or row.state not in FINISHED_STATES:
        return None
    end = row.finished_at if row.platform_finished_at is None else row.platform_finished_at
    start = row.pushed_at if row.monitor_started_at is None else row.monitor_started_at
    return None if end is None or start is None else end - start


def measure_rows(row: DeploymentRow | None) -> set[tuple[Any, ...]]:
    """The `deployment_measures` rows of a commit: (sha, measure, value, pushed_at, branch).

    Each attempt is counted once: an earlier attempt keeps the measures it ended with, under
    the key `N:sha` (same last character as the SHA, so it falls in the same rebuild part)."""
    if row is None:
        return set()
    pushed_at = row.last_event_at if row.pushed_at is None else row.pushed_at
    found = {(row.sha, m, v, pushed_at, row.branch) for m, v in measures(row).items()}
    for prior in row.earlier():
        key, at, branch = attempt_key(row.sha, prior["attempt"]), prior["at"], prior["branch"]
        found.update((key, m, v, at, branch) for m, v in prior["measures"].items())
    return found


def attempt_key(sha: str, attempt: int) -> str:
    """The `deployment_measures.sha` of an earlier attempt of `sha`."""
    return f"{attempt}:{sha}"


def retire(row: DeploymentRow) -> str:
    """`previous_attempts` once `row`'s attempt is followed by a new push of the same commit:
    the earlier list plus this attempt's summary and the measures it ended with."""
    summary = {
        "attempt": row.attempt,
        "state": row.state,
        "exit_code": exit_code_of(row.state, row.superseded_went_live),
        "deployment_id": row.deployment_id,
        "pushed_at": row.pushed_at,
        "finished_at": row.finished_at,
        "at": row.last_event_at if row.pushed_at is None else row.pushed_at,
        "branch": row.branch,
        "measures": measures(row),
    }
    return json.dumps([*row.earlier(), summary], separators=(",", ":"), sort_keys=True)


def starts_attempt(row: DeploymentRow, event: PushRecorded) -> bool:
    """Whether a push of a commit already in the log is a new attempt, not the same push again.

    A push that git ran (the hook) after the last attempt ended is a new one; so is any push
    after a rejected one, and one recorded with `again`. While an attempt is open, a push joins
    it (the hook and a manager's `record_push` of one push), and `tracker push` or the API of a
    commit already recorded is a repeat unless `--again` says otherwise (README: "Pushes and
    attempts")."""
    if event.again or row.state == "rejected":
        return True
    return row.terminal and event.source == "hook"


def phase_spans(phases: dict[str, float]) -> list[tuple[str, float]]:
    """Each phase's time from its first sighting to the next phase's, in time order (ties keep
    the first-seen order); the last phase (terminal, or still running) has no end."""
    items = sorted(phases.items(), key=_second)  # stable
    return [(items[i][0], items[i + 1][1] - items[i][1]) for i in range(len(items) - 1)]


def _second(item: tuple[str, float]) -> float:
    return item[1]


def exit_code_of(state: str, went_live: bool | int | None = None) -> int:
    """SPEC §4: the exit code a state means (codes 0-2; 3 is 'no such commit in the log')."""
    if state == "succeeded" or (state == "superseded" and went_live):
        return 0
    if state in TERMINAL_STATES:
        return 1
    return 2


def apply(row: DeploymentRow | None, event: Event, stored: StoredEvent) -> DeploymentRow | None:
    """The fold step: the row after `event`; the input row is not modified."""
    return evolve(copy.copy(row) if row is not None else None, event, stored)


def evolve(row: DeploymentRow | None, event: Event, stored: StoredEvent) -> DeploymentRow | None:
    """Like `apply`, but may modify `row` in place (for rebuild, which owns its rows)."""
    at = stored.at
    if isinstance(event, PushRecorded) and (row is None or starts_attempt(row, event)):
        row = DeploymentRow(
            sha=stored.stream,
            state="pending",
            first_seq=stored.seq,
            last_seq=stored.seq,
            last_event_at=at,
            attempt=1 if row is None else row.attempt + 1,
            previous_attempts=None if row is None else retire(row),
        )
    if row is None:
        return None  # an event about a commit nobody pushed: kept in the log, not projected
    _fold(event, row, at)
    row.last_seq = stored.seq
    row.last_event_at = at
    row.event_count += 1
    return row


def source_call(
    event: Event, stored: StoredEvent, row: DeploymentRow | None
) -> SourceCallRow | None:
    """The `source_calls` row an event adds, if it cost a call to a source (`row`: the commit's
    row after the event)."""
    if isinstance(event, DeploymentPolled):
        return SourceCallRow(
            seq=stored.seq,
            sha=stored.stream,
            at=stored.at,
            source=event.source,
            kind="poll",
            api_calls=event.api_calls,
            db_queries=event.db_queries,
            ok=int(event.ok),
            error_kind=event.error_kind if not event.ok else None,
            retry=int(event.retry),
            latency_ms=event.latency_ms,
            ratelimit_remaining=event.ratelimit_remaining,
            branch=None if row is None else row.branch,
        )
    if isinstance(event, LogsFetched):
        return SourceCallRow(
            seq=stored.seq,
            sha=stored.stream,
            at=stored.at,
            source="digitalocean",
            kind="logs",
            api_calls=event.api_calls,
            db_queries=0,
            ok=int(event.error is None),
            error_kind="logs" if event.error else None,
            retry=0,
            latency_ms=None,
            ratelimit_remaining=None,
            branch=None if row is None else row.branch,
        )
    return None


E = TypeVar("E", bound=Event)
_FOLDS: dict[type[Event], Callable[[Any, DeploymentRow, float], None]] = {}


def _fold(event: Event, row: DeploymentRow, at: float) -> None:
    """Fold one event into its commit's row (in place)."""
    step = _FOLDS.get(type(event))
    if step is not None:  # none: no effect beyond the row's position (SourcesDisagreed, ...)
        step(event, row, at)


def _folds(
    kind: type[E],
) -> Callable[
    [Callable[[E, DeploymentRow, float], None]], Callable[[E, DeploymentRow, float], None]
]:
    """Register the fold step of one event type (a dict lookup per event: a replay runs it a
    million times, and `singledispatch` costs several times as much)."""

    def register(
        step: Callable[[E, DeploymentRow, float], None],
    ) -> Callable[[E, DeploymentRow, float], None]:
        _FOLDS[kind] = step
        return step

    return register


@_folds(PushRecorded)
def _(event: PushRecorded, row: DeploymentRow, at: float) -> None:
    if row.pushed_at is not None:
        return  # the same commit pushed again while its deployment is open: one deployment
    row.branch = event.branch
    row.remote = event.remote or None
    row.remote_url = event.remote_url or None
    row.pushed_by = event.pushed_by or None
    row.host = event.host or None
    row.push_source = event.source
    row.pushed_at = parse_iso(event.pushed_at or "") or at


@_folds(PushConfirmed)
def _(event: PushConfirmed, row: DeploymentRow, at: float) -> None:
    if row.confirmed_at is None:
        row.confirmed_at = at


@_folds(PushRejected)
def _(event: PushRejected, row: DeploymentRow, at: float) -> None:
    if row.terminal or row.confirmed_at is not None:
        return  # a push that reached one remote is not undone by another that did not
    row.state = "rejected"
    row.finished_at = at
    row.reason_message = event.reason or "the remote did not accept the push"


def _elsewhere(row: DeploymentRow, attempt: int | None, deployment_id: str | None) -> bool:
    """Whether an event is about an earlier attempt than the row's: it names another attempt,
    or a deployment that already judged one (SPEC §3: it never judges a later one)."""
    return (attempt is not None and attempt != row.attempt) or row.judged_before(deployment_id)


def _trusted(row: DeploymentRow, when: float | None, latest: float) -> float | None:
    """A platform time, if it lies between the push and `latest` (our own time) give or take
    the clock skew, and then moved inside them (nothing the platform did precedes the push or
    follows our seeing it); None otherwise."""
    if when is None or when > latest + MAX_CLOCK_SKEW_S:
        return None
    if row.pushed_at is not None:
        if when < row.pushed_at - MAX_CLOCK_SKEW_S:
            return None
        when = max(when, row.pushed_at)
    return min(when, latest)


@_folds(MonitorStarted)
def _(event: MonitorStarted, row: DeploymentRow, at: float) -> None:
    if _elsewhere(row, event.attempt, None):
        return
    row.monitor_pid = event.pid
    row.monitor_host = event.host
    row.monitor_started_at = at
    row.monitor_stopped = 0
    row.not_watched = None


@_folds(MonitorStopped)
def _(event: MonitorStopped, row: DeploymentRow, at: float) -> None:
    if row.monitor_pid == event.pid:
        row.monitor_stopped = 1
        if event.fix and not row.terminal:
            row.not_watched = f"{event.reason}; {event.fix}"


@_folds(MonitorNotStarted)
def _(event: MonitorNotStarted, row: DeploymentRow, at: float) -> None:
    if not row.terminal:
        row.not_watched = f"{event.reason}; {event.fix}" if event.fix else event.reason


@_folds(DeploymentPolled)
def _(event: DeploymentPolled, row: DeploymentRow, at: float) -> None:
    row.polls += 1
    row.api_calls += event.api_calls
    row.db_queries += event.db_queries
    row.errors += 0 if event.ok else 1
    row.retries += 1 if event.retry else 0
    if row.terminal or not (event.ok and event.found):
        return
    if _elsewhere(row, event.attempt, event.deployment_id):
        return
    row.state = "in_progress"
    if event.deployment_id:
        row.deployment_id = event.deployment_id
    if row.first_seen_at is None:
        row.first_seen_at = at
    if event.steps_total is not None:
        row.steps_done, row.steps_total = event.steps_done, event.steps_total
    if event.phase:
        row.phase = event.phase
        _note_phase(row, event.phase, _trusted(row, parse_iso(event.platform_at or ""), at) or at)


@_folds(LogsFetched)
def _(event: LogsFetched, row: DeploymentRow, at: float) -> None:
    row.api_calls += event.api_calls


@_folds(NotificationIngested)
def _(event: NotificationIngested, row: DeploymentRow, at: float) -> None:
    if row.terminal or _elsewhere(row, None, event.deployment_id):
        return
    if event.deployment_id:
        row.deployment_id = event.deployment_id
    if event.phase:
        row.phase = event.phase
        row.state = "in_progress"
        _note_phase(row, event.phase, at)


@_folds(DeploymentSucceeded)
def _(event: DeploymentSucceeded, row: DeploymentRow, at: float) -> None:
    if row.terminal or _elsewhere(row, event.attempt, event.deployment_id):
        return
    _finish(row, "succeeded", event.phase, event.deployment_id, event.detected_at, at)
    _platform_time(row, event.platform_at)
    row.terminal_source = event.source or None
    row.push_to_live_s = _push_to_live(row, event.push_to_live_s)


def _push_to_live(row: DeploymentRow, reported: float | None) -> float | None:
    """From the push to live: the platform's time of it when trusted, else our detection;
    never negative, never longer than from the push to our detection (SPEC §3)."""
    if row.pushed_at is None or row.finished_at is None:
        ok = isinstance(reported, int | float) and 0 <= reported < float("inf")
        return reported if ok else None
    ceiling = max(row.finished_at - row.pushed_at, 0.0)
    live_at = row.finished_at if row.platform_finished_at is None else row.platform_finished_at
    return round(min(max(live_at - row.pushed_at, 0.0), ceiling), 3)


@_folds(DeploymentFailed)
def _(event: DeploymentFailed, row: DeploymentRow, at: float) -> None:
    if row.terminal or _elsewhere(row, event.attempt, event.deployment_id):
        return
    state = "canceled" if event.phase == "CANCELED" else "failed"
    _finish(row, state, event.phase, event.deployment_id, event.detected_at, at)
    _platform_time(row, event.platform_at)
    row.terminal_source = event.source or None
    row.reason_code = event.reason.get("code") or None
    row.reason_message = event.reason.get("message") or None
    row.failed_step = event.failed_step
    row.log_tail = json.dumps(event.log_tail) if event.log_tail else None


@_folds(DeploymentSuperseded)
def _(event: DeploymentSuperseded, row: DeploymentRow, at: float) -> None:
    if row.terminal or _elsewhere(row, event.attempt, None):
        return
    _finish(row, "superseded", "SUPERSEDED", None, event.detected_at, at)
    _platform_time(row, event.platform_at)
    row.terminal_source = event.source or None
    row.superseded_by = event.by_sha
    row.superseded_went_live = None if event.went_live is None else int(event.went_live)


@_folds(MonitorTimedOut)
def _(event: MonitorTimedOut, row: DeploymentRow, at: float) -> None:
    if row.terminal or _elsewhere(row, event.attempt, None):
        return
    row.state = "timed_out"
    row.finished_at = at
    row.reason_code = "timed_out"
    row.reason_message = timed_out_reason(event.waited_s, event.last_phase or row.phase)


def _finish(
    row: DeploymentRow,
    state: str,
    phase: str | None,
    deployment_id: str | None,
    detected_at: str | None,
    at: float,
) -> None:
    row.state = state
    if phase:
        row.phase = phase
    if deployment_id:
        row.deployment_id = deployment_id
    row.finished_at = parse_iso(detected_at or "") or at
    if phase:
        _note_phase(row, phase, row.finished_at)


def _platform_time(row: DeploymentRow, platform_at: str | None) -> None:
    """The platform's time of the terminal phase, when it is plausible (`_trusted`)."""
    latest = row.finished_at if row.finished_at is not None else row.last_event_at
    when = _trusted(row, parse_iso(platform_at or ""), latest)
    row.platform_finished_at = when
    if when is not None and row.finished_at is not None:
        row.detection_lag_s = round(max(0.0, row.finished_at - when), 3)


def _note_phase(row: DeploymentRow, phase: str, when: float) -> None:
    """Add `phase` to the row's JSON object of first sightings, unless it is there already.

    Written as text, as `json.dumps(..., separators=(",", ":"))` would write it: most polls see a
    phase seen before, and a replay must not parse and re-encode the object every time."""
    key = encode_basestring_ascii(phase)
    if row.phases is None:
        row.phases = f"{{{key}:{float(when)!r}}}"
    elif f"{{{key}:" not in row.phases and f",{key}:" not in row.phases:
        # (outside strings a quote is never escaped: `{"X":` and `,"X":` only start keys)
        row.phases = f"{row.phases[:-1]},{key}:{float(when)!r}}}"
