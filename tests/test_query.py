"""`tracker query`: read-only SQL over a real log, run as users and agents run it.

The answers equal what any SQLite client reads from the view; a push still only in the spool is
there; a statement that would write is refused with 64 and changes nothing; `-p` values are
bound, so an injection through one is inert; a terminal gets a table, a pipe gets JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.gitrepo import make_repo
from tracker.cli.query import bindings, output_format
from tracker.errors import UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    MonitorStarted,
    PushRecorded,
)
from tracker.log.sqlite import SQLiteLog
from tracker.push.spool import PushRecord, record_paths, write_record

ROOT = Path(__file__).resolve().parent.parent


def sha_of(n: int) -> str:
    return f"{n:04x}".ljust(40, "e")


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKER_", "GIT_")) and k not in {"DIGITALOCEAN_TOKEN", "NO_COLOR"}
    }
    env.update(extra)
    return env


def query(
    *args: str, db: Path | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["--db", str(db)] if db else []
    return subprocess.run(
        [sys.executable, "-m", "tracker", *prefix, "query", *args],
        cwd=cwd or ROOT, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def direct(db: Path, sql: str, params: dict[str, str] | None = None) -> list[dict[str, object]]:
    """What a plain SQLite client reads (the contract's `sqlite3 -readonly`)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cursor = conn.execute(sql, params or {})
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
    finally:
        conn.close()


def contents(db: Path) -> tuple[object, ...]:
    """Everything a write could change: the events, the projection rows, the schema, the version."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT * FROM events ORDER BY seq").fetchall(),
            conn.execute("SELECT * FROM deployments ORDER BY sha").fetchall(),
            conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
            conn.execute("PRAGMA user_version").fetchone(),
            conn.execute("PRAGMA writable_schema").fetchone(),
        )
    finally:
        conn.close()


@pytest.fixture
def seeded(store: SQLiteLog) -> dict[str, str]:
    """A live commit, a failed one (with its reason) and one in progress, through the store."""
    shas = {name: sha_of(n) for n, name in enumerate(("live", "failed", "building"), start=1)}
    t0 = time.time() - 100  # now, not at import: nothing here is stale (300 s of silence) yet
    for offset, sha in enumerate(shas.values()):
        store.append(sha, PushRecorded(sha=sha, branch="main", source="cli"), at=t0 + offset)
    live, failed, building = shas["live"], shas["failed"], shas["building"]
    poll = DeploymentPolled("digitalocean", True, True, "BUILDING", deployment_id="d1")
    store.append(live, poll, at=t0 + 5)
    store.append(live, DeploymentSucceeded("d1", push_to_live_s=95.0), at=t0 + 95)
    store.append(
        failed,
        DeploymentFailed(
            "d2",
            reason={"code": "BuildJobExitNonZero", "message": "npm run build exited 1"},
            failed_step="build.components.web",
            log_tail=["npm ERR! code ELIFECYCLE"],
        ),
        at=t0 + 60,
    )
    store.append(building, MonitorStarted(os.getpid(), os.uname().nodename, "stepped"), at=t0 + 3)
    store.append(
        building, DeploymentPolled("digitalocean", True, True, "DEPLOYING", api_calls=1), at=t0 + 4
    )
    return shas


# -- answers ------------------------------------------------------------------------------------


def test_the_answer_equals_the_views_rows(seeded: dict[str, str], db_path: Path) -> None:
    sql = "SELECT * FROM deployment_status ORDER BY sha"
    done = query(sql, db=db_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # a pipe gets JSON: an array of objects
    assert rows == direct(db_path, sql)
    assert [r["state"] for r in rows] == ["succeeded", "failed", "in_progress"]
    assert rows[1]["reason_message"] == "npm run build exited 1"


def test_the_last_failures_with_their_reasons_as_the_readme_asks(
    seeded: dict[str, str], db_path: Path
) -> None:
    sql = (
        "SELECT short_sha, state, failed_step, reason_message FROM deployment_status"
        " WHERE exit_code = 1 AND sha IN"
        " (SELECT sha FROM deployment_status ORDER BY pushed_at DESC LIMIT 10)"
    )
    done = query(sql, db=db_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {
            "short_sha": seeded["failed"][:7],
            "state": "failed",
            "failed_step": "build.components.web",
            "reason_message": "npm run build exited 1",
        }
    ]


def test_a_push_still_only_in_the_spool_is_in_the_answer(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    sha = repo.commit("pushed, not yet taken in")
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")  # no hook: only our record
    spooled = write_record(
        repo.spool,
        PushRecord(
            push_id=f"{time.time():.1f}-1-1", sha=sha, branch="main", remote="origin",
            url=str(repo.remote), git_pid=None, pushed_at=time.time(), source="hook",
            common=str(repo.common), db=str(repo.db), toplevel=str(repo.work),
        ),
    )  # fmt: skip
    assert record_paths(repo.spool) == [spooled]

    done = query("SELECT sha, state FROM deployment_status", cwd=repo.work)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"sha": sha, "state": "pending"}]
    assert record_paths(repo.spool) == []  # taken in, as `tracker status` would


def test_the_events_and_every_projection_can_be_read(seeded: dict[str, str], db_path: Path) -> None:
    sql = (
        "SELECT type, json_extract(data, '$.failed_step') AS step FROM events"
        " WHERE stream = :sha ORDER BY seq"
    )
    done = query("--nl", sql, "-p", "sha", seeded["failed"], db=db_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"type": "PushRecorded", "step": None},
        {"type": "DeploymentFailed", "step": "build.components.web"},
    ]
    for table in ("deployments", "source_calls", "deployment_measures", "call_totals"):
        assert query(f"SELECT count(*) AS n FROM {table}", db=db_path).returncode == 0
    described = query("PRAGMA table_info(events)", db=db_path)  # the schema can be asked
    assert "recorded_at" in {c["name"] for c in json.loads(described.stdout)}


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM events",
        "INSERT INTO events (stream, version, type, recorded_at, data)"
        " VALUES ('x', 1, 'PushRecorded', '2027-01-01T00:00:00Z', '{}')",
        "UPDATE deployments SET state = 'succeeded'",
        "DROP VIEW deployment_status",
        "CREATE TABLE mine (x)",
        "CREATE TEMP TABLE mine (x)",
        "ATTACH DATABASE '{dir}/other.db' AS other",
        "PRAGMA writable_schema = ON",
        "PRAGMA writable_schema",
        "PRAGMA user_version = 99",
        "PRAGMA journal_mode = DELETE",
        "SELECT 1; DELETE FROM events",
        "SELECT 1; PRAGMA writable_schema = ON",
        "VACUUM INTO '{dir}/copy.db'",
        "BEGIN IMMEDIATE",
        "INSERT INTO events SELECT * FROM events RETURNING seq",
    ],
)
def test_a_statement_that_would_write_is_refused_and_changes_nothing(
    seeded: dict[str, str], db_path: Path, sql: str
) -> None:
    sql = sql.replace("{dir}", str(db_path.parent))
    before = contents(db_path)
    done = query(sql, db=db_path)
    assert done.returncode == 64, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("tracker: error: refused: ") and done.stderr.count("\n") == 1
    assert contents(db_path) == before
    assert {p.name for p in db_path.parent.iterdir()} <= {
        "events.db", "events.db-wal", "events.db-shm", "events.db.lock"
    }, "nothing was attached or copied"  # fmt: skip


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT * FROM nowhere", "no such table: nowhere"),
        ("SELEKT 1", "syntax error"),
        ("SELECT :missing", "missing"),
    ],
)
def test_a_wrong_statement_is_bad_input(
    db_path: Path, store: SQLiteLog, sql: str, says: str
) -> None:
    store.last_seq()
    done = query(sql, db=db_path)
    assert done.returncode == 64 and says in done.stderr, done.stderr


# -- parameters ---------------------------------------------------------------------------------


def test_parameters_are_bound(seeded: dict[str, str], db_path: Path) -> None:
    sql = "SELECT short_sha, state FROM deployment_status WHERE sha = :sha OR short_sha = :short"
    done = query(sql, "-p", "sha", seeded["live"], "--param", ":short", seeded["failed"][:7],
                 db=db_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["state"] for r in json.loads(done.stdout)} == {"succeeded", "failed"}


@pytest.mark.parametrize(
    "value",
    [
        "x' OR '1'='1",
        "'; DELETE FROM events; --",
        "1 OR 1=1",
        f"{sha_of(1)}' UNION SELECT sql, name FROM sqlite_master --",
    ],
)
def test_an_injection_through_a_parameter_is_inert(
    seeded: dict[str, str], db_path: Path, value: str
) -> None:
    before = contents(db_path)
    done = query("SELECT sha, state FROM deployment_status WHERE sha = :sha", "-p", "sha", value,
                 db=db_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []  # the value was compared as text, never run as SQL
    echoed = query("SELECT :v AS v", "-p", "v", value, db=db_path)
    assert json.loads(echoed.stdout) == [{"v": value}]
    assert contents(db_path) == before


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ([("sha", "a"), ("sha", "b")], "given twice"),
        ([("1x", "a")], "parameter name"),
        ([("a; DROP", "a")], "parameter name"),
    ],
)
def test_bad_parameter_names_are_refused(params: list[tuple[str, str]], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        bindings(params)
    assert bindings([(":a", "1"), ("@b", "2"), ("c", "3")]) == {"a": "1", "b": "2", "c": "3"}


def test_a_parameter_missing_its_value_is_a_usage_error(db_path: Path) -> None:
    done = query("SELECT :a", "-p", "a", db=db_path)
    assert done.returncode == 64 and done.stderr.count("\n") == 1, done.stderr


# -- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "terminal", "fmt"),
    [
        ({}, True, "table"),
        ({}, False, "json"),
        ({"json": True}, True, "json"),
        ({"table": True}, False, "table"),
        ({"nl": True}, False, "nl"),
        ({"csv": True}, True, "csv"),
    ],
)
def test_the_output_format(flags: dict[str, bool], terminal: bool, fmt: str) -> None:
    chosen = {"json": False, "nl": False, "csv": False, "table": False, **flags}
    assert output_format(**chosen, terminal=terminal) == fmt


def test_two_formats_at_once_are_a_usage_error(db_path: Path) -> None:
    done = query("--json", "--csv", "SELECT 1", db=db_path)
    assert done.returncode == 64 and "--json" in done.stderr


def test_csv_nl_and_an_empty_answer(seeded: dict[str, str], db_path: Path) -> None:
    sql = "SELECT short_sha, reason_message FROM deployment_status ORDER BY sha"
    rows = list(csv.reader(io.StringIO(query("--csv", sql, db=db_path).stdout)))
    assert rows[0] == ["short_sha", "reason_message"] and len(rows) == 4
    assert rows[2] == [seeded["failed"][:7], "npm run build exited 1"]
    nl = query("--nl", sql, db=db_path).stdout.splitlines()
    assert [json.loads(line)["short_sha"] for line in nl] == [r[0] for r in rows[1:]]
    empty = "SELECT sha FROM deployment_status WHERE 0"
    assert json.loads(query(empty, db=db_path).stdout) == []
    assert query("--csv", empty, db=db_path).stdout == "sha\n"
    assert query("--nl", empty, db=db_path).stdout == ""


def test_a_table_escapes_control_characters(db_path: Path, store: SQLiteLog) -> None:
    store.last_seq()
    sql = "SELECT 'red' || char(27) || '[31m' AS text, 42 AS n, NULL AS absent"
    done = query("--table", sql, db=db_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "red\\x1b[31m" in done.stdout
    assert done.stdout.splitlines()[0].split() == ["text", "n", "absent"]


def run_in_terminal(args: list[str], timeout: float = 60.0) -> str:
    """Run `tracker ARGS` with a real pseudo-terminal as its stdout; everything it printed."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", *args], stdin=subprocess.DEVNULL, stdout=child,
        stderr=child, env=cli_env(TERM="xterm"), cwd=ROOT,
    )  # fmt: skip
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=max(0.1, deadline - time.monotonic())) == 0
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_terminal_gets_a_table_and_a_pipe_gets_json(
    seeded: dict[str, str], db_path: Path
) -> None:
    sql = "SELECT short_sha, state, polls FROM deployment_status ORDER BY sha"
    lines = run_in_terminal(["--db", str(db_path), "query", sql]).splitlines()
    assert lines[0].split() == ["short_sha", "state", "polls"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    body = [line.split() for line in lines[2:5]]
    assert body == [
        [seeded["live"][:7], "succeeded", "1"],
        [seeded["failed"][:7], "failed", "0"],
        [seeded["building"][:7], "in_progress", "1"],
    ]
    assert lines[5] == "(3 rows)"
    table = [lines[0], *lines[2:5]]
    words = [lines[0].split(), *body]
    assert len({line.index(w[1]) for line, w in zip(table, words, strict=True)}) == 1
    assert len({len(line) for line in table}) == 1, "the columns line up (numbers on the right)"

    piped = query(sql, db=db_path)
    assert json.loads(piped.stdout) == direct(db_path, sql)


def readme_commands(after: str) -> list[list[str]]:
    """The `tracker query` commands of the README's shell blocks that follow `after`."""
    text = (ROOT / "README.md").read_text()
    blocks = text[text.index(after) :].split("```sh\n")[1:3]
    return [shlex.split(block.split("```")[0])[1:] for block in blocks]


def test_the_readmes_agent_questions_answer_from_a_real_log(
    seeded: dict[str, str], db_path: Path
) -> None:
    failures, tail = readme_commands("which of my last ten")
    assert failures[0] == "query" and tail[0] == "query"
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "--db", str(db_path), *failures],
        env=cli_env(), capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (failed,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert failed["short_sha"] == seeded["failed"][:7]
    assert failed["failed_step"] == "build.components.web"
    tail[-1] = seeded["failed"][:7]  # the README's example SHA, here the seeded failure
    answered = query(*tail[1:], db=db_path)
    assert answered.returncode == 0, answered.stderr
    lines = json.loads(answered.stdout)
    assert lines == [{"line": "npm ERR! code ELIFECYCLE"}]
