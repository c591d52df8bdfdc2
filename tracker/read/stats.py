"""`tracker stats`: outcomes, durations, API calls, rate limits, errors and detection lag.

Computed from the projections only (never the raw log), through the few aggregate questions of
`StatsQueries` that the log's backend answers in one snapshot (`tracker.log.sqlite_stats` for
SQLite), so that 100,000 deployments cost a handful of queries rather than 100,000 Python rows.
No I/O here: the arithmetic on the answers. Standard library only.

Percentiles are **nearest-rank**: the p-th percentile of n sorted values is the value at 1-based
rank ceil(p / 100 * n). It is always an observed value, so it is easy to check by hand.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from tracker.clock import iso
from tracker.errors import LogError
from tracker.policies import BASELINE, LIMIT_PER_HOUR, LIMIT_PER_MINUTE
from tracker.projections import FINISHED_STATES
from tracker.schedule import HISTORY_SIZE, PIPELINE, History, Past

FIXED_INTERVAL_S = BASELINE.interval  # the original plan's poll: the counterfactual's
HISTOGRAM_BUCKETS = 8
# App Platform's phases in pipeline order, for a stable order of the per-phase table.
PHASE_ORDER = (
    "UNKNOWN", "PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING", "ACTIVE",
    "SUPERSEDED", "ERROR", "CANCELED",
)  # fmt: skip


# -- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """count, mean, nearest-rank p50/p90/p95, min and max of some values (None when empty)."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Deployments:
    """Deployments by outcome; `in_progress` counts pending, in progress and stale ones."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    superseded: int = 0
    timed_out: int = 0
    rejected: int = 0
    in_progress: int = 0
    finished: int = 0  # every terminal state but `rejected` (a push that never deployed)
    success_rate: float | None = None  # (succeeded + superseded_live) / finished
    superseded_live: int = 0  # superseded by a successor that contains it and went live (exit 0)


@dataclass(frozen=True)
class Bucket:
    """One bar of the push-to-live histogram: [start_s, end_s) (the last bar includes end_s)."""

    start_s: float
    end_s: float
    count: int


@dataclass(frozen=True)
class Durations:
    """Push to live (succeeded deployments) and each phase (start to the next phase's start)."""

    push_to_live: Summary = Summary()
    phases: Mapping[str, Summary] = field(default_factory=dict)
    push_to_live_histogram: tuple[Bucket, ...] = ()


@dataclass(frozen=True)
class ApiCalls:
    """HTTP requests to the platform API; the last-minute/hour windows are account-wide."""

    total: int = 0
    per_deployment: Summary = Summary()
    by_source: Mapping[str, int] = field(default_factory=dict)
    last_minute: int = 0
    last_hour: int = 0
    limit_per_minute: int = LIMIT_PER_MINUTE
    limit_per_hour: int = LIMIT_PER_HOUR
    ratelimit_remaining: int | None = None
    ratelimit_seen_at: str | None = None


@dataclass(frozen=True)
class DbQueries:
    """Queries to the deployments database, counted apart from API calls."""

    total: int = 0
    by_source: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Errors:
    """Failed calls to a source by kind, and how many calls were retries."""

    total: int = 0
    by_kind: Mapping[str, int] = field(default_factory=dict)
    retries: int = 0


@dataclass(frozen=True)
class FixedPoll:
    """What a fixed poll would have cost on the same finished deployments that made API calls."""

    interval_s: float = FIXED_INTERVAL_S
    deployments: int = 0
    api_calls: int = 0  # the fixed poll's cost: polls until it saw the terminal phase
    our_api_calls: int = 0
    ratio: float | None = None  # our_api_calls / api_calls


@dataclass(frozen=True)
class Stats:
    """Everything `tracker stats` reports; `to_dict()` is its JSON (SPEC §5)."""

    generated_at: str
    since: str | None = None
    branch: str | None = None
    deployments: Deployments = Deployments()
    durations: Durations = Durations()
    api_calls: ApiCalls = ApiCalls()
    db_queries: DbQueries = DbQueries()
    errors: Errors = Errors()
    detection_lag_s: Summary = Summary()
    fixed_10s: FixedPoll = FixedPoll()

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain


def _plain(value: Any) -> Any:
    """asdict() keeps Mapping fields as they are and tuples as tuples: make both JSON-plain."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- arithmetic -------------------------------------------------------------------------------


def nearest_rank(n: int, p: float) -> int:
    """The 1-based rank of the p-th percentile of n values: ceil(p/100 * n), within 1..n."""
    return min(max(1, math.ceil(p / 100 * n - 1e-9)), n)


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values: the value at rank ceil(p/100 * n)."""
    if not ordered:
        return None
    return ordered[nearest_rank(len(ordered), p) - 1]


def summarise(values: Sequence[float], *, ordered: bool = False, scale: float = 1.0) -> Summary:
    """The `Summary` of `values` divided by `scale` (pass `ordered=True` when they are sorted).

    `scale` lets callers hand over integer milliseconds: only the seven results are divided.
    """
    if not values:
        return Summary()
    xs = values if ordered else sorted(values)

    def out(v: float | None) -> float | None:
        return None if v is None else round(v / scale, 3)

    return Summary(
        count=len(xs), mean=out(math.fsum(xs) / len(xs)), p50=out(percentile(xs, 50)),
        p90=out(percentile(xs, 90)), p95=out(percentile(xs, 95)), min=out(xs[0]), max=out(xs[-1]),
    )  # fmt: skip


def histogram(
    ordered: Sequence[float], buckets: int = HISTOGRAM_BUCKETS, *, scale: float = 1.0
) -> tuple[Bucket, ...]:
    """Bars of one width from the smallest to the largest of sorted values (divided by
    `scale`): at most `buckets`, no more than there are values, edges on the labels' grid."""
    if not ordered:
        return ()
    low, high = ordered[0], ordered[-1]
    edges = histogram_edges(low, high, min(buckets, len(ordered)), scale=scale)
    if len(edges) == 1:
        return (Bucket(round(low / scale, 3), round(high / scale, 3), len(ordered)),)
    counts = [
        bisect.bisect_left(ordered, edges[i + 1]) - bisect.bisect_left(ordered, edges[i])
        for i in range(len(edges) - 1)
    ]
    counts[-1] += len(ordered) - bisect.bisect_left(ordered, edges[-1])  # the last bar is closed
    return tuple(
        Bucket(round(edges[i] / scale, 3), round(edges[i + 1] / scale, 3), counts[i])
        for i in range(len(counts))
    )


def label_step(high_s: float) -> float:
    """The precision `render.duration` shows a value near `high_s` seconds with: 0.1 s under a
    minute, 1 s under an hour, a minute beyond. A bar is never narrower, so labels never repeat."""
    if high_s < 60:
        return 0.1
    return 1.0 if high_s < 3600 else 60.0


def histogram_edges(
    low: float, high: float, buckets: int = HISTOGRAM_BUCKETS, *, scale: float = 1.0
) -> list[float]:
    """Edges of at most `buckets` bars of one width covering `low` to `high` (one edge when
    they are equal): the width a whole number of label steps, the edges on that grid."""
    if high <= low:
        return [low]
    grain = label_step(high / scale) * scale
    start = math.floor(low / grain + 1e-9) * grain
    step = max(1, math.ceil((high - low) / max(buckets, 1) / grain - 1e-9)) * grain
    bars = max(1, math.ceil((high - start) / step - 1e-9))  # the last bar is closed: it has `high`
    return [round(start + i * step, 6) for i in range(bars + 1)]


# -- what the read side asks of a log ---------------------------------------------------------
#
# Nothing here reads a row per deployment into Python. The log's backend answers counts and sums
# of every measure, a value at a rank (a percentile, a minimum, a maximum: an index walk in
# SQLite), counts between two values and the calls' tallies; the arithmetic on the answers is
# here, the same for every backend (`tracker.log.sqlite_stats` is SQLite's).


@dataclass
class CallTally:
    """Calls in a window: API calls and database queries by source, errors by kind, retries."""

    api: dict[str, int] = field(default_factory=dict)
    db: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0


class HistoryRow(NamedTuple):
    """One measure of one of the recent finished deployments (`StatsQueries.recent_finished`)."""

    sha: str
    state: str  # `state:succeeded` ...
    measure: str | None  # `push_to_live_ms`, `detection_lag_ms` or `phase:NAME`
    value: int | None
    followed_s: float | None  # for a timeout: how long it was followed


class StatsQueries(Protocol):
    """The questions `compute_stats` and `recent_history` ask of a log's projections, all in one
    read snapshot (`EventLog.stats_queries()`). A window is the deployments pushed since `since`
    (None: all) on `branch` (None: every branch); calls are those made in it."""

    def measure_totals(self, since: float | None, branch: str | None) -> dict[str, tuple[int, int]]:
        """Count and sum of each measure (`state:NAME`, `push_to_live_ms`, ...) in the window."""
        ...

    def sorted_values(
        self, since: float | None, branch: str | None, pushed: int
    ) -> dict[str, list[int]] | None:
        """Each measure's values in order, when reading a window of `pushed` deployments whole
        is the cheaper way; None when `value_at_rank` is."""
        ...

    def value_at_rank(
        self, name: str, rank: int, count: int, since: float | None, branch: str | None
    ) -> int | None:
        """The value at 1-based `rank` of the `count` values of `name`, in value order."""
        ...

    def count_in(
        self,
        name: str,
        low: float,
        high: float,
        *,
        closed: bool,
        since: float | None,
        branch: str | None,
    ) -> int:
        """How many values of `name` are at least `low` and below `high` (at most, `closed`)."""
        ...

    def call_tally(self, since: float | None, branch: str | None) -> CallTally:
        """The calls made in the window (for commits on `branch`)."""
        ...

    def shared_calls(self, since: float | None) -> int:
        """API calls made since `since` by requests that served several commits at once (a
        watcher's rounds): they are on the app's own stream (`app:...`), counted once there and
        in no commit's `api_calls`."""
        ...

    def last_ratelimit(self) -> tuple[int | None, float | None]:
        """The newest `ratelimit_remaining` a platform reported, and when (epoch seconds)."""
        ...

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        """API calls in the minute and the hour up to `now`, account-wide."""
        ...

    def recent_finished(self, branch: str | None, limit: int) -> list[HistoryRow]:
        """The last `limit` finished deployments on `branch`, newest first, a row per measure."""
        ...


def _outcomes(totals: Mapping[str, tuple[int, int]]) -> Deployments:
    counts = {name[6:]: n for name, (n, _) in totals.items() if name.startswith("state:") and n}
    finished = sum(counts.get(s, 0) for s in FINISHED_STATES)
    succeeded = counts.get("succeeded", 0)
    live = totals.get("superseded_live", (0, 0))[0]  # exit 0, as for a success (SPEC §4)
    return Deployments(
        total=sum(counts.values()), succeeded=succeeded, failed=counts.get("failed", 0),
        canceled=counts.get("canceled", 0), superseded=counts.get("superseded", 0),
        timed_out=counts.get("timed_out", 0), rejected=counts.get("rejected", 0),
        in_progress=sum(counts.get(s, 0) for s in ("pending", "in_progress", "stale")),
        finished=finished,
        success_rate=round((succeeded + live) / finished, 4) if finished else None,
        superseded_live=live,
    )  # fmt: skip


class _Measures:
    """The measures of the deployments pushed since `since` on `branch`, as `queries` give them."""

    def __init__(self, queries: StatsQueries, since: float | None, branch: str | None) -> None:
        self.queries, self.since, self.branch = queries, since, branch
        self.totals = queries.measure_totals(since, branch)
        pushed = sum(n for name, (n, _) in self.totals.items() if name.startswith("state:"))
        self.values = queries.sorted_values(since, branch, pushed)

    def count(self, name: str) -> int:
        return self.totals.get(name, (0, 0))[0]

    def total(self, name: str) -> int:
        return self.totals.get(name, (0, 0))[1]

    def at_rank(self, name: str, rank: int) -> int:
        """The value at 1-based `rank` in value order."""
        found = self.queries.value_at_rank(name, rank, self.count(name), self.since, self.branch)
        if found is None:
            raise LogError(
                f"the stats projections disagree about {name!r}; `tracker rebuild` repairs them"
            )
        return found

    def summary(self, name: str, scale: float = 1.0) -> Summary:
        if self.values is not None:
            return summarise(self.values.get(name, []), ordered=True, scale=scale)
        n = self.count(name)
        if n == 0:
            return Summary()

        def out(v: float) -> float:
            return round(v / scale, 3)

        p50, p90, p95 = (self.at_rank(name, nearest_rank(n, p)) for p in (50, 90, 95))
        return Summary(
            count=n, mean=out(self.total(name) / n), p50=out(p50), p90=out(p90), p95=out(p95),
            min=out(self.at_rank(name, 1)), max=out(self.at_rank(name, n)),
        )  # fmt: skip

    def histogram(self, name: str, scale: float = 1.0) -> tuple[Bucket, ...]:
        if self.values is not None:
            return histogram(self.values.get(name, []), scale=scale)
        n = self.count(name)
        if n == 0:
            return ()
        low, high = self.at_rank(name, 1), self.at_rank(name, n)
        edges = histogram_edges(low, high, min(HISTOGRAM_BUCKETS, n), scale=scale)
        if len(edges) == 1:
            return (Bucket(round(low / scale, 3), round(high / scale, 3), n),)
        last = len(edges) - 2
        counts = [
            self.count_in(name, edges[i], edges[i + 1], closed=i == last)
            for i in range(len(edges) - 1)
        ]
        return tuple(
            Bucket(round(edges[i] / scale, 3), round(edges[i + 1] / scale, 3), counts[i])
            for i in range(len(counts))
        )

    def count_in(self, name: str, low: float, high: float, *, closed: bool) -> int:
        return self.queries.count_in(
            name, low, high, closed=closed, since=self.since, branch=self.branch
        )

    def phases(self) -> dict[str, Summary]:
        rank = {name: i for i, name in enumerate(PHASE_ORDER)}
        names = [m[6:] for m in self.totals if m.startswith("phase:") and self.count(m)]
        names.sort(key=lambda n: (rank.get(n, len(rank)), n))
        return {name: self.summary("phase:" + name, scale=1000.0) for name in names}


# -- the computation --------------------------------------------------------------------------


def compute_stats(
    queries: StatsQueries,
    *,
    now: float,
    since: float | None = None,
    branch: str | None = None,
) -> Stats:
    """Stats of the deployments pushed since `since` on `branch`, and of their calls.

    Deployment counts, durations, detection lag, per-deployment calls and the fixed-poll
    comparison cover the deployments pushed in the window; call totals, by source and errors
    cover the calls made in it (for commits on `branch` when it is given); the last minute and
    hour and `ratelimit_remaining` are account-wide, whatever the filters. `queries` come from
    the log in one snapshot: `with log.stats_queries() as queries: compute_stats(queries, ...)`.
    """
    m = _Measures(queries, since, branch)
    outcomes = _outcomes(m.totals)
    push_to_live = m.summary("push_to_live_ms", scale=1000.0)
    durations = Durations(push_to_live, m.phases(), m.histogram("push_to_live_ms", 1000.0))
    per_deployment, lag = m.summary("api_calls"), m.summary("detection_lag_ms", 1000.0)
    # a watcher's requests that served several commits are on the app's stream: ours too
    ours = m.total("compared_api_calls") + queries.shared_calls(since)
    fixed = FixedPoll(
        deployments=m.count("fixed_10s_polls"), api_calls=m.total("fixed_10s_polls"),
        our_api_calls=ours,
        ratio=round(ours / m.total("fixed_10s_polls"), 3) if m.total("fixed_10s_polls") else None,
    )  # fmt: skip
    tally = queries.call_tally(since, branch)
    last_minute, last_hour = queries.api_calls_by_window(now)
    remaining, seen = queries.last_ratelimit()
    return Stats(
        generated_at=iso(now), since=None if since is None else iso(since), branch=branch,
        deployments=outcomes, durations=durations,
        api_calls=ApiCalls(
            total=sum(tally.api.values()), per_deployment=per_deployment,
            by_source=dict(sorted(tally.api.items())), last_minute=last_minute,
            last_hour=last_hour, ratelimit_remaining=remaining,
            ratelimit_seen_at=None if seen is None else iso(seen),
        ),
        db_queries=DbQueries(sum(tally.db.values()), dict(sorted(tally.db.items()))),
        errors=Errors(
            sum(tally.errors.values()), dict(sorted(tally.errors.items())), tally.retries
        ),
        detection_lag_s=lag, fixed_10s=fixed,
    )  # fmt: skip


# -- the informed schedule's history ---------------------------------------------------------


class AsksStats(Protocol):
    """What `recent_history` needs of a log: its stats queries in one snapshot (every
    `tracker.log.EventLog` has them; the read side names only the part it uses)."""

    def stats_queries(self) -> AbstractContextManager[StatsQueries]: ...


def recent_history(
    log: AsksStats, *, branch: str | None = None, limit: int = HISTORY_SIZE
) -> History:
    """The app's last `limit` finished deployments (on `branch`), newest first, as the
    `informed` schedule reads them: each phase's seconds (`phase:NAME`), and from the push to the
    verdict (`push_to_live_ms` for a success; the sum of the phases for a failure, which leaves
    out the seconds before the deployment appeared; the time followed for a timeout)."""
    found: dict[str, tuple[str, dict[str, float], list[float | None]]] = {}
    lags: dict[str, float] = {}
    order: list[str] = []
    with log.stats_queries() as queries:
        rows = queries.recent_finished(branch, limit)
    for sha, state, measure, value, followed in rows:
        if sha not in found:
            order.append(sha)
            found[sha] = (state[6:], {}, [None if followed is None else float(followed)])
        _, phases, total = found[sha]
        if value is None:
            continue
        if measure == "push_to_live_ms":
            total[0] = value / 1000.0
        elif measure == "detection_lag_ms":
            lags[sha] = value / 1000.0
        elif measure is not None:
            phases[measure[6:]] = value / 1000.0
    out = []
    for sha in order:
        state, phases, total = found[sha]
        _ends_at_the_platforms_time(phases, lags.get(sha, 0.0))
        verdict = total[0]
        if verdict is None and state in ("failed", "canceled") and phases:
            verdict = sum(phases.values())
        out.append(Past(state, phases, verdict))
    return History(tuple(out))


def _ends_at_the_platforms_time(phases: dict[str, float], lag: float) -> None:
    """The last phase's span ends where we saw the verdict; take our detection lag off it, so
    that the history is the platform's and not our own polling's."""
    if phases and lag > 0:
        last = max(phases, key=lambda p: PIPELINE.index(p) if p in PIPELINE else -1)
        phases[last] = max(phases[last] - lag, 0.0)
