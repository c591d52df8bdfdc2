"""The read side under a busy log, `wait` on what nothing watches, and where a relative
`TRACKER_DB` points (issue 10, items 5 to 7).

Real git repositories with bare remotes and the installed hook, real `tracker` processes, real
lock holders and signals; every wait has a deadline (a `tracker` that waited for the lock would
run into its subprocess timeout, well below the lock timeout it is given).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo, tracker_python, wait_until
from tracker import gitutil
from tracker.api import Tracker
from tracker.events import DeploymentPolled, MonitorStarted, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.push.install import install
from tracker.push.spool import record_paths

HERE = Path(__file__).resolve().parent
PATIENT = {"TRACKER_LOCK_TIMEOUT": "120"}  # far beyond the deadline of every `tracker` run
DEADLINE_S = 30.0


def tracker(
    cwd: Path, *args: str, env: dict[str, str], **extra: str
) -> subprocess.CompletedProcess[str]:
    """`python -m tracker ARGS` in `cwd`, within the deadline."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd, env={**env, **extra}, capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    found = json.loads(done.stdout)
    assert isinstance(found, dict)
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    with SQLiteLog(made.db) as store:
        store.last_seq()  # the log exists, migrated: reading it needs no lock from here on
    return made


def events_of(db: Path, sha: str) -> list[str]:
    with SQLiteLog(db) as store:
        return [e.type for e in store.events(stream=sha)]


def settled(db: Path, sha: str) -> bool:
    """The confirmer has written its verdict and removed the record."""
    return "PushConfirmed" in events_of(db, sha) and not record_paths(db.parent / "spool")


def stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :][:1] == "T"


@contextmanager
def holding(*argv: str, ready: str) -> Iterator[subprocess.Popen[str]]:
    """A process that takes something and says `ready`; it lets go when its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == ready
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# A writer that stops itself (SIGSTOP) in the middle of an append: under the log's lock, inside
# its BEGIN IMMEDIATE, when the store asks its clock for the event's time.
STOPPED_WRITER = r"""
import os, signal, sys, time
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog

