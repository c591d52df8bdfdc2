"""DigitalOceanSource against the simulated App Platform on a real loopback port.

Every scenario ends by checking that the API calls the source reported equal the API requests
the server received.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from tests.support.hostile import (
    DEPLOYMENT_ID,
    ESCAPES,
    EVERY_ESCAPE,
    SHA,
    Answer,
    deployment,
    hostile_api,
    nested,
)
from tracker.clock import FakeClock
from tracker.monitor.sources.base import LogTail, Observation, outcome_of
from tracker.monitor.sources.digitalocean import DigitalOceanSource
from tracker.sim import (
    BUILD_FAILURE_LINE,
    DEPLOY_FAILURE_LINE,
    SimulatedPlatform,
)

TOKEN = "dop_v1_" + "5ec7e7" * 10


def sha_of(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


@dataclass
class Harness:
    """A sim and a source sharing one FakeClock, and everything the source reported."""

    clock: FakeClock
    sim: SimulatedPlatform
    source: DigitalOceanSource
    observations: list[Observation] = field(default_factory=list)
    tails: list[LogTail] = field(default_factory=list)

    def poll(self, sha: str) -> Observation:
        obs = self.source.poll(sha)
        self.observations.append(obs)
        return obs

    def logs(self, deployment_id: str, lines: int = 20) -> LogTail:
        tail = self.source.fetch_logs(deployment_id, lines)
        self.tails.append(tail)
        return tail

    def follow(self, sha: str, every: float = 5.0, limit: int = 200) -> list[Observation]:
        """Poll every `every` simulated seconds until a terminal phase."""
        seen = []
        for _ in range(limit):
            obs = self.poll(sha)
            seen.append(obs)
            if outcome_of(obs.phase) is not None:
                return seen
            self.clock.sleep(every)
        raise AssertionError(f"no terminal phase after {limit} polls: {seen[-1]}")

    def assert_counted(self) -> None:
        reported = sum(o.api_calls for o in self.observations) + sum(
            t.api_calls for t in self.tails
        )
        assert reported == self.sim.api_requests > 0


@pytest.fixture
def h() -> Iterator[Harness]:
    clock = FakeClock()
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        source = DigitalOceanSource(sim.base_url, TOKEN, sim.app_id, clock, timeout=2.0)
        try:
            yield Harness(clock, sim, source)
        finally:
            source.close()


def test_success_walks_the_phases_then_polls_only_its_deployment(h: Harness) -> None:
    sha = sha_of("ok")
    dep = h.sim.add_deployment(sha, build_s=60, deploy_s=90, appear_after_s=12)
    seen = h.follow(sha)
    assert seen[0].ok and not seen[0].found and seen[0].api_calls == 1
    phases = [o.phase for o in seen if o.found]
    assert {"PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING"} <= set(phases)
    last = seen[-1]
    assert (last.phase, last.deployment_id, last.http_status) == ("ACTIVE", dep, 200)
    assert last.steps_done == last.steps_total == 6
    assert last.failed_step is None and last.reason_code is None
    assert last.platform_at is not None and last.platform_at <= h.clock.now()
    assert last.ratelimit_remaining == 5000 - h.sim.api_requests
    matched_at = next(i for i, o in enumerate(seen) if o.found)
    later = [r.path for r in h.sim.requests[matched_at + 1 :]]
    assert later and all(p.endswith(f"/deployments/{dep}") for p in later)
    h.assert_counted()


def test_pending_build_reads_omitted_counters_as_zero_and_zero_time_as_unset(h: Harness) -> None:
    sha = sha_of("pending")
    h.sim.add_deployment(sha, pending_build_s=30)
    obs = h.poll(sha)
    assert obs.phase == "PENDING_BUILD"
    assert (obs.steps_done, obs.steps_total) == (0, 6)
    # phase_last_updated_at is Go's zero time here, so updated_at stands in.
    assert obs.platform_at == pytest.approx(h.clock.now(), abs=1)
    h.assert_counted()


def test_build_failure_reports_step_reason_and_build_log_tail(h: Harness) -> None:
    sha = sha_of("build-fails")
    dep = h.sim.add_deployment(sha, build_s=40, outcome="build_error")
    last = h.follow(sha)[-1]
    assert last.phase == "ERROR"
    assert last.failed_step == "build.components.web"
    assert last.reason_code == "BuildJobExitNonZero"
    assert last.reason_message and "non-zero exit code" in last.reason_message
    tail = h.logs(dep)
    assert tail.error is None and tail.stages == ("BUILD",)
    assert len(tail.lines) == 20
    assert tail.lines[-1].endswith(BUILD_FAILURE_LINE)
    assert tail.api_calls == 2  # BUILD, then DEPLOY answered 400: never reached
    archive = [r for r in h.sim.requests if not r.api]
    assert len(archive) == 1 and not archive[0].authorization
    assert all(r.authorization for r in h.sim.requests if r.api)
    h.assert_counted()


def test_deploy_failure_reads_build_then_deploy_logs(h: Harness) -> None:
    sha = sha_of("deploy-fails")
    dep = h.sim.add_deployment(sha, outcome="deploy_error")
    last = h.follow(sha, every=15)[-1]
    assert last.phase == "ERROR"
    assert last.failed_step == "deploy.components.web.wait"
    assert last.reason_code == "DeployContainerHealthChecksFailed"
    tail = h.logs(dep, lines=200)
    assert tail.stages == ("BUILD", "DEPLOY")
    assert tail.lines[-1].endswith(DEPLOY_FAILURE_LINE)
    first_deploy = next(i for i, line in enumerate(tail.lines) if "deploying web" in line)
    assert any("npm run build" in line for line in tail.lines[:first_deploy])
    assert sum(1 for r in h.sim.requests if not r.api and not r.authorization) == 2
    h.assert_counted()


def test_cancel_is_terminal_without_a_failed_step(h: Harness) -> None:
    sha = sha_of("cancel")
    h.sim.add_deployment(sha, outcome="canceled", cancel_after_s=20)
    last = h.follow(sha)[-1]
    assert (last.phase, last.failed_step) == ("CANCELED", None)
    h.assert_counted()


def test_superseded_reports_the_successor(h: Harness) -> None:
    ours, theirs = sha_of("slow-build"), sha_of("quick-fix")
    h.sim.add_deployment(ours, build_s=120, deploy_s=90)
    newer = h.sim.add_deployment(theirs, appear_after_s=10, build_s=20, deploy_s=20)
    last = h.follow(ours)[-1]
    assert last.phase == "SUPERSEDED"
    assert (last.successor_id, last.successor_sha, last.successor_phase) == (
        newer,
        theirs,
        "ACTIVE",
    )
    h.assert_counted()


def test_our_deployment_on_page_three(h: Harness) -> None:
    sha = sha_of("old")
    dep = h.sim.add_deployment(sha, build_s=600, deploy_s=600)
    for n in range(45):
        h.sim.add_deployment(sha_of(f"newer-{n}"), appear_after_s=1, build_s=5, deploy_s=5)
    h.clock.advance(2)
    first = h.poll(sha)
    assert (first.found, first.deployment_id, first.api_calls) == (True, dep, 3)
    assert [r.query for r in h.sim.requests] == [
        "page=1&per_page=20",
        "page=2&per_page=20",
        "page=3&per_page=20",
    ]
    assert h.poll(sha).api_calls == 1
    h.assert_counted()


def test_an_absent_deployment_costs_one_call_per_poll_after_the_first_scan(h: Harness) -> None:
    for n in range(45):
        h.sim.add_deployment(sha_of(f"other-{n}"), build_s=5, deploy_s=5)
    h.clock.advance(1)
    sha = sha_of("not-yet")
    assert h.poll(sha).api_calls == 3  # the whole recent history once
    for _ in range(3):
        obs = h.poll(sha)
        assert (obs.ok, obs.found, obs.api_calls) == (True, False, 1)
    h.assert_counted()


def test_a_known_push_time_stops_the_search_at_older_deployments(h: Harness) -> None:
    for n in range(45):
        h.sim.add_deployment(sha_of(f"yesterday-{n}"), build_s=5, deploy_s=5)
    h.clock.advance(7200)
    sha = sha_of("just-pushed")
    h.source.expect(sha, pushed_at=h.clock.now())
    obs = h.poll(sha)
    assert (obs.found, obs.api_calls) == (False, 1)
    h.assert_counted()


@pytest.mark.parametrize(
    ("sha_in", "component"),
    [
        ("components", "services"),
        ("cause_details", "services"),
        ("components", "static_sites"),
        ("components", "workers"),
        ("components", "jobs"),
        ("components", "functions"),
    ],
)
def test_matches_the_full_sha_wherever_it_shows(h: Harness, sha_in: str, component: str) -> None:
    sha = sha_of(f"{sha_in}-{component}")
    h.sim.add_deployment(sha_of("decoy"))  # same short SHA prefix is impossible; a decoy anyway
    dep = h.sim.add_deployment(sha, sha_in=sha_in, component=component)  # type: ignore[arg-type]
    h.sim.add_deployment(None)  # a manual deploy with no SHA at all
    obs = h.poll(sha.upper())
    assert (obs.found, obs.deployment_id) == (True, dep)
    h.assert_counted()


def test_429_with_retry_after(h: Harness) -> None:
    sha = sha_of("busy")
    h.sim.add_deployment(sha)
    h.sim.inject("429", times=2, retry_after=3)
    for _ in range(2):
        obs = h.poll(sha)
        assert (obs.ok, obs.error_kind, obs.http_status) == (False, "rate_limited", 429)
        assert obs.retry_after_s == 3 and obs.ratelimit_remaining == 0
    assert h.poll(sha).found
    h.assert_counted()


def test_429_without_retry_after_waits_for_ratelimit_reset(h: Harness) -> None:
    sha = sha_of("busy-hour")
    h.sim.inject("429", reset_in_s=42)
    obs = h.poll(sha)
    assert obs.error_kind == "rate_limited"
    assert obs.retry_after_s == pytest.approx(42, abs=1)
    assert obs.ratelimit_reset == pytest.approx(h.clock.now() + 42, abs=1)
    h.assert_counted()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(h: Harness, status: int) -> None:
    h.sim.inject("5xx", times=3, status=status)
    for _ in range(3):
        obs = h.poll(sha_of("x"))
        assert (obs.ok, obs.error_kind, obs.http_status) == (False, "server_error", status)
        assert obs.error and obs.error.startswith(f"HTTP {status}")
    assert h.poll(sha_of("x")).ok
    h.assert_counted()


@pytest.mark.parametrize("kind", ["malformed", "wrong_shape", "huge"])
def test_malformed_answers_before_and_after_the_match(h: Harness, kind: str) -> None:
    sha = sha_of(kind)
    dep = h.sim.add_deployment(sha)
    h.sim.inject(kind, size_bytes=5 * 1024 * 1024)  # type: ignore[arg-type]
    obs = h.poll(sha)
    assert (obs.ok, obs.error_kind) == (False, "malformed")
    assert h.poll(sha).found
    h.sim.inject(kind, size_bytes=5 * 1024 * 1024)  # type: ignore[arg-type]
    obs = h.poll(sha)
    assert (obs.ok, obs.error_kind, obs.deployment_id) == (False, "malformed", dep)
    h.assert_counted()


@pytest.mark.parametrize("kind", ["truncated", "reset"])
def test_broken_connections(h: Harness, kind: str) -> None:
    sha = sha_of(kind)
    h.sim.add_deployment(sha)
    h.sim.inject(kind)  # type: ignore[arg-type]
    obs = h.poll(sha)
    assert (obs.ok, obs.error_kind, obs.api_calls) == (False, "connection", 1)
    assert h.poll(sha).found
    h.assert_counted()


def test_a_hanging_server_times_out() -> None:
    clock = FakeClock()
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        source = DigitalOceanSource(sim.base_url, TOKEN, sim.app_id, clock, timeout=0.2)
        sim.inject("slow", delay_s=30)
        obs = source.poll(sha_of("hang"))
        source.close()
    assert (obs.ok, obs.error_kind, obs.api_calls) == (False, "timeout", 1)
    assert obs.error == "timed out after 0.2s"
    assert sim.api_requests == 1


def test_a_wrong_token_is_an_auth_error_that_never_shows_the_token() -> None:
    clock = FakeClock()
    wrong = "dop_v1_" + "bad" * 20
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        source = DigitalOceanSource(sim.base_url, wrong, sim.app_id, clock, timeout=2.0)
        sim.add_deployment(sha_of("auth"))
        seen = [source.poll(sha_of("auth")), source.check()]
        tail = source.fetch_logs("whatever")
        source.close()
    for obs in seen:
        assert (obs.ok, obs.error_kind, obs.http_status) == (False, "auth", 401)
        assert obs.error and "DIGITALOCEAN_TOKEN" in obs.error
        assert wrong not in repr(obs) and TOKEN not in repr(obs)
    assert tail.error and wrong not in tail.error and "401" in tail.error
    assert wrong not in repr(source)
    assert sum(o.api_calls for o in seen) + tail.api_calls == sim.api_requests == 4


def test_a_header_the_token_cannot_be_sent_in_is_reported_without_it() -> None:
    clock = FakeClock()
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        bad = "secret-with-newline\nX-Evil: 1"
        source = DigitalOceanSource(sim.base_url, bad, sim.app_id, clock)
        obs = source.poll(sha_of("x"))
        source.close()
    assert not obs.ok and obs.error and "secret" not in repr(obs)


def test_check_is_one_authorised_call(h: Harness) -> None:
    obs = h.source.check()
    h.observations.append(obs)
    assert (obs.ok, obs.found, obs.http_status, obs.api_calls) == (True, True, 200, 1)
    h.assert_counted()


def test_an_unreachable_api_is_a_connection_error() -> None:
    with SimulatedPlatform(clock=FakeClock()) as sim:
        url = sim.base_url
    source = DigitalOceanSource(url, TOKEN, "app", FakeClock(), timeout=1.0)
    obs = source.poll(sha_of("x"))
    source.close()
    assert (obs.ok, obs.error_kind, obs.api_calls) == (False, "connection", 1)


def test_log_archive_failures_come_back_in_the_tail(h: Harness) -> None:
    sha = sha_of("archive-down")
    dep = h.sim.add_deployment(sha, outcome="build_error")
    h.clock.advance(3600)
    h.sim.inject("5xx", path="/archive/")
    tail = h.logs(dep)
    assert tail.lines == () and tail.error and "archive" in tail.error
    assert tail.api_calls == 2
    h.assert_counted()


def test_platform_time_is_the_phase_change(h: Harness) -> None:
    sha = sha_of("times")
    dep = h.sim.add_deployment(sha, build_s=60, deploy_s=60, pending_build_s=5)
    h.clock.advance(20)
    obs = h.poll(sha)
    assert obs.phase == "BUILDING" and obs.deployment_id == dep
    assert obs.platform_at == pytest.approx(h.clock.now() - 15, abs=1)
    h.assert_counted()


def test_a_next_link_to_another_host_never_gets_the_token() -> None:
    """A hostile or broken `links.pages.next` must not receive the bearer token."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = request.url.params.get("page", "1")
        links = {"pages": {"next": "http://evil.example/v2/apps/a/deployments?page=2"}}
        body = {"deployments": [{"id": "d1", "phase": "ACTIVE"}], "links": links}
        return httpx.Response(200, json=body if page == "1" else {"deployments": []})

    source = DigitalOceanSource(
        "https://api.example", TOKEN, "a", FakeClock(), transport=httpx.MockTransport(answer)
    )
    source.poll(sha_of("x"))
    source.close()
    assert seen and all(r.url.host == "api.example" for r in seen)


