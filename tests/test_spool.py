"""The spool record format and `take_in`, which every reader of the log calls first."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo
from tracker.log.sqlite import SQLiteLog
from tracker.push.intake import take_in
from tracker.push.spool import PushRecord, record_paths, spool_dir, write_record


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


def record_for(repo: Repo, sha: str, **changes: object) -> PushRecord:
    base = PushRecord(
        push_id="1800000000.5-42-1", sha=sha, branch="main", remote="origin",
        url=str(repo.remote), git_pid=dead_pid(), pushed_at=1_800_000_000.5, source="hook",
        common=str(repo.common), db=str(repo.db), toplevel=str(repo.work),
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def pushed(repo: Repo, ref: str = "HEAD:main") -> str:
    """A commit pushed without the hook (so only our records describe it)."""
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", "origin", ref)
    return sha


def kinds(store: SQLiteLog, sha: str) -> list[str]:
    return [e.type for e in store.events(stream=sha)]


def decided(repo: Repo, sha: str) -> list[str]:
    """Wait until the confirmer a reader handed the record to has decided it; the kinds."""
    from tests.support.gitrepo import wait_until

    def done() -> list[str] | None:
        with SQLiteLog(repo.db) as store:
            found = kinds(store, sha)
        return found if len(found) > 1 and not record_paths(repo.spool) else None

    return wait_until(done, timeout=120)  # type: ignore[return-value]


def test_a_record_round_trips_through_its_text_form(repo: Repo) -> None:
    record = record_for(repo, "a" * 40, confirmer_pid=123)
    assert PushRecord.parse(record.format()) == record
    assert PushRecord.parse(record.format() + "sha=" + "b" * 40 + "\n") == record  # first wins


@pytest.mark.parametrize(
    "change",
    [
        {"sha": "abc"},
        {"sha": "A" * 40},
        {"remote": "--upload-pack=evil"},
        {"branch": "main..x"},
        {"remote": "", "url": "-oops"},
        {"common": "relative/.git"},
        {"push_id": "../escape"},
    ],
)
def test_malformed_records_are_refused(repo: Repo, change: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        PushRecord.parse(replace(record_for(repo, "a" * 40), **change).format())  # type: ignore[arg-type]


def test_records_are_written_atomically_and_owner_only(repo: Repo, tmp_path: Path) -> None:
    path = write_record(tmp_path / "spool", record_for(repo, "a" * 40))
    assert path.name == "1800000000.5-42-1.push"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (tmp_path / "spool" / ".tmp.x").write_text("half written")
    (tmp_path / "spool" / "y.push.bad").write_text("quarantined")
    assert record_paths(tmp_path / "spool") == [path]
    assert record_paths(tmp_path / "missing") == []


def test_take_in_with_an_empty_spool_touches_nothing(tmp_path: Path) -> None:
    store = SQLiteLog(tmp_path / "log" / "events.db")
    assert take_in(store, tmp_path / "log") == 0
    assert not (tmp_path / "log").exists()  # not even the log was opened


def test_take_in_records_and_decides_an_orphaned_push(repo: Repo) -> None:
    sha = pushed(repo)
    write_record(repo.spool, record_for(repo, sha))
    with SQLiteLog(repo.db) as store:
        assert take_in(store, repo.log_dir) == 2
        assert kinds(store, sha) == ["PushRecorded", "PushConfirmed"]
        assert record_paths(repo.spool) == []
        assert take_in(store, repo.log_dir) == 0
        recorded = store.events(stream=sha)[0].data
    assert recorded["push_id"] == "1800000000.5-42-1" and recorded["source"] == "hook"
    assert recorded["pushed_by"] == "pusher@example.com"
    assert recorded["pushed_at"] == "2027-01-15T08:00:00.500Z"


def test_take_in_hands_a_push_only_the_remote_can_decide_to_a_confirmer(repo: Repo) -> None:
    sha = repo.commit("never pushed")
    write_record(repo.spool, record_for(repo, sha))
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)  # no network here: the tracking ref does not have it
        assert kinds(store, sha) == ["PushRecorded"]
    assert decided(repo, sha) == ["PushRecorded", "PushRejected"]  # the confirmer asked
    with SQLiteLog(repo.db) as store:
        assert store.deployment(sha).state == "rejected"  # type: ignore[union-attr]
        assert "git exited" in store.events(stream=sha)[1].data["reason"]


@pytest.mark.parametrize("who", ["git", "confirmer"])
def test_take_in_leaves_the_deciding_to_a_live_git_or_confirmer(repo: Repo, who: str) -> None:
    sha = pushed(repo)
    if who == "git":  # a git process that waits on its stdin
        argv = ["git", "cat-file", "--batch"]
    else:  # anything whose command line says it is the confirmer
        argv = [sys.executable, "-c", "import time; time.sleep(60)", "tracker.confirm"]
    alive = subprocess.Popen(argv, stdin=subprocess.PIPE, cwd=repo.work)
    try:
        field = {"git_pid": alive.pid} if who == "git" else {"confirmer_pid": alive.pid}
        write_record(repo.spool, record_for(repo, sha, **field))
        with SQLiteLog(repo.db) as store:
            assert take_in(store, repo.log_dir) == 1
            assert kinds(store, sha) == ["PushRecorded"] and record_paths(repo.spool)
    finally:
        alive.kill()
        alive.wait()
    with SQLiteLog(repo.db) as store:
        assert take_in(store, repo.log_dir) == 1  # gone now: decided
        assert kinds(store, sha) == ["PushRecorded", "PushConfirmed"]


def test_take_in_does_not_race_a_confirmer_holding_the_record(repo: Repo) -> None:
    sha = pushed(repo)
    path = write_record(repo.spool, record_for(repo, sha))
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with SQLiteLog(repo.db) as store:
            assert take_in(store, repo.log_dir) == 1
            assert kinds(store, sha) == ["PushRecorded"] and path.exists()
    finally:
        os.close(fd)


def test_take_in_leaves_the_spool_alone_when_the_lock_is_held(repo: Repo) -> None:
    sha = pushed(repo)
    path = write_record(repo.spool, record_for(repo, sha))
    with SQLiteLog(repo.db, lock_timeout=0.1) as store:
        store.last_seq()
        fd = os.open(store.lock_path, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            assert take_in(store, repo.log_dir) == 0
        finally:
            os.close(fd)
        assert path.exists() and kinds(store, sha) == []


def test_take_in_sets_aside_garbage_and_skips_records_of_another_log(repo: Repo) -> None:
    sha = pushed(repo)
    spool_dir(repo.log_dir).mkdir(parents=True)
    (repo.spool / "junk.push").write_text("not a record")
    other = write_record(repo.spool, record_for(repo, sha, db="/elsewhere/events.db"))
    with SQLiteLog(repo.db) as store:
        assert take_in(store, repo.log_dir) == 0
    assert (repo.spool / "junk.push.bad").exists() and other.exists()


def test_an_unreachable_url_push_stays_pending_with_a_confirmer_on_it(
    repo: Repo, tmp_path: Path
) -> None:
    from tracker.procs import confirmer_alive
    from tracker.push.spool import read_record

    sha = pushed(repo)
    gone = str(tmp_path / "no-such-remote.git")
    write_record(repo.spool, record_for(repo, sha, remote="", url=gone))
    with SQLiteLog(repo.db) as store:
        assert take_in(store, repo.log_dir) == 1
        [path] = record_paths(repo.spool)  # cannot tell yet: kept, and handed over
        pid = read_record(path).confirmer_pid
        assert pid is not None and confirmer_alive(pid)
        assert take_in(store, repo.log_dir) == 0  # the next reader leaves it to that confirmer
        assert store.deployment(sha).state == "pending"  # type: ignore[union-attr]
    os.kill(pid, 9)


def test_a_long_lived_tracker_takes_in_records_spooled_after_its_first_call(repo: Repo) -> None:
    """Every read of the Python API takes in the spool, not only the first one."""
    from tracker.api import Tracker
    from tracker.config import load_settings

    sha = pushed(repo)
    with Tracker(repo.db, repo=repo.work, settings=load_settings(None, env={})) as tracker:
        assert tracker.status(sha).exit_code == 3
        write_record(repo.spool, record_for(repo, sha))
        assert tracker.status(sha).state == "pending"
        assert [e.type for e in tracker.events(sha)] == ["PushRecorded", "PushConfirmed"]


def test_a_push_recorded_by_hand_names_the_same_pusher_as_the_hook(repo: Repo) -> None:
    from tracker.api import Tracker

    sha = pushed(repo)
    write_record(repo.spool, record_for(repo, sha))
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
        by_hook = store.events(stream=sha)[0].data["pushed_by"]
    later = repo.commit("by hand")
    with Tracker(repo.db, repo=repo.work) as tracker:
        tracker.record_push(later, "main", monitor=False)
    with SQLiteLog(repo.db) as store:
        by_hand = store.events(stream=later)[0].data["pushed_by"]
    assert by_hook == by_hand == "pusher@example.com"


# -- a push is confirmed when its commit is on the remote branch, however it got there ---------


def other_clone(repo: Repo, tmp_path: Path) -> Repo:
    """A second clone of the same remote (its pushes are not in `repo`'s objects)."""
    from tests.support.gitrepo import git

    work = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo.remote), str(work), env=repo.env)
    return Repo(work, repo.remote, repo.env)


