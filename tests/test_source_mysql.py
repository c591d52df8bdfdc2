"""`MySQLSource` against the real MariaDB on 127.0.0.1:3306 (and real sockets for the failures)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pymysql
import pytest

from tests.support.hostile import dripping
from tests.support.mariadb import admin_connection, plan_table
from tracker.config import MySQLSettings, load_settings
from tracker.errors import ConfigError
from tracker.monitor.sources.base import LogTail, outcome_of
from tracker.monitor.sources.mysql import MySQLSource, phase_of
from tracker.mysqlwire import describe_error, scrub, tls_arguments

SHA = "a" * 40
OTHER = "b" * 40
SPEC_QUERY = "SELECT status FROM deployments WHERE commitSha = %s ORDER BY createdAt DESC LIMIT 1"
WRONG_PASSWORD = "wr0ng-Pa55word-7f3a"


@pytest.fixture
def admin() -> Iterator[pymysql.connections.Connection]:
    conn = admin_connection()
    yield conn
    conn.close()


@pytest.fixture
def table(admin) -> Iterator[str]:
    with plan_table(admin) as name:
        yield name


def insert(admin, table: str, sha: str, status: str | None, created: str) -> None:
    with admin.cursor() as cur:
        cur.execute(
            f"INSERT INTO `{table}` (commitSha, status, createdAt) VALUES (%s, %s, %s)",
            (sha, status, created),
        )


def settings_for(table: str, **env: str) -> MySQLSettings:
    environ = {
        "TRACKER_MYSQL_URL": "mysql://root@127.0.0.1:3306/test",
        "TRACKER_MYSQL_TABLE": table,
    }
    my = load_settings(None, env={**environ, **env}).mysql
    assert my is not None
    return my


@pytest.fixture
def source(table) -> Iterator[MySQLSource]:
    src = MySQLSource(settings_for(table))
    yield src
    src.close()


def test_default_query_is_the_spec_query_with_backquoted_names():
    my = settings_for("deployments")
    query = MySQLSource(my).query
    assert query.replace("`", "") == SPEC_QUERY
    assert query.startswith("SELECT `status` FROM `deployments` WHERE `commitSha` = %s")


def test_query_uses_the_configured_names():
    env = {
        "TRACKER_MYSQL_SHA_COLUMN": "sha",
        "TRACKER_MYSQL_STATUS_COLUMN": "state",
        "TRACKER_MYSQL_TIME_COLUMN": "at",
    }
    query = MySQLSource(settings_for("deploys", **env)).query
    assert query == "SELECT `state` FROM `deploys` WHERE `sha` = %s ORDER BY `at` DESC LIMIT 1"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("success", "ACTIVE"),
        ("failed", "ERROR"),
        ("SUCCESS ", "ACTIVE"),
        ("Failed", "ERROR"),
        ("pending", None),
        ("building", None),
        ("canceled", None),
        ("", None),
        (None, None),
    ],
)
def test_phase_of_status(status, phase):
    assert phase_of(status) == phase


def test_tls_arguments_per_mode():
    my = settings_for("deployments")
    assert tls_arguments(MySQLSettings(**{**my.__dict__, "ssl": "disabled"})) == {
        "ssl_disabled": True
    }
    assert tls_arguments(MySQLSettings(**{**my.__dict__, "ssl": "preferred"})) == {}
    context = tls_arguments(MySQLSettings(**{**my.__dict__, "ssl": "required"}))["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.mysql
@pytest.mark.parametrize(
    ("status", "phase", "outcome"),
    [("success", "ACTIVE", "succeeded"), ("failed", "ERROR", "failed")],
)
def test_terminal_rows(admin, table, source, status, phase, outcome):
    insert(admin, table, SHA, status, "2030-01-01 10:00:00.000")
    insert(admin, table, OTHER, "pending", "2030-01-01 10:00:01.000")
    obs = source.poll(SHA)
    assert (obs.ok, obs.found, obs.phase, obs.status) == (True, True, phase, status)
    assert outcome_of(obs.phase) == outcome
    assert (obs.source, obs.db_queries, obs.api_calls, obs.error) == ("mysql", 1, 0, None)


@pytest.mark.mysql
def test_a_row_that_arrives_late_is_seen_on_the_same_connection(admin, table, source):
    first = source.poll(SHA)
    assert (first.ok, first.found, first.phase) == (True, False, None)
    connection = source.server_thread_id
    insert(admin, table, SHA, "building", "2030-01-01 10:00:00.000")
    building = source.poll(SHA)
    assert (building.found, building.phase, building.status) == (True, None, "building")
    assert outcome_of(building.phase) is None
    insert(admin, table, SHA, "success", "2030-01-01 10:03:00.000")
    live = source.poll(SHA)
    assert (live.found, live.phase, live.status) == (True, "ACTIVE", "success")
    assert source.server_thread_id == connection  # one connection across polls


@pytest.mark.mysql
def test_no_lock_is_held_between_polls_so_migrations_can_run(admin, table, source):
    insert(admin, table, SHA, "building", "2030-01-01 10:00:00.000")
    assert source.poll(SHA).status == "building"
    with admin.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = 2")
        cur.execute(f"ALTER TABLE `{table}` ADD COLUMN note VARCHAR(10)")  # needs the MDL
        cur.execute("SET SESSION lock_wait_timeout = 10")
    assert source.poll(SHA).status == "building"


@pytest.mark.mysql
def test_newest_row_wins_whatever_the_insert_order(admin, table, source):
    insert(admin, table, SHA, "success", "2030-01-01 10:05:00.000")
    insert(admin, table, SHA, "failed", "2030-01-01 10:01:00.000")  # older, inserted later
    assert source.poll(SHA).phase == "ACTIVE"
    insert(admin, table, OTHER, "success", "2030-01-01 10:00:00.000")
    insert(admin, table, OTHER, "failed", "2030-01-01 10:00:00.001")  # a millisecond newer
    assert source.poll(OTHER).phase == "ERROR"


@pytest.mark.mysql
def test_a_commit_pushed_again_is_judged_only_by_a_row_created_after_that_push(
    admin, table, source
):
    from datetime import UTC, datetime

    insert(admin, table, SHA, "success", "2030-01-01 10:00:00.000")  # the first attempt's row
    assert source.poll(SHA).phase == "ACTIVE"
    pushed = datetime(2030, 1, 1, 11, 0, tzinfo=UTC).timestamp()
    source.expect(SHA, pushed, again=True)
    assert "`createdAt`" in source._timed_query
    assert not source.poll(SHA).found  # the old row is not this push's
    insert(admin, table, SHA, "building", "2030-01-01 10:59:58.000")  # within the clock skew
    seen = source.poll(SHA)
    assert (seen.found, seen.phase, seen.status) == (True, None, "building")
    insert(admin, table, SHA, "failed", "2030-01-01 11:03:00.000")
    assert source.poll(SHA).phase == "ERROR"
    source.expect(SHA, pushed)  # a first attempt: the spec's query, every row
    assert source.poll(SHA).phase == "ERROR"


@pytest.mark.mysql
def test_null_status_is_in_progress(admin, table, source):
    insert(admin, table, SHA, None, "2030-01-01 10:00:00.000")
    obs = source.poll(SHA)
    assert (obs.ok, obs.found, obs.phase, obs.status) == (True, True, None, None)


@pytest.mark.mysql
def test_sha_with_sql_metacharacters_is_bound(admin, table, source):
    weird = "x' OR '1'='1"
    insert(admin, table, SHA, "success", "2030-01-01 10:00:00.000")
    insert(admin, table, weird, "failed", "2030-01-01 10:00:00.000")
    assert source.poll("' OR '1'='1' -- ").found is False  # would match every row if spliced in
    assert source.poll(f"{SHA}' OR 1=1 #").found is False
    assert source.poll('" OR ""="').found is False
    assert source.poll("\\' OR 1=1 -- ").found is False
    hit = source.poll(weird)
    assert (hit.found, hit.status) == (True, "failed")
    dropped = source.poll(f"x'; DROP TABLE `{table}`; -- ")
    assert dropped.ok and not dropped.found
    assert source.poll(SHA).phase == "ACTIVE"  # the table is still there


@pytest.mark.mysql
def test_identifier_settings_with_sql_are_refused_before_any_query(admin, table):
    insert(admin, table, SHA, "success", "2030-01-01 10:00:00.000")
    for var, value in [
        ("TRACKER_MYSQL_TABLE", f"{table}; DROP TABLE {table}"),
        ("TRACKER_MYSQL_SHA_COLUMN", "commitSha` = '' OR 1=1 OR `commitSha"),
        ("TRACKER_MYSQL_STATUS_COLUMN", "(SELECT password FROM mysql.user LIMIT 1)"),
    ]:
        with pytest.raises(ConfigError, match=var):
            settings_for(table, **{var: value})
    bad = MySQLSettings(
        **{**settings_for(table).__dict__, "table": f"{table}`; DROP TABLE `{table}"}
    )
    with pytest.raises(ConfigError, match="TRACKER_MYSQL_TABLE"):
        MySQLSource(bad)
    with MySQLSourceClosing(settings_for(table)) as src:
        assert src.poll(SHA).phase == "ACTIVE"


class MySQLSourceClosing:
    def __init__(self, settings: MySQLSettings) -> None:
        self.source = MySQLSource(settings)

    def __enter__(self) -> MySQLSource:
        return self.source

    def __exit__(self, *exc: object) -> None:
        self.source.close()


@pytest.mark.mysql
def test_wrong_credentials_give_one_clear_error_without_the_password(admin, table):
    my = MySQLSettings(**{**settings_for(table).__dict__, "password": WRONG_PASSWORD})
    with MySQLSourceClosing(my) as src:
        for obs in (src.poll(SHA), src.check()):
            assert (obs.ok, obs.found, obs.error_kind) == (False, False, "auth")
            assert obs.error == "MySQL refused user 'root' on 127.0.0.1:3306 (error 1045)"
            assert WRONG_PASSWORD not in repr(obs)


@pytest.mark.mysql
def test_connection_killed_mid_run_is_an_error_then_the_next_poll_reconnects(admin, table, source):
    insert(admin, table, SHA, "building", "2030-01-01 10:00:00.000")
    assert source.poll(SHA).status == "building"
    victim = source.server_thread_id
    assert victim is not None
    with admin.cursor() as cur:
        cur.execute("KILL CONNECTION %s", (victim,))
    _wait_until_gone(admin, victim)
    broken = source.poll(SHA)
    assert (broken.ok, broken.error_kind) == (False, "connection")
    assert broken.error and "127.0.0.1:3306" in broken.error and "\n" not in broken.error
    assert source.server_thread_id is None  # dropped
    insert(admin, table, SHA, "success", "2030-01-01 10:04:00.000")
    healed = source.poll(SHA)
    assert (healed.ok, healed.phase) == (True, "ACTIVE")
    assert source.server_thread_id not in (None, victim)


def _wait_until_gone(admin, thread_id: int) -> None:
    """Wait (bounded) for the server to finish killing a connection; no timing is asserted."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,)
            )
            if cur.fetchone()[0] == 0:
                return
        time.sleep(0.01)
    pytest.fail(f"connection {thread_id} was not killed")


