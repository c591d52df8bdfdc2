"""The monitor against the simulated App Platform API over real HTTP, in simulated time.

The simulated platform and the monitor share one `FakeClock`: a whole eight-minute deployment
runs in a fraction of a second of real time, and every request really crosses loopback.
"""

from __future__ import annotations

import itertools
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile import Answer, deployment, dripping, hostile_api, nested
from tracker.api import Tracker
from tracker.clock import FakeClock
from tracker.config import Settings, load_settings
from tracker.events import DeploymentPolled, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.decide import judge, next_delay
from tracker.monitor.loop import Monitor, build_sources
from tracker.monitor.sources.base import Observation
from tracker.policies import FixedPolicy, SteppedPolicy
from tracker.sim.server import SimulatedPlatform

TOKEN = "sim-token-for-tests"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def platform(clock: FakeClock) -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        yield sim


def settings_for(platform: SimulatedPlatform, **extra: str) -> Settings:
    env = {
        "DIGITALOCEAN_TOKEN": TOKEN,
        "TRACKER_DO_APP_ID": platform.app_id,
        "TRACKER_DO_API_URL": platform.base_url,
        "TRACKER_HTTP_TIMEOUT": "2",
        **extra,
    }
    return load_settings(None, env=env)


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def run(
    store: SQLiteLog,
    sha: str,
    settings: Settings,
    clock: FakeClock,
    repo: Path | None = None,
) -> str:
    if store.deployment(sha) is None:
        store.append(sha, PushRecorded(sha=sha, branch="main"), at=clock.now())
    sources = build_sources(settings, clock)
    try:
        return Monitor(
            store, sha, sources, settings=settings, clock=clock, rand=lambda: 0.5, repo=repo
        ).run()
    finally:
        for source in sources:
            source.close()


def api_calls_in_log(store: SQLiteLog, sha: str | None = None) -> int:
    return sum(int(e.data.get("api_calls", 0)) for e in store.events(stream=sha))


SHA = "1" * 40


def test_success_is_recorded_with_push_to_live(store, platform, clock) -> None:
    platform.add_deployment(SHA, appear_after_s=10, build_s=60, deploy_s=90)
    state = run(store, SHA, settings_for(platform, TRACKER_POLL_POLICY="stepped"), clock)
    row = store.deployment(SHA)
    assert state == "succeeded" and row is not None
    assert row.phase == "ACTIVE" and row.deployment_id
    assert row.push_to_live_s is not None and 150 < row.push_to_live_s < 200
    # live at 170 s; stepped polls at 165 and 180: seen 10 s late
    assert row.detection_lag_s == pytest.approx(10.0)
    assert api_calls_in_log(store) == platform.api_requests
    assert row.api_calls == platform.api_requests


def test_build_failure_keeps_the_failing_log_line(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=40, outcome="build_error")
    assert run(store, SHA, settings_for(platform), clock) == "failed"
    row = store.deployment(SHA)
    assert row is not None and row.log_tail and row.failed_step
    assert "ERR" in row.log_tail or "error" in row.log_tail.lower()
    assert row.reason_code
    archive = [r for r in platform.requests if not r.api]
    assert archive and not any(r.authorization for r in archive)
    assert api_calls_in_log(store) == platform.api_requests


def test_deploy_failure_fetches_build_then_deploy_logs(store, platform, clock) -> None:
    platform.add_deployment(SHA, outcome="deploy_error")
    assert run(store, SHA, settings_for(platform), clock) == "failed"
    paths = [r.query for r in platform.requests if "/logs" in r.path]
    assert any("BUILD" in p for p in paths) and any("DEPLOY" in p for p in paths)
    assert api_calls_in_log(store) == platform.api_requests


def test_cancel_is_canceled_and_exits_1(store, platform, clock, no_sources) -> None:
    platform.add_deployment(SHA, outcome="canceled")
    assert run(store, SHA, settings_for(platform), clock) == "canceled"
    st = Tracker(store.path, settings=no_sources, clock=clock).status(SHA)
    assert st.exit_code == 1 and st.state == "canceled"


