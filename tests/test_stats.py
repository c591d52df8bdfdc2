"""`tracker stats`: numbers from real logs (events appended through `SQLiteLog.append` at set times)
checked against values computed by hand."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tracker.log.sqlite_stats as sqlite_stats
import tracker.read.stats as stats_module
from tracker.cli.app import parse_since
from tracker.cli.output import safe
from tracker.cli.text import duration, stats_text
from tracker.clock import iso
from tracker.errors import UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    LogsFetched,
    MonitorStarted,
    MonitorTimedOut,
    PushRecorded,
    PushRejected,
)
from tracker.log.sqlite import SQLiteLog
from tracker.policies import FixedPolicy, baseline_polls, polls_to_detect
from tracker.projections import ROW_COLUMNS, DeploymentRow, phase_spans
from tracker.read.stats import (
    CallTally,
    HistoryRow,
    Stats,
    Summary,
    histogram,
    percentile,
    summarise,
)

T0 = 1_800_000_000.0
NOW = T0 + 10_000.0


def sha(n: int) -> str:
    return f"{n:040x}"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SQLiteLog]:
    with SQLiteLog(tmp_path / "events.db", synchronous="NORMAL") as store:
        yield store


def compute_stats(log: SQLiteLog, **window: Any) -> Stats:
    """`read.stats.compute_stats` over the queries the log hands out, in one snapshot."""
    with log.stats_queries() as queries:
        return stats_module.compute_stats(queries, **window)


def every_row(store: SQLiteLog) -> list[DeploymentRow]:
    """The whole `deployments` projection, read by a plain SQLite client."""
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        found = conn.execute(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM deployments ORDER BY pushed_at, sha"
        )
        return [DeploymentRow(*r) for r in found]


def push(store: SQLiteLog, n: int, at: float, branch: str = "main") -> None:
    event = PushRecorded(sha=sha(n), branch=branch, source="cli", pushed_at=iso(at))
    store.append(sha(n), event, at=at)


def poll(
    store: SQLiteLog, n: int, at: float, phase: str | None = None, *, api: int = 1, db: int = 0,
    source: str = "digitalocean", ok: bool = True, kind: str | None = None,
    retry: bool = False, remaining: int | None = None,
) -> None:  # fmt: skip
    event = DeploymentPolled(
        source=source, ok=ok, found=ok and phase is not None, phase=phase,
        deployment_id=f"dep-{n}" if phase else None, api_calls=api, db_queries=db,
        error_kind=kind, error=None if ok else "boom", retry=retry,
        ratelimit_remaining=remaining, platform_at=iso(at) if phase else None,
    )  # fmt: skip
    store.append(sha(n), event, at=at)


def deploy(
    store: SQLiteLog,
    n: int,
    pushed: float,
    phases: dict[str, float],
    *,
    live: float,
    detected: float,
    outcome: str = "succeeded",
) -> None:
    """Push at `pushed`, a monitor 1 s later, one poll at each phase's start (offsets from the
    push), then the verdict detected at `detected` for a terminal phase the platform reached at
    `live` (both offsets from the push)."""
    push(store, n, pushed)
    store.append(sha(n), MonitorStarted(pid=1, host="h", policy="stepped"), at=pushed + 1)
    for phase, offset in phases.items():
        poll(store, n, pushed + offset, phase)
    done, platform = iso(pushed + detected), iso(pushed + live)
    if outcome == "succeeded":
        verdict: DeploymentSucceeded | DeploymentFailed = DeploymentSucceeded(
            deployment_id=f"dep-{n}", detected_at=done, platform_at=platform
        )
    else:
        verdict = DeploymentFailed(deployment_id=f"dep-{n}", detected_at=done, platform_at=platform)
    store.append(sha(n), verdict, at=pushed + detected)


def phase_durations(phases_json: Sequence[dict[str, float]]) -> dict[str, list[float]]:
    """Per phase, the time from its first sighting to the next phase's, over deployments: the
    plain computation the `phase:NAME` measures are checked against."""
    out: dict[str, list[float]] = {}
    for phases in phases_json:
        for name, seconds in phase_spans(phases):
            out.setdefault(name, []).append(seconds)
    return out


# -- arithmetic, by hand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([15, 20, 35, 40, 50], 30, 20),  # the textbook nearest-rank example
        ([15, 20, 35, 40, 50], 40, 20),
        ([15, 20, 35, 40, 50], 50, 35),
        ([15, 20, 35, 40, 50], 100, 50),
        (list(range(1, 11)), 50, 5),
        (list(range(1, 11)), 90, 9),
        (list(range(1, 11)), 95, 10),
        (list(range(1, 101)), 95, 95),
        ([7], 50, 7),
        ([7], 95, 7),
        ([], 50, None),
    ],
)
def test_percentile_is_nearest_rank(values: list[int], p: float, expected: int | None) -> None:
    assert percentile(values, p) == expected


def test_summary_of_values_and_of_nothing() -> None:
    assert summarise([400, 100, 300, 200]) == Summary(4, 250.0, 200, 400, 400, 100, 400)
    assert summarise([1500, 2500], scale=1000.0) == Summary(2, 2.0, 1.5, 2.5, 2.5, 1.5, 2.5)
    assert summarise([]) == Summary(0, None, None, None, None, None, None)


def test_phase_durations_run_from_a_phase_to_the_next_in_time_order() -> None:
    found = phase_durations(
        [
            {"PENDING_BUILD": 100.0, "BUILDING": 103.5, "DEPLOYING": 113.5, "ACTIVE": 120.0},
            {"BUILDING": 10.0, "PENDING_BUILD": 0.0, "ERROR": 30.0},  # out of order in JSON
            {"BUILDING": 5.0},  # one phase: nothing has ended
        ]
    )
    assert found == {"PENDING_BUILD": [3.5, 10.0], "BUILDING": [10.0, 20.0], "DEPLOYING": [6.5]}


def test_histogram_counts_every_value_once() -> None:
    bars = histogram(list(range(100)), buckets=4)
    assert [b.count for b in bars] == [25, 25, 25, 25]
    assert (bars[0].start_s, bars[-1].end_s) == (0, 100)  # edges on whole seconds over a minute
    assert [b.count for b in histogram([5.0, 5.0, 5.0])] == [3]
    assert histogram([]) == ()


def test_baseline_polls_equal_polls_to_detect() -> None:
    rng = random.Random(7)
    live = [-3.0, 0.0, 1e-10, 9.9999999999, 10.0, 10.0001, 479.0, 480.0, 481.0, 10_000.0]
    live += [round(rng.uniform(0, 500), 3) for _ in range(3000)]
    for v in live:
        assert baseline_polls(v) == polls_to_detect(FixedPolicy(10.0), v, 480.0), v


# -- from real logs ---------------------------------------------------------------------------


def seeded(store: SQLiteLog) -> None:
    """Four live deployments (100, 200, 300, 400 s), one failed, one pending, one rejected,
    one timed out."""
    for i, seconds in enumerate((100, 200, 300, 400)):
        pushed = T0 + 1000 * i
        deploy(
            store, i, pushed, {"PENDING_BUILD": 2.0, "BUILDING": 5.0, "DEPLOYING": 5.0 + i * 10},
            live=seconds - 1.5 - i, detected=seconds,
        )  # fmt: skip
    deploy(store, 4, T0 + 5000, {"BUILDING": 3.0}, live=47.0, detected=50.0, outcome="failed")
    push(store, 5, T0 + 6000)
    push(store, 6, T0 + 6100)
    store.append(sha(6), PushRejected(sha=sha(6), reason="non-fast-forward"), at=T0 + 6101)
    push(store, 7, T0 + 6200)
    store.append(sha(7), MonitorStarted(pid=2, host="h", policy="fixed"), at=T0 + 6201)
    poll(store, 7, T0 + 6201, "BUILDING")
    store.append(sha(7), MonitorTimedOut(waited_s=480.0, last_phase="BUILDING"), at=T0 + 6681)


def test_outcomes_and_success_rate(log: SQLiteLog) -> None:
    seeded(log)
    d = compute_stats(log, now=NOW).deployments
    assert (d.total, d.succeeded, d.failed, d.timed_out, d.rejected, d.in_progress) == (
        8, 4, 1, 1, 1, 1
    )  # fmt: skip
    assert (d.canceled, d.superseded, d.finished) == (0, 0, 6)
    assert d.success_rate == round(4 / 6, 4)


def test_push_to_live_and_detection_lag_by_hand(log: SQLiteLog) -> None:
    seeded(log)
    stats = compute_stats(log, now=NOW)
    # push to live is the platform's time of it (trusted: between the push and our detection)
    assert stats.durations.push_to_live == Summary(4, 247.0, 197.5, 395.5, 395.5, 98.5, 395.5)
    # lag = detected - live = 1.5 + i for the four live ones, 3.0 for the failed one
    assert stats.detection_lag_s == Summary(5, 3.0, 3.0, 4.5, 4.5, 1.5, 4.5)
    assert sum(b.count for b in stats.durations.push_to_live_histogram) == 4


def test_per_phase_durations_by_hand(log: SQLiteLog) -> None:
    seeded(log)
    phases = compute_stats(log, now=NOW).durations.phases
    assert list(phases) == ["PENDING_BUILD", "BUILDING", "DEPLOYING"]  # pipeline order
    assert phases["PENDING_BUILD"] == Summary(4, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0)
    # BUILDING lasts 0, 10, 20, 30 s (to DEPLOYING) and 47 s (to ERROR, the failed one)
    assert phases["BUILDING"] == Summary(5, 21.4, 20.0, 47.0, 47.0, 0.0, 47.0)
    # DEPLOYING starts at 5 + 10 i and ends when ACTIVE is detected at 100 (i+1)
    assert phases["DEPLOYING"] == Summary(4, 230.0, 185.0, 365.0, 365.0, 95.0, 365.0)


def test_fixed_poll_counterfactual_by_hand(log: SQLiteLog) -> None:
    seeded(log)
    fixed = compute_stats(log, now=NOW).fixed_10s
    # monitor starts 1 s after the push; live after 97.5, 196.5, 295.5, 394.5 s; failed 46 s;
    # timed out: 480 s after its monitor started (the whole schedule)
    live_after = [97.5, 196.5, 295.5, 394.5, 46.0, 480.0]
    assert [polls_to_detect(FixedPolicy(10), v, 480) for v in live_after] == [
        11, 21, 31, 41, 6, 49
    ]  # fmt: skip
    assert fixed.deployments == 6
    assert fixed.api_calls == 11 + 21 + 31 + 41 + 6 + 49
    assert fixed.our_api_calls == 4 * 3 + 1 + 1  # one call per poll
    assert fixed.ratio == round(14 / 159, 3)


def test_api_total_is_the_sum_over_poll_and_log_events(log: SQLiteLog) -> None:
    seeded(log)
    poll(log, 4, T0 + 5051, None, api=2, ok=False, kind="timeout", retry=True)
    poll(log, 4, T0 + 5052, None, api=0, db=1, source="mysql", ok=False, kind="connection")
    log.append(sha(4), LogsFetched(deployment_id="dep-4", api_calls=3, lines=20), at=T0 + 5053)
    log.append(sha(4), LogsFetched(deployment_id="dep-4", api_calls=1, error="403"), at=T0 + 5054)
    poll(log, 99, T0 + 5055, "BUILDING", api=5)  # a commit never pushed: still a real call
    stats = compute_stats(log, now=NOW)
    expected = sum(
        e.data["api_calls"] for e in log.events() if e.type in {"DeploymentPolled", "LogsFetched"}
    )
    assert stats.api_calls.total == expected == 14 + 2 + 4 + 5
    assert dict(stats.api_calls.by_source) == {"digitalocean": expected}
    assert (stats.db_queries.total, dict(stats.db_queries.by_source)) == (1, {"mysql": 1})
    assert dict(stats.errors.by_kind) == {"connection": 1, "logs": 1, "timeout": 1}
    assert (stats.errors.total, stats.errors.retries) == (3, 1)
    per = stats.api_calls.per_deployment  # deployments with calls: 3, 3, 3, 3, 1+2+4, 1
    assert per == Summary(6, 3.333, 3.0, 7.0, 7.0, 1.0, 7.0)


def test_last_minute_and_hour_are_relative_to_now(log: SQLiteLog) -> None:
    push(log, 1, NOW - 4000)
    for offset, calls in ((-30, 2), (-61, 3), (-3599, 4), (-3601, 5), (5, 7)):
        poll(log, 1, NOW + offset, "BUILDING", api=calls, remaining=4000 + calls)
    a = compute_stats(log, now=NOW).api_calls
    assert (a.last_minute, a.last_hour) == (2, 2 + 3 + 4)
    assert (a.limit_per_minute, a.limit_per_hour) == (250, 5000)
    assert (a.ratelimit_remaining, a.ratelimit_seen_at) == (4007, iso(NOW + 5))  # the last seen
    assert a.total == 21


def test_empty_log(log: SQLiteLog) -> None:
    stats = compute_stats(log, now=NOW)
    assert stats.deployments.total == 0 and stats.deployments.success_rate is None
    assert stats.durations.push_to_live == Summary()
    assert dict(stats.durations.phases) == {}
    assert (stats.api_calls.total, stats.api_calls.ratelimit_remaining) == (0, None)
    assert (stats.fixed_10s.api_calls, stats.fixed_10s.ratio) == (0, None)
    json.dumps(stats.to_dict())
    assert "deployments" in stats_text(stats)


def test_only_pending_pushes(log: SQLiteLog) -> None:
    for n in range(3):
        push(log, n, T0 + n)
    stats = compute_stats(log, now=NOW)
    d = stats.deployments
    assert (d.total, d.in_progress, d.finished, d.success_rate) == (3, 3, 0, None)
    assert stats.durations.push_to_live.count == 0 and stats.detection_lag_s.count == 0
    assert stats.fixed_10s.deployments == 0
    assert "3 pending or in progress" in stats_text(stats)


def test_since_that_excludes_everything(log: SQLiteLog) -> None:
    seeded(log)
    poll(log, 7, NOW - 10, "BUILDING", api=4)
    since = parse_since("5s", NOW)
    stats = compute_stats(log, now=NOW, since=since)
    assert stats.deployments.total == 0 and stats.api_calls.total == 0
    assert stats.durations.push_to_live.count == 0 and stats.errors.total == 0
    assert stats.api_calls.last_minute == 4  # rate-limit windows are account-wide
    assert stats.since == iso(NOW - 5)
    stats_text(stats)


def test_since_and_branch_select_deployments_and_their_calls(log: SQLiteLog) -> None:
    seeded(log)
    push(log, 20, T0 + 7000, branch="dev")
    poll(log, 20, T0 + 7001, "BUILDING", api=9)
    on_dev = compute_stats(log, now=NOW, branch="dev")
    assert (on_dev.deployments.total, on_dev.api_calls.total, on_dev.branch) == (1, 9, "dev")
    on_main = compute_stats(log, now=NOW, branch="main")
    assert (on_main.deployments.total, on_main.api_calls.total) == (8, 14)
    recent = compute_stats(log, now=NOW, since=T0 + 3000)  # pushes 3 .. 7 and the dev one
    assert recent.deployments.total == 6
    assert recent.durations.push_to_live.count == 1  # only the 400 s one was pushed since


def test_text_has_no_escape_codes_unless_asked(log: SQLiteLog) -> None:
    seeded(log)
    stats = compute_stats(log, now=NOW)
    plain = stats_text(stats, colour=False)
    assert "\033" not in plain
    assert "push to live" in plain and "a fixed 10 s poll" in plain and "█" in plain
    assert "\033[1m" in safe(stats_text(stats, colour=True))  # what `say` writes


def test_to_dict_has_the_contract_keys(log: SQLiteLog) -> None:
    seeded(log)
    out = json.loads(json.dumps(compute_stats(log, now=NOW).to_dict()))
    for key in ("deployments", "durations", "api_calls", "db_queries", "errors"):
        assert key in out
    assert {"detection_lag_s", "fixed_10s"} <= set(out)
    assert set(out["durations"]["push_to_live"]) >= {"count", "mean", "p50", "p90", "p95", "max"}
    assert out["fixed_10s"]["ratio"] == round(14 / 159, 3)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600),
     ("300", 300), ("1.5h", 5400), (".5m", 30), (" 10 S ", 10), ("0", 0)],
)  # fmt: skip
def test_parse_since(text: str, seconds: float) -> None:
    assert parse_since(text, NOW) == NOW - seconds


@pytest.mark.parametrize(
    "text", ["-5m", "nan", "inf", "-inf", "abc", "", "5x", "5 m s", "1e3", "9" * 400]
)
def test_parse_since_rejects_garbage(text: str) -> None:
    with pytest.raises(UsageError):
        parse_since(text, NOW)


# -- the indexed stats equal a plain computation over every row -------------------------------

LIVE_AFTER = (0.0, 0.5, 10.0, 10.001, 47.25, 99.999, 100.0, 479.999, 480.0, 481.0, 900.0)


def random_log(store: SQLiteLog, rng: random.Random, n: int) -> None:
    """`n` deployments on two branches with every outcome, failed and retried polls, two
    sources and log fetches; times on a millisecond grid (as the measures round them)."""
    for i in range(n):
        pushed = T0 + 600 * i + rng.randint(0, 599_999) / 1000
        push(store, i, pushed, branch=rng.choice(["main", "dev"]))
        if rng.random() < 0.1:
            store.append(sha(i), PushRejected(sha=sha(i)), at=pushed + 1)
            continue
        store.append(sha(i), MonitorStarted(pid=i, host="h", policy="stepped"), at=pushed + 1)
        at = pushed + 1
        for phase in rng.sample(["PENDING_BUILD", "BUILDING", "DEPLOYING"], rng.randint(0, 3)):
            at += rng.randint(0, 90_000) / 1000
            if rng.random() < 0.2:
                poll(store, i, at, api=rng.randint(0, 2), ok=False, retry=rng.random() < 0.5,
                     kind=rng.choice(["timeout", "http_5xx", None]))  # fmt: skip
            poll(store, i, at, phase, api=rng.randint(0, 2), remaining=rng.randint(0, 5000))
            if rng.random() < 0.3:
                poll(store, i, at + 0.5, phase, api=0, db=1, source="mysql")
        outcome = rng.random()
        live = (at - pushed) + rng.choice(LIVE_AFTER)
        done, platform = iso(pushed + live + rng.randint(0, 9_000) / 1000), iso(pushed + live)
        if outcome < 0.55:
            store.append(sha(i), DeploymentSucceeded(
                deployment_id=f"dep-{i}", detected_at=done, platform_at=platform,
            ), at=pushed + live + 10)  # fmt: skip
        elif outcome < 0.75:
            store.append(sha(i), DeploymentFailed(
                deployment_id=f"dep-{i}", detected_at=done, platform_at=platform,
            ), at=pushed + live + 10)  # fmt: skip
            store.append(sha(i), LogsFetched(deployment_id=f"dep-{i}", api_calls=2),
                         at=pushed + live + 11)  # fmt: skip
        elif outcome < 0.85:
            store.append(sha(i), MonitorTimedOut(waited_s=480.0), at=pushed + 481)


def reference(store: SQLiteLog, since: float | None, branch: str | None) -> dict[str, object]:
    """Stats computed the plain way: every row in Python, sorted lists, bisection."""
    every = every_row(store)
    rows = [
        r for r in every
        if (since is None or (r.pushed_at or 0) >= since) and branch in (None, r.branch)
    ]  # fmt: skip

    def ms(seconds: float) -> int:
        return round(seconds * 1000)

    finished = ("succeeded", "failed", "canceled", "superseded", "timed_out")
    compared = [
        r for r in rows
        if r.state in finished and r.api_calls > 0
        and (r.platform_finished_at or r.finished_at) is not None
    ]  # fmt: skip
    live_after = [
        (r.platform_finished_at or r.finished_at or 0) - (r.monitor_started_at or 0)
        for r in compared
    ]
    push_to_live = sorted(ms(r.push_to_live_s) for r in rows if r.push_to_live_s is not None)
    phases = phase_durations([json.loads(r.phases) for r in rows if r.phases])
    on_branch = {r.sha for r in every if branch in (None, r.branch)}
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        calls = [
            c for c in conn.execute(
                "SELECT sha, at, source, api_calls, db_queries, ok, error_kind, retry"
                " FROM source_calls"
            )
            if (since is None or c[1] >= since) and (branch is None or c[0] in on_branch)
        ]  # fmt: skip
    kinds: dict[str, int] = {}
    for c in calls:
        if not c[5]:
            kinds[c[6] or "unknown"] = kinds.get(c[6] or "unknown", 0) + 1
    fixed = sum(polls_to_detect(FixedPolicy(10.0), v, 480.0) for v in live_after)
    ours = sum(r.api_calls for r in compared)
    api_by = {s: sum(c[3] for c in calls if c[2] == s) for s in {c[2] for c in calls}}
    return {
        "total": len(rows),
        "succeeded": sum(r.state == "succeeded" for r in rows),
        "push_to_live": summarise(push_to_live, scale=1000.0),
        "histogram": histogram(push_to_live, scale=1000.0),
        "lag": summarise(
            [ms(r.detection_lag_s) for r in rows if r.detection_lag_s is not None], scale=1000.0
        ),
        "per_deployment": summarise([r.api_calls for r in rows if r.api_calls > 0]),
        "phases": {
            name: summarise([ms(v) for v in values], scale=1000.0)
            for name, values in phases.items()
        },
        "fixed": (len(live_after), fixed, ours),
        "api": {s: n for s, n in api_by.items() if n},
        "db": sum(c[4] for c in calls),
        "errors": kinds,
        "retries": sum(c[7] for c in calls),
    }


def observed(stats: Stats) -> dict[str, object]:
    return {
        "total": stats.deployments.total,
        "succeeded": stats.deployments.succeeded,
        "push_to_live": stats.durations.push_to_live,
        "histogram": stats.durations.push_to_live_histogram,
        "lag": stats.detection_lag_s,
        "per_deployment": stats.api_calls.per_deployment,
        "phases": dict(stats.durations.phases),
        "fixed": (
            stats.fixed_10s.deployments,
            stats.fixed_10s.api_calls,
            stats.fixed_10s.our_api_calls,
        ),
        "api": dict(stats.api_calls.by_source),
        "db": stats.db_queries.total,
        "errors": dict(stats.errors.by_kind),
        "retries": stats.errors.retries,
    }


@pytest.mark.parametrize("small_window", [sqlite_stats.SMALL_WINDOW, 0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indexed_stats_equal_a_plain_computation_over_every_row(
    log: SQLiteLog, seed: int, small_window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of reading a --since window: values read and sorted, and the index walked."""
    monkeypatch.setattr(sqlite_stats, "SMALL_WINDOW", small_window)
    rng = random.Random(seed)
    random_log(log, rng, 120)
    end = T0 + 600 * 120
    filters = [(None, None), (None, "dev"), (None, "nope")]
    for _ in range(6):  # --since anywhere, often inside an hour of calls
        filters.append((T0 + rng.uniform(-100, 600 * 121), rng.choice([None, "main"])))
    filters.append((end + 3600, None))
    for since, branch in filters:
        stats = compute_stats(log, now=end, since=since, branch=branch)
        assert observed(stats) == reference(log, since, branch), (since, branch)
    assert compute_stats(log, now=end).api_calls.total > 0


