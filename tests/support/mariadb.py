"""The real MariaDB of the test machine (127.0.0.1:3306, root, no password, database `test`).

Tests that use it are marked `mysql`: they skip with a clear reason where the server cannot be
reached, and CI (`CI=true`) turns such a skip into a failure (see conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import pytest

Connection = pymysql.connections.Connection


def admin_connection() -> Connection:
    """A root connection in autocommit, or a skip when the server cannot be reached."""
    try:
        return pymysql.connect(
            host="127.0.0.1",
            port=3306,
            user="root",
            password="",
            database="test",
            autocommit=True,
            connect_timeout=2,
            read_timeout=30,
            # A DDL statement blocked by a metadata lock fails in seconds instead of hanging.
            init_command="SET SESSION lock_wait_timeout = 10",
        )
    except pymysql.err.MySQLError as exc:
        pytest.skip(f"MariaDB not reachable on 127.0.0.1:3306: {exc}")


@contextmanager
def plan_table(admin: Connection, prefix: str = "deployments") -> Iterator[str]:
    """The plan's `deployments` table under a name of its own, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{name}` (id INT AUTO_INCREMENT PRIMARY KEY, commitSha VARCHAR(40),"
            " status VARCHAR(32), createdAt DATETIME(3))"
        )
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{name}`")
