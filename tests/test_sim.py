"""The simulated App Platform API keeps to the documented shapes, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.simulated import SIM_TOKEN as TOKEN
from tracker.clock import FakeClock
from tracker.sim import (
    BUILD_FAILURE_LINE,
    DEPLOY_FAILURE_LINE,
    ZERO_TIME,
    SimulatedPlatform,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sha_of(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


class Api:
    """A bare client for the sim: what a careless or careful caller would send."""

    def __init__(self, sim: SimulatedPlatform, clock: FakeClock) -> None:
        self.sim, self.clock = sim, clock
        self.http = httpx.Client(base_url=sim.base_url, timeout=5.0)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", AUTH)
        return self.http.get(f"/v2/apps/{self.sim.app_id}{path}", **kwargs)

    def deployment(self, dep: str) -> dict[str, Any]:
        response = self.get(f"/deployments/{dep}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()["deployment"]
        return body


@pytest.fixture
def api(sim: SimulatedPlatform, clock: FakeClock) -> Iterator[Api]:
    client = Api(sim, clock)
    yield client
    client.http.close()


def counters(progress: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in progress.items() if k.endswith("_steps") and k != "summary_steps"}


def test_phases_advance_on_the_shared_clock_with_zero_counters_omitted(api: Api) -> None:
    sha = sha_of("a")
    dep = api.sim.add_deployment(
        sha, pending_build_s=5, build_s=60, pending_deploy_s=5, deploy_s=90
    )
    timeline = [
        (0, "PENDING_BUILD", {"pending_steps": 6, "total_steps": 6}),
        (30, "BUILDING", {"pending_steps": 4, "running_steps": 1, "success_steps": 1}),
        (67, "PENDING_DEPLOY", {"pending_steps": 4, "success_steps": 2}),
        (100, "DEPLOYING", {"pending_steps": 2, "running_steps": 1, "success_steps": 3}),
        (200, "ACTIVE", {"success_steps": 6, "total_steps": 6}),
    ]
    start = api.clock.now()
    for at, phase, expected in timeline:
        api.clock.advance(start + at - api.clock.now())
        d = api.deployment(dep)
        assert d["phase"] == phase
        assert counters(d["progress"]) == {"total_steps": 6, **expected}
    assert d["services"] == [{"name": "web", "source_commit_hash": sha}]
    assert d["cause"] == f"commit {sha[:7]} pushed to github/acme/sample-app"
    assert d["cause_details"]["git_push"]["commit_sha"] == sha


def test_phase_time_is_go_zero_until_the_first_change(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("t"), pending_build_s=5)
    assert api.deployment(dep)["phase_last_updated_at"] == ZERO_TIME
    api.clock.advance(6)
    assert api.deployment(dep)["phase_last_updated_at"] != ZERO_TIME


def test_build_error_has_a_failing_leaf_with_a_reason_and_an_npm_tail(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("b"), outcome="build_error", build_s=30)
    api.clock.advance(100)
    d = api.deployment(dep)
    assert d["phase"] == "ERROR"
    assert counters(d["progress"]) == {
        "error_steps": 1,
        "success_steps": 1,
        "pending_steps": 4,
        "total_steps": 6,
    }
    build = d["progress"]["steps"][0]
    assert (build["status"], build["reason"]["code"]) == ("ERROR", "BuildJobExitNonZero")
    web = build["steps"][1]["steps"][0]
    assert (web["name"], web["status"], web["reason"]["code"]) == (
        "web",
        "ERROR",
        "BuildJobExitNonZero",
    )
    assert "reason" not in build["steps"][1]  # only the leaf and its top-level step carry it
    logs = api.get(f"/deployments/{dep}/logs", params={"type": "BUILD"}).json()
    assert logs["live_url"] == "" and len(logs["historic_urls"]) == 1
    text = api.http.get(logs["historic_urls"][0]).text
    assert text.splitlines()[-1].endswith(BUILD_FAILURE_LINE)
    assert api.get(f"/deployments/{dep}/logs", params={"type": "DEPLOY"}).status_code == 400


def test_deploy_error_fails_in_the_health_check(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("c"), outcome="deploy_error")
    api.clock.advance(1000)
    d = api.deployment(dep)
    assert d["phase"] == "ERROR"
    assert d["progress"]["steps"][1]["reason"]["code"] == "DeployContainerHealthChecksFailed"
    logs = api.get(f"/deployments/{dep}/logs", params={"type": "DEPLOY"}).json()
    text = api.http.get(logs["historic_urls"][0]).text
    assert text.splitlines()[-1].endswith(DEPLOY_FAILURE_LINE)


def test_cancel_has_no_error_steps(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("d"), outcome="canceled", cancel_after_s=20)
    api.clock.advance(19)
    assert api.deployment(dep)["phase"] == "BUILDING"
    api.clock.advance(1)
    d = api.deployment(dep)
    assert d["phase"] == "CANCELED" and "error_steps" not in d["progress"]
    assert api.get(f"/deployments/{dep}/logs", params={"type": "DEPLOY"}).status_code == 400


def test_a_newer_deployment_that_goes_live_first_supersedes(api: Api) -> None:
    old = api.sim.add_deployment(sha_of("old"), build_s=300)
    new = api.sim.add_deployment(sha_of("new"), appear_after_s=10, build_s=10, deploy_s=10)
    finished = api.sim.add_deployment(sha_of("done-before"), appear_after_s=-500)
    api.clock.advance(60)
    assert api.deployment(old)["phase"] == "SUPERSEDED"
    assert api.deployment(new)["phase"] == "ACTIVE"
    assert api.deployment(finished)["phase"] == "ACTIVE"  # live before the newer one: stays
    listed = [d["id"] for d in api.get("/deployments").json()["deployments"]]
    assert listed == [new, old, finished]
    app = api.get("").json()["app"]
    assert app["active_deployment"]["id"] == new and "in_progress_deployment" not in app


def test_a_deployment_appears_only_after_its_delay(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("e"), appear_after_s=5)
    assert api.get(f"/deployments/{dep}").status_code == 404
    assert api.get("/deployments").json() == {"deployments": [], "meta": {"total": 0}}
    api.clock.advance(5)
    assert api.deployment(dep)["phase"] == "PENDING_BUILD"
    assert api.sim.phase(dep) == "PENDING_BUILD"


@pytest.mark.parametrize(
    ("sha_in", "in_component", "in_cause"),
    [("both", True, True), ("components", True, False), ("cause_details", False, True)],
)
def test_where_the_sha_shows(api: Api, sha_in: str, in_component: bool, in_cause: bool) -> None:
    sha = sha_of(sha_in)
    dep = api.sim.add_deployment(sha, sha_in=sha_in, component="workers")  # type: ignore[arg-type]
    d = api.deployment(dep)
    assert ("source_commit_hash" in d["workers"][0]) is in_component
    assert ("commit_sha" in d["cause_details"]["git_push"]) is in_cause
    assert "services" not in d


def test_a_manual_deploy_names_no_sha(api: Api) -> None:
    d = api.deployment(api.sim.add_deployment(None))
    assert d["cause"] == "manual" and d["cause_details"]["type"] == "MANUAL"
    assert d["services"] == [{"name": "web"}]


def test_pagination_links_only_where_they_make_sense(api: Api) -> None:
    ids = [api.sim.add_deployment(sha_of(str(n)), appear_after_s=n) for n in range(45)]
    api.clock.advance(60)
    pages = [api.get("/deployments", params={"page": p}).json() for p in (1, 2, 3)]
    assert [d["id"] for page in pages for d in page["deployments"]] == ids[::-1]
    assert all(page["meta"] == {"total": 45} for page in pages)
    assert set(pages[0]["links"]["pages"]) == {"next", "last"}
    assert set(pages[1]["links"]["pages"]) == {"first", "prev", "next", "last"}
    assert set(pages[2]["links"]["pages"]) == {"first", "prev"}
    follow = api.http.get(pages[0]["links"]["pages"]["next"], headers=AUTH).json()
    assert follow["deployments"] == pages[1]["deployments"]
    whole = api.get("/deployments", params={"per_page": 200}).json()
    assert "links" not in whole and len(whole["deployments"]) == 45
    assert api.get("/deployments", params={"per_page": 201}).status_code == 400
    assert api.get("/deployments", params={"page": "x"}).status_code == 400


def test_a_wrong_or_missing_token_is_401_with_the_error_body(api: Api) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {}):
        response = api.get("/deployments", headers=headers)
        assert response.status_code == 401
        assert response.json()["id"] == "unauthorized"
        assert "ratelimit-remaining" in response.headers


def test_rate_limit_headers_and_a_sliding_hourly_budget(clock: FakeClock) -> None:
    with SimulatedPlatform(clock=clock, token=TOKEN, limit_per_hour=3) as sim:
        api = Api(sim, clock)
        first = api.get("")
        assert first.headers["ratelimit-limit"] == "3"
        assert first.headers["ratelimit-remaining"] == "2"
        assert int(first.headers["ratelimit-reset"]) == int(clock.now() + 3600)
        clock.advance(10)
        api.get("")
        api.get("")
        over = api.get("")
        assert over.status_code == 429 and "retry-after" not in over.headers
        assert over.json()["id"] == "too_many_requests"
        clock.advance(3591)  # the first request has left the window
        assert api.get("").status_code == 200
        api.http.close()


def test_the_burst_limit_answers_429_with_retry_after(clock: FakeClock) -> None:
    with SimulatedPlatform(clock=clock, token=TOKEN, limit_per_minute=2) as sim:
        api = Api(sim, clock)
        assert [api.get("").status_code for _ in range(2)] == [200, 200]
        clock.advance(15)
        over = api.get("")
        assert (over.status_code, over.headers["retry-after"]) == (429, "45")
        clock.advance(45)
        assert api.get("").status_code == 200
        api.http.close()


def test_injected_429s_with_and_without_retry_after(api: Api) -> None:
    api.sim.inject("429", times=2, retry_after=3)
    api.sim.inject("429", reset_in_s=30, after=2)
    answers = [api.get("") for _ in range(4)]
    assert [r.status_code for r in answers] == [429, 429, 429, 200]
    assert [r.headers.get("retry-after") for r in answers[:3]] == ["3", "3", None]
    assert int(answers[2].headers["ratelimit-reset"]) == int(api.clock.now() + 30)
    assert answers[2].headers["ratelimit-remaining"] == "0"


def test_injected_bad_answers(api: Api) -> None:
    api.sim.inject("5xx", times=2)
    api.sim.inject("5xx", status=502, after=2)
    api.sim.inject("malformed", after=3)
    api.sim.inject("huge", size_bytes=1000, after=4)
    answers = [api.get("") for _ in range(5)]
    assert [r.status_code for r in answers] == [503, 503, 502, 200, 200]
    assert answers[2].headers["content-type"] == "text/html"
    with pytest.raises(ValueError):
        answers[3].json()
    assert len(answers[4].content) > 1000


@pytest.mark.parametrize("kind", ["truncated", "reset"])
def test_injected_broken_connections(api: Api, kind: str) -> None:
    api.sim.inject(kind)  # type: ignore[arg-type]
    with pytest.raises(httpx.TransportError):
        api.get("")
    assert api.get("").status_code == 200


def test_injected_slowness_outlasts_a_short_timeout(api: Api) -> None:
    api.sim.inject("slow", delay_s=30)
    with pytest.raises(httpx.TimeoutException):
        api.get("", timeout=0.2)


def test_archives_refuse_authorization_and_are_not_api_calls(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("f"), outcome="build_error")
    api.clock.advance(1000)
    url = api.get(f"/deployments/{dep}/logs", params={"type": "BUILD"}).json()["historic_urls"][0]
    assert api.http.get(url, headers=AUTH).status_code == 400  # two auth mechanisms
    assert api.http.get(url.replace("Signature=", "Signature=0")).status_code == 403
    assert api.http.get(url).status_code == 200
    assert [(r.api, r.authorization) for r in api.sim.requests] == [
        (True, True),
        (False, True),
        (False, False),
        (False, False),
    ]
    assert api.sim.api_requests == 1


def test_faults_can_target_a_path(api: Api) -> None:
    dep = api.sim.add_deployment(sha_of("g"), outcome="build_error")
    api.clock.advance(1000)
    api.sim.inject("5xx", path="/archive/")
    url = api.get(f"/deployments/{dep}/logs", params={"type": "BUILD"}).json()["historic_urls"][0]
    assert api.http.get(url).status_code == 503
    assert [r.fault for r in api.sim.requests] == [None, "5xx"]


def test_every_request_is_recorded_even_when_it_fails(api: Api) -> None:
    api.sim.inject("reset")
    with pytest.raises(httpx.TransportError):
        api.get("/deployments")
    api.get("/deployments", headers={})
    api.get("/nowhere")
    assert api.sim.api_requests == 3
    assert [r.authorization for r in api.sim.requests] == [True, False, True]


def test_stop_is_prompt_even_with_a_request_hanging(clock: FakeClock) -> None:
    sim = SimulatedPlatform(clock=clock, token=TOKEN)
    url = sim.start()
    sim.inject("slow", delay_s=60)
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{url}/v2/apps/{sim.app_id}", headers=AUTH, timeout=0.2)
    sim.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/apps/{sim.app_id}", headers=AUTH, timeout=1.0)


def test_supersede_on_created_replaces_ours_whatever_becomes_of_the_newer(
    clock: FakeClock,
) -> None:
    with SimulatedPlatform(clock=clock, token=TOKEN, supersede_on="created") as sim:
        api = Api(sim, clock)
        old = sim.add_deployment(sha_of("old"), build_s=300)
        new = sim.add_deployment(sha_of("new"), appear_after_s=10, outcome="build_error")
        clock.advance(9)
        assert api.deployment(old)["phase"] == "BUILDING"
        clock.advance(1)
        assert api.deployment(old)["phase"] == "SUPERSEDED"
        clock.advance(1000)
        assert api.deployment(new)["phase"] == "ERROR"
        api.http.close()


def test_the_command_line_exits_64_on_a_usage_error_never_2() -> None:
    from tracker.sim import main

    assert main(["--bogus"]) == 64
