"""The fleet log (`tracker.log.fleet.FleetLog`, SPEC §10): each machine's SQLite log as a cache of
the shared MySQL log plus an outbox, on the session's private MariaDB.

Machines are separate local log paths (each with its own id) over one shared URL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.mariadb_private import PrivateMariaDB
from tracker.api import Tracker
from tracker.cli.text import status_text
from tracker.clock import FakeClock
from tracker.config import load_settings
from tracker.events import DeploymentFailed, DeploymentPolled, DeploymentSucceeded, PushRecorded
from tracker.log import EventLog
from tracker.log.base import Append
from tracker.log.fleet import FleetLog, machine_id
from tracker.log.mysql import MySQLLog

pytestmark = pytest.mark.mysql

A, B, C = "a" * 40, "b" * 40, "c" * 40

Machine = Callable[[str], FleetLog]


@pytest.fixture
def machine(url: str, tmp_path: Path) -> Iterator[Machine]:
    clock = FakeClock(start=1_800_000_000.0)
    opened: list[FleetLog] = []

    def open_machine(name: str) -> FleetLog:
        log = FleetLog.open(
            tmp_path / name / "events.db", url, clock=clock, env={"TRACKER_MACHINE_ID": name},
            retry_for=0.5, io_timeout=2.0, lock_timeout=2.0,
        )  # fmt: skip
        opened.append(log)
        return log

    yield open_machine
    for log in opened:
        log.close()


def dump(log: FleetLog) -> list[tuple[object, ...]]:
    """Every projection row of the cache, for comparing machines."""
    conn = sqlite3.connect(log.cache.path)
    try:
        found: list[tuple[object, ...]] = []
        for table in ("deployments", "source_calls", "deployment_measures"):
            found += [(table, *r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
        return found
    finally:
        conn.close()


def test_another_machines_push_is_seen_pending_then_with_its_verdict(machine: Machine) -> None:
    a, b = machine("a"), machine("b")
    assert a.append(A, PushRecorded(sha=A, branch="main"), key="push:a") is not None
    assert b.deployment(A) is None  # not pulled yet: the local answer would be 3
    assert b.pull() == 1
    row = b.deployment(A)
    assert row is not None and row.state == "pending"
    a.append(A, DeploymentSucceeded(deployment_id="d1", source="digitalocean"), key="ok:a")
    assert b.pull() == 1
    row = b.deployment(A)
    assert row is not None and row.state == "succeeded"
    assert [e.seq for e in b.events()] == [1, 2] == [e.seq for e in a.events()]
    assert a.sync_state().outbox == 0 and a.sync_state().error is None


def test_three_machines_rebuild_identical_rows_positions_contiguous_keys_once(
    machine: Machine, url: str
) -> None:
    logs = [machine(name) for name in ("a", "b", "c")]
    for round_ in range(4):
        for n, (log, sha) in enumerate(zip(logs, (A, B, C), strict=True)):
            if round_ == 0:
                log.append(sha, PushRecorded(sha=sha, branch="main"), key=f"push:{sha[0]}")
            else:
                log.append(
                    sha,
                    DeploymentPolled(source="digitalocean", ok=True, found=True,
                                     phase="BUILDING", deployment_id=f"d{n}"),
                    key=f"poll:{sha[0]}:{round_}",
                )  # fmt: skip
    # every machine records the same verdict of C; only the first in global order is stored
    logs[2].append(C, DeploymentFailed(deployment_id="d2", reason={"code": "x"}), key="v:c")
    logs[0].append(C, DeploymentSucceeded(deployment_id="d2"), key="v:c:late")
    for log in logs:
        assert log.pull() is not None
    shared = MySQLLog.from_url(url, env={})
    try:
        everything = shared.events()
    finally:
        shared.close()
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    keys = [e.key for e in everything]
    assert len(keys) == len(set(keys)) == 13 and "v:c:late" not in keys
    first = dump(logs[0])
    for log in logs:
        assert [(e.seq, e.key, e.recorded_at) for e in log.events()] == [
            (e.seq, e.key, e.recorded_at) for e in everything
        ]
        assert log.rebuild().clean
        assert dump(log) == first
        row = log.deployment(C)
        assert row is not None and row.state == "failed"  # the first verdict, everywhere


def test_an_outbox_verdict_that_lost_is_superseded_on_pull_not_applied_twice(
    machine: Machine, mariadb: PrivateMariaDB
) -> None:
    a, b = machine("a"), machine("b")
    a.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    b.pull()
    mariadb.stop()
    try:
        b.append(A, DeploymentFailed(deployment_id="d1"), key="fail:b")  # waits in b's outbox
        row = b.deployment(A)
        assert row is not None and row.state == "failed"  # b's own view, from its outbox
    finally:
        mariadb.start()
    a.append(A, DeploymentSucceeded(deployment_id="d1"), key="ok:a")  # first in global order
    assert b.forward() == []  # b's verdict is late: dropped by the shared log
    row = b.deployment(A)
    assert row is not None and row.state == "succeeded"
    assert b.sync_state().outbox == 0
    assert [e.key for e in b.events()] == ["push:a", "ok:a"]
    assert b.rebuild().clean


def test_with_the_server_stopped_appends_wait_in_the_outbox_and_drain_once_after(
    machine: Machine, mariadb: PrivateMariaDB, url: str
) -> None:
    a, b = machine("a"), machine("b")
    a.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    b.pull()
    mariadb.kill()
    try:
        for n in range(3):
            stored = a.append(
                A, DeploymentPolled(source="digitalocean", ok=True, phase="BUILDING"),
                key=f"poll:{n}",
            )  # fmt: skip
            assert stored is not None  # appended locally
        started = time.monotonic()
        a.append(B, PushRecorded(sha=B, branch="main"))  # keyless: the outbox gives it a key
        assert time.monotonic() - started < 0.5  # just failed: outboxed, not tried again
        assert a.sync_state().outbox == 4
        state = a.sync_state()
        assert state.error is not None and state.pulled_at is not None
        row = a.deployment(A)
        assert row is not None and row.polls == 3  # the cache plus the outbox
        assert a.deployment(B) is not None
        assert b.pull() is None and b.sync_state().error  # b answers from its cache
        row = b.deployment(A)
        assert row is not None and row.state == "pending"
        assert a.forward() is None and a.sync_state().outbox == 4  # still unreachable
    finally:
        mariadb.start()
    sent = a.forward()
    assert sent is not None and len(sent) == 4
    assert a.forward() == []  # nothing left, nothing doubled
    assert a.sync_state().outbox == 0 and a.sync_state().error is None
    assert b.pull() == 4
    shared = MySQLLog.from_url(url, env={})
    try:
        everything = shared.events()
    finally:
        shared.close()
    keys = [e.key for e in everything]
    assert len(keys) == len(set(keys)) == 5
    assert [e.seq for e in everything] == [1, 2, 3, 4, 5]
    assert dump(a) == dump(b) and a.rebuild().clean and b.rebuild().clean


def test_a_forward_sent_again_after_it_was_stored_stores_nothing_twice(machine: Machine) -> None:
    a = machine("a")
    a.forward_on_append = False
    a.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    waiting = a.outbox_events()
    a.shared.append_all(waiting)  # stored, as if the reply was lost before the outbox knew
    assert a.forward() == []  # sent again: the key is stored already
    assert [e.key for e in a.events()] == ["push:a"]
    assert a.sync_state().outbox == 0


def test_the_machine_id_is_kept_beside_the_log(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = machine_id(path, {})
    assert first and machine_id(path, {}) == first
    assert (tmp_path / "events.db.machine-id").stat().st_mode & 0o077 == 0
    assert machine_id(path, {"TRACKER_MACHINE_ID": "ci-7"}) == "ci-7"


# -- Tracker and the CLI in fleet mode ----------------------------------------------------------


def fleet_tracker(monkeypatch: pytest.MonkeyPatch, url: str, path: Path, name: str) -> Tracker:
    monkeypatch.setenv("TRACKER_LOG_URL", url)
    monkeypatch.setenv("TRACKER_MACHINE_ID", name)
    monkeypatch.setenv("TRACKER_SYNC_DEADLINE", "2s")
    tracker = Tracker(path / name / "events.db", settings=load_settings(None, env={}))
    assert isinstance(tracker.store, FleetLog) and isinstance(tracker.store, EventLog)
    return tracker


def test_status_pulls_once_only_when_the_answer_would_be_2_or_3_and_says_when_it_cannot(
    monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path, mariadb: PrivateMariaDB
) -> None:
    a = fleet_tracker(monkeypatch, url, tmp_path, "a")
    b = fleet_tracker(monkeypatch, url, tmp_path, "b")
    try:
        a.record_push(A, branch="main", monitor=False)
        st = b.status(A)
        assert st.state == "pending" and st.shared_log is not None
        assert st.shared_log["pulled"] and st.shared_log["unreachable"] is None
        assert st.shared_log["machine"] == "b" and st.shared_log["as_of"]
        a.store.append(A, DeploymentSucceeded(deployment_id="d1"), key="ok:a")
        st = b.status(A, offline=True)  # the cache alone: still pending
        assert st.state == "pending" and st.shared_log is not None
        assert st.shared_log["offline"] and not st.shared_log["pulled"]
        st = b.status(A)
        assert st.state == "succeeded" and st.exit_code == 0
        assert b.status(A).shared_log["pulled"] is False  # type: ignore[index]  # 0: no pull
        mariadb.kill()
        try:
            a.record_push(B, branch="main", monitor=False)  # appended locally, waits
            st = a.status(B)
            assert st.state == "pending" and st.shared_log is not None
            assert st.shared_log["outbox"] == 1 and st.shared_log["unreachable"]
            st = b.status(B)  # 3 locally; the pull fails: answered from the cache, and said
            assert st.state == "not_found" and st.shared_log is not None
            assert st.shared_log["unreachable"] and not st.shared_log["pulled"]
            text = status_text(st)
            assert "the shared log is unreachable: " in text and "as of " in text
            assert b.status(A).state == "succeeded"  # the cache answers
        finally:
            mariadb.start()
        st = b.status(B)
        assert st.state == "not_found"  # not forwarded yet: only a's outbox holds it
        assert a.store.forward() is not None
        st = b.status(B)
        assert st.state == "pending" and st.shared_log is not None
        assert st.shared_log["unreachable"] is None
    finally:
        a.close()
        b.close()


def run_tracker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_migrate_shared_and_sync_on_the_command_line(
    mariadb: PrivateMariaDB, fresh_database: str, tmp_path: Path
) -> None:
    url = mariadb.url(fresh_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    assert run_tracker("migrate", env=env).returncode == 64  # --shared is the only kind
    assert run_tracker("migrate", "--shared", env=env).returncode == 78
    env["TRACKER_LOG_URL"] = url
    assert run_tracker("migrate", env=env).returncode == 64  # --shared is the only kind
    done = run_tracker("migrate", "--shared", env=env)
    assert done.returncode == 0 and "ran migrations" in done.stdout, done.stderr
    again = run_tracker("migrate", "--shared", env=env)
    assert again.returncode == 0 and "up to date" in again.stdout
    a_db, b_db = tmp_path / "a" / "events.db", tmp_path / "b" / "events.db"
    writer = FleetLog.open(a_db, url, env={"TRACKER_MACHINE_ID": "a"})
    writer.forward_on_append = False
    writer.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    writer.close()
    synced = run_tracker("--db", str(a_db), "sync", env=env)
    assert synced.returncode == 0 and "forwarded 1" in synced.stdout, synced.stderr
    pulled = run_tracker("--db", str(b_db), "sync", env=env)
    assert pulled.returncode == 0 and "pulled 1" in pulled.stdout, pulled.stderr
    shown = run_tracker("--db", str(b_db), "status", A, "--offline", "--json", env=env)
    assert shown.returncode == 2, shown.stderr
    data = json.loads(shown.stdout)
    assert data["state"] == "pending" and data["shared_log"]["offline"] is True
    no_fleet = {k: v for k, v in env.items() if k != "TRACKER_LOG_URL"}
    assert run_tracker("--db", str(b_db), "sync", env=no_fleet).returncode == 78
    plain = run_tracker("--db", str(tmp_path / "c.db"), "status", A, "--json", env=no_fleet)
    assert json.loads(plain.stdout)["shared_log"] is None  # a single machine: as before


def test_the_confirmer_appends_to_the_outbox_and_forwards_and_waits_when_the_server_is_down(
    mariadb: PrivateMariaDB, url: str, tmp_path: Path
) -> None:
    from tests.support.gitrepo import base_env, make_repo
    from tests.test_confirm import confirm, record_for
    from tracker.push.spool import record_paths, write_record

    repo = make_repo(tmp_path)
    env = base_env(TRACKER_LOG_URL=url, TRACKER_MACHINE_ID="a")
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    done = confirm(write_record(repo.spool, record_for(repo, sha)), env=env)
    assert done.returncode == 0, done.stderr
    shared = MySQLLog.from_url(url, env={})
    try:
        assert [e.type for e in shared.events(stream=sha)] == ["PushRecorded", "PushConfirmed"]
    finally:
        shared.close()
    second = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    mariadb.kill()
    try:
        path = write_record(repo.spool, record_for(repo, second))
        done = confirm(path, env=env)
        assert done.returncode == 0, done.stderr
        assert not record_paths(repo.spool)  # decided: the verdict waits in the outbox
        log = FleetLog.open(repo.db, url, env={"TRACKER_MACHINE_ID": "a"}, retry_for=0.2)
        try:
            assert log.sync_state().outbox == 2
            row = log.deployment(second)
            assert row is not None and row.state == "pending"
        finally:
            log.close()
    finally:
        mariadb.start()
    log = FleetLog.open(repo.db, url, env={"TRACKER_MACHINE_ID": "a"})
    try:
        sent = log.forward()
        assert sent is not None and len(sent) == 2 and log.sync_state().outbox == 0
        assert [e.seq for e in log.events()] == [1, 2, 3, 4]
        assert len({e.key for e in log.events()}) == 4 and log.rebuild().clean
    finally:
        log.close()


def test_a_log_kept_before_fleet_mode_or_for_another_shared_log_is_not_mixed_in(
    machine: Machine, url: str, tmp_path: Path, fresh_database: str
) -> None:
    from tracker.log.fleet import NotACacheError
    from tracker.log.sqlite import SQLiteLog

    with SQLiteLog(tmp_path / "old" / "events.db") as old:
        old.append(A, PushRecorded(sha=A, branch="main"), key="push:old")
    log = machine("old")
    with pytest.raises(NotACacheError, match="1 events recorded without fleet mode"):
        log.pull()
    assert machine("fresh").pull() == 0
    moved = FleetLog.open(tmp_path / "fresh" / "events.db", url.replace(fresh_database, "x"),
                          env={"TRACKER_MACHINE_ID": "fresh"})  # fmt: skip
    try:
        with pytest.raises(NotACacheError, match="is the cache of the shared log"):
            moved.pull()
    finally:
        moved.close()


def test_a_long_outbox_drains_in_batches_in_order_each_event_once(machine: Machine) -> None:
    a, b = machine("a"), machine("b")
    a.forward_on_append = False  # as after a long outage
    a.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
    polls = [
        Append(A, DeploymentPolled(source="digitalocean", ok=True, latency_ms=n), f"p:{n}")
        for n in range(449)
    ]
    a.append_all(polls)
    assert a.sync_state().outbox == 450
    sent = a.forward()
    assert sent is not None and len(sent) == 450 and a.sync_state().outbox == 0
    assert b.pull() == 450
    found = b.events()
    assert [e.seq for e in found] == list(range(1, 451))
    assert [e.key for e in found] == ["push:a", *(f"p:{n}" for n in range(449))]
    row = b.deployment(A)
    assert row is not None and row.polls == 449 and dump(a) == dump(b)


def test_three_machines_two_processes_each_appending_at_once_agree_on_one_log(
    url: str, tmp_path: Path
) -> None:
    """Pushes and polls from every machine at once: each key stored once, positions 1..n, and
    every machine's cache (two processes of it forwarding and pulling together) the same."""
    barrier = tmp_path / "go"
    writer = Path(__file__).resolve().parent / "support" / "fleet_writer.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    names = ("a", "b", "c")
    procs = []
    for name in names:
        for _ in range(2):
            args = [str(tmp_path / name / "events.db"), url, name, "20", str(barrier)]
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(writer), *args],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    barrier.touch()
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done"
    shared = MySQLLog.from_url(url, env={})
    try:
        everything = shared.events()
    finally:
        shared.close()
    keys = [e.key for e in everything]
    assert len(everything) == 3 + 3 * 2 * 20 and len(set(keys)) == len(keys)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    dumps = []
    for name in names:
        log = FleetLog.open(tmp_path / name / "events.db", url, env={"TRACKER_MACHINE_ID": name})
        try:
            assert log.pull() is not None and log.sync_state().outbox == 0
            assert [(e.seq, e.key) for e in log.events()] == [(e.seq, e.key) for e in everything]
            assert log.rebuild().clean
            dumps.append(dump(log))
        finally:
            log.close()
    assert dumps[0] == dumps[1] == dumps[2]


def test_events_follow_on_one_machine_shows_another_machines_appends(
    url: str, tmp_path: Path
) -> None:
    import threading

    from tests.support.gitrepo import wait_until

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), TRACKER_LOG_URL=url)
    env["TRACKER_MACHINE_ID"] = "b"
    b_db = tmp_path / "b" / "events.db"
    follower = subprocess.Popen(
        [sys.executable, "-m", "tracker", "--db", str(b_db), "events", "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []), daemon=True)
    reader.start()
    a = FleetLog.open(tmp_path / "a" / "events.db", url, env={"TRACKER_MACHINE_ID": "a"})
    try:
        a.append(A, PushRecorded(sha=A, branch="main"), key="push:a")
        a.append(A, DeploymentSucceeded(deployment_id="d1"), key="ok:a")
        wait_until(lambda: len(lines) >= 2, timeout=30)
        assert [json.loads(line)["type"] for line in lines[:2]] == [
            "PushRecorded",
            "DeploymentSucceeded",
        ]
    finally:
        a.close()
        follower.terminate()
        follower.wait(timeout=30)
