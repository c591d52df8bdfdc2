"""`tracker/cli/core.py`: what every command shares without cyclopts.

A plain `tracker status [REF] [--json]` is answered without cyclopts: it must say and exit
exactly what the cyclopts app says and exits for the same command line, and anything else must
go to the app. The meta app injects the log only into the commands that declare it: `hooks
status` and `doctor` open no `Tracker`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.cli.core import Log, plain_status
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog

SHA = "ab" * 20
ROOT = Path(__file__).resolve().parent.parent


# -- the plain `tracker status` and the app -------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "plain"),
    [
        (["status"], ("HEAD", False, None)),
        (["status", "abc1234"], ("abc1234", False, None)),
        (["status", "--json", "HEAD~1"], ("HEAD~1", True, None)),
        (["--db", "x.db", "status", "abc", "--json"], ("abc", True, Path("x.db"))),
        (["status", "--help"], None),
        (["status", "-h"], None),
        (["status", "a", "b"], None),
        (["status", "--json", "--json"], None),
        (["status", "--json=true"], None),
        (["status", "--", "abc"], None),
        (["status", ""], None),
        (["--db", "status"], None),
        (["--db", "x", "events"], None),
        (["status", "--db", "x"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_plain_status_is_exactly_status_ref_and_json(
    tokens: list[str], plain: tuple[str, bool, Path | None] | None
) -> None:
    found = plain_status(tokens)
    if plain is None:
        assert found is None
    else:
        ref, as_json, db = plain
        assert found == (ref, as_json, Log(db))


def run(argv: list[str], *, cwd: Path, via: str) -> subprocess.CompletedProcess[bytes]:
    """`tracker ARGV` through the entry point (`plain`), or through the cyclopts app only."""
    code = (
        "import sys; from tracker.cli import main; raise SystemExit(main(sys.argv[1:]))"
        if via == "plain"
        else "import sys; from tracker.cli.app import main; raise SystemExit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "GIT_"))}
    env.update(NO_COLOR="1", PYTHONPATH=str(ROOT))
    env.pop("DIGITALOCEAN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, check=False
    )


def test_the_plain_status_says_and_exits_what_the_app_does(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SQLiteLog(db) as log:
        log.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    cases = [
        ["--db", str(db), "status", SHA],
        ["--db", str(db), "status", SHA, "--json"],
        ["--db", str(db), "status", "--json", SHA[:7]],
        ["--db", str(db), "status", "cd" * 20],  # not found: 3
        ["--db", str(db), "status", "no-such-ref"],  # not a commit: 64, with the help to run
        ["--db", str(tmp_path / "none.db"), "status", SHA],  # no log
    ]
    for argv in cases:
        plain, app = run(argv, cwd=tmp_path, via="plain"), run(argv, cwd=tmp_path, via="app")
        assert (plain.returncode, plain.stdout, plain.stderr) == (
            app.returncode,
            app.stdout,
            app.stderr,
        ), argv
    assert json.loads(run(cases[1], cwd=tmp_path, via="plain").stdout)["state"] == "pending"


def test_a_plain_status_imports_no_cyclopts_and_hooks_status_opens_no_log(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SQLiteLog(db) as log:
        log.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    probe = (
        "import sys, atexit\n"
        "import tracker.api as api\n"
        "opened = []\n"
        "real = api.Tracker.open.__func__\n"
        "api.Tracker.open = classmethod(\n"
        "    lambda cls, *a, **k: opened.append(1) or real(cls, *a, **k))\n"
        "atexit.register(lambda: sys.stderr.write("
        "f\"\\nPROBE cyclopts={'cyclopts' in sys.modules} opened={len(opened)}\\n\"))\n"
        "from tracker.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "GIT_"))}
    env.update(NO_COLOR="1", PYTHONPATH=str(ROOT))

    def probed(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stderr.rsplit("PROBE ", 1)[-1].strip()

    assert probed("--db", str(db), "status", SHA) == "cyclopts=False opened=1"
    assert probed("--db", str(db), "status", SHA, "--json") == "cyclopts=False opened=1"
    assert probed("--db", str(db), "events", SHA) == "cyclopts=True opened=1"
    assert probed("--db", str(db), "hooks", "status") == "cyclopts=True opened=0"
    assert probed("--db", str(db), "doctor", "--json") == "cyclopts=True opened=0"
