"""The fleet-wide API budget held by the watchers (SPEC §10, issue 15 "must show"): eight machines
with one token, each its own log directory, `TRACKER_MACHINE_ID` and app, one shared log on the
session's private MariaDB and one simulated platform; their watchers (real `tracker monitor
--watch` processes) at once never send more than the budget in any minute, where the same load
on single-machine logs does. In simulated time: a refused reservation holds the watcher as long
as the server said (never past the deadline, and no request past it); with the shared log down
the watcher runs degraded on the platform's own 429s and `ratelimit-remaining`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gitrepo import base_env
from tests.support.mariadb_private import PrivateMariaDB
from tests.support.simulated import SIM_TOKEN
from tracker.clock import FakeClock, iso
from tracker.config import Settings, load_settings
from tracker.events import PushRecorded
from tracker.log.fleet import FleetLog
from tracker.log.mysql import MySQLLog
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.decide import BUDGET_JITTER_S
from tracker.monitor.loop import build_sources
from tracker.monitor.watcher import Watcher
from tracker.sim.server import SimulatedPlatform

MACHINES = 8
LIMIT = 24  # calls a minute for the whole fleet: eight watchers polling every 0.2 s pass it at once
LONG = {"pending_build_s": 1.0, "build_s": 600.0, "deploy_s": 60.0}  # never done in the test
OLD = 7 * 3600.0  # pushed before the watchers' lookback: each follows only the one it is asked


def sha_of(n: int) -> str:
    return f"{n:040x}"


def test_the_simulator_counts_calls_per_sliding_window_and_per_app() -> None:
    clock = FakeClock()
    with (
        SimulatedPlatform(clock=clock, token=SIM_TOKEN) as sim,
        httpx.Client(headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as http,
    ):
        other = sim.add_app()
        theirs = sim.add_deployment(sha_of(1), app_id=other)

        def get(app: str, tail: str = "") -> int:
            return http.get(f"{sim.base_url}/v2/apps/{app}/deployments{tail}").status_code

        for app, gap in ((sim.app_id, 10.0), (other, 20.0), (other, 25.0), (sim.app_id, 5.0)):
            assert get(app) == 200
            clock.advance(gap)
        listed = http.get(f"{sim.base_url}/v2/apps/{other}/deployments").json()
        assert [d["id"] for d in listed["deployments"]] == [theirs]  # each app its own
        assert get(sim.app_id, f"/{theirs}") == 404 and get("nope") == 404
        # arrivals at 0 and 55 (the first app), 10, 30 and 60 (the other), 60 and 60
        assert sim.max_in_window(30) == 4  # 55, 60, 60, 60
        assert sim.max_in_window(60) == 6 and sim.max_in_window(61) == 7
        assert sim.max_in_window(60, app=other) == 3 and sim.max_in_window(20, app=other) == 1
        # the first app's: 0, 55 and 60 (asking for a deployment of the other app's)
        assert sim.max_in_window(5, app=sim.app_id) == 1 < sim.max_in_window(6, app=sim.app_id)


def fleet_settings(sim: SimulatedPlatform, app: str, **extra: str) -> Settings:
    return load_settings(
        None,
        env={
            "DIGITALOCEAN_TOKEN": SIM_TOKEN, "TRACKER_DO_APP_ID": app,
            "TRACKER_DO_API_URL": sim.base_url, "TRACKER_HTTP_TIMEOUT": "2", **extra,
        },
    )  # fmt: skip


def push(log: FleetLog | SQLiteLog, sha: str, at: float) -> None:
    """A push recorded by hand (`tracker push`): followed at once, no confirmer."""
    log.append(sha, PushRecorded(sha=sha, branch="main", source="cli", pushed_at=iso(at)))


# -- eight machines, real processes --------------------------------------------------------------


def machine_env(sim: SimulatedPlatform, app: str, name: str, url: str | None) -> dict[str, str]:
    env = base_env(
        DIGITALOCEAN_TOKEN=SIM_TOKEN, TRACKER_DO_APP_ID=app, TRACKER_DO_API_URL=sim.base_url,
        TRACKER_POLL_POLICY="fixed", TRACKER_POLL_INTERVAL="0.2", TRACKER_MAX_WAIT="8",
        TRACKER_HTTP_TIMEOUT="10", TRACKER_API_BUDGET_PER_MINUTE=str(LIMIT),
        TRACKER_MACHINE_ID=name, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )  # fmt: skip
    if url is not None:
        env["TRACKER_LOG_URL"] = url
    return env


def run_machines(base: Path, sim: SimulatedPlatform, url: str | None) -> list[str]:
    """Eight machines, each pushing one commit of its own app and watching it, all at once;
    the apps, in the machines' order."""
    apps = [sim.app_id] + [sim.add_app() for _ in range(MACHINES - 1)]
    for n, app in enumerate(apps):
        sim.add_deployment(sha_of(n + 1), app_id=app, **LONG)
        db = base / f"m{n}" / "events.db"
        if url is None:
            with SQLiteLog(db) as log:
                push(log, sha_of(n + 1), time.time() - OLD)
        else:
            with FleetLog.open(db, url, env={"TRACKER_MACHINE_ID": f"m{n}"}) as fleet:
                push(fleet, sha_of(n + 1), time.time() - OLD)
                assert fleet.sync_state().outbox == 0  # in the shared log
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tracker",
                "--db",
                str(base / f"m{n}" / "events.db"),
                "monitor",
                sha_of(n + 1),
                "--watch",
            ],
            cwd=base,
            env=machine_env(sim, app, f"m{n}", url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, app in enumerate(apps)
    ]
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode in (0, 1, 2), (n, proc.returncode, out, err)
        assert "Traceback" not in err, err
    return apps


