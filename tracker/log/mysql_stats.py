"""The stats queries over the shared log's folded projections (`tracker.read.stats.StatsQueries`).

MySQL holds events only (SPEC §10): the projections are the same pure folds, kept in memory by
each client (`tracker.log.mysql`). A snapshot takes the fold's measure rows and call rows as they
are when it opens (every event up to one position folded), and answers every question from them
with the same meaning as SQLite's queries over `deployment_measures` and `source_calls`
(`tracker.log.sqlite_stats`): a window is the measures pushed at or after `since` and the calls
made at or after it. Each commit's measure rows are kept per version of its row, so a snapshot
recomputes only the commits that changed since the last one. Standard library only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from tracker.log.sqlite_stats import HISTORY_STATES
from tracker.projections import DeploymentRow, SourceCallRow, measure_rows
from tracker.read.stats import CallTally, HistoryRow

Measure = tuple[str, str, int, float, str | None]  # sha, measure, value, pushed_at, branch
_HISTORY_MEASURES = ("push_to_live_ms", "detection_lag_ms")


class MeasureCache:
    """Each commit's `deployment_measures` rows, kept while its row is at the same position."""

    def __init__(self) -> None:
        self._by_sha: dict[str, tuple[int, tuple[Measure, ...]]] = {}

    def measures(self, rows: Mapping[str, DeploymentRow]) -> list[Measure]:
        """The measure rows of every commit in `rows` (recomputed for those that changed)."""
        found: list[Measure] = []
        for sha, row in rows.items():
            kept = self._by_sha.get(sha)
            if kept is None or kept[0] != row.last_seq:  # a fold step always moves last_seq
                kept = (row.last_seq, tuple(measure_rows(row)))
                self._by_sha[sha] = kept
            found.extend(kept[1])
        return found


class MySQLStatsQueries:
    """The stats queries, answered from one snapshot of the fold (`snapshot`)."""

    def __init__(
        self,
        measures: list[Measure],
        calls: list[SourceCallRow],
        followed: dict[str, float | None],
    ) -> None:
        self._measures = measures
        self._calls = calls
        self._followed = followed  # a timed-out row's time followed (finished - pushed)
        self._windows: dict[tuple[float | None, str | None], dict[str, list[int]]] = {}

    def _in(self, since: float | None, branch: str | None) -> Iterable[Measure]:
        return (
            m for m in self._measures
            if (since is None or m[3] >= since) and (branch is None or m[4] == branch)
        )  # fmt: skip

    def _values(self, since: float | None, branch: str | None) -> dict[str, list[int]]:
        """Each measure's values in the window, in order (sorted once per window)."""
        found = self._windows.get((since, branch))
        if found is None:
            found = {}
            for _, name, value, _, _ in self._in(since, branch):
                found.setdefault(name, []).append(value)
            for values in found.values():
                values.sort()
            self._windows[(since, branch)] = found
        return found

    def measure_totals(self, since: float | None, branch: str | None) -> dict[str, tuple[int, int]]:
        return {name: (len(v), sum(v)) for name, v in self._values(since, branch).items()}

    def sorted_values(
        self, since: float | None, branch: str | None, pushed: int
    ) -> dict[str, list[int]] | None:
        """Always the values: they are in memory, so reading them whole is the cheaper way."""
        return {name: list(v) for name, v in self._values(since, branch).items()}

    def value_at_rank(
        self, name: str, rank: int, count: int, since: float | None, branch: str | None
    ) -> int | None:
        values = self._values(since, branch).get(name, [])
        return values[rank - 1] if 1 <= rank <= len(values) else None

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
        values = self._values(since, branch).get(name, [])
        end = (bisect.bisect_right if closed else bisect.bisect_left)(values, high)
        return max(0, end - bisect.bisect_left(values, low))

    def call_tally(self, since: float | None, branch: str | None) -> CallTally:
        """As `call_totals` and `source_calls` group them: a failure without a kind is
        `unknown`; sources that cost nothing are left out."""
        tally = CallTally()
        for call in self._calls:
            if (since is not None and call.at < since) or (
                branch is not None and call.branch != branch
            ):
                continue
            tally.api[call.source] = tally.api.get(call.source, 0) + call.api_calls
            tally.db[call.source] = tally.db.get(call.source, 0) + call.db_queries
            if not call.ok:
                kind = call.error_kind or "unknown"
                tally.errors[kind] = tally.errors.get(kind, 0) + 1
            if call.retry:
                tally.retries += 1
        tally.api = {k: v for k, v in tally.api.items() if v}
        tally.db = {k: v for k, v in tally.db.items() if v}
        return tally

    def shared_calls(self, since: float | None) -> int:
        """As SQLite's: the calls on no push's branch (the app's own stream), made since `since`."""
        return sum(
            call.api_calls
            for call in self._calls
            if not call.branch and (since is None or call.at >= since)
        )

    def last_ratelimit(self) -> tuple[int | None, float | None]:
        reported = [c for c in self._calls if c.ratelimit_remaining is not None]
        if not reported:
            return None, None
        newest = max(reported, key=lambda c: c.seq)
        return newest.ratelimit_remaining, float(newest.at)

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        return api_calls_by_window(self._calls, now)

    def recent_finished(self, branch: str | None, limit: int) -> list[HistoryRow]:
        """As SQLite's `HISTORY_SQL`: the last `limit` finished attempts by push time, each with
        its durations (one row with none when it has none)."""
        states = set(HISTORY_STATES)
        recent = sorted(
            ((m[0], m[1], m[3]) for m in self._measures
             if m[1] in states and (branch is None or m[4] == branch)),
            key=lambda r: (-r[2], r[0]),
        )[: max(limit, 0)]  # fmt: skip
        wanted = {sha for sha, _, _ in recent}
        durations: dict[str, list[tuple[str | None, int | None]]] = {}
        for sha, name, value, _, _ in self._measures:
            if sha in wanted and (name in _HISTORY_MEASURES or name.startswith("phase:")):
                durations.setdefault(sha, []).append((name, value))
        found = []
        for sha, state, _ in recent:
            followed = self._followed.get(sha) if state == "state:timed_out" else None
            for measure, number in durations.get(sha) or [(None, None)]:
                found.append(HistoryRow(sha, state, measure, number, followed))
        return found


def snapshot(
    rows: Mapping[str, DeploymentRow], calls: Mapping[int, SourceCallRow], cache: MeasureCache
) -> MySQLStatsQueries:
    """The stats queries over the fold as it is now (later folds do not change their answers)."""
    followed: dict[str, float | None] = {
        sha: None if r.finished_at is None or r.pushed_at is None else r.finished_at - r.pushed_at
        for sha, r in rows.items()
        if r.state == "timed_out"
    }
    return MySQLStatsQueries(cache.measures(rows), list(calls.values()), followed)


def api_calls_by_window(calls: Iterable[SourceCallRow], now: float) -> tuple[int, int]:
    """API calls made in the minute and the hour up to `now` (as SQLite's query counts them)."""
    minute = hour = 0
    for call in calls:
        if now - 3600.0 < call.at <= now:
            hour += call.api_calls
            if call.at > now - 60.0:
                minute += call.api_calls
    return minute, hour