# -- what a person reads ----------------------------------------------------------------------


def test_a_commit_superseded_by_a_live_successor_counts_as_a_success(log: SQLiteLog) -> None:
    from tracker.events import DeploymentSuperseded

    deploy(log, 1, T0, {"BUILDING": 2.0}, live=60.0, detected=61.0)
    push(log, 2, T0 + 10)
    log.append(sha(2), DeploymentSuperseded(sha(1), "dep-1", went_live=True), at=T0 + 61)
    push(log, 3, T0 + 20)
    log.append(sha(3), DeploymentSuperseded(sha(1), "dep-1", went_live=False), at=T0 + 61)
    d = compute_stats(log, now=NOW).deployments
    assert (d.succeeded, d.superseded, d.superseded_live, d.finished) == (1, 2, 1, 3)
    assert d.success_rate == round(2 / 3, 4)  # the live-superseded one exits 0: a success
    text = stats_text(compute_stats(log, now=NOW))
    assert "66.7 % (2 of 3 finished went live; 1 superseded by a live successor)" in text
    assert log.rebuild().clean


def test_the_comparison_says_which_way_it_goes() -> None:
    from tracker.cli.text import Comparison, comparison_line

    more = comparison_line(Comparison(10.0, 4, 8, 39, 1.1))
    assert more == (
        "a fixed 10 s poll would have made 8 calls; this made 39, 4.9× more,"
        " for a mean detection lag of 1.1 s against about 5 s"
    )
    assert ", 1.5× fewer" in comparison_line(Comparison(10.0, 4, 30, 20, None))
    assert comparison_line(Comparison(10.0, 0, 0, 0, None)).endswith(
        "no finished deployment with API calls to compare"
    )


