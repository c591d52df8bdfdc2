"""`tracker.monitor.ingest`: a notification from outside, checked, turned into events (pure).

The command around it (`tracker ingest`, reading stdin, appending) is tested in test_cli.py and
test_bad_input.py; here is the table of what each notification means and what it refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracker.errors import UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentSucceeded,
    DeploymentSuperseded,
    PushRecorded,
)
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.ingest import events_for, status_for_notification

SHA = "ab" * 20
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("fields", "outcome", "phase"),
    [
        ({"status": "success"}, DeploymentSucceeded, "ACTIVE"),
        ({"status": "Succeeded"}, DeploymentSucceeded, "ACTIVE"),
        ({"status": "failed"}, DeploymentFailed, "ERROR"),
        ({"status": "error"}, DeploymentFailed, "ERROR"),
        ({"status": "cancelled"}, DeploymentFailed, "CANCELED"),
        ({"phase": "canceled"}, DeploymentFailed, "CANCELED"),
        ({"phase": "SUPERSEDED"}, DeploymentSuperseded, "SUPERSEDED"),
        ({"phase": "BUILDING"}, None, "BUILDING"),
        ({"status": "queued"}, None, None),  # a status we do not know ends nothing
        ({"status": "failed", "phase": "ACTIVE"}, DeploymentSucceeded, "ACTIVE"),  # phase wins
    ],
)
def test_what_each_notification_means(
    fields: dict[str, str], outcome: type | None, phase: str | None
) -> None:
    found = events_for({"sha": SHA, **fields}, now=NOW)
    assert found.sha == SHA
    assert found.raw.phase == phase
    if outcome is None:
        assert found.outcome is None and found.key is None
    else:
        assert type(found.outcome) is outcome
        assert found.key == f"ingest:{SHA}:-:{phase}"
        assert found.outcome.detected_at == "2027-01-15T08:00:00.000Z"  # type: ignore[union-attr]
        assert found.outcome.source == "ingest:webhook"  # type: ignore[union-attr]


def test_a_failure_carries_who_said_it_and_its_log_tail_bounded() -> None:
    tail = [f"line {n}" for n in range(250)] + ["x" * 5000]
    found = events_for(
        {"sha": SHA.upper(), "status": "failed", "source": "ci", "deployment_id": "d-7",
         "log_tail": tail},
        now=NOW,
    )  # fmt: skip
    assert found.sha == SHA  # an upper-case SHA is the same commit
    failed = found.outcome
    assert isinstance(failed, DeploymentFailed)
    assert failed.reason == {"code": "", "message": "ci reported failed"}
    assert len(failed.log_tail) == 200 and failed.log_tail[0] == "line 51"
    assert failed.log_tail[-1] == "x" * 1000
    assert found.key == f"ingest:{SHA}:d-7:ERROR"
    as_text = events_for({"sha": SHA, "status": "failed", "log_tail": "a\nb"}, now=NOW).outcome
    assert isinstance(as_text, DeploymentFailed) and as_text.log_tail == ["a", "b"]


@pytest.mark.parametrize(
    ("note", "says"),
    [
        ({}, "has no 'sha'"),
        ({"sha": "abc", "status": "success"}, "full 40-hex"),
        ({"sha": "g" * 40, "status": "success"}, "full 40-hex"),
        ({"sha": SHA}, "needs 'status' or 'phase'"),
        ({"sha": SHA, "phase": "BOGUS"}, "unknown phase"),
        ({"sha": SHA, "status": 5}, "short printable string"),
        ({"sha": SHA, "status": "x" * 201}, "short printable string"),
        ({"sha": SHA, "status": "ok\x1b[2J"}, "short printable string"),
        ({"sha": SHA, "status": "failed", "log_tail": 5}, "'log_tail' must be"),
        ({"sha": SHA, "status": "failed", "log_tail": ["a", 1]}, "'log_tail' must be"),
    ],
)
def test_a_malformed_notification_is_refused_before_anything_is_written(
    note: dict[str, Any], says: str
) -> None:
    with pytest.raises(UsageError, match=says):
        events_for(note, now=NOW)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('"x"', "must be a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply|not valid JSON"),
    ],
)
def test_the_notifications_text_must_be_one_json_object(payload: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        status_for_notification(payload)


def test_the_same_notification_twice_is_stored_once(tmp_path: Path) -> None:
    found = events_for({"sha": SHA, "status": "success", "deployment_id": "d-1"}, now=NOW)
    assert found.outcome is not None
    with SQLiteLog(tmp_path / "events.db") as log:
        log.append(SHA, PushRecorded(sha=SHA, branch="main"))
        first = log.append(SHA, found.outcome, key=found.key)
        again = log.append(SHA, found.outcome, key=found.key)
        types = [e.type for e in log.events(stream=SHA)]
    assert first is not None and again is None
    assert types == ["PushRecorded", "DeploymentSucceeded"]
