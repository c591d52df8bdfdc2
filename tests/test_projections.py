"""The inline projection equals a replay of the log, whatever the events and their order."""

from __future__ import annotations

import importlib.util
import sqlite3
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracker.log.rebuild as store_module
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
from tracker.log.sqlite import SQLiteLog
from tracker.projections import exit_code_of, measure_rows

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


PROJECTIONS = {  # table: its columns (the measures' `id` is only a rowid)
    "deployments": "*",
    "source_calls": "*",
    "deployment_measures": "sha, measure, value, pushed_at, branch",
    "call_totals": "*",
    "measure_totals": "*",
}


def table(db: Path, name: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        found = conn.execute(f"SELECT {PROJECTIONS[name]} FROM {name}").fetchall()
    return sorted(found, key=repr)


def tables(db: Path) -> list[list[tuple[object, ...]]]:
    return [table(db, name) for name in PROJECTIONS]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps(), max_size=40))
def test_rebuild_equals_the_inline_projection(sequence: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.db"
        clock = FakeClock()
        store = SQLiteLog(db, clock=clock, synchronous="OFF")
        store.last_seq()
        for stream, event, key, elapsed in sequence:
            clock.advance(elapsed)
            store.append(stream, event, key=key)
        inline = tables(db)
        report = store.rebuild()
        assert report.clean, report
        assert tables(db) == inline
        store.close()


def test_appends_through_the_store_and_a_replay_agree_on_a_whole_deployment(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = SQLiteLog(tmp_path / "events.db", clock=clock)
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
    report = store.rebuild()  # a replay of the log, compared with the rows appends wrote
    assert report.clean and (report.events, report.rows) == (5, 1)


def load_seed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_seed", BENCH / "seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seeder_writes_what_appends_would_have(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    assert load_seed().seed(db, 300, workers=1) == 3000
    store = SQLiteLog(db)
    assert store.integrity_check() == "ok"
    report = store.rebuild()
    assert (report.events, report.rows, report.clean) == (3000, 300, True)
    rows = map(store.deployment, store.shas_with_prefix("", limit=1_000))
    states = {r.state for r in rows if r is not None}
    assert states == {"succeeded", "failed"}
    assert store.last_seq() == 3000


def corrupt(db: Path) -> list[str]:
    """Damage every projection the way a bug or a hand edit would."""
    with sqlite3.connect(db) as conn:
        victims = [r[0] for r in conn.execute("SELECT sha FROM deployments ORDER BY sha LIMIT 4")]
        conn.execute("UPDATE deployments SET state = 'failed' WHERE sha = ?", (victims[0],))
        conn.execute("DELETE FROM deployments WHERE sha = ?", (victims[1],))
        conn.execute(
            "INSERT INTO deployments (sha, state, first_seq, last_seq, last_event_at)"
            " VALUES (?, 'pending', 1, 1, 0)",
            ("f" * 40,),
        )
        conn.execute("DELETE FROM source_calls WHERE seq = (SELECT min(seq) FROM source_calls)")
        conn.execute(  # six calls that were never made
            "INSERT INTO source_calls SELECT seq + 1000000, sha, at, source, kind, 7, db_queries,"
            " ok, error_kind, retry, latency_ms, ratelimit_remaining, branch"
            " FROM source_calls WHERE sha = ?",
            (victims[2],),
        )
        conn.execute("DELETE FROM deployment_measures WHERE sha = ?", (victims[3],))
        conn.execute(
            "INSERT INTO deployment_measures (sha, measure, value, pushed_at, branch)"
            " VALUES (?, 'phase:NOWHERE', 5, 0, 'main')",
            (victims[2],),
        )
        conn.execute("UPDATE call_totals SET calls = calls + 1")
        conn.execute("UPDATE measure_totals SET total = total + 1")
    return victims


def test_a_rebuild_in_worker_processes_finds_and_fixes_every_difference(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    load_seed().seed(db, 300, workers=1)
    expected = tables(db)
    store = SQLiteLog(db)
    victims = corrupt(db)
    report = store.rebuild(workers=2)  # two spawned processes, each folding half the commits
    assert (report.events, report.rows) == (3000, 300)
    assert len(report.differing) == 3  # a row changed, one deleted, one invented
    assert report.calls_differing == 1 + 6  # one missing, six invented
    lost = len(measure_rows(store.deployment(victims[3])))
    assert report.measures_differing == lost + 1  # one commit's measures lost, one invented
    assert report.totals_differing > 0
    assert tables(db) == expected
    assert store.rebuild(workers=2).clean and store.rebuild(workers=1).clean
    assert tables(db) == expected


def test_events_appended_during_a_rebuild_are_folded_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay runs outside the lock: a commit appended to meanwhile is replayed again."""
    db = tmp_path / "seeded.db"
    load_seed().seed(db, 50, workers=1)
    late = load_seed().sha_of(7)
    real = store_module._compare_part

    def replay_then_append(*args: object) -> object:
        found = real(*args)  # type: ignore[arg-type]
        with SQLiteLog(db) as writer:  # another writer, between the replay and the lock
            writer.append(late, DeploymentPolled(source="digitalocean", ok=False, api_calls=3,
                                                 error_kind="timeout"))  # fmt: skip
            sha = "9" * 40
            writer.append(sha, PushRecorded(sha=sha, branch="dev"))
        return found

    monkeypatch.setattr(store_module, "_compare_part", replay_then_append)
    store = SQLiteLog(db)
    before = store.deployment(late)
    with sqlite3.connect(db) as conn:  # wrong before the rebuild: its fix must not be stale
        conn.execute("UPDATE deployments SET polls = 0 WHERE sha = ?", (late,))
        conn.execute("UPDATE call_totals SET calls = calls + 1")  # checked after the lock
        wrong_totals = conn.execute("SELECT count(*) FROM call_totals").fetchone()[0]
    report = store.rebuild(workers=1)
    assert report.differing == (late,) and report.calls_differing == 0, report
    assert report.totals_differing == wrong_totals
    assert (report.events, report.rows) == (502, 51)
    row = store.deployment(late)
    assert before is not None and row is not None
    assert (row.polls, row.errors, row.api_calls) == (
        before.polls + 1, before.errors + 1, before.api_calls + 3,
    )  # fmt: skip
    monkeypatch.undo()
    inline = tables(db)
    assert store.rebuild(workers=1).clean and tables(db) == inline


def test_every_stream_falls_in_one_part_whatever_its_name(tmp_path: Path) -> None:
    """The parts split the commits by the last character of the stream: '' has none, and
    '$tracker' ends in a letter no SHA has."""
    db = tmp_path / "events.db"
    store = SQLiteLog(db, synchronous="OFF")
    streams = ["", SYSTEM_STREAM, *(c * 40 for c in "0123456789abcdef")]
    for stream in streams:
        store.append(stream, PushRecorded(sha=stream, branch="main"))
        store.append(stream, DeploymentPolled(source="digitalocean", ok=True, found=True,
                                              phase="BUILDING", api_calls=1))  # fmt: skip
    expected = tables(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE deployments SET polls = 9")
    report = store.rebuild(workers=3)
    assert sorted(report.differing) == sorted(streams)
    assert tables(db) == expected
