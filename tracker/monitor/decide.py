"""The watcher's decisions, pure: what a poll means (`judge`), the event it makes (`polled`),
and when to ask again (`next_delay`, `retry_delay`, `backoff`, `budget_wait`, `budget_pause`).
No clock, no I/O: the loop (`tracker.monitor.loop`) does the asking and the appending.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tracker.clock import MAX_CLOCK_SKEW_S, iso
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    SourcesDisagreed,
)
from tracker.monitor.sources.base import TERMINAL_PHASES, Observation, outcome_of
from tracker.policies import LIMIT_PER_HOUR, LIMIT_PER_MINUTE, PollPolicy
from tracker.schedule import History, Seen, default_max_wait

if TYPE_CHECKING:
    from tracker.config import Settings

MAX_BACKOFF_EXPONENT = 60  # 2**60 base already exceeds every cap; avoids float overflow
BUDGET_SHARE = 0.8  # leave a fifth of the token's budget for everything else that uses it


def polled(
    obs: Observation, *, retry: bool, attempt: int | None = None, budget: str | None = None
) -> DeploymentPolled:
    """The event one poll makes (for the commit's push `attempt`; `budget`: how the API call
    was held to the token's budget, `fleet` or `degraded`, in fleet mode)."""
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
        budget=budget,
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


def db_says_going(obs: Observation) -> bool:
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


# -- retries and the shared budget ----------------------------------------------------------


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base * 2**n).

    Half is kept so a retry is never immediate; `rand` in [0, 1) is injected for determinism.
    """
    rand = min(max(rand, 0.0), 1.0)
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 0), MAX_BACKOFF_EXPONENT))
    return max(0.0, ceiling / 2 + ceiling / 2 * rand)


_TRANSIENT = frozenset({"timeout", "connection", "server_error"})
RATE_LIMIT_FALLBACK_CAP_S = 60.0  # a 429 that says nothing about when to come back
MAX_HINT_S = 86400.0  # a retry-after or reset further away than a day is not believed


def retry_delay(
    observation: Observation, now: float, attempt: int, interval: float, rand: float
) -> float:
    """Seconds to wait before asking again after `observation` (attempt 0 is the first retry).

    429: `retry-after`, else `ratelimit-reset - now`, else a jittered backoff; never sooner than
    `interval`, so that no answer (`retry-after: 0`, a reset in the past) makes us poll faster.
    Timeouts, connection errors and 5xx: jittered backoff from interval/8, capped by `interval`.
    A healthy answer with no calls left waits for the reset. Anything else: the normal interval.
    """
    if observation.error_kind == "rate_limited" or observation.http_status == 429:
        return _rate_limited_delay(observation, now, attempt, interval, rand)
    if observation.error_kind in _TRANSIENT:
        return backoff(attempt, interval / 8, interval, rand)
    if observation.ok and observation.ratelimit_remaining == 0 and observation.ratelimit_reset:
        until = observation.ratelimit_reset - now
        return max(interval, until) if _usable_wait(until) else interval
    return interval


def _rate_limited_delay(
    observation: Observation, now: float, attempt: int, interval: float, rand: float
) -> float:
    hint = observation.retry_after_s
    if not _usable_wait(hint) and observation.ratelimit_reset is not None:
        hint = observation.ratelimit_reset - now
    if hint is not None and _usable_wait(hint):
        return max(interval, hint)
    # Nothing usable said when to come back: between one and two intervals, doubling per retry.
    cap = max(interval, RATE_LIMIT_FALLBACK_CAP_S)
    return max(interval, backoff(attempt + 1, interval, cap, rand))


def _usable_wait(seconds: float | None) -> bool:
    return seconds is not None and math.isfinite(seconds) and 0 < seconds <= MAX_HINT_S


def budget_wait(
    used_last_minute: int,
    used_last_hour: int,
    rand: float,
    limits: tuple[float, float] = (LIMIT_PER_MINUTE * BUDGET_SHARE, LIMIT_PER_HOUR * BUDGET_SHARE),
) -> float:
    """Seconds to hold off before an API poll, given the machine's calls in the last minute and
    hour: 0 under budget (`limits`: per minute, per hour), else a jittered 1 to 5 s so that
    waiting monitors do not wake together."""
    if used_last_minute < limits[0] and used_last_hour < limits[1]:
        return 0.0
    return 1.0 + 4.0 * min(max(rand, 0.0), 1.0)


BUDGET_JITTER_S = 1.0  # a refused reservation asks again up to this much after it would fit


def budget_limits(settings: Settings) -> tuple[int, int]:
    """The token's calls per minute and per hour every monitor of it shares: the settings'
    (`TRACKER_API_BUDGET_PER_MINUTE`, `_PER_HOUR`), else the platform's limits times
    `BUDGET_SHARE`."""
    minute = settings.api_budget_per_minute or int(LIMIT_PER_MINUTE * BUDGET_SHARE)
    hour = settings.api_budget_per_hour or int(LIMIT_PER_HOUR * BUDGET_SHARE)
    return minute, max(hour, 1)


def budget_pause(wait: float, rand: float, left: float) -> float:
    """How long to sleep after the fleet's budget refused a call for `wait` seconds: that long
    and a jittered bit more (refused watchers do not all ask again at once), never past
    `left` (the follow's deadline)."""
    return max(0.0, min(wait + BUDGET_JITTER_S * min(max(rand, 0.0), 1.0), left))


def token_id(token: str) -> str:
    """The token's name in the shared budget: the first 16 hex digits of its SHA-256, made here.
    The token itself goes to no one but the platform; its id cannot be turned back into it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]
