"""The pre-push hook end to end: real git, real bare remotes, the real detached confirmer."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, git, make_repo, set_hook, tracker_python, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.procs import confirmer_alive
from tracker.push.install import install
from tracker.push.intake import take_in
from tracker.push.spool import read_record, record_paths

VERDICTS = {"PushConfirmed", "PushRejected"}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    return made


def state(repo: Repo, sha: str) -> str | None:
    """The commit's state as a reader sees it (spool taken in first)."""
    with SQLiteLog(repo.db) as store:
        take_in(store, repo.log_dir)
        row = store.deployment(sha)
    return row.state if row else None


def types(repo: Repo, sha: str) -> list[str]:
    """Event types of the commit's stream, without taking the spool in."""
    if not repo.db.exists():
        return []
    with SQLiteLog(repo.db) as store:
        return [e.type for e in store.events(stream=sha)]


def settled(repo: Repo, sha: str) -> list[str]:
    """Wait until the confirmer has written a verdict and removed the spool record."""
    wait_until(lambda: VERDICTS & set(types(repo, sha)) and not record_paths(repo.spool))
    return types(repo, sha)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tracker:")]


def test_push_to_main_is_pending_at_once_then_confirmed(repo: Repo) -> None:
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode == 0, done.stderr
    assert state(repo, sha) == "pending"
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    assert repo.remote_head() == sha
    assert warnings(done.stderr) == []


@pytest.mark.parametrize("how", ["HEAD:main", "url", "second-remote"])
def test_other_ways_of_pushing_main_are_recorded_once_and_confirmed(
    repo: Repo, tmp_path: Path, how: str
) -> None:
    sha = repo.commit()
    if how == "HEAD:main":
        done = repo.push("origin", "HEAD:main")
        target = repo.remote
    elif how == "url":
        done = repo.push(str(repo.remote), "HEAD:main")
        target = repo.remote
    else:
        target = tmp_path / "backup.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(target))
        repo.git("remote", "add", "backup", str(target))
        done = repo.push("backup", "HEAD:main")
    assert done.returncode == 0, done.stderr
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    assert git(target, "rev-parse", "main").stdout.strip() == sha
    with SQLiteLog(repo.db) as store:
        pushed = [e.data for e in store.events(stream=sha) if e.type == "PushRecorded"]
    assert pushed[0]["remote"] == (
        "" if how == "url" else "backup" if how != "HEAD:main" else "origin"
    )
    assert pushed[0]["remote_url"] == str(target)


def test_push_from_a_linked_worktree_lands_in_the_common_dir(repo: Repo, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    repo.git("worktree", "add", "-q", "-b", "topic", str(tree))
    sha = repo.commit("from the worktree", cwd=tree)
    done = repo.push("origin", "HEAD:main", cwd=tree)
    assert done.returncode == 0, done.stderr
    assert repo.db.is_relative_to(repo.common)
    assert state(repo, sha) == "pending"
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]


@pytest.mark.parametrize("how", ["feature", "up-to-date", "--dry-run", "-n"])
def test_pushes_that_deploy_nothing_record_nothing(repo: Repo, how: str) -> None:
    sha = repo.commit()
    if how == "feature":
        done = repo.push("origin", "HEAD:feature")
    elif how == "up-to-date":
        repo.git("push", "-q", "--no-verify", "origin", "main")
        done = repo.push("origin", "main")
    else:
        done = repo.push(how, "origin", "main")
    assert done.returncode == 0, done.stderr
    assert record_paths(repo.spool) == []  # the hook writes synchronously: nothing was spooled
    assert state(repo, sha) is None


def test_a_push_the_remote_refuses_is_rejected(repo: Repo) -> None:
    set_hook(repo.remote / "hooks", "pre-receive", "echo no deploys today >&2; exit 1")
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode != 0
    assert settled(repo, sha) == ["PushRecorded", "PushRejected"]
    assert state(repo, sha) == "rejected"


def test_a_non_fast_forward_push_is_rejected(repo: Repo, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo.remote), str(other), env=repo.env)
    Repo(other, repo.remote, repo.env).commit("someone else was first")
    git(other, "push", "-q", "--no-verify", "origin", "main", env=repo.env)
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode != 0 and "fetch first" in done.stderr
    assert settled(repo, sha) == ["PushRecorded", "PushRejected"]
    with SQLiteLog(repo.db) as store:
        assert store.deployment(sha).state == "rejected"  # type: ignore[union-attr]


