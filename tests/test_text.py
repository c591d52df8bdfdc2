"""`tracker/cli/text.py`: the text of a status, its verdict line, event lines, the stats table;
what `say` makes of hostile strings in them; colour only on a terminal. Pure functions of the
read side's dataclasses, checked without a log (the commands that print them are checked end to
end in tests/test_cli.py, tests/test_words.py and, on a real pty, tests/test_output.py).
"""

from __future__ import annotations

import io

import pytest

from tests.support.hostile import ESCAPES, EVERY_ESCAPE
from tracker.cli.output import safe, say
from tracker.cli.text import (
    Comparison,
    comparison_line,
    duration,
    event_line,
    paint,
    stats_text,
    status_text,
    use_colour,
    verdict,
)
from tracker.read.stats import Stats
from tracker.read.status import DeploymentStatus, EventRecord, MonitorInfo

SHA = "ab" * 20


def status(**fields: object) -> DeploymentStatus:
    base: dict[str, object] = {
        "sha": SHA,
        "short_sha": SHA[:7],
        "branch": "main",
        "state": "in_progress",
        "exit_code": 2,
    }
    return DeploymentStatus(**{**base, **fields})  # type: ignore[arg-type]


# -- verdict lines --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (
            {"state": "succeeded", "exit_code": 0, "push_to_live_s": 192.4},
            "abababa: live (3m12s from push to live)",
        ),
        (
            {"state": "failed", "exit_code": 1, "failed_step": "build"},
            "abababa: deployment failed at step build",
        ),
        ({"state": "canceled", "exit_code": 1}, "abababa: deployment canceled"),
        (
            {"state": "superseded", "exit_code": 0, "superseded_by": "cd" * 20},
            "abababa: live, superseded by cdcdcdc, which contains it and went live",
        ),
        (
            {"state": "superseded", "exit_code": 1, "superseded_by": "cd" * 20},
            "abababa: not deployed: superseded by cdcdcdc, which did not bring it live",
        ),
        ({"state": "rejected", "exit_code": 1}, "abababa: the push did not reach the remote"),
        ({"state": "pending"}, "abababa: pending (pushed; deployment not seen yet)"),
        (
            {"phase": "BUILDING", "steps_done": 2, "steps_total": 5},
            "abababa: in progress: BUILDING (2/5 steps)",
        ),
        (
            {"state": "stale"},
            "abababa: in progress, but its monitor is gone (`tracker wait abababa` resumes it)",
        ),
        (
            {"state": "timed_out", "exit_code": 1, "phase": "DEPLOYING"},
            "abababa: no verdict: the monitor gave up waiting (last phase DEPLOYING)",
        ),
        (
            {"state": "not_found", "exit_code": 3, "branch": None},
            "abababa: not found (no push of this commit in the log)",
        ),
    ],
)
def test_one_verdict_line_says_it_all(fields: dict[str, object], line: str) -> None:
    assert verdict(status(**fields)) == line


def test_durations_are_short() -> None:
    assert [duration(v) for v in (None, 45.24, 192.4, 3720.0)] == ["-", "45.2s", "3m12s", "1h02m"]


# -- the status text ------------------------------------------------------------------------------


def test_status_text_is_the_verdict_then_aligned_details() -> None:
    st = status(
        state="succeeded",
        exit_code=0,
        phase="ACTIVE",
        deployment_id="dep-1",
        pushed_at="2026-01-01T00:00:00.000Z",
        finished_at="2026-01-01T00:00:55.000Z",
        push_to_live_s=53.0,
        polls=6,
        api_calls=6,
        monitor=MonitorInfo(42, "box", False),
    )
    lines = status_text(st).splitlines()
    assert lines[0] == "abababa: live (53.0s from push to live)"
    details = dict(line.split(None, 1) for line in lines[1:] if not line.startswith("  push"))
    assert details["commit"] == SHA and details["deployment"] == "dep-1"
    assert details["polls"].strip() == "6 (6 API calls, 0 DB queries, 0 errors)"
    assert "2 s after it went live" in details["detected"]
    assert details["monitor"].strip() == "pid 42 on box (gone)"
    starts = {len(line) - len(line.lstrip()) for line in lines[1:]}
    values = {line.index(line.split()[-1]) for line in lines[1:2]}
    assert starts == {2} and values  # every detail indented alike


def test_a_not_found_status_is_its_verdict_alone() -> None:
    assert status_text(status(state="not_found", exit_code=3)).count("\n") == 0


def test_an_open_deployment_shows_its_last_events() -> None:
    event = EventRecord(7, SHA, 1, "PushRecorded", "2026-01-01T00:00:00.000Z", {"branch": "main"})
    text = status_text(status(recent_events=[event]))
    assert "last 1 events:" in text and f"  {event_line(event)}" in text


def test_a_failure_shows_its_reason_and_log_tail() -> None:
    st = status(
        state="failed",
        exit_code=1,
        failed_step="build",
        reason={"code": "build_failed", "message": "npm ERR! missing script"},
        log_tail=["step 1", "npm ERR! missing script: build"],
    )
    text = status_text(st)
    assert "npm ERR! missing script: build" in text


# -- hostile strings, and colour ------------------------------------------------------------------


def test_hostile_strings_in_a_status_reach_no_terminal() -> None:
    st = status(
        state="failed",
        exit_code=1,
        phase=EVERY_ESCAPE,
        deployment_id=EVERY_ESCAPE,
        failed_step=EVERY_ESCAPE,
        reason={"code": "x", "message": EVERY_ESCAPE},
        log_tail=[EVERY_ESCAPE, "ok"],
    )
    for colour in (False, True):
        out = io.StringIO()
        say(status_text(st, colour=colour), stream=out)
        written = out.getvalue()
        for escape in ESCAPES.values():
            assert escape not in written, repr(escape)
        assert "\x1b" not in written.replace("\x1b[31m", "").replace("\x1b[0m", "")
        assert "\\x1b" in written  # shown, escaped


def test_a_hostile_string_cannot_forge_our_colour_marks() -> None:
    forged = "\x00" + "0" * 16 + "31\x00 red?"
    assert "\x1b" not in safe(forged)
    assert safe(paint("ok", "green", True)) == "\x1b[32mok\x1b[0m"
    assert paint("ok", "green", False) == "ok"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour(Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(Tty())
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("NO_COLOR", "")
    assert not use_colour(Tty())


# -- the stats table ------------------------------------------------------------------------------


def test_stats_text_of_an_empty_log_and_its_comparison_line() -> None:
    text = stats_text(Stats(generated_at="2026-01-01T00:00:00.000Z"))
    assert text.splitlines()[0] == "Deployment stats (all time)" and "deployments    none" in text
    coloured = stats_text(Stats(generated_at="2026-01-01T00:00:00.000Z"), colour=True)
    assert "\x1b" not in safe(text) and "\x1b[1m" in safe(coloured)
    same = comparison_line(Comparison(10.0, 2, 8, 8, None))
    assert same == "a fixed 10 s poll would have made 8 calls; this made 8, as many"
