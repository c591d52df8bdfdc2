"""The fleet-wide API budget (SPEC §10, design/fleet.md §2.4): reservations in the shared log's
MySQL (`tracker.log.mysql_budget`, `reserve_api_calls` on `MySQLLog` and `FleetLog`), on the
session's private MariaDB. The watchers that use it: tests/test_budget_fleet.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.mariadb_private import PrivateMariaDB, readme_user
from tracker.errors import LogError
from tracker.log.fleet import FleetLog
from tracker.log.mysql import MySQLLog, migrate
from tracker.log.mysql_budget import PURGE_LIMIT, add, reserve, used
from tracker.log.mysql_server import connect, migrations, pending
from tracker.monitor.decide import token_id

pytestmark = pytest.mark.mysql

TOKEN = token_id("dop_v1_not-a-real-token")


@pytest.fixture
def conn(url: str) -> Iterator[pymysql.connections.Connection]:
    log = MySQLLog.from_url(url, env={})
    made = connect(log.settings, multi=True)
    yield made
    made.close()


def server_now(conn: pymysql.connections.Connection) -> float:
    with conn.cursor() as cur:
        cur.execute("SELECT unix_timestamp(now(6))")
        return float(cur.fetchone()[0])


def put(conn: pymysql.connections.Connection, bucket: int, calls: int, tid: str = TOKEN) -> None:
    """Calls counted in `bucket` as if made then (an admin's insert: no reservation)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_calls (token_id, bucket, calls) VALUES (%s, %s, %s)",
            (tid, bucket, calls),
        )


def test_the_token_id_is_a_short_hash_never_the_token() -> None:
    token = "dop_v1_" + "f" * 64
    found = token_id(token)
    assert len(found) == 16 and int(found, 16) >= 0 and token not in found
    assert found == token_id(token) != token_id(token + "x")


def test_reservations_are_granted_up_to_the_minute_limit_then_refused_with_the_wait(
    conn: pymysql.connections.Connection,
) -> None:
    before = time.monotonic()
    started = server_now(conn)
    assert [reserve(conn, TOKEN, 1, 5, 100) for _ in range(5)] == [0.0] * 5
    wait = reserve(conn, TOKEN, 1, 5, 100)
    elapsed = time.monotonic() - before
    # The first call's bucket leaves the minute 61 s after the start of its second.
    assert 60 - elapsed - 1e-6 <= wait <= 61 - (started % 1) + 1e-6
    assert used(conn, TOKEN) == (5, 5)  # the refused one was not counted
    other = token_id("another-token")
    assert reserve(conn, other, 1, 5, 100) == 0.0  # each token has its own budget


def test_a_refused_reservation_waits_until_enough_of_the_oldest_calls_have_left(
    conn: pymysql.connections.Connection,
) -> None:
    before = time.monotonic()
    now = server_now(conn)
    b = int(now)
    put(conn, b - 50, 3)
    put(conn, b - 20, 2)
    two = reserve(conn, TOKEN, 2, 5, 1000)  # 5 + 2 > 5: fits once b-50 has left (2 + 2 <= 5)
    four = reserve(conn, TOKEN, 4, 5, 1000)  # fits once b-20 has left too (0 + 4 <= 5)
    elapsed = time.monotonic() - before
    assert b - 50 + 61 - now - elapsed - 1e-6 <= two <= b - 50 + 61 - now + 1e-6
    assert b - 20 + 61 - now - elapsed - 1e-6 <= four <= b - 20 + 61 - now + 1e-6
    assert reserve(conn, TOKEN, 1, 6, 1000) == 0.0  # 5 + 1 <= 6
    assert used(conn, TOKEN)[0] == 6


def test_the_hour_limit_binds_with_the_minute_free_and_says_its_own_wait(
    conn: pymysql.connections.Connection,
) -> None:
    before = time.monotonic()
    now = server_now(conn)
    b = int(now)
    put(conn, b - 3000, 7)
    put(conn, b - 1000, 3)
    wait = reserve(conn, TOKEN, 1, 5, 10)
    elapsed = time.monotonic() - before
    assert b - 3000 + 3601 - now - elapsed - 1e-6 <= wait <= b - 3000 + 3601 - now + 1e-6
    assert reserve(conn, TOKEN, 1, 5, 11) == 0.0


def test_calls_beyond_the_reserved_are_added_unconditionally_and_then_count(
    conn: pymysql.connections.Connection,
) -> None:
    assert reserve(conn, TOKEN, 1, 3, 100) == 0.0
    add(conn, TOKEN, 4)  # a further page and the failure logs: made, so counted, over the limit
    assert used(conn, TOKEN) == (5, 5)
    assert reserve(conn, TOKEN, 1, 3, 100) > 0


def test_a_reservation_deletes_old_buckets_a_bounded_number_at_a_time(
    conn: pymysql.connections.Connection,
) -> None:
    b = int(server_now(conn))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO api_calls (token_id, bucket, calls) VALUES (%s, %s, 1)",
            [(TOKEN, b - 4000 - i) for i in range(PURGE_LIMIT + 20)],
        )
    put(conn, b - 100, 1)  # within the hour: kept
    assert reserve(conn, TOKEN, 1, 10, 100) == 0.0
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM api_calls WHERE token_id = %s", (TOKEN,))
        assert cur.fetchone()[0] == 20 + 2  # PURGE_LIMIT deleted; the recent and the new kept
    assert reserve(conn, TOKEN, 1, 10, 100) == 0.0
    with conn.cursor() as cur:
        cur.execute("SELECT min(bucket) FROM api_calls WHERE token_id = %s", (TOKEN,))
        assert cur.fetchone()[0] == b - 100


