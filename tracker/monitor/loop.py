"""The monitor's loop: poll the sources for one commit on an economical schedule until a verdict.

The decisions are pure (`tracker.monitor.decide`); `Monitor.run` is the loop around them that
does the I/O: it polls, appends every poll as an event, sleeps by the policy (or as a rate limit
or a fault says), fetches the failure logs, and records the outcome exactly once. It is handed its
log, sources, settings and clock; it knows nothing of the CLI or the `Tracker` facade.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tracker import gitutil
from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.errors import SourceUnavailableError
from tracker.events import (
    DeploymentFailed,
    LogsFetched,
    MonitorStarted,
    MonitorStopped,
    MonitorTimedOut,
)
from tracker.log.base import EventLog
from tracker.monitor.decide import (
    budget_wait,
    db_says_going,
    judge,
    max_wait_for,
    next_delay,
    polled,
    refusal,
    seen_of,
)
from tracker.monitor.sources.base import DeploymentSource, Observation
from tracker.policies import InformedPolicy, policy_from_settings
from tracker.projections import DeploymentRow
from tracker.schedule import History, Seen
from tracker.words import seconds

if TYPE_CHECKING:
    from tracker.config import Settings

CHECK_EVERY_S = 1.0  # while waiting, look at the log this often (an ingested verdict stops us)
LOG_LINES = 20


class Monitor:
    """Follows one commit until a verdict or `max_wait`; appends everything it learns."""

    def __init__(
        self,
        store: EventLog,
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
            history = history_of(self.store, self.settings)
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
            if source.name != "mysql" and any(db_says_going(o) for o in observations):
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


def history_of(log: EventLog, settings: Settings) -> History:
    """The app's recent deployments, as the schedule and `TRACKER_MAX_WAIT` read them."""
    from tracker.log.sqlite import SQLiteLog
    from tracker.read.stats import recent_history

    # the stats queries are the SQLite backend's until the log's port offers them
    return recent_history(cast(SQLiteLog, log), branch=settings.branch)


def max_wait_of(log: EventLog, settings: Settings) -> float:
    """How long a monitor follows a commit, from the settings and the log's history."""
    return max_wait_for(settings, history_of(log, settings))


def build_sources(
    settings: Settings, clock: Clock, *, machine: str | None = None
) -> list[DeploymentSource]:
    """The configured sources, the cheap database first; `machine` (fleet mode) goes in the
    API's User-Agent."""
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
                machine=machine,
            )
        )
    return sources
