"""How the projection rows are written: the same statements for an append and for a rebuild.

`deployments` (one row per commit), `source_calls` (one row per call to a platform) and
`deployment_measures` (the numbers stats read) are filled from `tracker.projections`' pure folds;
the totals tables follow by the triggers of `schema.sql`. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterable
from typing import Any

from tracker.projections import CALL_COLUMNS, ROW_COLUMNS, DeploymentRow, SourceCallRow, row_values

PROJECTION = "deployments"  # the checkpoint's name in `projection_checkpoints`
EVENT_COLUMNS = "seq, stream, version, type, recorded_at, data, key"
MEASURE_COLUMNS = "sha, measure, value, pushed_at, branch"
CALL_SHA = CALL_COLUMNS.index("sha")
Row = tuple[Any, ...]

UPSERT_ROW = (
    f"INSERT OR REPLACE INTO deployments ({', '.join(ROW_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
INSERT_CALL = (
    f"INSERT INTO source_calls ({', '.join(CALL_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)


def read_row(conn: sqlite3.Connection, sha: str) -> DeploymentRow | None:
    """The `deployments` row of one commit."""
    cursor = conn.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM deployments WHERE sha = ?", (sha,))
    found = cursor.fetchone()
    return DeploymentRow(*found) if found else None


def write_row(conn: sqlite3.Connection, old: DeploymentRow | None, new: DeploymentRow) -> None:
    """Write a commit's new row: only its changed columns when it has one (an append changes
    a few counters, and an UPDATE of those leaves the indexes alone)."""
    values = row_values(new)
    if old is None or old.sha != new.sha:
        conn.execute(UPSERT_ROW, values)
        return
    before = row_values(old)
    changed = [i for i in range(len(values)) if values[i] != before[i]]
    if changed:
        assignments = ", ".join(f"{ROW_COLUMNS[i]} = ?" for i in changed)
        conn.execute(
            f"UPDATE deployments SET {assignments} WHERE sha = ?",
            [values[i] for i in changed] + [new.sha],
        )


def insert_calls(conn: sqlite3.Connection, calls: Iterable[SourceCallRow | Row]) -> None:
    conn.executemany(INSERT_CALL, calls)


def write_measures(
    conn: sqlite3.Connection, extra: Collection[Row], missing: Collection[Row]
) -> None:
    """Replace measure rows `extra` by rows `missing`: a row whose only change is its value is
    updated in place (the API calls of every poll), others are deleted and inserted."""
    gone = {m[:2]: m for m in extra}
    updated = [m for m in missing if (o := gone.get(m[:2])) is not None and o[3:] == m[3:]]
    for m in updated:
        del gone[m[:2]]
    if gone:
        conn.executemany(
            "DELETE FROM deployment_measures WHERE sha = ? AND measure = ?", list(gone)
        )
    for m in updated:
        conn.execute(
            "UPDATE deployment_measures SET value = ? WHERE sha = ? AND measure = ?",
            (m[2], m[0], m[1]),
        )
    if len(updated) < len(missing):
        done = {m[:2] for m in updated}
        # in one order on every machine: the rows' ids then agree wherever the log is folded
        new: list[Row] = sorted((m for m in missing if m[:2] not in done), key=lambda m: m[:2])
        conn.executemany(
            f"INSERT INTO deployment_measures ({MEASURE_COLUMNS}) VALUES (?, ?, ?, ?, ?)", new
        )


def replay_pending(conn: sqlite3.Connection) -> bool:
    """Whether a migration asked for the log to be replayed into the projections."""
    found = conn.execute("SELECT 1 FROM projection_checkpoints WHERE name = 'replay'")
    return found.fetchone() is not None


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is left of a failed transaction without hiding why it failed.

    SQLite has already rolled back after some errors (a COMMIT that hit a full disk):
    a second ROLLBACK would raise "no transaction is active" in place of "disk is full".
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
