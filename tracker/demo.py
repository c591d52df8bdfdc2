"""`tracker demo`: the whole job, for real, on a fresh machine with no credentials.

A temporary repository with a bare remote and the hook installed; a simulated App Platform API
served by this process on a loopback port; a few pushes (one goes live, one fails in its build,
two in quick succession where the second supersedes the first); the detached monitors polling
the simulated API; then `status` of each commit and `stats`. Nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracker.api import Tracker, monitor_alive
from tracker.gitutil import clean_env
from tracker.output import say

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 (the simulated platform's own credential)


@dataclass(frozen=True)
class Scenario:
    message: str
    outcome: str  # the simulated platform's script for it
    expect: str  # the state we should end in


SCENARIOS = (
    Scenario("Add the landing page", "active", "succeeded"),
    Scenario("Upgrade the build toolchain", "build_error", "failed"),
    Scenario("Tweak the header", "active", "superseded"),
    Scenario("Fix the footer", "active", "succeeded"),
)


def run_demo(*, keep: bool = False, colour: bool = False) -> int:
    """Run the demo; 0 when every commit ended as scripted."""
    from tracker.sim import SimulatedPlatform

    started = time.monotonic()
    with _workspace(keep) as root, SimulatedPlatform(token=DEMO_TOKEN) as platform:
        say(f"demo: simulated App Platform API on {platform.base_url}")
        repo, env = _setup(root, platform.base_url, platform.app_id)
        shas = _push_all(repo, env, platform)
        ok = _report(repo, shas, colour)
        verdict = "all as expected" if ok else "UNEXPECTED RESULTS"
        say(f"demo: finished in {time.monotonic() - started:.1f} s; {verdict}")
        if keep:
            say(f"demo: kept {root} (log: {repo}/.git/tracker/events.db)")
    return 0 if ok else 1


@contextmanager
def _workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tracker-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _setup(root: Path, api_url: str, app_id: str) -> tuple[Path, dict[str, str]]:
    from tracker import hooks_install

    remote, repo = root / "remote.git", root / "work"
    env = clean_env()
    for name in list(env):
        if name.startswith(("TRACKER_", "DB_")) or name == "DIGITALOCEAN_TOKEN":
            del env[name]
    env.update(
        GIT_AUTHOR_NAME="Demo Agent",
        GIT_AUTHOR_EMAIL="agent@example.com",
        GIT_COMMITTER_NAME="Demo Agent",
        GIT_COMMITTER_EMAIL="agent@example.com",
        DIGITALOCEAN_TOKEN=DEMO_TOKEN,
        TRACKER_DO_APP_ID=app_id,
        TRACKER_DO_API_URL=api_url,
        TRACKER_POLL_POLICY="stepped",
        TRACKER_POLL_INITIAL="0.5",
        TRACKER_POLL_SWITCH_AFTER="4",
        TRACKER_POLL_LONG="1",
        TRACKER_MAX_WAIT="25",
        TRACKER_HTTP_TIMEOUT="5",
    )
    _git(root, env, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(root, env, "clone", "-q", str(remote), str(repo))
    _git(repo, env, "checkout", "-q", "-b", "main")
    for line in hooks_install.install(repo, python=sys.executable):
        say(f"demo: {line}")
    return repo, env


def _push_all(repo: Path, env: dict[str, str], platform: object) -> list[tuple[Scenario, str]]:
    from tracker.sim import SimulatedPlatform

    assert isinstance(platform, SimulatedPlatform)
    done: list[tuple[Scenario, str]] = []
    for number, scenario in enumerate(SCENARIOS):
        (repo / "page.txt").write_text(f"{scenario.message}\n", encoding="utf-8")
        _git(repo, env, "add", "page.txt")
        _git(repo, env, "commit", "-q", "-m", scenario.message)
        sha = _git(repo, env, "rev-parse", "HEAD")
        began = time.monotonic()
        _git(repo, env, "push", "-q", "origin", "main")
        took = (time.monotonic() - began) * 1000
        say(f"demo: pushed {sha[:7]} {scenario.message!r} (git push returned in {took:.0f} ms)")
        platform.add_deployment(
            sha,
            appear_after_s=0.5,
            pending_build_s=0.5,
            build_s=2.0,
            pending_deploy_s=0.5,
            deploy_s=2.0 if number != 2 else 6.0,
            outcome=scenario.outcome,  # type: ignore[arg-type]
        )
        done.append((scenario, sha))
        if number < 2:
            time.sleep(1.0)
    return done


def _report(repo: Path, shas: list[tuple[Scenario, str]], colour: bool) -> bool:
    from tracker.render import status_text
    from tracker.stats import stats_text

    ok = True
    with Tracker.open(repo) as tracker:
        say("demo: waiting for the deployments (tracker wait, at most 30 s each)")
        for _, sha in shas:
            tracker.wait(sha, timeout=30, resume=True)
        for scenario, sha in shas:
            st = tracker.status(sha)
            say()
            say(f"$ tracker status {sha[:7]}    # exit {st.exit_code}")
            say(status_text(st, colour=colour))
            if st.state != scenario.expect:
                ok = False
                say(f"demo: expected {scenario.expect}, got {st.state}")
        _wait_for_monitors(tracker, [sha for _, sha in shas])
        say()
        say("$ tracker stats")
        say(stats_text(tracker.stats(), colour=colour))
    return ok


def _wait_for_monitors(tracker: Tracker, shas: list[str], timeout: float = 10.0) -> None:
    """Let every monitor finish, so that nothing outlives the demo's temporary directory."""
    deadline = time.monotonic() + timeout
    for sha in shas:
        row = tracker.store.deployment(sha)
        while row and monitor_alive(row.monitor_pid, row.monitor_host):
            if time.monotonic() > deadline and row.monitor_pid:
                os.kill(row.monitor_pid, 15)
                break
            time.sleep(0.1)


def _git(cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()
