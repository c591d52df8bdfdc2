"""The contract every event-log backend keeps (`tracker.log.EventLog`), one suite for all.

In the style of eventsourcing's recorder tests (`tests/persistence_tests/base.py`): each test
takes a fresh log from the `log` fixture, parametrised over the backends in `BACKENDS`: SQLite,
a machine's fleet log (its SQLite cache and outbox over a shared log), and the fleet's shared
MySQL log (SPEC §10) in a fresh database per test on the session's private
MariaDB (tests/support/mariadb_private.py), migrated first as `tracker migrate --shared` will. A
backend joins by one entry there, and passes the same tests unchanged.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mariadb_private import PrivateMariaDB, create_database, drop_database
from tracker.clock import FakeClock
from tracker.errors import ConfigError, LockTimeoutError, UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    PushConfirmed,
    PushRecorded,
)
from tracker.log import EventLog, open_log
from tracker.log.base import Append, LogCheck, QueryRows
from tracker.log.mysql import migrate
from tracker.read.stats import compute_stats, recent_history

T = 1_800_000_000.0
A = "a" * 40
B = "b" * 40
WRITER = Path(__file__).resolve().parent / "support" / "store_writer.py"

Opener = Callable[[], EventLog]


def sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Opener:
    return lambda: open_log(tmp_path / "events.db", clock=clock, lock_timeout=0.5)


def mysql_backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Opener:
    server: PrivateMariaDB = request.getfixturevalue("mariadb")  # the session's, running
    database = create_database(server)
    request.addfinalizer(lambda: drop_database(server, database))
    url = server.url(database)
    migrate(url, env={})
    return lambda: open_log(url, clock=clock)


def fleet_backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Opener:
    """A machine's fleet log: its SQLite cache and outbox over a fresh shared MySQL log."""
    from tracker.log.fleet import FleetLog

    server: PrivateMariaDB = request.getfixturevalue("mariadb")
    database = create_database(server)
    request.addfinalizer(lambda: drop_database(server, database))
    url = server.url(database)
    migrate(url, env={})
    env = {"TRACKER_MACHINE_ID": "contract"}
    return lambda: FleetLog.open(tmp_path / "events.db", url, clock=clock, env=env)


# name -> a function of (request, tmp_path, clock) opening the same fresh log each time it is called
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path, FakeClock], Opener]] = {
    "sqlite": sqlite_backend,
    "mysql": mysql_backend,
    "fleet": fleet_backend,
}


def _backends(names: Iterable[str]) -> list[Any]:
    """The backends named, the ones on a MariaDB marked so (CI may not skip them)."""
    return [pytest.param(n, marks=[pytest.mark.mysql] if n != "sqlite" else []) for n in names]


# backends whose log another process can lock by its file
FILE_LOCKED = _backends(["sqlite", "fleet"])


@pytest.fixture(params=_backends(sorted(BACKENDS)))
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return BACKENDS[request.param](request, tmp_path, FakeClock(start=1_800_000_000.0))


@pytest.fixture
def log(opener: Opener) -> Iterator[EventLog]:
    found = opener()
    yield found
    found.close()


def test_a_backend_is_an_event_log(log: EventLog) -> None:
    assert isinstance(log, EventLog)
    assert log.last_seq() == 0 and log.events() == []


def test_positions_increase_in_commit_order_and_versions_count_per_stream(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"))
    log.append(B, PushRecorded(sha=B, branch="main"))
    log.append(A, PushConfirmed(sha=A))
    found = log.events()
    assert [e.seq for e in found] == [1, 2, 3]
    assert [(e.stream, e.version) for e in found] == [(A, 1), (B, 1), (A, 2)]
    assert [e.type for e in found] == ["PushRecorded", "PushRecorded", "PushConfirmed"]
    assert found[0].data["branch"] == "main" and found[0].recorded_at.endswith("Z")
    assert log.last_seq() == 3


def test_the_same_fact_twice_is_one_event(log: EventLog) -> None:
    first = log.append(A, PushRecorded(sha=A, branch="main"), key="push:1")
    again = log.append(A, PushRecorded(sha=A, branch="main"), key="push:1")
    assert first is not None and again is None
    assert log.known_keys({"push:1", "push:2"}) == {"push:1"}
    assert len(log.events()) == 1


def test_a_batch_is_written_whole_in_order(log: EventLog) -> None:
    written = log.append_all(
        [
            Append(A, PushRecorded(sha=A, branch="main"), "push:a", None),
            Append(A, PushConfirmed(sha=A), "confirm:a", None),
            Append(A, PushRecorded(sha=A, branch="main"), "push:a", None),  # a repeat: skipped
        ]
    )
    assert [e.type for e in written] == ["PushRecorded", "PushConfirmed"]
    assert [e.seq for e in log.events()] == [e.seq for e in written]


def test_a_follower_reading_after_its_last_position_misses_nothing(log: EventLog) -> None:
    seen: list[int] = []
    for i in range(5):
        log.append(A if i % 2 else B, DeploymentPolled(source="mysql", ok=True))
        seen += [e.seq for e in log.events(after_seq=seen[-1] if seen else 0)]
    assert seen == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.events(limit=2, newest=True)] == [4, 5]
    assert [e.seq for e in log.events(stream=A)] == [2, 4]


