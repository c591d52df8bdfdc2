"""The `informed` schedule (tracker/schedule.py): tables of what it does, cold and with history,
past everything seen, against outliers; and the history read from the log."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from tracker.clock import iso
from tracker.events import DeploymentFailed, DeploymentPolled, DeploymentSucceeded, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.read.stats import recent_history
from tracker.schedule import (
    PUSH,
    History,
    Knobs,
    Past,
    Seen,
    default_max_wait,
    expected_lag,
    model_of,
    next_poll_at,
    phase_clock,
    schedule_offsets,
)

T0 = 1_800_000_000.0


def w1(rng: random.Random, scale: float = 1.0) -> dict[str, float]:
    """A W1-like deployment (design/polling.md §1): phase -> seconds."""

    def ln(median: float, cv: float) -> float:
        return median * math.exp(rng.gauss(0, math.sqrt(math.log(1 + cv * cv)))) * scale

    return {
        "PENDING_BUILD": ln(5, 0.5),
        "BUILDING": ln(150, 0.3),
        "PENDING_DEPLOY": ln(5, 0.5),
        "DEPLOYING": ln(75, 0.35),
    }


def history_of(phase_lists: list[dict[str, float]]) -> History:
    return History(tuple(Past("succeeded", p, sum(p.values()) + 3) for p in phase_lists))


W1_HISTORY = history_of([w1(random.Random(i)) for i in range(30)])


def replay(history: History, phases: dict[str, float], knobs: Knobs | None = None) -> tuple:
    """The pure schedule against one scripted deployment (appearing 3 s after the push, each
    poll seeing the phase and its start time as the API reports them): polls and lag."""
    model = model_of(history)
    starts, t = {}, 3.0
    for name, seconds in phases.items():
        starts[name] = t
        t += seconds
    end = t
    seen: list[Seen] = []
    now = 0.0
    while True:
        if now >= end:
            return len(seen) + 1, now - end
        current = [n for n, s in starts.items() if s <= now]
        if current:
            name = current[-1]
            seen.append(Seen(now, True, name, starts[name]))
        else:
            seen.append(Seen(now))
        nxt = next_poll_at(model, seen, now, pushed_at=0.0, knobs=knobs)
        assert nxt > now
        now = nxt


# -- tables -------------------------------------------------------------------------------------


def test_cold_prior_finds_the_deployment_early_then_spaces_the_polls() -> None:
    offsets = schedule_offsets(model_of(History()), 480)
    assert offsets[:3] == [0.0, 10.0, 40.0]  # the find poll at 10 s, then the 30 s cap
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(2.0 <= g <= 30.0 + 1e-9 for g in gaps)
    assert len(offsets) < 49  # fixed 10 s makes 49 polls over 480 s


@pytest.mark.parametrize(
    ("phase", "elapsed", "low", "high"),
    [
        # nothing in the history ends within 30 s of a build's start: the cap
        ("BUILDING", 0, 30.0, 30.0),
        ("BUILDING", 100, 30.0, 30.0),
        # near a build's usual end a deploy of a minute or more still follows
        ("BUILDING", 150, 30.0, 30.0),
        # a build far longer than any seen: every min(15 s, 5 % since the push)
        ("BUILDING", 400, 15.0, 15.0),
        # a deploy that just began: about 75 s to go
        ("DEPLOYING", 0, 30.0, 30.0),
        ("DEPLOYING", 70, 3.0, 9.0),
    ],
)
def test_after_history_the_schedule_keys_on_the_phase(phase, elapsed, low, high) -> None:
    model = model_of(W1_HISTORY)
    now = T0 + 500
    seen = [Seen(now, True, phase, now - elapsed)]
    delay = next_poll_at(model, seen, now, pushed_at=T0) - now
    assert low <= delay <= high


@pytest.mark.parametrize(
    ("since_push", "in_phase", "expected"),
    [(100.0, 80.0, 5.0), (200.0, 180.0, 10.0), (3000.0, 2700.0, 15.0)],
)
def test_past_everything_seen_it_polls_every_5_percent_of_the_elapsed_time(
    since_push, in_phase, expected
) -> None:
    """Deploys of 10 s in the history, one running for minutes: min(15 s, 5 % since the push)."""
    model = model_of(history_of([{"BUILDING": 10.0, "DEPLOYING": 10.0}] * 20))
    now = T0 + since_push
    seen = [Seen(now, True, "DEPLOYING", now - in_phase)]
    assert next_poll_at(model, seen, now, pushed_at=T0) - now == pytest.approx(expected)


def test_the_floor_and_the_cap_bound_every_interval() -> None:
    sharp = history_of([{"BUILDING": 100.0, "DEPLOYING": 50.0}] * 50)  # no spread at all
    model = model_of(sharp)
    for elapsed in range(0, 400, 3):
        for knobs in (Knobs(), Knobs(0.05, 30.0), Knobs(5.0, 12.0)):
            now = T0 + elapsed + 10
            seen = [Seen(now, True, "BUILDING", now - elapsed)]
            delay = next_poll_at(model, seen, now, pushed_at=T0, knobs=knobs) - now
            assert min(2.0, knobs.max_interval) <= delay <= knobs.max_interval + 1e-9


def test_a_bigger_lag_budget_makes_fewer_polls_and_more_lag() -> None:
    deployment = w1(random.Random(999))
    tight = replay(W1_HISTORY, deployment, Knobs(0.25, 30.0))
    default = replay(W1_HISTORY, deployment)
    loose = replay(W1_HISTORY, deployment, Knobs(2.0, 30.0))
    assert tight[0] > default[0] > loose[0]


def averaged(history: History, scale: float = 1.0, n: int = 30) -> tuple[float, float, float]:
    runs = [replay(history, w1(random.Random(10_000 + i), scale)) for i in range(n)]
    polls = [r[0] for r in runs]
    lags = [r[1] for r in runs]
    return sum(polls) / n, sum(lags) / n, max(lags)


def fixed_polls(scale: float = 1.0, n: int = 30) -> float:
    totals = [3 + sum(w1(random.Random(10_000 + i), scale).values()) for i in range(n)]
    return sum(math.ceil(t / 10) + 1 for t in totals) / n


def test_with_history_it_beats_a_fixed_10s_poll_at_the_same_mean_lag() -> None:
    """Fixed 10 s: a mean lag of 5 s. Here (30 W1-like deployments, continuous times) 0.55×
    the polls at a mean lag of 3.7 s, max 11 s."""
    polls, lag, worst = averaged(W1_HISTORY)
    assert polls <= 0.6 * fixed_polls()
    assert lag <= 4.5 and worst <= 30.0


def test_a_deployment_slower_than_its_history_is_followed_closely() -> None:
    polls, _lag, worst = averaged(W1_HISTORY, scale=3.0, n=15)
    assert polls <= 0.7 * fixed_polls(3.0, n=15)
    assert worst <= 30.0


def test_a_deployment_faster_than_its_history_is_seen_within_the_cap() -> None:
    _, _, worst = averaged(W1_HISTORY, scale=0.5)
    assert worst <= 30.0


def test_outliers_in_the_history_cost_little() -> None:
    rng = random.Random(7)
    poisoned = []
    for i in range(30):
        u = rng.random()
        scale = 5.0 if u < 0.1 else 0.1 if u < 0.2 else 1.0
        poisoned.append(w1(random.Random(i), scale))
    clean_polls, clean_lag, _ = averaged(W1_HISTORY)
    polls, lag, worst = averaged(history_of(poisoned))
    assert polls <= 1.2 * clean_polls
    assert lag <= clean_lag + 1.0 and worst <= 30.0


# -- pieces -------------------------------------------------------------------------------------


def test_samples_of_each_phase_keep_failures_and_pipeline_order() -> None:
    history = History(
        (
            Past("succeeded", {"DEPLOYING": 60.0, "BUILDING": 100.0}, 170.0),
            Past("failed", {"BUILDING": 40.0}, 40.0),  # failed in the build
            Past("timed_out", {"BUILDING": 500.0}, 480.0),  # censored: no samples
        )
    )
    assert history.samples("BUILDING") == [(100.0, 60.0), (40.0, 0.0)]
    assert history.samples("PENDING_DEPLOY") == [(1.0, 60.0)]  # gone through unseen
    assert history.samples("DEPLOYING") == [(60.0, 0.0)]
    assert history.samples(PUSH) == [(170.0, 0.0), (40.0, 0.0)]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], 480.0),  # no history: 480 s
        ([150.0] * 20, 480.0),  # 3 × 150 < 480
        ([1500.0] * 19 + [1800.0], 3 * 1500.0),  # a 25-minute app: p95 (rank 19 of 20)
        ([1500.0] * 18 + [1800.0] * 2, 3 * 1800.0),
        ([10_000.0] * 20, 4 * 3600.0),  # capped
    ],
)
def test_default_max_wait_is_three_times_the_p95(verdicts, expected) -> None:
    history = History(tuple(Past("succeeded", {}, v) for v in verdicts))
    assert default_max_wait(history) == expected


def test_timeouts_in_the_history_raise_the_default_wait() -> None:
    """An app whose every deployment timed out at 480 s is not timed out at 480 s forever."""
    history = History(tuple(Past("timed_out", {}, 480.0) for _ in range(5)))
    assert default_max_wait(history) == 3 * 480.0


@pytest.mark.parametrize(
    ("platform_at", "expected"),
    [
        (T0 + 50.0, T0 + 50.0),  # plausible: the platform's own start of the phase
        (None, T0 + 60.0),  # unset: our first sighting of the phase
        (T0 - 3600.0, T0 + 60.0),  # long before the push: not believed
        (T0 + 500.0, T0 + 60.0),  # after our poll: not believed
        (T0 - 2.0, T0),  # a little before the push (clock skew): moved to the push
    ],
)
def test_phase_clock_trusts_plausible_platform_times(platform_at, expected) -> None:
    seen = [
        Seen(T0, False),
        Seen(T0 + 30, True, "PENDING_BUILD", None),
        Seen(T0 + 60, True, "BUILDING", None),
        Seen(T0 + 90, True, "BUILDING", platform_at),
    ]
    assert phase_clock(seen, T0) == ("BUILDING", expected)


def test_expected_lag_grows_with_the_interval() -> None:
    belief = model_of(W1_HISTORY).belief("DEPLOYING")
    lags = [expected_lag(belief, 60.0, d) for d in (1, 5, 10, 20, 30)]
    assert lags == sorted(lags) and lags[0] < 0.1 < lags[-1]


def test_a_phase_gone_through_unseen_is_believed_short_and_followed_by_the_rest() -> None:
    """PENDING_DEPLOY is never in this history (5 s between two polls): seen now, a whole
    deploy of about 60 s still follows, so nothing is expected within the next 20 s."""
    history = history_of([{"BUILDING": 100.0, "DEPLOYING": 60.0}] * 10)
    assert history.samples("PENDING_DEPLOY") == [(1.0, 60.0)] * 10
    model = model_of(history)
    now = T0 + 100
    pending = next_poll_at(model, [Seen(now, True, "PENDING_DEPLOY", now)], now, pushed_at=T0)
    assert pending - now >= 20.0


# -- the history in the log ---------------------------------------------------------------------


def record(store: SQLiteLog, sha: str, at: float, phases: dict[str, float], fails: bool) -> float:
    """A deployment as a monitor records it: push, a poll per phase (with the platform's time of
    it), the verdict. Returns the time of the verdict."""
    store.append(sha, PushRecorded(sha=sha, branch="main", pushed_at=iso(at)), at=at)
    t = at + 2
    for name, seconds in phases.items():
        poll = DeploymentPolled("digitalocean", True, True, name, platform_at=iso(t), api_calls=1)
        store.append(sha, poll, at=t + 1)
        t += seconds
    if fails:
        verdict = DeploymentFailed("d", "ERROR", reason={}, platform_at=iso(t))
        store.append(sha, verdict, at=t + 1)
    else:
        success = DeploymentSucceeded("d", platform_at=iso(t), push_to_live_s=t - at)
        store.append(sha, success, at=t + 1)
    return t + 1


def test_the_history_is_read_from_the_logs_measures_newest_first(store: SQLiteLog) -> None:
    at = T0
    for n in range(5):
        phases = {"PENDING_BUILD": 5.0, "BUILDING": 100.0 + n, "DEPLOYING": 60.0}
        at = record(store, f"{n:040x}", at, phases, fails=n == 2) + 60
    history = recent_history(store, branch="main", limit=4)
    assert len(history.deployments) == 4
    newest = history.deployments[0]
    assert newest.state == "succeeded"
    # the last phase ends at the platform's time of the verdict (not our detection, 1 s later)
    assert newest.phases == {"PENDING_BUILD": 5.0, "BUILDING": 104.0, "DEPLOYING": 60.0}
    assert newest.push_to_verdict_s == pytest.approx(2 + 5 + 104 + 60)
    failed = history.deployments[2]
    # a failure's: the sum of its phases (not the 2 s before it appeared)
    assert failed.state == "failed" and failed.push_to_verdict_s == pytest.approx(5 + 102 + 60)
    assert recent_history(store, branch="other").deployments == ()


def test_the_history_query_walks_indexes(store: SQLiteLog) -> None:
    import contextlib
    import sqlite3

    from tracker.log.sqlite_stats import HISTORY_SQL as _HISTORY_SQL

    record(store, "a" * 40, T0, {"BUILDING": 10.0}, fails=False)
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + _HISTORY_SQL.format(branch=""),
            ["state:succeeded", "state:failed", "state:canceled", "state:timed_out", 100],
        ).fetchall()
    details = " | ".join(str(r[-1]) for r in plan)
    assert "deployment_measures_by_pushed_at" in details
    assert "USING INDEX sqlite_autoindex_deployment_measures" in details
    assert "TEMP B-TREE FOR ORDER BY" not in details.split("recent")[0]
