"""`tracker demo` is the README's first command: it must work on a machine with no credentials."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def test_demo_runs_the_whole_job_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKER_", "DB_")) and k != "DIGITALOCEAN_TOKEN"
    }
    env["TMPDIR"] = str(tmp_path)
    before = set(Path(tempfile.gettempdir()).glob("tracker-demo-*"))
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "all as expected" in out
    assert "live (" in out and "deployment failed" in out and "superseded by" in out
    assert "npm ERR!" in out  # the failing build's log tail
    assert "api calls" in out  # the stats
    assert list(tmp_path.iterdir()) == []  # nothing left in its temporary directory
    assert set(Path(tempfile.gettempdir()).glob("tracker-demo-*")) == before
    assert "demo-token" not in out + done.stderr
