"""Faults of the event log: a writer SIGKILLed mid-append, the lock held by a stuck process, a
full disk, a corrupt log, a read-only log directory. Nothing acknowledged is lost or half
written, readers and writers exit with the contract's codes, and `git push` always goes through.

Real processes killed with real signals, real git with the real hook. The longer runs are in
`bench/bench_faults.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    assert_consistent,
    cli,
    event_types,
    first_line,
    helper,
    lock_holder,
    max_seq,
    one_error_line,
    settled,
)
from tests.support.gitrepo import Repo, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.procs import confirmer_alive
from tracker.push.spool import read_record, record_paths


def wait_for_confirmers(repo: Repo) -> None:
    for path in record_paths(repo.spool):
        pid = read_record(path).confirmer_pid
        wait_until(lambda pid=pid: not confirmer_alive(pid))  # type: ignore[misc]


def file_size_limit(nbytes: int) -> Callable[[], None]:
    """A preexec_fn: files may not grow past `nbytes` (a full disk), SIGXFSZ ignored."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


# -- SIGKILL of a writer mid-append -----------------------------------------------------------


def test_sigkill_mid_append_keeps_every_acknowledged_batch_whole(tmp_path: Path) -> None:
    """A batch is in the log whole once `append_all` returned, and never in part."""
    from tests.support.fault_writer import batch_of

    db = tmp_path / "log" / "events.db"
    with SQLiteLog(db) as store:
        store.last_seq()
    rng = random.Random(6)
    procs = {w: helper("acked", str(db), str(w)) for w in range(4)}
    for proc in procs.values():
        first_line(proc, "ready")
    time.sleep(0.3)
    for proc in procs.values():
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        keys = {str(k) for (k,) in conn.execute("SELECT key FROM events")}
    for w, proc in procs.items():
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=10)
        acked = [int(line) for line in out.splitlines(keepends=True) if line.endswith("\n")]
        assert acked, f"writer {w} never committed: the kill came too early to test anything"
        replay = random.Random(w)
        batches = [batch_of(w, n, replay) for n in range(acked[-1] + 2)]
        for n, batch in enumerate(batches):
            present = [a.key in keys for a in batch]
            assert all(present) or not any(present), f"writer {w} batch {n} half-written"
            if n <= acked[-1]:
                assert all(present), f"writer {w} batch {n} was acknowledged, then lost"
    assert_consistent(db)


# -- the lock held by a stuck process ---------------------------------------------------------


def test_a_stuck_lock_makes_writers_exit_75_and_the_hook_still_spools(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    sha = repo.commit()
    env = {**repo.env, "TRACKER_LOCK_TIMEOUT": "0.3"}
    with lock_holder(repo.db):
        done = cli("push", "HEAD", "--no-monitor", cwd=repo.work, env=env)
        assert done.returncode == 75, done.stderr
        line = one_error_line(done.stderr)
        assert "lock" in line and "try again" in line
        pushed = repo.push("origin", "main")
        assert pushed.returncode == 0, pushed.stderr
        assert not [ln for ln in pushed.stderr.splitlines() if ln.startswith("tracker:")]
        assert repo.remote_head() == sha
        assert len(record_paths(repo.spool)) == 1  # the push is durable though the log is not
        assert max_seq(repo.db) == 0
    status = cli("status", sha, "--json", cwd=repo.work, env=repo.env)
    assert status.returncode == 2 and json.loads(status.stdout)["state"] == "pending"
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]


