"""Text for people: verdict lines, details, event lines. Pure functions of the API's dataclasses.

Colour only when asked (a terminal, and `NO_COLOR` unset); output to a pipe is plain text. The
text holds values from outside as they came: `tracker.output.say`, which writes it, escapes
their control characters (and turns `paint`'s marks into colour).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from tracker.api import DeploymentStatus, EventRecord
from tracker.output import style

_CODES = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1"}
_STATE_COLOUR = {
    "succeeded": "green",
    "failed": "red",
    "canceled": "red",
    "timed_out": "red",
    "rejected": "red",
    "superseded": "yellow",
    "pending": "yellow",
    "in_progress": "yellow",
    "stale": "yellow",
    "not_found": "dim",
}


def use_colour(stream: TextIO = sys.stdout) -> bool:
    """Colour on a terminal only, and never when `NO_COLOR` is set (no-color.org)."""
    return "NO_COLOR" not in os.environ and stream.isatty() and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str, on: bool) -> str:
    return style(text, _CODES[colour]) if on else text


def duration(seconds: float | None) -> str:
    """`3m12s`, `45.2s`, `1h02m`."""
    if seconds is None:
        return "-"
    if abs(seconds) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def verdict(st: DeploymentStatus) -> str:
    """One line that says it all."""
    who = st.short_sha
    if st.state == "not_found":
        return f"{who}: not found (no push of this commit in the log)"
    if st.state == "succeeded":
        return f"{who}: live ({duration(st.push_to_live_s)} from push to live)"
    if st.state == "superseded":
        by = (st.superseded_by or "a newer push")[:7]
        if st.exit_code == 0:
            return f"{who}: live, superseded by {by}, which contains it and went live"
        return f"{who}: not deployed: superseded by {by}, which did not bring it live"
    if st.state in {"failed", "canceled"}:
        where = f" at step {st.failed_step}" if st.failed_step else ""
        word = "canceled" if st.state == "canceled" else "failed"
        return f"{who}: deployment {word}{where}"
    if st.state == "timed_out":
        return f"{who}: no verdict: the monitor gave up waiting (last phase {st.phase or '-'})"
    if st.state == "rejected":
        return f"{who}: the push did not reach the remote"
    if st.not_watched:
        then = "" if "tracker doctor" in st.not_watched else f", then `tracker wait {who}`"
        return f"{who}: {st.state}, but nothing is watching it: {st.not_watched}{then}"
    if st.state == "stale":
        return f"{who}: in progress, but its monitor is gone (`tracker wait {who}` resumes it)"
    if st.state == "pending":
        return f"{who}: pending (pushed; deployment not seen yet)"
    progress = f" ({st.steps_done}/{st.steps_total} steps)" if st.steps_total else ""
    return f"{who}: in progress: {st.phase or 'deploying'}{progress}"


_SINCE = {"succeeded": "live since", "superseded": "ended", "rejected": "rejected"}


def already_recorded(st: DeploymentStatus) -> str:
    """`tracker push` of a push the log has: what it is now (no new attempt was made)."""
    if st.terminal:
        when = f" {_SINCE.get(st.state, st.state + ' at')} {st.finished_at or '-'}"
    else:
        when = f" {st.state.replace('_', ' ')}"
    return (
        f"{st.short_sha}: already recorded:{when} (attempt {st.attempt}; if the commit was"
        f" pushed again, `tracker push {st.short_sha} --again`)"
    )


def status_text(st: DeploymentStatus, colour: bool = False) -> str:
    """`tracker status`: the verdict, then details."""
    lines = [paint(verdict(st), _STATE_COLOUR.get(st.state, "bold"), colour)]
    if st.state == "not_found":
        return "\n".join(lines)
    if st.spooled:
        lines.append(SPOOLED_LINE)
    detail = [
        ("commit", st.sha),
        ("branch", st.branch),
        ("state", st.state),
        ("phase", st.phase),
        ("deployment", st.deployment_id),
        ("pushed", st.pushed_at),
        ("finished", st.finished_at),
        ("push to live", duration(st.push_to_live_s) if st.push_to_live_s is not None else None),
        (
            "polls",
            f"{st.polls} ({st.api_calls} API calls, {st.db_queries} DB queries,"
            f" {st.errors} errors)",
        ),
        ("monitor", _monitor(st)),
        ("attempt", _attempts(st)),
    ]
    width = max(len(k) for k, _ in detail)
    lines += [f"  {k:<{width}}  {v}" for k, v in detail if v is not None]
    if st.reason:
        code = st.reason.get("code")
        lines.append(
            f"  {'reason':<{width}}  {(code + ': ') if code else ''}"
            f"{st.reason.get('message') or ''}"
        )
    if st.log_tail:
        lines.append(f"last {len(st.log_tail)} log lines:")
        lines += [f"  | {line}" for line in st.log_tail]
    if st.state in {"pending", "in_progress", "stale"} and st.recent_events:
        lines.append(f"last {len(st.recent_events)} events:")
        lines += [f"  {event_line(e)}" for e in st.recent_events]
    return "\n".join(lines)


def _attempts(st: DeploymentStatus) -> str | None:
    """`2 (pushed before: #1 failed)`: shown only for a commit pushed more than once."""
    if not st.previous_attempts:
        return None
    earlier = ", ".join(f"#{a.attempt} {a.state}" for a in st.previous_attempts)
    return f"{st.attempt} (pushed before: {earlier})"


SPOOLED_LINE = (
    "answered from the push spool: the log is busy (another process holds its lock);"
    " details follow once it is free"
)


def unwatched_line(st: DeploymentStatus) -> str:
    """`wait`'s last line for a commit nothing watches (its headline said why and the fix)."""
    return f"not waiting: nothing is watching {st.short_sha}, so nothing will change (exit 2)"


def _monitor(st: DeploymentStatus) -> str | None:
    if st.monitor.pid is None:
        return None
    return f"pid {st.monitor.pid} on {st.monitor.host} ({'alive' if st.monitor.alive else 'gone'})"


def event_line(e: EventRecord) -> str:
    """One event as a line: position, time, commit, type and its most telling fields."""
    d = e.data
    if e.type == "DeploymentPolled":
        what = d.get("phase") or d.get("status") or ("not found" if d.get("ok") else "")
        extra = f" error={d.get('error_kind')}: {d.get('error')}" if not d.get("ok") else ""
        info = f"{d.get('source')} {what}{extra} calls={d.get('api_calls', 0)}"
    elif e.type == "PushRecorded":
        info = f"{d.get('branch')} via {d.get('source')} to {d.get('remote') or '-'}"
    else:
        keep = {k: v for k, v in d.items() if k not in {"sha", "log_tail"} and v not in (None, "")}
        info = json.dumps(keep, separators=(",", ":"))[:160]
    return f"#{e.seq} {e.recorded_at} {e.stream[:7]} {e.type} {info}"


def event_json(e: EventRecord) -> str:
    return json.dumps(e.to_dict(), separators=(",", ":"), sort_keys=True)
