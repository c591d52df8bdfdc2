"""The event log on real SQLite files with real processes: concurrency, crashes, idempotency."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tracker.clock import FakeClock
from tracker.errors import LockTimeoutError, LogError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    MonitorTimedOut,
    PushRecorded,
)
from tracker.log.sqlite import SQLiteLog

REPO = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).resolve().parent / "support" / "store_writer.py"
SHA = "a" * 40


def writer(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """Start `tests/support/store_writer.py` with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(WRITER), *args], stdout=subprocess.PIPE, stdin=stdin, text=True,
        env=env, cwd=REPO,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == expected, f"writer said {line!r} (exit {proc.poll()})"


def sha_of(n: int) -> str:
    return f"{n:040x}"


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_consistent(db: Path) -> None:
    """Integrity ok, every event's JSON valid, gapless versions, projection == rebuild."""
    store = SQLiteLog(db)
    assert store.integrity_check() == "ok"
    assert rows(db, "SELECT count(*) FROM events WHERE NOT json_valid(data)") == [(0,)]
    for (data,) in rows(db, "SELECT data FROM events"):
        assert isinstance(json.loads(str(data)), dict)
    versions: dict[str, list[int]] = defaultdict(list)
    for stream, version in rows(db, "SELECT stream, version FROM events ORDER BY seq"):
        versions[str(stream)].append(int(str(version)))
    for stream, found in versions.items():
        assert found == list(range(1, len(found) + 1)), stream
    checkpoint = rows(db, "SELECT last_seq FROM projection_checkpoints")
    assert checkpoint == rows(db, "SELECT max(seq) FROM events")
    report = store.rebuild()
    assert report.clean, report
    store.close()


# -- 32 processes at once ---------------------------------------------------------------------


def test_32_concurrent_writers_lose_nothing_and_keep_commit_order(tmp_path: Path) -> None:
    db, barrier = tmp_path / "events.db", tmp_path / "go"
    writers, per_writer, shared = 32, 200, [sha_of(1000 + i) for i in range(2)]
    SQLiteLog(db).close()
    procs = []
    for w in range(writers):
        streams = ",".join([sha_of(w * 10 + i) for i in range(3)] + shared)
        procs.append(writer("concurrent", str(db), str(w), str(per_writer), streams, str(barrier)))
    for proc in procs:
        wait_for_line(proc, "ready")
    barrier.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0

    log = rows(db, "SELECT seq, key, recorded_at FROM events ORDER BY seq")
    keys = [str(k) for _, k, _ in log]
    assert sorted(keys) == sorted(f"w{w}:{n}" for w in range(writers) for n in range(per_writer))
    times = [str(t) for _, _, t in log]
    assert times == sorted(times), "recorded_at went backwards along seq"
    last_n: dict[str, int] = {}
    for key in keys:
        who, n = key.split(":")
        assert int(n) > last_n.get(who, -1), f"writer {who}'s events out of order"
        last_n[who] = int(n)
    assert_consistent(db)


# -- crashes ----------------------------------------------------------------------------------


