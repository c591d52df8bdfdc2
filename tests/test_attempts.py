"""A commit pushed more than once: each push is an attempt with its own verdict (SPEC §3).

End to end: real git with a bare remote and the installed hook, the real detached confirmer and
monitors, the simulated App Platform over HTTP on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo, tracker_python
from tracker.api import Tracker
from tracker.clock import iso, parse_iso
from tracker.events import DeploymentPolled, DeploymentSucceeded, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.decide import push_to_live
from tracker.push.install import install
from tracker.sim.server import SimulatedPlatform

TOKEN = "sim-token"
FAST = {"pending_build_s": 0.2, "build_s": 0.3, "pending_deploy_s": 0.1, "deploy_s": 0.3}


@pytest.fixture
def sim() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as platform:
        yield platform


@pytest.fixture
def repo(tmp_path: Path, sim: SimulatedPlatform) -> Repo:
    made = make_repo(
        tmp_path,
        DIGITALOCEAN_TOKEN=TOKEN,
        TRACKER_DO_APP_ID=sim.app_id,
        TRACKER_DO_API_URL=sim.base_url,
        TRACKER_POLL_POLICY="fixed",
        TRACKER_POLL_INTERVAL="0.2",
        TRACKER_MAX_WAIT="60",
    )
    install(made.work, python=tracker_python())
    return made


def tracker(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=repo.work, env=repo.env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def status(repo: Repo, sha: str) -> dict[str, object]:
    done = tracker(repo, "status", sha, "--json")
    found: dict[str, object] = json.loads(done.stdout)
    assert done.returncode == found["exit_code"], done.stderr
    return found


def pushed(repo: Repo, sim: SimulatedPlatform, sha: str, *args: str, **script: object) -> str:
    """Push (`git push origin ARGS`), then let the platform start a deployment of `sha`."""
    done = repo.push("origin", *args)
    assert done.returncode == 0, done.stderr
    return sim.add_deployment(sha, **{**FAST, **script})  # type: ignore[arg-type]


def verdict(repo: Repo, sha: str) -> dict[str, object]:
    """Wait (through `tracker wait`) for the newest attempt's verdict."""
    done = tracker(repo, "wait", sha, "--timeout", "60", "--json")
    found: dict[str, object] = json.loads(done.stdout)
    assert found["state"] not in {"pending", "in_progress", "stale"}, found
    return found


def assert_sane_durations(repo: Repo) -> None:
    """No negative or absurd time anywhere: rows, earlier attempts, stats."""
    with SQLiteLog(repo.db) as store:
        every = map(store.deployment, store.shas_with_prefix("", limit=1_000_000))
        for row in filter(None, every):
            if row.push_to_live_s is not None:
                assert row.pushed_at is not None and row.finished_at is not None
                assert 0 <= row.push_to_live_s <= row.finished_at - row.pushed_at + 1e-3
            if row.detection_lag_s is not None:
                assert 0 <= row.detection_lag_s < 60
        assert store.rebuild().clean
    stats = json.loads(tracker(repo, "stats", "--json").stdout)
    to_live = stats["durations"]["push_to_live"]
    assert to_live["count"] == 0 or 0 <= to_live["max"] < 60


def test_a_rollback_by_force_push_is_judged_by_its_new_deployment(
    repo: Repo, sim: SimulatedPlatform
) -> None:
    a = repo.commit("a")
    first = pushed(repo, sim, a, "HEAD:main")
    assert verdict(repo, a)["state"] == "succeeded"
    b = repo.commit("b")
    pushed(repo, sim, b, "HEAD:main")
    assert verdict(repo, b)["state"] == "succeeded"

    done = repo.push("-f", "origin", f"{a}:main")  # the rollback: A's old deployment is live
    assert done.returncode == 0, done.stderr
    now = status(repo, a)
    assert (now["state"], now["attempt"], now["exit_code"]) == ("pending", 2, 2)
    assert now["deployment_id"] is None
    second = sim.add_deployment(a, **{**FAST, "outcome": "build_error"})  # type: ignore[arg-type]
    ended = verdict(repo, a)
    assert (ended["state"], ended["exit_code"], ended["deployment_id"]) == ("failed", 1, second)
    [earlier] = ended["previous_attempts"]  # type: ignore[misc]
    assert earlier["attempt"] == 1 and earlier["state"] == "succeeded"
    assert earlier["deployment_id"] == first and earlier["exit_code"] == 0
    assert parse_iso(earlier["pushed_at"]) < parse_iso(str(ended["pushed_at"]))
    assert_sane_durations(repo)


