"""Processes: the only code that inspects, detaches or spawns them.

Whether a pid still runs (and is what it claims to be), whether a push's confirmer or a
deployment's monitor is alive, how the confirmer is started and cut loose from git, and how a
monitor is started in the background.
Standard library only: the push hook's confirmer imports this.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

from tracker.gitutil import FULL_SHA, GIT_LOCAL_ENV, clean_env

_HAVE_PROC = os.path.isdir("/proc/self")


def process_alive(pid: int | None, comm: str | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, where /proc tells, its name is `comm`."""
    if not pid or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not _HAVE_PROC:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    name, state = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :][:1]
    return state not in ("Z", "X") and (comm is None or name == comm)


def confirmer_alive(pid: int | None) -> bool:
    """Whether the confirmer the hook started for a record still runs (or is about to: the
    hook's forked shell that has not yet exec'd it still has the hook's command line)."""
    if not process_alive(pid):
        return False
    if not _HAVE_PROC:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"tracker.confirm" in argv or b"pre-push" in argv


def host() -> str:
    """This machine's name, as monitors record where they run."""
    return socket.gethostname()


def monitor_alive(pid: int | None, on: str | None) -> bool:
    """Whether the monitor process `pid` on host `on` still runs (a zombie does not count)."""
    return on == host() and process_alive(pid)


def detach() -> None:
    """A session of our own, and no descriptor inherited from git beyond 0-2."""
    if os.getsid(0) != os.getpid():
        with contextlib.suppress(OSError):
            os.setsid()
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = list(range(3, 256))
    for fd in open_fds:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def spawn_confirmer(record_path: Path) -> int | None:
    """Start `python -I -m tracker.confirm` detached: no inherited fds, its own session."""
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCAL_ENV}
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-m", "tracker.confirm", str(record_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True, env=env, cwd="/",
        )  # fmt: skip
    except OSError:
        return None
    return child.pid


def exec_monitor(db: str, sha: str, *, cwd: str) -> OSError:
    """Replace this process by `python -I -m tracker monitor SHA --watch` on the log `db` (it
    joins the app's watcher, or becomes it when none runs), run from `cwd` (the pushed
    repository, for its settings); returns only why that failed."""
    env = clean_env()
    env["TRACKER_DB"] = db
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    argv = [sys.executable, "-I", "-m", "tracker", "monitor", sha, "--watch"]
    try:
        os.execve(sys.executable, argv, env)  # noqa: S606 (argv is ours, no shell)
    except OSError as exc:
        return exc


def real_git_pid(start: int) -> int:
    """Walk up /proc from `start` to the first `git` process (bounded); else `start`."""
    pid = start
    for _ in range(12):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        except OSError:
            break
        if stat[stat.find("(") + 1 : stat.rfind(")")] == "git":
            return pid
        pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if pid <= 1:
            break
    return start


def is_dry_run(git_pid: int) -> bool:
    """Whether git was started with `--dry-run`/`-n` (nothing is pushed then)."""
    try:
        args = Path(f"/proc/{git_pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    words = args.split("\0")
    after = words[words.index("push") + 1 :] if "push" in words else []
    for word in after:
        if word == "--":
            break
        if word == "--dry-run" or (word[:1] == "-" and word[:2] != "--" and "n" in word):
            return True
    return False


def spawn_detached(db_path: Path, sha: str, *, repo: Path | None = None) -> int:
    """Start `tracker monitor SHA --watch` fully detached: its own session, no inherited
    descriptors. It joins the app's watcher, or becomes it when none runs."""
    if not FULL_SHA.match(sha):
        raise ValueError(f"not a full SHA: {sha!r}")
    env = clean_env()
    env["TRACKER_DB"] = str(db_path)
    log = db_path.parent / "monitor.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "tracker", "monitor", sha, "--watch"],
            cwd=str(repo or db_path.parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            close_fds=True,
            start_new_session=True,
        )
    finally:
        os.close(fd)
    return child.pid