@pytest.mark.mysql
def test_missing_table_is_a_database_error_until_it_exists(admin, table):
    missing = f"{table}_missing"
    with MySQLSourceClosing(settings_for(missing)) as src:
        obs = src.check()
        assert (obs.ok, obs.error_kind) == (False, "database")
        assert obs.error == f"MySQL error 1146: Table 'test.{missing}' doesn't exist"
        with admin.cursor() as cur:
            cur.execute(f"CREATE TABLE `{missing}` LIKE `{table}`")
        try:
            assert src.check().ok
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP TABLE `{missing}`")


@pytest.mark.mysql
def test_check_fetch_logs_and_close(admin, table, source):
    obs = source.check()
    assert (obs.ok, obs.found, obs.db_queries) == (True, False, 1)
    assert source.fetch_logs("any-id") == LogTail()
    source.close()
    source.close()  # twice is fine
    assert source.server_thread_id is None
    insert(admin, table, SHA, "success", "2030-01-01 10:00:00.000")
    assert source.poll(SHA).phase == "ACTIVE"  # reconnects after close


@pytest.mark.mysql
def test_tls_required_against_a_server_without_tls_fails_cleanly(admin, table):
    with admin.cursor() as cur:
        cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
        have_ssl = cur.fetchone()[1]
    if have_ssl == "YES":
        pytest.skip("this MariaDB offers TLS; the refusal path needs one that does not")
    with MySQLSourceClosing(settings_for(table, TRACKER_MYSQL_SSL="required")) as src:
        obs = src.poll(SHA)
        assert (obs.ok, obs.error_kind) == (False, "connection")
        assert obs.error and "does not offer TLS, which is required" in obs.error


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings_at(port: int, timeout: float = 2.0) -> MySQLSettings:
    return MySQLSettings(
        host="127.0.0.1",
        port=port,
        user="root",
        password=WRONG_PASSWORD,
        database="test",
        ssl="preferred",
        connect_timeout=timeout,
    )


