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


def test_the_demos_comparison_is_consistent_with_its_own_schedule(tmp_path: Path) -> None:
    """The demo compares its compressed schedule with the 10 s baseline compressed alike (a
    fixed 1 s poll), never with a real 10 s poll; its numbers follow from its own log."""
    import math
    import re
    import shutil

    from tracker.cli.demo import DEFAULT_POLL_INITIAL_S, MAX_WAIT_S, POLL_INITIAL_S
    from tracker.log.sqlite import SQLiteLog

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACKER_", "DB_")) and k != "DIGITALOCEAN_TOKEN"
    }
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "demo", "--keep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    kept = re.search(r"demo: kept (\S+) \(log: (\S+)\)", done.stdout)
    assert kept, done.stdout + done.stderr
    try:
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("compared "))
        assert "a fixed 10 s poll would" not in line
        interval = 10.0 * POLL_INITIAL_S / DEFAULT_POLL_INITIAL_S
        found = re.search(
            r"a fixed 1 s poll \(the demo's time scale: 10 s × 0\.5/5\) would have made (\d+)"
            r" calls; this made (\d+), (\d+\.\d)× (more|fewer)",
            line,
        )
        assert found, line
        fixed, ours = int(found.group(1)), int(found.group(2))
        with SQLiteLog(Path(kept.group(2))) as store:
            rows = [store.deployment(s) for s in store.shas_with_prefix("", limit=100)]
        spans = []
        calls = 0
        for row in rows:
            assert row is not None
            if row.state == "rejected" or row.api_calls == 0 or row.finished_at is None:
                continue
            end = row.platform_finished_at or row.finished_at
            start = row.monitor_started_at or row.pushed_at
            assert start is not None
            spans.append(end - start)
            calls += row.api_calls
        # a fixed poll at 0, 1, 2 ... s sees an end at `span` with its poll number ceil(span) + 1
        # (an end before the monitor started, a commit superseded at once, by its first poll)
        expect = sum(
            min(math.ceil(max(s, 0.0) / interval - 1e-9) + 1, int(MAX_WAIT_S) + 1) for s in spans
        )
        assert (fixed, ours) == (expect, calls), (line, spans)
        ratio = ours / fixed if ours > fixed else fixed / ours
        assert found.group(3) == f"{ratio:.1f}"
        assert found.group(4) == ("more" if ours > fixed else "fewer")
    finally:
        shutil.rmtree(kept.group(1), ignore_errors=True)


def test_the_demo_ignores_the_users_own_tracker_settings(tmp_path: Path) -> None:
    """A user who already uses the tracker has TRACKER_DB, a token and a policy exported: the
    demo's own readers (which settle pushes and start monitors) must use the demo's."""
    theirs = tmp_path / "their-log" / "events.db"
    env = dict(os.environ)
    env.update(
        TMPDIR=str(tmp_path), TRACKER_DB=str(theirs), DIGITALOCEAN_TOKEN="their-token",
        TRACKER_DO_APP_ID="their-app", TRACKER_MAX_WAIT="abc", DB_HOST="db.example",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all as expected" in done.stdout
    assert not theirs.exists()  # their log untouched
    assert "their-token" not in done.stdout + done.stderr
