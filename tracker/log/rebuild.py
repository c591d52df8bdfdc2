"""`tracker rebuild`: recompute every projection from the log alone, and repair what differs.

The most intricate code of the log, so it stands alone. The rebuild reads a snapshot: for a
moment under the lock (no append can come in) the totals are read and every part opens its read
transaction. Outside the lock, worker processes (fresh interpreters over pipes, with pickle: spawn
would import the caller's `__main__` again) each fold and compare their share of the commits
while appends go on. Under the lock again the commits appended to since the snapshot are replayed
whole and the differences are written (`_settle`): a log whose projections are right costs no
write at all. The hot loop parses each event's JSON through the C scanner
(`json.JSONDecoder().scan_once`, semi-private, with a fallback to `json.loads`: see `_loads`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tracker.errors import LogError
from tracker.events import event_from
from tracker.log.base import RebuildReport
from tracker.log.lock import open_lock_file, try_flock
from tracker.log.rows import (
    CALL_SHA,
    EVENT_COLUMNS,
    INSERT_CALL,
    MEASURE_COLUMNS,
    PROJECTION,
    UPSERT_ROW,
    Row,
    replay_pending,
    write_measures,
)
from tracker.projections import (
    CALL_COLUMNS,
    ROW_COLUMNS,
    DeploymentRow,
    StoredEvent,
    evolve,
    measure_rows,
    row_values,
    source_call,
)

T = TypeVar("T")


class _Log(Protocol):
    """What the rebuild needs of the SQLite log (`tracker.log.sqlite.SQLiteLog`) it repairs."""

    path: Path

    @property
    def conn(self) -> sqlite3.Connection: ...

    def last_seq(self) -> int: ...

    def locked(self, timeout: float | None = None) -> AbstractContextManager[None]: ...

    def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T: ...

    def rebuild(self, *, workers: int | None = None) -> RebuildReport: ...


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
PARALLEL_FROM = 200_000  # events: below this, one process folds faster than several start


def rebuild(log: _Log, workers: int | None = None) -> RebuildReport:
    """Recompute every projection of `log` from its events, fix the rows that differ, report them
    (`workers` processes; by default one per CPU, up to 4, for a large log)."""
    path = str(log.path)
    parts = rebuild_parts(workers, log.last_seq())
    started = _start_workers(path, parts) if parts > 1 else []
    try:
        with log.locked():  # only while every part opens its read transaction
            snapshot = log.last_seq()
            totals = _read_totals(log.conn)
            if parts == 1:
                conn = _open_part(path)
            else:
                _open_parts(started, snapshot)
        if parts == 1:
            found = [_compare_part(conn, snapshot, 1, 0)]
        else:
            found = [_worker_result(w) for w in started]
    finally:
        _stop(started)  # after a failure, the others are not waited for
    # The triggers add and take away each row's share, so totals minus their rows
    # summed never changes: compared at the snapshot, it tells whether it is 0 now.
    totals_ok = _sums(found) == totals
    report = log.transaction(lambda conn: _settle(conn, snapshot, found, totals_ok))
    events, rows = log.conn.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deployments)"
    ).fetchone()
    return dataclasses.replace(report, events=events, rows=rows)


def replay_if_pending(log: _Log) -> None:
    """A migration's replay of the log into the projections, by the first process to open it
    (appends go on meanwhile, as for `rebuild`); another process already at it is not joined.
    """
    from tracker.log.errors import log_errors

    guard = log.path.with_name(log.path.name + ".replay")
    with log_errors(guard, "lock"):
        fd = open_lock_file(guard)
    try:
        if not try_flock(fd):
            return  # its projections fill in meanwhile; the appends go on
        with log_errors(log.path, "read"):
            pending = replay_pending(log.conn)
        if pending:
            log.rebuild()
    finally:
        os.close(fd)


def _settle(
    conn: sqlite3.Connection, snapshot: int, found: list[_Diff], totals_ok: bool
) -> RebuildReport:
    """Under the lock: replay the commits appended to since `snapshot`, write every
    difference, sum the totals again if they were wrong, set the checkpoint and clear a
    migration's request for a replay. The report's counts are left for the caller."""
    tail = [r[0] for r in conn.execute(
        "SELECT DISTINCT stream FROM events WHERE seq > ?", (snapshot,)
    )]  # fmt: skip
    if tail:
        late = set(tail)
        found = [d.without(late) for d in found]
        found.append(_compare(conn, _streams(tail)))
    diff = _Diff.merge(found)
    diff.write(conn)
    totals_differing = 0 if totals_ok else _rewrite_totals(conn)
    last = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    conn.execute("DELETE FROM projection_checkpoints WHERE name IN (?, 'replay')", (PROJECTION,))
    conn.execute(
        "INSERT INTO projection_checkpoints (name, last_seq) VALUES (?, ?)", (PROJECTION, last)
    )
    calls = {c[0] for c in diff.calls_missing} | {c[0] for c in diff.calls_extra}
    measures = {m[:2] for m in diff.measures_missing} | {m[:2] for m in diff.measures_extra}
    return RebuildReport(
        0, 0, tuple(sorted(diff.differing())), len(calls), len(measures), totals_differing
    )


def rebuild_parts(workers: int | None, events: int) -> int:
    """How many processes replay a log of `events` (`workers` when given)."""
    if workers is not None:
        return max(1, workers)
    return 1 if events < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 4))


def _fold(cursor: Iterable[Row]) -> tuple[dict[str, DeploymentRow], list[Row], int, int]:
    """Fold events (in log order) from scratch: rows by commit, call rows as tuples, the number
    of events and the last seq. The hot loop of `rebuild`: it runs once per event."""
    rows: dict[str, DeploymentRow] = {}
    calls: list[Row] = []
    get, count, last = rows.get, 0, 0
    for seq, stream, version, type_, recorded_at, data, key in cursor:
        stored = StoredEvent(seq, stream, version, type_, recorded_at, _loads(data), key)
        event = event_from(type_, stored.data)
        row = evolve(get(stream), event, stored)
        if row is not None:
            rows[stream] = row
        call = source_call(event, stored, row)
        if call is not None:
            calls.append(call)
        count, last = count + 1, seq
    return rows, calls, count, last


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """`json.loads` of an event's compact JSON, straight through the C scanner: a replay parses
    a million of them, and `loads` adds two regular-expression matches and three calls to each."""
    try:
        return _scan_json(text, 0)[0]
    except (StopIteration, ValueError):  # leading white space: not ours, but valid JSON
        return json.loads(text)


@dataclass(frozen=True)
class _Scope:
    """Which events to replay and which projection rows to compare them with."""

    events: str
    events_args: tuple[Any, ...]
    shas: str
    shas_args: tuple[Any, ...]
    measures: str = ""  # the condition on `deployment_measures.sha` when not `shas`


def _partition(snapshot: int, parts: int, part: int) -> _Scope:
    """The events up to `snapshot` of one `part` of the commits (by the SHA's last digit)."""
    if parts == 1:
        return _Scope("seq <= ?", (snapshot,), "1", ())
    share = "coalesce(unicode(substr({}, -1)), 0) % ? = ?"  # ('' has no last character)
    return _Scope(
        "seq <= ? AND " + share.format("stream"), (snapshot, parts, part),
        share.format("sha"), (parts, part),
    )  # fmt: skip


def _streams(streams: Sequence[str]) -> _Scope:
    """Every event of some commits (and the measures of their earlier attempts, `N:sha`)."""
    listed = (json.dumps(list(streams)),)
    inside = "{} IN (SELECT value FROM json_each(?))"
    return _Scope(
        inside.format("stream"), listed, inside.format("sha"), listed,
        inside.format("substr(sha, instr(sha, ':') + 1)"),
    )  # fmt: skip


def _commit_of(key: str) -> str:
    """The commit of a `deployment_measures.sha`: the SHA itself, or an earlier attempt's
    `N:sha` (projections.attempt_key)."""
    return key.partition(":")[2] or key


@dataclass
class _Diff:
    """How the projection rows of some commits differ from a replay of their events."""

    rows_changed: list[Row] = dataclasses.field(default_factory=list)  # the replay's rows
    rows_extra: list[str] = dataclasses.field(default_factory=list)  # rows the replay has not
    calls_missing: list[Row] = dataclasses.field(default_factory=list)
    calls_extra: list[Row] = dataclasses.field(default_factory=list)
    measures_missing: list[Row] = dataclasses.field(default_factory=list)
    measures_extra: list[Row] = dataclasses.field(default_factory=list)
    # The rows read from `source_calls` and `deployment_measures`, summed as the totals are.
    call_sums: dict[Row, list[int]] = dataclasses.field(default_factory=dict)
    measure_sums: dict[Row, list[int]] = dataclasses.field(default_factory=dict)

    def without(self, shas: set[str]) -> _Diff:
        """This difference, leaving out some commits (not from the sums)."""
        return _Diff(
            [r for r in self.rows_changed if r[0] not in shas],
            [sha for sha in self.rows_extra if sha not in shas],
            [c for c in self.calls_missing if c[CALL_SHA] not in shas],
            [c for c in self.calls_extra if c[CALL_SHA] not in shas],
            [m for m in self.measures_missing if _commit_of(m[0]) not in shas],
            [m for m in self.measures_extra if _commit_of(m[0]) not in shas],
            self.call_sums,
            self.measure_sums,
        )

    @staticmethod
    def merge(diffs: Iterable[_Diff]) -> _Diff:
        total = _Diff()
        for d in diffs:
            total.rows_changed += d.rows_changed
            total.rows_extra += d.rows_extra
            total.calls_missing += d.calls_missing
            total.calls_extra += d.calls_extra
            total.measures_missing += d.measures_missing
            total.measures_extra += d.measures_extra
        return total

    def differing(self) -> set[str]:
        return {r[0] for r in self.rows_changed} | set(self.rows_extra)

    def write(self, conn: sqlite3.Connection) -> None:
        """Make the projection rows the replay's (in the caller's transaction)."""
        conn.executemany("DELETE FROM deployments WHERE sha = ?", ((s,) for s in self.rows_extra))
        conn.executemany(UPSERT_ROW, self.rows_changed)
        conn.executemany(
            "DELETE FROM source_calls WHERE seq = ?", ((c[0],) for c in self.calls_extra)
        )
        conn.executemany(INSERT_CALL, self.calls_missing)
        write_measures(conn, self.measures_extra, self.measures_missing)


def _sums(found: Iterable[_Diff]) -> _Totals:
    """The parts' sums of the rows they read, added up."""
    calls: dict[Row, list[int]] = {}
    measures: dict[Row, list[int]] = {}
    for d in found:
        for mine, theirs in ((calls, d.call_sums), (measures, d.measure_sums)):
            for key, values in theirs.items():
                _add(mine, key, values)
    return calls, measures


def _add(sums: dict[Row, list[int]], key: Row, values: Sequence[int]) -> None:
    """Add `values` to the sums kept under `key`."""
    found = sums.get(key)
    if found is None:
        sums[key] = list(values)
    else:
        for i, v in enumerate(values):
            found[i] += v


def _compare(conn: sqlite3.Connection, scope: _Scope) -> _Diff:
    """Replay the events of `scope` and compare the result with its projection rows.

    Both sides are built in the same order (commits by SHA, calls by seq, measures by commit
    and name), so that a projection that is right, the usual case, costs one comparison of two
    lists rather than hashing every row; the differences are worked out only when they differ.
    """
    cursor = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {scope.events} ORDER BY seq", scope.events_args
    )
    rows, calls, _, _ = _fold(cursor)
    replayed = [row_values(rows[sha]) for sha in sorted(rows)]
    measured = [m for values in replayed for m in sorted(measure_rows(rows[values[0]]))]
    if any(row.previous_attempts is not None for row in rows.values()):
        measured.sort()  # earlier attempts' keys (`N:sha`) sort apart from their commits
    diff = _Diff()
    table = _select(conn, "deployments", ", ".join(ROW_COLUMNS), scope, "sha")
    if table != replayed:
        old = {r[0]: r for r in table}
        diff.rows_changed = [r for r in replayed if old.pop(r[0], None) != r]
        diff.rows_extra = list(old)
    table = _select(conn, "source_calls", ", ".join(CALL_COLUMNS), scope, "seq")
    if table != calls:
        diff.calls_missing, diff.calls_extra = _differences(calls, table)
    diff.call_sums = _call_sums(table)
    # (NOT INDEXED: a scan and a sort beat a walk of the (sha, measure) index that looks up
    # every row it passes)
    measures = dataclasses.replace(scope, shas=scope.measures) if scope.measures else scope
    table = _select(
        conn, "deployment_measures NOT INDEXED", MEASURE_COLUMNS, measures, "sha, measure"
    )
    if table != measured:
        diff.measures_missing, diff.measures_extra = _differences(measured, table)
    diff.measure_sums = _measure_sums(table)
    return diff


