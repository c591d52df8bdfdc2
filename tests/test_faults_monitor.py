"""Faults of the watcher and its sources: a monitor SIGKILLed mid-poll, a lock held past the
lock timeout, a platform answering storms of bad replies, a database that refuses, kills
queries or rejects credentials. The monitor reaches the verdict or times out cleanly, with
every API call counted and no secret shown.

The simulated platform over real HTTP (in simulated time where a FakeClock drives it), the real
MariaDB. The longer fault storms are in `bench/bench_faults.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import (
    OUTCOMES,
    PASSWORD,
    TOKEN,
    assert_consistent,
    cli,
    event_types,
    lock_holder,
    logged_api_calls,
    one_error_line,
    sim_env,
)
from tests.support.gitrepo import wait_until
from tests.support.mariadb import admin_connection, plan_table
from tracker.clock import FakeClock
from tracker.config import Settings, load_settings
from tracker.log.sqlite import SQLiteLog
from tracker.sim import SimulatedPlatform

# -- SIGKILL of a detached monitor mid-poll ---------------------------------------------------


def do_settings(sim: SimulatedPlatform, **extra: str) -> Settings:
    env = {
        "DIGITALOCEAN_TOKEN": TOKEN,
        "TRACKER_DO_APP_ID": sim.app_id,
        "TRACKER_DO_API_URL": sim.base_url,
        "TRACKER_HTTP_TIMEOUT": "0.3",
        "TRACKER_POLL_POLICY": "stepped",  # the storms are placed by its polls
        **extra,
    }
    return load_settings(None, env=env)


# -- the platform misbehaving -----------------------------------------------------------------


def run_monitor(store: SQLiteLog, sha: str, settings: Settings, clock: FakeClock) -> str:
    """A monitor for `sha` in simulated time, the push recorded first."""
    from tracker.events import PushRecorded
    from tracker.monitor.loop import Monitor, build_sources

    if store.deployment(sha) is None:
        store.append(sha, PushRecorded(sha=sha, branch="main"), at=clock.now())
    sources = build_sources(settings, clock)
    try:
        monitor = Monitor(store, sha, sources, settings=settings, clock=clock, rand=lambda: 0.5)
        return monitor.run()
    finally:
        for source in sources:
            source.close()


def started_pids(db: Path, sha: str) -> list[int]:
    with SQLiteLog(db) as store:
        return [int(e.data["pid"]) for e in store.events(stream=sha) if e.type == "MonitorStarted"]


def test_sigkill_of_a_monitor_mid_poll_is_stale_then_wait_resumes_it(tmp_path: Path) -> None:
    from tracker.events import PushRecorded
    from tracker.procs import monitor_alive

    sha = "c0ffee" + "0" * 34
    db = tmp_path / "log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        env = sim_env(sim, db, TRACKER_HTTP_TIMEOUT="20")
        with SQLiteLog(db) as store:
            store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
        sim.add_deployment(sha, pending_build_s=0.3, build_s=1, pending_deploy_s=0.2, deploy_s=1)
        sim.inject("slow", times=1, after=3, delay_s=30)  # the 4th request hangs: mid-poll
        started = cli("monitor", sha, "--detach", cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stderr
        wait_until(lambda: any(r.fault == "slow" for r in sim.requests))
        [pid] = started_pids(db, sha)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not monitor_alive(pid, os.uname().nodename))
        status = cli("status", sha, "--json", cwd=tmp_path, env=env)
        assert status.returncode == 2 and json.loads(status.stdout)["state"] == "stale"
        waited = cli("wait", sha, "--timeout", "30", "--json", cwd=tmp_path, env=env)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert json.loads(waited.stdout)["state"] == "succeeded"
        _, second = started_pids(db, sha)
        wait_until(lambda: not monitor_alive(second, os.uname().nodename))
        types = event_types(db, sha)
        assert [t for t in types if t in OUTCOMES] == ["DeploymentSucceeded"]
        # Every call is in the log but the one the killed monitor was waiting on.
        assert logged_api_calls(db) == sim.api_requests - 1
    assert_consistent(db)


def test_a_monitor_waits_out_a_lock_held_past_the_lock_timeout(tmp_path: Path) -> None:
    """TRACKER_LOCK_TIMEOUT bounds what people wait for; a monitor waits as long as it may."""
    from tracker.events import PushRecorded

    sha = "bead" + "0" * 36
    db = tmp_path / "log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        env = sim_env(sim, db, TRACKER_LOCK_TIMEOUT="0.2")
        with SQLiteLog(db) as store:
            store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
        sim.add_deployment(
            sha, pending_build_s=0.2, build_s=0.5, pending_deploy_s=0.2, deploy_s=0.5
        )
        with lock_holder(db):
            monitor = subprocess.Popen(
                [sys.executable, "-m", "tracker", "monitor", sha], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.5)  # far past the lock timeout, with its first append waiting
            assert monitor.poll() is None, monitor.communicate()
            assert event_types(db, sha) == ["PushRecorded"]  # (reads need no lock)
        out, err = monitor.communicate(timeout=60)
        assert monitor.returncode == 0, out + err
    types = event_types(db, sha)
    assert types[1] == "MonitorStarted" and [t for t in types if t in OUTCOMES] == [
        "DeploymentSucceeded"
    ]
    assert_consistent(db)


STORMS = [
    ("429", 12, {"retry_after": 7}),
    ("429", 12, {"reset_in_s": 9}),  # no retry-after: ratelimit-reset only
    ("5xx", 15, {"status": 503}),
    ("5xx", 15, {"status": 502}),  # the load balancer's HTML page
    ("malformed", 15, {}),
    ("wrong_shape", 15, {}),
    ("truncated", 15, {}),
    ("huge", 4, {"size_bytes": 5 * 1024 * 1024}),
    ("reset", 15, {}),
    ("slow", 4, {"delay_s": 1.0}),  # a slow-loris answer outlasting the 0.3 s timeout
]


@pytest.mark.parametrize(("kind", "times", "options"), STORMS, ids=[s[0] for s in STORMS])
def test_a_storm_of_bad_answers_still_reaches_the_verdict_with_every_call_counted(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock, kind: str, times: int, options: dict
) -> None:
    sha = "5" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    sim.inject(kind, times=times, after=2, **options)  # type: ignore[arg-type]
    assert run_monitor(store, sha, do_settings(sim), clock) == "succeeded"
    row = store.deployment(sha)
    assert row is not None and row.errors == times
    assert logged_api_calls(store.path) == sim.api_requests
    assert [t for t in event_types(store.path, sha) if t in OUTCOMES] == ["DeploymentSucceeded"]


@pytest.mark.parametrize("kind", ["429", "5xx", "reset", "malformed"])
def test_a_storm_longer_than_max_wait_times_out_cleanly(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock, kind: str
) -> None:
    sha = "6" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    sim.inject(kind, times=10_000, retry_after=20)  # type: ignore[arg-type]
    settings = do_settings(sim, TRACKER_MAX_WAIT="90")
    assert run_monitor(store, sha, settings, clock) == "timed_out"
    assert [t for t in event_types(store.path, sha) if t in OUTCOMES] == ["MonitorTimedOut"]
    assert logged_api_calls(store.path) == sim.api_requests
    row = store.deployment(sha)
    assert row is not None and row.errors == sim.api_requests


def test_a_failure_whose_log_archive_is_broken_is_still_recorded(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock
) -> None:
    sha = "7" * 40
    sim.add_deployment(sha, build_s=30, outcome="build_error")
    sim.inject("reset", times=5, path="/archive/")
    sim.inject("5xx", times=1, path="/logs")
    assert run_monitor(store, sha, do_settings(sim), clock) == "failed"
    with SQLiteLog(store.path) as again:
        fetched = [e.data for e in again.events(stream=sha) if e.type == "LogsFetched"]
    assert len(fetched) == 1 and fetched[0]["error"]
    assert TOKEN not in json.dumps(fetched)
    assert logged_api_calls(store.path) == sim.api_requests


# -- the database misbehaving -----------------------------------------------------------------


@pytest.fixture
def deployments_table() -> Iterator[tuple[Any, str]]:
    admin = admin_connection()
    with plan_table(admin, "faults") as name:
        yield admin, name
    admin.close()


def test_a_refused_database_is_polled_until_max_wait_then_times_out(
    store: SQLiteLog, clock: FakeClock
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        None,
        env={
            "TRACKER_MYSQL_URL": f"mysql://root:{PASSWORD}@127.0.0.1:{port}/test",
            "TRACKER_MAX_WAIT": "30",
            "TRACKER_MYSQL_CONNECT_TIMEOUT": "1",
        },
    )
    sha = "8" * 40
    assert run_monitor(store, sha, settings, clock) == "timed_out"
    row = store.deployment(sha)
    assert row is not None and row.errors == row.polls > 1
    assert PASSWORD.encode() not in store.path.read_bytes()


@pytest.mark.mysql
def test_a_query_killed_on_the_server_mid_flight_is_retried_to_the_verdict(
    store: SQLiteLog, clock: FakeClock, deployments_table: tuple[Any, str]
) -> None:
    import threading

    admin, table = deployments_table
    sha = "9" * 40
    with admin.cursor() as cur:
        cur.execute(
            f"INSERT INTO `{table}` (commitSha, status, createdAt) VALUES (%s, 'building', NOW(3))",
            (sha,),
        )
    settings = load_settings(
        None,
        env={
            "TRACKER_MYSQL_URL": "mysql://root@127.0.0.1:3306/test",
            "TRACKER_MYSQL_TABLE": table,
            "TRACKER_MAX_WAIT": "600",
        },
    )
    locker = admin_connection()
    with locker.cursor() as cur:
        cur.execute(f"LOCK TABLES `{table}` WRITE")  # the monitor's SELECT now waits
    result: dict[str, str] = {}
    thread = threading.Thread(
        target=lambda: result.update(state=run_monitor(store, sha, settings, clock))
    )
    thread.start()
    try:
        victim = wait_until(lambda: waiting_query(admin, table), timeout=10)
        with admin.cursor() as cur:
            cur.execute("KILL CONNECTION %s", (victim,))
        with locker.cursor() as cur:
            cur.execute(
                f"INSERT INTO `{table}` (commitSha, status, createdAt)"
                " VALUES (%s, 'success', NOW(3) + INTERVAL 1 SECOND)",
                (sha,),
            )
    finally:
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        locker.close()
        thread.join(timeout=30)
    assert result.get("state") == "succeeded"
    with SQLiteLog(store.path) as again:
        polls = [e.data for e in again.events(stream=sha) if e.type == "DeploymentPolled"]
    assert any(p["error_kind"] == "connection" for p in polls)
    assert polls[-1]["ok"] and polls[-1]["status"] == "success"


def waiting_query(admin: Any, table: str) -> int | None:
    """The server id of a connection whose query waits on `table`'s lock."""
    with admin.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            (f"%FROM `{table}`%",),
        )
        found = cur.fetchone()
    return int(found[0]) if found else None