def test_refused_connection_errors_cleanly():
    port = _free_port()
    with MySQLSourceClosing(_settings_at(port)) as src:
        obs = src.poll(SHA)
    assert (obs.ok, obs.found, obs.error_kind, obs.db_queries) == (False, False, "connection", 1)
    assert obs.error and f"127.0.0.1:{port}" in obs.error and "refused" in obs.error
    assert WRONG_PASSWORD not in obs.error


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts; nobody ever sends the MySQL greeting
        port = listener.getsockname()[1]
        with MySQLSourceClosing(_settings_at(port, timeout=0.3)) as src:
            obs = src.poll(SHA)
    assert (obs.ok, obs.error_kind) == (False, "timeout")
    assert obs.error == f"MySQL on 127.0.0.1:{port} did not answer within 0.3 s"


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("garbage", "kind"),
    [
        (b"\xff" * 64, "malformed"),
        (b"\x05\x00\x00\x00hello", "malformed"),
        (b"HTTP/1.1 400 Bad\r\n\r\n", "malformed"),
        (b"", "connection"),  # accepted, then closed at once
    ],
)
def test_a_server_that_speaks_garbage_never_crashes_a_poll(garbage, kind):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(garbage)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with MySQLSourceClosing(_settings_at(listener.getsockname()[1], timeout=1.0)) as src:
            obs = src.poll(SHA)
        thread.join(5)
    assert (obs.ok, obs.found, obs.error_kind) == (False, False, kind)
    assert obs.error and "\n" not in obs.error and WRONG_PASSWORD not in obs.error


