"""Fixtures for real git repositories with bare remotes, shared by the test modules.

`make_repo(tmp)` gives a clone of a fresh bare remote with one commit on main pushed (before any
hook is installed); `tracker_python()` is an interpreter that imports *this* checkout's
`tracker` in isolated mode (`-I`), as the installed hook runs it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test Pusher",
    "GIT_AUTHOR_EMAIL": "pusher@example.com",
    "GIT_COMMITTER_NAME": "Test Pusher",
    "GIT_COMMITTER_EMAIL": "pusher@example.com",
}


def base_env(**extra: str) -> dict[str, str]:
    """os.environ without TRACKER_* and git's own variables, plus a fixed identity."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKER_", "GIT_", "PRE_COMMIT", "DIGITALOCEAN_", "DB_"))
    }
    env.update(GIT_ENV)
    env.update(extra)
    return env


def git(
    cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd`, output captured as text."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env or base_env(), capture_output=True, text=True,
        timeout=120, **kw,  # type: ignore[call-overload]
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done  # type: ignore[no-any-return]


@dataclass
class Repo:
    """A working clone (`work`) of a bare remote (`remote`)."""

    work: Path
    remote: Path
    env: dict[str, str]

    def git(self, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
        return git(self.work, *args, check=check, env=self.env, **kw)

    def commit(self, message: str = "change", cwd: Path | None = None) -> str:
        where = cwd or self.work
        count = len(list(where.glob("file*.txt")))
        (where / f"file{count}-{time.monotonic_ns()}.txt").write_text(message)
        git(where, "add", "-A", env=self.env)
        git(where, "commit", "-q", "-m", message, env=self.env)
        return git(where, "rev-parse", "HEAD", env=self.env).stdout.strip()

    def push(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`git push ARGS` as a caller reading git's output through pipes would."""
        return git(cwd or self.work, "push", *args, check=False, env=self.env)

    @property
    def common(self) -> Path:
        return self.work / ".git"

    @property
    def db(self) -> Path:
        return Path(self.env.get("TRACKER_DB") or self.common / "tracker" / "events.db")

    @property
    def log_dir(self) -> Path:
        return self.db.parent

    @property
    def spool(self) -> Path:
        return self.log_dir / "spool"

    def remote_head(self, branch: str = "main") -> str:
        out = git(self.remote, "rev-parse", "-q", "--verify", f"refs/heads/{branch}", check=False)
        return out.stdout.strip()


def make_repo(tmp: Path, name: str = "work", **env: str) -> Repo:
    """A bare remote `<tmp>/<name>-remote.git` and a clone with one commit pushed to main."""
    remote = tmp / f"{name}-remote.git"
    work = tmp / name
    repo_env = base_env(**env)
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote), env=repo_env)
    git(tmp, "clone", "-q", str(remote), str(work), env=repo_env)
    git(work, "config", "user.name", "Test Pusher", env=repo_env)
    git(work, "config", "user.email", "pusher@example.com", env=repo_env)
    repo = Repo(work, remote, repo_env)
    repo.commit("initial")
    repo.git("push", "-q", "origin", "HEAD:main")
    repo.git("branch", "-u", "origin/main")
    return repo


def set_hook(hooks: Path, name: str, body: str) -> Path:
    """Write an executable hook script `name` into `hooks`."""
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def wait_until(predicate: Callable[[], object], timeout: float = 120.0) -> object:
    """Poll `predicate` until it returns something truthy; AssertionError after `timeout`
    (generous: a passing test never waits it out, and a loaded 2-core machine is slow)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def _imports_this_checkout(python: str) -> bool:
    probe = subprocess.run(
        [python, "-I", "-c", "import tracker, sys; sys.stdout.write(tracker.__file__)"],
        capture_output=True, text=True, cwd="/", timeout=60,
    )  # fmt: skip
    return probe.returncode == 0 and Path(probe.stdout).resolve().parent == ROOT / "tracker"


@functools.cache
def tracker_python() -> str:
    """An interpreter that imports this checkout's `tracker` with `-I`, as the hook runs it.

    The test venv's own python when the project is installed into it (editable); otherwise a
    small venv made once per run whose `.pth` points at this checkout and the venv's packages.
    """
    if _imports_this_checkout(sys.executable):
        return sys.executable
    home = Path(tempfile.mkdtemp(prefix="tracker-python-"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = home / "bin" / "python"
    site = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    outer = sysconfig.get_paths()["purelib"]
    Path(site, "tracker_checkout.pth").write_text(f"{ROOT}\n{outer}\n")
    assert _imports_this_checkout(str(python)), "could not make an interpreter for the hook"
    return str(python)
