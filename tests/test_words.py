"""What a person reads says why (issue 12): headlines, the end of `wait`, event lines, help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import base_env, make_repo
from tracker.api import Tracker
from tracker.cli.app import app
from tracker.cli.text import event_line, status_text, verdict
from tracker.clock import FakeClock
from tracker.config import load_settings
from tracker.events import (
    REGISTRY,
    DeploymentFailed,
    DeploymentPolled,
    MonitorStarted,
    PushRecorded,
)
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import Monitor
from tracker.monitor.sources.base import LogTail, Observation
from tracker.read.status import EventRecord
from tracker.words import seconds

SHA = "1016e31" + "0" * 33
ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str], cwd: Path | str = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "shown"),
    [(6.002, "6 s"), (2.46, "2.5 s"), (0.04, "0 s"), (45.4, "45 s"), (480.0, "8 min"),
     (192.2, "3 min 12 s"), (3720.0, "1 h 02 min"), (None, "-")],
)  # fmt: skip
def test_durations_are_rounded_for_people(value: float | None, shown: str) -> None:
    assert seconds(value) == shown


# -- headlines ----------------------------------------------------------------------------------


def test_a_source_never_reached_is_unknown_with_the_url_and_the_errors(tmp_path: Path) -> None:
    """A real monitor against a port where nothing listens: every poll is a connection error,
    and the headline says so, with the URL tried (never the token) and no `None`."""
    db = tmp_path / "events.db"
    with SQLiteLog(db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook"))
    env = base_env(
        TRACKER_DB=str(db), DIGITALOCEAN_TOKEN="secret-token-123", TRACKER_DO_APP_ID="app-1",
        TRACKER_DO_API_URL="http://127.0.0.1:1", TRACKER_MAX_WAIT="2", TRACKER_POLL_INITIAL="0.2",
        TRACKER_HTTP_TIMEOUT="1",
    )  # fmt: skip
    cli("monitor", SHA, env=env)
    done = cli("status", SHA, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    headline = done.stdout.splitlines()[0]
    found = re.fullmatch(
        r"1016e31: unknown: the DigitalOcean API at http://127\.0\.0\.1:1 was unreachable for"
        r" (\d+(?:\.\d)?) s \((\d+) connection errors?\)",
        headline,
    )
    assert found, headline
    with SQLiteLog(db) as store:
        polls = [e for e in store.events(stream=SHA) if e.type == "DeploymentPolled"]
        timed_out = [e for e in store.events(stream=SHA) if e.type == "MonitorTimedOut"]
    assert int(found.group(2)) == len(polls) >= 1
    assert len(timed_out) == 1 and "last_phase" in timed_out[0].data
    assert 2 <= float(found.group(1)) <= 4
    assert "None" not in done.stdout and "secret-token" not in done.stdout
    st = json.loads(cli("status", SHA, "--json", env=env).stdout)
    assert st["state"] == "timed_out" and st["reason"]["code"] == "unreachable"


class _Flaky:
    """A source that sees BUILDING once, then can no longer be reached."""

    name = "digitalocean"

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, sha: str) -> Observation:
        self.polls += 1
        if self.polls == 1:
            return Observation("digitalocean", True, True, "BUILDING", deployment_id="dep-1",
                               api_calls=1)  # fmt: skip
        return Observation("digitalocean", False, error="connection failed (ConnectError)",
                           error_kind="connection", api_calls=1)  # fmt: skip

    def fetch_logs(self, deployment_id: str, lines: int = 20) -> LogTail:
        raise AssertionError("no logs for a timeout")

    def check(self) -> Observation:
        return self.poll("")

    def close(self) -> None:
        pass


def test_a_timeout_carries_the_last_phase_seen_even_after_errors(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = load_settings(
        None, env={"DIGITALOCEAN_TOKEN": "t", "TRACKER_DO_APP_ID": "a", "TRACKER_MAX_WAIT": "480"}
    )
    with SQLiteLog(tmp_path / "events.db", clock=clock) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main"), at=clock.now())
        state = Monitor(
            store,
            SHA,
            [_Flaky()],
            settings=settings,
            clock=clock,
            rand=lambda: 0.5,  # type: ignore[list-item]
        ).run()
        assert state == "timed_out"
        event = next(e for e in store.events(stream=SHA) if e.type == "MonitorTimedOut")
        assert event.data["last_phase"] == "BUILDING"
        tracker = Tracker(store.path, settings=settings, clock=clock)
        st = tracker.status(SHA)
    assert (
        verdict(st) == "1016e31: no verdict: the monitor gave up after 8 min (last phase BUILDING)"
    )
    assert "None" not in status_text(st) and "480.0" not in status_text(st)


def test_a_commit_pushed_only_to_another_branch_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    repo.git("checkout", "-q", "-b", "feature")
    sha = repo.commit("on a feature branch")
    pushed = repo.push("-q", "origin", "feature")
    assert pushed.returncode == 0, pushed.stderr
    env = dict(repo.env, TRACKER_DB=str(tmp_path / "events.db"))
    done = cli("status", sha, env=env, cwd=repo.work)
    assert done.returncode == 3
    assert done.stdout.strip() == (
        f"{sha[:7]}: not pushed to main (TRACKER_BRANCH); origin/feature has it"
    )
    unpushed = repo.commit("not pushed anywhere")
    done = cli("status", unpushed, env=env, cwd=repo.work)
    # (a read creates no log: there is none yet at that path, and the answer says so)
    db = tmp_path / "events.db"
    assert done.stdout.strip() == f"{unpushed[:7]}: not found: no log at {db} (nothing recorded)"
    with SQLiteLog(db) as store:
        store.last_seq()  # the log now exists, empty
    done = cli("status", unpushed, env=env, cwd=repo.work)
    assert done.stdout.strip() == f"{unpushed[:7]}: not found (no push of this commit in the log)"


def test_wait_on_a_failure_ends_with_the_reason_and_the_log_tail(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    sha = "496dac5" + "0" * 33
    with SQLiteLog(db) as store:
        store.append(sha, PushRecorded(sha=sha, branch="main"))
        store.append(sha, DeploymentFailed(
            "dep-9", reason={"code": "BuildJobExitNonZero", "message": "the build failed"},
            failed_step="build.components.web", log_tail=["npm ERR! code ELIFECYCLE", "exit 1"],
        ))  # fmt: skip
    done = cli("wait", sha, "--timeout", "5", env=base_env(TRACKER_DB=str(db)))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "496dac5: deployment failed at step build.components.web",
        "  reason  BuildJobExitNonZero: the build failed",
        "last 2 log lines:",
        "  | npm ERR! code ELIFECYCLE",
        "  | exit 1",
        "final: failed (exit 1)",
    ]


# -- event lines --------------------------------------------------------------------------------

EXAMPLES: dict[str, dict[str, Any]] = {
    "PushRecorded": {"sha": SHA, "branch": "main", "remote": "origin", "source": "hook",
                     "pushed_by": "ann"},
    "PushConfirmed": {"sha": SHA, "reason": "the reflog of refs/remotes/origin/main records it"},
    "PushRejected": {"sha": SHA, "reason": "non-fast-forward"},
    "MonitorStarted": {"pid": 7, "host": "vm", "policy": "stepped", "sources": ["digitalocean"],
                       "max_wait_s": 480.0},
    "DeploymentPolled": {"source": "digitalocean", "ok": False, "error_kind": "auth",
                         "error": "HTTP 401: unauthorized " * 20, "api_calls": 1},
    "LogsFetched": {"deployment_id": "84c7ee41-0000-0000-0000-000000000000", "api_calls": 2,
                    "lines": 20},
    "SourcesDisagreed": {"mysql_status": "failed", "api_phase": "ACTIVE", "detail": "x"},
    "DeploymentSucceeded": {"deployment_id": "84c7ee41-0000", "push_to_live_s": 5.0123},
    "DeploymentFailed": {"deployment_id": "84c7ee41-0000-0000-0000-000000000000",
                         "reason": {"code": "BuildJobExitNonZero", "message": "long " * 80},
                         "failed_step": "build.components.web", "log_tail": ["a"] * 20},
    "DeploymentSuperseded": {"by_sha": "25dcbbb" + "0" * 33, "by_deployment_id": "d",
                             "went_live": True},
    "MonitorTimedOut": {"waited_s": 6.002, "last_phase": None},
    "MonitorStopped": {"pid": 7, "reason": "DigitalOcean refused the token (HTTP 401)",
                       "fix": "fix DIGITALOCEAN_TOKEN"},
    "MonitorNotStarted": {"reason": "TRACKER_MAX_WAIT: must be a number", "fix": "fix it"},
    "NotificationIngested": {"status": "success", "phase": "ACTIVE", "deployment_id": "d1"},
}  # fmt: skip


def test_every_event_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_event_type_has_one_readable_line(kind: str) -> None:
    record = EventRecord(12, SHA, 3, kind, "2026-12-01T17:52:38.033Z", EXAMPLES[kind])
    line = event_line(record)
    assert line.startswith(f"#12 2026-12-01T17:52:38.033Z 1016e31 {kind} ")
    info = line.split(f" {kind} ", 1)[1]
    assert info and "{" not in info and '"' not in info, line  # no JSON blob
    assert "  " not in line and "\n" not in line and "None" not in line, line
    assert len(line) <= 220, line


def test_status_shows_the_last_events_as_lines(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with SQLiteLog(db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="hook", remote="origin"))
        store.append(SHA, MonitorStarted(1, "elsewhere", "stepped", ["digitalocean"], 480.0))
        store.append(SHA, DeploymentPolled("digitalocean", False, error="HTTP 401: no",
                                           error_kind="auth", api_calls=1))  # fmt: skip
    out = cli("status", SHA, env=base_env(TRACKER_DB=str(db))).stdout
    events = out.split("last 3 events:\n", 1)[1].splitlines()
    assert events[-1].endswith("DeploymentPolled digitalocean error auth: HTTP 401: no (1 call)")
    assert all("{" not in e and "  " not in e.strip() for e in events), events


# -- help -----------------------------------------------------------------------------------------

COMMANDS = ["status", "wait", "events", "stats", "rebuild", "push", "monitor", "ingest",
            "doctor", "demo"]  # fmt: skip


def test_refs_bind_by_position_and_flags_have_no_negative_twins() -> None:
    command, bound, _ = app.parse_args(["status", "abc1234", "--json"], exit_on_error=False)
    assert command.__name__ == "status"
    assert bound.args == ("abc1234",) and bound.kwargs == {"json": True}
    _, bound, _ = app.parse_args(["push", "HEAD~1", "--no-monitor"], exit_on_error=False)
    assert bound.args == ("HEAD~1",) and bound.kwargs == {"no_monitor": True}
    for wrong in (["status", "--ref", "abc"], ["status", "--no-json"], ["push", "--no-no-monitor"]):
        with pytest.raises(Exception):  # cyclopts' own error type
            app.parse_args(wrong, exit_on_error=False, print_error=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_ref_and_exit_codes(command: str) -> None:
    done = cli(command, "--help", env=base_env(), cwd=ROOT)
    assert done.returncode == 0
    text = done.stdout
    assert "--ref" not in text and "--no-" not in text.replace("--no-monitor", ""), text
    assert "Exit codes:" in text, text
    if command in {"status", "wait", "events", "push"}:
        assert text.startswith(f"Usage: tracker {command} [REF] [OPTIONS]"), text
    if command == "monitor":
        assert text.startswith("Usage: tracker monitor REF [OPTIONS]"), text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "tracker: error: unknown option --bogus (run 'tracker --help')"),
        (["status", "a", "b"], "unexpected argument: b (run 'tracker status --help')"),
        (["wait", "--timeout", "abc"], "(run 'tracker wait --help')"),
        (["monitor"], "REF requires an argument (run 'tracker monitor --help')"),
        (["hooks", "status", "--x"], "(run 'tracker hooks status --help')"),
    ],
)  # fmt: skip
def test_usage_errors_point_to_the_commands_help(args: list[str], message: str) -> None:
    done = cli(*args, env=base_env(), cwd=ROOT)
    assert done.returncode == 64
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