# These sum rows exactly as the triggers of schema.sql do (CAST truncates toward zero, as int()).
_C_AT, _C_SOURCE, _C_API, _C_DB, _C_OK, _C_KIND, _C_RETRY, _C_BRANCH = (
    CALL_COLUMNS.index(c)
    for c in ("at", "source", "api_calls", "db_queries", "ok", "error_kind", "retry", "branch")
)


def _call_sums(calls: Iterable[Row]) -> dict[Row, list[int]]:
    sums: dict[Row, list[int]] = {}
    for c in calls:
        ok, kind, branch = c[_C_OK], c[_C_KIND], c[_C_BRANCH]
        key = (
            int(c[_C_AT] / 3600), "" if branch is None else branch, c[_C_SOURCE], ok,
            "" if ok else "unknown" if kind is None else kind, c[_C_RETRY],
        )  # fmt: skip
        _add(sums, key, (1, c[_C_API], c[_C_DB]))
    return sums


def _measure_sums(measured: Iterable[Row]) -> dict[Row, list[int]]:
    sums: dict[Row, list[int]] = {}
    for _, measure, value, pushed_at, branch in measured:
        _add(sums, (measure, "" if branch is None else branch, int(pushed_at / 3600)), (1, value))
    return sums


def _select(
    conn: sqlite3.Connection, table: str, columns: str, scope: _Scope, order: str
) -> list[Row]:
    return conn.execute(
        f"SELECT {columns} FROM {table} WHERE {scope.shas} ORDER BY {order}", scope.shas_args
    ).fetchall()


