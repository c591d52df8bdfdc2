"""Inspecting, detaching and spawning processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tracker import gitutil


def spawn_detached(db_path: Path, sha: str, *, repo: Path | None = None) -> int:
    """Start `tracker monitor SHA --watch` fully detached: its own session, no inherited
    descriptors. It joins the app's watcher, or becomes it when none runs."""
    if not gitutil.FULL_SHA.match(sha):
        raise ValueError(f"not a full SHA: {sha!r}")
    env = gitutil.clean_env()
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
