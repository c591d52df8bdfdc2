"""`tracker doctor` in fleet mode (TRACKER_LOG_URL set): the shared log's checks, on the private
MariaDB, as real `tracker doctor` processes in a real repository.

Users are made by root with exactly the README's grants, with too few and with too many; the
schema is left unmigrated, then made incompatible by hand (`schema_compat.min_client`); the
server's `@@max_connections` is lowered and put back; a second private server speaks TLS with a
certificate of a CA made here (openssl). The clock's skew is shown in-process with a clock set
30 s off. Every `--json` output is checked against docs/schema/doctor.schema.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import ROOT, Repo, make_repo, tracker_python
from tests.support.mariadb_private import PrivateMariaDB, free_port, start_private
from tests.test_doctor import as_json, check, do_env, doctor, line
from tracker.cli.doctor_fleet import MAX_SKEW_S, MIN_CONNECTIONS, fleet_checks
from tracker.clock import SYSTEM_CLOCK
from tracker.events import PushRecorded
from tracker.log.fleet import FleetLog
from tracker.log.mysql import migrate
from tracker.log.mysql_probe import GRANTS, parse_grant
from tracker.log.mysql_server import known
from tracker.push.install import install
from tracker.sim.server import SimulatedPlatform

pytestmark = pytest.mark.mysql

TOKEN = "sim-token-for-doctor"
A = "a" * 40


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    return made


@pytest.fixture
def platform() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as sim:
        yield sim


def readme_grants() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- fleet-grants -->", 2)[1]
    return [ln.strip().rstrip(";") for ln in block.splitlines() if ln.strip().startswith("GRANT")]


class User:
    """A MySQL user of the private server with the grants given (made and dropped by root)."""

    def __init__(self, mariadb: PrivateMariaDB, database: str, grants: list[str]) -> None:
        self.mariadb, self.database = mariadb, database
        self.name = f"tracker_{uuid.uuid4().hex[:8]}"
        self.password = f"pw-{uuid.uuid4().hex}"
        self.account = f"'{self.name}'@'127.0.0.1'"
        self.root(f"CREATE USER {self.account} IDENTIFIED BY '{self.password}'")
        for grant in grants:
            self.root(
                grant.replace("tracker.", f"`{database}`.").replace("'tracker'@'%'", self.account)
            )

    def root(self, statement: str) -> None:
        with self.mariadb.admin() as conn, conn.cursor() as cur:
            cur.execute(statement)

    def env(self, repo: Repo, platform: SimulatedPlatform) -> dict[str, str]:
        url = f"mysql://{self.name}@127.0.0.1:{self.mariadb.port}/{self.database}"
        return fleet_env(repo, platform, url, TRACKER_LOG_PASSWORD=self.password)

    def drop(self) -> None:
        self.root(f"DROP USER IF EXISTS {self.account}")


def fleet_env(repo: Repo, platform: SimulatedPlatform, url: str, **extra: str) -> dict[str, str]:
    return do_env(repo, platform, TRACKER_LOG_URL=url, TRACKER_MACHINE_ID="m1", **extra)


def test_the_grants_doctor_expects_are_the_readmes() -> None:
    parsed = [parse_grant(g) for g in readme_grants()]
    assert all(p is not None for p in parsed)
    assert {p.table: p.privileges for p in parsed if p} == dict(GRANTS)


def test_a_user_with_the_readme_grants_is_one_line_per_check_and_no_secret(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str,
    url: str,
) -> None:  # fmt: skip
    user = User(mariadb, fresh_database, readme_grants())
    try:
        env = user.env(repo, platform)
        done = doctor(repo, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert line(out, "ok", "shared-log").endswith(
            f"mysql://{user.name}@127.0.0.1:{mariadb.port}/{fresh_database}: reachable as"
            f" {user.name}@127.0.0.1 (server {mariadb_version(mariadb)})"
        )
        tls = line(out, "warn", "tls")  # the private server has no certificate
        assert (
            "not encrypted: fine on loopback (127.0.0.1)" in tls and "fix: use ?ssl=required" in tls
        )
        assert line(out, "ok", "privileges").endswith(
            f"{user.name}@127.0.0.1 holds the README's grants on {fresh_database}, and no more"
        )
        numbers = ", ".join(str(n) for n in sorted(known()))
        assert line(out, "ok", "schema").endswith(
            f"migrations {numbers} applied (this tracker knows {numbers})"
        )
        assert (
            line(out, "ok", "connections").split(None, 2)[2].startswith("@@max_connections 400 (")
        )
        assert " ms of the server's (NOW(6), half the " in line(out, "ok", "clock")
        assert line(out, "ok", "outbox").endswith("empty (never pulled here yet)")
        assert user.password not in out + done.stderr
        found = as_json(repo, env)
        assert found["ok"] and found["exit_code"] == 0
        assert check(found, "privileges")["detail"] == {
            "user": f"{user.name}@127.0.0.1",
            "missing": {},
            "extra": {},
            "roles": False,
        }
        assert check(found, "connections")["detail"]["max_connections"] == 400
        assert abs(check(found, "clock")["detail"]["skew_s"]) < MAX_SKEW_S
        assert user.password not in json.dumps(found)
    finally:
        user.drop()


def mariadb_version(mariadb: PrivateMariaDB) -> str:
    with mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return str(cur.fetchone()[0])  # type: ignore[index]


def test_too_few_grants_fail_with_the_grant_to_run_and_too_many_warn_append_only(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str,
    url: str,
) -> None:  # fmt: skip
    few = [g.replace("SELECT, INSERT ON tracker.events", "SELECT ON tracker.events")
           for g in readme_grants()]  # fmt: skip
    user = User(mariadb, fresh_database, few)
    try:
        env = user.env(repo, platform)
        done = doctor(repo, env=env)
        assert done.returncode == 74, done.stdout + done.stderr
        shown = line(done.stdout, "FAIL", "privileges")
        assert f"{user.name}@127.0.0.1 lacks INSERT on {fresh_database}.events" in shown
        fix = f"GRANT INSERT ON `{fresh_database}`.`events` TO '{user.name}'@'127.0.0.1';"
        assert shown.endswith(f"fix: as an administrator: {fix}")
        assert check(as_json(repo, env), "privileges")["exit_code"] == 74
        user.root(fix.rstrip(";"))  # the fix, as printed, works
        done = doctor(repo, env=env)
        assert done.returncode == 0 and line(done.stdout, "ok", "privileges"), done.stdout
        user.root(f"GRANT UPDATE, DELETE ON `{fresh_database}`.`events` TO {user.account}")
        done = doctor(repo, env=env)
        assert done.returncode == 0, done.stdout  # a warning
        shown = line(done.stdout, "warn", "privileges")
        assert (
            f"holds more than it needs: DELETE, UPDATE on {fresh_database}.events: append-only"
            " relies on the tracker's user having only SELECT, INSERT on events" in shown
        )
        revoke = f"REVOKE DELETE, UPDATE ON `{fresh_database}`.`events` FROM {user.account};"
        assert shown.endswith(f"fix: as an administrator: {revoke}")
        user.root(revoke.rstrip(";"))  # the fix, as printed, works
        assert line(doctor(repo, env=env).stdout, "ok", "privileges")
    finally:
        user.drop()


def test_root_on_an_unmigrated_log_says_migrate_and_warns_of_its_privileges(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    env = fleet_env(repo, platform, mariadb.url(fresh_database))
    done = doctor(repo, env=env)
    assert done.returncode == 74, done.stdout + done.stderr
    shown = line(done.stdout, "FAIL", "schema")
    assert "has no schema yet: run `tracker migrate --shared`" in shown
    assert "fix: as an administrator (a user with DDL rights)" in shown
    shown = line(done.stdout, "warn", "privileges")
    assert "root@127.0.0.1 holds ALL PRIVILEGES on *: it could change or delete events:" in shown
    assert "append-only relies on" in shown and "a user of its own" in shown
    out = as_json(repo, env)
    assert check(out, "schema")["detail"]["applied"] == []


def test_an_incompatible_schema_says_upgrade_tracker_and_the_outbox_what_waits(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str,
    url: str,
) -> None:  # fmt: skip
    env = fleet_env(repo, platform, url)
    with mariadb.admin(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("UPDATE schema_compat SET min_client = 99 WHERE id = 1")
    log = FleetLog.open(repo.db, url, env=env, retry_for=0.5)
    try:
        log.append(A, PushRecorded(sha=A, branch="main"), key="push:a")  # refused: it waits
        assert log.sync_state().outbox == 1
    finally:
        log.close()
    done = doctor(repo, env=env)
    assert done.returncode == 74, done.stdout + done.stderr
    shown = line(done.stdout, "FAIL", "schema")
    assert "needs a tracker of schema 99 or newer (this one is at 4)" in shown
    assert shown.splitlines()[0].endswith("upgrade tracker")
    assert "fix: upgrade tracker on this machine (pip install -U deploy-tracker)" in shown
    waiting = line(done.stdout, "warn", "outbox")
    assert "1 event waits to be forwarded (never pulled here yet); the last attempt failed:" in (
        waiting
    )
    assert "upgrade tracker" in waiting and "fix: `tracker sync` forwards them" in waiting
    out = as_json(repo, env)
    assert check(out, "schema")["detail"]["min_client"] == 99
    assert check(out, "outbox")["detail"]["waiting"] == 1


def test_an_unreachable_server_and_a_refused_password_are_named_without_the_secret(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str,
    url: str,
) -> None:  # fmt: skip
    port = free_port()
    env = fleet_env(repo, platform, f"mysql://tracker@127.0.0.1:{port}/nowhere")
    done = doctor(repo, env=env)
    assert done.returncode == 74, done.stdout + done.stderr
    shown = line(done.stdout, "FAIL", "shared-log")
    assert f"cannot reach the shared log: MySQL on 127.0.0.1:{port}:" in shown
    assert "fix: check the host and port in TRACKER_LOG_URL and the network" in shown
    names = [c["name"] for c in as_json(repo, env)["checks"]]
    assert "outbox" in names and not {"tls", "privileges", "schema", "clock"} & set(names)
    secret = "not-the-password-4711"
    env = fleet_env(repo, platform, url, TRACKER_LOG_PASSWORD=secret)
    done = doctor(repo, env=env)
    assert done.returncode == 74
    shown = line(done.stdout, "FAIL", "shared-log")
    assert f"MySQL refused user 'root' on 127.0.0.1:{mariadb.port}" in shown
    assert "TRACKER_LOG_PASSWORD" in shown and secret not in done.stdout + done.stderr


def test_a_low_max_connections_is_a_warning_with_the_reason(
    repo: Repo, platform: SimulatedPlatform, mariadb: PrivateMariaDB, url: str
) -> None:
    env = fleet_env(repo, platform, url)
    with mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@max_connections")
        saved = int(cur.fetchone()[0])  # type: ignore[index]
        cur.execute("SET GLOBAL max_connections = 50")
    try:
        done = doctor(repo, env=env)
    finally:
        with mariadb.admin() as conn, conn.cursor() as cur:
            cur.execute(f"SET GLOBAL max_connections = {saved}")
    assert MIN_CONNECTIONS > 50
    shown = line(done.stdout, "warn", "connections")
    assert "@@max_connections 50: low for a fleet (each working process holds one" in shown
    assert f"{MIN_CONNECTIONS} or more is advised" in shown and "fix: a larger" in shown


class Skewed:
    """The system clock, `offset` seconds off (monotonic time as it is)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return SYSTEM_CLOCK.now() + self.offset

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()

    def sleep(self, seconds: float) -> None:
        SYSTEM_CLOCK.sleep(seconds)