def test_sigkill_at_random_moments_leaves_no_half_written_event(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rng = random.Random(20240601)
    store = SQLiteLog(db, lock_timeout=5)
    for w in range(30):
        proc = writer("forever", str(db), str(w))
        wait_for_line(proc, "ready")
        time.sleep(rng.uniform(0.0, 0.08))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # The next writer proceeds at once: the kernel dropped the lock, SQLite rolled back.
        assert store.append(SHA, PushRecorded(sha=SHA, branch="main"), key=f"after-{w}")
    store.close()

    batches: dict[str, list[str]] = defaultdict(list)
    for (key,) in rows(db, "SELECT key FROM events WHERE key LIKE 'k%'"):
        batch, part = str(key).rsplit(":", 1)
        batches[batch].append(part)
    assert batches, "no writer ever got an event in: the kills came too early to test anything"
    for batch, parts in batches.items():
        size = int(parts[0].split("/")[1])
        assert sorted(parts) == sorted(f"{i}/{size}" for i in range(size)), batch
    assert_consistent(db)


# -- facts recorded once ----------------------------------------------------------------------


def test_the_same_fact_twice_leaves_one_event(tmp_path: Path) -> None:
    store = SQLiteLog(tmp_path / "events.db", clock=FakeClock())
    push = PushRecorded(sha=SHA, branch="main", push_id="p1")
    first = store.append(SHA, push, key="push:p1")
    again = store.append(SHA, push, key="push:p1")
    assert first is not None and first.version == 1
    assert again is None
    assert [e.key for e in store.events()] == ["push:p1"]


def test_a_second_terminal_verdict_is_not_recorded(tmp_path: Path) -> None:
    store = SQLiteLog(tmp_path / "events.db", clock=FakeClock())
    store.append(SHA, PushRecorded(sha=SHA, branch="main"))
    assert store.append(SHA, DeploymentSucceeded(deployment_id="d1")) is not None
    assert store.append(SHA, DeploymentFailed(deployment_id="d1")) is None
    assert store.append(SHA, MonitorTimedOut(waited_s=480)) is None
    assert [e.type for e in store.events()] == ["PushRecorded", "DeploymentSucceeded"]
    row = store.deployment(SHA)
    assert row is not None and row.state == "succeeded"


def test_a_push_after_a_terminal_state_opens_a_new_attempt(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteLog(tmp_path / "events.db", clock=clock)
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"), key="push:1")
    store.append(SHA, DeploymentPolled(source="digitalocean", ok=True, found=True, api_calls=1))
    store.append(SHA, DeploymentFailed(deployment_id="d1", reason={"code": "BuildJobFailed"}))
    clock.advance(60)
    repush = store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"), key="push:2")
    assert repush is not None
    row = store.deployment(SHA)
    assert row is not None
    assert (row.state, row.polls, row.reason_code, row.attempt) == ("pending", 0, None, 2)
    assert (row.first_seq, row.pushed_at) == (repush.seq, clock.now())
    [first] = row.earlier()
    assert (first["attempt"], first["state"], first["deployment_id"]) == (1, "failed", "d1")
    assert store.rebuild().differing == ()


def test_a_deployment_that_judged_an_earlier_attempt_never_judges_a_later_one(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = SQLiteLog(tmp_path / "events.db", clock=clock)
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"), key="push:1")
    store.append(SHA, DeploymentSucceeded(deployment_id="d1"))
    clock.advance(60)
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"), key="push:2")
    # the old deployment seen again, and its verdict from a monitor of the first attempt
    store.append(
        SHA,
        DeploymentPolled(
            source="digitalocean",
            ok=True,
            found=True,
            phase="ACTIVE",
            deployment_id="d1",
            api_calls=1,
        ),
    )
    store.append(SHA, DeploymentSucceeded(deployment_id="d1"))
    store.append(SHA, DeploymentFailed(deployment_id="d2", attempt=1))
    row = store.deployment(SHA)
    assert row is not None
    assert (row.state, row.deployment_id, row.phase, row.api_calls) == ("pending", None, None, 1)
    store.append(SHA, DeploymentFailed(deployment_id="d2", attempt=2))
    row = store.deployment(SHA)
    assert row is not None
    assert (row.state, row.deployment_id, row.attempt) == ("failed", "d2", 2)
    assert store.rebuild().differing == ()


@pytest.mark.parametrize(
    ("first", "second", "again", "attempts"),
    [
        ("hook", "api", False, 1),  # a manager's record_push of the push the hook saw
        ("hook", "cli", False, 1),  # `tracker push` of a commit already recorded
        ("api", "api", False, 1),  # a retried record_push
        ("cli", "hook", False, 2),  # git pushed it (again) after it went live
        ("hook", "hook", False, 2),  # a rollback, or a re-push after the branch was deleted
        ("hook", "cli", True, 2),  # `tracker push --again`
    ],
)
def test_a_second_record_of_a_live_commit_is_a_new_attempt_only_when_pushed_again(
    tmp_path: Path, first: str, second: str, again: bool, attempts: int
) -> None:
    store = SQLiteLog(tmp_path / "events.db", clock=FakeClock())
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source=first))
    store.append(SHA, DeploymentSucceeded(deployment_id="d1"))
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source=second, again=again))
    row = store.deployment(SHA)
    assert row is not None
    assert row.attempt == attempts
    assert row.state == ("succeeded" if attempts == 1 else "pending")


def test_a_second_record_while_the_attempt_is_open_joins_it(tmp_path: Path) -> None:
    store = SQLiteLog(tmp_path / "events.db", clock=FakeClock())
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="api"))
    store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"), key="push:1")
    row = store.deployment(SHA)
    assert row is not None
    assert (row.attempt, row.state, row.push_source) == (1, "pending", "api")