@pytest.mark.parametrize(
    ("successor_outcome", "state", "code"),
    [("active", "superseded", 0), ("build_error", "superseded", 1)],
)
def test_superseded_is_resolved_through_the_successor(
    store, platform, clock, repo, no_sources, successor_outcome, state, code
) -> None:
    ours, newer = commit(repo, "ours"), commit(repo, "newer, contains ours")
    if successor_outcome != "active":
        platform.supersede_on = "created"  # the platform replaces ours as soon as it queues newer
    platform.add_deployment(ours, build_s=60, deploy_s=120)
    platform.add_deployment(
        newer, appear_after_s=30, build_s=20, deploy_s=20, outcome=successor_outcome
    )
    assert run(store, ours, settings_for(platform), clock, repo=repo) == state
    row = store.deployment(ours)
    assert row is not None and row.superseded_by == newer
    st = Tracker(store.path, settings=no_sources, clock=clock).status(ours)
    assert st.exit_code == code
    assert api_calls_in_log(store) == platform.api_requests


def test_superseded_by_an_unrelated_commit_did_not_go_live(store, platform, clock, repo) -> None:
    ours = commit(repo, "ours")
    git(repo, "checkout", "-q", "--orphan", "other")
    unrelated = commit(repo, "unrelated")
    platform.add_deployment(ours, build_s=60, deploy_s=120)
    platform.add_deployment(unrelated, appear_after_s=30, build_s=20, deploy_s=20)
    assert run(store, ours, settings_for(platform), clock, repo=repo) == "superseded"
    row = store.deployment(ours)
    assert row is not None and row.superseded_went_live == 0


def test_a_deployment_that_never_appears_times_out(store, platform, clock) -> None:
    settings = settings_for(platform, TRACKER_MAX_WAIT="60", TRACKER_POLL_POLICY="stepped")
    assert run(store, SHA, settings, clock) == "timed_out"
    row = store.deployment(SHA)
    # stepped: 0, 5, ..., 60 -> 13 polls, each one list request
    assert row is not None and row.polls == 13
    assert api_calls_in_log(store) == platform.api_requests == 13


def test_429_with_retry_after_waits_as_told(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=30, deploy_s=30)
    platform.inject("429", times=1, after=2, retry_after=42)
    assert run(store, SHA, settings_for(platform), clock) == "succeeded"
    assert 42.0 in poll_gaps(store, SHA)
    assert api_calls_in_log(store) == platform.api_requests


def test_429_without_retry_after_waits_for_the_reset(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=30, deploy_s=30)
    platform.inject("429", times=1, after=2, reset_in_s=33)
    assert run(store, SHA, settings_for(platform), clock) == "succeeded"
    assert any(32 <= gap <= 34 for gap in poll_gaps(store, SHA))
    row = store.deployment(SHA)
    assert row is not None and row.errors == 1
    assert api_calls_in_log(store) == platform.api_requests


def poll_gaps(store: SQLiteLog, sha: str) -> list[float]:
    """Seconds between consecutive polls, from the log."""
    from tracker.clock import parse_iso

    times = [
        parse_iso(e.recorded_at) or 0.0
        for e in store.events(stream=sha)
        if e.type == "DeploymentPolled"
    ]
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def test_bursts_of_5xx_and_malformed_answers_are_survived(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=60, deploy_s=60)
    platform.inject("5xx", times=4, after=1, status=503)
    platform.inject("malformed", times=2, after=8)
    platform.inject("truncated", times=1, after=12)
    settings = settings_for(platform, TRACKER_POLL_POLICY="stepped")  # the faults' positions
    assert run(store, SHA, settings, clock) == "succeeded"
    row = store.deployment(SHA)
    assert row is not None and row.errors == 7 and row.retries >= 4
    assert api_calls_in_log(store) == platform.api_requests


def test_a_server_that_hangs_is_a_timeout_not_a_crash(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=20, deploy_s=20)
    platform.inject("slow", times=1, after=1, delay_s=1.5)
    settings = settings_for(platform, TRACKER_HTTP_TIMEOUT="0.3")
    assert run(store, SHA, settings, clock) == "succeeded"
    kinds = [e.data.get("error_kind") for e in store.events(stream=SHA) if not e.data.get("ok", 1)]
    assert "timeout" in kinds


