"""Polling schedules and retry delays, against schedules counted by hand."""

from __future__ import annotations

import math

import pytest

import tracker.policies as policies
from tracker.config import Settings
from tracker.monitor.decide import backoff, budget_wait, retry_delay
from tracker.monitor.sources.base import Observation
from tracker.policies import (
    FixedPolicy,
    InformedPolicy,
    SteppedPolicy,
    policy_from_settings,
    polls_to_detect,
)

# Stepped over 480 s: 0, 5, ..., 120 is 120/5 + 1 = 25 polls; then 135, 150, ..., 480 is
# (480 - 135)/15 + 1 = 24 polls. 49 in all.
STEPPED_480 = [5.0 * i for i in range(25)] + [135.0 + 15.0 * i for i in range(24)]
# Fixed 10 s over 480 s: 0, 10, ..., 480 is 49 polls.
FIXED_480 = [10.0 * i for i in range(49)]


@pytest.mark.parametrize(
    ("policy", "max_wait", "expected"),
    [
        (SteppedPolicy(), 480, STEPPED_480),
        (FixedPolicy(), 480, FIXED_480),
        (FixedPolicy(10), 25, [0, 10, 20]),
        (FixedPolicy(10), 0, [0]),
        (SteppedPolicy(5, 10, 15), 40, [0, 5, 10, 25, 40]),
        (SteppedPolicy(5, 12, 15), 40, [0, 5, 10, 15, 30]),  # switches after the poll at 15
        (SteppedPolicy(5, 0, 15), 31, [0, 15, 30]),  # switch_after 0: long from the start
        (SteppedPolicy(0.1, 0.3, 0.25), 1.0, [0, 0.1, 0.2, 0.3, 0.55, 0.8]),  # fractions
        (FixedPolicy(0.05), 0.2, [0, 0.05, 0.1, 0.15, 0.2]),
    ],
)
def test_schedule_matches_hand_counted_offsets(policy, max_wait, expected):
    assert policy.schedule(max_wait) == pytest.approx(expected)


def test_hand_counted_tables_have_the_counts_the_docstring_claims():
    assert len(STEPPED_480) == 49
    assert len(FIXED_480) == 49
    assert STEPPED_480[24] == 120 and STEPPED_480[25] == 135 and STEPPED_480[-1] == 480


@pytest.mark.parametrize(
    ("live_after", "fixed", "stepped"),
    [
        # fixed: polls at 0..T step 10 -> T/10 + 1; stepped: 25 up to 120, then (T-120)/15.
        (180, 19, 29),
        (210, 22, 31),
        (240, 25, 33),
        (270, 28, 35),
        (300, 31, 37),
        (0, 1, 1),  # live before the first poll
        (3, 2, 2),  # seen at the second poll (10 s vs 5 s)
        (121, 14, 26),  # just after the switch: fixed at 130, stepped at 135
        (10_000, 49, 49),  # never seen live: the whole schedule
    ],
)
def test_polls_to_detect_a_deployment(live_after, fixed, stepped):
    assert polls_to_detect(FixedPolicy(), live_after, 480) == fixed
    assert polls_to_detect(SteppedPolicy(), live_after, 480) == stepped


def test_module_docstring_states_the_computed_table():
    doc = policies.__doc__ or ""
    times = (180, 210, 240, 270, 300)
    fixed = [polls_to_detect(FixedPolicy(), t, 480) for t in times]
    stepped = [polls_to_detect(SteppedPolicy(), t, 480) for t in times]
    assert fixed == [19, 22, 25, 28, 31] and stepped == [29, 31, 33, 35, 37]
    assert "fixed 10 s        " + "      ".join(map(str, fixed)) in doc
    assert "stepped 5/15      " + "      ".join(map(str, stepped)) in doc
    assert "both make 49 polls" in doc


def test_delay_after_steps_at_the_switch():
    stepped = SteppedPolicy(5, 120, 15)
    assert stepped.delay_after(0, 1) == 5
    assert stepped.delay_after(119.9, 24) == 5
    assert stepped.delay_after(120, 25) == 15
    assert FixedPolicy(7.5).delay_after(1000, 99) == 7.5


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, InformedPolicy(0.5, 30.0)),
        ({"poll_policy": "stepped"}, SteppedPolicy(5, 120, 15)),
        (
            {"poll_policy": "stepped", "poll_initial": 1, "poll_switch_after": 3, "poll_long": 2},
            SteppedPolicy(1, 3, 2),
        ),
        ({"poll_policy": "fixed", "poll_interval": 0.5}, FixedPolicy(0.5)),
    ],
)
def test_policy_from_settings(env, expected):
    assert policy_from_settings(Settings(**env)) == expected


