"""`tracker query` over SQLite: one read-only statement, run through sqlite-utils.

Two guards, each enough alone: the file is opened read-only (`mode=ro`), and an authorizer refuses
at prepare time every action but reading (writes, ATTACH, PRAGMA, transactions), so a statement
that would write is refused before it runs; values are bound, never interpolated. Only this
module imports sqlite-utils (lazily): the log, which the push hook's confirmer imports, stays on
the standard library.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tracker.errors import LockTimeoutError, LogError, UsageError
from tracker.log.base import QueryRows
from tracker.log.errors import log_errors

# What a read-only connection may do: read tables and views, select, call functions, and ask
# the pragmas that only describe the schema (SQLite's authorizer action codes; everything else,
# from INSERT to ATTACH, transactions and every other PRAGMA, is denied).
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_DESCRIBING_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info"})
# SQLite's codes for a statement that is wrong, as opposed to a log that cannot be read.
_BAD_STATEMENT = ("SQLITE_ERROR", "SQLITE_RANGE", "SQLITE_MISMATCH", "SQLITE_TOOBIG")


@contextmanager
def read_only_query(path: Path, sql: str, params: Mapping[str, Any]) -> Iterator[QueryRows]:
    """Run `sql` with `params` on a read-only connection to the log at `path`; its rows are
    read as they are iterated, inside the block (refusals and failures become ours)."""
    import sqlite_utils

    conn = open_read_only(path)
    try:
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        with _refusals(path):
            cursor = db.execute(sql, dict(params))
            if cursor.description is None:
                raise UsageError("the statement returns no rows: tracker query runs SELECT only")
            yield QueryRows([str(d[0]) for d in cursor.description], cursor)
    finally:
        conn.close()


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection to the log at `path` that can only read, for SQL from outside."""
    uri = path.absolute().as_uri() + "?mode=ro"
    with log_errors(path, "read"):
        conn = sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
        # SQLite builds a table-valued function's table on its first use, and asks the authorizer
        # about the schema as it does: build the JSON ones before the authorizer is in place.
        conn.execute("SELECT 1 FROM json_each('[]'), json_tree('[]')").fetchall()
        conn.set_authorizer(_authorize_read)
    return conn


def _authorize_read(action: int, name: str | None, *_: str | None) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (name or "").lower() in _DESCRIBING_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def _refusals(path: object) -> Iterator[None]:
    """SQLite's errors as ours: a refused or wrong statement is bad input (64)."""
    try:
        yield
    except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:  # 3.11 raises Warning for `;`
        if "one statement at a time" in str(exc):
            raise UsageError(
                "refused: tracker query runs one statement at a time (nothing was run)"
            ) from exc
        raise UsageError(f"the query cannot run: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code in ("SQLITE_AUTH", "SQLITE_READONLY") or "not authorized" in str(exc):
            raise UsageError(
                "refused: tracker query only reads (SELECT over tables and views);"
                f" this statement would write or change the connection ({exc})"
            ) from exc
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise LockTimeoutError(f"the log {path} is busy ({exc}); try again") from exc
        if code in _BAD_STATEMENT or isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError):
            raise UsageError(f"the query failed: {exc}") from exc
        raise LogError(f"cannot read the log {path}: {exc}") from exc