def test_events_cannot_be_updated_or_deleted(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    SQLiteLog(db).append(SHA, PushRecorded(sha=SHA, branch="main"))
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET type = 'Forged'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
    assert rows(db, "SELECT type FROM events") == [("PushRecorded",)]


# -- the lock and a broken file ---------------------------------------------------------------


def test_a_lock_held_too_long_times_out_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteLog(db, lock_timeout=0.3)
    store.append(SHA, PushRecorded(sha=SHA, branch="main"), key="push")
    holder = writer("hold-lock", str(db), stdin=subprocess.PIPE)
    wait_for_line(holder, "held")
    poll = DeploymentPolled(source="mysql", ok=True, db_queries=1)
    with pytest.raises(LockTimeoutError) as caught:
        store.append(SHA, poll, key="poll")
    assert caught.value.exit_code == 75
    assert "\n" not in str(caught.value) and "try again" in str(caught.value)
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=10) == 0
    assert store.append(SHA, poll, key="poll") is not None
    assert [e.key for e in store.events()] == ["push", "poll"]
    assert_consistent(db)


def test_a_waiting_writer_gets_the_lock_as_soon_as_it_is_released(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    store = SQLiteLog(db, lock_timeout=20)
    store.last_seq()
    holder = writer("hold-lock", str(db), stdin=subprocess.PIPE)
    wait_for_line(holder, "held")
    assert holder.stdin is not None
    threading.Timer(0.3, holder.stdin.close).start()
    assert store.append(SHA, PushRecorded(sha=SHA, branch="main")) is not None
    assert holder.wait(timeout=10) == 0
    assert store.last_seq() == 1


def test_a_corrupt_file_says_how_to_recover(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(b"this is no database, only garbage\n" * 300)
    with pytest.raises(LogError) as caught:
        SQLiteLog(db).deployment(SHA)
    message = str(caught.value)
    assert caught.value.exit_code == 74
    assert "corrupt" in message and f"mv {db}" in message and ".recover" in message
    with pytest.raises(LogError):
        SQLiteLog(db).append(SHA, PushRecorded(sha=SHA, branch="main"))


def test_only_the_log_wing_touches_sqlite_its_connection_or_its_lock() -> None:
    """STYLE #3: readers outside `tracker/log/` get data, a snapshot of queries, or a check."""
    import re

    reaching = re.compile(r"\bimport sqlite3\b|\bsqlite_utils\b|\._conn\b|\.reading\(|\.locked\(")
    found = []
    for path in sorted((REPO / "tracker").rglob("*.py")):
        if path.parent.name in ("log", "sources"):
            continue  # the wing itself; the MySQL source's own `_conn` is pymysql's
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if reaching.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


def test_wal_is_set_while_another_connection_writes_the_new_file(tmp_path: Path) -> None:
    """Two processes opening a new file at once: one may be writing (in the journal mode a new
    file starts in) when the other switches it to WAL, which SQLite refuses at once, without its
    busy handler. `use_wal` asks again until the writer is done."""
    from tracker.log.sqlite import use_wal

    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode = WAL")  # what the open did before: refused at once
    done = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    done.start()
    try:
        use_wal(other, 30.0)
    finally:
        done.join()
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
    other.close()
    writer.close()


FOLD_AND_DUMP = """
import sys
from pathlib import Path
from tracker.clock import FakeClock
from tracker.events import DeploymentPolled, DeploymentSucceeded, PushRecorded
from tracker.log.sqlite import SQLiteLog
import sqlite3
sha = "a" * 40
log = SQLiteLog(Path(sys.argv[1]), clock=FakeClock(start=1_800_000_000.0))
log.append(sha, PushRecorded(sha=sha, branch="main"), at=1_800_000_000.0)
for n in range(3):
    log.append(sha, DeploymentPolled(source="digitalocean", ok=True, found=True,
               phase="BUILDING", api_calls=1), at=1_800_000_010.0 + n)
log.append(sha, DeploymentSucceeded(deployment_id="d1"), at=1_800_000_100.0)
log.close()
conn = sqlite3.connect(sys.argv[1])
print(conn.execute("SELECT * FROM deployment_measures ORDER BY id").fetchall())
"""


def test_measure_rows_get_the_same_ids_in_every_process(tmp_path: Path) -> None:
    """Every machine folds the same events into the same rows, ids included: the measure rows
    are inserted in one order, not in a set's (which follows the process's hash seed)."""
    dumps = set()
    for seed in ("1", "2", "3", "4"):
        found = subprocess.run(
            [sys.executable, "-c", FOLD_AND_DUMP, str(tmp_path / f"log-{seed}.db")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        dumps.add(found.stdout)
    assert len(dumps) == 1, dumps
    assert dumps.pop().count("'main')") >= 5  # several rows, so their order could differ
