"""The Python API (`tracker.Tracker`, the facade in `tracker/api.py`): open a repository's log,
record a push, read its status and events, wait for the verdict, and sum it up in stats.

A real repository with a bare remote, the real log on disk, and for the whole journey a real
detached monitor polling the simulated platform over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo
from tests.support.simulated import SIM_TOKEN
from tracker import DeploymentStatus, EventRecord, Tracker, UsageError
from tracker.sim import SimulatedPlatform


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository with a bare remote, and no hook: only the API records here."""
    return make_repo(tmp_path)


@pytest.fixture
def tracker(repo: Repo) -> Iterator[Tracker]:
    with Tracker.open(repo.work) as opened:
        yield opened


def pushed(repo: Repo, message: str = "change") -> str:
    sha = repo.commit(message)
    repo.git("push", "-q", "origin", "HEAD:main")
    return sha


def test_open_finds_the_log_in_the_git_common_dir(repo: Repo) -> None:
    with Tracker.open(repo.work) as tracker:
        assert tracker.db_path == repo.common / "tracker" / "events.db"
        assert tracker.repo == repo.work.resolve()


def test_open_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        Tracker.open(tmp_path)


def test_a_commit_never_pushed_is_not_found(tracker: Tracker, repo: Repo) -> None:
    status = tracker.status(repo.commit("only local"))
    assert isinstance(status, DeploymentStatus)
    assert status.state == "not_found" and status.exit_code == 3 and not status.terminal
    assert tracker.events() == []


def test_record_push_then_status_and_events(tracker: Tracker, repo: Repo) -> None:
    sha = pushed(repo)
    recorded = tracker.record_push(sha, monitor=False)
    assert recorded.sha == sha and recorded.short_sha == sha[:7]
    assert recorded.state == "pending" and recorded.exit_code == 2
    assert recorded.branch == "main" and recorded.attempt == 1
    assert not recorded.already_recorded
    assert tracker.status("HEAD") == tracker.status(sha) == tracker.status(sha[:8])
    [event] = tracker.events(sha)
    assert isinstance(event, EventRecord)
    assert event.type == "PushRecorded" and event.stream == sha and event.seq == 1
    assert event.data["sha"] == sha and event.data["source"] == "api"
    assert event.data["pushed_by"] == "pusher@example.com"
    assert event.to_dict()["data"] == event.data


def test_recording_the_same_push_twice_is_one_event(tracker: Tracker, repo: Repo) -> None:
    sha = pushed(repo)
    tracker.record_push(sha, monitor=False)
    again = tracker.record_push(sha, monitor=False)
    assert again.already_recorded and again.attempt == 1
    assert [e.type for e in tracker.events(sha)] == ["PushRecorded"]


def test_a_push_made_again_is_a_new_attempt(tracker: Tracker, repo: Repo) -> None:
    sha = pushed(repo)
    tracker.record_push(sha, monitor=False)
    tracker.ingest({"sha": sha, "status": "success", "deployment_id": "d-1"})
    again = tracker.record_push(sha, monitor=False, again=True)
    assert again.attempt == 2 and again.state == "pending"
    assert [a.state for a in again.previous_attempts] == ["succeeded"]


def test_ingested_verdicts_show_in_status_events_and_stats(tracker: Tracker, repo: Repo) -> None:
    live, broken = pushed(repo, "live"), pushed(repo, "broken")
    for sha in (live, broken):
        tracker.record_push(sha, monitor=False)
    ok = tracker.ingest({"sha": live, "phase": "ACTIVE", "deployment_id": "d-live"})
    assert ok.state == "succeeded" and ok.exit_code == 0 and ok.terminal
    bad = tracker.ingest({"sha": broken, "status": "failed", "log_tail": ["boom"]})
    assert bad.state == "failed" and bad.exit_code == 1 and bad.log_tail == ["boom"]
    assert [e.type for e in tracker.events(live)] == [
        "PushRecorded",
        "NotificationIngested",
        "DeploymentSucceeded",
    ]
    assert [e.stream for e in tracker.events(newest=True, limit=1)] == [broken]
    last = tracker.events()[-1].seq
    assert tracker.events(after_seq=last) == []
    stats = tracker.stats()
    counts = stats.deployments
    assert (counts.total, counts.succeeded, counts.failed, counts.finished) == (2, 1, 1, 2)
    assert counts.success_rate == 0.5
    assert stats.to_dict()["deployments"]["total"] == 2
    assert tracker.stats(branch="other").deployments.total == 0


def test_ingest_for_a_commit_never_pushed_is_a_usage_error(tracker: Tracker, repo: Repo) -> None:
    with pytest.raises(UsageError):
        tracker.ingest({"sha": repo.commit("local"), "status": "success"})


def test_an_ambiguous_or_bad_ref_is_a_usage_error(tracker: Tracker) -> None:
    for ref in ("no-such-branch", "--upload-pack=touch pwned", "$(touch pwned)"):
        with pytest.raises(UsageError):
            tracker.status(ref)


def test_the_whole_journey_with_a_real_monitor(
    tracker: Tracker, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record_push starts a detached monitor; wait returns its verdict; stats count it."""
    with SimulatedPlatform(token=SIM_TOKEN) as platform:
        for name, value in {
            "DIGITALOCEAN_TOKEN": SIM_TOKEN,
            "TRACKER_DO_APP_ID": platform.app_id,
            "TRACKER_DO_API_URL": platform.base_url,
            "TRACKER_POLL_POLICY": "fixed",
            "TRACKER_POLL_INTERVAL": "0.2",
            "TRACKER_MAX_WAIT": "120",
        }.items():
            monkeypatch.setenv(name, value)  # the monitor this process starts inherits them
        sha = pushed(repo)
        platform.add_deployment(sha, pending_build_s=0.1, build_s=0.5, deploy_s=0.5)
        with Tracker.open(repo.work) as watching:
            started = watching.record_push(sha)
            assert started.state in ("pending", "building", "deploying", "succeeded")
            seen: list[str] = []
            final = watching.wait(sha, timeout=120, on_change=lambda s: seen.append(s.state))
        assert final.state == "succeeded" and final.exit_code == 0, final
        assert final.deployment_id is not None and final.api_calls > 0
        assert seen[-1] == "succeeded"
        types = [e.type for e in tracker.events(sha)]
        assert types[:2] == ["PushRecorded", "MonitorStarted"] and types[-1] in (
            "DeploymentSucceeded",
            "MonitorStopped",
        )
        assert "DeploymentSucceeded" in types
        assert tracker.stats().deployments.succeeded == 1