def refs_of(repo: Repo) -> str:
    return repo.git("for-each-ref", "--format=%(refname) %(objectname)").stdout


def test_a_push_by_url_that_other_clones_pushed_over_is_confirmed(
    repo: Repo, tmp_path: Path
) -> None:
    sha = repo.commit()
    repo.git("push", "-q", "--no-verify", str(repo.remote), "HEAD:main")
    other = other_clone(repo, tmp_path)
    for n in range(3):
        other.commit(f"on top {n}")
        other.git("push", "-q", "origin", "main")
    tip = other.remote_head()
    assert repo.git("cat-file", "-e", tip, check=False).returncode != 0  # not here yet
    before = refs_of(repo)
    write_record(repo.spool, record_for(repo, sha, remote="", url=str(repo.remote)))
    with SQLiteLog(repo.db) as store:
        assert take_in(store, repo.log_dir) == 1
    assert decided(repo, sha) == ["PushRecorded", "PushConfirmed"]
    with SQLiteLog(repo.db) as store:
        [_, verdict] = store.events(stream=sha)
    assert verdict.data["reason"] == f"the pushed commit is in the remote's main (now {tip[:12]})"
    assert refs_of(repo) == before  # the tip was fetched without moving any ref
    assert not (repo.common / "FETCH_HEAD").exists()


