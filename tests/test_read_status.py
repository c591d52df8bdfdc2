"""`status_of`: a deployment row in, the status `tracker status` answers out (pure: the
monitor's liveness and whether anything could watch the commit are passed in)."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tracker.clock import iso
from tracker.projections import DeploymentRow
from tracker.read.status import (
    NO_SOURCE,
    STALE_AFTER_S,
    AttemptRecord,
    EventRecord,
    MonitorInfo,
    may_be_unreachable,
    may_be_unwatched,
    state_of,
    status_of,
)

SHA = "5ca1ab1e" + "0" * 32
NOW = 1_800_000_000.0
PID = 4242


def row(
    state: str, *, pid: int | None = PID, quiet_s: float = 5.0, **more: object
) -> DeploymentRow:
    base = DeploymentRow(
        sha=SHA, state=state, first_seq=1, last_seq=4, last_event_at=NOW - quiet_s,
        branch="main", pushed_at=NOW - 60, monitor_pid=pid, monitor_host="here",
    )  # fmt: skip
    return replace(base, **more)  # type: ignore[arg-type]


# state, monitor pid, stopped, silent for, alive, watched -> state, exit code, watched, why not
TABLE = [
    # a push nobody has picked up yet: watched while a source is configured
    ("pending", None, 0, 5, False, True, "pending", 2, True, None),
    ("pending", None, 0, 5, False, False, "pending", 2, False, NO_SOURCE),
    # its monitor runs: watched, whatever the settings say
    ("pending", PID, 0, 5, True, False, "pending", 2, True, None),
    ("in_progress", PID, 0, 5, True, True, "in_progress", 2, True, None),
    # the monitor is gone, stopped, or silent too long: stale
    ("in_progress", PID, 0, 5, False, True, "stale", 2, True, None),
    ("in_progress", PID, 0, 5, False, False, "stale", 2, False, NO_SOURCE),
    ("pending", PID, 0, 5, False, False, "stale", 2, False, NO_SOURCE),
    ("in_progress", PID, 1, 5, True, True, "stale", 2, True, None),
    ("in_progress", PID, 0, STALE_AFTER_S + 1, True, True, "stale", 2, True, None),
    ("in_progress", PID, 0, STALE_AFTER_S - 1, True, True, "in_progress", 2, True, None),
    # a commit that never had a monitor is not stale, and in_progress is never "unwatched"
    ("in_progress", None, 0, STALE_AFTER_S + 1, False, False, "in_progress", 2, True, None),
    # terminal states stand, monitor or not
    ("succeeded", PID, 0, 5, False, False, "succeeded", 0, True, None),
    ("failed", PID, 1, 5, False, False, "failed", 1, True, None),
    ("canceled", None, 0, 5, False, True, "canceled", 1, True, None),
    ("timed_out", PID, 0, STALE_AFTER_S + 1, False, False, "timed_out", 1, True, None),
    ("rejected", None, 0, 5, False, False, "rejected", 1, True, None),
]


@pytest.mark.parametrize(
    ("state", "pid", "stopped", "quiet", "alive", "watched", "shown", "code", "is_watched", "why"),
    TABLE,
)
def test_the_state_and_whether_anything_watches_it(
    state: str, pid: int | None, stopped: int, quiet: float, alive: bool, watched: bool,
    shown: str, code: int, is_watched: bool, why: str | None,
) -> None:  # fmt: skip
    found = status_of(
        row(state, pid=pid, quiet_s=quiet, monitor_stopped=stopped), NOW, alive, watched
    )
    assert (found.state, found.exit_code, found.watched, found.not_watched) == (
        shown, code, is_watched, why,
    )  # fmt: skip
    assert found.state == state_of(
        row(state, pid=pid, quiet_s=quiet, monitor_stopped=stopped), NOW, alive
    )
    assert found.monitor == MonitorInfo(pid, "here", alive)


@pytest.mark.parametrize(("went_live", "code"), [(1, 0), (0, 1), (None, 1)])
def test_a_superseded_commit_succeeded_when_its_successor_went_live(
    went_live: int | None, code: int
) -> None:
    found = status_of(row("superseded", superseded_went_live=went_live), NOW, False, True)
    assert (found.state, found.exit_code) == ("superseded", code)


@pytest.mark.parametrize(
    ("state", "watched", "is_watched", "why"),
    [
        ("pending", True, False, "the token was refused; fix it"),  # the row's reason wins
        ("pending", False, False, "the token was refused; fix it"),
        ("succeeded", False, True, None),  # a finished commit needs no watching
    ],
)
def test_the_rows_own_reason_nothing_watches_it(
    state: str, watched: bool, is_watched: bool, why: str | None
) -> None:
    unwatched = row(state, pid=None, not_watched="the token was refused; fix it")
    found = status_of(unwatched, NOW, False, watched)
    assert (found.watched, found.not_watched) == (is_watched, why)


def test_the_rest_of_the_row_is_carried_over_as_the_json_shows_it() -> None:
    earlier = [
        {"attempt": 1, "state": "failed", "exit_code": 1, "deployment_id": "d-1",
         "pushed_at": NOW - 600, "finished_at": NOW - 500},
    ]  # fmt: skip
    recent = [EventRecord(4, SHA, 4, "DeploymentPolled", iso(NOW - 5), {"ok": True})]
    full = row(
        "failed", phase="ERROR", deployment_id="d-2", finished_at=NOW - 5, polls=7,
        api_calls=9, errors=1, reason_code="build_failed", reason_message="npm ci failed",
        failed_step="build", log_tail=json.dumps(["npm ERR!"]), steps_done=2, steps_total=5,
        db_queries=0, attempt=2, previous_attempts=json.dumps(earlier),
    )  # fmt: skip
    found = status_of(full, NOW, False, True, recent)
    assert found.short_sha == SHA[:7] and found.branch == "main"
    assert found.reason == {"code": "build_failed", "message": "npm ci failed"}
    assert found.log_tail == ["npm ERR!"] and found.failed_step == "build"
    assert (found.pushed_at, found.finished_at) == (iso(NOW - 60), iso(NOW - 5))
    assert found.last_event_at == iso(NOW - 5)
    assert (found.polls, found.api_calls, found.errors, found.steps_done) == (7, 9, 1, 2)
    assert found.recent_events == recent and found.recent_events is not recent
    assert found.attempt == 2
    assert found.previous_attempts == [
        AttemptRecord(1, "failed", 1, "d-1", iso(NOW - 600), iso(NOW - 500))
    ]
    assert found.to_dict()["monitor"] == {"pid": PID, "host": "here", "alive": False}


def test_a_row_with_no_reason_has_none() -> None:
    found = status_of(row("pending"), NOW, True, True)
    assert found.reason is None and found.log_tail == [] and found.recent_events == []


@pytest.mark.parametrize(
    ("state", "pid", "alive", "asks"),
    [
        ("pending", None, False, True),
        ("pending", PID, True, False),  # its monitor watches it
        ("in_progress", PID, False, True),  # stale, and maybe nothing to resume it with
        ("in_progress", None, False, False),
        ("succeeded", PID, False, False),
    ],
)
def test_the_settings_are_asked_only_when_the_answer_depends_on_them(
    state: str, pid: int | None, alive: bool, asks: bool
) -> None:
    subject = row(state, pid=pid)
    assert may_be_unwatched(subject, NOW, alive) is asks
    if not asks:  # then `watched` changes nothing
        assert status_of(subject, NOW, alive, True) == status_of(subject, NOW, alive, False)


@pytest.mark.parametrize(
    ("state", "errors", "asks"),
    [("timed_out", 3, True), ("timed_out", 0, False), ("failed", 3, False), ("pending", 3, False)],
)
def test_the_polls_are_read_for_an_unreachable_source_only_after_errors(
    state: str, errors: int, asks: bool
) -> None:
    found = status_of(row(state, pid=None, errors=errors), NOW, False, True)
    assert may_be_unreachable(found) is asks
    stale = status_of(row("in_progress", errors=errors), NOW, False, True)
    assert may_be_unreachable(stale) is (errors > 0)


def test_the_module_does_no_io() -> None:
    """Pure: it imports the standard library's data modules and the tracker's pure ones only."""
    source = Path(__file__).parents[1] / "tracker" / "read" / "status.py"
    tree = ast.parse(source.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    allowed = {
        "__future__",
        "dataclasses",
        "json",
        "typing",
        "tracker.clock",
        "tracker.projections",
    }
    assert names <= allowed
