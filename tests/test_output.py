"""No control character from outside reaches the terminal (SPEC §5), checked on a real pty.

A hostile App Platform on loopback (tests/support/hostile.py) puts OSC 0, OSC 52, `ESC[2J`, a C1
CSI and a DSR request in every string the tracker shows: error bodies, phases, step names, failure
reasons, build log lines. An ingested notification does the same with its status, source and
log tail. Every command that shows them runs in a pseudo-terminal (colour on, as for a person);
what it wrote may hold our own colour codes and line breaks, and nothing else.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import base_env
from tests.support.hostile import (
    DEPLOYMENT_ID,
    ESCAPES,
    EVERY_ESCAPE,
    SHA,
    Answer,
    HostileApi,
    deployment,
    hostile_api,
)
from tracker.api import Tracker
from tracker.cli.output import safe, say, style
from tracker.config import load_settings
from tracker.events import DeploymentPolled
from tracker.output import printable

OURS = re.compile(rb"\x1b\[[0-9;]*m")  # the only escape sequences we write: colours
TOKEN = "hostile-test-token"
INGESTED = "b2" * 20


# -- the one function ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcödé, █", "plain text, ünïcödé, █"),
        ("two\nlines", "two\nlines"),  # the line breaks of multi-line logs stay
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1b]52;c;Y2F0\x07", "\\x1b]52;c;Y2F0\\x07"),
        ("\x1b[2J\x1b[6n", "\\x1b[2J\\x1b[6n"),
        ("\x9b31m\x9d0;t\x9c", "\\x9b31m\\x9d0;t\\x9c"),  # C1: CSI, OSC, ST
        ("tab\tcr\rdel\x7fnul\x00", "tab\\tcr\\rdel\\x7fnul\\x00"),
        ("\x85next line", "\\x85next line"),
    ],
)
def test_printable_escapes_every_c0_and_c1_control_but_the_line_break(raw: str, shown: str):
    assert printable(raw) == shown
    assert safe(raw) == shown


def test_our_own_colours_survive_and_no_outside_text_can_forge_them():
    assert safe(style("live", "32") + " " + EVERY_ESCAPE) == (
        "\x1b[32mlive\x1b[0m " + printable(EVERY_ESCAPE)
    )
    forged = "\x00" + "0" * 16 + "31\x00"  # a mark with another nonce: just text
    assert safe(forged) == printable(forged) and "\x1b" not in safe(forged)


def test_say_writes_our_lead_and_end_as_they_are(capsys: pytest.CaptureFixture[str]):
    say("a\rb", lead="\r", end="")
    assert capsys.readouterr().out == "\ra\\rb"


# -- every command on a real pty --------------------------------------------------------------


def in_pty(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> bytes:
    """Run `python -m tracker ARGS` on a pseudo-terminal; everything it wrote, as bytes.

    Output post-processing is off, so the bytes are exactly what the process wrote (no \\r
    added before each \\n by the terminal driver).
    """
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracker", *args],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    out, deadline = bytearray(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        else:
            raise AssertionError(f"{args} did not finish within {timeout} s: {bytes(out)!r}")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return bytes(out)


def raw_controls(out: bytes, *, repaint: bool = False) -> list[str]:
    """Control characters in `out` that are not ours (colours, line breaks, a repaint's \\r)."""
    text = OURS.sub(b"", out).decode("utf-8")
    allowed = "\n\r" if repaint else "\n"
    return sorted(
        {c for c in text if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in allowed}
    )


def hostile_answer(api: HostileApi) -> callable:  # type: ignore[valid-type]
    """A 500 with escapes, a phase with escapes, then a failure full of them, and its logs."""
    reason = {"code": "Build" + ESCAPES["osc0_title"], "message": "failed " + EVERY_ESCAPE}
    steps = [{"name": "build" + ESCAPES["osc52_clipboard"], "status": "ERROR", "reason": reason}]
    log = "".join(f"web line {n} {EVERY_ESCAPE}\n" for n in range(25))
    script = [
        Answer(500, {"id": "server_error", "message": "down " + EVERY_ESCAPE}),
        Answer(body={"deployments": [deployment("BUILDING" + ESCAPES["clear_screen"])]}),
    ]

    def answer(target: str) -> Answer:
        if "/archive" in target:
            return Answer(body=log)
        if "/logs" in target:
            return Answer(body={"historic_urls": [f"{api.url}/archive/build.log"]})
        if target.startswith("/v2/apps/app/deployments") and script:
            return script.pop(0)
        failed = deployment("ERROR", progress={"steps": steps})
        if target.startswith("/v2/apps/app/deployments/"):  # one deployment (a monitor's poll)
            return Answer(body={"deployment": failed})
        if target.startswith("/v2/apps/app/deployments"):  # the list (the app's watcher's tick)
            return Answer(body={"deployments": [failed]})
        return Answer(503, {"id": "down", "message": "doctor sees " + EVERY_ESCAPE})

    return answer


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    holder: dict[str, HostileApi] = {}
    with hostile_api(lambda target: holder["answer"](target)) as api:  # type: ignore[operator]
        holder["answer"] = hostile_answer(api)  # type: ignore[assignment]
        db = tmp_path / "log" / "events.db"
        env = base_env(
            DIGITALOCEAN_TOKEN=TOKEN, TRACKER_DO_APP_ID="app", TRACKER_DO_API_URL=api.url,
            TRACKER_DB=str(db), TRACKER_POLL_POLICY="fixed", TRACKER_POLL_INTERVAL="0.05",
            TRACKER_MAX_WAIT="20", TERM="xterm-256color",
        )  # fmt: skip
        env.pop("NO_COLOR", None)
        with Tracker(db, settings=load_settings(None, env={})) as tracker:
            tracker.record_push(SHA, branch="main", monitor=False)
            tracker.record_push(INGESTED, branch="main", monitor=False)
            # what the MySQL source records for a status column full of escapes
            status = "deploying" + EVERY_ESCAPE
            polled = DeploymentPolled("mysql", True, found=True, status=status, db_queries=1)
            tracker.store.append(INGESTED, polled)
        yield env, tmp_path


def test_escape_sequences_from_outside_are_shown_escaped_by_every_command(hostile) -> None:
    env, cwd = hostile
    monitor = in_pty(["monitor", SHA], env, cwd)
    assert b"verdict: failed" in monitor, monitor
    # `ingest` refuses control characters in its short fields; a log tail keeps them
    note = {
        "sha": INGESTED,
        "status": "failed",
        "log_tail": [EVERY_ESCAPE, "multi\nline " + ESCAPES["osc52_clipboard"]],
    }
    ingested = subprocess.run(
        [sys.executable, "-m", "tracker", "ingest"], input=json.dumps(note), env=env,
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ingested.returncode == 1, ingested.stderr
    outputs = {
        "monitor": monitor,
        "status": in_pty(["status", SHA], env, cwd),
        "status-ingested": in_pty(["status", INGESTED], env, cwd),
        "events": in_pty(["events"], env, cwd),
        "stats": in_pty(["stats"], env, cwd),
        "doctor": in_pty(["doctor"], env, cwd),
    }
    for name, out in outputs.items():
        assert raw_controls(out) == [], (name, out)
    everything = b"".join(outputs.values()).decode()
    for shown in ("\\x1b]52;c;", "\\x1b]0;pwned title\\x07", "\\x1b[2J", "\\x9b31m", "\\x1b[6n"):
        assert shown in everything, shown
    assert "\x1b[31m" in outputs["status"].decode()  # our own colour: the verdict in red
    assert outputs["status"].count(b"\n  | ") == 20  # the last 20 lines (a bare \r splits one)
    assert b"  | multi\nline \\x1b]52" in outputs["status-ingested"]  # a log's line break stays
    assert DEPLOYMENT_ID.encode() in outputs["status"]


def test_wait_and_the_json_output_stay_as_they_were(hostile) -> None:
    env, cwd = hostile
    in_pty(["monitor", SHA], env, cwd)
    waited = in_pty(["wait", SHA, "--timeout", "1"], env, cwd)
    assert raw_controls(waited, repaint=True) == [] and b"final: failed" in waited
    as_json = in_pty(["status", SHA, "--json"], env, cwd)
    assert raw_controls(as_json) == []  # JSON escapes them itself: \u001b
    data = json.loads(as_json)
    assert EVERY_ESCAPE in data["reason"]["message"]  # the value itself is kept exactly
