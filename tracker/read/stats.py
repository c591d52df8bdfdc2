"""`tracker stats`: outcomes, durations, API calls, rate limits, errors and detection lag.

Computed from the projection tables only (never the raw log), with a few aggregate queries that
let SQLite do the summing and hand back value lists in one string each, so that 100,000
deployments cost a handful of queries rather than 100,000 Python rows. Standard library only.

Percentiles are **nearest-rank**: the p-th percentile of n sorted values is the value at 1-based
rank ceil(p / 100 * n). It is always an observed value, so it is easy to check by hand.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracker.cli.text import duration
from tracker.clock import iso
from tracker.errors import LogError, UsageError
from tracker.policies import BASELINE, LIMIT_PER_HOUR, LIMIT_PER_MINUTE
from tracker.projections import FINISHED_STATES
from tracker.schedule import HISTORY_SIZE, PIPELINE, History, Past
from tracker.words import count as counted
from tracker.words import seconds

if TYPE_CHECKING:
    from tracker.log.sqlite import SQLiteLog

FIXED_INTERVAL_S = BASELINE.interval  # the original plan's poll: the counterfactual's
HISTOGRAM_BUCKETS = 8
SMALL_WINDOW = 5_000  # deployments since a time: below this, their values are read and sorted
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


# -- reading the projections ------------------------------------------------------------------
#
# Nothing here reads a row per deployment into Python. Counts and sums of every measure come
# from `measure_totals` (by hour of the push; the partial hour of --since from the few
# deployments pushed in it). A percentile, a minimum or a maximum is one walk of the index
# `deployment_measures_by_value` to its rank, from the nearer end, filters answered from the
# index itself. Calls come from `call_totals` the same way (the partial hour from
# `source_calls`).

_HOUR = "CAST({} / 3600 AS INTEGER)"  # as the triggers bucket times into hours


def _filters(since: float | None, branch: str | None) -> tuple[str, list[Any]]:
    """Pushed since `since`, on `branch` (columns of `deployment_measures`)."""
    sql, args = "", list[Any]()
    if since is not None:
        sql += " AND pushed_at >= ?"
        args.append(since)
    if branch is not None:
        sql += " AND branch = ?"
        args.append(branch)
    return sql, args


def _measure_totals(
    conn: sqlite3.Connection, since: float | None, branch: str | None
) -> dict[str, tuple[int, int]]:
    """Count and sum of each measure over the deployments pushed since `since` on `branch`."""
    sql, args = "SELECT measure, sum(count), sum(total) FROM measure_totals WHERE 1", list[Any]()
    if branch is not None:
        sql += " AND branch = ?"
        args.append(branch)
    if since is not None:
        sql += (
            f" AND hour > {_HOUR.format('?')} GROUP BY 1"
            " UNION ALL SELECT m.measure, count(*), sum(m.value)"
            " FROM deployment_measures AS m INDEXED BY deployment_measures_by_pushed_at"
            f" WHERE m.pushed_at >= ? AND m.pushed_at < ({_HOUR.format('?')} + 1) * 3600 + 1"
            f" AND {_HOUR.format('m.pushed_at')} = {_HOUR.format('?')}"
        )
        args += [since, since, since, since]
        if branch is not None:
            sql += " AND m.branch = ?"
            args.append(branch)
    found: dict[str, tuple[int, int]] = {}
    for name, count, total in conn.execute(sql + " GROUP BY 1", args):
        before = found.get(name, (0, 0))
        found[name] = (before[0] + int(count), before[1] + int(total))
    return found


def _outcomes(totals: dict[str, tuple[int, int]]) -> Deployments:
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
    """The `deployment_measures` of the deployments pushed since `since` on `branch`."""

    def __init__(self, conn: sqlite3.Connection, since: float | None, branch: str | None) -> None:
        self.conn = conn
        self.where, self.args = _filters(since, branch)
        self.totals = _measure_totals(conn, since, branch)
        # A few deployments since a time: their values, found through the push-time index, are
        # cheaper than walks of the value index that pass every other deployment's.
        self.values: dict[str, list[int]] | None = None
        pushed = sum(n for name, (n, _) in self.totals.items() if name.startswith("state:"))
        if since is not None and pushed <= SMALL_WINDOW:
            sql = (
                "SELECT m.measure, m.value FROM deployment_measures AS m"
                " INDEXED BY deployment_measures_by_pushed_at WHERE m.pushed_at >= ?"
            )
            args: list[Any] = [since]
            if branch is not None:
                sql += " AND m.branch = ?"
                args.append(branch)
            self.values = {}
            for name, value in conn.execute(sql, args):
                self.values.setdefault(name, []).append(value)
            for values in self.values.values():
                values.sort()

    def count(self, name: str) -> int:
        return self.totals.get(name, (0, 0))[0]

    def total(self, name: str) -> int:
        return self.totals.get(name, (0, 0))[1]

    def at_rank(self, name: str, rank: int) -> int:
        """The value at 1-based `rank` in value order, walking the index from the nearer end."""
        n = self.count(name)
        ascending = rank - 1 <= n - rank
        found = self.conn.execute(
            f"SELECT value FROM deployment_measures WHERE measure = ?{self.where}"
            f" ORDER BY value {'ASC' if ascending else 'DESC'} LIMIT 1 OFFSET ?",
            [name, *self.args, rank - 1 if ascending else n - rank],
        ).fetchone()
        if found is None:
            raise LogError(
                f"the stats projections disagree about {name!r}; `tracker rebuild` repairs them"
            )
        return int(found[0])

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
        query = (
            f"SELECT count(*) FROM deployment_measures WHERE measure = ?{self.where}"
            " AND value >= ? AND value {} ?"
        )
        counts = [
            self.conn.execute(
                query.format("<=" if i == len(edges) - 2 else "<"),
                [name, *self.args, edges[i], edges[i + 1]],
            ).fetchone()[0]
            for i in range(len(edges) - 1)
        ]
        return tuple(
            Bucket(round(edges[i] / scale, 3), round(edges[i + 1] / scale, 3), counts[i])
            for i in range(len(counts))
        )

    def phases(self) -> dict[str, Summary]:
        rank = {name: i for i, name in enumerate(PHASE_ORDER)}
        names = [m[6:] for m in self.totals if m.startswith("phase:") and self.count(m)]
        names.sort(key=lambda n: (rank.get(n, len(rank)), n))
        return {name: self.summary("phase:" + name, scale=1000.0) for name in names}


@dataclass
class _CallTally:
    api: dict[str, int] = field(default_factory=dict)
    db: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0


_OUTCOME = "CASE WHEN ok THEN '' ELSE coalesce(error_kind, 'unknown') END"


def _tally_calls(conn: sqlite3.Connection, since: float | None, branch: str | None) -> _CallTally:
    """Calls by source, errors by kind and retries: whole hours from `call_totals`, and the
    calls of the hour that `since` falls in from `source_calls` (its rows at or after `since`)."""
    sql = (
        "SELECT source, ok, error_kind, retry, sum(calls), sum(api_calls), sum(db_queries)"
        " FROM call_totals WHERE 1"
    )
    args: list[Any] = []
    if branch is not None:
        sql += " AND branch = ?"
        args.append(branch)
    if since is not None:
        sql += f" AND hour > {_HOUR.format('?')}"
        args.append(since)
        sql += (
            f" GROUP BY 1, 2, 3, 4 UNION ALL SELECT source, ok, {_OUTCOME}, retry, count(*),"
            " sum(api_calls), sum(db_queries) FROM source_calls"
            f" WHERE at >= ? AND at < ({_HOUR.format('?')} + 1) * 3600 + 1"
            f" AND {_HOUR.format('at')} = {_HOUR.format('?')}"
        )
        args += [since, since, since]
        if branch is not None:
            sql += " AND branch = ?"
            args.append(branch)
    sql += " GROUP BY 1, 2, 3, 4"
    tally = _CallTally()
    for source, ok, kind, retry, calls, api, db in conn.execute(sql, args):
        tally.api[source] = tally.api.get(source, 0) + int(api)
        tally.db[source] = tally.db.get(source, 0) + int(db)
        if not ok:
            tally.errors[kind] = tally.errors.get(kind, 0) + int(calls)
        if retry:
            tally.retries += int(calls)
    tally.api = {k: v for k, v in tally.api.items() if v}
    tally.db = {k: v for k, v in tally.db.items() if v}
    return tally


def _shared_calls(conn: sqlite3.Connection, since: float | None) -> int:
    """API calls of the rounds that served several commits, made since `since`: they are on the
    app's stream (`app:...`, a stream no push projects, so `call_totals` files them under the
    branch ''), counted once there and in no commit's own `api_calls`. Whole hours from
    `call_totals`, the hour `since` falls in from `source_calls`, as `_tally_calls` reads."""
    sql = "SELECT coalesce(sum(api_calls), 0) FROM call_totals WHERE branch = ''"
    args: list[Any] = []
    if since is not None:
        sql += f" AND hour > {_HOUR.format('?')}"
        sql += (
            " UNION ALL SELECT coalesce(sum(api_calls), 0) FROM source_calls"
            f" WHERE at >= ? AND at < ({_HOUR.format('?')} + 1) * 3600 + 1"
            f" AND {_HOUR.format('at')} = {_HOUR.format('?')} AND branch IS NULL"
        )
        args += [since, since, since, since]
    return sum(int(row[0]) for row in conn.execute(sql, args))


def _last_ratelimit(conn: sqlite3.Connection) -> tuple[int | None, str | None]:
    found = conn.execute(
        "SELECT ratelimit_remaining, at FROM source_calls"
        " WHERE ratelimit_remaining IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return (None, None) if found is None else (int(found[0]), iso(found[1]))


# -- the computation --------------------------------------------------------------------------


def compute_stats(
    store: SQLiteLog,
    *,
    now: float,
    since: float | None = None,
    branch: str | None = None,
) -> Stats:
    """Stats of the deployments pushed since `since` on `branch`, and of their calls.

    Deployment counts, durations, detection lag, per-deployment calls and the fixed-poll
    comparison cover the deployments pushed in the window; call totals, by source and errors
    cover the calls made in it (for commits on `branch` when it is given); the last minute and
    hour and `ratelimit_remaining` are account-wide, whatever the filters.
    """
    with store.reading() as conn:
        conn.execute("BEGIN")  # one snapshot for every query
        try:
            m = _Measures(conn, since, branch)
            outcomes = _outcomes(m.totals)
            push_to_live = m.summary("push_to_live_ms", scale=1000.0)
            durations = Durations(push_to_live, m.phases(), m.histogram("push_to_live_ms", 1000.0))
            per_deployment, lag = m.summary("api_calls"), m.summary("detection_lag_ms", 1000.0)
            # a watcher's requests that served several commits are on the app's stream: ours too
            ours = m.total("compared_api_calls") + _shared_calls(conn, since)
            fixed = FixedPoll(
                deployments=m.count("fixed_10s_polls"), api_calls=m.total("fixed_10s_polls"),
                our_api_calls=ours,
                ratio=round(ours / m.total("fixed_10s_polls"), 3)
                if m.total("fixed_10s_polls") else None,
            )  # fmt: skip
            tally = _tally_calls(conn, since, branch)
            last_minute, last_hour = store.api_calls_by_window(now)
            remaining, seen_at = _last_ratelimit(conn)
        finally:
            conn.execute("COMMIT")
    return Stats(
        generated_at=iso(now), since=None if since is None else iso(since), branch=branch,
        deployments=outcomes, durations=durations,
        api_calls=ApiCalls(
            total=sum(tally.api.values()), per_deployment=per_deployment,
            by_source=dict(sorted(tally.api.items())), last_minute=last_minute,
            last_hour=last_hour, ratelimit_remaining=remaining, ratelimit_seen_at=seen_at,
        ),
        db_queries=DbQueries(sum(tally.db.values()), dict(sorted(tally.db.items()))),
        errors=Errors(
            sum(tally.errors.values()), dict(sorted(tally.errors.items())), tally.retries
        ),
        detection_lag_s=lag, fixed_10s=fixed,
    )  # fmt: skip


# -- the informed schedule's history ---------------------------------------------------------

_HISTORY_STATES = ("state:succeeded", "state:failed", "state:canceled", "state:timed_out")
# The last N finished deployments by push time (a backward walk of the push-time index that
# stops after N of them), then each one's measures through the (sha, measure) key, and for a
# timed-out one how long it was followed (its row; an earlier attempt's has none).
_HISTORY_SQL = f"""
WITH recent AS (
    SELECT sha, measure AS state, pushed_at
    FROM deployment_measures INDEXED BY deployment_measures_by_pushed_at
    WHERE measure IN ({", ".join("?" * len(_HISTORY_STATES))}){{branch}}
    ORDER BY pushed_at DESC LIMIT ?
)
SELECT r.sha, r.state, m.measure, m.value,
       CASE WHEN r.state = 'state:timed_out' THEN d.finished_at - d.pushed_at END
