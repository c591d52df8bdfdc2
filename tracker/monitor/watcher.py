"""The app's watcher: one loop follows every open push of one app (SPEC §6, issue 14).

Each tick is one round of each source for all the open commits at once (`poll_all`): one
request of the deployments list (a further page only while a push is still unmatched), one
database query. Every commit's observation comes from the same answers, so a commit queued
behind a running deployment costs no request of its own, and a superseded commit gets its
successor's verdict from them. The tick comes at the soonest moment any open push asks for
(its own `informed` schedule); a 429's `retry-after` holds back the whole app.

Every request is counted once: a round that served one commit is counted on that commit's
`DeploymentPolled`, as a per-commit monitor did; a round that served several is counted on the
app's own stream (`app:<platform>:<id>`), and each commit's observation from it costs 0.

The watcher is handed its log, sources, settings and clock; the lock that makes it the only
one of its app (`tracker.monitor.lock.AppLock`) is taken by whoever starts it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from tracker import gitutil
from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.errors import SourceUnavailableError, StoppedError
from tracker.events import (
    DeploymentFailed,
    LogsFetched,
    MonitorStarted,
    MonitorStopped,
    MonitorTimedOut,
)
from tracker.log.base import BudgetLog, EventLog
from tracker.log.sqlite import Append
from tracker.monitor.decide import (
    budget_limits,
    budget_pause,
    budget_wait,
    db_says_going,
    judge,
    max_wait_for,
    next_delay,
    polled,
    refusal,
    retry_delay,
    seen_of,
    token_id,
)
from tracker.monitor.loop import CHECK_EVERY_S, LOG_LINES, history_of
from tracker.monitor.sources.base import DeploymentSource, LogTail, Observation, Tick
from tracker.policies import InformedPolicy, policy_from_settings
from tracker.projections import OPEN_STATES, DeploymentRow
from tracker.schedule import Seen
from tracker.words import seconds

if TYPE_CHECKING:
    from tracker.config import Settings

LOOKBACK_S = 6 * 3600.0  # an open push older than this is left to the readers (stale)
RUNNING_PHASES = frozenset({"BUILDING", "PENDING_DEPLOY", "DEPLOYING"})
WAITING_PHASES = frozenset({None, "PENDING_BUILD", "QUEUED"})  # None: not found yet


def app_of(settings: Settings) -> tuple[str, str]:
    """The app a watcher follows: (platform, app id); for a database alone, its table."""
    if settings.do is not None:
        return "digitalocean", settings.do.app_id
    if settings.mysql is not None:
        m = settings.mysql
        return "mysql", f"{m.host}:{m.port}/{m.database}/{m.table}"
    return "none", "none"


def app_stream(platform: str, app: str) -> str:
    """The log stream of an app's own events (the rounds that served several commits)."""
    return f"app:{platform}:{app}"


def _open_rows(
    log: EventLog, now: float, lookback_s: float, repos: frozenset[str] = frozenset()
) -> list[DeploymentRow]:
    return [
        r
        for r in log.deployments(since=now - lookback_s)
        if r.state in OPEN_STATES
        and (r.confirmed_at is not None or r.push_source != "hook")
        and pushed_to(r, repos)
    ]


def pushed_to(row: DeploymentRow, repos: frozenset[str]) -> bool:
    """Whether the push went to one of `repos` (`gitutil.repo_key` of the watcher's remotes):
    a log may hold other repositories' pushes (a `TRACKER_DB` shared by two repositories, the
    fleet's shared log), each deployed by its own app, and a watcher follows only its own. A
    push that names no remote (recorded by hand), or a watcher that knows none, is followed."""
    if not repos or not row.remote_url:
        return True
    return gitutil.repo_key(row.remote_url) in repos


def open_pushes(
    log: EventLog, now: float, lookback_s: float = LOOKBACK_S, *, repo: Path | None = None
) -> list[str]:
    """The open pushes a watcher follows: recent ones that reached the remote (a hook's push
    once confirmed; one recorded by hand at once), to the repository at `repo` (any, without)."""
    repos = gitutil.remote_keys(repo) if repo is not None else frozenset()
    return [r.sha for r in _open_rows(log, now, lookback_s, repos)]