def test_our_deployment_on_page_3_is_found(store, platform, clock) -> None:
    platform.add_deployment(SHA, build_s=30, deploy_s=30)
    for n in range(45):
        platform.add_deployment(f"{n:040x}", appear_after_s=1, outcome="canceled")
    clock.advance(5)
    assert run(store, SHA, settings_for(platform), clock) == "succeeded"
    first = next(e for e in store.events(stream=SHA) if e.type == "DeploymentPolled")
    assert first.data["api_calls"] == 3
    assert api_calls_in_log(store) == platform.api_requests


def test_a_wrong_token_stops_the_monitor_with_a_clear_error(store, platform, clock) -> None:
    from tracker.errors import SourceUnavailableError

    settings = load_settings(
        None,
        env={
            "DIGITALOCEAN_TOKEN": "wrong-token-123",
            "TRACKER_DO_APP_ID": platform.app_id,
            "TRACKER_DO_API_URL": platform.base_url,
        },
    )
    with pytest.raises(SourceUnavailableError) as caught:
        run(store, SHA, settings, clock)
    assert "wrong-token-123" not in str(caught.value)
    assert b"wrong-token-123" not in store.path.read_bytes()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("fixed", [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]),
        ("stepped", [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]),
    ],
)
def test_poll_times_follow_the_policy(store, platform, clock, policy, expected) -> None:
    settings = settings_for(
        platform, TRACKER_POLL_POLICY=policy, TRACKER_MAX_WAIT=str(expected[-1])
    )
    start = clock.now()
    run(store, SHA, settings, clock)
    polled = [e for e in store.events(stream=SHA) if e.type == "DeploymentPolled"]
    from tracker.clock import parse_iso

    offsets = [round((parse_iso(e.recorded_at) or 0) - start, 3) for e in polled]
    assert offsets == expected


def test_stepped_switches_to_the_long_interval() -> None:
    policy = SteppedPolicy(5, 120, 15)
    assert policy.schedule(180) == [*range(0, 121, 5), 135, 150, 165, 180]
    assert FixedPolicy(10).schedule(30) == [0, 10, 20, 30]


def test_an_ingested_verdict_stops_a_running_monitor(store, platform, clock, no_sources) -> None:
    """A terminal notification ends the monitor at its next look at the log (within a second)."""
    platform.add_deployment(SHA, build_s=300, deploy_s=100)
    settings = settings_for(platform)
    store.append(SHA, PushRecorded(sha=SHA, branch="main"), at=clock.now())
    tracker = Tracker(store.path, settings=no_sources, clock=clock)
    original_sleep = clock.sleep
    calls = {"n": 0}

    def sleep_and_notify(seconds: float) -> None:
        original_sleep(seconds)
        calls["n"] += 1
        if calls["n"] == 12:
            tracker.ingest({"sha": SHA, "status": "success", "deployment_id": "webhook-1"})

    clock.sleep = sleep_and_notify  # type: ignore[method-assign]
    assert run(store, SHA, settings, clock) == "succeeded"
    outcomes = [
        e
        for e in store.events(stream=SHA)
        if e.type.startswith("Deployment") and e.type != "DeploymentPolled"
    ]
    assert len(outcomes) == 1 and outcomes[0].data["source"] == "ingest:webhook"


def test_judge_prefers_the_api_and_notes_a_disagreement() -> None:
    api = Observation("digitalocean", ok=True, found=True, phase="ERROR", deployment_id="d")
    db = Observation("mysql", ok=True, found=True, phase="ACTIVE", status="success")
    verdict = judge([db, api], now=100.0, pushed_at=40.0)
    assert verdict.outcome is not None and verdict.outcome.TYPE == "DeploymentFailed"
    assert verdict.disagreement is not None and verdict.needs_logs == "d"
    alone = judge([db], now=100.0, pushed_at=40.0)
    assert alone.outcome is not None and alone.outcome.TYPE == "DeploymentSucceeded"
    assert judge([Observation("mysql", ok=False)], now=1, pushed_at=0).outcome is None


