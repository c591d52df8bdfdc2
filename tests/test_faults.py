"""Fault injection: the tracker keeps working and loses nothing under kills, a stuck lock, a full
disk, a corrupt or read-only log, a misbehaving platform or database, and bad input.

Real processes killed with real signals, real git with the real hook, the simulated platform over
real HTTP, the real MariaDB. The longer runs (200 pushes from 8 clones, fault storms with counts)
are in `bench/bench_faults.py`.
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
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import Repo, make_repo, tracker_python, wait_until
from tests.support.mariadb import admin_connection, plan_table
from tracker.clock import FakeClock
from tracker.config import Settings, load_settings
from tracker.log.sqlite import SQLiteLog
from tracker.procs import confirmer_alive
from tracker.projections import exit_code_of
from tracker.push.install import install
from tracker.push.spool import read_record, record_paths
from tracker.sim.server import SimulatedPlatform

ROOT = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "support" / "fault_writer.py"
TOKEN = "sim-fault-token-6f1c2b"
PASSWORD = "pw-never-shown-93a7"


# -- helpers ----------------------------------------------------------------------------------


def cli(
    *args: str,
    cwd: Path | str = "/",
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`python -m tracker ARGS` in a child process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], cwd=cwd, env=env, input=stdin,
        capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn,
    )  # fmt: skip


def helper(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(HELPER), *args], stdout=subprocess.PIPE, stdin=stdin, text=True,
        env=env, cwd=ROOT,
    )  # fmt: skip


def first_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == expected, f"helper said {line!r} (exit {proc.poll()})"


def one_error_line(stderr: str) -> str:
    """The single line the CLI printed on standard error (and assert there is just one)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tracker: error: "), lines[0]
    return lines[0]


def max_seq(db: Path) -> int:
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def assert_consistent(db: Path) -> None:
    """Integrity ok, and a rebuild from the log alone equals the inline projection."""
    with SQLiteLog(db) as store:
        assert store.integrity_check() == "ok"
        report = store.rebuild()
    assert report.clean, report


def event_types(db: Path, sha: str) -> list[str]:
    with SQLiteLog(db) as store:
        return [e.type for e in store.events(stream=sha)]


@contextlib.contextmanager
def lock_holder(db: Path) -> Iterator[subprocess.Popen[str]]:
    """A stuck process holding the log's lock until we let go."""
    proc = helper("hold-lock", str(db), stdin=subprocess.PIPE)
    try:
        first_line(proc, "held")
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def file_size_limit(nbytes: int) -> Callable[[], None]:
    """A preexec_fn: files may not grow past `nbytes` (a full disk), SIGXFSZ ignored."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    return made


def settled(repo: Repo, sha: str) -> list[str]:
    """Wait until the push has its verdict and the spool is empty; the commit's event types."""
    verdicts = {"PushConfirmed", "PushRejected"}
    wait_until(
        lambda: (
            repo.db.exists()
            and verdicts & set(event_types(repo.db, sha))
            and not record_paths(repo.spool)
        )
    )
    return event_types(repo.db, sha)


def wait_for_confirmers(repo: Repo) -> None:
    for path in record_paths(repo.spool):
        pid = read_record(path).confirmer_pid
        wait_until(lambda pid=pid: not confirmer_alive(pid))  # type: ignore[misc]


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


# -- SIGKILL of a confirmer before it appends -------------------------------------------------


def test_sigkill_of_the_confirmer_before_it_appends_loses_nothing(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    sha = repo.commit()
    with lock_holder(repo.db):  # the confirmer cannot append anything while we hold the lock
        assert repo.push("origin", "main").returncode == 0
        [path] = record_paths(repo.spool)
        pid = read_record(path).confirmer_pid
        assert confirmer_alive(pid)
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: not confirmer_alive(pid))
        assert max_seq(repo.db) == 0
    status = cli("status", sha, "--json", cwd=repo.work, env=repo.env)
    assert status.returncode == 2 and json.loads(status.stdout)["state"] == "pending"
    assert event_types(repo.db, sha) == ["PushRecorded", "PushConfirmed"]
    assert record_paths(repo.spool) == []