@pytest.mark.mysql
def test_eight_machines_watchers_never_pass_the_fleet_budget_which_their_own_logs_would(
    url: str, tmp_path: Path
) -> None:
    with SimulatedPlatform(token=SIM_TOKEN, limit_per_minute=100_000) as sim:
        apps = run_machines(tmp_path / "fleet", sim, url)
        made = sim.api_requests
        assert sim.max_in_window(60) <= LIMIT  # the token's budget, at the platform
        most = max(sim.max_in_window(60, app=a) for a in apps)
    shared = MySQLLog.from_url(url, env={})
    try:
        with shared.query("SELECT sum(calls) AS calls FROM api_calls") as found:
            [(counted,)] = [tuple(r) for r in found.rows]
        with shared.query("SELECT sum(refused) AS refused FROM api_budget_head") as found:
            [(refused,)] = [tuple(r) for r in found.rows]
    finally:
        shared.close()
    assert counted == made and refused > 0  # every call counted; the budget was what held them
    polled = 0
    for n in range(MACHINES):
        db = tmp_path / "fleet" / f"m{n}" / "events.db"
        with FleetLog.open(db, url, env={"TRACKER_MACHINE_ID": f"m{n}"}) as log:
            events = log.events(stream=sha_of(n + 1))
            assert any(e.type == "MonitorStarted" for e in events), n  # every watcher ran
            polls = [e.data for e in events if e.type == "DeploymentPolled"]
            assert polls and {p["budget"] for p in polls} == {"fleet"}, polls
            polled += sum(1 for p in polls if p["api_calls"])
            row = log.deployment(sha_of(n + 1))
            assert row is not None and row.terminal  # gave up at its deadline: nothing hung
    assert polled == made and most < made  # more than one machine made the calls
    # The same load with each machine's own log (no fleet budget): each keeps its own count
    # under the limit, and together they pass it.
    with SimulatedPlatform(token=SIM_TOKEN, limit_per_minute=100_000) as alone:
        run_machines(tmp_path / "alone", alone, None)
        assert alone.max_in_window(60) > LIMIT


# -- one watcher in simulated time ---------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


def fleet_log(tmp_path: Path, url: str, clock: FakeClock) -> FleetLog:
    return FleetLog.open(
        tmp_path / "m0" / "events.db", url, clock=clock, env={"TRACKER_MACHINE_ID": "m0"},
        retry_for=0.2, io_timeout=2.0, lock_timeout=2.0,
    )  # fmt: skip


def watcher(log: FleetLog, settings: Settings, clock: FakeClock, sha: str) -> Watcher:
    lines: list[str] = []
    found = Watcher(
        log, build_sources(settings, clock), settings=settings, clock=clock, rand=lambda: 0.5,
        asked=[sha], progress=lambda _sha, line: lines.append(line),
    )  # fmt: skip
    found.lines = lines  # type: ignore[attr-defined]
    return found


