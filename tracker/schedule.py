"""The `informed` schedule (SPEC §6): when to poll next, from what the log knows. Pure: no clock,
no I/O; `next_poll_at(model, seen, now, ...)` is a function of its arguments.

What it believes. For each phase p, one sample per past deployment that reached p: (D, rest),
the seconds it spent in p (its `phase:NAME`) and the seconds from p's end to its verdict (the
later phases, in pipeline order). A deployment that failed in p has rest 0, so the chance of
failing in p is in the samples; one that went through p unseen (a 5 s pending phase between two
polls) spent 1 s in it. Before the deployment is found (or when a source reports no phase, as
the MySQL one does), (push to verdict, 0). Each D is smoothed in log space (a log-normal kernel,
bandwidth from the robust spread, at least ±5 % and a second), the whole shrunk toward a broad
prior (`PRIOR`: log-normals of σ = 1 around a generic 4-minute deployment's phases, worth
`PRIOR_WEIGHT` deployments) and mixed with a small defensive share (`DEFENSIVE_SHARE`,
log-uniform from 1 s to 4 h, that may end at any moment) so that no end is ever impossible.

How it polls. After each poll it conditions on the phase seen lasting past the time it has run,
e (from the platform's own time of the phase when that is plausible, else our first sighting):
the time left is R = (D − e | D > e) + rest, per kernel. The next poll is the first Δ at which
the expected detection lag this interval would add, E[(Δ − R)+], reaches `lag_budget`; to first
order that is the optimum of calls + λ·lag with λ = 1/lag_budget (Δ ≈ √(2c/h) for a hazard h).
Δ is clamped to [`floor`, `max_interval`]. Before the deployment is found, one early poll
(`FIND_AFTER_S` after the push) finds it, so that the schedule can key on its phase. Past what
the history has seen (the history explains less of what is left than the prior and the
defensive share; with no history, past the prior too) it polls every min(15 s, 5 % of the time
since the push): a deployment slower than anything seen is followed closely.

Departures from design/polling.md §8: instead of each phase's duration convolved with the
later phases' (independent), each past deployment keeps its own rest: no convolution, the
correlation between phases kept, and each kernel's expected lag has a closed form (Δ is found
by bisection in about a millisecond). The prior is per phase too, so that a cold start knows a
build is followed by a deploy and does not poll a build as if it could end at any moment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# App Platform's working phases, in pipeline order (the terminal ones end a deployment).
PIPELINE = ("PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING")
PUSH = ""  # the belief keyed by no phase: from the push to the verdict

# The broad prior: a generic small app's deployment, about 4 minutes from the push, σ_log 1
# (CircleCI's spread across projects; design/polling.md §1). Per phase, kernels of (median
# seconds in the phase, seconds after it to the verdict, share): a phase is mostly followed by
# at least half a minute of others, and may fail (a tenth of the time) with nothing after it.
PRIOR: Mapping[str, tuple[tuple[float, float, float], ...]] = {
    PUSH: ((240.0, 0.0, 1.0),),
    "PENDING_BUILD": ((5.0, 30.0, 0.9), (240.0, 0.0, 0.1)),
    "BUILDING": ((150.0, 30.0, 0.9), (150.0, 0.0, 0.1)),
    "PENDING_DEPLOY": ((5.0, 20.0, 0.9), (75.0, 0.0, 0.1)),
    "DEPLOYING": ((75.0, 0.0, 1.0),),
}
PRIOR_SIGMA = 1.0
PRIOR_WEIGHT = 2.0  # the prior counts as this many past deployments
DEFENSIVE_SHARE = 0.02
DEFENSIVE_RANGE_S = (1.0, 4 * 3600.0)
MIN_BANDWIDTH = 0.05  # log space: ±5 %
TAIL_CAP_S = 15.0  # beyond everything seen: every min(15 s, 5 % of the time since the push)
TAIL_SHARE = 0.05
FIND_AFTER_S = 10.0  # the early poll that finds the deployment
FLOOR_S = 2.0  # never sooner (the platform's times have one-second precision)
HISTORY_SIZE = 100  # the last deployments the log is asked for
MAX_WAIT_FACTOR = 3.0  # TRACKER_MAX_WAIT's default: max(480 s, 3 × the p95 push to verdict)
MAX_WAIT_CAP_S = 4 * 3600.0  # DigitalOcean's 60-minute build limit, with room for the rest
MAX_SKEW_S = 5.0


@dataclass(frozen=True)
class Past:
    """One earlier deployment of the app, as the log measured it."""

    state: str  # succeeded, failed, canceled (the schedule's samples) or timed_out (censored)
    phases: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds in it
    push_to_verdict_s: float | None = None  # for timed_out: how long it was followed


@dataclass(frozen=True)
class History:
    """The app's recent deployments, newest first (`tracker.read.stats.recent_history`)."""

    deployments: tuple[Past, ...] = ()

    def samples(self, phase: str) -> list[tuple[float, float]]:
        """(seconds in `phase`, seconds from its end to the verdict) of each past deployment
        that reached it; PUSH: (from the push to the verdict, 0). A phase a deployment went
        through unseen (a 5 s pending phase between two polls) counts as 1 s; one that failed
        in `phase` has 0 after it. A timed-out deployment is censored and gives none."""
        out: list[tuple[float, float]] = []
        for past in self.deployments:
            if past.state == "timed_out":
                continue
            if phase == PUSH:
                if past.push_to_verdict_s is not None:
                    out.append((past.push_to_verdict_s, 0.0))
                continue
            order = _ordered(past.phases)
            rank = _rank(phase)
            later = [p for p in order if _rank(p) > rank]
            if phase not in past.phases and not later:
                continue  # it ended before this phase
            here = past.phases.get(phase, 1.0)
            out.append((here, sum(past.phases[p] for p in later)))
        return [(d, r) for d, r in out if math.isfinite(d + r) and d >= 0 and r >= 0]

    def p95_push_to_verdict(self) -> float | None:
        """The nearest-rank p95 from the push to the verdict; a timed-out deployment counts as
        the time it was followed (a lower bound), so timeouts raise the default wait."""
        values = sorted(
            p.push_to_verdict_s
            for p in self.deployments
            if p.push_to_verdict_s is not None and math.isfinite(p.push_to_verdict_s)
        )
        if not values:
            return None
        rank = max(1, math.ceil(0.95 * len(values)))
        return values[rank - 1]


