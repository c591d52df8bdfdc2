"""A private MariaDB server for one test session: its own data directory, port, socket and pid.

`mariadb-install-db` fills a temporary data directory; `mariadbd` then listens on a free loopback
port (and its own socket), started and stopped by its pid, so a test can stop it, kill it or
freeze it (SIGSTOP) without touching the machine's shared server on :3306. Each test takes a fresh
database on it (`fresh_database`), dropped afterwards.

The fixtures skip with a clear reason where the binaries are missing; tests that use them are
marked `mysql`, so CI (`CI=true`) turns such a skip into a failure (see tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.support.gitrepo import ROOT, wait_until

Connection = pymysql.connections.Connection

SERVER = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld", "mariadbd")
INSTALL = ("mariadb-install-db", "mysql_install_db")


def _binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateMariaDB:
    """One mariadbd of our own under `base` (data, socket, pid file, error log)."""

    def __init__(self, base: Path, server: str, install: str) -> None:
        self.base = base
        self.server, self.install_db = server, install
        self.datadir = base / "data"
        self.socket = base / "mariadb.sock"
        self.pid_file = base / "mariadb.pid"
        self.error_log = base / "error.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.options: list[str] = []  # more mariadbd options (a test's TLS certificates)

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def install(self) -> None:
        """The system tables, with a root that logs in by password (none) over TCP."""
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [self.install_db, "--no-defaults", f"--datadir={self.datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *user],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        """Start mariadbd and wait, with a deadline, until it answers a query."""
        assert self.process is None or self.process.poll() is not None, "already running"
        user = ["--user=root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [
                self.server, "--no-defaults", f"--datadir={self.datadir}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.pid_file}", f"--log-error={self.error_log}",
                "--skip-name-resolve", "--skip-log-bin", "--max-connections=400",
                "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
                # DigitalOcean's managed MySQL refuses a table without a primary key
                # (sql_require_primary_key); MariaDB's own switch for the same rule:
                "--innodb-force-primary-key=ON",
                *self.options,
                *user,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self.answers, timeout=timeout)

    def answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"mariadbd exited; see {self.error_log}: {self._log_tail()}")
        try:
            self.admin().close()
        except pymysql.err.MySQLError:
            return False
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        if self.process is None or self.process.poll() is not None:
            return
        self.thaw()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever; `start` again recovers it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a partition, seen from clients)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)

    def admin(self, database: str | None = None) -> Connection:
        return pymysql.connect(
            host=self.host, port=self.port, user="root", password="", database=database,
            autocommit=True, connect_timeout=2, read_timeout=60, charset="utf8mb4",
        )  # fmt: skip

    def url(self, database: str, user: str = "root") -> str:
        return f"mysql://{user}@{self.host}:{self.port}/{database}"

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.error_log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no error log)"


def start_private(base: Path, options: tuple[str, ...] = ()) -> PrivateMariaDB:
    """Install and start a private server under `base` (with more mariadbd `options`), or skip
    when the binaries are absent."""
    server, install = _binary(SERVER), _binary(INSTALL)
    if server is None or install is None:
        pytest.skip(
            "MariaDB server binaries not found (mariadbd and mariadb-install-db:"
            " apt-get install mariadb-server)"
        )
    db = PrivateMariaDB(base, server, install)
    db.options = list(options)
    db.install()
    db.start()
    return db


@pytest.fixture(scope="session")
def private_mariadb() -> Iterator[PrivateMariaDB]:
    """The session's private MariaDB, stopped (by its pid) and removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="tracker-mariadb-"))
    try:
        db = start_private(base)
        try:
            yield db
        finally:
            db.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mariadb(private_mariadb: PrivateMariaDB) -> PrivateMariaDB:
    """The private server, running (a test before may have stopped or frozen it)."""
    db = private_mariadb
    if db.process is not None and db.process.poll() is None:
        db.thaw()
    else:
        db.start()
    return db


def create_database(db: PrivateMariaDB) -> str:
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    with db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return name


def drop_database(db: PrivateMariaDB, name: str) -> None:
    if db.process is None or db.process.poll() is not None:
        return
    with db.admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def fresh_database(mariadb: PrivateMariaDB) -> Iterator[str]:
    """A new, empty database on the private server, dropped after the test."""
    name = create_database(mariadb)
    yield name
    drop_database(mariadb, name)


@pytest.fixture
def url(mariadb: PrivateMariaDB, fresh_database: str) -> str:
    """The shared log's URL on a fresh database of the private server, its schema migrated (as
    `tracker migrate --shared` does); the password-less root, as `mariadb.url` gives."""
    from tracker.log.mysql import migrate

    found = mariadb.url(fresh_database)
    migrate(found, env={})
    return found


@dataclass(frozen=True)
class ReadmeUser:
    name: str
    password: str
    url: str  # the shared log's URL as this user (no password)
    env: dict[str, str]  # the environment that carries the password


@contextmanager
def readme_user(db: PrivateMariaDB, database: str) -> Iterator[ReadmeUser]:
    """A `tracker` user of its own holding exactly the README's GRANTs on `database` (the test
    that they suffice runs as it); dropped afterwards."""
    name = f"tracker_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    user = f"'{name}'@'127.0.0.1'"
    block = (ROOT / "README.md").read_text().split("<!-- fleet-grants -->", 2)[1]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip().upper().startswith("GRANT")]
    assert lines, "the README's fleet section lists no GRANT"
    with db.admin() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE USER {user} IDENTIFIED BY %s", (password,))
        for ln in lines:
            cur.execute(
                ln.rstrip(";").replace("tracker.", f"`{database}`.").replace("'tracker'@'%'", user)
            )
    try:
        target = f"mysql://{name}@127.0.0.1:{db.port}/{database}"
        yield ReadmeUser(name, password, target, {"TRACKER_LOG_PASSWORD": password})
    finally:
        with db.admin() as admin, admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS {user}")