def test_superseded_by_one_still_in_progress_reports_its_phase() -> None:
    clock = FakeClock()
    with SimulatedPlatform(clock=clock, token=TOKEN, supersede_on="created") as sim:
        h = Harness(clock, sim, DigitalOceanSource(sim.base_url, TOKEN, sim.app_id, clock))
        ours, theirs = sha_of("ours"), sha_of("theirs")
        h.sim.add_deployment(ours, build_s=120)
        newer = h.sim.add_deployment(theirs, appear_after_s=30, outcome="build_error")
        last = h.follow(ours)[-1]
        h.source.close()
        assert last.phase == "SUPERSEDED"
        assert (last.successor_id, last.successor_sha) == (newer, theirs)
        assert last.successor_phase == "PENDING_BUILD"
        h.assert_counted()


def test_a_server_that_echoes_the_token_does_not_leak_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["Authorization"]
        return httpx.Response(401, json={"id": "unauthorized", "message": f"bad {echoed}"})

    transport = httpx.MockTransport(answer)
    source = DigitalOceanSource("https://api.example", TOKEN, "a", FakeClock(), transport=transport)
    obs = source.poll(sha_of("x"))
    tail = source.fetch_logs("d")
    source.close()
    assert obs.error_kind == "auth" and obs.error and "bad Bearer ***" in obs.error
    assert TOKEN not in repr(obs) and tail.error and TOKEN not in tail.error