def test_policy_from_settings_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown poll policy"):
        policy_from_settings(Settings(poll_policy="sometimes"))


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.5),  # base 1: ceiling 1, half of it with rand 0
        (0, 0.5, 0.75),
        (1, 0.0, 1.0),
        (2, 0.999, 2 + 2 * 0.999),
        (3, 0.0, 4.0),
        (4, 0.0, 5.0),  # capped at 10: half of it
        (4, 1.0, 10.0),
        (10_000, 0.5, 7.5),  # no overflow for huge attempts
        (-3, 0.0, 0.5),  # negative attempts count as the first
    ],
)
def test_backoff_is_jittered_exponential_and_capped(attempt, rand, expected):
    assert backoff(attempt, base=1.0, cap=10.0, rand=rand) == pytest.approx(expected)


def _obs(**kw):
    return Observation(source="digitalocean", ok=kw.pop("ok", False), **kw)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("observation", "attempt", "rand", "expected"),
    [
        # 429 with retry-after wins over ratelimit-reset
        (
            _obs(
                error_kind="rate_limited",
                http_status=429,
                retry_after_s=7,
                ratelimit_reset=NOW + 30,
            ),
            0,
            0.5,
            7,
        ),
        # 429 without retry-after: until the reset
        (
            _obs(error_kind="rate_limited", http_status=429, ratelimit_reset=NOW + 42.5),
            0,
            0.5,
            42.5,
        ),
        # 429 flagged only by its status code
        (_obs(http_status=429, retry_after_s=7), 0, 0.0, 7),
        # a wait shorter than the interval never makes us poll faster than the policy
        (_obs(http_status=429, retry_after_s=3), 0, 0.0, 5),
        (_obs(error_kind="rate_limited", ratelimit_reset=NOW + 0.001), 0, 0.0, 5),
        # an unusable retry-after falls back to the reset, then to the backoff
        (_obs(error_kind="rate_limited", retry_after_s=0.0, ratelimit_reset=NOW + 30), 0, 0, 30),
        (_obs(error_kind="rate_limited", retry_after_s=-5.0, ratelimit_reset=NOW + 30), 0, 0, 30),
        (_obs(error_kind="rate_limited", retry_after_s=math.nan), 0, 0.5, 7.5),
        (_obs(error_kind="rate_limited", retry_after_s=math.inf), 0, 0.5, 7.5),
        (_obs(error_kind="rate_limited", ratelimit_reset=math.inf), 0, 0.5, 7.5),
        # 429 with neither, or a reset in the past: jittered, one to two intervals, doubling
        (_obs(error_kind="rate_limited"), 0, 0.0, 5),
        (_obs(error_kind="rate_limited"), 0, 0.999, 5 + 5 * 0.999),
        (_obs(error_kind="rate_limited", ratelimit_reset=NOW - 5), 2, 0.0, 20),
        (_obs(error_kind="rate_limited"), 9, 0.999, 60 / 2 + 30 * 0.999),
        # transient errors: backoff from interval/8 = 0.625, capped by the interval 5
        (_obs(error_kind="timeout"), 0, 0.0, 0.3125),
        (_obs(error_kind="connection"), 1, 0.0, 0.625),
        (_obs(error_kind="server_error", http_status=503), 2, 1.0, 2.5),
        (_obs(error_kind="server_error", http_status=502), 6, 0.999, 2.5 + 2.5 * 0.999),
        # not worth a quick retry: the normal interval
        (_obs(error_kind="auth", http_status=401), 0, 0.0, 5),
        (_obs(error_kind="malformed"), 3, 0.0, 5),
        (_obs(error_kind="database"), 3, 0.0, 5),
        (_obs(ok=True), 0, 0.0, 5),
        # healthy, but no calls left: wait for the reset
        (_obs(ok=True, ratelimit_remaining=0, ratelimit_reset=NOW + 20), 0, 0.0, 20),
        (_obs(ok=True, ratelimit_remaining=0, ratelimit_reset=NOW + 1), 0, 0.0, 5),
        (_obs(ok=True, ratelimit_remaining=0, ratelimit_reset=NOW + 1e12), 0, 0.0, 5),
    ],
)
def test_retry_delay(observation, attempt, rand, expected):
    delay = retry_delay(observation, NOW, attempt, interval=5.0, rand=rand)
    assert delay == pytest.approx(expected)
    assert math.isfinite(delay) and delay >= 0


@pytest.mark.parametrize(
    ("minute", "hour", "rand", "expected"),
    [
        (0, 0, 0.5, 0.0),
        (199, 3999, 0.9, 0.0),  # under 80 % of 250/min and of 5,000/h
        (200, 200, 0.0, 1.0),  # the minute's budget is spent: 1 to 5 s, jittered
        (200, 200, 0.5, 3.0),
        (10, 4000, 1.0, 5.0),  # the hour's budget is spent
    ],
)
def test_budget_wait_holds_off_only_near_the_machine_wide_limit(
    minute: int, hour: int, rand: float, expected: float
) -> None:
    assert budget_wait(minute, hour, rand) == pytest.approx(expected)