@dataclass
class _Follow:
    """One open push the watcher follows."""

    sha: str
    attempt: int
    started: float
    pushed: float
    deadline: float
    next_at: float
    seen: list[Seen] = field(default_factory=list)
    polls: int = 0
    failures: int = 0
    following: str | None = None  # superseded: the successor's deployment id


def _phase(f: _Follow) -> str | None:
    """The phase its last round saw (None: not found yet, or no round yet)."""
    return f.seen[-1].phase if f.seen and f.seen[-1].found else None


class Watcher:
    """Follows every open push of one app until none is open; appends everything it learns."""

    def __init__(
        self,
        log: EventLog,
        sources: Sequence[DeploymentSource],
        *,
        settings: Settings,
        clock: Clock = SYSTEM_CLOCK,
        rand: Callable[[], float] = random.random,
        repo: Path | None = None,
        progress: Callable[[str, str], None] | None = None,
        asked: Iterable[str] = (),
        lookback_s: float = LOOKBACK_S,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.log, self.sources = log, list(sources)
        # Called before each tick and as the watcher waits; raises to stop it (fleet mode: the
        # app's lease lost to another watcher, `tracker.monitor.lease`).
        self.guard = guard or (lambda: None)
        self.settings, self.clock, self.rand, self.repo = settings, clock, rand, repo
        self.progress = progress or (lambda _sha, _line: None)
        self.asked = {sha.lower() for sha in asked}
        self.lookback_s = lookback_s
        # the repository's remotes: the pushes this app deploys (`pushed_to`)
        self.repos = gitutil.remote_keys(repo) if repo is not None else frozenset()
        self.policy = policy_from_settings(settings)
        history = history_of(log, settings)
        if isinstance(self.policy, InformedPolicy):
            self.policy = self.policy.with_history(history)
        self.max_wait = max_wait_for(settings, history)
        self.platform, self.app = app_of(settings)
        self.stream = app_stream(self.platform, self.app)
        self.follows: dict[str, _Follow] = {}
        self.results: dict[str, str] = {}  # sha -> the state it ended in, while we watched
        self.ticks = 0
        self._hold_until = 0.0  # a rate limit's word, for the whole app
        self._app_failures = 0
        self._ancestry: dict[tuple[str, str], bool | None] = {}
        self._logs: dict[str, LogTail] = {}  # deployment id -> its logs, fetched once
        self._last_shown: dict[str, str] = {}
        # The token's API budget: per minute and hour; in fleet mode reserved in the shared log
        # under the token's id (`budget_mode`: `fleet`, or `degraded` while it is unreachable).
        self._limits = budget_limits(settings)
        self._token_id = token_id(settings.do.token) if settings.do is not None else None
        self.budget_mode: str | None = None
        self._reserved = False  # the round about to be made reserved its first call

    # -- what is open ---------------------------------------------------------------------

    def open_rows(self) -> list[DeploymentRow]:
        """The app's open pushes in the log (`open_pushes`), and any asked for by name."""
        now = self.clock.now()
        rows = {r.sha: r for r in _open_rows(self.log, now, self.lookback_s, self.repos)}
        for sha in self.asked - rows.keys():
            row = self.log.deployment(sha)
            if row is not None and row.state in OPEN_STATES:
                rows[sha] = row
        return list(rows.values())

    def refresh(self) -> bool:
        """Follow what opened, forget what was decided elsewhere; True when anything changed."""
        rows = {r.sha: r for r in self.open_rows()}
        changed = False
        for sha in list(self.follows):
            if sha not in rows:
                del self.follows[sha]  # decided by someone else (an ingested verdict)
                row = self.log.deployment(sha)
                self.results[sha] = row.state if row else "not_found"
                changed = True
        for sha, row in rows.items():
            known = self.follows.get(sha)
            if known is None or known.attempt != row.attempt:
                self.follows[sha] = self._follow(row)
                changed = True
        return changed

    def _follow(self, row: DeploymentRow) -> _Follow:
        """Start following the row's push: say so in its stream, and tell the sources which
        deployments cannot be its own (older ones; those that judged its earlier attempts)."""
        now = self.clock.now()
        self.log.append(row.sha, self._started_event(row.attempt), at=now)
        if row.pushed_at is not None:
            judged = [p["deployment_id"] for p in row.earlier() if p.get("deployment_id")]
            for source in self.sources:
                expect = getattr(source, "expect", None)
                if expect is not None:
                    expect(row.sha, row.pushed_at, exclude=judged, again=row.attempt > 1)
        pushed = now if row.pushed_at is None else min(row.pushed_at, now)
        return _Follow(row.sha, row.attempt, now, pushed, now + self.max_wait, now)

    def _started_event(self, attempt: int) -> MonitorStarted:
        return MonitorStarted(
            pid=os.getpid(),
            host=socket.gethostname(),
            policy=self.policy.name,
            sources=[s.name for s in self.sources],
            max_wait_s=self.max_wait,
            attempt=attempt,
        )

    # -- the loop -------------------------------------------------------------------------

    def run(self, until: str | None = None) -> dict[str, str]:
        """Tick until nothing is open (or `until` is decided); the states it saw reached."""
        self.refresh()
        while self.follows and not (until and until not in self.follows):
            due = max(self._due(), self._hold_until)
            if due > self.clock.now() and not self._sleep_until(due):
                continue  # something opened or was decided meanwhile: look again
            self.tick()
            self.refresh()
        return self.results

    def _due(self) -> float:
        """The next tick: the soonest any open push asks for. A push queued behind a running
        one asks for none: the running one's ticks (at most `TRACKER_POLL_MAX_INTERVAL` apart)
        bring its news."""
        return min(f.next_at for f in self.follows.values() if not self._queued(f))

    def _sleep_until(self, when: float) -> bool:
        """Sleep in slices, looking at the log; False when it changed meanwhile."""
        while True:
            left = when - self.clock.now()
            if left <= 0:
                return True
            self.clock.sleep(min(left, CHECK_EVERY_S))
            self.guard()
            if self.refresh():
                return False

    def tick(self) -> None:
        """One round of each source for every open push, recorded, judged, rescheduled."""
        self.guard()
        self.ticks += 1
        follows = list(self.follows.values())
        seen: dict[str, list[Observation]] = {f.sha: [] for f in follows}
        costs: list[Observation] = []
        batch: list[Append] = []
        now = self.clock.now()
        retry = self._app_failures > 0
        for source in self.sources:
            ask = [
                f.sha
                for f in follows
                if source.name == "mysql" or not any(db_says_going(o) for o in seen[f.sha])
            ]
            if not ask:
                continue  # the database says every one is still going: the API is not asked
            api = source.name == "digitalocean"
            if api and not self._hold_for_budget(min(f.deadline for f in follows)):
                round_ = _over_budget(source.name, ask)  # no request: the fleet's budget is spent
            else:
                round_ = self._poll_all(source, ask)
                if api and self._reserved:  # further pages: made, so counted
                    self._spent(_calls(round_) - 1)
            now = self.clock.now()
            answers = dict(round_.observations)
            if round_.cost is not None:
                costs.append(round_.cost)
                if len(ask) == 1:  # served one commit: counted on it, as a monitor did
                    answers[ask[0]] = _with_cost(answers[ask[0]], round_.cost)
                else:
                    cost = polled(round_.cost, retry=retry, budget=self._mode(source.name))
                    batch.append(Append(self.stream, cost, None, now))
            for sha in ask:
                seen[sha].append(answers[sha])
        self._app_failures = self._app_failures + 1 if any(not c.ok for c in costs) else 0
        for f in follows:
            event = [
                polled(o, retry=f.failures > 0, attempt=f.attempt, budget=self._mode(o.source))
                for o in seen[f.sha]
            ]
            batch.extend(Append(f.sha, e, None, now) for e in event)
        self.log.append_all(batch)
        for f in follows:
            self._show(f.sha, seen[f.sha])
        self._raise_if_refused(follows, seen)
        self._hold_until = self._app_hold(costs, now)
        for f in follows:
            self._after(f, seen[f.sha], costs)

    def _poll_all(self, source: DeploymentSource, shas: Sequence[str]) -> Tick:
        """One round of `source` for `shas`; a source with no `poll_all` is polled per commit
        (each observation then keeps its own cost: `Tick.cost` is None)."""
        poll_all = getattr(source, "poll_all", None)
        try:
            if poll_all is not None:
                found: Tick = poll_all(shas)
                missing = [sha for sha in shas if sha not in found.observations]
                if not missing:
                    return found
                raise ValueError(f"no answer for {len(missing)} commits")
            return Tick(None, {sha: source.poll(sha) for sha in shas})
        except Exception as exc:  # a source must not raise; if one does, it is a failed round
            error = f"the {source.name} answer broke the source ({type(exc).__name__})"
            failed = Observation(source.name, ok=False, error=error, error_kind="malformed")
            return Tick(failed, {sha: failed for sha in shas})

    def _app_hold(self, costs: Sequence[Observation], now: float) -> float:
        """Until when the whole app waits: a 429 (or no calls left) holds back every push."""
        troubled = [c for c in costs if c.error_kind == "rate_limited" or c.http_status == 429]
        troubled += [c for c in costs if c.ok and c.ratelimit_remaining == 0]
        if not troubled:
            return 0.0
        base = self.settings.poll_interval if not isinstance(self.policy, InformedPolicy) else 1.0
        waits = [
            retry_delay(c, now, max(self._app_failures - 1, 0), base, self.rand()) for c in troubled
        ]
        return now + max(waits)

    def _after(
        self, f: _Follow, observations: Sequence[Observation], costs: Sequence[Observation]
    ) -> None:
        """Judge one push from the round; a verdict ends it, else its next poll is scheduled."""
        now = self.clock.now()
        f.seen.append(seen_of(observations, now))
        f.polls += 1
        f.failures = f.failures + 1 if any(not o.ok for o in observations) else 0
        row = self.log.deployment(f.sha)
        if row is None or row.terminal or row.attempt != f.attempt:
            return  # decided meanwhile, or pushed again: `refresh` sees to it
        state = self._conclude(f, observations, row)
        if state is not None:
            self._end(f, state)
            return
        elapsed = now - f.started
        if self._queued(f) or self._waits_on_successor(f):
            f.deadline = max(f.deadline, now + self.max_wait)  # its own wait starts later
        elif now >= f.deadline:
            self._time_out(f, elapsed, observations)
            return
        interval = None
        if isinstance(self.policy, InformedPolicy):
            interval = self.policy.next_poll_at(f.seen, now, pushed_at=f.pushed) - now
        delay = next_delay(
            [*observations, *costs],
            policy=self.policy,
            elapsed=elapsed,
            polls=f.polls,
            failures=f.failures,
            now=now,
            rand=self.rand(),
            interval=interval,
        )
        if not self._waits_on_successor(f):
            delay = min(delay, max(f.deadline - now, 0.0))
        f.next_at = now + delay

    def _queued(self, f: _Follow) -> bool:
        """Waiting behind another open push: its deployment not found yet or not started while
        another one runs, or while a newer one waits too. Its news comes with that one's ticks,
        so it asks for none of its own, and its wait there is not held against `max_wait`."""
        if _phase(f) not in WAITING_PHASES:
            return False
        others = [g for g in self.follows.values() if g is not f]
        if any(_phase(g) in RUNNING_PHASES for g in others):
            return True
        # none runs: the platform takes the newest waiting one next, so that one asks for the
        # ticks, and the older ones wait behind it
        return any(_phase(g) in WAITING_PHASES and g.pushed > f.pushed for g in others)

    def _waits_on_successor(self, f: _Follow) -> bool:
        """Superseded, its successor still going and followed by us: resolved through it,
        never timed out before it."""
        if f.following is None:
            return False
        return any(g.sha != f.sha and not g.following for g in self.follows.values())

    def _end(self, f: _Follow, state: str) -> None:
        self.follows.pop(f.sha, None)
        self.results[f.sha] = state
        self.progress(f.sha, f"verdict: {state}")

    def _conclude(
        self, f: _Follow, observations: Sequence[Observation], row: DeploymentRow
    ) -> str | None:
        contains = self._contains(f.sha, row, observations)
        now = self.clock.now()
        verdict = judge(observations, now=now, pushed_at=row.pushed_at, contains=contains)
        if verdict.disagreement is not None:
            self.log.append(f.sha, verdict.disagreement, key=f"disagree:{f.sha}")
        f.following = verdict.following
        if verdict.outcome is None:
            return None
        outcome = dataclasses.replace(verdict.outcome, attempt=f.attempt)  # type: ignore[call-arg]
        if verdict.needs_logs and isinstance(outcome, DeploymentFailed):
            outcome = self._with_logs(f.sha, outcome, verdict.needs_logs)
        self.log.append(f.sha, outcome, at=self.clock.now())
        found = self.log.deployment(f.sha)
        return found.state if found else "not_found"

    def _contains(
        self, sha: str, row: DeploymentRow, observations: Sequence[Observation]
    ) -> bool | None:
        for obs in observations:
            if not obs.successor_sha:
                continue
            key = (sha, obs.successor_sha.lower())
            if key not in self._ancestry:
                self._ancestry[key] = self._is_ancestor(sha, key[1], row)
            return self._ancestry[key]
        return None

    def _is_ancestor(self, sha: str, successor: str, row: DeploymentRow) -> bool | None:
        cwd = self.repo or "."
        found = gitutil.is_ancestor(sha, successor, cwd=cwd)
        if found is None:
            gitutil.fetch(row.remote or "origin", cwd=cwd)
            found = gitutil.is_ancestor(sha, successor, cwd=cwd)
        return found

    def _with_logs(
        self, sha: str, failed: DeploymentFailed, deployment_id: str
    ) -> DeploymentFailed:
        """The failure's logs, fetched once per failed deployment whatever commits it ends."""
        api = next((s for s in self.sources if s.name == "digitalocean"), None)
        if api is None:
            return failed
        tail = self._logs.get(deployment_id)
        if tail is None:
            tail = self._logs[deployment_id] = api.fetch_logs(deployment_id, LOG_LINES)
            event = LogsFetched(
                deployment_id, api_calls=tail.api_calls, lines=len(tail.lines), error=tail.error
            )
            self.log.append(sha, event, at=self.clock.now())
            self._spent(tail.api_calls)  # never reserved: counted once made
        return dataclasses.replace(failed, log_tail=list(tail.lines))

    def _time_out(self, f: _Follow, elapsed: float, observations: Sequence[Observation]) -> None:
        last = next((o.phase for o in observations if o.phase), None)
        if last is None:
            row = self.log.deployment(f.sha)
            last = row.phase if row is not None and row.attempt == f.attempt else None
        event = MonitorTimedOut(round(elapsed, 3), last, attempt=f.attempt)
        self.log.append(f.sha, event, at=self.clock.now())
        self.progress(f.sha, f"gave up after {seconds(elapsed)}")
        row = self.log.deployment(f.sha)
        self._end(f, row.state if row else "not_found")

    def _hold_for_budget(self, deadline: float) -> bool:
        """Hold the API round back until the token's budget allows it; False when it did not
        by `deadline` (the round is then not made: the budget is never overdrawn).

        Fleet mode (a log that keeps the fleet's budget, `BudgetLog`): reserve the round's first
        call in the shared log, every machine's calls counted; refused, sleep until it would fit
        (with jitter, never past the deadline) and ask again. Calls beyond the first are counted
        after the round (`_spent`). With the shared log unreachable the watcher runs degraded,
        as a single machine does: on the calls this machine's log recorded, and on the
        platform's own 429s and `ratelimit-remaining` (`_app_hold`), which count the token's
        calls on every machine."""
        self._reserved = False
        fleet = self.log if isinstance(self.log, BudgetLog) else None
        while fleet is not None and self._token_id is not None:
            wait = fleet.reserve_api_calls(self._token_id, 1, *self._limits)
            self._set_mode("fleet" if wait is not None else "degraded")
            if wait is None:
                break
            if wait <= 0:
                self._reserved = True
                return True
            now = self.clock.now()
            if now >= deadline:
                return False
            self.clock.sleep(budget_pause(wait, self.rand(), deadline - now))
        while self.clock.now() < deadline:
            now = self.clock.now()
            pause = budget_wait(*self.log.api_calls_by_window(now), self.rand(), self._limits)
            if pause <= 0:
                return True
            self.clock.sleep(min(pause, deadline - now))
        return True

    def _set_mode(self, mode: str) -> None:
        """Say when the fleet's budget is lost or found again (`budget` on the polls too)."""
        if mode == self.budget_mode or (self.budget_mode is None and mode == "fleet"):
            self.budget_mode = mode
            return
        self.budget_mode = mode
        line = (
            "the fleet's API budget is unreachable (the shared log): degraded, polling on this"
            " machine's count and the platform's rate-limit headers"
            if mode == "degraded"
            else "the fleet's API budget is reachable again"
        )
        for sha in self.follows:
            self.progress(sha, line)

    def _mode(self, source: str) -> str | None:
        return self.budget_mode if source == "digitalocean" else None

    def _spent(self, calls: int) -> None:
        """Count API calls made beyond those reserved in the fleet's budget (in fleet mode)."""
        fleet = self.log if isinstance(self.log, BudgetLog) else None
        if calls > 0 and fleet is not None and self.budget_mode == "fleet" and self._token_id:
            fleet.add_api_calls(self._token_id, calls)

    def _raise_if_refused(
        self, follows: Sequence[_Follow], seen: dict[str, list[Observation]]
    ) -> None:
        every = [o for f in follows for o in seen[f.sha]]
        refused = [o for o in every if o.error_kind == "auth"]
        if not refused or len(refused) != len(every):
            return
        reason, fix = refusal(refused[: len(self.sources)])
        for f in follows:
            self.log.append(f.sha, MonitorStopped(os.getpid(), reason, fix=fix))
        names = ", ".join(sorted({o.source for o in refused}))
        raise SourceUnavailableError(
            f"{names} refused our credentials ({refused[0].error}); run `tracker doctor`"
        )

    def _show(self, sha: str, observations: Sequence[Observation]) -> None:
        for obs in observations:
            if not obs.ok:
                self.progress(sha, f"{obs.source}: {obs.error_kind}: {obs.error}")
                continue
            what = (obs.phase or obs.status or "in progress") if obs.found else "not found yet"
            steps = f" ({obs.steps_done}/{obs.steps_total} steps)" if obs.steps_total else ""
            line = f"{obs.source}: {what}{steps}"
            if self._last_shown.get(sha + obs.source) != line:
                self._last_shown[sha + obs.source] = line
                self.progress(sha, line)


def _with_cost(obs: Observation, cost: Observation) -> Observation:
    """A commit's observation carrying the cost of the round that served it alone."""
    return dataclasses.replace(
        obs,
        api_calls=cost.api_calls,
        db_queries=cost.db_queries,
        http_status=cost.http_status,
        latency_ms=cost.latency_ms,
        ratelimit_remaining=cost.ratelimit_remaining,
        ratelimit_reset=cost.ratelimit_reset,
    )


def _calls(round_: Tick) -> int:
    """The API calls a round made (on its cost, else on each commit's own observation)."""
    if round_.cost is not None:
        return round_.cost.api_calls
    return sum(o.api_calls for o in round_.observations.values())


def _over_budget(source: str, shas: Sequence[str]) -> Tick:
    """A round not made: the fleet's budget had no call for it before the deadline."""
    refused = Observation(
        source,
        ok=False,
        error="the fleet's API budget for the token had no call left before the deadline;"
        " no request was made",
        error_kind="rate_limited",
    )
    return Tick(None, {sha: refused for sha in shas})


class _Stopped(Exception):
    pass


@contextmanager
def stop_on_signals(log: EventLog, watcher: Watcher) -> Iterator[None]:
    """On SIGTERM/SIGHUP/SIGINT, record in each followed push that the watcher stopped, then
    exit (a reader finds its lock free and resumes it)."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except (_Stopped, KeyboardInterrupt) as exc:
        for sha in list(watcher.follows):
            log.append(sha, MonitorStopped(os.getpid(), f"stopped by {exc or 'SIGINT'}"))
        raise StoppedError(f"the watcher was stopped by {exc or 'SIGINT'}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
