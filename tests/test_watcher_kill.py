"""The watcher for real: clones sharing one log (`TRACKER_DB`) share one watcher, started by the
hook's confirmer; SIGKILL of it mid-tick (a request held open), and a reader (`tracker wait`)
resumes it with no verdict lost or doubled. Real git with a bare remote, the real hook,
detached processes, the simulated platform over HTTP in real time (phases of a few seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gitrepo import git, wait_until
from tests.test_push_races import VERDICTS, clones, event_types, monitors_alive, sim  # noqa: F401
from tracker.log.sqlite import SQLiteLog
from tracker.procs import process_alive
from tracker.sim.server import SimulatedPlatform

pytestmark = pytest.mark.slow

SLOW = {"pending_build_s": 0.5, "build_s": 6.0, "pending_deploy_s": 0.5, "deploy_s": 3.0}
SETTLE_S = 240.0


def started_by(db: Path, sha: str) -> list[int]:
    with SQLiteLog(db) as store:
        return [int(e.data["pid"]) for e in store.events(stream=sha) if e.type == "MonitorStarted"]


def watch_holder(db: Path) -> int | None:
    found = list(db.parent.glob("watch-digitalocean-*.json"))
    if not found:
        return None
    try:
        return int(json.loads(found[0].read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def test_clones_share_one_watcher_and_a_reader_resumes_it_after_sigkill(
    tmp_path: Path,
    sim: SimulatedPlatform,  # noqa: F811
) -> None:
    made = clones(tmp_path, sim, 3)
    db = made[0].db
    shas: list[str] = []
    for n, clone in enumerate(made):
        git(clone.work, "pull", "-q", "--rebase", "origin", "main", env=clone.env, check=False)
        shas.append(clone.commit(f"clone {n}"))
        assert clone.push("origin", "HEAD:main").returncode == 0
        sim.add_deployment(shas[-1], **SLOW)
    # one watcher follows the three pushes of the three clones
    wait_until(lambda: all(started_by(db, sha) for sha in shas), timeout=SETTLE_S)
    pids = {pid for sha in shas for pid in started_by(db, sha)}
    assert len(pids) == 1, pids
    [watcher] = pids
    assert watch_holder(db) == watcher
    sim.inject("slow", times=1, delay_s=30)  # its next tick hangs: killed mid-tick
    wait_until(lambda: any(r.fault == "slow" for r in sim.requests), timeout=60)
    os.kill(watcher, signal.SIGKILL)
    wait_until(lambda: not process_alive(watcher), timeout=30)
    # a reader finds its commit's watcher dead and resumes it; the verdicts all come
    reader = subprocess.run(
        [sys.executable, "-m", "tracker", "wait", shas[-1], "--timeout", "120"],
        cwd=made[-1].work, env=made[-1].env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert reader.returncode == 0, (reader.stdout, reader.stderr)
    wait_until(
        lambda: (
            all(VERDICTS & set(event_types(db, sha)) for sha in shas) and not monitors_alive(db)
        ),
        timeout=SETTLE_S,
    )
    for sha in shas:
        types = event_types(db, sha)
        assert len([t for t in types if t in VERDICTS]) == 1, (sha, types)  # not lost, not doubled
        assert "MonitorTimedOut" not in types, (sha, types)
    resumed = {pid for sha in shas for pid in started_by(db, sha)} - {watcher}
    assert len(resumed) == 1, resumed  # one watcher again, for all of them
    with SQLiteLog(db) as store:
        assert store.rebuild().clean
        calls = sum(int(e.data.get("api_calls", 0)) for e in store.events())
    assert calls == sim.api_requests - 1  # all but the request the killed watcher waited on


def test_tracker_monitor_follows_its_commit_through_the_running_watcher(
    tmp_path: Path,
    sim: SimulatedPlatform,  # noqa: F811
) -> None:
    """`tracker monitor REF` while another process is the app's watcher: it shows the commit's
    progress from the log and exits with its verdict; no second watcher polls."""
    [repo] = clones(tmp_path, sim, 1)
    db = repo.db
    first = repo.commit("first")
    assert repo.push("origin", "HEAD:main").returncode == 0
    sim.add_deployment(first, **SLOW)
    wait_until(lambda: started_by(db, first), timeout=SETTLE_S)
    [watcher] = started_by(db, first)
    second = repo.commit("second")
    subprocess.run(  # recorded by hand, so that no confirmer starts anything for it
        [sys.executable, "-m", "tracker", "push", second, "--no-monitor"],
        cwd=repo.work, env=repo.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    sim.add_deployment(second, **SLOW)
    shown = subprocess.run(
        [sys.executable, "-m", "tracker", "monitor", second],
        cwd=repo.work, env=repo.env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shown.returncode == 0, (shown.stdout, shown.stderr)
    assert "DeploymentSucceeded" in shown.stdout or "succeeded" in shown.stdout, shown.stdout
    assert started_by(db, second) == [watcher]  # the running watcher took it up, nobody else
    wait_until(lambda: not monitors_alive(db), timeout=SETTLE_S)
    with SQLiteLog(db) as store:
        calls = sum(int(e.data.get("api_calls", 0)) for e in store.events())
    assert calls == sim.api_requests