def test_a_re_push_after_the_branch_was_deleted_is_a_new_attempt(
    repo: Repo, sim: SimulatedPlatform
) -> None:
    subprocess.run(
        ["git", "config", "receive.denyDeleteCurrent", "ignore"], cwd=repo.remote, check=True
    )
    a = repo.commit("a")
    first = pushed(repo, sim, a, "HEAD:main", outcome="build_error")
    assert verdict(repo, a)["state"] == "failed"
    assert repo.push("origin", ":main").returncode == 0  # delete main on the remote
    second = pushed(repo, sim, a, f"{a}:refs/heads/main")  # the same SHA again
    ended = verdict(repo, a)
    assert (ended["state"], ended["exit_code"], ended["deployment_id"]) == (
        "succeeded", 0, second,
    )  # fmt: skip
    assert ended["attempt"] == 2
    assert [(p["state"], p["deployment_id"]) for p in ended["previous_attempts"]] == [  # type: ignore[attr-defined]
        ("failed", first)
    ]
    stats = json.loads(tracker(repo, "stats", "--json").stdout)["deployments"]
    # the initial commit of make_repo was pushed before the hook: A's two attempts only
    assert (stats["total"], stats["succeeded"], stats["failed"]) == (2, 1, 1)
    assert_sane_durations(repo)


def test_the_hook_and_record_push_of_one_push_make_one_attempt(
    repo: Repo, sim: SimulatedPlatform
) -> None:
    a = repo.commit("a")
    pushed(repo, sim, a, "HEAD:main")
    with Tracker.open(repo.work) as api:  # the manager records the push it just made
        st = api.record_push(a, branch="main", remote="origin", monitor=False)
    assert st.already_recorded and st.attempt == 1
    assert verdict(repo, a)["state"] == "succeeded"
    with SQLiteLog(repo.db) as store:
        recorded = [e for e in store.events(stream=a) if e.type == "PushRecorded"]
    assert [e.data["source"] for e in recorded] == ["hook"]


def test_tracker_push_twice_is_one_attempt_and_says_so(repo: Repo, sim: SimulatedPlatform) -> None:
    a = repo.commit("a")
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")  # pushed by other means
    first = tracker(repo, "push", a)
    assert first.returncode == 0, first.stderr
    assert "recorded the push" in first.stdout
    sim.add_deployment(a, **FAST)  # type: ignore[arg-type]
    assert verdict(repo, a)["state"] == "succeeded"
    again = tracker(repo, "push", a)
    assert again.returncode == 0, again.stderr
    assert "already recorded: live since" in again.stdout
    assert "--again" in again.stdout
    st = status(repo, a)
    assert (st["state"], st["attempt"], st["previous_attempts"]) == ("succeeded", 1, [])

    forced = tracker(repo, "push", a, "--again")  # a real second push, made by other means
    assert forced.returncode == 0, forced.stderr
    assert "(attempt 2)" in forced.stdout
    st = status(repo, a)
    assert (st["attempt"], st["exit_code"]) == (2, 2)
    sim.add_deployment(a, **FAST)  # type: ignore[arg-type]
    assert verdict(repo, a)["attempt"] == 2
    assert_sane_durations(repo)


# -- platform times are bounded by what we observed (SPEC §3) ----------------------------------

SHA = "b" * 40
T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("platform_at", "expected"),
    [
        (T0 + 30.0, 30.0),  # the platform's own time: trusted
        (253_402_300_799.0, 40.0),  # 9999-12-31T23:59:59Z: our detection instead
        (T0 - 0.12, 0.0),  # a whole-second time just before our sub-second push: never negative
        (T0 - 86_400.0, 40.0),  # long before the push: not ours to trust
        (None, 40.0),
    ],
)
def test_push_to_live_is_bounded_by_the_push_and_our_detection(
    tmp_path: Path, platform_at: float | None, expected: float
) -> None:
    detected = T0 + 40.0
    assert push_to_live(platform_at, pushed_at=T0, now=detected) == expected
    store = SQLiteLog(tmp_path / "events.db")
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook", pushed_at=iso(T0)))
    stamp = iso(platform_at) if platform_at is not None else None
    store.append(
        SHA,
        DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING",
                         deployment_id="d1", platform_at=stamp),
        at=T0 + 10,
    )  # fmt: skip
    reported = 1e12 if platform_at is not None else None  # a monitor that trusted it blindly
    store.append(
        SHA,
        DeploymentSucceeded("d1", push_to_live_s=reported, detected_at=iso(detected),
                            platform_at=stamp),
        at=detected,
    )  # fmt: skip
    row = store.deployment(SHA)
    assert row is not None and row.push_to_live_s == expected
    assert row.detection_lag_s is None or 0 <= row.detection_lag_s <= 40.0
    phases = json.loads(row.phases or "{}")
    assert all(T0 - 5 <= at <= detected + 5 for at in phases.values())
    assert store.rebuild().clean
