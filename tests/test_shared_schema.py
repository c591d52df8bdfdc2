"""The shared log's schema versions (SPEC §10, design/fleet.md §3): migration numbers with gaps,
a newer compatible schema, a newer incompatible one (`schema_compat.min_client`), and a schema
behind this client; on the session's private MariaDB, the schema changed by hand as root.

Migration numbers are handed out per change, so a client may know 1 and 4 before 2 and 3 reach
it: "every migration applied" is judged on the numbers this client knows, never on the highest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mariadb_private import PrivateMariaDB
from tracker.api import Tracker
from tracker.cli.text import status_text
from tracker.clock import FakeClock
from tracker.config import load_settings
from tracker.errors import LogError
from tracker.events import DeploymentSucceeded, PushRecorded
from tracker.log.fleet import FleetLog
from tracker.log.mysql import MySQLLog, migrate, migrations
from tracker.log.mysql_server import SCHEMA_VERSION, known

pytestmark = pytest.mark.mysql

A, B = "a" * 40, "b" * 40
ROOT = Path(__file__).resolve().parents[1]


def as_root(mariadb: PrivateMariaDB, database: str, *statements: str) -> None:
    with mariadb.admin(database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def set_min_client(mariadb: PrivateMariaDB, database: str, value: int) -> None:
    as_root(mariadb, database, f"UPDATE schema_compat SET min_client = {int(value)} WHERE id = 1")


def shared(url: str) -> MySQLLog:
    return MySQLLog.from_url(url, env={}, clock=FakeClock(start=1_800_000_000.0), retry_for=0.5)


def test_the_client_knows_its_numbers_and_the_newest_is_its_version() -> None:
    numbers = [n for n, _ in migrations()]
    assert numbers == sorted(set(numbers)), "migrations are numbered once, in order"
    assert known() == frozenset(numbers) and SCHEMA_VERSION == max(numbers)
    assert 4 in known()  # schema_compat


def test_a_log_missing_a_known_migration_below_an_applied_higher_one_says_migrate(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    """Migration 1 and a higher number (9, from elsewhere) applied, 4 not: `max` would call the
    log new enough; the set of known numbers says 4 is missing."""
    url = mariadb.url(fresh_database)
    [(_, first)] = [m for m in migrations() if m[0] == 1]
    as_root(
        mariadb, fresh_database, *first,
        "INSERT INTO schema_migrations (version) VALUES (1), (9)",
    )  # fmt: skip
    log = shared(url)
    missing = r"lacks migration (\d+, )*4 .*run `tracker migrate --shared`$"
    with pytest.raises(LogError, match=missing):
        log.append(A, PushRecorded(sha=A, branch="main"))
    log.close()
    assert migrate(url, env={}) == sorted(known() - {1})  # only what is missing; 9 left alone
    log = shared(url)
    try:
        assert log.append(A, PushRecorded(sha=A, branch="main")) is not None
    finally:
        log.close()


def test_a_newer_compatible_schema_is_used_as_it_is(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    url = mariadb.url(fresh_database)
    migrate(url, env={})
    as_root(
        mariadb, fresh_database,
        "INSERT INTO schema_migrations (version) VALUES (97), (98)",  # a newer tracker's
        "CREATE TABLE IF NOT EXISTS later_feature (id INT PRIMARY KEY)",
    )  # fmt: skip
    set_min_client(mariadb, fresh_database, SCHEMA_VERSION)  # exactly ours: still allowed
    log = shared(url)
    try:
        assert log.append(A, PushRecorded(sha=A, branch="main")) is not None
        assert [e.seq for e in log.events()] == [1]
    finally:
        log.close()


def test_a_newer_incompatible_schema_refuses_reads_and_appends_and_says_upgrade_tracker(
    mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    url = mariadb.url(fresh_database)
    migrate(url, env={})
    opened = shared(url)
    opened.append(A, PushRecorded(sha=A, branch="main"))
    set_min_client(mariadb, fresh_database, 99)
    try:  # a connection opened before the floor rose learns it in its next append
        with pytest.raises(LogError, match=r"needs a tracker of schema 99 .*: upgrade tracker$"):
            opened.append(B, PushRecorded(sha=B, branch="main"))
    finally:
        opened.close()
    log = shared(url)
    try:
        with pytest.raises(LogError, match=r"needs a tracker of schema 99 .*: upgrade tracker$"):
            log.append(B, PushRecorded(sha=B, branch="main"))
        with pytest.raises(LogError, match=r"upgrade tracker$"):
            log.events()
    finally:
        log.close()
    assert migrate(url, env={}) == []  # nothing of ours is missing; migrate changes nothing
    with mariadb.admin(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), (SELECT min_client FROM schema_compat) FROM events")
        assert cur.fetchone() == (1, 99)  # B was not written; the floor stays


def fleet_tracker(monkeypatch: pytest.MonkeyPatch, url: str, path: Path, name: str) -> Tracker:
    monkeypatch.setenv("TRACKER_LOG_URL", url)
    monkeypatch.setenv("TRACKER_MACHINE_ID", name)
    monkeypatch.setenv("TRACKER_SYNC_DEADLINE", "5s")
    tracker = Tracker(path / name / "events.db", settings=load_settings(None, env={}))
    assert isinstance(tracker.store, FleetLog)
    return tracker


def test_in_fleet_mode_an_incompatible_schema_keeps_the_outbox_and_status_answers_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, mariadb: PrivateMariaDB, fresh_database: str, tmp_path: Path
) -> None:
    url = mariadb.url(fresh_database)
    migrate(url, env={})
    a = fleet_tracker(monkeypatch, url, tmp_path, "a")
    b = fleet_tracker(monkeypatch, url, tmp_path, "b")
    try:
        a.record_push(A, branch="main", monitor=False)
        a.store.append(A, DeploymentSucceeded(deployment_id="d1"), key="ok:a")
        assert b.status(A).state == "succeeded"  # pulled into b's cache
        set_min_client(mariadb, fresh_database, 99)
        a.record_push(B, branch="main", monitor=False)  # appended locally: waits
        fleet = a.store
        assert isinstance(fleet, FleetLog)
        assert fleet.forward() is None
        state = fleet.sync_state()
        assert state.outbox == 1 and state.error is not None
        assert state.error.endswith("upgrade tracker")
        st = a.status(B)
        assert st.state == "pending" and st.shared_log is not None  # the cache plus the outbox
        assert st.shared_log["outbox"] == 1
        assert str(st.shared_log["unreachable"]).endswith("upgrade tracker")
        st = b.status(B)  # 3 locally; its pull is refused: answered from the cache, and said
        assert st.state == "not_found" and "upgrade tracker" in status_text(st)
        assert b.status(A).state == "succeeded"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(PYTHONPATH=str(ROOT), TRACKER_LOG_URL=url, TRACKER_MACHINE_ID="a")
        done = subprocess.run(
            [sys.executable, "-m", "tracker", "--db", str(fleet.path), "sync"], env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 74 and "upgrade tracker" in done.stdout + done.stderr, done
        assert fleet.sync_state().outbox == 1  # kept: nothing lost
        set_min_client(mariadb, fresh_database, 1)  # the floor back (say, the rollout undone)
        sent = fleet.forward()
        assert sent is not None and [e.stream for e in sent] == [B]
        assert fleet.sync_state().outbox == 0
        assert b.status(B).state == "pending"
        with shared(url) as log:
            keys = [e.key for e in log.events()]
        assert len(keys) == len(set(keys)) == 3
    finally:
        a.close()
        b.close()