@contextlib.contextmanager
def lock_held(repo: Repo) -> Iterator[None]:
    """Hold the log's lock as another tracker process would."""
    SQLiteLog(repo.db).last_seq()  # create and migrate the log first
    fd = os.open(f"{repo.db}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_push_returns_while_the_detached_confirmer_lives_on(repo: Repo) -> None:
    sha = repo.commit()
    with lock_held(repo):
        # Pipes, as capture_output=True: a child holding them would block communicate() until
        # the timeout. git runs in a process group of its own, which we then kill outright.
        push = subprocess.Popen(
            ["git", "push", "origin", "main"], cwd=repo.work, env=repo.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        push.communicate(timeout=60)
        assert push.returncode == 0
        [path] = record_paths(repo.spool)
        child = read_record(path).confirmer_pid
        assert child
        # The hook forks, redirects and execs the confirmer, which calls setsid: under load
        # that may still be under way when git returns.
        wait_until(lambda: detached_confirmer(child))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(push.pid, signal.SIGKILL)
        assert confirmer_alive(child)
        assert "PushRecorded" not in types(repo, sha)  # the lock is ours: nothing written yet
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]


def detached_confirmer(pid: int) -> bool:
    """Whether `pid` runs the confirmer in a session of its own, with none of git's pipes."""
    if b"tracker.confirm" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        return False
    fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)]
    return os.getsid(pid) == pid and fds == ["/dev/null"] * 3


def test_the_push_succeeds_when_the_interpreter_is_missing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    install(repo.work, python=str(tmp_path / "gone" / "python"))
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode == 0
    assert len(warnings(done.stderr)) == 1 and "interpreter" in done.stderr
    [path] = record_paths(repo.spool)  # the push is durable all the same
    assert read_record(path).confirmer_pid is None
    assert state(repo, sha) == "pending"  # a reader takes it in and decides it itself
    assert types(repo, sha) == ["PushRecorded", "PushConfirmed"]
    assert record_paths(repo.spool) == []


def test_the_push_succeeds_when_the_interpreter_lacks_the_tracker(tmp_path: Path) -> None:
    bare = shutil.which("python3", path="/usr/bin:/bin")
    probe = subprocess.run([bare or "false", "-I", "-c", "import tracker"], capture_output=True)
    if bare is None or probe.returncode == 0:
        pytest.skip("needs a system python3 without the tracker package")
    repo = make_repo(tmp_path)
    install(repo.work, python=bare)
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode == 0
    assert warnings(done.stderr) == [
        f"tracker: the push is spooled but not confirmed: '{bare}' no longer has the tracker"
        " package (run `tracker hooks install` again)"
    ]
    [path] = record_paths(repo.spool)
    assert read_record(path).confirmer_pid is None  # no confirmer that could only fail
    assert state(repo, sha) == "pending"
    assert types(repo, sha) == ["PushRecorded", "PushConfirmed"]


def test_the_push_succeeds_when_the_log_is_corrupt(repo: Repo) -> None:
    repo.log_dir.mkdir(parents=True)
    repo.db.write_bytes(b"this is not a database" * 100)
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode == 0 and warnings(done.stderr) == []
    log = repo.log_dir / "confirm.log"
    wait_until(lambda: log.exists() and "stays spooled" in log.read_text())
    assert "corrupt" in log.read_text()
    [path] = record_paths(repo.spool)  # kept for when the log is repaired
    # A reader leaves a record to its confirmer while that runs (it may still be exiting).
    wait_until(lambda: not confirmer_alive(read_record(path).confirmer_pid))
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    repo.db.unlink()
    assert state(repo, sha) == "pending"
    assert types(repo, sha) == ["PushRecorded", "PushConfirmed"]


def test_the_push_succeeds_when_the_log_directory_is_read_only(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits: use a directory nobody can
        db = "/proc/self/tracker-test/events.db"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        db = str(tmp_path / "ro" / "events.db")
    repo = make_repo(tmp_path, TRACKER_DB=db)
    install(repo.work, python=tracker_python())
    repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode == 0
    assert len(warnings(done.stderr)) == 1 and "cannot create" in done.stderr


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


def test_a_read_only_spool_is_one_warning_line_with_the_right_advice(repo: Repo) -> None:
    """A read-only .git (finding 15): one line from the hook, none from sh, and the push goes."""
    repo.spool.mkdir(parents=True, mode=0o700)
    sha = repo.commit()
    with read_only(repo.spool):
        done = repo.push("origin", "main")
    assert done.returncode == 0 and repo.remote_head() == sha
    ours = [line for line in done.stderr.splitlines() if not line.startswith(("To ", "   "))]
    assert ours == [
        f"tracker: not recording the push: cannot write to {repo.spool} (check its owner and"
        f" permissions: ls -ld {repo.spool})"
    ], done.stderr
    assert record_paths(repo.spool) == []


def test_the_spool_keeps_a_push_while_the_lock_is_held_and_the_log_gets_it_after(
    repo: Repo,
) -> None:
    sha = repo.commit()
    with lock_held(repo):
        done = repo.push("origin", "main")
        assert done.returncode == 0 and warnings(done.stderr) == []
        with SQLiteLog(repo.db, lock_timeout=0.2) as store:
            assert take_in(store, repo.log_dir) == 0  # a reader gives up and leaves the spool
        assert len(record_paths(repo.spool)) == 1
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]


