"""The confirmer, `python -I -m tracker.confirm SPOOLFILE`, run as the hook runs it: a real
subprocess on a spool record of a real repository with a bare remote."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, base_env, make_repo, tracker_python
from tracker.clock import SYSTEM_CLOCK
from tracker.log.sqlite import SQLiteLog
from tracker.push.confirm import confirmed_in_log
from tracker.push.intake import take_in
from tracker.push.spool import PushRecord, record_paths, write_record
from tracker.sim.server import SimulatedPlatform

HEAVY = ("httpx", "pymysql", "cyclopts", "sqlite_utils", "rich")


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


def record_for(repo: Repo, sha: str, **changes: object) -> PushRecord:
    base = PushRecord(
        push_id=f"{time.time():.6f}-{os.getpid()}-1", sha=sha, branch="main", remote="origin",
        url=str(repo.remote), git_pid=dead_pid(), pushed_at=time.time(), source="hook",
        common=str(repo.common), db=str(repo.db), toplevel=str(repo.work),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def confirm(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the confirmer to its end, as the hook starts it (isolated mode, from `/`)."""
    return subprocess.run(
        [tracker_python(), "-I", *args, "-m", "tracker.confirm", str(path)],
        env=env or base_env(), cwd="/", capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def kinds(repo: Repo, sha: str) -> list[str]:
    with SQLiteLog(repo.db) as store:
        return [e.type for e in store.events(stream=sha)]


def test_a_push_that_reached_the_remote_is_recorded_confirmed_and_unspooled(repo: Repo) -> None:
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    path = write_record(repo.spool, record_for(repo, sha))
    done = confirm(path)
    assert done.returncode == 0, done.stderr
    assert kinds(repo, sha) == ["PushRecorded", "PushConfirmed"]
    assert not path.exists() and not record_paths(repo.spool)
    with SQLiteLog(repo.db) as store:
        row = store.deployment(sha)
    assert row is not None and row.state == "pending"  # no source configured: no monitor


def test_with_a_source_configured_the_confirmer_becomes_the_commits_monitor(repo: Repo) -> None:
    """The same process goes on as `tracker monitor SHA` (here refused by the platform, which
    the monitor records, so `status` can say why nothing watches the commit)."""
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    path = write_record(repo.spool, record_for(repo, sha))
    with SimulatedPlatform(token="the-right-token") as sim:
        env = base_env(
            DIGITALOCEAN_TOKEN="a-wrong-token", TRACKER_DO_APP_ID=sim.app_id,
            TRACKER_DO_API_URL=sim.base_url, TRACKER_POLL_POLICY="stepped",
            TRACKER_POLL_INITIAL="0.2",
        )  # fmt: skip
        done = confirm(path, env=env)
    assert done.returncode == 69, done.stdout + done.stderr  # the monitor's exit status
    found = kinds(repo, sha)
    assert found[:2] == ["PushRecorded", "PushConfirmed"]
    assert any(kind.startswith("Monitor") for kind in found[2:]), found
    with SQLiteLog(repo.db) as store:
        row = store.deployment(sha)
    assert row is not None and row.not_watched and "DIGITALOCEAN_TOKEN" in row.not_watched


def test_a_push_git_gave_up_on_is_rejected(repo: Repo) -> None:
    sha = repo.commit("never pushed")
    path = write_record(repo.spool, record_for(repo, sha))
    assert confirm(path).returncode == 0
    assert kinds(repo, sha) == ["PushRecorded", "PushRejected"]
    with SQLiteLog(repo.db) as store:
        [event] = [e for e in store.events(stream=sha) if e.type == "PushRejected"]
    assert "lacks it" in event.data["reason"]
    assert not path.exists()


def test_a_push_by_url_is_checked_against_the_remote_itself(repo: Repo) -> None:
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", str(repo.remote), "HEAD:main")  # no tracking ref moves
    path = write_record(repo.spool, record_for(repo, sha, remote=""))
    assert confirm(path).returncode == 0
    assert kinds(repo, sha) == ["PushRecorded", "PushConfirmed"]


def test_the_confirmers_path_imports_nothing_heavy(repo: Repo) -> None:
    """The hook's path stays light: a whole confirmation imports no network, database or
    command-line library (`-X importtime` lists every module imported)."""
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    path = write_record(repo.spool, record_for(repo, sha))
    done = confirm(path, "-X", "importtime")
    assert done.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "tracker.push.confirm" in imported and "tracker.procs" in imported
    assert not {m for m in imported if m.split(".")[0] in HEAVY}
    assert "tracker.cli.app" not in imported and "tracker.api" not in imported
    assert kinds(repo, sha) == ["PushRecorded", "PushConfirmed"]


def test_an_unreadable_record_is_one_line_in_the_confirm_log(repo: Repo) -> None:
    repo.spool.mkdir(parents=True, mode=0o700)
    path = repo.spool / "garbage.push"
    path.write_text("version=1\nsha=not-a-sha\n")
    done = confirm(path)
    assert done.returncode == 65 and done.stdout == "" and done.stderr == ""
    [line] = (repo.log_dir / "confirm.log").read_text().splitlines()
    assert "garbage.push: unreadable spool record" in line


def test_a_call_without_one_spool_file_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [tracker_python(), "-I", "-m", "tracker.confirm"],
        env=base_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 64 and "usage: python -I -m tracker.confirm SPOOLFILE" in done.stderr


def test_a_confirmer_finds_a_push_a_reader_settled_in_the_log(repo: Repo) -> None:
    """The confirmer that loses the race to a reader still knows the push was confirmed (and
    so starts its monitor)."""
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    record = record_for(repo, sha)
    write_record(repo.spool, record)
    assert not confirmed_in_log(record, SYSTEM_CLOCK)
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
    assert confirmed_in_log(record, SYSTEM_CLOCK)
    assert not confirmed_in_log(replace(record, push_id="another-push"), SYSTEM_CLOCK)


def test_a_record_a_reader_already_decided_leaves_the_confirmer_nothing_to_do(
    repo: Repo,
) -> None:
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", "HEAD:main")
    path = write_record(repo.spool, record_for(repo, sha))
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
    assert not path.exists()
    assert confirm(path).returncode == 0  # ... after waiting for the record to appear
    assert kinds(repo, sha) == ["PushRecorded", "PushConfirmed"]  # nothing twice
