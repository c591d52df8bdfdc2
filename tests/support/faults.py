"""Helpers of the fault-injection tests (tests/test_faults_*.py): the CLI as a child, the
writer helper process, a stuck lock, and reading back what the log holds."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.gitrepo import Repo, wait_until
from tests.support.simulated import SIM_TOKEN
from tracker.log.sqlite import SQLiteLog
from tracker.push.spool import record_paths
from tracker.sim import SimulatedPlatform

ROOT = Path(__file__).resolve().parent.parent.parent
HELPER = Path(__file__).resolve().parent / "fault_writer.py"
TOKEN = SIM_TOKEN
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


def sim_env(sim: SimulatedPlatform, db: Path, **extra: str) -> dict[str, str]:
    """The environment of a tracker process watching `sim` with fast polling."""
    from tests.support.gitrepo import base_env

    return base_env(
        TRACKER_DB=str(db), DIGITALOCEAN_TOKEN=TOKEN, TRACKER_DO_APP_ID=sim.app_id,
        TRACKER_DO_API_URL=sim.base_url, TRACKER_POLL_POLICY="stepped",
        TRACKER_POLL_INITIAL="0.2", TRACKER_POLL_LONG="0.2", TRACKER_MAX_WAIT="60", **extra,
    )  # fmt: skip


def logged_api_calls(db: Path) -> int:
    with SQLiteLog(db) as store:
        return sum(int(e.data.get("api_calls") or 0) for e in store.events())


OUTCOMES = {
    "DeploymentSucceeded",
    "DeploymentFailed",
    "DeploymentSuperseded",
    "MonitorTimedOut",
}
