"""The stats queries over SQLite's projection tables (`tracker.read.stats.StatsQueries`).

A few aggregate queries let SQLite do the summing: whole hours come from the totals tables that
the triggers of `schema.sql` keep, the hour that `--since` falls in from the rows, and a rank is a
walk of the value index from its nearer end, so that 100,000 deployments cost a handful of
queries rather than 100,000 Python rows. The arithmetic on the answers is the read side's.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tracker.read.stats import CallTally, HistoryRow

SMALL_WINDOW = 5_000  # deployments since a time: below this, their values are read and sorted
_HOUR = "CAST({} / 3600 AS INTEGER)"  # as the triggers bucket times into hours
_OUTCOME = "CASE WHEN ok THEN '' ELSE coalesce(error_kind, 'unknown') END"


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


def api_calls_by_window(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
    """API calls made by every monitor on this machine in the minute and the hour up to
    `now`: what the token's rate limits (per minute, per hour) count."""
    found = conn.execute(
        "SELECT coalesce(sum(CASE WHEN at > ? THEN api_calls END), 0),"
        " coalesce(sum(api_calls), 0) FROM source_calls WHERE at > ? AND at <= ?",
        (now - 60.0, now - 3600.0, now),
    ).fetchone()
    return int(found[0]), int(found[1])


class SQLiteStatsQueries:
    """The stats queries, asked on `conn` inside the read transaction the log opened for them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def measure_totals(self, since: float | None, branch: str | None) -> dict[str, tuple[int, int]]:
        """Count and sum of each measure over the deployments pushed since `since` on
        `branch`: whole hours from `measure_totals`, the hour of `since` from its rows."""
        sql = "SELECT measure, sum(count), sum(total) FROM measure_totals WHERE 1"
        args: list[Any] = []
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
        for name, count, total in self._conn.execute(sql + " GROUP BY 1", args):
            before = found.get(name, (0, 0))
            found[name] = (before[0] + int(count), before[1] + int(total))
        return found

    def sorted_values(
        self, since: float | None, branch: str | None, pushed: int
    ) -> dict[str, list[int]] | None:
        """Each measure's values in order, for a few (`pushed`) deployments since a time: found
        through the push-time index, they are cheaper than walks of the value index that pass
        every other deployment's. None otherwise: ask `value_at_rank`."""
        if since is None or pushed > SMALL_WINDOW:
            return None
        sql = (
            "SELECT m.measure, m.value FROM deployment_measures AS m"
            " INDEXED BY deployment_measures_by_pushed_at WHERE m.pushed_at >= ?"
        )
        args: list[Any] = [since]
        if branch is not None:
            sql += " AND m.branch = ?"
            args.append(branch)
        values: dict[str, list[int]] = {}
        for name, value in self._conn.execute(sql, args):
            values.setdefault(name, []).append(value)
        for found in values.values():
            found.sort()
        return values

    def value_at_rank(
        self, name: str, rank: int, count: int, since: float | None, branch: str | None
    ) -> int | None:
        """The value at 1-based `rank` of `count` in value order, walking the index from the
        nearer end; None when there is no such row."""
        where, args = _filters(since, branch)
        ascending = rank - 1 <= count - rank
        found = self._conn.execute(
            f"SELECT value FROM deployment_measures WHERE measure = ?{where}"
            f" ORDER BY value {'ASC' if ascending else 'DESC'} LIMIT 1 OFFSET ?",
            [name, *args, rank - 1 if ascending else count - rank],
        ).fetchone()
        return None if found is None else int(found[0])

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
        where, args = _filters(since, branch)
        found = self._conn.execute(
            f"SELECT count(*) FROM deployment_measures WHERE measure = ?{where}"
            f" AND value >= ? AND value {'<=' if closed else '<'} ?",
            [name, *args, low, high],
        ).fetchone()
        return int(found[0])

    def call_tally(self, since: float | None, branch: str | None) -> CallTally:
        """Calls by source, errors by kind and retries: whole hours from `call_totals`, and the
        calls of the hour that `since` falls in from `source_calls` (its rows at or after
        `since`)."""
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
        tally = CallTally()
        for source, ok, kind, retry, calls, api, db in self._conn.execute(sql, args):
            tally.api[source] = tally.api.get(source, 0) + int(api)
            tally.db[source] = tally.db.get(source, 0) + int(db)
            if not ok:
                tally.errors[kind] = tally.errors.get(kind, 0) + int(calls)
            if retry:
                tally.retries += int(calls)
        tally.api = {k: v for k, v in tally.api.items() if v}
        tally.db = {k: v for k, v in tally.db.items() if v}
        return tally

    def shared_calls(self, since: float | None) -> int:
        """API calls of the rounds that served several commits, made since `since`: they are on
        the app's stream (`app:...`, a stream no push projects, so `call_totals` files them under
        the branch ''). Whole hours from `call_totals`, the hour `since` falls in from
        `source_calls`, as `call_tally` reads."""
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
        return sum(int(row[0]) for row in self._conn.execute(sql, args))

    def last_ratelimit(self) -> tuple[int | None, float | None]:
        """The newest `ratelimit_remaining` a platform reported, and when."""
        found = self._conn.execute(
            "SELECT ratelimit_remaining, at FROM source_calls"
            " WHERE ratelimit_remaining IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (None, None) if found is None else (int(found[0]), float(found[1]))

    def api_calls_by_window(self, now: float) -> tuple[int, int]:
        return api_calls_by_window(self._conn, now)

    def recent_finished(self, branch: str | None, limit: int) -> list[HistoryRow]:
        """The last `limit` finished deployments (on `branch`), newest first: one row per
        measure of each (see `HISTORY_SQL`)."""
        sql = HISTORY_SQL.format(branch=" AND branch = ?" if branch is not None else "")
        args: list[Any] = [*HISTORY_STATES, *([branch] if branch is not None else []), limit]
        return [HistoryRow(*r) for r in self._conn.execute(sql, args)]


HISTORY_STATES = ("state:succeeded", "state:failed", "state:canceled", "state:timed_out")
# The last N finished deployments by push time (a backward walk of the push-time index that
# stops after N of them), then each one's measures through the (sha, measure) key, and for a
# timed-out one how long it was followed (its row; an earlier attempt's has none).
HISTORY_SQL = f"""
WITH recent AS (
    SELECT sha, measure AS state, pushed_at
    FROM deployment_measures INDEXED BY deployment_measures_by_pushed_at
    WHERE measure IN ({", ".join("?" * len(HISTORY_STATES))}){{branch}}
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
