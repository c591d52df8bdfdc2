"""Every push is watched, or its headline says why not and how to fix it (SPEC §4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.gitrepo import base_env
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.sim.server import SimulatedPlatform

SHA = "750f852" + "0" * 33


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd="/", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_refused_token_is_said_in_the_headline_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SQLiteLog(db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"))
    with SimulatedPlatform(token="the-right-token") as sim:
        env = base_env(
            TRACKER_DB=str(db), DIGITALOCEAN_TOKEN="a-wrong-token", TRACKER_DO_APP_ID=sim.app_id,
            TRACKER_DO_API_URL=sim.base_url, TRACKER_POLL_POLICY="stepped",
            TRACKER_POLL_INITIAL="0.2",
        )  # fmt: skip
        watched = cli("monitor", SHA, env=env)
        assert watched.returncode == 69, watched.stdout + watched.stderr
    done = cli("status", SHA, env=env)
    assert done.returncode == 2
    headline = done.stdout.splitlines()[0]
    assert headline == (
        "750f852: stale, but nothing is watching it: DigitalOcean refused the token (HTTP 401);"
        " fix DIGITALOCEAN_TOKEN, then `tracker wait 750f852`"
    )
    st = json.loads(cli("status", SHA, "--json", env=env).stdout)
    assert (st["watched"], st["exit_code"]) == (False, 2)
    assert "DIGITALOCEAN_TOKEN" in st["not_watched"]
    assert "a-wrong-token" not in done.stdout + json.dumps(st)
    with SQLiteLog(db) as store:
        assert store.rebuild().clean