def test_credentials_in_a_remote_url_reach_neither_the_spool_nor_the_log(
    tmp_path: Path,
) -> None:
    fake_ssh = set_hook(tmp_path, "fake-ssh", 'for last; do :; done\nexec sh -c "$last"')
    repo = make_repo(tmp_path)
    repo.git("config", "core.sshCommand", str(fake_ssh))
    repo.git("config", "ssh.variant", "simple")
    url = f"ssh://deployer:s3cr3t-t0ken@localhost{repo.remote}"
    repo.git("remote", "set-url", "origin", url)
    install(repo.work, python=tracker_python())
    sha = repo.commit()
    with lock_held(repo):
        assert repo.push("origin", "main").returncode == 0
        [path] = record_paths(repo.spool)
        assert "s3cr3t" not in path.read_text()
        child = read_record(path).confirmer_pid
        # (until the hook's fork execs it, the child has the hook's own arguments, which git
        # gives with the URL as configured)
        wait_until(lambda: b"tracker.confirm" in Path(f"/proc/{child}/cmdline").read_bytes())
        assert b"s3cr3t" not in Path(f"/proc/{child}/cmdline").read_bytes()
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    other = repo.commit()
    assert repo.push(url, "HEAD:main").returncode == 0  # by URL: checked with ls-remote
    assert settled(repo, other) == ["PushRecorded", "PushConfirmed"]
    for file in repo.log_dir.rglob("*"):
        if file.is_file():
            assert b"s3cr3t" not in file.read_bytes(), file
    with SQLiteLog(repo.db) as store:
        urls = {e.data["remote_url"] for e in store.events() if e.type == "PushRecorded"}
    assert urls == {f"ssh://localhost{repo.remote}"}


def test_a_chained_hook_gets_the_stdin_and_can_veto_the_push(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    seen = tmp_path / "seen"
    hooks = repo.common / "hooks"
    set_hook(hooks, "pre-push", f'cat >>"{seen}"\n[ ! -e "{tmp_path}/veto" ]')
    lines = install(repo.work, python=tracker_python())
    assert (hooks / "pre-push.tracker-chained").exists() and "kept" in lines[0]
    sha = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    assert seen.read_text().split() == [
        "refs/heads/main",
        sha,
        "refs/heads/main",
        sha and seen.read_text().split()[3],
    ]
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    (tmp_path / "veto").touch()
    vetoed = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode != 0 and repo.remote_head() == sha
    assert record_paths(repo.spool) == [] and state(repo, vetoed) is None


def test_husky_style_sh_e_runs_our_line_and_the_rest_of_the_file(tmp_path: Path) -> None:
    """husky 9 runs `.husky/pre-push` with `sh -e` through a stub in `.husky/_` (no npm here)."""
    repo = make_repo(tmp_path)
    stub = 'exec sh -e "$(dirname "$0")/../$(basename "$0")" "$@"'
    set_hook(repo.work / ".husky" / "_", "pre-push", stub)
    repo.git("config", "core.hooksPath", ".husky/_")
    later = tmp_path / "later"
    (repo.work / ".husky" / "pre-push").write_text(f'cat >"{later}"\nfalse\n')
    install(repo.work, husky=True, python=str(tmp_path / "no" / "python"))
    sha = repo.commit()
    done = repo.push("origin", "main")
    assert done.returncode != 0  # the user's own `false` still runs, and still fails the push
    assert later.read_text().startswith("refs/heads/main ")  # ... after getting git's stdin
    assert len(warnings(done.stderr)) == 1
    # spooled before the veto; a reader hands it to a confirmer, which asks the remote
    wait_until(lambda: state(repo, sha) == "rejected")
    (repo.work / ".husky" / "pre-push").write_text(f'cat >"{later}"\n')
    install(repo.work, husky=True, python=tracker_python())
    assert repo.push("origin", "main").returncode == 0
    assert settled(repo, sha)[-1] == "PushConfirmed"
