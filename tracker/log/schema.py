"""The log's tables: `schema.sql`, its numbered migrations, and how one is split into statements.

`schema.sql` is the only place a table is defined (STYLE #2); this module only finds and cuts it.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from tracker.errors import LogError

_MIGRATION = re.compile(r"^-- migration: (\d+)\s*$", re.MULTILINE)


def schema_text() -> str:
    """`schema.sql`: inside the package in a wheel, at the repository's top in a checkout."""
    here = Path(__file__).resolve().parents[1]  # the package
    for candidate in (here / "schema.sql", here.parent / "schema.sql"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise LogError(f"schema.sql not found beside {here}: the installation is broken")


def migrations(text: str | None = None) -> list[tuple[int, str]]:
    """The numbered migrations of `schema.sql`, in order."""
    text = schema_text() if text is None else text
    parts = _MIGRATION.split(text)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]


def statements(sql: str) -> list[str]:
    """Split a migration into statements (triggers contain `;` inside BEGIN ... END)."""
    found, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        found.append(buffer.strip())
    return found


def run_pending(conn: sqlite3.Connection, found: list[tuple[int, str]]) -> None:
    """Run the migrations of `found` past the file's `PRAGMA user_version`, each moving it on;
    the caller holds the write transaction (and the lock) around it."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, sql in found:
        if number > current:
            for statement in statements(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
