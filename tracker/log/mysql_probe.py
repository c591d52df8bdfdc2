"""What `tracker doctor` asks the shared log's server in fleet mode (SPEC §10, design/fleet.md §3):
the facts only (TLS, the user's grants, the schema, `@@max_connections`, the server's clock);
`tracker/cli/doctor_fleet.py` judges and words them.

The grants the `tracker` user needs are `GRANTS` here, and the README's GRANT block must say the
same (a test compares them). A grant's text is never passed on whole: `SHOW GRANTS` may carry
the password's hash (`IDENTIFIED BY PASSWORD '*…'`); only the privileges parsed from it are.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.config import MySQLSettings
from tracker.log.mysql_server import SchemaState, connect, error_code, explain, schema_state
from tracker.mysqlwire import scrub

# table -> the privileges the `tracker` user needs on it (README, "Append-only by privilege").
GRANTS: Mapping[str, frozenset[str]] = {
    "events": frozenset({"SELECT", "INSERT"}),
    "log_head": frozenset({"SELECT", "UPDATE"}),
    "schema_migrations": frozenset({"SELECT"}),
    "schema_compat": frozenset({"SELECT"}),
    "watch_leases": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "api_budget_head": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "api_calls": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
}
# What a table-level ALL PRIVILEGES stands for (what could change or delete an event).
ALL_TABLE = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES",
     "TRIGGER", "CREATE VIEW", "SHOW VIEW", "DELETE HISTORY"}
)  # fmt: skip
SKEW_SAMPLES = 3  # the clock is read this often; the sample with the shortest round trip counts
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<what>\S+)\s+TO\s", re.IGNORECASE)
_PRIVILEGE = re.compile(r"^[A-Z][A-Z ]{0,40}$")
_ROLE = re.compile(r"^GRANT\s+[`'\"][^`'\"]+[`'\"]\s+TO\s", re.IGNORECASE)


@dataclass(frozen=True)
class Grant:
    """One `GRANT … ON db.table`: its privileges (upper case; column lists dropped) and target
    (`*` for every database or table)."""

    privileges: frozenset[str]
    database: str
    table: str

    def covers(self, database: str, table: str) -> bool:
        return _like(self.database, database) and self.table in ("*", table)


@dataclass(frozen=True)
class ServerFacts:
    """What the server said; a fact it would not give is None, with the reason in `errors`."""

    user: str  # CURRENT_USER(): the account the server matched, as user@host
    version: str
    tls_version: str | None  # None: the connection is not encrypted
    tls_cipher: str | None
    grants: tuple[Grant, ...] | None
    roles: bool  # some grants come through roles (not expanded here)
    schema: SchemaState | None
    max_connections: int | None
    connected: int | None  # Threads_connected now
    max_user_connections: int | None  # 0: no per-user limit
    skew: float | None  # the server's clock minus ours, seconds (half the round trip corrected)
    round_trip: float | None  # seconds, of the sample `skew` was taken from
    errors: dict[str, str] = field(default_factory=dict)

    def privileges(self, database: str, table: str) -> frozenset[str]:
        """The privileges the user holds on `database.table` (global, database and table
        grants together; ALL expanded)."""
        found: set[str] = set()
        for grant in self.grants or ():
            if grant.covers(database, table):
                found |= grant.privileges
        if "ALL" in found or "ALL PRIVILEGES" in found:
            found |= ALL_TABLE
        return frozenset(found - {"ALL", "ALL PRIVILEGES", "USAGE"})


def probe(settings: MySQLSettings, clock: Clock = SYSTEM_CLOCK) -> ServerFacts:
    """Connect as the log would and gather the facts; `LogError` (its cause the driver's error)
    when the server cannot be reached or refuses us."""
    conn = connect(settings, timeout=settings.connect_timeout)
    errors: dict[str, str] = {}

    def ask(name: str, sql: str) -> list[tuple[Any, ...]] | None:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        except Exception as exc:
            if error_code(exc) is None and not type(exc).__module__.startswith("pymysql"):
                raise
            errors[name] = explain(settings, "read", exc)
            return None

    try:
        who = ask("user", "SELECT CURRENT_USER(), VERSION()") or [("?", "?")]
        status = dict(
            (str(k), str(v))
            for k, v in ask("status", "SHOW SESSION STATUS WHERE Variable_name IN"
                            " ('Ssl_version', 'Ssl_cipher', 'Threads_connected')") or []
        )  # fmt: skip
        limits = ask("connections", "SELECT @@max_connections, @@max_user_connections")
        lines = ask("grants", "SHOW GRANTS FOR CURRENT_USER()")
        schema: SchemaState | None = None
        try:
            with conn.cursor() as cur:
                schema = schema_state(cur)
        except Exception as exc:
            if error_code(exc) is None:
                raise
            errors["schema"] = explain(settings, "read", exc)
        skew, rtt = _skew(conn, clock, errors, settings)
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    texts = [str(r[0]) for r in lines or []]

    def said(value: object) -> str:  # the server's words, on one short line
        return scrub(str(value), settings.password)

    return ServerFacts(
        user=said(who[0][0]),
        version=said(who[0][1]),
        tls_version=said(status["Ssl_version"]) if status.get("Ssl_version") else None,
        tls_cipher=said(status["Ssl_cipher"]) if status.get("Ssl_cipher") else None,
        grants=None if lines is None else tuple(g for g in map(parse_grant, texts) if g),
        roles=any(_ROLE.match(t) for t in texts),
        schema=schema,
        max_connections=_int(limits[0][0]) if limits else None,
        connected=_int(status.get("Threads_connected")),
        max_user_connections=_int(limits[0][1]) if limits else None,
        skew=skew,
        round_trip=rtt,
        errors=errors,
    )


def _skew(
    conn: Any, clock: Clock, errors: dict[str, str], settings: MySQLSettings
) -> tuple[float | None, float | None]:
    """The server's clock (`NOW(6)`, as seconds since the epoch) against ours at the middle of
    the round trip, from the quickest of a few samples (the least time the answer could have
    spent on the way)."""
    best: tuple[float, float] | None = None
    for _ in range(SKEW_SAMPLES):
        try:
            with conn.cursor() as cur:
                sent, wall = clock.monotonic(), clock.now()
                cur.execute("SELECT UNIX_TIMESTAMP(NOW(6))")
                row = cur.fetchone()
                rtt = clock.monotonic() - sent
        except Exception as exc:
            if error_code(exc) is None:
                raise
            errors["clock"] = explain(settings, "read", exc)
            return None, None
        if row is None or not isinstance(row[0], Decimal | int | float):
            errors["clock"] = "the server's NOW(6) was not a number"
            return None, None
        skew = float(row[0]) - (wall + rtt / 2)
        if best is None or rtt < best[1]:
            best = (skew, rtt)
    assert best is not None
    return best


def parse_grant(text: str) -> Grant | None:
    """`GRANT SELECT, INSERT ON `db`.`events` TO …` as a `Grant`; None for what is not a
    privilege on tables (a role, PROXY)."""
    found = _GRANT.match(text.strip())
    if found is None:
        return None
    privs = re.sub(r"\([^)]*\)", "", found["privs"])  # column lists: SELECT (a, b)
    names = frozenset(
        name
        for name in (" ".join(p.split()).upper() for p in privs.split(","))
        if _PRIVILEGE.match(name)  # a word or two, nothing a hostile server could smuggle
    )
    if "PROXY" in names:
        return None
    database, _, table = found["what"].partition(".")
    return Grant(names, _unquote(database), _unquote(table) if table else "*")


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "`'\"":
        return name[1:-1]
    return name


def _like(pattern: str, name: str) -> bool:
    """A grant's database name is a LIKE pattern (`_` and `%`; `\\_` a literal underscore)."""
    if pattern == "*":
        return True
    regex = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += "." if ch == "_" else ".*" if ch == "%" else re.escape(ch)
        i += 1
    return re.fullmatch(regex, name) is not None


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


__all__ = ["GRANTS", "Grant", "ServerFacts", "parse_grant", "probe"]