def test_a_token_or_an_impossible_count_is_refused_before_anything_is_sent(
    conn: pymysql.connections.Connection,
) -> None:
    with pytest.raises(ValueError, match="hash"):
        reserve(conn, "dop_v1_secret", 1, 5, 5)
    with pytest.raises(ValueError, match="never fits"):
        reserve(conn, TOKEN, 6, 5, 100)


def test_eight_connections_reserving_at_once_never_grant_more_than_the_limit(url: str) -> None:
    limit, granted, errors = 40, [], []
    start = threading.Barrier(8)

    def worker() -> None:
        log = MySQLLog.from_url(url, env={})
        try:
            start.wait()
            for _ in range(15):
                found = log.reserve_api_calls(TOKEN, 1, limit, 10 * limit)
                if found is None:
                    errors.append(log.budget_error)
                elif found == 0:
                    granted.append(1)
                else:
                    assert 0 < found <= 61
        finally:
            log.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(granted) == limit  # 120 asked: exactly the limit granted
    log = MySQLLog.from_url(url, env={})
    try:
        with log.query("SELECT sum(calls) AS n FROM api_calls") as found:
            assert [tuple(r) for r in found.rows] == [(limit,)]
        with log.query("SELECT reserved, refused FROM api_budget_head") as found:
            assert [tuple(r) for r in found.rows] == [(limit, 120 - limit)]
    finally:
        log.close()


def test_the_fleet_log_reserves_and_says_none_while_the_server_is_away(
    url: str, mariadb: PrivateMariaDB, tmp_path: Path
) -> None:
    log = FleetLog.open(
        tmp_path / "m0" / "events.db", url, env={"TRACKER_MACHINE_ID": "m0"}, retry_for=0.5,
        io_timeout=2.0,
    )  # fmt: skip
    try:
        assert log.reserve_api_calls(TOKEN, 1, 2, 10) == 0.0
        assert log.add_api_calls(TOKEN, 1)
        assert log.reserve_api_calls(TOKEN, 1, 2, 10) > 0  # 1 reserved + 1 added: full
        mariadb.stop()
        try:
            assert log.reserve_api_calls(TOKEN, 1, 2, 10) is None
            state = log.sync_state()
            assert state.error and "shared log" in state.error  # said by `status` and `sync`
            assert log.reserve_api_calls(TOKEN, 1, 2, 10) is None  # backing off: not tried
            assert not log.add_api_calls(TOKEN, 1)
        finally:
            mariadb.start()
        assert log.pull() is not None  # reached again: the failure is forgotten
        assert log.reserve_api_calls(TOKEN, 1, 20, 100) == 0.0
    finally:
        log.close()


def test_the_readme_grants_suffice_for_the_budget(
    mariadb: PrivateMariaDB, fresh_database: str, url: str
) -> None:
    with readme_user(mariadb, fresh_database) as user:
        target = user.url
        log = MySQLLog.from_url(target, env=user.env)
        try:
            with mariadb.admin(fresh_database) as admin, admin.cursor() as cur:
                cur.execute(
                    "INSERT INTO api_calls VALUES (%s, floor(unix_timestamp(now())) - 5000, 1)",
                    (TOKEN,),
                )  # an old bucket: the reservation deletes it (DELETE is granted)
            assert log.reserve_api_calls(TOKEN, 1, 1, 10) == 0.0, log.budget_error
            assert log.add_api_calls(TOKEN, 2), log.budget_error
            wait = log.reserve_api_calls(TOKEN, 1, 1, 10)
            assert wait is not None and wait > 0, log.budget_error
        finally:
            log.close()
        with mariadb.admin(fresh_database) as admin, admin.cursor() as cur:
            cur.execute("SELECT sum(calls), count(*) FROM api_calls")
            assert cur.fetchone() == (3, 1)


def test_migrations_are_taken_by_number_so_a_gap_in_the_numbers_is_fine(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    numbered = "-- migration: 1\nSELECT 1;\n-- migration: 3\nSELECT 3;\n"
    assert [n for n, _ in migrations(numbered)] == [1, 3]
    assert pending({1, 3}, numbered) == [] and pending({1}, numbered) == [3]
    assert pending({1, 3}, numbered.replace("-- migration: 3", "-- migration: 2\nSELECT 2;\n"
                                            "-- migration: 3")) == [2]  # fmt: skip
    target = mariadb.url(fresh_database)
    known = [n for n, _ in migrations()]
    assert 3 in known and known == sorted(known)
    assert migrate(target, env={}) == known
    log = MySQLLog.from_url(target, env={})
    try:
        assert log.reserve_api_calls(TOKEN, 1, 5, 5) == 0.0  # the schema check passed
    finally:
        log.close()
    with mariadb.admin(fresh_database) as admin, admin.cursor() as cur:
        cur.execute("DELETE FROM schema_migrations WHERE version = 3")  # as if never run
    log = MySQLLog.from_url(target, env={})
    try:
        with pytest.raises(LogError, match=r"lacks migration 3 .* migrate --shared"):
            log.last_seq()
        assert log.reserve_api_calls(TOKEN, 1, 5, 5) is None  # degraded, not raised
        assert log.budget_error and "migration 3" in log.budget_error
    finally:
        log.close()
    assert migrate(target, env={}) == [3]  # the missing one alone, run again idempotently
    log = MySQLLog.from_url(target, env={})
    try:
        assert log.reserve_api_calls(TOKEN, 1, 5, 5) == 0.0
    finally:
        log.close()
