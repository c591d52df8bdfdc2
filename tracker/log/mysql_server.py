"""The shared log's server side: connecting (TLS as the settings say), telling a lost connection
from a refused statement, and running `schema.mysql.sql`'s migrations (`tracker migrate --shared`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.config import MySQLSettings, log_settings
from tracker.errors import LockTimeoutError, LogError

if TYPE_CHECKING:
    from pymysql.connections import Connection

SCHEMA_VERSION = 4  # the newest migration of schema.mysql.sql this client knows
MIGRATE_LOCK = "tracker:migrate"
_MIGRATION = re.compile(r"^-- migration: (\d+)\s*$", re.MULTILINE)
# No server, server gone, lost mid-query, lost while reading, killed, shutting down.
LOST = {2002, 2003, 2006, 2013, 2055, 1927, 1053}
RETRY = {1213}  # a deadlock (none expected: one lock), rolled back by the server: send again
LOCK_WAIT = 1205
NO_TABLE = 1146


def schema_text() -> str:
    """`schema.mysql.sql`: inside the package in a wheel, at the repository's top in a checkout."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "schema.mysql.sql", here.parent / "schema.mysql.sql"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise LogError(f"schema.mysql.sql not found beside {here}: the installation is broken")


def migrations(text: str | None = None) -> list[tuple[int, list[str]]]:
    """The numbered migrations of `schema.mysql.sql`, each as its statements, in order."""
    parts = _MIGRATION.split(schema_text() if text is None else text)
    return [(int(parts[i]), _statements(parts[i + 1])) for i in range(1, len(parts), 2)]


def pending(found: set[int], text: str | None = None) -> list[int]:
    """The migrations of `schema.mysql.sql` not among `found` (those a server has applied).

    Numbers are taken as they are, gaps and all: migrations are numbered ahead per change, so a
    release may carry 1 and 3 before 2 arrives, and a server may have run them in any order
    (each is additive and idempotent)."""
    return [number for number, _ in migrations(text) if number not in found]


def _statements(sql: str) -> list[str]:
    """Split on `;` at line ends; comment lines dropped (the file holds no `;` in strings)."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";")]


def connect(settings: MySQLSettings, *, multi: bool = False, timeout: float = 60.0) -> Connection:
    """A pymysql connection (autocommit, READ COMMITTED, TLS as the settings say) that gives up
    on a server silent for `timeout` seconds (a partition, a frozen server)."""
    import pymysql
    from pymysql.constants import CLIENT

    from tracker.mysqlwire import tls_arguments

    try:
        return pymysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            connect_timeout=min(timeout, settings.connect_timeout),
            read_timeout=timeout,
            write_timeout=timeout,
            autocommit=True,
            charset="utf8mb4",
            client_flag=CLIENT.MULTI_STATEMENTS if multi else 0,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            **tls_arguments(settings),
        )
    except pymysql.err.MySQLError as exc:
        raise LogError(explain(settings, "reach", exc)) from exc


def migrate(url: str, env: Mapping[str, str] | None = None) -> list[int]:
    """Run the shared schema's pending migrations (under the named lock `tracker:migrate`);
    the numbers run. For `tracker migrate --shared`: never run by a hook or an append."""
    settings = log_settings(url, os.environ if env is None else env)
    conn = connect(settings, timeout=600.0)  # DDL on a big table may take minutes
    done: list[int] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 60)", (MIGRATE_LOCK,))
            if cur.fetchone() != (1,):
                raise LockTimeoutError("another `migrate --shared` has held its lock for 60 s")
            try:
                for number, statements in migrations():
                    if number in applied(cur):
                        continue
                    for statement in statements:
                        cur.execute(statement)
                    cur.execute(
                        "INSERT IGNORE INTO schema_migrations (version, applied_by)"
                        " VALUES (%s, CURRENT_USER())",
                        (number,),
                    )
                    done.append(number)
            finally:
                cur.execute("DO RELEASE_LOCK(%s)", (MIGRATE_LOCK,))
    except LockTimeoutError:
        raise
    except Exception as exc:
        raise LogError(explain(settings, "migrate", exc)) from exc
    finally:
        conn.close()
    return done


@functools.cache
def known() -> frozenset[int]:
    """The numbers of the migrations this client carries. Not 1..SCHEMA_VERSION: numbers are
    handed out per change, so a client may know 1 and 4 before 2 and 3 reach it; "all applied"
    is judged on this set, never on the highest number."""
    return frozenset(n for n, _ in migrations())


@dataclass(frozen=True)
class SchemaState:
    """What the shared log's schema says of itself: the migrations run, and the oldest client
    schema version that may still use it (`schema_compat`, migration 4; None before it)."""

    applied: frozenset[int]
    min_client: int | None

    @property
    def missing(self) -> list[int]:
        """Migrations this client knows that the log has not run: `migrate --shared` runs them."""
        return sorted(known() - self.applied)

    @property
    def unknown(self) -> list[int]:
        """Migrations run that this client does not know (a newer tracker's: ignored while
        compatible)."""
        return sorted(self.applied - known())

    @property
    def incompatible(self) -> bool:
        return self.min_client is not None and self.min_client > SCHEMA_VERSION

    def problem(self, where: str) -> str | None:
        """Why this client may not use the log (None: it may), ending in what to do. A newer,
        incompatible schema comes first: migrating with this tracker would not help it."""
        if not self.applied:
            return (
                f"the shared log {where} has no schema yet: run `tracker migrate --shared`"
                " (an administrator's step, never run by a push)"
            )
        if self.incompatible:
            return too_new(where, self.min_client)
        if self.missing:
            have = ", ".join(map(str, sorted(self.applied)))
            return (
                f"the shared log {where} lacks migration {', '.join(map(str, self.missing))}"
                f" of this tracker (it has {have}): run `tracker migrate --shared`"
            )
        return None


def too_new(where: str, min_client: object) -> str:
    return (
        f"the shared log {where} needs a tracker of schema {min_client} or newer (this one is"
        f" at {SCHEMA_VERSION}); nothing is sent or read until then: upgrade tracker"
    )


def schema_state(cur: Any) -> SchemaState:
    """The log's `SchemaState` in one round trip (every connection asks); two more only for a
    log without `schema_compat` yet (or without any schema)."""
    try:
        cur.execute(
            "SELECT m.version, c.min_client FROM schema_migrations m"
            " LEFT JOIN schema_compat c ON c.id = 1"
        )
    except Exception as exc:
        if error_code(exc) != NO_TABLE:
            raise
        return SchemaState(frozenset(applied(cur)), None)
    rows = cur.fetchall()
    floor = {int(r[1]) for r in rows if r[1] is not None}
    return SchemaState(frozenset(int(r[0]) for r in rows), max(floor) if floor else None)


def applied(cur: Any) -> set[int]:
    cur.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'"
    )
    if cur.fetchone()[0] == 0:
        return set()
    cur.execute("SELECT version FROM schema_migrations")
    return {int(r[0]) for r in cur.fetchall()}


def error_code(exc: BaseException) -> int | None:
    if type(exc).__module__.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return int(exc.args[0])
    return None


def is_lost(exc: BaseException) -> bool:
    """Whether `exc` is a connection that broke or could not be made (the server away, the
    connection killed): what may be tried again."""
    code = error_code(exc)
    return code in LOST or isinstance(exc, OSError) or _interface(exc)


def _interface(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("pymysql") and type(exc).__name__ == "InterfaceError"


def explain(settings: MySQLSettings, doing: str, exc: BaseException) -> str:
    from tracker.mysqlwire import describe_error

    return f"cannot {doing} the shared log: {describe_error(exc, settings)[1]}"
