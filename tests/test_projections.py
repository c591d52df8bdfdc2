"""The inline projection equals a replay of the log, whatever the events and their order."""

from __future__ import annotations

import importlib.util
import sqlite3
import tempfile
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.clock import FakeClock, iso
from tracker.events import (
    SYSTEM_STREAM,
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    LogsFetched,
    MonitorStarted,
    MonitorStopped,
    MonitorTimedOut,
    NotificationIngested,
    PushConfirmed,
    PushRecorded,
    PushRejected,
    SourcesDisagreed,
)
from tracker.projections import exit_code_of
from tracker.store import Store

SHAS = ("a" * 40, "b" * 40, "c" * 40)
BENCH = Path(__file__).resolve().parent.parent / "bench"

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
maybe_text = st.none() | text
phase = st.sampled_from(["PENDING_BUILD", "BUILDING", "DEPLOYING", "ACTIVE", "ERROR", "CANCELED"])
maybe_time = st.none() | st.just("garbage") | st.integers(1_700_000_000, 1_900_000_000).map(iso)
small = st.integers(0, 5)
pid = st.integers(1, 99_999)


def polled() -> st.SearchStrategy[Event]:
    return st.builds(
        DeploymentPolled, source=st.sampled_from(["digitalocean", "mysql"]), ok=st.booleans(),
        found=st.booleans(), phase=st.none() | phase, status=maybe_text,
        deployment_id=st.none() | st.sampled_from(["d1", "d2"]), http_status=st.none() | small,
        latency_ms=st.floats(0, 5000, allow_nan=False), ratelimit_remaining=st.none() | small,
        error=maybe_text, error_kind=st.none() | st.sampled_from(["timeout", "http_5xx"]),
        api_calls=small, db_queries=small, retry=st.booleans(),
        steps_done=st.none() | small, steps_total=st.none() | small, platform_at=maybe_time,
    )  # fmt: skip


def events(sha: str) -> st.SearchStrategy[Event]:
    """Every kind of event, with awkward values (unset times, errors, unknown phases)."""
    return st.one_of(
        st.builds(PushRecorded, sha=st.just(sha), branch=st.sampled_from(["main", "dev"]),
                  remote=text, remote_url=text, pushed_by=text, host=text,
                  source=st.sampled_from(["hook", "cli", "api"]), pushed_at=maybe_time),
        st.builds(PushConfirmed, sha=st.just(sha)),
        st.builds(PushRejected, sha=st.just(sha), reason=text),
        st.builds(MonitorStarted, pid=pid, host=text, policy=text, max_wait_s=st.floats(0, 480)),
        st.builds(MonitorStopped, pid=pid, reason=text),
        polled(),
        polled(),
        st.builds(LogsFetched, deployment_id=text, api_calls=small, error=maybe_text),
        st.builds(SourcesDisagreed, mysql_status=maybe_text, api_phase=maybe_text),
        st.builds(NotificationIngested, status=maybe_text, phase=st.none() | phase,
                  deployment_id=maybe_text),
        st.builds(DeploymentSucceeded, deployment_id=maybe_text, detected_at=maybe_time,
                  platform_at=maybe_time, push_to_live_s=st.none() | st.floats(0, 1e4)),
        st.builds(DeploymentFailed, deployment_id=maybe_text, phase=st.sampled_from(
                  ["ERROR", "CANCELED"]), reason=st.dictionaries(st.sampled_from(
                  ["code", "message"]), text), failed_step=maybe_text,
                  log_tail=st.lists(text, max_size=3), detected_at=maybe_time),
        st.builds(DeploymentSuperseded, by_sha=st.none() | st.sampled_from(SHAS),
                  by_deployment_id=maybe_text, went_live=st.none() | st.booleans()),
        st.builds(MonitorTimedOut, waited_s=st.floats(0, 1e4), last_phase=maybe_text),
    )  # fmt: skip


EVENTS = {stream: events(stream) for stream in (*SHAS, SYSTEM_STREAM)}


Step = tuple[str, Event, str | None, float]


@st.composite
def steps(draw: st.DrawFn) -> Step:
    """One append: stream, event, an idempotency key from a small pool, seconds elapsed."""
    stream = draw(st.sampled_from([*SHAS, SYSTEM_STREAM]))
    event = draw(EVENTS[stream])
    key = draw(st.none() | st.sampled_from([f"k{i}" for i in range(6)]))
    return stream, event, key, draw(st.floats(0, 120, allow_nan=False))


def table(db: Path, name: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps(), max_size=40))
def test_rebuild_equals_the_inline_projection(sequence: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.db"
        clock = FakeClock()
        store = Store(db, clock=clock, synchronous="OFF")
        store.last_seq()
        for stream, event, key, elapsed in sequence:
            clock.advance(elapsed)
            store.append(stream, event, key=key)
        inline = table(db, "deployments"), table(db, "source_calls")
        report = store.rebuild()
        assert report.differing == ()
        assert report.calls_differing == 0
        assert (table(db, "deployments"), table(db, "source_calls")) == inline
        store.close()


def test_appends_through_the_store_and_a_replay_agree_on_a_whole_deployment(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "events.db", clock=clock)
    sha = SHAS[0]
    store.append(sha, PushRecorded(sha=sha, branch="main"))
    for phase_name in ("PENDING_BUILD", "BUILDING", "DEPLOYING"):
        clock.advance(5)
        poll = DeploymentPolled(source="digitalocean", ok=True, found=True, phase=phase_name,
                                deployment_id="d1", api_calls=1)  # fmt: skip
        store.append(sha, poll)
    clock.advance(5)
    store.append(sha, DeploymentSucceeded(deployment_id="d1"))
    row = store.deployment(sha)
    assert row is not None
    assert (row.state, row.phase, row.polls, row.api_calls) == ("succeeded", "ACTIVE", 3, 3)
    assert row.push_to_live_s == 20.0
    assert exit_code_of(row.state) == 0
    rows, calls, count, last = store.replay()
    assert rows[sha] == row and len(calls) == 3 and (count, last) == (5, 5)


def load_seed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_seed", BENCH / "seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seeder_writes_what_appends_would_have(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    assert load_seed().seed(db, 300, workers=1) == 3000
    store = Store(db)
    assert store.integrity_check() == "ok"
    report = store.rebuild()
    assert (report.events, report.rows, report.differing, report.calls_differing) == (
        3000, 300, (), 0,
    )  # fmt: skip
    states = {r.state for r in store.deployments()}
    assert states == {"succeeded", "failed"}
    assert store.last_seq() == 3000