def _rank(phase: str) -> int:
    return PIPELINE.index(phase) if phase in PIPELINE else -1


def _ordered(phases: Mapping[str, float]) -> list[str]:
    return sorted(phases, key=_rank)  # stable: unknown phases first


def default_max_wait(history: History, floor: float = 480.0) -> float:
    """TRACKER_MAX_WAIT when it is not set: max(480 s, 3 × the app's p95 push to verdict)."""
    p95 = history.p95_push_to_verdict()
    if p95 is None:
        return floor
    return max(floor, min(MAX_WAIT_FACTOR * p95, MAX_WAIT_CAP_S))


# -- the belief ---------------------------------------------------------------------------------


Kernel = tuple[float, float, float, float]  # weight, μ and σ of log D, seconds after D


@dataclass(frozen=True)
class Belief:
    """What is believed of a deployment in one phase: a mixture of kernels, each a log-normal
    duration D of the phase followed by a fixed time to the verdict (a past deployment's); the
    prior and the defensive share are over the time to the verdict itself (nothing follows: they
    believe the deployment may end at any moment)."""

    kernels: tuple[Kernel, ...]  # from the history
    prior: tuple[Kernel, ...]
    defensive: float = DEFENSIVE_SHARE

    def alive(self, elapsed: float) -> tuple[float, float]:
        """P(the phase lasts past `elapsed`): the history's share, and the prior's and the
        defensive share's."""
        seen = _alive(self.kernels, elapsed)
        return seen, self.prior_alive(elapsed) + self.defensive * (1 - _lu_cdf(elapsed))

    def prior_alive(self, elapsed: float) -> float:
        return _alive(self.prior, elapsed)

    def lag_mass(self, elapsed: float, delta: float) -> float:
        """Σ weight × E[(elapsed + Δ − end)+] over the kernels (not yet conditioned on the
        phase lasting past `elapsed`)."""
        total = 0.0
        for w, mu, s, rest in (*self.kernels, *self.prior):
            reach = delta - rest
            if reach > 0:
                gained = _ln_cdf_integral(elapsed + reach, mu, s) - _ln_cdf_integral(elapsed, mu, s)
                total += w * max(0.0, gained - reach * _ln_cdf(elapsed, mu, s))
        if self.defensive:
            gained = _lu_cdf_integral(elapsed + delta) - _lu_cdf_integral(elapsed)
            total += self.defensive * max(0.0, gained - delta * _lu_cdf(elapsed))
        return total


