"""`tracker.procs`, the one module that inspects, detaches or spawns processes: real processes,
real /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.gitrepo import base_env, git, tracker_python, wait_until
from tracker.procs import (
    confirmer_alive,
    host,
    is_dry_run,
    monitor_alive,
    process_alive,
    real_git_pid,
)


@contextmanager
def running(*argv: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_running_process_is_alive_and_known_by_its_name() -> None:
    with running("sleep", "60") as child:
        assert process_alive(child.pid) and process_alive(child.pid, "sleep")
        assert not process_alive(child.pid, "git")


@pytest.mark.parametrize("pid", [None, 0, 1, -5])
def test_no_pid_init_or_nonsense_is_not_alive(pid: int | None) -> None:
    assert not process_alive(pid)


def test_an_exited_process_is_not_alive_nor_is_a_zombie() -> None:
    child = subprocess.Popen(["true"])
    stat = Path(f"/proc/{child.pid}/stat")
    wait_until(lambda: not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
    assert not process_alive(child.pid)  # exited, not yet reaped
    child.wait()
    assert not process_alive(child.pid)


def test_a_confirmer_is_known_by_its_command_line() -> None:
    probe = "import time; time.sleep(60)"
    with running(sys.executable, "-c", probe, "-m", "tracker.confirm") as confirmer:
        wait_until(
            lambda: b"tracker.confirm" in Path(f"/proc/{confirmer.pid}/cmdline").read_bytes()
        )
        assert confirmer_alive(confirmer.pid)
    assert not confirmer_alive(confirmer.pid)
    with running("sleep", "60") as other:  # a pid reused by something else
        assert not confirmer_alive(other.pid)


def test_a_monitor_counts_as_alive_only_on_this_host() -> None:
    assert monitor_alive(os.getpid(), host())
    assert not monitor_alive(os.getpid(), host() + "-elsewhere")
    assert not monitor_alive(None, host())


def test_the_git_a_hook_runs_under_is_found_up_the_process_tree(tmp_path: Path) -> None:
    """What the hook does: walk up from its parent (a shell git started) to git itself."""
    git(tmp_path, "init", "-q")
    probe = "import os; from tracker.procs import real_git_pid; print(real_git_pid(os.getppid()))"
    alias = f"!{tracker_python()} -I -c '{probe}' && true"
    push = subprocess.Popen(
        ["git", "-c", f"alias.probe={alias}", "probe"], cwd=tmp_path, env=base_env(),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, _ = push.communicate(timeout=60)
    assert int(out) == push.pid
    assert real_git_pid(os.getpid()) == os.getpid()  # no git above us: the pid it started from


@pytest.mark.parametrize(
    ("args", "dry"),
    [
        (["push", "origin", "main"], False),
        (["push", "-n", "origin", "main"], True),
        (["push", "--dry-run", "origin"], True),
        (["push", "-qn", "origin"], True),
        (["push", "--no-verify", "origin"], False),
        (["push", "--", "-n"], False),  # after `--`: a name, not an option
    ],
)
def test_a_dry_run_is_read_from_gits_command_line(args: list[str], dry: bool) -> None:
    with running("sh", "-c", "sleep 60; true", "git", *args) as child:
        wait_until(lambda: b"push" in Path(f"/proc/{child.pid}/cmdline").read_bytes())
        assert is_dry_run(child.pid) is dry