class StopMidAppend:
    armed = False
    def now(self):
        if self.armed:
            self.armed = False
            print("stopped", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return time.time()
    def monotonic(self):
        return time.monotonic()
    def sleep(self, seconds):
        time.sleep(seconds)

clock = StopMidAppend()
store = SQLiteLog(sys.argv[1], clock=clock)
store.last_seq()
clock.armed = True
sha = "e" * 40
store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
print("committed", flush=True)
sys.stdin.read()
"""

# Another SQLite client, not ours: it holds a write transaction and ignores our file lock.
EXCLUSIVE = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("exclusive", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def busy(how: str, db: Path) -> Iterator[None]:
    if how == "lock held":
        with holding(str(HERE / "support" / "fault_writer.py"), "hold-lock", str(db), ready="held"):
            yield
    elif how == "writer stopped mid-append":
        with holding("-c", STOPPED_WRITER, str(db), ready="stopped") as writer:
            wait_until(lambda: stopped(writer.pid), timeout=DEADLINE_S)
            yield
            os.kill(writer.pid, signal.SIGCONT)
            assert writer.stdout is not None and writer.stdout.readline().strip() == "committed"
    else:
        with holding("-c", EXCLUSIVE, str(db), ready="exclusive"):
            yield


BUSY = ["lock held", "writer stopped mid-append", "outside BEGIN EXCLUSIVE"]


@pytest.mark.parametrize("how", BUSY)
def test_status_right_after_a_push_is_pending_while_the_log_is_busy(repo: Repo, how: str) -> None:
    sha = repo.commit()
    with busy(how, repo.db):
        done = repo.push("origin", "main")
        assert done.returncode == 0, done.stderr
        text = tracker(repo.work, "status", env=repo.env, **PATIENT)
        assert text.returncode == 2, text.stdout + text.stderr
        assert text.stdout.startswith(f"{sha[:7]}: pending")
        assert "answered from the push spool" in text.stdout
        assert "nothing is watching it" in text.stdout  # no source configured
        full = tracker(repo.work, "status", sha, "--json", env=repo.env, **PATIENT)
        assert full.returncode == 2, full.stderr
        got = as_json(full)
        assert (got["sha"], got["state"], got["exit_code"]) == (sha, "pending", 2)
        assert got["branch"] == "main" and got["spooled"] is True and got["pushed_at"]
        assert record_paths(repo.spool)  # nothing was taken in: the log was never written
    wait_until(lambda: settled(repo.db, sha), timeout=60)
    after = as_json(tracker(repo.work, "status", sha, "--json", env=repo.env))
    assert (after["state"], after["exit_code"], after["spooled"]) == ("pending", 2, False)


@pytest.mark.parametrize("how", BUSY)
def test_events_and_stats_answer_from_the_log_while_it_is_busy(repo: Repo, how: str) -> None:
    """They give up taking the spool in as quickly as `status` does, and read the log."""
    first = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    wait_until(lambda: settled(repo.db, first), timeout=60)
    second = repo.commit()
    with busy(how, repo.db):
        assert repo.push("origin", "main").returncode == 0
        done = tracker(repo.work, "events", "--json", env=repo.env, **PATIENT)
        assert done.returncode == 0, done.stderr
        found = [json.loads(line) for line in done.stdout.splitlines()]
        assert [e["type"] for e in found if e["stream"] == first] == [
            "PushRecorded",
            "PushConfirmed",
        ]
        assert tracker(repo.work, "stats", env=repo.env, **PATIENT).returncode == 0
        assert tracker(repo.work, "status", first, env=repo.env, **PATIENT).returncode == 2
        assert tracker(repo.work, "status", second, env=repo.env, **PATIENT).returncode == 2
    wait_until(lambda: settled(repo.db, second), timeout=60)


def test_75_only_when_nothing_can_be_answered(tmp_path: Path) -> None:
    """A log not created yet cannot be opened while another process holds its lock: with no
    push of the commit in the spool there is no answer (75); with one, it is pending (2)."""
    db = tmp_path / "fresh" / "events.db"
    made = make_repo(tmp_path, TRACKER_DB=str(db))
    install(made.work, python=tracker_python())
    sha = made.commit()
    db.parent.mkdir()
    lock = "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX)"
    with holding("-c", lock + "; print('held', flush=True); sys.stdin.read()", f"{db}.lock",
                 ready="held"):  # fmt: skip
        quick = {"TRACKER_LOCK_TIMEOUT": "0.5"}
        done = tracker(made.work, "status", sha, env=made.env, **quick)
        assert done.returncode == 75, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "lock" in done.stderr
        assert made.push("origin", "main").returncode == 0
        done = tracker(made.work, "status", sha, env=made.env, **PATIENT)  # no lock wait
        assert done.returncode == 2, done.stdout + done.stderr
        assert as_json(tracker(made.work, "status", "--json", env=made.env, **PATIENT))["spooled"]
    wait_until(lambda: settled(db, sha), timeout=60)


def test_a_push_the_log_already_holds_is_answered_from_the_log_while_it_is_busy(
    repo: Repo,
) -> None:
    """A record the log has taken in (the confirmer's `PushRecorded`) is not answered from the
    spool: the log knows more (here: the push was confirmed, and a monitor claimed it)."""
    sha = repo.commit()
    with SQLiteLog(repo.db) as store:  # as if recorded by the confirmer, record still spooled
        pushed = PushRecorded(sha=sha, branch="main", source="hook", push_id="x")
        store.append(sha, pushed, key="push:x")
        store.append(sha, MonitorStarted(os.getpid(), os.uname().nodename, "stepped"))
        store.append(sha, DeploymentPolled("digitalocean", True, True, "BUILDING"))
    record = (
        f"version=1\npush_id=x\nsha={sha}\nbranch=main\nremote=origin\nurl={repo.remote}\n"
        f"git_pid=\npushed_at=1\nsource=hook\ncommon={repo.common}\ndb={repo.db}\n"
    )
    repo.spool.mkdir(parents=True, exist_ok=True)
    (repo.spool / "x.push").write_text(record)
    with busy("lock held", repo.db):
        got = as_json(tracker(repo.work, "status", sha, "--json", env=repo.env, **PATIENT))
    assert (got["state"], got["phase"], got["spooled"]) == ("in_progress", "BUILDING", False)


# -- wait on what nothing watches (item 6) ------------------------------------------------------


@pytest.mark.parametrize("timeout", ["0", "600"])
def test_wait_on_a_push_nothing_watches_returns_at_once_with_the_hint(
    repo: Repo, timeout: str
) -> None:
    sha = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    done = tracker(repo.work, "wait", "--timeout", timeout, env=repo.env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{sha[:7]}: pending, but nothing is watching it: no deployment source is configured;"
        " run `tracker doctor`"
    )
    assert (
        lines[-1] == f"not waiting: nothing is watching {sha[:7]}, so nothing will change (exit 2)"
    )
    assert "still in progress" not in done.stdout
    got = as_json(tracker(repo.work, "wait", sha, "--timeout", timeout, "--json", env=repo.env))
    assert (got["state"], got["exit_code"], got["watched"]) == ("pending", 2, False)


def test_wait_on_a_stale_commit_with_no_source_returns_at_once_and_resumes_nothing(
    repo: Repo,
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    sha = "f" * 40
    with SQLiteLog(repo.db) as store:
        store.append(sha, PushRecorded(sha=sha, branch="main", source="cli"))
        store.append(sha, MonitorStarted(gone.pid, os.uname().nodename, "stepped"))
        store.append(sha, DeploymentPolled("digitalocean", True, True, "BUILDING"))
    done = tracker(repo.work, "wait", sha, "--timeout", "0", env=repo.env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith(
        "fffffff: stale, but nothing is watching it: no deployment source"
    )
    assert events_of(repo.db, sha)[-1] == "DeploymentPolled"  # no monitor was started


@pytest.mark.timeout(DEADLINE_S)
def test_the_api_wait_returns_at_once_too(repo: Repo) -> None:
    sha = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    with Tracker(repo.db, repo=repo.work) as t:
        st = t.wait(sha, timeout=0)
    assert (st.state, st.exit_code, st.watched) == ("pending", 2, False)


# -- one rule for a relative TRACKER_DB (item 7) ------------------------------------------------


@pytest.mark.parametrize("value", ["../logs/events.db", "~/logs/events.db"])
def test_a_relative_tracker_db_names_the_hooks_log_from_any_directory(
    tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    made = make_repo(tmp_path, TRACKER_DB=value, HOME=str(home))
    install(made.work, python=tracker_python())
    log = (tmp_path if value.startswith("..") else home) / "logs" / "events.db"
    sub = made.work / "sub" / "deeper"
    sub.mkdir(parents=True)
    sha = made.commit("in a subdirectory", cwd=sub)
    done = made.push("origin", "HEAD:main", cwd=sub)  # the hook runs at the top level
    assert done.returncode == 0, done.stderr
    wait_until(lambda: log.exists() and settled(log, sha), timeout=60)
    for where in (made.work, sub, made.work / "sub"):
        got = as_json(tracker(where, "status", sha, "--json", env=made.env))
        assert (got["sha"], got["state"]) == (sha, "pending"), where
    # `--db`, like any path argument, is taken from the current directory
    flag = tracker(sub, "--db", "../../../logs/events.db", "status", sha, env=made.env)
    if value.startswith(".."):
        assert flag.returncode == 2, flag.stdout + flag.stderr
    monkeypatch.setenv("TRACKER_DB", value)
    monkeypatch.setenv("HOME", str(home))
    with Tracker.open(sub) as t:
        assert t.db_path.resolve() == log.resolve()
        assert t.status(sha).state == "pending"
    assert not (made.work / "logs").exists() and not (sub.parent / "logs").exists()
    assert made.git("status", "--porcelain").stdout == ""  # nothing in the working tree


def test_a_relative_tracker_db_outside_a_repository_is_taken_from_the_current_directory(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    env = {**make_repo(tmp_path).env, "TRACKER_DB": "logs/events.db"}
    sha = "d" * 40
    done = tracker(plain, "push", sha, "--no-monitor", env=env)
    assert done.returncode == 0, done.stderr
    assert (plain / "logs" / "events.db").exists()
    assert tracker(plain, "status", sha, env=env).returncode == 2


def test_a_bare_repository_takes_a_relative_tracker_db_from_its_git_dir(tmp_path: Path) -> None:
    made = make_repo(tmp_path)
    assert gitutil.log_path_from_env("x/events.db", made.remote) == made.remote / "x/events.db"
    (made.work / "sub").mkdir()
    inside = made.work / ".git" / "objects"  # inside the .git of a clone: its hooks run above
    assert gitutil.log_path_from_env("x/events.db", inside) == made.work / "x/events.db"
    assert gitutil.log_path_from_env("x/events.db", made.work / "sub") == (
        made.work / "x/events.db"
    )
    assert gitutil.log_path_from_env("/abs/events.db", made.work) == Path("/abs/events.db")


# -- a mistyped TRACKER_DB, and no repository (finding 19) -------------------------------------


def test_a_read_at_a_mistyped_log_creates_nothing_and_says_so(tmp_path: Path) -> None:
    from tests.support.gitrepo import base_env

    typo = tmp_path / "notarepo" / "x.db"
    env = base_env(TRACKER_DB=str(typo))
    sha = "a" * 40
    done = tracker(tmp_path, "status", sha, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"aaaaaaa: not found: no log at {typo} (nothing recorded)"
    got = as_json(tracker(tmp_path, "status", sha, "--json", env=env))
    assert (got["exit_code"], got["reason"]) == (
        3,
        {"code": "no_log", "message": f"no log at {typo} (nothing recorded)"},
    )
    assert tracker(tmp_path, "wait", sha, "--timeout", "0", env=env).returncode == 3
    events = tracker(tmp_path, "events", env=env)
    assert (events.returncode, events.stdout) == (0, "")
    assert not typo.parent.exists()  # neither the log nor its lock, nor their directory


def test_outside_a_repository_with_no_ref_the_error_says_so(tmp_path: Path) -> None:
    from tests.support.gitrepo import base_env

    done = tracker(tmp_path, "status", env=base_env(TRACKER_DB=str(tmp_path / "events.db")))
    assert done.returncode == 64
    assert done.stderr.strip() == (
        f"tracker: error: {tmp_path} is not inside a git repository: name the commit (its SHA)"
        " (run 'tracker status --help')"
    )