@pytest.mark.mysql
def test_wrong_database_credentials_stop_the_monitor_with_one_line_and_no_secret(
    tmp_path: Path, deployments_table: tuple[Any, str]
) -> None:
    from tests.support.gitrepo import base_env
    from tracker.events import PushRecorded

    _, table = deployments_table
    db = tmp_path / "log" / "events.db"
    sha = "a" * 40
    with SQLiteLog(db) as store:
        store.append(sha, PushRecorded(sha=sha, branch="main"))
    env = base_env(
        TRACKER_DB=str(db), TRACKER_MYSQL_URL=f"mysql://root:{PASSWORD}@127.0.0.1:3306/test",
        TRACKER_MYSQL_TABLE=table,
    )  # fmt: skip
    done = cli("monitor", sha, cwd=tmp_path, env=env)
    assert done.returncode == 69, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert "refused" in line and "tracker doctor" in line
    doctor = cli("doctor", "--json", cwd=tmp_path, env=env)
    for text in (done.stdout, done.stderr, doctor.stdout, doctor.stderr):
        assert PASSWORD not in text
    for file in db.parent.rglob("*"):
        if file.is_file():
            assert PASSWORD.encode() not in file.read_bytes(), file


def test_a_list_scan_cut_short_by_a_fault_is_finished_by_the_next_poll(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock
) -> None:
    """Pages 1-2 seen, page 3 answered 429: the next poll must not stop at the seen pages."""
    sha = "4" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    for n in range(45):  # newer deployments push ours to page 3
        sim.add_deployment(f"{n + 1:040x}", appear_after_s=1, outcome="canceled", build_s=1)
    clock.advance(30)
    sim.inject("429", times=1, after=2, retry_after=5)
    settings = do_settings(sim, TRACKER_MAX_WAIT="300")
    assert run_monitor(store, sha, settings, clock) == "succeeded"
    assert logged_api_calls(store.path) == sim.api_requests