# --- a hostile App Platform on loopback (tests/support/hostile.py) ---------------------------

SQLITE_INT = 2**63 - 1


def hostile_poll(*answers: Answer, sha: str = SHA, polls: int = 1) -> list[Observation]:
    """Poll a server that gives `answers` in turn (the last one again and again)."""
    script = list(answers)

    def answer(_target: str) -> Answer:
        return script.pop(0) if len(script) > 1 else script[0]

    clock = FakeClock()
    with hostile_api(answer) as api:
        source = DigitalOceanSource(api.url, TOKEN, "app", clock, timeout=2.0)
        try:
            seen = [source.poll(sha) for _ in range(polls)]
        finally:
            source.close()
    for obs in seen:  # whatever came in, what goes to the log fits it
        for value in (obs.ratelimit_remaining, obs.steps_done, obs.steps_total):
            assert value is None or 0 <= value <= SQLITE_INT
        for value in (obs.ratelimit_reset, obs.retry_after_s, obs.platform_at):
            assert value is None or (math.isfinite(value) and value >= 0)
    return seen


def listed(*deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"deployments": list(deployments), "meta": {"total": len(deployments)}, **extra}


@pytest.mark.parametrize(
    ("status", "kind"), [(200, "malformed"), (429, "rate_limited"), (503, "server_error")]
)
def test_json_nested_100000_deep_is_a_failed_poll_not_a_crash(status: int, kind: str) -> None:
    (obs,) = hostile_poll(Answer(status, nested(100_000)))
    assert (obs.ok, obs.error_kind, obs.http_status, obs.api_calls) == (False, kind, status, 1)