def test_a_push_by_url_whose_commit_never_reached_the_branch_is_rejected(
    repo: Repo, tmp_path: Path
) -> None:
    other = other_clone(repo, tmp_path)
    other.commit("someone else was first")
    other.git("push", "-q", "origin", "main")
    sha = repo.commit("refused: not a fast-forward")
    assert repo.git("push", "--no-verify", str(repo.remote), "HEAD:main", check=False).returncode
    write_record(repo.spool, record_for(repo, sha, remote="", url=str(repo.remote)))
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
    assert decided(repo, sha) == ["PushRecorded", "PushRejected"]
    with SQLiteLog(repo.db) as store:
        assert "lacks it" in store.events(stream=sha)[1].data["reason"]


@pytest.mark.parametrize("evidence", ["reflog", "tracking ref", "remote"])
def test_a_push_by_name_followed_by_25_more_is_confirmed(repo: Repo, evidence: str) -> None:
    sha = pushed(repo)
    for _ in range(25):
        pushed(repo)
    if evidence != "reflog":  # no reflog: the tracking ref's history, then the remote's
        (repo.common / "logs" / "refs" / "remotes" / "origin" / "main").unlink()
    if evidence == "remote":
        repo.git("update-ref", "-d", "refs/remotes/origin/main")
    write_record(repo.spool, record_for(repo, sha, pushed_at=time.time() - 5))
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
    assert decided(repo, sha) == ["PushRecorded", "PushConfirmed"]  # the remote: by a confirmer
    with SQLiteLog(repo.db) as store:
        reason = store.events(stream=sha)[1].data["reason"]
    assert {
        "reflog": "the reflog of refs/remotes/origin/main records the push",
        "tracking ref": "the pushed commit is in refs/remotes/origin/main",
        "remote": "the pushed commit is in the remote's main (now ",
    }[evidence] in reason


def test_the_reflog_is_read_back_only_to_the_push(repo: Repo) -> None:
    """An old `update by push` of the same commit (before this push began) is not evidence."""
    sha = pushed(repo)
    later = time.time() + 3600
    record = record_for(repo, sha, pushed_at=later)
    from tracker.push.settle import pushed_per_reflog

    assert pushed_per_reflog(record_for(repo, sha, pushed_at=time.time()))
    assert not pushed_per_reflog(record)