# -- SIGKILL of a detached monitor mid-poll ---------------------------------------------------


def sim_env(sim: SimulatedPlatform, db: Path, **extra: str) -> dict[str, str]:
    """The environment of a tracker process watching `sim` with fast polling."""
    from tests.support.gitrepo import base_env

    return base_env(
        TRACKER_DB=str(db), DIGITALOCEAN_TOKEN=TOKEN, TRACKER_DO_APP_ID=sim.app_id,
        TRACKER_DO_API_URL=sim.base_url, TRACKER_POLL_POLICY="stepped",
        TRACKER_POLL_INITIAL="0.2", TRACKER_POLL_LONG="0.2", TRACKER_MAX_WAIT="60", **extra,
    )  # fmt: skip


def started_pids(db: Path, sha: str) -> list[int]:
    with SQLiteLog(db) as store:
        return [int(e.data["pid"]) for e in store.events(stream=sha) if e.type == "MonitorStarted"]


def logged_api_calls(db: Path) -> int:
    with SQLiteLog(db) as store:
        return sum(int(e.data.get("api_calls") or 0) for e in store.events())


OUTCOMES = {
    "DeploymentSucceeded",
    "DeploymentFailed",
    "DeploymentSuperseded",
    "MonitorTimedOut",
}


def test_sigkill_of_a_monitor_mid_poll_is_stale_then_wait_resumes_it(tmp_path: Path) -> None:
    from tracker.events import PushRecorded
    from tracker.procs import monitor_alive

    sha = "c0ffee" + "0" * 34
    db = tmp_path / "log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        env = sim_env(sim, db, TRACKER_HTTP_TIMEOUT="20")
        with SQLiteLog(db) as store:
            store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
        sim.add_deployment(sha, pending_build_s=0.3, build_s=1, pending_deploy_s=0.2, deploy_s=1)
        sim.inject("slow", times=1, after=3, delay_s=30)  # the 4th request hangs: mid-poll
        started = cli("monitor", sha, "--detach", cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stderr
        wait_until(lambda: any(r.fault == "slow" for r in sim.requests))
        [pid] = started_pids(db, sha)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not monitor_alive(pid, os.uname().nodename))
        status = cli("status", sha, "--json", cwd=tmp_path, env=env)
        assert status.returncode == 2 and json.loads(status.stdout)["state"] == "stale"
        waited = cli("wait", sha, "--timeout", "30", "--json", cwd=tmp_path, env=env)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert json.loads(waited.stdout)["state"] == "succeeded"
        _, second = started_pids(db, sha)
        wait_until(lambda: not monitor_alive(second, os.uname().nodename))
        types = event_types(db, sha)
        assert [t for t in types if t in OUTCOMES] == ["DeploymentSucceeded"]
        # Every call is in the log but the one the killed monitor was waiting on.
        assert logged_api_calls(db) == sim.api_requests - 1
    assert_consistent(db)


