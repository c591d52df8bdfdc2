"""The monitor against the real MariaDB deployments table (127.0.0.1:3306), in simulated time.

The database is real and every poll is a real query; the time is a `FakeClock`, so rows that
"arrive later" are inserted from a hook on the clock's sleep, after a few simulated polls.
With both sources configured the simulated App Platform API shares the clock over loopback HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from tests.support.mariadb import admin_connection, plan_table
from tracker.clock import FakeClock
from tracker.config import Settings, load_settings
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import Monitor, build_sources
from tracker.monitor.sources.base import DeploymentSource
from tracker.monitor.sources.mysql import MySQLSource
from tracker.sim.server import SimulatedPlatform

pytestmark = pytest.mark.mysql

TOKEN = "sim-token-for-mysql-tests"
URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture
def admin() -> Iterator[pymysql.connections.Connection]:
    conn = admin_connection()
    yield conn
    conn.close()


@pytest.fixture
def table(admin) -> Iterator[str]:
    with plan_table(admin, "deployments_mon") as name:
        yield name


@pytest.fixture
def sha() -> str:
    return uuid.uuid4().hex + "0" * 8


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def insert(admin, table: str, sha: str, status: str, created: str) -> None:
    with admin.cursor() as cur:
        cur.execute(
            f"INSERT INTO `{table}` (commitSha, status, createdAt) VALUES (%s, %s, %s)",
            (sha, status, created),
        )


def settings_for(table: str, platform: SimulatedPlatform | None = None, **env: str) -> Settings:
    # stepped: these tests count polls at its 5 s and 15 s (the default, informed, has tables of
    # its own in tests/test_schedule.py)
    environ = {
        "TRACKER_MYSQL_URL": URL, "TRACKER_MYSQL_TABLE": table, "TRACKER_POLL_POLICY": "stepped",
        **env,
    }  # fmt: skip
    if platform is not None:
        environ.update(
            DIGITALOCEAN_TOKEN=TOKEN,
            TRACKER_DO_APP_ID=platform.app_id,
            TRACKER_DO_API_URL=platform.base_url,
            TRACKER_HTTP_TIMEOUT="2",
        )
    return load_settings(None, env=environ)


class CountingSource:
    """A real source, with the number of polls the monitor made through it."""

    def __init__(self, inner: DeploymentSource) -> None:
        self.inner, self.name, self.polls = inner, inner.name, 0

    def poll(self, sha: str) -> Any:
        self.polls += 1
        return self.inner.poll(sha)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sources_for(settings: Settings, clock: FakeClock) -> list[CountingSource]:
    return [CountingSource(s) for s in build_sources(settings, clock)]


def run(
    store: SQLiteLog,
    sha: str,
    settings: Settings,
    clock: FakeClock,
    on_sleep: Callable[[float], None] | None = None,
    sources: list[CountingSource] | None = None,
) -> tuple[str, list[CountingSource]]:
    """Record the push, run the real monitor to its verdict; `on_sleep(elapsed)` after each
    of the monitor's sleeps (simulated seconds since the push)."""
    start = clock.now()
    store.append(sha, PushRecorded(sha=sha, branch="main"), at=start)
    if on_sleep is not None:
        original = clock.sleep

        def hooked(seconds: float) -> None:
            original(seconds)
            on_sleep(clock.now() - start)

        clock.sleep = hooked  # type: ignore[method-assign]
    sources = sources if sources is not None else sources_for(settings, clock)
    try:
        monitor = Monitor(store, sha, sources, settings=settings, clock=clock, rand=lambda: 0.5)
        return monitor.run(), sources
    finally:
        for source in sources:
            source.close()


def polled(store: SQLiteLog, sha: str, source: str | None = None) -> list[dict[str, Any]]:
    return [
        e.data
        for e in store.events(stream=sha)
        if e.type == "DeploymentPolled" and source in (None, e.data["source"])
    ]


def test_a_success_row_is_succeeded(store, admin, table, sha, clock) -> None:
    insert(admin, table, sha, "success", "2026-01-01 10:00:00")
    state, [db] = run(store, sha, settings_for(table), clock)
    row = store.deployment(sha)
    assert state == "succeeded" and row is not None and row.terminal_source == "mysql"
    assert db.polls == 1 and row.db_queries == 1 and row.api_calls == 0


def test_a_failed_row_is_failed_and_the_newest_row_counts(store, admin, table, sha, clock) -> None:
    insert(admin, table, sha, "success", "2026-01-01 10:00:00")
    insert(admin, table, sha, "failed", "2026-01-01 10:05:00")  # a redeploy of it failed
    state, _ = run(store, sha, settings_for(table), clock)
    row = store.deployment(sha)
    assert state == "failed" and row is not None
    assert row.reason_message == "failed" and row.log_tail in (None, "[]")


def test_a_row_that_arrives_late_is_detected(store, admin, table, sha, clock) -> None:
    def arrive(elapsed: float) -> None:
        if elapsed >= 30 and not arrived:
            arrived.append(elapsed)
            insert(admin, table, sha, "pending", "2026-01-01 10:00:00")
        if elapsed >= 95 and len(arrived) == 1:
            arrived.append(elapsed)
            insert(admin, table, sha, "success", "2026-01-01 10:03:00")

    arrived: list[float] = []
    state, [db] = run(store, sha, settings_for(table), clock, on_sleep=arrive)
    assert state == "succeeded"
    polls = polled(store, sha)
    assert [p["found"] for p in polls[:6]] == [False] * 6  # 0, 5, ..., 25 s: no row yet
    assert any(p["found"] and p["status"] == "pending" for p in polls)
    # stepped 5 s; the row lands as the clock reaches 95 s, so the poll at 95 s (the 20th) sees it
    assert len(polls) == db.polls == 20
    row = store.deployment(sha)
    assert row is not None and row.finished_at is not None
    assert row.finished_at - (row.pushed_at or 0) == pytest.approx(95.0)


