"""`tracker query`: read-only SQL over the log and its projections, for agents and people.

The spool is taken in first, so the answer is as current as `tracker status`. The log runs the
statement (`EventLog.query`: for SQLite, sqlite-utils on a connection that can only read), so a
statement that would write is refused before it runs; `-p` values are bound, never interpolated.
This module only formats the rows.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tracker.errors import UsageError

if TYPE_CHECKING:
    from tracker.api import Tracker

FORMATS = ("json", "nl", "csv", "table")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_CSV = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # CSV quotes \t \n \r
_NAME = re.compile(r"^[:@$]?([A-Za-z_][A-Za-z0-9_]*)$")


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
    bound = bindings(params)
    tracker.take_in_spool()
    with tracker.store.query(sql, bound) as found:
        yield from _FORMATTERS[fmt](found.columns, found.rows)


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
