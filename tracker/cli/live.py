"""`tracker wait` and `tracker events --follow`: watching the log change.

On a terminal the wait view repaints one line in place; to a pipe it prints one plain line per
change and a final line, with no escape codes.
"""

from __future__ import annotations

import sys

from tracker.api import Tracker
from tracker.cli.output import say
from tracker.cli.text import (
    event_json,
    event_line,
    failure_lines,
    paint,
    unwatched_line,
    verdict,
)
from tracker.read.status import DeploymentStatus

FOLLOW_EVERY_S = 0.25


def wait_command(
    tracker: Tracker, ref: str, timeout: float, *, as_json: bool, colour: bool
) -> DeploymentStatus:
    """Wait up to `timeout` (0: no limit) for a verdict, showing each change."""
    live = sys.stdout.isatty() and not as_json
    shown = {"width": 0}

    def show(st: DeploymentStatus) -> None:
        if as_json:
            return
        line = verdict(st)
        if live:
            pad = " " * max(shown["width"] - len(line), 0)
            shown["width"] = len(line)
            say(paint(line, "bold", colour) + pad, lead="\r", end="", flush=True)
        else:
            say(line, flush=True)

    st = tracker.wait(ref, timeout, on_change=show)
    if live:
        sys.stdout.write("\n")
    if not as_json:
        if not st.watched:
            say(unwatched_line(st))
        elif st.exit_code == 2:
            limit = f"{timeout:g} s" if timeout else "the end"
            say(
                f"still in progress after {limit}: not blocking; check later with"
                f" `tracker status {st.short_sha}`"
            )
        else:
            if st.exit_code == 1:  # why, and the build's last lines, as `status` shows them
                for line in failure_lines(st, headline=True):
                    say(line)
            say(f"final: {st.state} (exit {st.exit_code})")
    return st


def events_command(
    tracker: Tracker, ref: str | None, *, follow: bool, as_json: bool, limit: int | None
) -> None:
    """Print the log (the last `limit` events), then with `follow` keep printing new ones."""
    fmt = event_json if as_json else event_line
    show = print if as_json else say  # JSON escapes control characters itself
    ref = tracker.resolve(ref) if ref else None  # once: `HEAD` must not move while we follow
    found = tracker.events(ref, limit=limit, newest=limit is not None)
    after = 0
    for event in found:
        show(fmt(event), flush=follow)
        after = event.seq
    if not follow:
        return
    if not found:
        after = tracker.store.last_seq() if limit is not None else 0
    try:
        while True:
            tracker.clock.sleep(FOLLOW_EVERY_S)
            for event in tracker.events(ref, after_seq=after):
                show(fmt(event), flush=True)
                after = event.seq
    except KeyboardInterrupt:
        return