def test_the_projection_is_folded_with_each_append(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"))
    log.append(A, DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING",
                                   deployment_id="d1", api_calls=2))  # fmt: skip
    row = log.deployment(A)
    assert row is not None
    assert (row.state, row.phase, row.deployment_id, row.api_calls) == (
        "in_progress", "BUILDING", "d1", 2,
    )  # fmt: skip
    assert log.deployment(B) is None
    assert log.api_calls_by_window(1_800_000_000.0) == (2, 2)


def test_an_attempt_gets_one_verdict_and_a_new_push_a_new_attempt(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"))
    assert log.append(A, DeploymentSucceeded("d1")) is not None
    assert log.append(A, DeploymentFailed("d1")) is None  # a second verdict is not a new fact
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"))  # pushed again
    log.append(A, DeploymentSucceeded("d1"))  # the old deployment never judges the new push
    row = log.deployment(A)
    assert row is not None and (row.attempt, row.state) == (2, "pending")
    assert log.append(A, DeploymentFailed("d2", attempt=2)) is not None
    row = log.deployment(A)
    assert row is not None and (row.state, row.deployment_id) == ("failed", "d2")


def test_what_is_appended_survives_closing_and_a_rebuild_changes_nothing(opener: Opener) -> None:
    first = opener()
    first.append(A, PushRecorded(sha=A, branch="main"))
    first.append(A, DeploymentSucceeded("d1"))
    first.close()
    again = opener()
    try:
        assert [e.type for e in again.events()] == ["PushRecorded", "DeploymentSucceeded"]
        report = again.rebuild()
        assert report.clean and (report.events, report.rows) == (2, 1)
        assert again.shas_with_prefix("aaaaaaa") == [A]
    finally:
        again.close()


def test_writers_in_other_processes_lose_nothing_and_leave_no_gap(
    opener: Opener, tmp_path: Path
) -> None:
    log = opener()
    path = getattr(log, "path", None) or getattr(log, "url", None)  # where the writers open it
    assert path is not None
    log.close()
    barrier = tmp_path / "go"
    barrier.touch()  # start at once
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "concurrent",
                str(path),
                str(n),
                "40",
                f"{A},{B}",
                str(barrier),
            ],
            stdout=subprocess.DEVNULL,
        )
        for n in range(3)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    log = opener()
    try:
        found = log.events()
        assert [e.seq for e in found] == list(range(1, 121))
        assert log.rebuild().clean
    finally:
        log.close()


def test_stats_read_the_projections_in_one_snapshot(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"), at=T)
    log.append(A, DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING",
                                   deployment_id="d1", api_calls=3), at=T + 10)  # fmt: skip
    log.append(A, DeploymentSucceeded("d1"), at=T + 60)
    log.append(B, PushRecorded(sha=B, branch="dev", source="hook"), at=T + 100)
    with log.stats_queries() as queries:
        stats = compute_stats(queries, now=T + 200)
        on_dev = compute_stats(queries, now=T + 200, branch="dev")
    assert (stats.deployments.total, stats.deployments.succeeded) == (2, 1)
    assert stats.api_calls.total == 3 and stats.api_calls.by_source == {"digitalocean": 3}
    assert stats.api_calls.last_hour == 3
    assert (on_dev.deployments.total, on_dev.deployments.succeeded) == (1, 0)
    history = recent_history(log, branch="main")
    assert [p.state for p in history.deployments] == ["succeeded"]