def _differences(replayed: list[Row], table: list[Row]) -> tuple[list[Row], list[Row]]:
    """Rows the table lacks, and rows the replay does not have."""
    new, old = set(replayed), set(table)
    return [r for r in replayed if r not in old], [r for r in table if r not in new]


def _start_workers(path: str, parts: int) -> list[subprocess.Popen[bytes]]:
    """Start one process per part: a fresh interpreter running `_worker` (unlike
    multiprocessing, nothing of the caller's `__main__` is imported again), which waits for
    the snapshot to replay up to (`_open_parts`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    code = "import sys; from tracker.log.rebuild import _worker; _worker(sys.argv[1:])"
    started: list[subprocess.Popen[bytes]] = []
    try:
        for part in range(parts):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, path, str(parts), str(part)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
        for worker in started:  # imports done: the lock will be held only for the opening
            assert worker.stdout is not None
            if worker.stdout.readline() != _WAITING:
                raise LogError("a rebuild worker did not start; see above")
    except BaseException:
        _stop(started)
        raise
    return started


def _open_parts(started: Sequence[subprocess.Popen[bytes]], snapshot: int) -> None:
    """Tell every worker the snapshot; return once each has opened its read transaction."""
    for worker in started:
        assert worker.stdin is not None
        worker.stdin.write(b"%d\n" % snapshot)
        worker.stdin.close()
    for worker in started:
        assert worker.stdout is not None
        if worker.stdout.readline() != _READY:
            raise LogError("a rebuild worker could not open the log; see above")


def _stop(started: Iterable[subprocess.Popen[bytes]]) -> None:
    """Kill the workers still running, and close every pipe."""
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


_WAITING, _READY = b"waiting\n", b"ready\n"


def _worker_result(worker: subprocess.Popen[bytes]) -> _Diff:
    assert worker.stdout is not None
    out = worker.stdout.read()
    if worker.wait() != 0:
        raise LogError(f"a rebuild worker failed (exit status {worker.returncode}); see above")
    found = pickle.loads(out)  # noqa: S301 (our own child wrote it, just now)
    assert isinstance(found, _Diff)
    return found


def _worker(argv: Sequence[str]) -> None:
    """A rebuild worker's main: read the snapshot from stdin, open a read transaction, say so,
    compare one part, write the pickled `_Diff` to stdout."""
    path, parts, part = argv[0], int(argv[1]), int(argv[2])
    sys.stdout.buffer.write(_WAITING)
    sys.stdout.buffer.flush()
    snapshot = int(sys.stdin.buffer.readline())
    conn = _open_part(path)
    sys.stdout.buffer.write(_READY)
    sys.stdout.buffer.flush()
    pickle.dump(_compare_part(conn, snapshot, parts, part), sys.stdout.buffer, protocol=5)


def _open_part(path: str) -> sqlite3.Connection:
    """A connection of its own, in a read transaction that has read: its snapshot is fixed."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM projection_checkpoints").fetchone()
    return conn


