"""`schema.sql` is the single source: tables match the code, migrations apply, the view answers."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tracker.clock import FakeClock
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    MonitorStarted,
    MonitorTimedOut,
    PushRecorded,
    PushRejected,
)
from tracker.log.schema import migrations
from tracker.log.sqlite import SQLiteLog
from tracker.projections import DeploymentRow, SourceCallRow, exit_code_of

REPO = Path(__file__).resolve().parent.parent
SQLITE3 = "/usr/bin/sqlite3"


def columns(db: Path, table: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def fresh(tmp_path: Path) -> Path:
    db = tmp_path / "events.db"
    SQLiteLog(db).last_seq()
    return db


@pytest.mark.parametrize(
    ("table", "row"), [("deployments", DeploymentRow), ("source_calls", SourceCallRow)]
)
def test_projection_tables_have_exactly_the_fields_of_their_rows(
    tmp_path: Path, table: str, row: type
) -> None:
    fields = getattr(row, "_fields", None) or [f.name for f in dataclasses.fields(row)]
    assert columns(fresh(tmp_path), table) == set(fields)


def test_migrations_are_numbered_from_one_without_gaps_and_apply_in_order() -> None:
    found = migrations()
    assert [number for number, _ in found] == list(range(1, len(found) + 1))
    conn = sqlite3.connect(":memory:")
    for _, sql in found:
        conn.executescript(sql)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"events", "deployments", "source_calls", "projection_checkpoints"} <= names
    assert "deployment_status" in names


def test_no_table_is_defined_outside_schema_sql() -> None:
    for path in (REPO / "tracker").rglob("*.py"):
        assert "CREATE TABLE" not in path.read_text().upper(), path


def test_an_old_empty_database_is_migrated_on_open(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with sqlite3.connect(db) as conn:  # a real SQLite file: user_version 0, no tables
        conn.execute("CREATE TABLE scratch (x)")
        conn.execute("DROP TABLE scratch")
    assert columns(db, "events") == set()
    store = SQLiteLog(db)
    assert store.last_seq() == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
    assert "key" in columns(db, "events")
    sha = "e" * 40
    assert store.append(sha, PushRecorded(sha=sha, branch="main")) is not None


def test_files_are_private_to_their_owner(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "state" / "tracker" / "events.db"
        SQLiteLog(db).append("f" * 40, PushRecorded(sha="f" * 40, branch="main"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for path in (db, db.with_name("events.db.lock"), db.with_name("events.db-wal")):
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, path


PROJECTIONS = {  # table: its columns (the measures' `id` is only a rowid)
    "deployments": "*",
    "source_calls": "*",
    "deployment_measures": "sha, measure, value, pushed_at, branch",
    "call_totals": "*",
    "measure_totals": "*",
}


def projection_tables(db: Path) -> list[list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        return [
            sorted(conn.execute(f"SELECT {columns} FROM {table}"), key=repr)
            for table, columns in PROJECTIONS.items()
        ]


def a_log_of_schema_1(db: Path) -> tuple[list[list[tuple[object, ...]]], list[str]]:
    """A log written by this code, then taken back to what schema 1 left: no measures, no
    totals, no branch of a call, no attempts (and no view: migration 3 makes it again).
    Returns the tables the new code wrote, and the commits."""
    clock = FakeClock(start=1_800_000_000.0)
    store = SQLiteLog(db, clock=clock)
    shas = []
    for i, story in enumerate(STORIES.values()):
        sha = f"{i + 1:x}" * 40
        shas.append(sha)
        store.append(sha, PushRecorded(sha=sha, branch="main" if i % 2 else "dev"))
        store.append(sha, MonitorStarted(pid=i + 1, host="h", policy="stepped"))
        for event in story:
            clock.advance(30)
            store.append(sha, event)
    store.close()
    expected = projection_tables(db)
    assert all(expected), "every projection has rows to lose"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "DROP TABLE call_totals; DROP TABLE deployment_measures; DROP TABLE measure_totals;"
            " DROP TRIGGER source_calls_add_to_totals; DROP TRIGGER source_calls_take_from_totals;"
            " DROP TRIGGER source_calls_are_not_updated;"
            " ALTER TABLE source_calls DROP COLUMN branch; DROP VIEW deployment_status;"
            " ALTER TABLE deployments DROP COLUMN attempt;"
            " ALTER TABLE deployments DROP COLUMN previous_attempts;"
            " ALTER TABLE deployments DROP COLUMN not_watched; PRAGMA user_version = 1;"
        )
    assert "branch" not in columns(db, "source_calls")
    return expected, shas


def checkpoints(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, last_seq FROM projection_checkpoints"))


def test_a_log_of_schema_1_is_migrated_and_its_projections_replayed_on_open(
    tmp_path: Path,
) -> None:
    db = tmp_path / "events.db"
    expected, _ = a_log_of_schema_1(db)
    reopened = SQLiteLog(db)
    assert reopened.last_seq() > 0  # opening migrates, then replays the log into every table
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())
    assert checkpoints(db) == {"deployments": reopened.last_seq()}  # the request is gone
    assert projection_tables(db) == expected
    assert reopened.rebuild().clean


def test_the_replay_after_a_migration_waits_for_nobody_and_survives_an_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "events.db"
    expected, shas = a_log_of_schema_1(db)
    guard = db.with_name("events.db.replay")
    guard.touch()
    with guard.open("r+") as held:  # another store is replaying: this one does not wait
        fcntl.flock(held, fcntl.LOCK_EX)
        other = SQLiteLog(db)
        assert other.last_seq() > 0 and "replay" in checkpoints(db)
        other.close()

    def interrupted(self: SQLiteLog, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteLog, "rebuild", interrupted)  # a replay killed half way
    with pytest.raises(KeyboardInterrupt):
        SQLiteLog(db).last_seq()
    monkeypatch.undo()
    assert "replay" in checkpoints(db)  # still asked for: the next store does it
    late = "f" * 40
    store = SQLiteLog(db)
    store.append(late, PushRecorded(sha=late, branch="main"))
    assert set(checkpoints(db)) == {"deployments"}
    assert store.rebuild().clean  # every projection equals a replay of the log
    tables = projection_tables(db)
    assert [row for row in tables[0] if row[0] != late] == expected[0] and all(tables)
    assert {m[0] for m in tables[2]} == {*shas, late}  # the old commits have their measures


# -- the view, read by the sqlite3 program ------------------------------------------------------


def poll(phase: str) -> DeploymentPolled:
    return DeploymentPolled(source="digitalocean", ok=True, found=True, phase=phase,
                            deployment_id="d1", api_calls=1)  # fmt: skip


STORIES: dict[str, list[Event]] = {
    "pending": [],
    "in_progress": [poll("BUILDING")],
    "succeeded": [poll("DEPLOYING"), DeploymentSucceeded(deployment_id="d1")],
    "failed": [DeploymentFailed(deployment_id="d1", reason={"code": "BuildJobFailed"})],
    "canceled": [DeploymentFailed(deployment_id="d1", phase="CANCELED")],
    "superseded-live": [
        DeploymentSuperseded(by_sha="9" * 40, by_deployment_id="d2", went_live=True)
    ],
    "superseded": [DeploymentSuperseded(by_sha="9" * 40, by_deployment_id="d2", went_live=False)],
    "timed_out": [poll("BUILDING"), MonitorTimedOut(waited_s=480, last_phase="BUILDING")],
    "rejected": [PushRejected(sha="", reason="non-fast-forward")],
}
EXPECTED = {name: (name.split("-")[0], exit_code_of(name.split("-")[0], "live" in name))
            for name in STORIES} | {"stale": ("stale", 2)}  # fmt: skip


def test_the_deployment_status_view_answers_from_the_sqlite3_program(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    shas = {}
    for i, (name, story) in enumerate(STORIES.items()):
        sha = shas[name] = f"{i + 1:x}" * 40
        store = SQLiteLog(db, clock=FakeClock(start=time.time()))
        store.append(sha, PushRecorded(sha=sha, branch="main"))
        for event in story:
            store.append(sha, event)
    stale = shas["stale"] = "d" * 40
    old = SQLiteLog(db, clock=FakeClock(start=time.time() - 3600))  # a monitor silent for an hour
    old.append(stale, PushRecorded(sha=stale, branch="main"))
    old.append(stale, MonitorStarted(pid=999_999, host="gone", policy="stepped"))
    old.append(stale, poll("BUILDING"))

    out = subprocess.run(
        [SQLITE3, "-readonly", "-json", str(db),
         "SELECT sha, short_sha, state, exit_code FROM deployment_status"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = {r["sha"]: (r["state"], r["exit_code"]) for r in json.loads(out)}
    assert found == {shas[name]: expected for name, expected in EXPECTED.items()}
    assert {EXPECTED[n][1] for n in EXPECTED} == {0, 1, 2}
    assert exit_code_of("superseded", True) == 0 and exit_code_of("superseded", False) == 1


def test_the_view_is_read_only(tmp_path: Path) -> None:
    db = fresh(tmp_path)
    result = subprocess.run(
        [SQLITE3, str(db), "DELETE FROM deployment_status"], capture_output=True, text=True
    )
    assert result.returncode != 0 and "view" in result.stderr


# -- the wheel ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it (as `python -m build` does), built once."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_the_wheel_carries_schema_sql_and_finds_it_when_installed(
    tmp_path: Path, dist: Path
) -> None:
    (wheel,) = dist.glob("deploy_tracker-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        schema = archive.read("tracker/schema.sql").decode()
    assert schema == (REPO / "schema.sql").read_text()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    probe = "from tracker.log.schema import migrations, schema_text; print(len(migrations()))"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    )
    assert int(result.stdout) == len(migrations()) >= 1
    where = subprocess.run(
        [python, "-c", "import tracker.log.sqlite as s; print(s.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert str(venv) in where, "the probe imported the checkout, not the installed wheel"


JSON_SCHEMAS = sorted(p.name for p in (REPO / "docs" / "schema").glob("*.json"))
LICENSE = (REPO / "LICENSE").read_text()


@pytest.mark.slow
def test_the_wheel_carries_the_json_schemas_and_the_license(dist: Path) -> None:
    assert {"event.schema.json", "stats.schema.json", "status.schema.json"} <= set(JSON_SCHEMAS)
    assert "MIT License" in LICENSE
    assert re.search(r'^license = "MIT"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    (wheel,) = dist.glob("deploy_tracker-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in JSON_SCHEMAS:
            shipped = archive.read(f"tracker/schema/{name}").decode()
            assert shipped == (REPO / "docs" / "schema" / name).read_text()
        (license_file,) = [
            n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")
        ]
        assert archive.read(license_file).decode() == LICENSE
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        assert "License-Expression: MIT" in archive.read(metadata).decode()


@pytest.mark.slow
def test_the_sdist_carries_them_and_its_own_schema_test_passes(tmp_path: Path, dist: Path) -> None:
    (sdist,) = dist.glob("deploy_tracker-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (top,) = tmp_path.glob("deploy_tracker-*")
    assert sorted(p.name for p in (top / "docs" / "schema").glob("*.json")) == JSON_SCHEMAS
    assert (top / "LICENSE").read_text() == LICENSE
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "PYTEST_"))}
    test = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_json_schema.py"]
    done = subprocess.run(
        [sys.executable, *test],
        cwd=top, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_view_and_tracker_status_agree_on_a_silent_monitor(tmp_path: Path) -> None:
    from tracker.api import Tracker

    db, sha, now = tmp_path / "events.db", "5" * 40, time.time()
    store = SQLiteLog(db, clock=FakeClock(start=now - 450))  # seven and a half minutes ago
    store.append(sha, PushRecorded(sha=sha, branch="main"))
    store.append(sha, MonitorStarted(pid=os.getpid(), host=socket.gethostname(), policy="fixed"))
    store.append(sha, poll("BUILDING"))
    with sqlite3.connect(db) as conn:
        (view_state,) = conn.execute("SELECT state FROM deployment_status").fetchone()
    assert Tracker(db, clock=FakeClock(start=now)).status(sha).state == view_state
