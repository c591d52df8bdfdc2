"""The fleet's shared log on MySQL (tracker/log/mysql.py), on the session's private MariaDB.

What the contract suite cannot show alone: 32 appender processes while three followers tail
(every event exactly once and in order, positions contiguous); connections KILLed in the middle
of appends, again and again (nothing lost, nothing doubled, with keys and without); the server
stopped and started again; the schema run only by an explicit migrate; and the `tracker` user's
privileges (README) are enough to append and read, and refuse changing or deleting an event.
"""

from __future__ import annotations

import gc
import os
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.gitrepo import wait_until
from tests.support.mariadb_private import PrivateMariaDB, free_port, readme_user
from tracker.clock import FakeClock, iso
from tracker.errors import ConfigError, LockTimeoutError, LogError, UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    LogsFetched,
    MonitorStarted,
    MonitorTimedOut,
    PushConfirmed,
    PushRecorded,
)
from tracker.log import mysql_query, open_log
from tracker.log.base import Append
from tracker.log.mysql import MySQLLog, migrate, migrations
from tracker.read.stats import compute_stats, recent_history

pytestmark = pytest.mark.mysql

A, B, C = "a" * 40, "b" * 40, "c" * 40
T = 1_800_000_000.0
SUPPORT = Path(__file__).resolve().parent / "support"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def log(url: str) -> Iterator[MySQLLog]:
    found = open_log(url, clock=FakeClock(start=1_800_000_000.0))
    assert isinstance(found, MySQLLog)
    yield found
    found.close()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"


# -- the schema -------------------------------------------------------------------------------