@pytest.mark.parametrize(("offset", "words"), [(30.0, "ahead of"), (-30.0, "behind")])
def test_a_clock_off_by_more_than_2_s_is_a_warning(
    url: str, tmp_path: Path, offset: float, words: str
) -> None:
    checks = {c.name: c for c in fleet_checks(url, tmp_path / "events.db", {}, Skewed(offset))}
    clock = checks["clock"]
    assert clock.level == "warn" and clock.exit_code == 0
    assert f"this machine's clock is 30.0 s {words} the server's" in clock.message
    assert clock.fix is not None and "NTP" in clock.fix
    assert checks["schema"].level == "ok" and abs(clock.detail["skew_s"] + offset) < MAX_SKEW_S
    near = {c.name: c for c in fleet_checks(url, tmp_path / "events.db", {}, Skewed(1.0))}
    assert near["clock"].level == "ok"  # 1 s off: within the 2 s allowed


# -- TLS: a second private server with a certificate of our own CA ------------------------------


def certificates(where: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 (signed by it), made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the TLS test's certificates")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=where, check=True, capture_output=True, timeout=120)

    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=tracker-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return where


@pytest.fixture(scope="module")
def tls_mariadb() -> Iterator[tuple[PrivateMariaDB, Path]]:
    base = Path(tempfile.mkdtemp(prefix="tracker-mariadb-tls-"))
    try:
        certs = certificates(base)
        options = (f"--ssl-ca={certs / 'ca.pem'}", f"--ssl-cert={certs / 'server.pem'}",
                   f"--ssl-key={certs / 'server.key'}")  # fmt: skip
        db = start_private(base / "db", options)
        try:
            yield db, certs / "ca.pem"
        finally:
            db.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_tls_says_its_version_and_cipher_and_that_the_certificate_was_verified(
    repo: Repo, platform: SimulatedPlatform, tls_mariadb: tuple[PrivateMariaDB, Path]
) -> None:
    server, ca = tls_mariadb
    database = f"fleet_{uuid.uuid4().hex[:12]}"
    with server.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
    url = f"mysql://root@127.0.0.1:{server.port}/{database}?ssl=required&ssl_ca={ca}"
    migrate(url, env={})
    env = fleet_env(repo, platform, url)
    done = doctor(repo, env=env)
    shown = line(done.stdout, "ok", "tls")
    assert "TLSv1." in shown and "certificate and host name verified" in shown, done.stdout
    detail: dict[str, Any] = check(as_json(repo, env), "tls")["detail"]
    assert detail["verified"] is True and detail["cipher"] and detail["mode"] == "required"
    assert line(done.stdout, "ok", "schema")


@pytest.mark.parametrize(
    ("text", "database", "table", "privileges"),
    [
        ("GRANT USAGE ON *.* TO `t`@`%` IDENTIFIED BY PASSWORD '*0123ABCD'", "x", "events",
         {"USAGE"}),
        ("GRANT SELECT, INSERT ON `tracker`.`events` TO 'tracker'@'%'", "tracker", "events",
         {"SELECT", "INSERT"}),
        ("GRANT SELECT (seq, data), UPDATE ON `tracker`.`log_head` TO `t`@`h`", "tracker",
         "log_head", {"SELECT", "UPDATE"}),
        ("GRANT ALL PRIVILEGES ON `team\\_%`.* TO `t`@`h` WITH GRANT OPTION", "team_a", "events",
         {"ALL PRIVILEGES"}),
    ],
)  # fmt: skip
def test_grants_are_read_from_mysql_and_mariadb_lines_without_the_password_hash(
    text: str, database: str, table: str, privileges: set[str]
) -> None:
    grant = parse_grant(text)
    assert grant is not None and grant.privileges == privileges
    assert grant.covers(database, table)
    assert "0123ABCD" not in repr(grant)
    assert parse_grant("GRANT `reader` TO `t`@`h`") is None  # a role: not a table grant
    assert parse_grant("GRANT PROXY ON ''@'%' TO 'root'@'localhost'") is None
    escaped = parse_grant("GRANT SELECT ON `team\\_%`.* TO `t`@`h`")
    assert escaped is not None and not escaped.covers("teamXa", "events")  # \_ is literal
