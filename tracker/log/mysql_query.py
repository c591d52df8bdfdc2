"""`tracker query` over the shared log: one read-only statement on MySQL or MariaDB.

Three guards, each enough for what it covers. The statement is read as MySQL's lexer reads it
(strings, quoted names and comments as the session's `sql_mode` makes them) and refused before
anything runs unless it is one SELECT (or WITH ... SELECT) that neither writes (INTO, INSERT,
UPDATE, DELETE), locks (FOR UPDATE, FOR SHARE, LOCK IN SHARE MODE, GET_LOCK) nor hides code in an
executable comment (`/*! ... */`). It runs on a connection of its own that accepts one statement
per request (no multi-statements), inside `START TRANSACTION READ ONLY`, so the server itself
refuses any write that slipped past. `:name` parameters are bound by the driver, never
interpolated. Rows are read as they are iterated (an unbuffered cursor).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tracker.errors import LockTimeoutError, LogError, UsageError
from tracker.log.base import QueryRows
from tracker.log.mysql_server import LOCK_WAIT, connect, error_code, explain, is_lost

if TYPE_CHECKING:
    from tracker.config import MySQLSettings

_FIRST = frozenset({"SELECT", "WITH"})
# Words that, outside strings and quoted names, mean a write, a lock or a change of state.
_REFUSED_WORDS = frozenset(
    {
        "INTO", "INSERT", "UPDATE", "DELETE", "LOCK", "UNLOCK", "GET_LOCK", "RELEASE_LOCK",
        "RELEASE_ALL_LOCKS", "NEXTVAL", "SETVAL", "LOAD_FILE",
    }
)  # fmt: skip
_REFUSED_PAIRS = frozenset({("FOR", "SHARE"), ("NEXT", "VALUE"), ("PREVIOUS", "VALUE")})
_WORD = re.compile(r"[A-Za-z0-9_$]+")
_PARAM = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
# Server errors that say the log cannot be reached or used, not that the statement is wrong.
_UNUSABLE = {1040, 1044, 1045, 1049, 1053, 1129, 1130, 1203, 1226, 1927}
_REFUSED = {1142, 1143, 1227, 1792}  # denied to this user; a write in a READ ONLY transaction


def prepare(sql: str, *, sql_mode: str = "") -> tuple[str, list[str]]:
    """`sql` as the driver takes it (`:name` as `%(name)s`, every `%` doubled) and the names of
    its parameters; `UsageError` for anything but one statement that only reads."""
    mode = sql_mode.upper()
    escapes = "NO_BACKSLASH_ESCAPES" not in mode  # a backslash escapes in strings only:
    strings = "'" if "ANSI_QUOTES" in mode else "'\""  # with ANSI_QUOTES "x" is a name
    out: list[str] = []
    words: list[str] = []
    names: list[str] = []
    i, n, ended = 0, len(sql), False
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = _quoted_end(sql, i, backslash=escapes and c in strings)
            _no_code_after(ended)
            out.append(sql[i:j].replace("%", "%%"))
            i = j
            continue
        after = _comment_end(sql, i)
        if after is not None:
            out.append(" ")
            i = after
            continue
        if c.isspace():
            out.append(c)
            i += 1
            continue
        _no_code_after(ended)
        if c == ";":
            ended = True
            i += 1
            continue
        if c == ":" and (found := _PARAM.match(sql, i)) and not _after_word(sql, i):
            names.append(found[1])
            out.append(f"%({found[1]})s")
            i = found.end()
            continue
        if (found := _WORD.match(sql, i)) is not None:
            words.append(found[0].upper())
            out.append(found[0])
            i = found.end()
            continue
        out.append("%%" if c == "%" else c)
        i += 1
    _check_words(words)
    return "".join(out).strip(), names


def _quoted_end(sql: str, start: int, *, backslash: bool) -> int:
    """The index after the string or quoted name opened at `start` (a doubled quote and, in a
    string, a backslash escape stay inside)."""
    quote, i = sql[start], start + 1
    while i < len(sql):
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise UsageError("the query cannot run: a string or quoted name is not closed")


def _comment_end(sql: str, i: int) -> int | None:
    """The index after a comment starting at `i`, or None when none starts there. `--` opens a
    comment only before a space or a control character (`1--1` is arithmetic in MySQL)."""
    if sql.startswith("#", i) or (
        sql.startswith("--", i) and (i + 2 == len(sql) or sql[i + 2] <= " ")
    ):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    if sql.startswith("/*", i):
        if sql.startswith(("/*!", "/*M!"), i):
            raise UsageError("refused: tracker query does not run executable comments (/*! ... */)")
        end = sql.find("*/", i + 2)
        if end < 0:
            raise UsageError("the query cannot run: a /* comment is not closed")
        return end + 2
    return None


def _after_word(sql: str, i: int) -> bool:
    """Whether the `:` at `i` follows a name or a value (MariaDB's `a:=1` aside, `:x` there is
    not a parameter)."""
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$:")


def _no_code_after(ended: bool) -> None:
    if ended:
        raise UsageError("refused: tracker query runs one statement at a time (nothing was run)")


def _check_words(words: Sequence[str]) -> None:
    if not words or words[0] not in _FIRST:
        raise UsageError(
            "refused: tracker query only reads: one SELECT (or WITH ... SELECT) statement"
        )
    refused = sorted({w for w in words if w in _REFUSED_WORDS})
    refused += [" ".join(p) for p in itertools.pairwise(words) if p in _REFUSED_PAIRS]
    if refused:
        raise UsageError(
            "refused: tracker query only reads; this statement would write or lock"
            f" ({', '.join(refused)})"
        )


@contextmanager
def read_only_query(
    settings: MySQLSettings, sql: str, params: Mapping[str, Any], *, timeout: float
) -> Iterator[QueryRows]:
    """Run `sql` with `params` on a new read-only connection; its rows are read as they are
    iterated, inside the block (refusals and failures become ours)."""
    import pymysql.cursors

    conn = connect(settings, timeout=timeout)
    rows = conn.cursor(pymysql.cursors.SSCursor)  # unbuffered: rows come as they are read
    try:
        with _errors(settings):
            with conn.cursor() as cur:
                cur.execute("SELECT @@SESSION.sql_mode")
                mode = str((cur.fetchone() or ("",))[0])
            text, names = prepare(sql, sql_mode=mode)
            missing = sorted(set(names) - set(params))
            if missing:
                raise UsageError(f"the query needs a value for :{missing[0]} (-p {missing[0]} ...)")
            rows.execute("START TRANSACTION READ ONLY")
            rows.execute(text, {name: params[name] for name in names})
            if rows.description is None:
                raise UsageError("the statement returns no rows: tracker query runs SELECT only")
            columns = [str(d[0]) for d in rows.description]
        yield QueryRows(columns, _rows(rows, settings))
    finally:
        with contextlib.suppress(Exception):
            rows.close()  # skips the rows not read (else the driver complains when collected)
        with contextlib.suppress(Exception):
            conn.close()  # ends the read-only transaction


def _rows(cur: Any, settings: MySQLSettings) -> Iterator[Sequence[Any]]:
    with _errors(settings):
        for row in cur:
            yield [plain(v) for v in row]


def plain(value: Any) -> Any:
    """A value as the formats take it: text from binary strings that are UTF-8 (streams and
    keys are VARBINARY), numbers from DECIMAL (what MySQL's sum() gives), ISO text from times."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        return ",".join(sorted(str(v) for v in value))
    return value


@contextmanager
def _errors(settings: MySQLSettings) -> Iterator[None]:
    """The server's errors as ours: a refused or wrong statement is bad input (64)."""
    try:
        yield
    except (UsageError, LogError):
        raise
    except Exception as exc:
        code = error_code(exc)
        if is_lost(exc) or code in _UNUSABLE or code is None:
            raise LogError(explain(settings, "read", exc)) from exc
        if code == LOCK_WAIT:
            raise LockTimeoutError(f"the shared log is busy ({exc.args[-1]}); try again") from exc
        if code in _REFUSED:
            raise UsageError(
                f"refused: tracker query only reads; the server refused it ({exc.args[-1]})"
            ) from exc
        raise UsageError(f"the query failed: {exc.args[-1]}") from exc