def test_error_text_from_the_driver_is_scrubbed_of_the_password():
    my = _settings_at(3306)
    quoted = WRONG_PASSWORD.replace("-", "%2D")
    exc = pymysql.err.OperationalError(
        2013, f"lost\nwith {WRONG_PASSWORD} and {quoted}" + "x" * 500
    )
    kind, message = describe_error(exc, my)
    assert kind == "connection" and WRONG_PASSWORD not in message
    assert message.startswith("MySQL on 127.0.0.1:3306: lost with *** and ")
    assert len(message) < 260 and "\n" not in message
    assert scrub(f"a{WRONG_PASSWORD}b", WRONG_PASSWORD) == "a***b"
    assert scrub("expected x", "x") == "expected x"  # too short to be told from noise


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pymysql.err.OperationalError(1045, "Access denied"), "auth"),
        (pymysql.err.OperationalError(1044, "Access denied to database"), "auth"),
        (pymysql.err.OperationalError(2003, "Can't connect (timed out)"), "timeout"),
        (pymysql.err.OperationalError(2006, "MySQL server has gone away"), "connection"),
        (pymysql.err.InterfaceError(0, ""), "connection"),
        (ConnectionResetError(104, "reset"), "connection"),
        (ssl.SSLCertVerificationError("certificate verify failed"), "connection"),
        (pymysql.err.ProgrammingError(1054, "Unknown column"), "database"),
        (pymysql.err.InternalError("Packet sequence number wrong"), "malformed"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "malformed"),
    ],
)
def test_every_driver_failure_has_a_kind(exc, kind):
    assert describe_error(exc, _settings_at(3306))[0] == kind


def _greeting() -> bytes:
    """A MariaDB handshake packet (protocol 10), as a real server sends it first."""
    body = (
        b"\x0a5.5.5-10.11.6-MariaDB\x00"
        + (42).to_bytes(4, "little")
        + b"abcdefgh\x00"
        + b"\xfe\xf7\x2d\x02\x00\xff\x81\x15"
        + b"\x00" * 10
        + b"ijklmnopqrst\x00mysql_native_password\x00"
    )
    return len(body).to_bytes(3, "little") + b"\x00" + body


@pytest.mark.timeout(20)
@pytest.mark.parametrize("every_s", [0.5, 0.05], ids=["a-byte-each-half-second", "fast-drip"])
def test_a_dripped_handshake_ends_the_poll_at_its_deadline(every_s: float) -> None:
    """pymysql's timeouts bound each read; the poll as a whole ends within connect_timeout."""
    with dripping(_greeting(), every_s) as server:
        with MySQLSourceClosing(_settings_at(server.port, timeout=1.0)) as src:
            started = time.monotonic()
            obs = src.poll(SHA)
            took = time.monotonic() - started
            again = src.poll(SHA)  # a fresh connection, and a fresh deadline
    assert (obs.ok, obs.error_kind) == (False, "timeout"), obs
    assert obs.error == f"MySQL on 127.0.0.1:{server.port} did not answer within 1 s"
    assert 0.9 <= took < 1.6, took
    assert (again.ok, again.error_kind) == (False, "timeout")


@pytest.mark.timeout(20)
def test_a_server_silent_after_the_greeting_ends_the_poll_at_its_deadline() -> None:
    with dripping(_greeting(), 0.0) as server:  # the whole greeting, then nothing ever again
        with MySQLSourceClosing(_settings_at(server.port, timeout=1.0)) as src:
            started = time.monotonic()
            obs = src.poll(SHA)
            took = time.monotonic() - started
    assert (obs.ok, obs.error_kind) == (False, "timeout") and took < 1.6, (obs, took)


@pytest.mark.mysql
def test_a_healthy_server_is_not_cut_off_by_the_alarm(admin, table, source):
    """The alarm is cancelled once the query is answered: many quick polls on one connection."""
    for _ in range(20):
        obs = source.poll(SHA)
        assert (obs.ok, obs.found) == (True, False), obs
    assert source.server_thread_id is not None