def test_json_nested_just_too_deep_inside_a_real_deployment_is_malformed() -> None:
    steps: dict[str, Any] = {"name": "leaf", "status": "ERROR"}
    for n in range(70):
        steps = {"name": f"s{n}", "status": "ERROR", "steps": [steps]}
    body = {"deployment": deployment("ERROR", progress={"steps": [steps]})}
    (first, obs) = hostile_poll(Answer(body=listed(deployment())), Answer(body=body), polls=2)
    assert first.found and (obs.ok, obs.error_kind) == (False, "malformed")
    assert obs.error and "nests deeper than" in obs.error


HUGE = "9" * 30
ENORMOUS = "9" * 400


@pytest.mark.parametrize(
    ("headers", "progress"),
    [
        ({"ratelimit-remaining": HUGE}, {}),
        ({"ratelimit-remaining": "-1"}, {}),
        ({"ratelimit-remaining": "1e3"}, {}),
        ({"ratelimit-reset": ENORMOUS}, {}),
        ({"ratelimit-reset": "-1800000000"}, {}),
        ({"ratelimit-reset": "nan"}, {}),
        ({}, {"success_steps": int(HUGE)}),
        ({}, {"total_steps": -6}),
        ({}, {"total_steps": int(ENORMOUS)}),
        ({}, {"error_steps": 1, "success_steps": 1.5}),
    ],
)
def test_huge_and_negative_integers_are_a_malformed_poll(
    headers: dict[str, str], progress: dict[str, Any]
) -> None:
    body = listed(deployment(progress={"total_steps": 6, **progress}))
    (obs,) = hostile_poll(Answer(body=body, headers=headers))
    assert (obs.ok, obs.error_kind, obs.api_calls) == (False, "malformed", 1)