def test_killed_connections_are_recorded_and_the_monitor_carries_on(
    store, admin, table, sha, clock
) -> None:
    """KILL the monitor's server connection three times mid-run, from another connection."""
    settings = settings_for(table)
    sources = sources_for(settings, clock)
    mysql = sources[0].inner
    assert isinstance(mysql, MySQLSource)
    kills: list[int] = []
    done: list[float] = []

    def kill(elapsed: float) -> None:
        thread = mysql.server_thread_id
        if thread is not None and len(kills) < 3 and elapsed >= 20 * (len(kills) + 1):
            with admin.cursor() as cur:
                cur.execute("KILL %s", (thread,))
            kills.append(thread)
        if elapsed >= 90 and not done:
            done.append(elapsed)
            insert(admin, table, sha, "success", "2026-01-01 10:00:00")

    state, [db] = run(store, sha, settings, clock, on_sleep=kill, sources=sources)
    assert state == "succeeded"
    assert len(kills) == 3 and len(set(kills)) == 3  # each kill hit a fresh connection
    polls = polled(store, sha)
    failures = [p for p in polls if not p["ok"]]
    assert len(failures) == 3
    assert all(p["error"] and p["error_kind"] and p["source"] == "mysql" for p in failures)
    row = store.deployment(sha)
    assert row is not None and row.errors == 3
    assert sum(p["db_queries"] for p in polls) == len(polls) == db.polls == row.db_queries
    assert row.polls == db.polls


# -- both sources: the database first, the API for the phase ----------------------------------


@pytest.fixture
def platform(clock: FakeClock) -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        yield sim


def test_the_api_is_not_asked_while_the_database_says_in_progress(
    store, admin, table, sha, clock, platform
) -> None:
    deployment = platform.add_deployment(sha, build_s=30, deploy_s=30)  # live at 70 s
    insert(admin, table, sha, "building", "2026-01-01 10:00:00")
    api_before_success: list[int] = []

    def finish(elapsed: float) -> None:
        if elapsed >= 100 and not api_before_success:
            api_before_success.append(platform.api_requests)
            insert(admin, table, sha, "success", "2026-01-01 10:02:00")

    settings = settings_for(table, platform)
    state, [db, api] = run(store, sha, settings, clock, on_sleep=finish)
    assert state == "succeeded"
    assert db.name == "mysql" and api.name == "digitalocean"
    assert api_before_success == [0]  # 21 rounds (0 .. 100 s) of "building": no API call
    assert api.polls == 1 and db.polls == 21
    events = [e for e in store.events(stream=sha) if e.type != "PushRecorded"]
    assert events[0].type == "MonitorStarted"
    assert events[0].data["sources"] == ["mysql", "digitalocean"]
    last_db, last_api, outcome = events[-3:]
    assert last_db.data["source"] == "mysql" and last_db.data["status"] == "success"
    assert last_api.data["source"] == "digitalocean" and last_api.data["phase"] == "ACTIVE"
    assert outcome.type == "DeploymentSucceeded" and outcome.data["source"] == "digitalocean"
    row = store.deployment(sha)
    assert row is not None and row.deployment_id == deployment and row.phase == "ACTIVE"
    assert row.api_calls == platform.api_requests and row.db_queries == 21
    assert not [e for e in store.events(stream=sha) if e.type == "SourcesDisagreed"]


def test_the_api_is_asked_when_the_database_has_no_row(
    store, admin, table, sha, clock, platform
) -> None:
    platform.add_deployment(sha, build_s=20, deploy_s=20)  # live at 50 s
    state, [db, api] = run(store, sha, settings_for(table, platform), clock)
    assert state == "succeeded"
    assert db.polls == api.polls == 11  # 0, 5, ..., 50 s: both asked every round
    row = store.deployment(sha)
    assert row is not None and row.db_queries == 11 and row.api_calls == platform.api_requests


def test_a_disagreement_is_recorded(store, admin, table, sha, clock, platform) -> None:
    platform.add_deployment(sha, build_s=20, deploy_s=20)  # live at 50 s

    def conflict(elapsed: float) -> None:
        if elapsed >= 60 and not said:
            said.append(elapsed)
            insert(admin, table, sha, "failed", "2026-01-01 10:00:00")

    said: list[float] = []
    insert(admin, table, sha, "deploying", "2026-01-01 09:59:00")
    state, _ = run(store, sha, settings_for(table, platform), clock, on_sleep=conflict)
    disagreed = [e for e in store.events(stream=sha) if e.type == "SourcesDisagreed"]
    assert len(disagreed) == 1
    assert disagreed[0].data["mysql_status"] == "failed"
    assert disagreed[0].data["api_phase"] == "ACTIVE"
    assert "failed" in disagreed[0].data["detail"] and "ACTIVE" in disagreed[0].data["detail"]
    assert state == "succeeded"  # the API's phase wins; the disagreement stays on record
