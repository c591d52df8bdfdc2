"""`tracker query`: read-only SQL over the log and its projections, for agents and people.

The spool is taken in first, so the answer is as current as `tracker status`. The statement runs
through sqlite-utils on a connection that can only read (`store.open_read_only`: a read-only
file and an authorizer), so a statement that would write is refused before it runs; `-p` values
are bound, never interpolated. Only this command imports sqlite-utils: the store, which the push
hook's confirmer imports, stays on the standard library.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tracker.errors import LockTimeoutError, LogError, UsageError
from tracker.log.sqlite import open_read_only

if TYPE_CHECKING:
    from tracker.api import Tracker

FORMATS = ("json", "nl", "csv", "table")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_CSV = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # CSV quotes \t \n \r
_NAME = re.compile(r"^[:@$]?([A-Za-z_][A-Za-z0-9_]*)$")
# SQLite's codes for a statement that is wrong, as opposed to a log that cannot be read.
_BAD_STATEMENT = ("SQLITE_ERROR", "SQLITE_RANGE", "SQLITE_MISMATCH", "SQLITE_TOOBIG")


def output_format(*, json: bool, nl: bool, csv: bool, table: bool, terminal: bool) -> str:
    """The one format asked for; by default a table on a terminal, JSON in a pipe."""
    chosen = [name for name, on in zip(FORMATS, (json, nl, csv, table), strict=True) if on]
    if len(chosen) > 1:
        raise UsageError("choose one of --json, --nl, --csv and --table, not " + ", ".join(chosen))
    return chosen[0] if chosen else ("table" if terminal else "json")


def bindings(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`-p NAME VALUE` pairs as named parameters (`:NAME`); every value is bound as text."""
    bound: dict[str, str] = {}
    for name, value in params:
        found = _NAME.match(name)
        if not found:
            raise UsageError(f"-p {name!r}: a parameter name is letters, digits and _ (:name)")
        if found[1] in bound:
            raise UsageError(f"-p {found[1]} is given twice")
        bound[found[1]] = value
    return bound


def query_lines(
    tracker: Tracker, sql: str, params: Iterable[tuple[str, str]], fmt: str
) -> Iterator[str]:
    """Run one read-only statement over the log of `tracker`; its rows as lines of `fmt`."""
    import sqlite_utils

    bound = bindings(params)
    tracker.take_in_spool()
    with tracker.store.reading():
        pass  # a new log is created and migrated here, so that there is something to read
    conn = open_read_only(tracker.db_path)
    try:
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        with _refusals(tracker.db_path):
            cursor = db.execute(sql, bound)
            if cursor.description is None:
                raise UsageError("the statement returns no rows: tracker query runs SELECT only")
            columns = [str(d[0]) for d in cursor.description]
            yield from _FORMATTERS[fmt](columns, cursor)
    finally:
        conn.close()


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


# -- formats ------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):  # as sqlite-utils writes a BLOB
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _objects(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    for row in rows:
        record = {c: _json_value(v) for c, v in zip(columns, row, strict=True)}
        yield json.dumps(record)  # ASCII: no control character reaches a terminal


def _json_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """One JSON array of objects, one object per line (as `sqlite-utils query` writes it)."""
    previous = None
    for line in _objects(columns, rows):
        if previous is not None:
            yield previous + ","
            previous = " " + line
        else:
            previous = "[" + line
    yield "[]" if previous is None else previous + "]"


def _csv_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    for row in itertools.chain([columns], rows):
        writer.writerow([_text(v, _CONTROL_IN_CSV) for v in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _table_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Aligned columns for a person: numbers to the right, control characters escaped."""
    values = [list(r) for r in rows]
    cells = [[_text(v) for v in r] for r in values]
    heads = [_printable(c) for c in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(heads)]
    numeric = [
        any(r[i] is not None for r in values)
        and all(r[i] is None or _is_number(r[i]) for r in values)
        for i in range(len(columns))
    ]

    def line(texts: Sequence[str]) -> str:
        padded = (
            t.rjust(w) if right else t.ljust(w)
            for t, w, right in zip(texts, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    yield line(heads)
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield line(r)
    yield f"({len(cells)} row{'' if len(cells) == 1 else 's'})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any, control: re.Pattern[str] = _CONTROL) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return _printable(str(value), control)


def _printable(text: str, control: re.Pattern[str] = _CONTROL) -> str:
    """`text` with each control character shown escaped (`\\x1b`, `\\n`), never sent raw."""
    return control.sub(lambda m: repr(m.group())[1:-1], text)


_FORMATTERS = {"json": _json_lines, "nl": _objects, "csv": _csv_lines, "table": _table_lines}