# -- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_fails_appends_with_74_and_half_writes_nothing(repo: Repo) -> None:
    from tracker.events import PushRecorded

    with SQLiteLog(repo.db) as store:
        for n in range(20):
            sha = f"{n:040x}"
            store.append(sha, PushRecorded(sha=sha, branch="main"), key=f"seed-{n}")
    before = max_seq(repo.db)
    sha = repo.commit()
    # A reader keeps the WAL and its index open, as a running `tracker wait` would; the child
    # can read the log but no file may grow past 2 KiB: every WAL frame write fails.
    reader = sqlite3.connect(repo.db)
    reader.execute("SELECT count(*) FROM events").fetchone()
    try:
        done = cli(
            "push", "HEAD", "--no-monitor", cwd=repo.work, env=repo.env,
            preexec_fn=file_size_limit(2048),
        )  # fmt: skip
        assert done.returncode == 74, done.stderr
        line = one_error_line(done.stderr).replace(str(repo.db), "LOG")
        assert line.startswith("tracker: error: cannot append to the log LOG: ")
        assert "full" in line  # the cause, not "cannot rollback" from the cleanup after it
        assert max_seq(repo.db) == before
        # The push itself (git, the hook, the confirmer) under the same limit goes through.
        pushed = subprocess.run(
            ["git", "push", "origin", "main"], cwd=repo.work, env=repo.env,
            capture_output=True, text=True, timeout=60, preexec_fn=file_size_limit(2048),
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert repo.remote_head() == sha
        wait_for_confirmers(repo)
        assert len(record_paths(repo.spool)) == 1
        assert max_seq(repo.db) == before
    finally:
        reader.close()
    assert_consistent(repo.db)
    # Space again: the next reader takes the push in, once.
    status = cli("status", sha, "--json", cwd=repo.work, env=repo.env)
    assert status.returncode == 2, status.stderr
    assert event_types(repo.db, sha) == ["PushRecorded", "PushConfirmed"]
    assert record_paths(repo.spool) == []
    assert_consistent(repo.db)


# -- a corrupt log ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("status",),
        ("events",),
        ("stats",),
        ("rebuild",),
        ("wait", "--timeout", "1"),
        ("push", "HEAD", "--no-monitor"),
    ],
)
def test_a_corrupt_log_is_74_with_how_to_recover(repo: Repo, command: tuple[str, ...]) -> None:
    repo.log_dir.mkdir(parents=True)
    garbage = b"this is not a database, it was overwritten " * 200
    repo.db.write_bytes(garbage)
    done = cli(*command, cwd=repo.work, env=repo.env)
    assert done.returncode == 74, (done.returncode, done.stderr)
    line = one_error_line(done.stderr)
    assert "corrupt" in line and f"mv {repo.db}" in line and ".recover" in line
    assert repo.db.read_bytes() == garbage  # nothing written into it


def test_a_push_with_a_corrupt_log_goes_through_and_is_taken_in_after_recovery(
    repo: Repo,
) -> None:
    repo.log_dir.mkdir(parents=True)
    repo.db.write_bytes(b"\0garbage" * 1000)
    sha = repo.commit()
    pushed = repo.push("origin", "main")
    assert pushed.returncode == 0 and repo.remote_head() == sha
    wait_for_confirmers(repo)
    assert len(record_paths(repo.spool)) == 1
    repo.db.rename(repo.db.with_name("events.db.corrupt"))  # what the message says to do
    status = cli("status", sha, cwd=repo.work, env=repo.env)
    assert status.returncode == 2, status.stderr
    assert event_types(repo.db, sha) == ["PushRecorded", "PushConfirmed"]


# -- a read-only log directory ----------------------------------------------------------------


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make `directory` read-only (immutable for root, whom permission bits do not stop)."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {done.stderr!r}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)


def test_a_read_only_log_directory_is_74_and_the_push_waits_in_the_spool(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()  # created; a clean close removes the -wal and -shm files
    repo.spool.mkdir(mode=0o700)
    before = max_seq(repo.db)
    sha = repo.commit()
    with read_only(repo.log_dir):
        done = cli("push", "HEAD", "--no-monitor", cwd=repo.work, env=repo.env)
        assert done.returncode == 74, done.stderr
        line = one_error_line(done.stderr)
        assert str(repo.db) in line
        pushed = repo.push("origin", "main")
        assert pushed.returncode == 0 and repo.remote_head() == sha
        wait_for_confirmers(repo)
        assert len(record_paths(repo.spool)) == 1
    assert max_seq(repo.db) == before
    status = cli("status", sha, cwd=repo.work, env=repo.env)
    assert status.returncode == 2, status.stderr
    assert event_types(repo.db, sha) == ["PushRecorded", "PushConfirmed"]