@pytest.mark.mysql
def test_a_refused_reservation_holds_the_watcher_as_said_and_no_request_goes_past_the_deadline(
    url: str, tmp_path: Path, clock: FakeClock
) -> None:
    with SimulatedPlatform(clock=clock, token=SIM_TOKEN) as sim:
        sha = sha_of(7)
        sim.add_deployment(sha, **LONG)
        settings = fleet_settings(
            sim, sim.app_id, TRACKER_POLL_POLICY="fixed", TRACKER_POLL_INTERVAL="1",
            TRACKER_MAX_WAIT="200", TRACKER_API_BUDGET_PER_MINUTE="2",
        )  # fmt: skip
        log = fleet_log(tmp_path, url, clock)
        said: list[float | None] = []
        reserve = log.reserve_api_calls

        def recorded(token: str, n: int, per_minute: int, per_hour: int) -> float | None:
            said.append(reserve(token, n, per_minute, per_hour))
            return said[-1]

        log.reserve_api_calls = recorded  # type: ignore[method-assign]
        try:
            push(log, sha, clock.now())
            w = watcher(log, settings, clock, sha)
            started = clock.now()
            w.run()
            assert w.budget_mode == "fleet"
            row = log.deployment(sha)
            assert row is not None and row.state == "timed_out"
            polls = [e.data for e in log.events(stream=sha) if e.type == "DeploymentPolled"]
        finally:
            log.close()
        assert sim.api_requests == 2  # the budget: two a minute, and the server's minute is real
        assert said[:2] == [0.0, 0.0] and all(s is not None and 0 < s <= 61 for s in said[2:])
        # each refusal slept as long as the server said plus the jitter, but never past the
        # deadline; the last one, at the deadline, made no request
        pauses = [s for s in clock.sleeps if s > 1.0]
        deadline = started + 200
        assert pauses[:-1] == pytest.approx([w + BUDGET_JITTER_S * 0.5 for w in said[2:-2]])
        assert pauses[-1] < said[-2] + BUDGET_JITTER_S * 0.5  # cut at the deadline
        assert clock.now() == pytest.approx(deadline, abs=1.5)
        assert [p["api_calls"] for p in polls] == [1, 1, 0]
        assert polls[-1]["error_kind"] == "rate_limited" and "no request" in polls[-1]["error"]
        assert {p["budget"] for p in polls} == {"fleet"}


@pytest.mark.mysql
def test_with_the_shared_log_down_the_watcher_runs_degraded_on_the_platforms_own_limits(
    url: str, tmp_path: Path, clock: FakeClock, mariadb: PrivateMariaDB
) -> None:
    with SimulatedPlatform(clock=clock, token=SIM_TOKEN) as sim:
        sha = sha_of(8)
        sim.add_deployment(sha, appear_after_s=5, build_s=60, deploy_s=30)
        sim.inject("429", times=1, after=2, retry_after=45)
        sim.inject("exhausted", times=1, after=5, reset_in_s=30)
        settings = fleet_settings(
            sim, sim.app_id, TRACKER_POLL_POLICY="fixed", TRACKER_POLL_INTERVAL="5",
            TRACKER_API_BUDGET_PER_MINUTE="100",
        )  # fmt: skip
        log = fleet_log(tmp_path, url, clock)
        mariadb.stop()
        try:
            push(log, sha, clock.now())  # waits in the outbox
            w = watcher(log, settings, clock, sha)
            assert w.run() == {sha: "succeeded"}  # nothing raised
            polls = [e.data for e in log.events(stream=sha)]  # the cache: nothing pulled
            assert polls == []
            shown = [
                e.event.to_data() for e in log.outbox_events() if e.event.TYPE == "DeploymentPolled"
            ]
        finally:
            log.close()
            mariadb.start()
        assert w.budget_mode == "degraded"
        assert any("degraded" in line for line in w.lines)  # type: ignore[attr-defined]
        assert shown and {p["budget"] for p in shown} == {"degraded"}
        api = [r for r in sim.requests if r.api]
        [limited] = [i for i, r in enumerate(api) if r.fault == "429"]
        [exhausted] = [i for i, r in enumerate(api) if r.fault == "exhausted"]
        assert api[limited + 1].at - api[limited].at >= 45 - 1e-6  # retry-after honoured
        assert api[exhausted + 1].at - api[exhausted].at >= 30 - 1e-6  # and no call left