def test_the_schema_is_run_only_by_migrate_and_a_second_run_changes_nothing(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    target = mariadb.url(fresh_database)
    with pytest.raises(LogError, match="no schema yet: run `tracker migrate --shared`"):
        open_log(target).last_seq()
    assert migrate(target, env={}) == [n for n, _ in migrations()]
    assert migrate(target, env={}) == []  # idempotent: nothing pending
    with mariadb.admin(fresh_database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables t WHERE table_schema = %s AND NOT"
            " EXISTS (SELECT 1 FROM information_schema.table_constraints c WHERE"
            " c.table_schema = t.table_schema AND c.table_name = t.table_name"
            " AND c.constraint_type = 'PRIMARY KEY')",
            (fresh_database,),
        )
        assert cur.fetchall() == ()  # every table has a primary key (managed MySQL's rule)
        cur.execute(
            "SELECT (SELECT count(*) FROM information_schema.triggers WHERE trigger_schema = %s)"
            " + (SELECT count(*) FROM information_schema.routines WHERE routine_schema = %s)",
            (fresh_database, fresh_database),
        )
        assert cur.fetchone() == (0,)  # no SUPER on managed MySQL: no trigger, no routine
        with pytest.raises(pymysql.err.MySQLError):  # the server refuses a table without one,
            cur.execute("CREATE TABLE scratch (x INT)")  # as DigitalOcean's does: so migrate


def test_the_url_is_checked_as_the_mysql_sources_is_and_the_password_comes_from_the_env(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    with pytest.raises(ConfigError, match="TLS must be required"):
        MySQLLog.from_url("mysql://tracker@db.example:25060/tracker?ssl=preferred", env={})
    with pytest.raises(ConfigError, match="TRACKER_LOG_URL: has no database name"):
        MySQLLog.from_url("mysql://tracker@db.example:25060/", env={})
    far = MySQLLog.from_url(
        "mysql://tracker@db.example:25060/tracker", env={"TRACKER_LOG_PASSWORD": "s3cret-pw"}
    )
    assert far.settings.ssl == "required" and far.settings.password == "s3cret-pw"
    assert "s3cret" not in repr(far) and "s3cret" not in far.url
    with pytest.raises(LogError) as refused:
        MySQLLog.from_url(mariadb.url(fresh_database), env={"TRACKER_LOG_PASSWORD": "wrong-pw"})\
            .last_seq()  # fmt: skip
    assert "wrong-pw" not in str(refused.value) and "refused user 'root'" in str(refused.value)


# -- one round trip ---------------------------------------------------------------------------


def test_an_append_or_a_batch_is_one_round_trip_even_a_verdict(log: MySQLLog) -> None:
    """The regression guard of design/fleet.md §4: the head lock must never be held across
    round trips. Counted, not timed: each request pymysql sends is one `query` call."""
    log.append(C, PushRecorded(sha=C, branch="main"))  # connected, schema checked
    conn = log.conn
    sent: list[str] = []
    original = conn.query

    def counting(sql: str, unbuffered: bool = False) -> int:
        sent.append(sql)
        return original(sql, unbuffered)

    conn.query = counting  # type: ignore[method-assign]
    log.append(A, PushRecorded(sha=A, branch="main", source="hook"), key="push:a")
    for n in range(5):
        log.append(A, DeploymentPolled(source="digitalocean", ok=True, api_calls=1), key=f"p{n}")
    log.append_all(
        [
            Append(B, PushRecorded(sha=B, branch="main")),
            Append(B, DeploymentPolled(source="mysql", ok=True)),
            Append(A, DeploymentPolled(source="mysql", ok=True)),
        ]
    )
    log.append(A, DeploymentSucceeded("d1"), key="verdict:a")  # judged on the row it folded
    assert len(sent) == 8, sent  # 8 appends, 8 requests: nothing sent before or after any
    assert all(q.startswith("START TRANSACTION;") for q in sent)
    assert log.retries == {"lost": 0, "found_written": 0, "resent": 0, "replanned": 0}
    row = log.deployment(A)
    assert row is not None and row.state == "succeeded"


# -- two machines, one log -------------------------------------------------------------------


def test_two_clients_share_keys_and_the_first_verdict_in_global_order_wins_for_both(
    url: str,
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    one, two = open_log(url, clock=clock), open_log(url, clock=clock)
    try:
        assert one.append(A, PushRecorded(sha=A, branch="main", source="hook"), key="p:a")
        assert two.append(A, PushRecorded(sha=A, branch="main"), key="p:a") is None  # fleet-wide
        row = two.deployment(A)
        assert row is not None and row.state == "pending"  # two has folded A: not terminal
        assert one.append(A, DeploymentSucceeded("d1")) is not None
        # two judged A before one's verdict: its own is refused by the version check, judged
        # again on the newer row, and dropped (a second verdict is not a new fact)
        assert two.append(A, DeploymentFailed("d1")) is None
        for log in (one, two):
            row = log.deployment(A)
            assert row is not None and row.state == "succeeded"
        assert [e.type for e in one.events()] == ["PushRecorded", "DeploymentSucceeded"]
        assert isinstance(two, MySQLLog) and two.retries["replanned"] >= 1
        assert one.rebuild().clean and two.rebuild().clean
    finally:
        one.close()
        two.close()


def test_a_verdict_judged_on_a_stale_row_is_judged_again_not_dropped(url: str) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    one, two = open_log(url, clock=clock), open_log(url, clock=clock)
    try:
        one.append(A, PushRecorded(sha=A, branch="main", source="hook"))
        one.append(A, DeploymentSucceeded("d1"))
        row = two.deployment(A)
        assert row is not None and row.terminal  # two folds A as judged ...
        one.append(A, PushRecorded(sha=A, branch="main", source="hook"))  # ... pushed again
        assert two.append(A, DeploymentFailed("d2", attempt=2)) is not None  # a new attempt's
        for log in (one, two):
            row = log.deployment(A)
            assert row is not None and (row.attempt, row.state) == (2, "failed")
    finally:
        one.close()
        two.close()


# -- many writers, many followers -------------------------------------------------------------


def test_32_appender_processes_while_3_followers_tail_every_event_once_and_in_order(
    url: str, tmp_path: Path
) -> None:
    writers, per_writer = 32, 25
    total = writers * per_writer
    barrier = tmp_path / "go"
    follower = [sys.executable, str(SUPPORT / "log_follower.py"), url, str(total)]
    followers = [
        subprocess.Popen(
            [*follower, str(tmp_path / f"seen-{f}")],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for f in range(3)
    ]
    writer = [sys.executable, str(SUPPORT / "store_writer.py"), "concurrent", url]
    procs = [
        subprocess.Popen(
            [*writer, str(w), str(per_writer), f"{A},{B},{C}", str(barrier)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(writers)
    ]
    for p in followers + procs:
        ready(p)
    barrier.touch()  # every writer at once, the followers already tailing
    assert [p.wait(timeout=300) for p in procs] == [0] * writers
    assert [p.wait(timeout=120) for p in followers] == [0] * 3

    expected = {f"w{w}:{n}" for w in range(writers) for n in range(per_writer)}
    for f in range(3):
        seen = [line.split() for line in (tmp_path / f"seen-{f}").read_text().splitlines()]
        assert [int(seq) for seq, _ in seen] == list(range(1, total + 1))  # in order, no gap
        keys = [key for _, key in seen]
        assert len(keys) == len(set(keys)) and set(keys) == expected  # each exactly once
        for w in range(writers):  # each writer's appends in the order it made them
            mine = [int(k.split(":")[1]) for k in keys if k.startswith(f"w{w}:")]
            assert mine == sorted(mine)
    log = open_log(url)
    try:
        found = log.events()
        assert [e.seq for e in found] == list(range(1, total + 1))
        for stream in (A, B, C):  # versions contiguous in every stream
            versions = [e.version for e in found if e.stream == stream]
            assert versions == list(range(1, len(versions) + 1))
        assert log.integrity_check() == "ok" and log.rebuild().clean
    finally:
        log.close()


# -- connections killed mid-append ------------------------------------------------------------


def kill(admin: pymysql.connections.Connection, ids: set[int]) -> None:
    with admin.cursor() as cur:
        for thread in ids:
            try:
                cur.execute(f"KILL CONNECTION {int(thread)}")
            except pymysql.err.OperationalError:  # gone meanwhile
                pass


def connections(
    admin: pymysql.connections.Connection, database: str, waiting_on_head: bool = False
) -> set[int]:
    """The live connections to `database` but the admin's own (those waiting for the head)."""
    sql = (
        "SELECT id FROM information_schema.processlist"
        " WHERE db = %s AND id <> CONNECTION_ID() AND command <> 'Killed'"
    )
    args: list[object] = [database]
    if waiting_on_head:
        sql += " AND info LIKE %s"
        args.append("%FROM log_head WHERE id = 1 FOR UPDATE%")
    with admin.cursor() as cur:
        cur.execute(sql, args)
        return {int(r[0]) for r in cur.fetchall()}


def test_a_connection_killed_inside_the_append_transaction_again_and_again_writes_it_once(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, log: MySQLLog
) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    holder = mariadb.admin(fresh_database)  # holds the head: the append waits inside its batch
    admin = mariadb.admin()
    results: list[object] = []
    with holder.cursor() as cur:
        cur.execute("START TRANSACTION")
        cur.execute("SELECT last_seq FROM log_head WHERE id = 1 FOR UPDATE")
    appender = threading.Thread(
        target=lambda: results.append(
            log.append_all(
                [
                    Append(A, DeploymentPolled(source="mysql", ok=True, latency_ms=1.5)),
                    Append(A, DeploymentSucceeded("d1"), "verdict:a"),
                ]
            )
        )
    )
    appender.start()
    killed: set[int] = set()
    for _ in range(5):  # killed five times while it waits for the head, inside its transaction
        waiting = wait_until(
            lambda: connections(admin, fresh_database, waiting_on_head=True) - killed,
            timeout=60,
        )
        assert isinstance(waiting, set) and holder.thread_id() not in waiting
        kill(admin, waiting)
        killed |= waiting
    holder.rollback()
    holder.close()
    appender.join(timeout=60)
    assert not appender.is_alive()
    (written,) = results
    assert [e.type for e in written] == ["DeploymentPolled", "DeploymentSucceeded"]  # type: ignore[attr-defined]
    found = log.events()
    assert [(e.seq, e.type) for e in found] == [
        (1, "PushRecorded"), (2, "DeploymentPolled"), (3, "DeploymentSucceeded"),
    ]  # fmt: skip
    row = log.deployment(A)
    assert row is not None and row.state == "succeeded"
    admin.close()


def test_connections_killed_at_random_during_a_flood_of_appends_lose_and_double_nothing(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, log: MySQLLog
) -> None:
    rounds = 300
    go: queue.Queue[int] = queue.Queue()  # how many appends the appender may make next
    went: queue.Queue[BaseException | None] = queue.Queue()  # after each go: done, or why not

    def flood() -> None:
        n = 0
        while n < rounds:
            try:
                for _ in range(go.get(timeout=120)):
                    stream = (A, B)[n % 2]
                    # keyed and keyless: a keyless one is known by its latency (n), once each
                    key = f"k:{n}" if n % 3 else None
                    event = DeploymentPolled(source="mysql", ok=True, latency_ms=n)
                    log.append(stream, event, key=key)
                    n += 1
                went.put(None)
            except BaseException as exc:  # pragma: no cover (reported below)
                went.put(exc)
                return

    admin = mariadb.admin()
    worker = threading.Thread(target=flood)
    worker.start()
    kills, given, rng = 0, 0, random.Random(15)
    while given < rounds:
        step = min(rng.randint(1, 3), rounds - given)
        go.put(step)  # the appender starts on its next appends, and meanwhile ...
        found = connections(admin, fresh_database)
        kill(admin, found)  # ... its connection is killed: before, during or after a batch
        kills += len(found)
        given += step
        assert went.get(timeout=120) is None
    worker.join(timeout=120)
    admin.close()
    assert kills >= 50, f"only {kills} kills landed: the test proved little"
    assert log.retries["lost"] >= 50 and log.retries["resent"] >= 1, log.retries
    found_events = log.events()
    assert [e.seq for e in found_events] == list(range(1, rounds + 1))  # none lost or doubled
    assert sorted(e.data["latency_ms"] for e in found_events) == list(range(rounds))
    assert log.known_keys({f"k:{n}" for n in range(rounds)}) == {
        f"k:{n}" for n in range(rounds) if n % 3
    }
    assert log.integrity_check() == "ok" and log.rebuild().clean


# -- the server stopped ------------------------------------------------------------------------


def test_with_the_server_stopped_an_append_fails_clearly_and_after_a_restart_it_goes_on(
    mariadb: PrivateMariaDB, url: str
) -> None:
    log = MySQLLog.from_url(url, env={}, retry_for=1.0)
    log.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    mariadb.kill()  # SIGKILL: what was committed must survive it
    try:
        with pytest.raises(LogError, match=r"unreachable|cannot"):
            log.append(A, PushRecorded(sha=A, branch="main"), key="push:a2")
    finally:
        mariadb.start()
    assert log.append(A, PushRecorded(sha=A, branch="main"), key="push:a2") is not None
    assert [e.key for e in log.events()] == ["push:a", "push:a2"]
    log.close()


def test_with_the_server_frozen_an_append_gives_up_in_time_and_after_a_thaw_is_stored_once(
    mariadb: PrivateMariaDB, url: str
) -> None:
    """A partition seen from the client: the socket stays open and nothing answers."""
    log = MySQLLog.from_url(url, env={}, retry_for=1.0, io_timeout=2.0, lock_timeout=1.0)
    log.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    mariadb.freeze()
    try:
        with pytest.raises(LogError, match="unreachable"):
            log.append(A, PushRecorded(sha=A, branch="main"), key="push:a2")
    finally:
        mariadb.thaw()
    log.append(A, PushRecorded(sha=A, branch="main"), key="push:a2")  # sent again: once
    assert [e.key for e in log.events()] == ["push:a", "push:a2"]
    assert log.integrity_check() == "ok"
    log.close()


# -- stats, query and check -------------------------------------------------------------------


def scenario() -> list[tuple[str, Event, float]]:
    """Thirty commits over five hours on two branches: every outcome, failed and retried
    calls, phases, platform times, rate limits, logs, and commits pushed again."""
    found: list[tuple[str, Event, float]] = []
    for i in range(30):
        sha, t0 = f"{i:040x}", T + 600.0 * i + 7.5
        branch = "dev" if i % 3 == 0 else "main"

        def add(event: Event, after: float, sha: str = sha) -> None:
            found.append((sha, event, t0 + after))

        add(PushRecorded(sha=sha, branch=branch, source="hook"), 0.0)
        add(MonitorStarted(pid=100 + i, host="h", policy="informed"), 1.0)
        for j, phase in enumerate(("PENDING_BUILD", "BUILDING", "DEPLOYING")[: i % 3 + 1]):
            ok = (i + j) % 5 != 0
            add(DeploymentPolled(
                source="digitalocean" if j % 2 == 0 else "mysql", ok=ok, found=ok, phase=phase,
                deployment_id=f"d{i}", api_calls=1 + j % 2, db_queries=j % 2,
                error_kind=None if ok or j else "timeout", retry=(i + j) % 7 == 0,
                ratelimit_remaining=None if j % 2 else 5000 - 3 * i,
                platform_at=iso(t0 + 10.0 * j + 2.0),
            ), 10.0 * (j + 1))  # fmt: skip
        end, outcome = 60.0 + i, i % 6
        if outcome == 0:
            add(DeploymentSucceeded(f"d{i}", platform_at=iso(t0 + end - 3.0)), end)
        elif outcome == 1:
            add(DeploymentFailed(f"d{i}", reason={"code": "build"}), end)
            add(LogsFetched(f"d{i}", api_calls=2, lines=10, error="gone" if i % 4 else None), end)
        elif outcome == 2:
            add(DeploymentFailed(f"d{i}", phase="CANCELED"), end)
        elif outcome == 3:
            add(MonitorTimedOut(waited_s=end, last_phase="BUILDING"), end)
        elif outcome == 4:
            add(DeploymentSuperseded(by_sha=f"{i + 1:040x}", by_deployment_id=None,
                                     went_live=True), end)  # fmt: skip
        if i % 8 == 0:  # pushed again, and this time it goes live
            add(PushRecorded(sha=sha, branch=branch, source="hook"), end + 30.0)
            add(DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING",
                                 api_calls=1), end + 40.0)  # fmt: skip
            add(DeploymentSucceeded(f"e{i}", attempt=2), end + 90.0)
    return sorted(found, key=lambda f: f[2])


def test_stats_and_the_history_agree_with_the_sqlite_logs_on_the_same_events(
    log: MySQLLog, tmp_path: Path
) -> None:
    """The in-memory stats snapshot answers as SQLite's queries do, with and without a window
    (a `since` inside an hour: SQLite sums whole hours from its totals and the rest from rows)."""
    local = open_log(tmp_path / "events.db", clock=FakeClock(start=T))
    try:
        for sha, event, at in scenario():
            for target in (log, local):
                target.append(sha, event, at=at)
        for since, branch in [(None, None), (None, "main"), (T + 5000.0, None),
                              (T + 7321.5, "dev"), (T + 99_999.0, None)]:  # fmt: skip
            with log.stats_queries() as ours, local.stats_queries() as theirs:
                mine = compute_stats(ours, now=T + 20_000.0, since=since, branch=branch)
                expected = compute_stats(theirs, now=T + 20_000.0, since=since, branch=branch)
            assert mine.to_dict() == expected.to_dict(), (since, branch)
        assert compute_stats(ours, now=T).deployments.total == 34  # every attempt counted once
        for branch in (None, "main", "dev"):
            for limit in (1, 5, 100):
                assert recent_history(log, branch=branch, limit=limit) == recent_history(
                    local, branch=branch, limit=limit
                ), (branch, limit)
    finally:
        local.close()


def test_a_stats_snapshot_is_not_changed_by_later_appends(log: MySQLLog, url: str) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"), at=T)
    other = open_log(url, clock=FakeClock(start=T))
    try:
        with log.stats_queries() as queries:
            before = compute_stats(queries, now=T + 100).to_dict()
            other.append(B, PushRecorded(sha=B, branch="main"), at=T + 1)
            log.append(A, DeploymentPolled(source="digitalocean", ok=True, api_calls=4), at=T + 2)
            assert compute_stats(queries, now=T + 100).to_dict() == before
        with log.stats_queries() as queries:
            after = compute_stats(queries, now=T + 100)
        assert after.deployments.total == 2 and after.api_calls.total == 4
    finally:
        other.close()


def test_a_query_binds_parameters_reads_values_as_text_and_numbers(log: MySQLLog) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    log.append(A, DeploymentPolled(source="digitalocean", ok=True, api_calls=2))
    sql = (
        "SELECT stream, count(*) AS n, sum(version) AS total, '50%' AS pct, 1--1 AS two,"
        " max(ikey) AS ikey -- a comment; not a second statement\n"
        "FROM events WHERE stream = :s AND type <> ':t' /* :u; */ GROUP BY stream"
    )
    with log.query(sql, {"s": A, "unused": "x"}) as found:
        assert found.columns == ["stream", "n", "total", "pct", "two", "ikey"]
        assert [tuple(r) for r in found.rows] == [(A, 2, 3, "50%", 2, "push:a")]
    with log.query("SELECT `type` AS `a;b` FROM events WHERE seq = :n;", {"n": "2"}) as found:
        assert found.columns == ["a;b"] and [list(r) for r in found.rows] == [["DeploymentPolled"]]
    with (
        pytest.raises(UsageError, match="needs a value for :s"),
        log.query("SELECT 1 FROM events WHERE stream = :s"),
    ):
        pass  # pragma: no cover
    with pytest.raises(UsageError, match="the query failed"), log.query("SELECT * FROM nowhere"):
        pass  # pragma: no cover


def test_a_query_left_before_its_last_row_leaves_nothing_behind(
    log: MySQLLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append_all([Append(f"{i:040x}", PushRecorded(sha=f"{i:040x}", branch="main"))
                    for i in range(300)])  # fmt: skip
    raised: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)  # what a collected cursor says
    with log.query("SELECT seq, data FROM events ORDER BY seq") as found:
        assert next(iter(found.rows))[0] == 1
    del found
    gc.collect()
    assert raised == [] and log.last_seq() == 300 and log.check().lock_ok


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM events INTO OUTFILE '/tmp/tracker-query-out'",
        "SELECT last_seq INTO @x FROM log_head",
        "SELECT last_seq FROM log_head FOR UPDATE",
        "SELECT last_seq FROM log_head FOR SHARE",
        "SELECT last_seq FROM log_head LOCK IN SHARE MODE",
        "SELECT GET_LOCK('tracker:migrate', 0)",
        "SELECT 1 /*! ; DELETE FROM events */",
        "SELECT 1 /*M! , (SELECT 1 FROM log_head FOR UPDATE) */",
        "WITH x AS (SELECT 1) DELETE FROM events",
        "SELECT ';'; DELETE FROM events",
        "SELECT 1 --x\n; DELETE FROM events",
        "select 1 # a comment\n;update log_head set last_seq = 0",
        "DROP TABLE events",
        "SET @a = 1",
        "INSERT INTO log_head VALUES (2, 0)",
        "SELECT 'unclosed",
        "",
    ],
)
def test_a_query_refuses_what_would_write_lock_or_run_more_than_one_statement(
    log: MySQLLog, sql: str
) -> None:
    log.append(A, PushRecorded(sha=A, branch="main"))
    with pytest.raises(UsageError), log.query(sql) as found:
        list(found.rows)
    assert [e.seq for e in log.events()] == [1] and log.integrity_check() == "ok"
    assert log.append(A, PushConfirmed(sha=A), at=T) is not None  # the head was not left held


@pytest.mark.parametrize(
    ("sql", "mode", "refused"),
    [
        (r"SELECT 'a\' INTO OUTFILE '/tmp/x' -- '", "", False),  # one string, then a syntax error
        (r"SELECT 'a\' INTO OUTFILE '/tmp/x' -- '", "NO_BACKSLASH_ESCAPES", True),
        (r'SELECT "a\" INTO OUTFILE "/tmp/x" -- "', "", False),
        (r'SELECT "a\" INTO OUTFILE "/tmp/x" -- "', "ANSI_QUOTES", True),  # "a\" is a name
        ("SELECT `a\\` INTO OUTFILE 'x' -- `", "", True),  # no escape in a quoted name
    ],
)
def test_the_statement_is_read_as_the_sessions_sql_mode_makes_the_server_read_it(
    sql: str, mode: str, refused: bool
) -> None:
    if refused:
        with pytest.raises(UsageError, match="INTO"):
            mysql_query.prepare(sql, sql_mode=f"STRICT_TRANS_TABLES,{mode}")
    else:
        mysql_query.prepare(sql, sql_mode=mode)


@pytest.mark.parametrize(
    "sql",
    ["DELETE FROM events", "UPDATE log_head SET last_seq = 0", "SELECT 1; DELETE FROM events"],
)
def test_a_write_past_the_statement_check_is_refused_by_the_server_too(
    log: MySQLLog, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second guard alone: with the statement check switched off, the server refuses the
    write (a READ ONLY transaction) or the second statement (no multi-statements)."""
    log.append(A, PushRecorded(sha=A, branch="main"))
    monkeypatch.setattr(mysql_query, "prepare", lambda sql, sql_mode="": (sql, []))
    with pytest.raises(UsageError), log.query(sql) as found:
        list(found.rows)
    assert [e.seq for e in log.events()] == [1] and log.integrity_check() == "ok"


def test_a_check_finds_the_head_lock_held_and_patience_waits_less(
    url: str, mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    log = open_log(url, clock=FakeClock(start=T), lock_timeout=3.0)
    try:
        log.append(A, PushRecorded(sha=A, branch="main"))
        with mariadb.admin(fresh_database) as holder, holder.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT last_seq FROM log_head WHERE id = 1 FOR UPDATE")
            with log.patience(1.0):
                started = time.monotonic()
                report = log.check()
                assert time.monotonic() - started < 2.5
                with pytest.raises(LockTimeoutError, match=r"more than 1 s"):
                    log.append(A, PushConfirmed(sha=A))
            assert report.storage_ok and report.events == 1 and not report.lock_ok
            assert isinstance(report.lock_error, LockTimeoutError)
            assert "log_head" in report.lock_location and report.location == log.url  # type: ignore[attr-defined]
            started = time.monotonic()
            with pytest.raises(LockTimeoutError, match=r"more than 3 s"):  # the log's own again
                log.append(A, PushConfirmed(sha=A))
            assert time.monotonic() - started > 2.5
            cur.execute("ROLLBACK")
        assert log.append(A, PushConfirmed(sha=A)) is not None
        report = log.check()
        assert report.storage_ok and report.lock_ok and report.events == 2
    finally:
        log.close()


def test_a_check_of_a_server_that_is_not_there_reports_it_and_raises_nothing() -> None:
    log = open_log(f"mysql://root@127.0.0.1:{free_port()}/nowhere", retry_for=0.5)
    report = log.check()
    assert not report.storage_ok and not report.lock_ok and report.events is None
    assert isinstance(report.storage_error, LogError) and "shared log" in str(report.storage_error)
    assert isinstance(report.lock_error, LogError)


# -- the tracker user's privileges --------------------------------------------------------------


def test_the_readme_grants_suffice_to_append_and_read_and_refuse_changing_an_event(
    mariadb: PrivateMariaDB, fresh_database: str, url: str
) -> None:
    with readme_user(mariadb, fresh_database) as user:
        target = user.url
        env = user.env
        log = MySQLLog.from_url(target, env=env, clock=FakeClock(start=1_800_000_000.0))
        log.append(A, PushRecorded(sha=A, branch="main", source="hook"), key="push:a")
        log.append_all(
            [Append(B, PushRecorded(sha=B, branch="main")), Append(A, DeploymentSucceeded("d1"))]
        )
        assert log.append(A, PushRecorded(sha=A, branch="main"), key="push:a") is None
        assert [e.seq for e in log.events()] == [1, 2, 3]
        row = log.deployment(A)
        assert row is not None and row.state == "succeeded"
        assert log.integrity_check() == "ok" and log.rebuild().clean
        report = log.check()  # the head lock is taken (FOR UPDATE) with these grants too
        assert report.storage_ok and report.lock_ok and report.events == 3
        with log.query("SELECT count(*) AS n FROM events WHERE stream = :s", {"s": A}) as found:
            assert [tuple(r) for r in found.rows] == [(2,)]
        log.close()
        with pymysql.connect(
            host="127.0.0.1", port=mariadb.port, user=user.name, password=user.password,
            database=fresh_database, autocommit=True,
        ) as conn, conn.cursor() as cur:  # fmt: skip
            for forbidden in (
                "UPDATE events SET data = '{}' WHERE seq = 1",
                "DELETE FROM events WHERE seq = 1",
                "DROP TABLE events",
                "DELETE FROM log_head",
                "CREATE TABLE scratch (id INT PRIMARY KEY)",
            ):
                with pytest.raises(pymysql.err.OperationalError) as refused:
                    cur.execute(forbidden)
                assert refused.value.args[0] in (1142, 1044), forbidden  # command denied