@pytest.mark.parametrize(
    "values",
    [[4.7, 4.75, 4.8, 4.81, 4.89], [5.0, 5.1], [1.0, 1.05], [30.0, 400.0, 4000.0], [59.9, 61.0]],
)
def test_the_histogram_fits_small_counts_and_its_labels_never_repeat(values: list[float]) -> None:
    bars = histogram(sorted(values))
    assert len(bars) <= len(values) and sum(b.count for b in bars) == len(values)
    labels = [f"{duration(b.start_s)}-{duration(b.end_s)}" for b in bars]
    assert len(set(labels)) == len(labels), labels
    assert all(b.start_s != b.end_s for b in bars) or len(bars) == 1


def test_stats_columns_line_up_on_a_colour_terminal(log: SQLiteLog, tmp_path: Path) -> None:
    """Through a real pseudo-terminal, colour on: each label column starts at the same place
    once the escape codes are taken out, and the colour is really there."""
    import os
    import re

    from tests.test_output import in_pty

    seeded(log)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    raw = in_pty(["--db", str(log.path), "stats"], env, tmp_path).decode()
    assert "\x1b[1m" in raw  # colour on
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    lines = text.splitlines()
    labelled = [
        ln
        for ln in lines
        if re.match(
            r"^(deployments|success rate|api calls|  per deploy"
            r"|  last minute|db queries|errors|compared) ",
            ln,
        )
    ]
    assert len(labelled) == 8, text
    assert all(ln[14] == " " and ln[15] != " " for ln in labelled), labelled  # values in column 15
    header = next(ln for ln in lines if ln.startswith("durations"))
    row = next(ln for ln in lines if ln.startswith("push to live "))
    assert len(header) == len(row), (header, row)  # the right-aligned columns end together


