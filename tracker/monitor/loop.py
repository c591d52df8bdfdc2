"""The monitor: poll the sources for one commit on an economical schedule until a verdict.

The decisions are pure functions (`judge`, `polled`); `Monitor.run` is the loop around them that
does the I/O: it polls, appends every poll as an event, sleeps by the policy (or as a rate limit
or a fault says), fetches the failure logs, and records the outcome exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from tracker import gitutil
from tracker.clock import MAX_CLOCK_SKEW_S, SYSTEM_CLOCK, Clock, iso
from tracker.errors import ConfigError, SourceUnavailableError, TrackerError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    LogsFetched,
    MonitorNotStarted,
    MonitorStarted,
    MonitorStopped,
    MonitorTimedOut,
    SourcesDisagreed,
)
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.sources.base import TERMINAL_PHASES, DeploymentSource, Observation, outcome_of
from tracker.output import say
from tracker.policies import (
    InformedPolicy,
    PollPolicy,
    budget_wait,
    policy_from_settings,
    retry_delay,
)
from tracker.projections import DeploymentRow
from tracker.schedule import History, Seen, default_max_wait
from tracker.words import seconds

if TYPE_CHECKING:
    from tracker.api import Tracker
    from tracker.config import Settings

CHECK_EVERY_S = 1.0  # while waiting, look at the log this often (an ingested verdict stops us)
LOG_LINES = 20


# -- pure decisions -----------------------------------------------------------------------------


def polled(obs: Observation, *, retry: bool, attempt: int | None = None) -> DeploymentPolled:
    """The event one poll makes (for the commit's push `attempt`)."""
    return DeploymentPolled(
        source=obs.source,
        ok=obs.ok,
        found=obs.found,
        phase=obs.phase,
        status=obs.status,
        deployment_id=obs.deployment_id,
        http_status=obs.http_status,
        latency_ms=round(obs.latency_ms, 3),
        ratelimit_remaining=obs.ratelimit_remaining,
        error=obs.error,
        error_kind=obs.error_kind,
        api_calls=obs.api_calls,
        db_queries=obs.db_queries,
        retry=retry,
        steps_done=obs.steps_done,
        steps_total=obs.steps_total,
        platform_at=iso(obs.platform_at) if obs.platform_at is not None else None,
        attempt=attempt,
    )


@dataclass(frozen=True)
class Judgement:
    """What a round of polls means: a terminal event (or None), and a disagreement to note."""

    outcome: Event | None
    disagreement: SourcesDisagreed | None = None
    needs_logs: str | None = None  # the deployment id whose logs to fetch
    following: str | None = None  # superseded, waiting for the successor's own verdict


def judge(
    observations: Sequence[Observation],
    *,
    now: float,
    pushed_at: float | None,
    contains: bool | None = None,
) -> Judgement:
    """Decide from one round of observations. `contains`: our commit is in the successor's."""
    api = _pick(observations, "digitalocean")
    db = _pick(observations, "mysql")
    api_out = outcome_of(api.phase) if api else None
    db_out = outcome_of(db.phase) if db else None
    disagreement = None
    if db is not None and db_out is not None and api is not None and api_out != db_out:
        disagreement = SourcesDisagreed(
            mysql_status=db.status,
            api_phase=api.phase,
            detail=f"the database says {db.status}, the API says {api.phase}",
        )
    chosen = api if api_out is not None else db if db_out is not None else None
    if chosen is None:
        return Judgement(None, disagreement)
    return _outcome(chosen, now=now, pushed_at=pushed_at, contains=contains, note=disagreement)


def _pick(observations: Sequence[Observation], source: str) -> Observation | None:
    for obs in observations:
        if obs.source == source and obs.ok and obs.found:
            return obs
    return None


def _outcome(
    obs: Observation,
    *,
    now: float,
    pushed_at: float | None,
    contains: bool | None,
    note: SourcesDisagreed | None,
) -> Judgement:
    detected = iso(now)
    platform = iso(obs.platform_at) if obs.platform_at is not None else None
    kind = outcome_of(obs.phase)
    if kind == "succeeded":
        to_live = push_to_live(obs.platform_at, pushed_at=pushed_at, now=now)
        event: Event = DeploymentSucceeded(
            obs.deployment_id,
            "ACTIVE",
            push_to_live_s=to_live,
            detected_at=detected,
            platform_at=platform,
            source=obs.source,
        )
        return Judgement(event, note)
    if kind in {"failed", "canceled"}:
        event = DeploymentFailed(
            obs.deployment_id,
            obs.phase or "ERROR",
            reason={
                "code": obs.reason_code or "",
                "message": obs.reason_message or obs.status or "",
            },
            failed_step=obs.failed_step,
            detected_at=detected,
            platform_at=platform,
            source=obs.source,
        )
        logs = obs.deployment_id if obs.source == "digitalocean" and obs.deployment_id else None
        return Judgement(event, note, needs_logs=logs)
    # superseded: resolved through the successor, once the successor has a verdict of its own
    if obs.successor_phase is not None and obs.successor_phase not in TERMINAL_PHASES:
        return Judgement(None, note, following=obs.successor_id)
    went_live = obs.successor_phase == "ACTIVE" and contains is True
    event = DeploymentSuperseded(
        obs.successor_sha,
        obs.successor_id,
        went_live=went_live,
        successor_phase=obs.successor_phase,
        detected_at=detected,
        platform_at=platform,
        source=obs.source,
    )
    return Judgement(event, note)


def push_to_live(platform_at: float | None, *, pushed_at: float | None, now: float) -> float | None:
    """Seconds from the push to live: the platform's time of it when that lies between the push
    and now give or take the clock skew, else now; never negative, never past now (SPEC §3)."""
    if pushed_at is None:
        return None
    live_at = now
    if platform_at is not None and pushed_at - MAX_CLOCK_SKEW_S <= platform_at:
        live_at = min(platform_at, now) if platform_at <= now + MAX_CLOCK_SKEW_S else now
    return round(min(max(live_at - pushed_at, 0.0), max(now - pushed_at, 0.0)), 3)


_REFUSED = {
    "digitalocean": ("DigitalOcean refused the token", "fix DIGITALOCEAN_TOKEN"),
    "mysql": ("the database refused the login", "fix TRACKER_MYSQL_URL (or DB_USER and DB_PASS)"),
}


def refusal(refused: Sequence[Observation]) -> tuple[str, str]:
    """Why the sources refused us and what to fix, in words (`MonitorStopped`)."""
    reasons, fixes = [], []
    for obs in refused:
        reason, fix = _REFUSED.get(obs.source, (f"{obs.source} refused our credentials", ""))
        code = f"HTTP {obs.http_status}" if obs.http_status else obs.error_kind
        reasons.append(f"{reason} ({code})")
        fixes.append(fix)
    return " and ".join(reasons), " and ".join(f for f in fixes if f)


def seen_of(observations: Sequence[Observation], at: float) -> Seen:
    """What the schedule needs of one round: the API's answer when it found the deployment
    (it has the phase and the platform's time of it), else the database's."""
    found = [o for o in observations if o.ok and o.found]
    best = next((o for o in found if o.phase and outcome_of(o.phase) is None), None)
    best = best or (found[0] if found else None)
    if best is None:
        return Seen(at)
    phase = best.phase if outcome_of(best.phase) is None else None
    return Seen(at, True, phase, best.platform_at if phase else None)


def max_wait_for(settings: Settings, history: History) -> float:
    """`TRACKER_MAX_WAIT`, or when it is not set, max(480 s, 3 × the app's p95 from push to
    verdict) from the log (SPEC §6): an app whose deployments take 25 minutes is not timed out
    at 8."""
    if settings.origins.get("max_wait") != "default":
        return settings.max_wait  # set by a flag, the environment or a file (or in code)
    return default_max_wait(history, settings.max_wait)


def _db_says_going(obs: Observation) -> bool:
    return obs.source == "mysql" and obs.ok and obs.found and outcome_of(obs.phase) is None


def next_delay(
    observations: Sequence[Observation],
    *,
    policy: PollPolicy,
    elapsed: float,
    polls: int,
    failures: int,
    now: float,
    rand: float,
    interval: float | None = None,
) -> float:
    """Seconds until the next round: the policy's (`interval` when the caller asked the
    policy already, as for `informed`), unless a fault or a rate limit says longer (or a
    transient fault says retry sooner)."""
    if interval is None:
        interval = policy.delay_after(elapsed, polls)
    troubled = [o for o in observations if not o.ok or o.ratelimit_remaining == 0]
    if not troubled:
        return interval
    return max(retry_delay(o, now, max(failures - 1, 0), interval, rand) for o in troubled)


# -- the loop -----------------------------------------------------------------------------------


class Monitor:
    """Follows one commit until a verdict or `max_wait`; appends everything it learns."""

    def __init__(
        self,
        store: SQLiteLog,
        sha: str,
        sources: Sequence[DeploymentSource],
        *,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        rand: Callable[[], float] = random.random,
        repo: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.sha, self.sources = store, sha, list(sources)
        self.settings, self.clock, self.rand, self.repo = settings, clock, rand, repo
        self.policy = policy_from_settings(settings)
        self.progress = progress or (lambda _line: None)
        self._ancestry: dict[str, bool | None] = {}
        self._deadline = float("inf")
        self._last_shown: str | None = None
        self.attempt: int | None = None  # the push of the commit being followed
        self._max_wait: float | None = None
        self._seen: list[Seen] = []

    @property
    def max_wait(self) -> float:
        """How long this commit is followed; reads the app's history from the log once (the
        `informed` schedule's beliefs, and the default of `TRACKER_MAX_WAIT`)."""
        if self._max_wait is None:
            from tracker.read.stats import recent_history

            history = recent_history(self.store, branch=self.settings.branch)
            if isinstance(self.policy, InformedPolicy):
                self.policy = self.policy.with_history(history)
            self._max_wait = max_wait_for(self.settings, history)
        return self._max_wait

    def run(self) -> str:
        """Poll until a verdict; the final state of the commit."""
        max_wait = self.max_wait
        started = self.clock.now()
        self._deadline = started + max_wait
        polls = failures = 0
        while True:
            row = self.store.deployment(self.sha)
            if row is not None and row.attempt != self.attempt:
                self._follow(row)  # the first round, or the commit was pushed again meanwhile
            if row is None or row.terminal:
                return row.state if row else "not_found"
            observations = self._round(retry=failures > 0)
            self._seen.append(seen_of(observations, self.clock.now()))
            polls += 1
            failures = failures + 1 if any(not o.ok for o in observations) else 0
            self._raise_if_refused(observations)
            finished = self._conclude(observations, row.pushed_at)
            if finished is not None:
                return finished
            now = self.clock.now()
            elapsed = now - started
            if elapsed >= max_wait:
                return self._time_out(elapsed, observations)
            interval = None
            if isinstance(self.policy, InformedPolicy):
                pushed = started if row.pushed_at is None else min(row.pushed_at, started)
                interval = self.policy.next_poll_at(self._seen, now, pushed_at=pushed) - now
            delay = next_delay(
                observations,
                policy=self.policy,
                elapsed=elapsed,
                polls=polls,
                failures=failures,
                now=now,
                rand=self.rand(),
                interval=interval,
            )
            if not self._sleep(min(delay, max_wait - elapsed)):
                return self._state()

    def _follow(self, row: DeploymentRow) -> None:
        """Follow the row's attempt: say so in the log, and tell the sources which deployments
        cannot be its own (older ones; those that judged its earlier attempts)."""
        self.attempt = row.attempt
        self._seen = []  # a new push: what earlier polls saw was another deployment
        if not row.terminal:
            self.store.append(self.sha, self._started_event(), at=self.clock.now())
        if row.pushed_at is None:
            return
        judged = [p["deployment_id"] for p in row.earlier() if p.get("deployment_id")]
        for source in self.sources:
            expect = getattr(source, "expect", None)
            if expect is not None:
                expect(self.sha, row.pushed_at, exclude=judged, again=row.attempt > 1)

    def _state(self) -> str:
        """The commit's state in the log now."""
        row = self.store.deployment(self.sha)
        return row.state if row else "not_found"

    def _started_event(self) -> MonitorStarted:
        return MonitorStarted(
            pid=os.getpid(),
            host=socket.gethostname(),
            policy=self.policy.name,
            sources=[s.name for s in self.sources],
            max_wait_s=self.max_wait,
            attempt=self.attempt,
        )

    def _round(self, *, retry: bool) -> list[Observation]:
        """One poll of each source, the cheap database first. While the database says the
        deployment is going, the API is not asked; it is asked for the phase and the logs once
        the database has a verdict, and whenever the database cannot answer."""
        observations: list[Observation] = []
        for source in self.sources:
            if observations and self.clock.now() >= self._deadline:
                break  # max_wait passed during this round: ask no further source
            if source.name != "mysql" and any(_db_says_going(o) for o in observations):
                continue
            if source.name == "digitalocean":
                self._hold_for_budget()
            observations.append(self._poll(source, retry=retry))
        return observations

    def _hold_for_budget(self) -> None:
        """Wait while the whole machine is near the API's rate limit (every monitor shares the
        token's budget; each honouring only its own 429s starved the unlucky ones)."""
        waited = 0.0
        while self.clock.now() < self._deadline:
            now = self.clock.now()
            pause = budget_wait(*self.store.api_calls_by_window(now), self.rand())
            if pause <= 0:
                break
            pause = min(pause, self._deadline - now)
            self.clock.sleep(pause)
            waited += pause
        if waited:
            self.progress(f"held {waited:.1f} s for the API's rate limit (shared by this machine)")

    def _poll(self, source: DeploymentSource, *, retry: bool) -> Observation:
        try:
            obs = source.poll(self.sha)
        except Exception as exc:  # a source must not raise; if one does, it is a failed poll
            error = f"the {source.name} answer broke the source ({type(exc).__name__})"
            obs = Observation(source.name, ok=False, error=error, error_kind="malformed")
        event = polled(obs, retry=retry, attempt=self.attempt)
        self.store.append(self.sha, event, at=self.clock.now())
        self._show(obs)
        return obs

    def _show(self, obs: Observation) -> None:
        if not obs.ok:
            self.progress(f"{obs.source}: {obs.error_kind}: {obs.error}")
            return
        what = (obs.phase or obs.status or "in progress") if obs.found else "not found yet"
        steps = f" ({obs.steps_done}/{obs.steps_total} steps)" if obs.steps_total else ""
        line = f"{obs.source}: {what}{steps}"
        if line != self._last_shown:
            self._last_shown = line
            self.progress(line)

    def _raise_if_refused(self, observations: Sequence[Observation]) -> None:
        refused = [o for o in observations if o.error_kind == "auth"]
        if refused and len(refused) == len(observations):
            names = ", ".join(o.source for o in refused)
            reason, fix = refusal(refused)
            self.store.append(self.sha, MonitorStopped(os.getpid(), reason, fix=fix))
            raise SourceUnavailableError(
                f"{names} refused our credentials ({refused[0].error}); run `tracker doctor`"
            )

    def _conclude(self, observations: Sequence[Observation], pushed_at: float | None) -> str | None:
        contains = self._contains(observations)
        verdict = judge(observations, now=self.clock.now(), pushed_at=pushed_at, contains=contains)
        if verdict.disagreement is not None:
            self.store.append(self.sha, verdict.disagreement, key=f"disagree:{self.sha}")
        if verdict.outcome is None:
            return None
        outcome = dataclasses.replace(verdict.outcome, attempt=self.attempt)  # type: ignore[call-arg]
        if verdict.needs_logs and isinstance(outcome, DeploymentFailed):
            outcome = self._with_logs(outcome, verdict.needs_logs)
        self.store.append(self.sha, outcome, at=self.clock.now())
        state = self._state()
        self.progress(f"verdict: {state}")
        return state

    def _contains(self, observations: Sequence[Observation]) -> bool | None:
        for obs in observations:
            if obs.successor_sha and obs.successor_sha not in self._ancestry:
                self._ancestry[obs.successor_sha] = self._is_ancestor(obs.successor_sha.lower())
            if obs.successor_sha:
                return self._ancestry[obs.successor_sha]
        return None

    def _is_ancestor(self, successor: str) -> bool | None:
        """Whether our commit is in the successor; fetch once if the successor was pushed from
        another clone and is not in this repository's objects yet."""
        cwd = self.repo or "."
        found = gitutil.is_ancestor(self.sha, successor, cwd=cwd)
        if found is None:
            row = self.store.deployment(self.sha)
            remote = (row.remote if row else None) or "origin"
            gitutil.fetch(remote, cwd=cwd)
            found = gitutil.is_ancestor(self.sha, successor, cwd=cwd)
        return found

    def _with_logs(self, failed: DeploymentFailed, deployment_id: str) -> DeploymentFailed:
        api = next((s for s in self.sources if s.name == "digitalocean"), None)
        if api is None:
            return failed
        tail = api.fetch_logs(deployment_id, LOG_LINES)
        self.store.append(
            self.sha,
            LogsFetched(
                deployment_id, api_calls=tail.api_calls, lines=len(tail.lines), error=tail.error
            ),
            at=self.clock.now(),
        )
        return dataclasses.replace(failed, log_tail=list(tail.lines))

    def _time_out(self, elapsed: float, observations: Sequence[Observation]) -> str:
        last = next((o.phase for o in observations if o.phase), None)
        if last is None:  # this round saw no phase (an error): the last one any round saw
            row = self.store.deployment(self.sha)
            last = row.phase if row is not None and row.attempt == self.attempt else None
        timed_out = MonitorTimedOut(round(elapsed, 3), last, attempt=self.attempt)
        self.store.append(self.sha, timed_out, at=self.clock.now())
        self.progress(f"gave up after {seconds(elapsed)}")
        return self._state()

    def _sleep(self, seconds: float) -> bool:
        """Sleep in slices, looking at the log; False when a verdict arrived meanwhile."""
        deadline = self.clock.monotonic() + max(seconds, 0.0)
        while True:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return True
            self.clock.sleep(min(left, CHECK_EVERY_S))
            row = self.store.deployment(self.sha)
            if row is None or row.terminal:
                return False


# -- wiring: sources, the per-commit lock, the command, detaching -------------------------------


def build_sources(settings: Settings, clock: Clock) -> list[DeploymentSource]:
    """The configured sources, the cheap database first."""
    sources: list[DeploymentSource] = []
    if settings.mysql is not None:
        from tracker.monitor.sources.mysql import MySQLSource

        sources.append(MySQLSource(settings.mysql, clock=clock))
    if settings.do is not None:
        from tracker.monitor.sources.digitalocean import DigitalOceanSource

        sources.append(
            DigitalOceanSource(
                api_url=settings.do.api_url,
                token=settings.do.token,
                app_id=settings.do.app_id,
                clock=clock,
                timeout=settings.http_timeout,
            )
        )
    return sources


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started_at: str


@contextmanager
def commit_lock(log_dir: Path, sha: str) -> Iterator[Holder | None]:
    """Hold the one-monitor-per-commit lock; yields None when we hold it, else who does."""
    from filelock import FileLock, Timeout

    folder = log_dir / "monitors"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{sha}.lock"), timeout=0, mode=0o600, thread_local=False)
    info = folder / f"{sha}.json"
    try:
        lock.acquire()
    except Timeout:
        yield _holder(info)
        return
    try:
        me = Holder(os.getpid(), socket.gethostname(), iso(SYSTEM_CLOCK.now()))
        fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(me.__dict__, out)
        yield None
    finally:
        lock.release()


def _holder(info: Path) -> Holder:
    try:
        data = json.loads(info.read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(0, "unknown", "unknown")


def monitor_command(tracker: Tracker, ref: str, *, detach: bool, colour: bool) -> int:
    """`tracker monitor REF [--detach]`."""
    sha = tracker.resolve(ref)
    try:
        settings = tracker.settings
    except ConfigError as exc:
        record_not_started(tracker, sha, exc)
        raise
    if not settings.sources():
        raise ConfigError(
            "no deployment source is configured: set DIGITALOCEAN_TOKEN and TRACKER_DO_APP_ID,"
            " or TRACKER_MYSQL_URL (see `tracker doctor`)"
        )
    if tracker.store.deployment(sha) is None:
        tracker.take_in_spool()
        if tracker.store.deployment(sha) is None:
            say(f"no push of {sha[:7]} in the log; record one with `tracker push {sha[:7]}`")
            return 3
    if detach:
        pid = spawn_detached(tracker.db_path, sha, repo=tracker.repo)
        say(f"monitor for {sha[:7]} started in the background (pid {pid})")
        return 0
    return run_foreground(tracker, sha)


def record_not_started(tracker: Tracker, sha: str, exc: ConfigError) -> None:
    """Say in the commit's stream why no monitor runs (a setting it refuses), so that `status`
    and `wait` say it in their headline; nothing when the log has no push of the commit."""
    try:
        row = tracker.store.deployment(sha)
        if row is None:
            tracker.take_in_spool()
            row = tracker.store.deployment(sha)
        if row is not None and not row.terminal:
            tracker.store.append(sha, MonitorNotStarted(reason=str(exc), fix=exc.fix))
    except TrackerError as failed:  # the refusal is what we exit with; say this one too
        say(f"tracker: could not record why no monitor runs: {failed}", stream=sys.stderr)


def run_foreground(tracker: Tracker, sha: str) -> int:
    """Run the monitor in this process, printing progress; the exit code of the verdict."""
    from tracker.projections import exit_code_of

    with commit_lock(tracker.db_path.parent, sha) as holder:
        if holder is not None:
            say(
                f"a monitor for {sha[:7]} is already running: pid {holder.pid} on {holder.host}"
                f" since {holder.started_at}"
            )
            return 0
        row = tracker.store.deployment(sha)
        if row is not None and row.terminal:
            # Decided while this monitor started (more than one may be started for a push:
            # its confirmer and a reader that settled its record): nothing left to follow.
            print(f"{sha[:7]} is decided already: {row.state}")
            return exit_code_of(row.state, row.superseded_went_live)
        # Nobody waits on a monitor: it waits for the lock as long as a deployment may take,
        # rather than die and leave its commit stale (TRACKER_LOCK_TIMEOUT is for the commands
        # people wait on).
        sources = build_sources(tracker.settings, tracker.clock)
        monitor = Monitor(
            tracker.store,
            sha,
            sources,
            settings=tracker.settings,
            clock=tracker.clock,
            repo=tracker.repo,
            progress=lambda line: say(f"{sha[:7]} {line}", flush=True),
        )
        tracker.store.lock_timeout = max(tracker.store.lock_timeout, monitor.max_wait)
        with _stop_on_signals(tracker.store, sha):
            try:
                state = monitor.run()
            finally:
                for source in sources:
                    source.close()
    row = tracker.store.deployment(sha)
    return exit_code_of(state, row.superseded_went_live if row else None)


class _Stopped(Exception):
    pass


@contextmanager
def _stop_on_signals(store: SQLiteLog, sha: str) -> Iterator[None]:
    """On SIGTERM/SIGHUP/SIGINT, record that this monitor stopped, then exit."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except (_Stopped, KeyboardInterrupt) as exc:
        store.append(sha, MonitorStopped(os.getpid(), f"stopped by {exc or 'SIGINT'}"))
        raise SystemExit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spawn_detached(db_path: Path, sha: str, *, repo: Path | None = None) -> int:
    """Start `tracker monitor SHA` fully detached: its own session, no inherited descriptors."""
    if not gitutil.FULL_SHA.match(sha):
        raise ValueError(f"not a full SHA: {sha!r}")
    env = gitutil.clean_env()
    env["TRACKER_DB"] = str(db_path)
    log = db_path.parent / "monitor.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "tracker", "monitor", sha],
            cwd=str(repo or db_path.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            close_fds=True,
            start_new_session=True,
        )
    finally:
        os.close(fd)
    return child.pid