@pytest.mark.parametrize(
    ("obs", "expected"),
    [
        (Observation("digitalocean", ok=True), 5.0),
        (Observation("digitalocean", ok=False, error_kind="rate_limited", retry_after_s=7.0), 7.0),
        (Observation("digitalocean", ok=False, error_kind="server_error"), 5.0 / 8 * 0.75),
    ],
)
def test_next_delay_table(obs: Observation, expected: float) -> None:
    delay = next_delay(
        [obs],
        policy=SteppedPolicy(5, 120, 15),
        elapsed=10,
        polls=2,
        failures=0 if obs.ok else 1,
        now=0.0,
        rand=0.5,
    )
    assert delay == pytest.approx(expected)


def test_a_monitor_holds_off_while_the_machine_spent_the_api_budget(store, platform, clock) -> None:
    """Other monitors made 200 calls half a minute ago: ours waits until they leave the window."""
    other = "2" * 40
    start = clock.now()
    store.append(other, PushRecorded(sha=other, branch="main"), at=start - 31)
    for _ in range(200):
        store.append(other, DeploymentPolled("digitalocean", True, api_calls=1), at=start - 30)
    platform.add_deployment(SHA, build_s=30, deploy_s=30)
    assert run(store, SHA, settings_for(platform), clock) == "succeeded"
    polls = [e for e in store.events(stream=SHA) if e.type == "DeploymentPolled"]
    from tracker.clock import parse_iso

    # rand() is 0.5: steps of 3 s until the calls made at -30 s leave the minute, at +30 s
    assert (parse_iso(polls[0].recorded_at) or 0) - start == pytest.approx(30.0)
    assert store.api_calls_by_window(clock.now())[0] < 200


# -- a hostile App Platform (tests/support/hostile.py): no crash, no overrun, no faster than policy

