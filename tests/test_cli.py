"""The `tracker` command as users and agents run it: real processes, real SQLite files.

Exit codes are the contract (SPEC §4): 0 live, 1 failed, 2 in progress, 3 not found, 64 usage,
74 log unreadable, 75 lock busy. Each error is one line on stderr.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.cli.app import app
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    DeploymentSuperseded,
    MonitorStarted,
    MonitorTimedOut,
    PushConfirmed,
    PushRecorded,
    PushRejected,
)
from tracker.log.sqlite import SQLiteLog

ROOT = Path(__file__).resolve().parent.parent
STATUS_FIELDS = (
    "sha short_sha branch state exit_code phase deployment_id pushed_at finished_at push_to_live_s"
    " polls api_calls errors reason failed_step log_tail superseded_by monitor last_event_at"
).split()


def sha_of(n: int) -> str:
    return f"{n:04x}".ljust(40, "c")


def cli(
    *args: str,
    db: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    full_env.update(env or {})
    full_env.pop("DIGITALOCEAN_TOKEN", None)
    prefix = ["--db", str(db)] if db else []
    return subprocess.run(
        [sys.executable, "-m", "tracker", *prefix, *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


@pytest.fixture
def seeded(store: SQLiteLog) -> dict[str, str]:
    """One commit per state, appended through the real store."""
    shas = {}
    t = 1_800_000_000.0

    def push(n: int) -> str:
        sha = sha_of(n)
        store.append(sha, PushRecorded(sha=sha, branch="main", source="cli"), at=t)
        return sha

    shas["pending"] = push(1)
    shas["succeeded"] = sha = push(2)
    store.append(
        sha,
        DeploymentPolled("digitalocean", True, True, "BUILDING", deployment_id="d2", api_calls=1),
        at=t + 5,
    )
    store.append(sha, DeploymentSucceeded("d2", push_to_live_s=95.0), at=t + 95)
    shas["failed"] = sha = push(3)
    store.append(
        sha,
        DeploymentFailed(
            "d3",
            reason={"code": "BuildJobExitNonZero", "message": "build failed"},
            failed_step="build.components.web",
            log_tail=["npm ERR! code ELIFECYCLE"],
        ),
        at=t + 60,
    )
    shas["in_progress"] = sha = push(4)
    store.append(sha, MonitorStarted(os.getpid(), os.uname().nodename, "stepped"), at=t + 1)
    store.append(
        sha, DeploymentPolled("digitalocean", True, True, "DEPLOYING", api_calls=1), at=t + 2
    )
    shas["timed_out"] = sha = push(5)
    store.append(sha, MonitorTimedOut(480.0, "BUILDING"), at=t + 480)
    shas["rejected"] = sha = push(6)
    store.append(sha, PushRejected(sha, "pre-receive hook declined"), at=t + 1)
    shas["superseded_live"] = sha = push(7)
    store.append(sha, DeploymentSuperseded(sha_of(8), "d8", went_live=True), at=t + 30)
    shas["superseded_dead"] = sha = push(9)
    store.append(sha, DeploymentSuperseded(sha_of(10), "d10", went_live=False), at=t + 30)
    shas["confirmed"] = sha = push(11)
    store.append(sha, PushConfirmed(sha), at=t + 1)
    return shas


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("succeeded", 0),
        ("superseded_live", 0),
        ("failed", 1),
        ("timed_out", 1),
        ("rejected", 1),
        ("superseded_dead", 1),
        ("pending", 2),
        ("confirmed", 2),
        ("in_progress", 2),
    ],
)
def test_status_exit_codes_from_a_seeded_log(seeded, db_path, name, code) -> None:
    done = cli("status", seeded[name], db=db_path)
    assert done.returncode == code, done.stderr
    as_json = cli("status", seeded[name], "--json", db=db_path)
    assert as_json.returncode == code
    assert json.loads(as_json.stdout)["exit_code"] == code


def test_not_found_is_3(seeded, db_path) -> None:
    done = cli("status", "f" * 40, db=db_path)
    assert done.returncode == 3 and "not found" in done.stdout


def test_an_abbreviated_sha_is_found_in_the_log(seeded, db_path) -> None:
    done = cli("status", seeded["succeeded"][:12], "--json", db=db_path, cwd=db_path.parent)
    assert done.returncode == 0 and json.loads(done.stdout)["sha"] == seeded["succeeded"]


def test_status_json_has_every_field_of_the_contract(seeded, db_path) -> None:
    data = json.loads(cli("status", seeded["failed"], "--json", db=db_path).stdout)
    assert set(STATUS_FIELDS) <= set(data)
    assert set(data["monitor"]) >= {"pid", "host", "alive"}
    assert data["state"] == "failed" and data["failed_step"] == "build.components.web"
    assert data["reason"]["code"] == "BuildJobExitNonZero"
    assert data["log_tail"] == ["npm ERR! code ELIFECYCLE"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", data["pushed_at"])


def test_failed_status_shows_step_reason_and_log_lines(seeded, db_path) -> None:
    out = cli("status", seeded["failed"], db=db_path).stdout
    assert "build.components.web" in out and "BuildJobExitNonZero" in out
    assert "npm ERR! code ELIFECYCLE" in out


def test_in_progress_status_shows_the_last_events(seeded, db_path) -> None:
    out = cli("status", seeded["in_progress"], db=db_path).stdout
    assert "in progress" in out and "DeploymentPolled" in out and "MonitorStarted" in out


def test_pending_without_a_source_says_nothing_is_watching(seeded, db_path) -> None:
    done = cli("status", seeded["pending"], db=db_path)
    assert done.returncode == 2
    assert "nothing is watching" in done.stdout and "tracker doctor" in done.stdout


def test_events_json_is_ndjson_newest_last(seeded, db_path) -> None:
    lines = cli("events", "--json", db=db_path).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert {"seq", "stream", "version", "type", "recorded_at", "data"} <= set(records[0])
    limited = cli("events", "--json", "--limit", "2", db=db_path).stdout.splitlines()
    assert [json.loads(x)["seq"] for x in limited] == [r["seq"] for r in records[-2:]]


@pytest.mark.parametrize(
    "args",
    [
        ["status", "abc"],
        ["status", "xyz1234"],
        ["status", "--bogus"],
        ["status", "HEAD~999"],
        ["status", "-rf"],
        ["status", "$(touch pwned)"],
        ["wait", "HEAD", "--timeout", "-1"],
        ["events", "--limit", "0"],
        ["nosuchcommand"],
        ["stats", "--since", "yesterday"],
    ],
)
def test_usage_errors_exit_64_with_one_line(seeded, db_path, tmp_path, args) -> None:
    before = SQLiteLog(db_path).last_seq()
    done = cli(*args, db=db_path, cwd=tmp_path)
    assert done.returncode == 64, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("tracker: error")
    assert SQLiteLog(db_path).last_seq() == before
    assert not (tmp_path / "pwned").exists()


def test_a_ref_that_is_not_a_commit_in_a_real_repository_is_64(tmp_path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    done = cli("status", "no-such-branch", cwd=tmp_path)
    assert done.returncode == 64 and "does not name a commit" in done.stderr


def test_outside_a_repository_without_override_is_64(tmp_path) -> None:
    done = cli("status", "a" * 40, cwd=tmp_path)
    assert done.returncode == 64 and "not inside a git repository" in done.stderr


def test_a_corrupt_log_is_74_with_how_to_recover(tmp_path) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(b"this is not a database at all" * 200)
    done = cli("status", "a" * 40, db=db)
    assert done.returncode == 74
    assert "corrupt" in done.stderr and ".recover" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_lock_held_past_the_timeout_is_75_and_nothing_is_lost(db_path, store) -> None:
    sha = sha_of(42)
    store.last_seq()  # the log and its lock file exist
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a');"
            "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
            str(db_path) + ".lock",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = cli("push", sha, "--no-monitor", db=db_path, env={"TRACKER_LOCK_TIMEOUT": "0.3"})
        assert done.returncode == 75, done.stderr
        assert "lock" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    assert cli("push", sha, "--no-monitor", db=db_path).returncode == 0
    assert cli("status", sha, db=db_path).returncode == 2


def test_push_records_by_hand_and_rebuild_matches(db_path) -> None:
    sha = sha_of(77)
    assert cli("push", sha, "--no-monitor", "--branch", "main", db=db_path).returncode == 0
    done = cli("rebuild", db=db_path)
    assert done.returncode == 0 and "matched the log exactly" in done.stdout


def test_rebuild_says_what_it_fixed(db_path) -> None:
    sha = sha_of(78)
    assert cli("push", sha, "--no-monitor", "--branch", "main", db=db_path).returncode == 0
    with sqlite3.connect(db_path) as conn:  # hand edits: a wrong state, lost measures, totals
        conn.execute("UPDATE deployments SET state = 'failed'")
        conn.execute("DELETE FROM deployment_measures")  # (its triggers keep the totals right)
        conn.execute("INSERT INTO measure_totals VALUES ('state:failed', 'main', 1, 1, 1)")
    done = cli("rebuild", db=db_path)
    assert done.returncode == 0, done.stderr
    assert "replayed 1 events into 1 deployments" in done.stdout
    assert f"1 deployment rows ({sha[:7]})" in done.stdout and "1 measure rows" in done.stdout
    assert "1 totals rows" in done.stdout
    assert cli("status", sha, db=db_path).returncode == 2  # pending again
    assert "matched the log exactly" in cli("rebuild", db=db_path).stdout


def test_ingest_appends_a_verdict_and_rejects_malformed_input(seeded, db_path) -> None:
    before = SQLiteLog(db_path).last_seq()
    for bad in [
        "not json",
        "[]",
        '{"sha": "abc", "status": "success"}',
        '{"sha": "' + "a" * 40 + '"}',
    ]:
        done = cli("ingest", db=db_path, stdin=bad)
        assert done.returncode == 64, (bad, done.stderr)
    assert SQLiteLog(db_path).last_seq() == before
    note = json.dumps({"sha": seeded["pending"], "status": "failed", "log_tail": "boom\nbang"})
    done = cli("ingest", "--json", db=db_path, stdin=note)
    assert done.returncode == 1 and json.loads(done.stdout)["log_tail"] == ["boom", "bang"]
    again = cli("ingest", db=db_path, stdin=note)
    assert again.returncode == 1
    types = [
        json.loads(x)["type"]
        for x in cli("events", seeded["pending"], "--json", db=db_path).stdout.splitlines()
    ]
    assert types.count("DeploymentFailed") == 1


def test_the_view_answers_from_the_sqlite3_command_line(seeded, db_path) -> None:
    out = subprocess.run(
        [
            "sqlite3",
            "-readonly",
            str(db_path),
            f"SELECT state, exit_code FROM deployment_status WHERE sha = '{seeded['failed']}'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "failed|1"
    with sqlite3.connect(db_path) as conn:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM deployment_status")


def test_help_and_version_exit_0() -> None:
    assert cli("--help").returncode == 0
    assert cli("--version").returncode == 0


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    names = [name for name in app if not name.startswith("-")]
    missing = [name for name in names if f"tracker {name}" not in readme]
    assert not missing, f"undocumented commands: {missing}"


def test_commands_bind_without_running() -> None:
    command, bound, _ = app.parse_args(["status", "HEAD~1", "--json"])
    assert command.__name__ == "status" and bound.arguments == {"ref": "HEAD~1", "json": True}
    command, bound, _ = app.parse_args(["wait", "--timeout", "2.5m"])
    assert bound.arguments["timeout"] == "2.5m"  # a duration, parsed by config.parse_duration


def test_no_colour_in_a_pipe_or_with_no_color(seeded, db_path) -> None:
    for env in ({}, {"NO_COLOR": "1"}):
        assert "\x1b[" not in cli("status", seeded["failed"], db=db_path, env=env).stdout


def test_lock_file_is_a_real_flock(db_path, store) -> None:
    """The lock other processes take is the kernel's flock on `events.db.lock`."""
    store.append(sha_of(1), PushRecorded(sha=sha_of(1), branch="main"))
    with open(str(db_path) + ".lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(f, fcntl.LOCK_UN)