def _alive(kernels: Iterable[Kernel], elapsed: float) -> float:
    return sum(w * (1 - _ln_cdf(elapsed, mu, s)) for w, mu, s, _ in kernels)


def belief_of(
    samples: Sequence[tuple[float, float]], prior: Sequence[tuple[float, float, float]]
) -> Belief:
    """The samples' phase durations smoothed in log space (each followed by its own time to the
    verdict), shrunk toward the broad prior (worth `PRIOR_WEIGHT` deployments), with the
    defensive share."""
    logs = [math.log(max(d, 1.0)) for d, _ in samples]
    total = len(logs) + PRIOR_WEIGHT
    scale = 1.0 - DEFENSIVE_SHARE
    weight = scale * PRIOR_WEIGHT / total
    priors = tuple((weight * share, math.log(m), PRIOR_SIGMA, r) for m, r, share in prior)
    kernels: list[Kernel] = []
    if logs:
        h = _bandwidth(logs)
        for x, (_, rest) in zip(logs, samples, strict=True):
            # a second of timestamp precision is a wide error on a short phase
            kernels.append((scale / total, x, max(h, min(1.0, math.exp(-x))), rest))
    return Belief(tuple(kernels), priors)


def _bandwidth(logs: Sequence[float]) -> float:
    """Silverman's rule on the robust spread (an outlier widens nothing), at least ±5 %."""
    n = len(logs)
    if n < 2:
        return 0.3
    ordered = sorted(logs)
    mean = sum(ordered) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in ordered) / (n - 1))
    iqr = ordered[(3 * n) // 4] - ordered[n // 4]
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    return min(1.0, max(MIN_BANDWIDTH, 0.9 * spread / math.pow(n, 0.2)))


@dataclass(frozen=True)
class Model:
    """The beliefs one history gives, per phase (built once per monitor)."""

    beliefs: Mapping[str, Belief]

    def belief(self, phase: str | None) -> Belief:
        return self.beliefs.get(phase or PUSH) or self.beliefs[PUSH]


def model_of(history: History) -> Model:
    """Each phase's belief from the history (else the prior)."""
    beliefs = {PUSH: belief_of(history.samples(PUSH), PRIOR[PUSH])}
    for phase in PIPELINE:
        beliefs[phase] = belief_of(history.samples(phase), PRIOR[phase])
    return Model(beliefs)


# -- the schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What one poll round learned, as the schedule needs it."""

    at: float  # our time of the poll
    found: bool = False
    phase: str | None = None
    platform_at: float | None = None  # the platform's time of the current phase


@dataclass(frozen=True)
class Knobs:
    """The settings the schedule takes (SPEC §6)."""

    lag_budget: float = 0.5  # TRACKER_POLL_LAG_BUDGET
    max_interval: float = 30.0  # TRACKER_POLL_MAX_INTERVAL
    floor: float = FLOOR_S

    @property
    def low(self) -> float:
        return min(self.floor, self.max_interval)


def phase_clock(seen: Sequence[Seen], pushed_at: float) -> tuple[str | None, float]:
    """The current phase (None: not found, or no phase reported) and when it began: the
    platform's time of it when that is plausible (after the push, not after our poll), else
    our first sighting of it in the current run of polls."""
    found = [s for s in seen if s.found]
    if not found:
        return None, pushed_at
    last = found[-1]
    if not last.phase:
        return None, pushed_at
    first = last
    for s in reversed(found):
        if s.phase != last.phase:
            break
        first = s
    began = first.at
    when = last.platform_at
    if when is not None and pushed_at - MAX_SKEW_S <= when <= last.at + MAX_SKEW_S:
        began = min(max(when, pushed_at), last.at)
    return last.phase, began


def expected_lag(belief: Belief, elapsed: float, delta: float) -> float:
    """E[(Δ − R)+ | the phase lasts past `elapsed`], R the time left to the verdict: the
    detection lag a poll Δ from now would add."""
    seen, other = belief.alive(elapsed)
    if seen + other <= 1e-12:
        return delta  # nothing is believed left: an interval is all lag
    return belief.lag_mass(elapsed, delta) / (seen + other)


def lag_budget_delay(belief: Belief, elapsed: float, knobs: Knobs) -> float:
    """The first Δ in [low, max_interval] whose expected added lag reaches the budget."""
    low, high = knobs.low, knobs.max_interval
    if expected_lag(belief, elapsed, high) < knobs.lag_budget:
        return high
    if expected_lag(belief, elapsed, low) >= knobs.lag_budget:
        return low
    while high - low > 1e-3:  # bisection: the expected lag grows with Δ
        mid = (low + high) / 2
        if expected_lag(belief, elapsed, mid) >= knobs.lag_budget:
            high = mid
        else:
            low = mid
    return high


def in_tail(belief: Belief, elapsed: float) -> bool:
    """Past what the history has seen: the history explains less of what is left than the
    prior and the defensive share do (with no history, past what the prior has seen)."""
    seen, other = belief.alive(elapsed)
    if belief.kernels:
        return seen < other
    return belief.prior_alive(elapsed) < belief.defensive * (1 - _lu_cdf(elapsed))


def next_poll_at(
    model: Model,
    seen: Sequence[Seen],
    now: float,
    *,
    pushed_at: float,
    knobs: Knobs | None = None,
) -> float:
    """When to poll next (our epoch seconds), after the polls `seen` (oldest first, the last one
    just made at `now`) of a deployment pushed at `pushed_at`."""
    knobs = knobs or Knobs()
    phase, began = phase_clock(seen, pushed_at)
    since_push = max(now - pushed_at, 0.0)
    belief = model.belief(phase)
    elapsed = max(now - began, 0.0)
    delay = lag_budget_delay(belief, elapsed, knobs)
    if in_tail(belief, elapsed):
        delay = min(delay, max(knobs.low, min(TAIL_CAP_S, TAIL_SHARE * since_push)))
    if not any(s.found for s in seen) and since_push < FIND_AFTER_S:
        delay = min(delay, max(knobs.low, FIND_AFTER_S - since_push))
    return now + min(max(delay, knobs.low), knobs.max_interval)


def schedule_offsets(
    model: Model, max_wait: float, knobs: Knobs | None = None, found: Iterable[Seen] = ()
) -> list[float]:
    """The offsets from the push of a deployment never found (or as `found` says), up to
    `max_wait`: what the schedule does knowing nothing more."""
    seen = list(found)
    offsets = [0.0]
    while True:
        now = offsets[-1]
        step = next_poll_at(model, [*seen, Seen(now)], now, pushed_at=0.0, knobs=knobs)
        if step > max_wait + 1e-9:
            return offsets
        offsets.append(round(step, 9))


# -- closed forms -------------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def _ln_cdf(t: float, mu: float, s: float) -> float:
    if t <= 0:
        return 0.0
    return _phi((math.log(t) - mu) / s)


def _ln_cdf_integral(t: float, mu: float, s: float) -> float:
    """∫₀ᵗ Φ((ln u − μ)/σ) du = t Φ(z) − e^(μ + σ²/2) Φ(z − σ), z = (ln t − μ)/σ."""
    if t <= 0:
        return 0.0
    z = (math.log(t) - mu) / s
    return t * _phi(z) - math.exp(mu + s * s / 2) * _phi(z - s)


def _lu_cdf(t: float) -> float:
    a, b = DEFENSIVE_RANGE_S
    if t <= a:
        return 0.0
    if t >= b:
        return 1.0
    return math.log(t / a) / math.log(b / a)


def _lu_cdf_integral(t: float) -> float:
    a, b = DEFENSIVE_RANGE_S
    span = math.log(b / a)
    if t <= a:
        return 0.0
    top = min(t, b)
    inside = (top * math.log(top / a) - top + a) / span
    return inside + max(t - b, 0.0)