HOSTILE_429 = {"ratelimit-remaining": "0"}
HOSTILE = {
    "nested_200": (Answer(200, nested(100_000)), "malformed"),
    "nested_429": (Answer(429, nested(100_000), {"retry-after": "0"}), "rate_limited"),
    "nested_503": (Answer(503, nested(100_000)), "server_error"),
    "huge_remaining": (
        Answer(200, {"deployments": []}, {"ratelimit-remaining": "9" * 30}),
        "malformed",
    ),
    "huge_reset": (Answer(200, {"deployments": []}, {"ratelimit-reset": "9" * 400}), "malformed"),
    "huge_steps": (
        Answer(
            200,
            {
                "deployments": [
                    deployment(
                        services=[{"source_commit_hash": "1" * 40}],
                        progress={"success_steps": 10**30},
                    )
                ]
            },
        ),
        "malformed",
    ),
    "retry_after_0": (Answer(429, b"{}", {**HOSTILE_429, "retry-after": "0"}), "rate_limited"),
    "retry_after_negative": (
        Answer(429, b"{}", {**HOSTILE_429, "retry-after": "-5"}),
        "rate_limited",
    ),
    "retry_after_nan": (Answer(429, b"{}", {**HOSTILE_429, "retry-after": "nan"}), "rate_limited"),
    "retry_after_text": (
        Answer(429, b"{}", {**HOSTILE_429, "retry-after": "later"}),
        "rate_limited",
    ),
    "retry_after_past_date": (
        Answer(429, b"{}", {**HOSTILE_429, "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        "rate_limited",
    ),
    "retry_after_huge": (Answer(429, b"{}", {"retry-after": "9" * 400}), "rate_limited"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_api_never_crashes_the_monitor_nor_makes_it_poll_faster(
    store: SQLiteLog, clock: FakeClock, name: str
) -> None:
    answer, kind = HOSTILE[name]
    with hostile_api(lambda _target: answer) as api:
        env = {
            "DIGITALOCEAN_TOKEN": TOKEN,
            "TRACKER_DO_APP_ID": "app",
            "TRACKER_DO_API_URL": api.url,
            "TRACKER_POLL_POLICY": "fixed",
            "TRACKER_POLL_INTERVAL": "5",
            "TRACKER_MAX_WAIT": "60",
        }
        started = clock.now()
        assert run(store, SHA, load_settings(None, env=env), clock) == "timed_out"
    polls = [e.data for e in store.events(stream=SHA) if e.type == "DeploymentPolled"]
    assert polls and {(p["ok"], p["error_kind"]) for p in polls} == {(False, kind)}
    assert clock.now() - started <= 60
    gaps = poll_gaps(store, SHA)
    floor = 5.0 if kind == "rate_limited" else 5.0 / 16  # transient faults retry sooner, jittered
    assert gaps and min(gaps) >= floor - 1e-6, gaps
    assert api.requests == len(polls) == api_calls_in_log(store)


def test_a_source_that_raises_is_a_recorded_failed_poll(store: SQLiteLog, clock: FakeClock) -> None:
    class Broken:
        name = "digitalocean"

        def poll(self, sha: str) -> Observation:
            raise RecursionError("maximum recursion depth exceeded")

        def fetch_logs(self, deployment_id: str, lines: int = 20) -> Any:
            raise AssertionError("no verdict, no logs")

        def check(self) -> Observation:
            raise AssertionError("not used")

        def close(self) -> None:
            pass

    store.append(SHA, PushRecorded(sha=SHA, branch="main"), at=clock.now())
    settings = load_settings(None, env={"TRACKER_MAX_WAIT": "20"})
    assert Monitor(store, SHA, [Broken()], settings=settings, clock=clock).run() == "timed_out"
    polls = [e.data for e in store.events(stream=SHA) if e.type == "DeploymentPolled"]
    assert polls and all(p["error_kind"] == "malformed" for p in polls)
    assert "RecursionError" in polls[0]["error"]


def test_a_dripping_api_cannot_hold_a_monitor_past_max_wait(store: SQLiteLog) -> None:
    """Real time: a byte every half second, TRACKER_MAX_WAIT=3, one request deadline of 1 s."""
    from tracker.clock import SYSTEM_CLOCK

    answer = Answer(body={"deployments": []}, drip_s=0.5)
    with hostile_api(lambda _target: answer) as api:
        env = {
            "DIGITALOCEAN_TOKEN": TOKEN,
            "TRACKER_DO_APP_ID": "app",
            "TRACKER_DO_API_URL": api.url,
            "TRACKER_POLL_POLICY": "fixed",
            "TRACKER_POLL_INTERVAL": "0.5",
            "TRACKER_HTTP_TIMEOUT": "1",
            "TRACKER_MAX_WAIT": "3",
        }
        settings = load_settings(None, env=env)
        store.append(SHA, PushRecorded(sha=SHA, branch="main"))
        sources = build_sources(settings, SYSTEM_CLOCK)
        started = SYSTEM_CLOCK.monotonic()
        try:
            state = Monitor(store, SHA, sources, settings=settings).run()
        finally:
            for source in sources:
                source.close()
        took = SYSTEM_CLOCK.monotonic() - started
    assert state == "timed_out"
    assert took <= 3 + 1 + 0.8, took
    kinds = {e.data["error_kind"] for e in store.events(stream=SHA) if e.type == "DeploymentPolled"}
    assert kinds == {"timeout"}


@pytest.mark.parametrize("payload", [b"\x4a\x00\x00\x00\x0a5.5.5-10.11" * 8, b""])
def test_a_dripping_or_silent_database_cannot_hold_a_monitor_past_max_wait(
    store: SQLiteLog, payload: bytes
) -> None:
    """Real time: a handshake dripped a byte each half second (or silence), MAX_WAIT=3."""
    from tracker.clock import SYSTEM_CLOCK

    with dripping(payload, 0.5) as server:
        env = {
            "TRACKER_MYSQL_URL": f"mysql://root@127.0.0.1:{server.port}/test",
            "TRACKER_MYSQL_CONNECT_TIMEOUT": "1",
            "TRACKER_POLL_POLICY": "fixed",
            "TRACKER_POLL_INTERVAL": "0.5",
            "TRACKER_MAX_WAIT": "3",
        }
        settings = load_settings(None, env=env)
        store.append(SHA, PushRecorded(sha=SHA, branch="main"))
        sources = build_sources(settings, SYSTEM_CLOCK)
        started = SYSTEM_CLOCK.monotonic()
        try:
            state = Monitor(store, SHA, sources, settings=settings).run()
        finally:
            for source in sources:
                source.close()
        took = SYSTEM_CLOCK.monotonic() - started
    assert state == "timed_out" and took <= 3 + 1 + 0.8, took
    kinds = {e.data["error_kind"] for e in store.events(stream=SHA) if e.type == "DeploymentPolled"}
    assert kinds == {"timeout"}


# -- the informed policy (the default) ------------------------------------------------------


def seed_history(
    store: SQLiteLog, clock: FakeClock, build_s: float, deploy_s: float, n: int
) -> None:
    """`n` earlier deployments in the log, as a monitor records them (push, a poll per phase
    with the platform's time of it, the verdict); the clock ends after the last."""
    from tracker.clock import iso
    from tracker.events import DeploymentSucceeded

    for i in range(n):
        sha, at = f"{0xABC000 + i:040x}", clock.now()
        store.append(sha, PushRecorded(sha=sha, branch="main", pushed_at=iso(at)), at=at)
        t = at + 3
        phases = (("PENDING_BUILD", 5), ("BUILDING", build_s), ("DEPLOYING", deploy_s))
        for phase, seconds in phases:
            poll = DeploymentPolled(
                "digitalocean", True, True, phase, platform_at=iso(t), api_calls=1
            )
            store.append(sha, poll, at=t + 1)
            t += seconds
        live = DeploymentSucceeded("d", platform_at=iso(t), push_to_live_s=t - at)
        store.append(sha, live, at=t + 1)
        clock.advance(t + 60 - clock.now())


def test_informed_is_the_default_and_costs_fewer_calls_than_fixed_10s(
    store, platform, clock
) -> None:
    """Cold (no history): the broad prior, the phase and its start time from each poll."""
    platform.add_deployment(SHA, appear_after_s=3, build_s=150, deploy_s=75)
    settings = settings_for(platform)
    assert settings.poll_policy == "informed"
    assert run(store, SHA, settings, clock) == "succeeded"
    row = store.deployment(SHA)
    assert row is not None and row.push_to_live_s is not None
    fixed_10s = 1 + math.ceil(row.push_to_live_s / 10)
    assert row.api_calls <= 0.7 * fixed_10s
    assert row.detection_lag_s is not None and row.detection_lag_s <= 30
    assert api_calls_in_log(store) == platform.api_requests
    gaps = poll_gaps(store, SHA)
    assert max(gaps) <= 30 + 1  # TRACKER_POLL_MAX_INTERVAL, plus a look at the log
    started = next(e for e in store.events(stream=SHA) if e.type == "MonitorStarted")
    assert started.data["policy"] == "informed" and started.data["max_wait_s"] == 480


def test_a_slow_deployment_is_not_timed_out_at_480s_when_history_says_25_minutes(
    store, platform, clock
) -> None:
    seed_history(store, clock, build_s=1200, deploy_s=280, n=5)
    platform.add_deployment(SHA, appear_after_s=2, build_s=1300, deploy_s=260)
    assert run(store, SHA, settings_for(platform), clock) == "succeeded"
    row = store.deployment(SHA)
    assert row is not None and row.state == "succeeded"
    started = next(e for e in store.events(stream=SHA) if e.type == "MonitorStarted")
    assert started.data["max_wait_s"] >= 3 * 1480  # 3 × the p95 from push to verdict
    assert row.push_to_live_s is not None and row.push_to_live_s > 1500
    assert row.api_calls <= 0.4 * (1 + row.push_to_live_s / 10)  # fixed 10 s: about 158
    assert row.detection_lag_s is not None and row.detection_lag_s <= 30
    assert api_calls_in_log(store, SHA) == platform.api_requests


def test_a_max_wait_that_is_set_is_kept_whatever_the_history(store, platform, clock) -> None:
    seed_history(store, clock, build_s=1200, deploy_s=280, n=5)
    platform.add_deployment(SHA, build_s=1300, deploy_s=260)
    settings = settings_for(platform, TRACKER_MAX_WAIT="480")
    assert run(store, SHA, settings, clock) == "timed_out"