def test_a_query_reads_and_refuses_what_would_write(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"))
    with log.query("SELECT stream, type FROM events WHERE stream = :s", {"s": A}) as found:
        assert isinstance(found, QueryRows)
        assert found.columns == ["stream", "type"]
        assert [tuple(r) for r in found.rows] == [(A, "PushRecorded")]
    for sql in ("DELETE FROM events", "SELECT 1; SELECT 2", "UPDATE deployments SET sha = 'x'"):
        with pytest.raises(UsageError), log.query(sql) as found:
            list(found.rows)
    assert len(log.events()) == 1


def test_a_check_finds_a_sound_log(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"))
    report = log.check()
    assert isinstance(report, LogCheck)
    assert report.storage_ok and report.lock_ok and report.events == 1


@pytest.mark.parametrize("opener", FILE_LOCKED, indirect=True)
def test_a_check_finds_a_lock_held_by_another_process(opener: Opener) -> None:
    log = opener()
    log.append(A, PushRecorded(sha=A, branch="main"))
    holder = subprocess.Popen(
        [sys.executable, str(WRITER), "hold-lock", str(getattr(log, "path"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        report = log.check()
        assert report.storage_ok and isinstance(report.lock_error, LockTimeoutError)
    finally:
        holder.kill()
        holder.wait()
        log.close()


def test_a_rebuild_by_several_workers_agrees_with_one(log: EventLog) -> None:
    for n in range(20):
        sha = f"{n:040x}"
        log.append(sha, PushRecorded(sha=sha, branch="main"))
        log.append(sha, DeploymentPolled(source="digitalocean", ok=True, api_calls=1))
    one, several = log.rebuild(workers=1), log.rebuild(workers=2)
    assert one.clean and several.clean
    assert (one.events, one.rows) == (several.events, several.rows) == (40, 20)


@pytest.mark.parametrize("opener", ["sqlite"], indirect=True)
def test_patience_gives_up_on_a_held_lock_sooner_and_then_ends(opener: Opener) -> None:
    """SQLite's appends wait on its file lock (a fleet log's go to its outbox first, which that
    lock does not guard; MySQL's patience with a held row is in test_log_mysql.py)."""
    log = opener()
    path = getattr(log, "path")
    log.append(A, PushRecorded(sha=A, branch="main"))
    holder = subprocess.Popen(
        [sys.executable, str(WRITER), "hold-lock", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with log.patience(0.05), pytest.raises(LockTimeoutError, match=r"\b0\.05 s"):
            log.append(A, PushConfirmed(sha=A))
        with pytest.raises(LockTimeoutError, match=r"\b0\.5 s"):  # the log's own timeout again
            log.append(A, PushConfirmed(sha=A))
    finally:
        holder.kill()
        holder.wait()
    assert log.append(A, PushConfirmed(sha=A)) is not None
    log.close()


def test_a_url_of_an_unknown_kind_or_without_tls_far_away_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigError, match="mysql://"):
        open_log("postgres://tracker@db.example:5432/deploys")
    with pytest.raises(ConfigError, match="TLS must be required"):
        open_log("mysql://tracker@db.example:3306/deploys?ssl=disabled")


def test_deployments_read_since_a_time_and_on_a_branch(log: EventLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"), at=T)
    log.append(B, PushRecorded(sha=B, branch="dev", source="hook"), at=T + 100)
    assert [r.sha for r in log.deployments()] == [A, B]  # oldest push first
    assert [r.sha for r in log.deployments(since=T + 50)] == [B]
    assert [r.sha for r in log.deployments(branch="main")] == [A]
    assert log.deployments(since=T + 50, branch="main") == []


def test_requests_on_an_apps_own_stream_are_shared_calls_counted_once(log: EventLog) -> None:
    """A watcher's round that served several commits is on the app's stream, not a commit's:
    the stats count it once, among the calls and on our side of the fixed-poll comparison."""
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"), at=T)
    log.append(A, DeploymentPolled(source="digitalocean", ok=True, api_calls=1), at=T + 10)
    app = "app:digitalocean:0b0e"
    log.append(app, DeploymentPolled(source="digitalocean", ok=True, api_calls=2), at=T + 20)
    with log.stats_queries() as queries:
        assert queries.shared_calls(None) == 2
        assert queries.shared_calls(T + 30) == 0
        stats = compute_stats(queries, now=T + 60)
    assert stats.api_calls.total == 3
    assert log.deployment(app) is None  # no push projects the app's stream