FROM recent AS r
LEFT JOIN deployment_measures AS m ON m.sha = r.sha
    AND (m.measure IN ('push_to_live_ms', 'detection_lag_ms') OR m.measure GLOB 'phase:*')
LEFT JOIN deployments AS d ON d.sha = r.sha AND r.state = 'state:timed_out'
ORDER BY r.pushed_at DESC, r.sha
"""


def recent_history(
    store: SQLiteLog, *, branch: str | None = None, limit: int = HISTORY_SIZE
) -> History:
    """The app's last `limit` finished deployments (on `branch`), newest first, as the
    `informed` schedule reads them: each phase's seconds (`phase:NAME`), and from the push to the
    verdict (`push_to_live_ms` for a success; the sum of the phases for a failure, which leaves
    out the seconds before the deployment appeared; the time followed for a timeout)."""
    sql = _HISTORY_SQL.format(branch=" AND branch = ?" if branch is not None else "")
    args: list[Any] = [*_HISTORY_STATES, *([branch] if branch is not None else []), limit]
    found: dict[str, tuple[str, dict[str, float], list[float | None]]] = {}
    lags: dict[str, float] = {}
    order: list[str] = []
    with store.reading() as conn:
        rows = conn.execute(sql, args).fetchall()
    for sha, state, measure, value, followed in rows:
        if sha not in found:
            order.append(sha)
            found[sha] = (state[6:], {}, [None if followed is None else float(followed)])
        _, phases, total = found[sha]
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


# -- --since ----------------------------------------------------------------------------------

MAX_SINCE_S = 100 * 365 * 86400.0  # further back than any log: a typo


def parse_since(text: str, now: float) -> float:
    """`--since 90s|30m|12h|7d|2w|300` (fractions welcome): the epoch time that far before now.
    The one duration parser of every option and setting (`config.parse_duration`)."""
    from tracker.config import parse_duration

    seconds = parse_duration(
        text, "--since", maximum=MAX_SINCE_S, error=UsageError, example="90s, 30m, 12h or 7d"
    )
    return now - seconds


# -- text for people --------------------------------------------------------------------------

_BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class Comparison:
    """Our calls against a fixed poll's on the same deployments, for the text: the stats' own
    (`fixed_10s`), or the demo's, whose compressed schedule is compared with the same baseline
    compressed alike."""

    interval_s: float
    deployments: int
    fixed_calls: int
    our_calls: int
    our_lag_s: float | None  # our mean detection lag, when the platform's times were known
    note: str = ""  # how the baseline was chosen, when it is not the plain 10 s
    fixed_lag_s: float | None = None  # the baseline's on the same deployments (else interval/2)


def comparison_of(stats: Stats) -> Comparison:
    f = stats.fixed_10s
    return Comparison(
        f.interval_s, f.deployments, f.api_calls, f.our_api_calls, stats.detection_lag_s.mean
    )


def comparison_line(c: Comparison) -> str:
    """`a fixed 10 s poll would have made 8 calls; this made 39, 4.9× more, for a mean
    detection lag of 1.1 s against about 5 s` (which way it goes, in words)."""
    every = f"a fixed {seconds(c.interval_s)} poll{c.note}"
    if c.fixed_calls == 0:
        return f"{every}: no finished deployment with API calls to compare"
    text = f"{every} would have made {counted(c.fixed_calls, 'call')}; this made {c.our_calls:,}"
    if c.our_calls > c.fixed_calls:
        text += f", {c.our_calls / c.fixed_calls:.1f}× more"
    elif c.our_calls < c.fixed_calls and c.our_calls:
        text += f", {c.fixed_calls / c.our_calls:.1f}× fewer"
    elif c.our_calls == c.fixed_calls:
        text += ", as many"
    if c.our_lag_s is not None:
        text += f", for a mean detection lag of {seconds(c.our_lag_s)}" + (
            f" against about {seconds(c.interval_s / 2)}"
            if c.fixed_lag_s is None
            else f" against {seconds(c.fixed_lag_s)}"
        )
    return text


_WIDTH = 14  # the label column of the outcome and call lines


def stats_text(stats: Stats, colour: bool = False, comparison: Comparison | None = None) -> str:
    """An aligned table and a histogram of push-to-live times; ANSI only when `colour`.

    Labels are padded before they are styled, so colour never counts toward a width.
    `comparison` replaces the fixed 10 s line (the demo's compressed schedule)."""

    def head(text: str, width: int = 0) -> str:
        from tracker.output import style

        pad = " " * max(width - len(text), 0)
        return (style(text, "1") if colour else text) + pad

    lines = [head(_title(stats)), ""]
    lines += _outcome_lines(stats.deployments, head)
    lines += ["", *_duration_lines(stats, head), ""]
    lines += _call_lines(stats, head, comparison or comparison_of(stats))
    bars = _histogram_lines(stats.durations.push_to_live_histogram)
    if bars:
        lines += ["", head(f"push to live ({stats.durations.push_to_live.count} deployments)")]
        lines += bars
    return "\n".join(lines)


def _title(stats: Stats) -> str:
    scope = [f"since {stats.since}" if stats.since else "all time"]
    if stats.branch:
        scope.append(f"branch {stats.branch}")
    return f"Deployment stats ({', '.join(scope)})"


def _outcome_lines(d: Deployments, head: Any) -> list[str]:
    if d.total == 0:
        return [f"{head('deployments', _WIDTH)} none"]
    counts = [
        ("succeeded", d.succeeded), ("failed", d.failed), ("canceled", d.canceled),
        ("superseded", d.superseded), ("timed out", d.timed_out), ("rejected", d.rejected),
        ("pending or in progress", d.in_progress),
    ]  # fmt: skip
    shown = ", ".join(f"{n:,} {name}" for name, n in counts if n)
    rate = "-" if d.success_rate is None else f"{d.success_rate * 100:.1f} %"
    live = d.succeeded + d.superseded_live
    why = f"; {d.superseded_live:,} superseded by a live successor" if d.superseded_live else ""
    return [
        f"{head('deployments', _WIDTH)} {d.total:,} ({shown})",
        f"{'success rate':<{_WIDTH}} {rate} ({live:,} of {d.finished:,} finished went live{why})",
    ]


def _duration_lines(stats: Stats, head: Any) -> list[str]:
    cols = ("count", "mean", "p50", "p90", "p95", "max")
    rows = [("push to live", stats.durations.push_to_live)]
    rows += [(f"  {name}", s) for name, s in stats.durations.phases.items()]
    rows.append(("detection lag", stats.detection_lag_s))
    width = max(16, *(len(label) + 2 for label, _ in rows))
    out = [head("durations", width) + head("".join(f"{c:>9}" for c in cols))]
    for label, s in rows:
        cells = [f"{s.count:,}"] + [duration(getattr(s, c)) for c in cols[1:]]
        out.append(f"{label:<{width}}" + "".join(f"{c:>9}" for c in cells))
    return out


def _call_lines(stats: Stats, head: Any, comparison: Comparison) -> list[str]:
    a, q, e = stats.api_calls, stats.db_queries, stats.errors
    per = a.per_deployment
    w = _WIDTH
    return [
        f"{head('api calls', w)} {a.total:,}{_by(a.by_source)}",
        f"{'  per deploy':<{w}} mean {_num(per.mean)}, p50 {_num(per.p50)}, max {_num(per.max)}",
        f"{'  last minute':<{w}} {a.last_minute:,} of {a.limit_per_minute:,}",
        f"{'  last hour':<{w}} {a.last_hour:,} of {a.limit_per_hour:,}",
        f"{'  remaining':<{w}} {_remaining(a)}",
        f"{head('db queries', w)} {q.total:,}{_by(q.by_source)}",
        f"{head('errors', w)} {e.total:,}{_by(e.by_kind)}, {e.retries:,} retries",
        f"{head('compared', w)} {comparison_line(comparison)}",
    ]


def _histogram_lines(buckets: Sequence[Bucket]) -> list[str]:
    if not buckets:
        return []
    top = max(b.count for b in buckets) or 1
    out = []
    for b in buckets:
        eighths = round(b.count / top * _BAR_WIDTH * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        span = f"{duration(b.start_s)}-{duration(b.end_s)}"
        out.append(f"  {span:>15} {bar:<{_BAR_WIDTH}} {b.count:,}")
    return out


def _by(counts: Mapping[str, int]) -> str:
    return f" ({', '.join(f'{k} {v:,}' for k, v in counts.items())})" if counts else ""


def _remaining(a: ApiCalls) -> str:
    if a.ratelimit_remaining is None:
        return "ratelimit-remaining never seen"
    return f"ratelimit-remaining {a.ratelimit_remaining:,} (at {a.ratelimit_seen_at})"


def _num(value: float | None) -> str:
    """A count's mean or percentile: whole, or with one decimal."""
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