def _compare_part(conn: sqlite3.Connection, snapshot: int, parts: int, part: int) -> _Diff:
    """`_compare` for one part of the commits, in the read transaction of `conn` (closed)."""
    try:
        return _compare(conn, _partition(snapshot, parts, part))
    finally:
        conn.close()


# Each totals table: its key columns, its other columns, the same sums computed again from the
# rows the triggers count.
_TOTALS = (
    (
        "call_totals",
        "hour, branch, source, ok, error_kind, retry",
        "calls, api_calls, db_queries",
        """SELECT CAST(at / 3600 AS INTEGER), coalesce(branch, ''), source, ok,
               CASE WHEN ok THEN '' ELSE coalesce(error_kind, 'unknown') END, retry,
               count(*), sum(api_calls), sum(db_queries)
           FROM source_calls GROUP BY 1, 2, 3, 4, 5, 6""",
    ),
    (
        "measure_totals",
        "measure, branch, hour",
        "count, total",
        """SELECT measure, coalesce(branch, ''), CAST(pushed_at / 3600 AS INTEGER), count(*),
               sum(value)
           FROM deployment_measures GROUP BY 1, 2, 3""",
    ),
)


_Totals = tuple[dict[Row, list[int]], dict[Row, list[int]]]


def _read_totals(conn: sqlite3.Connection) -> _Totals:
    """The totals tables, keyed as `_call_sums` and `_measure_sums` key them."""
    found = []
    for table, key, values, _ in _TOTALS:
        width = key.count(",") + 1
        found.append(
            {
                tuple(r[:width]): list(r[width:])
                for r in conn.execute(f"SELECT {key}, {values} FROM {table}")
            }
        )
    return found[0], found[1]


def _totals_differing(conn: sqlite3.Connection) -> int:
    """How many rows (keys) of the totals tables are wrong, missing or extra against their sums
    computed again (one statement: one snapshot of every table)."""
    parts = []
    for table, key, values, again in _TOTALS:
        mine = f"SELECT {key}, {values} FROM {table}"
        parts.append(
            f"(SELECT count(*) FROM (SELECT 1 FROM (SELECT * FROM ({mine} EXCEPT {again})"
            f" UNION SELECT * FROM ({again} EXCEPT {mine})) GROUP BY {key}))"
        )
    return int(conn.execute("SELECT " + " + ".join(parts)).fetchone()[0])


def _rewrite_totals(conn: sqlite3.Connection) -> int:
    """Sum the totals tables again from their rows; returns how many rows had differed."""
    differing = _totals_differing(conn)
    for table, key, values, again in _TOTALS:
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} ({key}, {values}) {again}")
    return differing
