"""The documented JSON schemas (docs/schema/) and the real output stay in step: a real log with
commits in every state, read through the real API and the real CLI, validated both ways."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tracker.api import Tracker
from tracker.clock import iso
from tracker.config import load_settings
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    LogsFetched,
    MonitorStarted,
    MonitorTimedOut,
    PushRecorded,
    PushRejected,
)
from tracker.log.sqlite import SQLiteLog

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "docs" / "schema"
T0 = 1_800_000_000.0


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def sha(n: int) -> str:
    return f"{n:040x}"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def build_log(path: Path) -> dict[str, str]:
    """Commits in every state, through `SQLiteLog.append`; returns state -> SHA."""
    here, me = socket.gethostname(), os.getpid()
    shas: dict[str, str] = {}
    with SQLiteLog(path, synchronous="NORMAL") as store:

        def add(n: int, state: str, *events: Any) -> None:
            shas[state] = sha(n)
            at = T0 + 100 * n
            push = PushRecorded(sha=sha(n), branch="main", source="api", pushed_at=iso(at))
            store.append(sha(n), push, at=at)
            for i, event in enumerate(events, start=1):
                store.append(sha(n), event, at=at + i)

        def polled(phase: str, ok: bool = True) -> DeploymentPolled:
            return DeploymentPolled(
                source="digitalocean", ok=ok, found=ok, phase=phase if ok else None,
                deployment_id="dep" if ok else None, api_calls=1, ratelimit_remaining=4990,
                error=None if ok else "HTTP 503", error_kind=None if ok else "server_error",
                steps_done=2, steps_total=6, platform_at=iso(T0),
            )  # fmt: skip

        started = MonitorStarted(pid=me, host=here, policy="stepped", sources=["digitalocean"])
        add(1, "pending")
        add(2, "in_progress", started, polled("BUILDING"))
        add(3, "succeeded", started, polled("DEPLOYING"),
            DeploymentSucceeded(deployment_id="dep", platform_at=iso(T0 + 301)))  # fmt: skip
        add(4, "failed", started, polled("BUILDING", ok=False), polled("BUILDING"),
            DeploymentFailed(deployment_id="dep", reason={"code": "BuildJobFailed",
                             "message": "build failed"}, failed_step="build",
                             log_tail=["npm ERR! missing script: build"]),
            LogsFetched(deployment_id="dep", api_calls=2, lines=1))  # fmt: skip
        replaced = DeploymentSuperseded(by_sha=sha(3), by_deployment_id="dep3", went_live=True)
        add(5, "superseded", started, polled("BUILDING"), replaced)
        add(6, "timed_out", started, MonitorTimedOut(waited_s=480.0, last_phase="BUILDING"))
        add(7, "rejected", PushRejected(sha=sha(7), reason="non-fast-forward"))
        dead = MonitorStarted(pid=dead_pid(), host=here, policy="stepped")
        add(8, "stale", dead, polled("BUILDING"))
    shas["not_found"] = sha(99)
    return shas


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    path = tmp_path_factory.mktemp("schema") / "events.db"
    yield path, build_log(path)


@pytest.fixture
def tracker(world: tuple[Path, dict[str, str]]) -> Iterator[Tracker]:
    with Tracker(world[0], settings=load_settings(None, env={})) as t:
        yield t


def check(name: str, output: Any) -> None:
    """Valid against the schema, and the top level holds exactly what the schema declares."""
    doc = schema(name)
    errors = sorted(Draft202012Validator(doc).iter_errors(output), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert set(output) == set(doc["properties"]) == set(doc["required"])


@pytest.mark.parametrize("name", ["status", "stats", "event"])
def test_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    doc = schema(name)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["additionalProperties"] is False
    assert set(doc["required"]) == set(doc["properties"])


def test_status_embeds_the_event_schema_unchanged() -> None:
    event = {k: v for k, v in schema("event").items() if k not in {"$schema", "$id", "title"}}
    assert schema("status")["$defs"]["event"] == event


@pytest.mark.parametrize(
    "state",
    ["pending", "in_progress", "succeeded", "failed", "superseded", "timed_out", "rejected",
     "stale", "not_found"],
)  # fmt: skip
def test_status_of_every_state_matches_the_schema(
    tracker: Tracker, world: tuple[Path, dict[str, str]], state: str
) -> None:
    st = tracker.status(world[1][state])
    assert st.state == state
    out = json.loads(json.dumps(st.to_dict()))
    check("status", out)
    if state != "not_found":
        assert out["recent_events"], "the recent events are part of the checked output"


def test_a_failed_status_fills_the_nested_objects(
    tracker: Tracker, world: tuple[Path, dict[str, str]]
) -> None:
    out = tracker.status(world[1]["failed"]).to_dict()
    assert out["reason"] == {"code": "BuildJobFailed", "message": "build failed"}
    assert out["log_tail"] and out["monitor"]["pid"] == os.getpid()
    check("status", json.loads(json.dumps(out)))


def test_the_schema_rejects_what_the_contract_forbids(
    tracker: Tracker, world: tuple[Path, dict[str, str]]
) -> None:
    good = json.loads(json.dumps(tracker.status(world[1]["succeeded"]).to_dict()))
    validator = Draft202012Validator(schema("status"))
    assert not list(validator.iter_errors(good))
    for broken in (
        {**good, "surprise": 1},
        {k: v for k, v in good.items() if k != "exit_code"},
        {**good, "state": "done"},
        {**good, "pushed_at": "2027-01-15 08:00:00"},
    ):
        assert list(validator.iter_errors(broken))


def test_stats_matches_the_schema(tracker: Tracker) -> None:
    out = json.loads(json.dumps(tracker.stats().to_dict()))
    check("stats", out)
    assert out["durations"]["phases"] and out["durations"]["push_to_live"]["count"] == 1
    assert out["errors"]["by_kind"] == {"server_error": 1}
    check("stats", json.loads(json.dumps(tracker.stats(since=T0 * 2).to_dict())))  # empty


def test_every_event_matches_the_schema(tracker: Tracker) -> None:
    events = tracker.events()
    assert {e.type for e in events} >= {"PushRecorded", "DeploymentPolled", "LogsFetched"}
    for event in events:
        check("event", json.loads(json.dumps(event.to_dict())))


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    return subprocess.run(
        [sys.executable, "-m", "tracker", "--db", str(db), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_the_cli_prints_what_the_schemas_say(world: tuple[Path, dict[str, str]]) -> None:
    db, shas = world
    status = cli(db, "status", shas["failed"], "--json")
    assert status.returncode == 1, status.stderr
    check("status", json.loads(status.stdout))
    stats = cli(db, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    check("stats", json.loads(stats.stdout))
    events = cli(db, "events", "--json")
    assert events.returncode == 0, events.stderr
    lines = events.stdout.splitlines()
    assert len(lines) > 10
    for line in lines:
        check("event", json.loads(line))