def test_a_400_digit_page_number_in_the_next_link_is_not_followed_blindly() -> None:
    links = {"pages": {"next": "/v2/apps/app/deployments?page=" + ENORMOUS}}
    other = deployment(id="other", services=[{"name": "web", "source_commit_hash": "b" * 40}])
    seen: list[str] = []

    def answer(target: str) -> Answer:
        seen.append(target)
        return Answer(body=listed(other, links=links) if len(seen) == 1 else listed(deployment()))

    clock = FakeClock()
    with hostile_api(answer) as api:
        source = DigitalOceanSource(api.url, TOKEN, "app", clock, timeout=2.0)
        obs = source.poll(SHA)
        source.close()
    assert obs.found and len(seen) == 2 and "page=2&" in seen[1]


def test_429_with_huge_headers_is_rate_limited_and_falls_back_to_the_backoff() -> None:
    headers = {"retry-after": HUGE, "ratelimit-reset": ENORMOUS, "ratelimit-remaining": HUGE}
    (obs,) = hostile_poll(Answer(429, {"id": "too_many_requests"}, headers))
    assert (obs.error_kind, obs.retry_after_s, obs.ratelimit_reset) == ("rate_limited", None, None)
    assert obs.ratelimit_remaining is None


NOW = FakeClock().now()