def test_a_monitor_waits_out_a_lock_held_past_the_lock_timeout(tmp_path: Path) -> None:
    """TRACKER_LOCK_TIMEOUT bounds what people wait for; a monitor waits as long as it may."""
    from tracker.events import PushRecorded

    sha = "bead" + "0" * 36
    db = tmp_path / "log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        env = sim_env(sim, db, TRACKER_LOCK_TIMEOUT="0.2")
        with SQLiteLog(db) as store:
            store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
        sim.add_deployment(
            sha, pending_build_s=0.2, build_s=0.5, pending_deploy_s=0.2, deploy_s=0.5
        )
        with lock_holder(db):
            monitor = subprocess.Popen(
                [sys.executable, "-m", "tracker", "monitor", sha], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            time.sleep(1.5)  # far past the lock timeout, with its first append waiting
            assert monitor.poll() is None, monitor.communicate()
            assert event_types(db, sha) == ["PushRecorded"]  # (reads need no lock)
        out, err = monitor.communicate(timeout=60)
        assert monitor.returncode == 0, out + err
    types = event_types(db, sha)
    assert types[1] == "MonitorStarted" and [t for t in types if t in OUTCOMES] == [
        "DeploymentSucceeded"
    ]
    assert_consistent(db)


# -- the platform misbehaving -----------------------------------------------------------------


def run_monitor(store: SQLiteLog, sha: str, settings: Settings, clock: FakeClock) -> str:
    """A monitor for `sha` in simulated time, the push recorded first."""
    from tracker.events import PushRecorded
    from tracker.monitor.loop import Monitor, build_sources

    if store.deployment(sha) is None:
        store.append(sha, PushRecorded(sha=sha, branch="main"), at=clock.now())
    sources = build_sources(settings, clock)
    try:
        monitor = Monitor(store, sha, sources, settings=settings, clock=clock, rand=lambda: 0.5)
        return monitor.run()
    finally:
        for source in sources:
            source.close()


def do_settings(sim: SimulatedPlatform, **extra: str) -> Settings:
    env = {
        "DIGITALOCEAN_TOKEN": TOKEN,
        "TRACKER_DO_APP_ID": sim.app_id,
        "TRACKER_DO_API_URL": sim.base_url,
        "TRACKER_HTTP_TIMEOUT": "0.3",
        "TRACKER_POLL_POLICY": "stepped",  # the storms are placed by its polls
        **extra,
    }
    return load_settings(None, env=env)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(clock=clock, token=TOKEN) as platform:
        yield platform


STORMS = [
    ("429", 12, {"retry_after": 7}),
    ("429", 12, {"reset_in_s": 9}),  # no retry-after: ratelimit-reset only
    ("5xx", 15, {"status": 503}),
    ("5xx", 15, {"status": 502}),  # the load balancer's HTML page
    ("malformed", 15, {}),
    ("wrong_shape", 15, {}),
    ("truncated", 15, {}),
    ("huge", 4, {"size_bytes": 5 * 1024 * 1024}),
    ("reset", 15, {}),
    ("slow", 4, {"delay_s": 1.0}),  # a slow-loris answer outlasting the 0.3 s timeout
]


@pytest.mark.parametrize(("kind", "times", "options"), STORMS, ids=[s[0] for s in STORMS])
def test_a_storm_of_bad_answers_still_reaches_the_verdict_with_every_call_counted(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock, kind: str, times: int, options: dict
) -> None:
    sha = "5" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    sim.inject(kind, times=times, after=2, **options)  # type: ignore[arg-type]
    assert run_monitor(store, sha, do_settings(sim), clock) == "succeeded"
    row = store.deployment(sha)
    assert row is not None and row.errors == times
    assert logged_api_calls(store.path) == sim.api_requests
    assert [t for t in event_types(store.path, sha) if t in OUTCOMES] == ["DeploymentSucceeded"]


@pytest.mark.parametrize("kind", ["429", "5xx", "reset", "malformed"])
def test_a_storm_longer_than_max_wait_times_out_cleanly(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock, kind: str
) -> None:
    sha = "6" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    sim.inject(kind, times=10_000, retry_after=20)  # type: ignore[arg-type]
    settings = do_settings(sim, TRACKER_MAX_WAIT="90")
    assert run_monitor(store, sha, settings, clock) == "timed_out"
    assert [t for t in event_types(store.path, sha) if t in OUTCOMES] == ["MonitorTimedOut"]
    assert logged_api_calls(store.path) == sim.api_requests
    row = store.deployment(sha)
    assert row is not None and row.errors == sim.api_requests


def test_a_failure_whose_log_archive_is_broken_is_still_recorded(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock
) -> None:
    sha = "7" * 40
    sim.add_deployment(sha, build_s=30, outcome="build_error")
    sim.inject("reset", times=5, path="/archive/")
    sim.inject("5xx", times=1, path="/logs")
    assert run_monitor(store, sha, do_settings(sim), clock) == "failed"
    with SQLiteLog(store.path) as again:
        fetched = [e.data for e in again.events(stream=sha) if e.type == "LogsFetched"]
    assert len(fetched) == 1 and fetched[0]["error"]
    assert TOKEN not in json.dumps(fetched)
    assert logged_api_calls(store.path) == sim.api_requests


# -- the database misbehaving -----------------------------------------------------------------


@pytest.fixture
def deployments_table() -> Iterator[tuple[Any, str]]:
    admin = admin_connection()
    with plan_table(admin, "faults") as name:
        yield admin, name
    admin.close()


def test_a_refused_database_is_polled_until_max_wait_then_times_out(
    store: SQLiteLog, clock: FakeClock
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(
        None,
        env={
            "TRACKER_MYSQL_URL": f"mysql://root:{PASSWORD}@127.0.0.1:{port}/test",
            "TRACKER_MAX_WAIT": "30",
            "TRACKER_MYSQL_CONNECT_TIMEOUT": "1",
        },
    )
    sha = "8" * 40
    assert run_monitor(store, sha, settings, clock) == "timed_out"
    row = store.deployment(sha)
    assert row is not None and row.errors == row.polls > 1
    assert PASSWORD.encode() not in store.path.read_bytes()


@pytest.mark.mysql
def test_a_query_killed_on_the_server_mid_flight_is_retried_to_the_verdict(
    store: SQLiteLog, clock: FakeClock, deployments_table: tuple[Any, str]
) -> None:
    import threading

    admin, table = deployments_table
    sha = "9" * 40
    with admin.cursor() as cur:
        cur.execute(
            f"INSERT INTO `{table}` (commitSha, status, createdAt) VALUES (%s, 'building', NOW(3))",
            (sha,),
        )
    settings = load_settings(
        None,
        env={
            "TRACKER_MYSQL_URL": "mysql://root@127.0.0.1:3306/test",
            "TRACKER_MYSQL_TABLE": table,
            "TRACKER_MAX_WAIT": "600",
        },
    )
    locker = admin_connection()
    with locker.cursor() as cur:
        cur.execute(f"LOCK TABLES `{table}` WRITE")  # the monitor's SELECT now waits
    result: dict[str, str] = {}
    thread = threading.Thread(
        target=lambda: result.update(state=run_monitor(store, sha, settings, clock))
    )
    thread.start()
    try:
        victim = wait_until(lambda: waiting_query(admin, table), timeout=10)
        with admin.cursor() as cur:
            cur.execute("KILL CONNECTION %s", (victim,))
        with locker.cursor() as cur:
            cur.execute(
                f"INSERT INTO `{table}` (commitSha, status, createdAt)"
                " VALUES (%s, 'success', NOW(3) + INTERVAL 1 SECOND)",
                (sha,),
            )
    finally:
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        locker.close()
        thread.join(timeout=30)
    assert result.get("state") == "succeeded"
    with SQLiteLog(store.path) as again:
        polls = [e.data for e in again.events(stream=sha) if e.type == "DeploymentPolled"]
    assert any(p["error_kind"] == "connection" for p in polls)
    assert polls[-1]["ok"] and polls[-1]["status"] == "success"


def waiting_query(admin: Any, table: str) -> int | None:
    """The server id of a connection whose query waits on `table`'s lock."""
    with admin.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            (f"%FROM `{table}`%",),
        )
        found = cur.fetchone()
    return int(found[0]) if found else None


@pytest.mark.mysql
def test_wrong_database_credentials_stop_the_monitor_with_one_line_and_no_secret(
    tmp_path: Path, deployments_table: tuple[Any, str]
) -> None:
    from tests.support.gitrepo import base_env
    from tracker.events import PushRecorded

    _, table = deployments_table
    db = tmp_path / "log" / "events.db"
    sha = "a" * 40
    with SQLiteLog(db) as store:
        store.append(sha, PushRecorded(sha=sha, branch="main"))
    env = base_env(
        TRACKER_DB=str(db), TRACKER_MYSQL_URL=f"mysql://root:{PASSWORD}@127.0.0.1:3306/test",
        TRACKER_MYSQL_TABLE=table,
    )  # fmt: skip
    done = cli("monitor", sha, cwd=tmp_path, env=env)
    assert done.returncode == 69, done.stdout + done.stderr
    line = one_error_line(done.stderr)
    assert "refused" in line and "tracker doctor" in line
    doctor = cli("doctor", "--json", cwd=tmp_path, env=env)
    for text in (done.stdout, done.stderr, doctor.stdout, doctor.stderr):
        assert PASSWORD not in text
    for file in db.parent.rglob("*"):
        if file.is_file():
            assert PASSWORD.encode() not in file.read_bytes(), file


# -- bad input on every command ---------------------------------------------------------------

UNKNOWN_SHA = "f" * 40
FULL = "a" * 40
SHELL_TRICKS = ["$(touch pwned)", ";touch pwned;", "`touch pwned`", "HEAD\ntouch pwned", "-n"]
MYSQL = "mysql://root@127.0.0.1/test"
BAD_INPUT = [
    *[(("status", "--", ref), {}, "", 64) for ref in SHELL_TRICKS],
    *[(("events", "--", ref), {}, "", 64) for ref in SHELL_TRICKS],
    *[(("wait", "--timeout", "1", "--", ref), {}, "", 64) for ref in SHELL_TRICKS],
    *[(("push", "--no-monitor", "--", ref), {}, "", 64) for ref in SHELL_TRICKS],
    *[(("monitor", "--", ref), {}, "", 64) for ref in SHELL_TRICKS],
    (("status", "zzzzzzz"), {}, "", 64),
    (("status", "abc"), {}, "", 64),
    (("status", "a" * 41), {}, "", 64),
    (("status", "HEAD..HEAD"), {}, "", 64),
    (("status", "HEAD", "--bogus"), {}, "", 64),
    (("wait", UNKNOWN_SHA, "--timeout", "-1"), {}, "", 64),
    (("wait", UNKNOWN_SHA, "--timeout", "nan"), {}, "", 64),
    (("wait", UNKNOWN_SHA, "--timeout", "abc"), {}, "", 64),
    (("events", "--limit", "0"), {}, "", 64),
    (("events", "--limit", "-5"), {}, "", 64),
    (("stats", "--since", "-5m"), {}, "", 64),
    (("stats", "--since", "nan"), {}, "", 64),
    (("stats", "--since", "inf"), {}, "", 64),
    (("stats", "--since", "1e400d"), {}, "", 64),
    (("stats", "--since", "10x"), {}, "", 64),
    (("monitor", "HEAD"), {"TRACKER_MAX_WAIT": "-1"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_MAX_WAIT": "nan"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_MAX_WAIT": "inf"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_MAX_WAIT": "1e400"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_MAX_WAIT": "86400000"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_POLL_POLICY": "adaptive"}, "", 78),
    (("monitor", "HEAD"), {"TRACKER_POLL_INITIAL": "0"}, "", 78),
    (("push", "HEAD"), {"TRACKER_LOCK_TIMEOUT": "-3"}, "", 78),
    (
        ("monitor", "HEAD"),
        {"TRACKER_MYSQL_URL": MYSQL, "TRACKER_MYSQL_TABLE": "deployments; DROP TABLE x"},
        "",
        78,
    ),
    (("monitor", "HEAD"), {"TRACKER_MYSQL_URL": MYSQL, "TRACKER_MYSQL_SHA_COLUMN": "a`b"}, "", 78),
    (
        ("monitor", "HEAD"),
        {"TRACKER_MYSQL_URL": MYSQL, "TRACKER_MYSQL_STATUS_COLUMN": "status FROM x --"},
        "",
        78,
    ),
    *[
        (("ingest",), {}, text, 64)
        for text in [
            "",
            "{",
            "[]",
            '"x"',
            '{"sha": "zz", "status": "success"}',
            '{"sha": "$(touch pwned)", "status": "success"}',
            f'{{"sha": "{FULL}"}}',
            f'{{"sha": "{FULL}", "phase": "BOGUS"}}',
            f'{{"sha": "{FULL}", "status": 5}}',
            f'{{"sha": "{FULL}", "status": NaN}}',
            f'{{"sha": "{FULL}", "status": "success", "log_tail": 5}}',
            f'{{"sha": "{UNKNOWN_SHA}", "status": "success"}}',
            "x" * 2_000_000,
        ]
    ],
]
# Found by this suite and fixed in cli.py / api.py: absurd --timeout, empty --since, and an
# unvalidated --branch / --remote in `tracker push`.
KNOWN_BAD_INPUT = (
    [
        (("wait", UNKNOWN_SHA, "--timeout", timeout), {}, "", 64)
        for timeout in ("inf", "1e400", "1e12")
    ]
    + [(("stats", "--since", ""), {}, "", 64)]
    + [
        (("push", "HEAD", "--no-monitor", option, value), {}, "", 64)
        for option, value in [
            ("--branch", "$(touch pwned)"),
            ("--branch", "`touch pwned`"),
            ("--branch", "main\nfake line"),
            ("--remote", ";touch pwned"),
        ]
    ]
)


@pytest.fixture(scope="module")
def bad_input_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """One repository whose log holds a push of HEAD, shared by the bad-input cases."""
    repo = make_repo(tmp_path_factory.mktemp("bad-input"))
    with SQLiteLog(repo.db) as store:
        from tracker.events import PushRecorded

        head = repo.git("rev-parse", "HEAD").stdout.strip()
        store.append(head, PushRecorded(sha=head, branch="main"))
    return repo


@pytest.mark.parametrize(("args", "env", "stdin", "code"), BAD_INPUT + KNOWN_BAD_INPUT)
def test_bad_input_is_one_error_line_and_writes_nothing(
    bad_input_repo: Repo,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    env: dict[str, str],
    stdin: str,
    code: int,
) -> None:
    import io

    from tracker.cli.app import main

    repo = bad_input_repo
    monkeypatch.chdir(repo.work)
    for name, value in {**repo.env, **env}.items():
        if name.startswith(("GIT_", "TRACKER_")):
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    before = max_seq(repo.db)
    assert main(list(args)) == code
    one_error_line(capsys.readouterr().err)
    if args[0] == "monitor" and code == 78:  # a monitor refusing its settings says why, only that
        with contextlib.closing(sqlite3.connect(repo.db)) as conn:
            added = conn.execute("SELECT type FROM events WHERE seq > ?", (before,)).fetchall()
        assert added == [("MonitorNotStarted",)]
    else:
        assert max_seq(repo.db) == before
    for where in (repo.work, repo.work.parent, Path("/")):
        assert not (where / "pwned").exists()


# -- security on the hook path and in the spool -----------------------------------------------

URLS = [
    "https://x-access-token:ghs_S3CRET@github.com/acme/app.git",
    "https://ghp_S3CRET@github.com/acme/app.git",
    "https://user:p@ss:S3CRET@example.com:8443/a/b.git",
    "ssh://deployer:S3CRET@host:2222/srv/app.git",
    "https://user:S3CRET@host",
    "git@github.com:acme/app.git",
    "https://github.com/acme/app.git",
    "https://host/path/with@sign.git",
    "/srv/git/app.git",
    "file:///srv/git/app.git",
    "host:path/app.git",
    "https://gitlab.example.com/acme/app.git?private_token=S3CRET",
    "https://host/acme/app.git#S3CRET",
    "https://oauth2:S3CRET?x@host/app.git?token=S3CRET#S3CRET",
    "https://host?S3CRET",
]


def hook_function(name: str) -> str:
    """The text of one shell function of hooks/pre-push."""
    text = (ROOT / "hooks" / "pre-push").read_text()
    start = text.index(f"{name}() {{")
    return text[start : text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("url", URLS)
def test_the_hook_strips_credentials_exactly_as_the_python_side_does(url: str) -> None:
    from tracker.gitutil import strip_credentials

    script = hook_function("strip_credentials") + 'strip_credentials "$1"'
    done = subprocess.run(
        ["sh", "-c", script, "sh", url], capture_output=True, text=True, check=True
    )
    assert done.stdout == strip_credentials(url)
    assert "S3CRET" not in done.stdout


def test_spool_records_are_owner_only_whatever_the_pushers_umask(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    sha = repo.commit()
    with lock_holder(repo.db):
        pushed = subprocess.run(
            ["git", "push", "origin", "main"], cwd=repo.work, env={**repo.env, "DB_PASS": PASSWORD},
            capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0),
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        [path] = record_paths(repo.spool)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(repo.spool.stat().st_mode & 0o777) == "0o700"
        pid = read_record(path).confirmer_pid

        def confirmer_args() -> list[bytes] | None:  # once the hook's child has exec'd
            found = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            return found if b"tracker.confirm" in found else None

        args = wait_until(confirmer_args)
        assert args[-2:] == [str(path).encode(), b""]  # type: ignore[index]  # the path only
        assert PASSWORD.encode() not in path.read_bytes()
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    for file in repo.log_dir.rglob("*"):
        if file.is_file():
            assert file.stat().st_mode & 0o077 == 0, file
            assert PASSWORD.encode() not in file.read_bytes(), file


# -- pushes racing from several clones --------------------------------------------------------


def push_until_accepted(
    clone: Repo, sim: SimulatedPlatform, attempts: list[tuple[str, bool]]
) -> None:
    """Commit, then push main; on a rejection pull --rebase and push again (as agents do).

    `attempts` gets the pushes the hook saw: git refuses a push whose remote tip it has and
    that is not an ancestor ("non-fast-forward") before it runs the pre-push hook, and such a
    tip is here once a confirmer fetched it to check an earlier push."""
    clone.commit(f"change from {clone.work.name}")
    for _ in range(20):
        sha = clone.git("rev-parse", "HEAD").stdout.strip()
        done = clone.push("origin", "main")
        if "(non-fast-forward)" not in done.stderr:  # else refused by git itself: no hook ran
            attempts.append((sha, done.returncode == 0))
        if done.returncode == 0:
            sim.add_deployment(
                sha, pending_build_s=0.2, build_s=0.4, pending_deploy_s=0.1, deploy_s=0.4
            )
            return
        clone.git("pull", "-q", "--rebase", "origin", "main")
    raise AssertionError(f"{clone.work.name} could not push in 20 attempts")


def test_pushes_racing_from_two_clones_are_each_recorded_once_with_one_outcome(
    tmp_path: Path,
) -> None:
    import threading

    from tests.support.gitrepo import git

    db = tmp_path / "shared-log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        first = make_repo(tmp_path, "clone0")
        env = sim_env(sim, db)
        env.update({k: v for k, v in first.env.items() if k.startswith("GIT_")})
        clones = [Repo(first.work, first.remote, env)]
        git(tmp_path, "clone", "-q", str(first.remote), str(tmp_path / "clone1"), env=env)
        clones.append(Repo(tmp_path / "clone1", first.remote, env))
        for clone in clones:
            install(clone.work, python=tracker_python())
        attempts: list[tuple[str, bool]] = []

        def agent(clone: Repo) -> None:
            for _ in range(5):
                push_until_accepted(clone, sim, attempts)

        threads = [threading.Thread(target=agent, args=(c,)) for c in clones]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        accepted = [sha for sha, ok in attempts if ok]
        assert len(accepted) == 10

        def all_decided() -> bool:
            with SQLiteLog(db) as store:
                rows = [store.deployment(sha) for sha, _ in attempts]
            return all(row is not None and row.terminal for row in rows)

        wait_until(all_decided, timeout=60)
        spool = db.parent / "spool"
        wait_until(lambda: not record_paths(spool))
        for sha, ok in attempts:
            types = event_types(db, sha)
            assert types.count("PushRecorded") == 1, (sha, types)
            verdicts = [t for t in types if t in ("PushConfirmed", "PushRejected")]
            assert verdicts == (["PushConfirmed"] if ok else ["PushRejected"]), (sha, types)
            outcomes = [t for t in types if t in OUTCOMES]
            assert len(outcomes) == (1 if ok else 0), (sha, types)
        wait_until(lambda: not any(monitor_pids_alive(db)))
        with SQLiteLog(db) as store:
            final = [store.deployment(sha) for sha in accepted]
        # Each accepted push went live, itself or inside a newer commit that did.
        assert [exit_code_of(r.state, r.superseded_went_live) for r in final if r] == [0] * 10
        assert logged_api_calls(db) == sim.api_requests
        assert not [r for r in sim.requests if r.fault]
        assert sim.over_limit == 0  # no request was refused by the 250/min limit
        arrivals = [r.at for r in sim.requests]
        assert arrivals == sorted(arrivals) and arrivals[0] > 0
    assert_consistent(db)


def monitor_pids_alive(db: Path) -> list[int]:
    from tracker.procs import monitor_alive

    with SQLiteLog(db) as store:
        pids = [int(e.data["pid"]) for e in store.events() if e.type == "MonitorStarted"]
    return [pid for pid in pids if monitor_alive(pid, os.uname().nodename)]


def test_a_list_scan_cut_short_by_a_fault_is_finished_by_the_next_poll(
    store: SQLiteLog, sim: SimulatedPlatform, clock: FakeClock
) -> None:
    """Pages 1-2 seen, page 3 answered 429: the next poll must not stop at the seen pages."""
    sha = "4" * 40
    sim.add_deployment(sha, build_s=60, deploy_s=60)
    for n in range(45):  # newer deployments push ours to page 3
        sim.add_deployment(f"{n + 1:040x}", appear_after_s=1, outcome="canceled", build_s=1)
    clock.advance(30)
    sim.inject("429", times=1, after=2, retry_after=5)
    settings = do_settings(sim, TRACKER_MAX_WAIT="300")
    assert run_monitor(store, sha, settings, clock) == "succeeded"
    assert logged_api_calls(store.path) == sim.api_requests


def test_superseded_by_a_push_from_another_clone_that_went_live_is_exit_0(
    tmp_path: Path,
) -> None:
    from tests.support.gitrepo import git

    db = tmp_path / "shared-log" / "events.db"
    with SimulatedPlatform(token=TOKEN, supersede_on="created") as sim:
        first = make_repo(tmp_path, "clone0")
        env = sim_env(sim, db)
        env.update({k: v for k, v in first.env.items() if k.startswith("GIT_")})
        ours_clone = Repo(first.work, first.remote, env)
        git(tmp_path, "clone", "-q", str(first.remote), str(tmp_path / "clone1"), env=env)
        theirs_clone = Repo(tmp_path / "clone1", first.remote, env)
        install(ours_clone.work, python=tracker_python())
        ours = ours_clone.commit("ours")
        assert ours_clone.push("origin", "main").returncode == 0
        sim.add_deployment(ours, pending_build_s=0.5, build_s=2, deploy_s=2)
        theirs_clone.git("pull", "-q", "origin", "main")
        theirs = theirs_clone.commit("theirs, on top of ours")
        theirs_clone.git("push", "-q", "origin", "main")  # no hook in this clone
        sim.add_deployment(theirs, pending_build_s=0.1, build_s=0.3, deploy_s=0.3)

        def decided() -> bool:
            with SQLiteLog(db) as store:
                row = store.deployment(ours)
            return row is not None and row.terminal

        wait_until(decided, timeout=30)
        status = cli("status", ours, "--json", cwd=ours_clone.work, env=env)
    assert json.loads(status.stdout)["superseded_by"] == theirs
    assert status.returncode == 0, status.stdout
