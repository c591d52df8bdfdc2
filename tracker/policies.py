"""Polling schedules: pure arithmetic, no clock, no I/O (retry delays: `tracker.monitor.decide`).

Three policies (SPEC §6): `informed` (the default) schedules each poll from the app's history and
what the polls so far have seen (`tracker.schedule`); `fixed` polls every `poll_interval`;
`stepped` polls every `poll_initial` until `poll_switch_after` seconds after the monitor started,
then every `poll_long`. The first poll is at 0 s and the monitor stops at the first poll that sees
the deployment live. `fixed` and `stepped` are kept for comparison (bench/README.md).

What a 3 to 5 minute deployment costs per source, with the defaults (computed by `polls_to_detect`,
checked in tests/test_policies.py), counting the poll at 0 s:

    live after      180 s   210 s   240 s   270 s   300 s
    fixed 10 s        19      22      25      28      31
    stepped 5/15      29      31      33      35      37

Stepped spends 25 polls (0, 5, ..., 120 s) in its first two minutes alone, so for these
deployments it costs 6 to 10 polls *more* than a fixed 10 s poll, not fewer: the plan's "8 to 12"
does not follow from its own schedule. Over the whole 480 s `max_wait` both make 49 polls. What
stepped buys is latency early on: a deployment that is live within two minutes is seen at most
5 s late (mean 2.5 s) instead of 10 s (mean 5 s); after two minutes it is seen up to 15 s late
(mean 7.5 s). With both sources configured, each poll is one database query and one or more API
calls, so the API call count follows the same table.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from tracker import schedule
from tracker.schedule import History, Knobs, Model, Seen

if TYPE_CHECKING:
    from tracker.config import Settings

_EPS = 1e-9  # so that 0.1 + 0.2 counts as having reached 0.3


class PollPolicy(Protocol):
    """When to poll next, given the time since the monitor started."""

    @property
    def name(self) -> str: ...

    def delay_after(self, elapsed_s: float, polls_so_far: int) -> float: ...

    def schedule(self, max_wait: float) -> list[float]: ...


def _schedule(policy: PollPolicy, max_wait: float) -> list[float]:
    """Poll offsets from 0 to `max_wait` inclusive, following `policy.delay_after`."""
    offsets = [0.0]
    while True:
        step = policy.delay_after(offsets[-1], len(offsets))
        if step <= 0:
            raise ValueError(f"{policy.name}: a poll delay must be > 0, got {step}")
        nxt = round(offsets[-1] + step, 9)
        if nxt > max_wait + _EPS:
            return offsets
        offsets.append(nxt)


@dataclass(frozen=True)
class FixedPolicy:
    """Every `interval` seconds: the original plan, kept for comparison."""

    interval: float = 10.0
    name: ClassVar[str] = "fixed"

    def delay_after(self, elapsed_s: float, polls_so_far: int) -> float:
        return self.interval

    def schedule(self, max_wait: float) -> list[float]:
        return _schedule(self, max_wait)


@dataclass(frozen=True)
class SteppedPolicy:
    """Every `initial` seconds until `switch_after` seconds have passed, then every `long`."""

    initial: float = 5.0
    switch_after: float = 120.0
    long: float = 15.0
    name: ClassVar[str] = "stepped"

    def delay_after(self, elapsed_s: float, polls_so_far: int) -> float:
        return self.initial if elapsed_s < self.switch_after - _EPS else self.long

    def schedule(self, max_wait: float) -> list[float]:
        return _schedule(self, max_wait)


@dataclass(frozen=True)
class InformedPolicy:
    """From what the log knows (`tracker.schedule`): the app's past phase durations and what
    this deployment's polls have seen. The monitor gives it the history once (`with_history`)
    and asks `next_poll_at` after every round; `delay_after` is the schedule of a deployment
    never found, which is all that the elapsed time and a count can say."""

    lag_budget: float = 0.5
    max_interval: float = 30.0
    model: Model = field(default=schedule.model_of(History()), compare=False, repr=False)
    name: ClassVar[str] = "informed"

    @property
    def knobs(self) -> Knobs:
        return Knobs(self.lag_budget, self.max_interval)

    def with_history(self, history: History) -> InformedPolicy:
        return InformedPolicy(self.lag_budget, self.max_interval, schedule.model_of(history))

    def next_poll_at(self, seen: Sequence[Seen], now: float, *, pushed_at: float) -> float:
        return schedule.next_poll_at(self.model, seen, now, pushed_at=pushed_at, knobs=self.knobs)

    def delay_after(self, elapsed_s: float, polls_so_far: int) -> float:
        return self.next_poll_at([Seen(elapsed_s)], elapsed_s, pushed_at=0.0) - elapsed_s

    def schedule(self, max_wait: float) -> list[float]:
        return schedule.schedule_offsets(self.model, max_wait, self.knobs)


def policy_from_settings(settings: Settings) -> PollPolicy:
    """The policy the settings name (`config` has already validated the name and numbers)."""
    if settings.poll_policy == "informed":
        return InformedPolicy(settings.poll_lag_budget, settings.poll_max_interval)
    if settings.poll_policy == "fixed":
        return FixedPolicy(settings.poll_interval)
    if settings.poll_policy == "stepped":
        return SteppedPolicy(settings.poll_initial, settings.poll_switch_after, settings.poll_long)
    raise ValueError(f"unknown poll policy {settings.poll_policy!r}")


def polls_to_detect(policy: PollPolicy, live_after_s: float, max_wait: float) -> int:
    """How many polls `policy` makes until the first one at or after `live_after_s`.

    A deployment never seen live within `max_wait` costs the whole schedule.
    """
    offsets = policy.schedule(max_wait)
    for count, offset in enumerate(offsets, start=1):
        if offset >= live_after_s - _EPS:
            return count
    return len(offsets)


BASELINE = FixedPolicy(10.0)  # the original plan's poll: what `tracker stats` compares ours with
BASELINE_MAX_WAIT_S = 480.0
_BASELINE_OFFSETS = tuple(BASELINE.schedule(BASELINE_MAX_WAIT_S))


def baseline_polls(live_after_s: float) -> int:
    """`polls_to_detect(BASELINE, live_after_s, BASELINE_MAX_WAIT_S)`, by bisection (it runs
    once per finished deployment in every replay of the log)."""
    found = bisect.bisect_left(_BASELINE_OFFSETS, live_after_s - _EPS)
    return min(found + 1, len(_BASELINE_OFFSETS))


# DigitalOcean's API limits, per token (reference/digitalocean-apps-api.md). Every monitor on the
# machine shares them, so a monitor looks at what the whole machine spent before it asks.
LIMIT_PER_MINUTE = 250
LIMIT_PER_HOUR = 5000
