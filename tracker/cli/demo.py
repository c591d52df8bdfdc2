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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.api import Tracker
from tracker.cli.output import say
from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.gitutil import clean_env
from tracker.procs import monitor_alive

if TYPE_CHECKING:
    from tracker.cli.text import Comparison
    from tracker.policies import PollPolicy
    from tracker.read.stats import Stats

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 (the simulated platform's own credential)
# The demo's schedule: the default one (5 s, then 15 s after two minutes) compressed so that four
# deployments finish in seconds. Its comparison with a fixed poll is made with the baseline's
# 10 s compressed alike (by POLL_INITIAL / the default 5 s: a fixed 1 s poll), never with a real
# 10 s poll, which would see a 5 s deployment in one or two calls.
POLL_INITIAL_S, POLL_SWITCH_AFTER_S, POLL_LONG_S, MAX_WAIT_S = 0.5, 4.0, 1.0, 25.0
DEFAULT_POLL_INITIAL_S = 5.0


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


def run_demo(*, keep: bool = False, colour: bool = False, clock: Clock = SYSTEM_CLOCK) -> int:
    """Run the demo; 0 when every commit ended as scripted. `clock` times and paces it (the
    monitors it starts are other processes, on the system's clock)."""
    from tracker.sim.server import SimulatedPlatform

    started = clock.monotonic()
    with _workspace(keep) as root, SimulatedPlatform(token=DEMO_TOKEN) as platform:
        say(f"demo: simulated App Platform API on {platform.base_url}")
        repo, env = _setup(root, platform.base_url, platform.app_id)
        with _settings_of(env):  # this process reads the log, and may start monitors, too
            shas = _push_all(repo, env, platform, clock)
            ok = _report(repo, shas, colour, clock)
        verdict = "all as expected" if ok else "UNEXPECTED RESULTS"
        say(f"demo: finished in {clock.monotonic() - started:.1f} s; {verdict}")
        if keep:
            say(f"demo: kept {root} (log: {repo}/.git/tracker/events.db)")
    return 0 if ok else 1


@contextmanager
def _settings_of(env: dict[str, str]) -> Iterator[None]:
    """The demo's tracker settings in this process's environment while it runs: a reader that
    settles a push starts its monitor with them (and `wait` knows a source is configured)."""
    ours = [*env, *os.environ]  # the user's own TRACKER_DB, tokens ... are put aside too
    names = {n for n in ours if n.startswith(("TRACKER_", "DB_")) or n == "DIGITALOCEAN_TOKEN"}
    saved = {n: os.environ.get(n) for n in names}
    for name in names:
        if name in env:
            os.environ[name] = env[name]
        else:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _workspace(keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tracker-demo-"))
    try:
        yield root
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _setup(root: Path, api_url: str, app_id: str) -> tuple[Path, dict[str, str]]:
    from tracker.push import install as hooks_install

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
        TRACKER_POLL_INITIAL=f"{POLL_INITIAL_S:g}",
        TRACKER_POLL_SWITCH_AFTER=f"{POLL_SWITCH_AFTER_S:g}",
        TRACKER_POLL_LONG=f"{POLL_LONG_S:g}",
        TRACKER_MAX_WAIT=f"{MAX_WAIT_S:g}",
        TRACKER_HTTP_TIMEOUT="5",
    )
    _git(root, env, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(root, env, "clone", "-q", str(remote), str(repo))
    _git(repo, env, "checkout", "-q", "-b", "main")
    for line in hooks_install.install(repo, python=sys.executable):
        say(f"demo: {line}")
    return repo, env


def _push_all(
    repo: Path, env: dict[str, str], platform: object, clock: Clock
) -> list[tuple[Scenario, str]]:
    from tracker.sim.server import SimulatedPlatform

    assert isinstance(platform, SimulatedPlatform)
    done: list[tuple[Scenario, str]] = []
    for number, scenario in enumerate(SCENARIOS):
        (repo / "page.txt").write_text(f"{scenario.message}\n", encoding="utf-8")
        _git(repo, env, "add", "page.txt")
        _git(repo, env, "commit", "-q", "-m", scenario.message)
        sha = _git(repo, env, "rev-parse", "HEAD")
        began = clock.monotonic()
        _git(repo, env, "push", "-q", "origin", "main")
        took = (clock.monotonic() - began) * 1000
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
            clock.sleep(1.0)
    return done


def _report(repo: Path, shas: list[tuple[Scenario, str]], colour: bool, clock: Clock) -> bool:
    from tracker.cli.text import stats_text, status_text

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
        _wait_for_monitors(tracker, [sha for _, sha in shas], clock)
        say()
        say("$ tracker stats")
        found = tracker.stats()
        say(
            stats_text(
                found,
                colour=colour,
                comparison=demo_comparison(tracker, [s for _, s in shas], found),
            )
        )
    return ok


def demo_comparison(tracker: Tracker, shas: list[str], found: Stats) -> Comparison:
    """The demo's calls against the baseline compressed like its schedule: a fixed poll of
    10 s × POLL_INITIAL / 5 s, on the same finished deployments, over the same spans that
    `tracker stats` compares (`projections.compared_span`).

    Detection lag: ours as measured; the baseline's is what ours would have been on its
    schedule (our measured lag, plus how much later its first poll after the platform's end
    came than ours), so that both carry the same latency and timestamp rounding."""
    from tracker.cli.text import Comparison
    from tracker.policies import BASELINE, FixedPolicy, SteppedPolicy, polls_to_detect
    from tracker.projections import compared_span

    ours_policy = SteppedPolicy(POLL_INITIAL_S, POLL_SWITCH_AFTER_S, POLL_LONG_S)
    baseline = FixedPolicy(BASELINE.interval * POLL_INITIAL_S / DEFAULT_POLL_INITIAL_S)
    deployments = fixed = ours = 0
    lags: list[tuple[float, float]] = []
    for sha in shas:
        row = tracker.store.deployment(sha)
        span = None if row is None else compared_span(row)
        if row is None or span is None:
            continue
        deployments += 1
        fixed += polls_to_detect(baseline, span, MAX_WAIT_S)
        ours += row.api_calls
        if row.detection_lag_s is not None:
            later = _seen_at(baseline, span) - _seen_at(ours_policy, span)
            lags.append((row.detection_lag_s, max(row.detection_lag_s + later, 0.0)))
    note = f" (the demo's time scale: {BASELINE.interval:g} s × {POLL_INITIAL_S:g}/5)"
    mean = (lambda i: sum(p[i] for p in lags) / len(lags)) if lags else None
    return Comparison(
        baseline.interval, deployments, fixed, ours,
        our_lag_s=mean(0) if mean else found.detection_lag_s.mean,
        note=note, fixed_lag_s=mean(1) if mean else None,
    )  # fmt: skip


def _seen_at(policy: PollPolicy, span: float) -> float:
    """The offset of the first poll of `policy` at or after `span` (its last one, if none)."""
    offsets = policy.schedule(MAX_WAIT_S)
    return next((o for o in offsets if o >= span - 1e-9), offsets[-1])


def _wait_for_monitors(
    tracker: Tracker, shas: list[str], clock: Clock, timeout: float = 10.0
) -> None:
    """Let every monitor finish, so that nothing outlives the demo's temporary directory."""
    deadline = clock.monotonic() + timeout
    for sha in shas:
        row = tracker.store.deployment(sha)
        while row and monitor_alive(row.monitor_pid, row.monitor_host):
            if clock.monotonic() > deadline and row.monitor_pid:
                os.kill(row.monitor_pid, 15)
                break
            clock.sleep(0.1)


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