@pytest.mark.parametrize(
    ("retry_after", "reset_in", "expected"),
    [
        ("0", None, None),
        ("0", 30, 30),  # unusable: the reset says when
        ("-5", 30, 30),
        ("nan", 30, 30),
        ("inf", None, None),
        ("soon", 30, 30),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30, 30),  # an HTTP date in the past
        ("Wed, 21 Oct 2015 07:28:00 GMT", None, None),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), None, 90),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 30, 90),
        ("12", 30, 12),
        ("2.5", None, 2.5),
        (None, -30, None),  # a reset in the past
    ],
)
def test_retry_after_that_is_unusable_falls_back_to_the_reset(
    retry_after: str | None, reset_in: int | None, expected: float | None
) -> None:
    headers = {"ratelimit-remaining": "0"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if reset_in is not None:
        headers["ratelimit-reset"] = str(int(NOW) + reset_in)
    (obs,) = hostile_poll(Answer(429, {"id": "too_many_requests"}, headers))
    assert (obs.ok, obs.error_kind) == (False, "rate_limited")
    if expected is None:
        assert obs.retry_after_s is None
    else:
        assert obs.retry_after_s == pytest.approx(expected, abs=1)


def test_escape_sequences_come_through_as_data_for_the_output_to_escape() -> None:
    """The source keeps strings as they came (bounded); text output escapes them (test_output)."""
    reason = {"code": EVERY_ESCAPE, "message": "failed " + EVERY_ESCAPE}
    steps = [{"name": "build" + ESCAPES["osc52_clipboard"], "status": "ERROR", "reason": reason}]
    failing = deployment("ERROR", progress={"steps": steps})
    (obs,) = hostile_poll(Answer(body=listed(failing)))
    assert obs.phase == "ERROR" and obs.reason_code == EVERY_ESCAPE
    assert obs.failed_step == "build" + ESCAPES["osc52_clipboard"]


def test_error_bodies_with_escapes_and_line_breaks_become_one_short_line() -> None:
    body = {"id": "x\n\n" + ESCAPES["clear_screen"], "message": "bad\nnews" * 100}
    (obs,) = hostile_poll(Answer(500, body))
    assert obs.error and "\n" not in obs.error and len(obs.error) <= 200


@pytest.mark.parametrize(
    "body",
    [
        listed(deployment(id="x" * 5000)),
        listed(deployment(phase="B" * 100)),
        listed(deployment(phase=None)),
        listed(deployment(progress=[1])),
        listed(deployment(updated_at="9999-12-31T23:59:59-14:00")),
        listed(deployment(created_at=7)),
        {"deployments": "many"},
        b'{"deployments": [' + b"1" * 5000 + b"]}",
        b"\xff\xfe not even text",
        b"",
    ],
)
def test_answers_no_api_sends_never_raise(body: Any) -> None:
    (obs,) = hostile_poll(Answer(body=body))
    assert obs.ok is False or obs.found  # either a clean failure or a usable deployment
    if obs.found:
        assert obs.platform_at is None or obs.platform_at < 2**40


# --- a server that drips: every poll ends within its deadline -------------------------------


@pytest.mark.parametrize("drip_from", [0, 40, 150], ids=["status-line", "headers", "body"])
def test_an_answer_dripped_a_byte_at_a_time_times_out_at_the_deadline(drip_from: int) -> None:
    """A byte every 0.2 s never trips a per-read timeout; the whole-poll deadline (1 s) does."""
    answer = Answer(body=listed(deployment()), drip_s=0.2, drip_from=drip_from)
    with hostile_api(lambda _target: answer) as api:
        source = DigitalOceanSource(api.url, TOKEN, "app", FakeClock(), timeout=1.0)
        started = time.monotonic()
        obs = source.poll(SHA)
        took = time.monotonic() - started
        source.close()
    assert (obs.ok, obs.error_kind, obs.api_calls) == (False, "timeout", 1)
    assert 0.9 <= took < 1.6, took


def test_the_deadline_covers_every_request_of_a_poll() -> None:
    """Pages answered each in 0.4 s: a 1 s poll stops asking after its deadline, not per page."""
    links = {"pages": {"next": "/v2/apps/app/deployments?page=2"}}
    other = deployment(id="other", services=[{"name": "web", "source_commit_hash": "b" * 40}])
    body = json.dumps(listed(other, links=links)).encode()
    answer = Answer(body=body, drip_s=0.4 / 40, drip_from=len(Answer(body=body).raw()) - 40)
    with hostile_api(lambda _target: answer) as api:
        source = DigitalOceanSource(api.url, TOKEN, "app", FakeClock(), timeout=1.0, max_pages=9)
        started = time.monotonic()
        obs = source.poll(SHA)
        took = time.monotonic() - started
        source.close()
    assert (obs.ok, obs.error_kind) == (False, "timeout")
    assert took < 1.6 and api.requests <= 3, (took, api.requests)


def test_log_archives_dripped_slowly_end_within_the_deadline() -> None:
    archive = Answer(body="line\n" * 200, drip_s=0.05)

    def answer(target: str) -> Answer:
        if "/archive" in target:
            return archive
        if "/logs" in target:
            return Answer(body={"historic_urls": [f"{api.url}/archive/1"]})
        return Answer(404, {"id": "not_found"})

    with hostile_api(answer) as api:
        source = DigitalOceanSource(api.url, TOKEN, "app", FakeClock(), timeout=1.0)
        started = time.monotonic()
        tail = source.fetch_logs(DEPLOYMENT_ID)
        took = time.monotonic() - started
        source.close()
    assert took < 1.6 and tail.error and "timed out" in tail.error