# -- the read side is backend-neutral ---------------------------------------------------------


class ListQueries:
    """`StatsQueries` over plain lists, answered the obvious way: what any log backend (MySQL's
    too) must answer, and proof that `compute_stats` needs nothing of SQLite."""

    def __init__(self, path: Path) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            self.measures = conn.execute(
                "SELECT sha, measure, value, pushed_at, branch FROM deployment_measures"
            ).fetchall()
            self.calls = conn.execute(
                "SELECT seq, at, source, api_calls, db_queries, ok, error_kind, retry,"
                " ratelimit_remaining, branch FROM source_calls"
            ).fetchall()

    def _window(self, since: float | None, branch: str | None) -> list[tuple[Any, ...]]:
        return [
            m for m in self.measures
            if (since is None or (m[3] is not None and m[3] >= since)) and branch in (None, m[4])
        ]  # fmt: skip

    def measure_totals(self, since: float | None, branch: str | None) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        for _, name, value, _, _ in self._window(since, branch):
            n, total = found.get(name, (0, 0))
            found[name] = (n + 1, total + value)
        return found

    def sorted_values(self, since: float | None, branch: str | None, pushed: int) -> None:
        return None  # always by rank: the path a large window takes

    def value_at_rank(
        self, name: str, rank: int, count: int, since: float | None, branch: str | None
    ) -> int | None:
        values = sorted(m[2] for m in self._window(since, branch) if m[1] == name)
        return values[rank - 1] if 0 < rank <= len(values) else None

    def count_in(
        self, name: str, low: float, high: float, *, closed: bool, since: float | None,
        branch: str | None,
    ) -> int:  # fmt: skip
        return sum(
            1 for m in self._window(since, branch)
            if m[1] == name and low <= m[2] and (m[2] <= high if closed else m[2] < high)
        )  # fmt: skip

    def call_tally(self, since: float | None, branch: str | None) -> CallTally:
        tally = CallTally()
        for _, at, source, api, db, ok, kind, retry, _, on in self.calls:
            if (since is not None and at < since) or branch not in (None, on):
                continue
            tally.api[source] = tally.api.get(source, 0) + api
            tally.db[source] = tally.db.get(source, 0) + db
            if not ok:
                tally.errors[kind or "unknown"] = tally.errors.get(kind or "unknown", 0) + 1
            tally.retries += bool(retry)
        tally.api = {k: v for k, v in tally.api.items() if v}
        tally.db = {k: v for k, v in tally.db.items() if v}
        return tally

    def shared_calls(self, since: float | None) -> int:
        return sum(c[3] for c in self.calls if not c[9] and (since is None or c[1] >= since))

    def last_ratelimit(self) -> tuple[int | None, float | None]:
        seen = [c for c in self.calls if c[8] is not None]
        newest = max(seen, default=None, key=lambda c: c[0])
        return (None, None) if newest is None else (newest[8], newest[1])

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        def within(seconds: float) -> int:
            return sum(c[3] for c in self.calls if now - seconds < c[1] <= now)

        return within(60.0), within(3600.0)

    def recent_finished(self, branch: str | None, limit: int) -> list[HistoryRow]:
        raise NotImplementedError  # not asked by compute_stats


@pytest.mark.parametrize("seed", [4, 5])
def test_compute_stats_answers_the_same_from_any_backends_queries(
    log: SQLiteLog, seed: int
) -> None:
    rng = random.Random(seed)
    random_log(log, rng, 60)
    end = T0 + 600 * 60
    plain = ListQueries(log.path)
    for since, branch in [(None, None), (None, "dev"), (T0 + 600 * 20.5, None), (T0 + 7, "main")]:
        ours = compute_stats(log, now=end, since=since, branch=branch)
        assert stats_module.compute_stats(plain, now=end, since=since, branch=branch) == ours
