"""Text for people: verdict lines, details, event lines, the stats table. Pure functions of the
API's dataclasses.

Colour only when asked (a terminal, and `NO_COLOR` unset); output to a pipe is plain text. The
text holds values from outside as they came: `tracker.cli.output.say`, which writes it, escapes
their control characters (and turns `paint`'s marks into colour).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from tracker.cli.output import style
from tracker.clock import iso, parse_iso
from tracker.read.status import DeploymentStatus, EventRecord
from tracker.words import clip, count, seconds, timed_out_reason

if TYPE_CHECKING:
    from tracker.read.stats import ApiCalls, Bucket, Deployments, Stats

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
    code = (st.reason or {}).get("code")
    message = (st.reason or {}).get("message") or ""
    if st.state == "not_found":
        if code in {"other_branch", "no_log"}:
            return f"{who}: not found: {message}" if code == "no_log" else f"{who}: {message}"
        return f"{who}: not found (no push of this commit in the log)"
    if code == "unreachable" and not (st.state == "stale" and st.not_watched):
        if st.state == "stale":
            return (
                f"{who}: unknown: {message}; its monitor is gone (`tracker wait {who}` resumes it)"
            )
        return f"{who}: unknown: {message}"
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
        if code == "timed_out" and message:
            return f"{who}: no verdict: {message}"
        seen = f"last phase {st.phase}" if st.phase else "no phase seen"
        return f"{who}: no verdict: the monitor gave up waiting ({seen})"
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
    if st.shared_log is not None:  # fleet mode: as of when, and why not newer
        lines.append(shared_log_line(st.shared_log))
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
        *_times(st),
        (
            "polls",
            f"{st.polls} ({count(st.api_calls, 'API call')},"
            f" {count(st.db_queries, 'DB query', 'DB queries')}, {count(st.errors, 'error')})",
        ),
        ("monitor", _monitor(st)),
        ("attempt", _attempts(st)),
    ]
    width = max(len(k) for k, _ in detail)
    lines += [f"  {k:<{width}}  {v}" for k, v in detail if v is not None]
    lines += failure_lines(st, width=width, headline=True)
    if st.state in {"pending", "in_progress", "stale"} and st.recent_events:
        lines.append(f"last {len(st.recent_events)} events:")
        lines += [f"  {event_line(e)}" for e in st.recent_events]
    return "\n".join(lines)


def shared_log_line(shared: dict[str, Any]) -> str:
    """Fleet mode (SPEC §10): as of when this machine's cache is, and why it is not newer."""
    as_of = shared.get("as_of") or "never pulled"
    waiting = int(shared.get("outbox") or 0)
    outbox = f"; {count(waiting, 'event')} waiting in the outbox" if waiting else ""
    if shared.get("unreachable"):
        why = clip(str(shared["unreachable"]), 300)
        return f"as of {as_of}; the shared log is unreachable: {why}{outbox}"
    if shared.get("offline"):
        return f"as of {as_of} (offline: not pulled){outbox}"
    return f"as of {as_of}{outbox}"


def _times(st: DeploymentStatus) -> list[tuple[str, str | None]]:
    """When it went live by the platform's clock, and when we saw it: labelled, so that the
    push-to-live time (the platform's) and our detection add up for a reader."""
    pushed = parse_iso(st.pushed_at or "")
    found = parse_iso(st.finished_at or "")
    if st.state == "rejected":
        return [("rejected", st.finished_at)]
    if st.push_to_live_s is None or pushed is None:
        return [("gave up" if st.state == "timed_out" else "detected", st.finished_at)]
    live = pushed + st.push_to_live_s
    lag = "" if found is None else f", {seconds(found - live)} after it went live"
    return [
        ("live", f"{iso(live)} (the platform's time: {seconds(st.push_to_live_s)} after the push)"),
        ("detected", None if st.finished_at is None else f"{st.finished_at} (by us{lag})"),
        ("push to live", duration(st.push_to_live_s)),
    ]


def failure_lines(st: DeploymentStatus, *, width: int = 6, headline: bool = False) -> list[str]:
    """The reason and the last log lines of a commit that did not go live (`status`, and the
    end of `wait`). With `headline`, a reason the headline already says is not repeated."""
    lines = []
    if st.reason and st.state != "not_found":
        code, message = st.reason.get("code"), st.reason.get("message") or ""
        said = headline and (code in {"unreachable", "timed_out"})
        if not said:
            shown = message if code in {None, "unreachable", "timed_out"} else f"{code}: {message}"
            lines.append(f"  {'reason':<{width}}  {shown}")
    if st.log_tail:
        lines.append(f"last {len(st.log_tail)} log lines:")
        lines += [f"  | {line}" for line in st.log_tail]
    return lines


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
    """One event as a line: position, time, commit, type and its most telling fields in words
    (one line per type, single spaces, free text clipped)."""
    words = _EVENT_WORDS.get(e.type)
    try:
        info = words(e.data) if words else _compact(e.data)
    except (TypeError, ValueError, AttributeError):  # a hand-edited or odd event: still a line
        info = _compact(e.data)
    return " ".join(p for p in (f"#{e.seq}", e.recorded_at, e.stream[:7], e.type, info) if p)


def _compact(data: dict[str, Any]) -> str:
    keep = {k: v for k, v in data.items() if k not in {"sha", "log_tail"} and v not in (None, "")}
    return clip(json.dumps(keep, separators=(",", ":")), 160)


def _id(value: object) -> str:
    """A deployment id, short (App Platform's are 36-character UUIDs; `status` has it whole)."""
    return str(value)[:8] if value else "-"


def _join(*parts: object) -> str:
    return " ".join(str(p) for p in parts if p not in (None, ""))


def _attempt(d: dict[str, Any]) -> str:
    n = d.get("attempt")
    return f"(attempt {n})" if isinstance(n, int) and n > 1 else ""


def _push_recorded(d: dict[str, Any]) -> str:
    by = f"by {d['pushed_by']}" if d.get("pushed_by") else ""
    again = "(pushed again)" if d.get("again") else ""
    return _join(d.get("branch"), "to", d.get("remote") or "-", "via", d.get("source"), by, again)


def _polled(d: dict[str, Any]) -> str:
    calls = []
    if d.get("api_calls"):
        calls.append(count(int(d["api_calls"]), "call"))
    if d.get("db_queries"):
        calls.append(count(int(d["db_queries"]), "query", "queries"))
    if d.get("retry"):
        calls.insert(0, "retry")
    cost = f"({', '.join(calls)})" if calls else ""
    retry = ""
    if not d.get("ok"):
        error = clip(f"{d.get('error_kind') or 'error'}: {d.get('error') or '-'}", 100)
        return _join(d.get("source"), "error", error, retry, cost)
    if not d.get("found"):
        return _join(d.get("source"), "not found yet", retry, cost)
    steps = f"{d['steps_done']}/{d['steps_total']} steps" if d.get("steps_total") else ""
    what = d.get("phase") or d.get("status") or "found"
    return _join(d.get("source"), what, steps, f"deployment {_id(d.get('deployment_id'))}", cost)


def _monitor_started(d: dict[str, Any]) -> str:
    sources = ", ".join(d.get("sources") or []) or "no source"
    wait = f"max wait {seconds(d['max_wait_s'])}" if d.get("max_wait_s") else ""
    return _join(f"pid {d.get('pid')} on {d.get('host')},", f"{d.get('policy')} poll of", sources
                 + ("," if wait else ""), wait, _attempt(d))  # fmt: skip


def _logs_fetched(d: dict[str, Any]) -> str:
    calls = count(int(d.get("api_calls") or 0), "API call")
    got = count(int(d.get("lines") or 0), "log line")
    error = f"error: {clip(d['error'], 80)}" if d.get("error") else ""
    return _join(got, f"of deployment {_id(d.get('deployment_id'))} ({calls})", error)


def _succeeded(d: dict[str, Any]) -> str:
    took = d.get("push_to_live_s")
    after = f"{seconds(took)} from push to live" if isinstance(took, int | float) else ""
    return _join(f"live: deployment {_id(d.get('deployment_id'))} {d.get('phase') or ''}".strip()
                 + ("," if after else ""), after, _attempt(d))  # fmt: skip


def _failed(d: dict[str, Any]) -> str:
    reason = d.get("reason") or {}
    said = ": ".join(str(x) for x in (reason.get("code"), reason.get("message")) if x)
    step = f"at step {d['failed_step']}" if d.get("failed_step") else ""
    tail = d.get("log_tail") or []
    lines = f"{count(len(tail), 'log line')} kept" if tail else ""
    word = "canceled" if d.get("phase") == "CANCELED" else "failed"
    where = f"(deployment {_id(d.get('deployment_id'))}" + (f", {lines})" if lines else ")")
    return _join(word, step + (":" if said and step else ""), clip(said, 70), where, _attempt(d))


def _superseded(d: dict[str, Any]) -> str:
    by = str(d.get("by_sha") or "a newer push")[:7]
    went = d.get("went_live")
    live = {True: "which contains it and went live", False: "which did not bring it live"}
    outcome = live[went] if isinstance(went, bool) else "whether it went live is unknown"
    return _join(f"by {by},", outcome, _attempt(d))


def _timed_out(d: dict[str, Any]) -> str:
    return _join(timed_out_reason(float(d.get("waited_s") or 0), d.get("last_phase")), _attempt(d))


def _stopped(d: dict[str, Any]) -> str:
    why = "; ".join(clip(str(d[k]), 100) for k in ("reason", "fix") if d.get(k))
    return f"pid {d.get('pid')}: {why or 'stopped'}"


def _not_started(d: dict[str, Any]) -> str:
    return "; ".join(clip(str(d[k]), 100) for k in ("reason", "fix") if d.get(k)) or "-"


def _disagreed(d: dict[str, Any]) -> str:
    said = f"the database says {d.get('mysql_status') or '-'}, the API {d.get('api_phase') or '-'}"
    return said + (f": {clip(d['detail'], 80)}" if d.get("detail") else "")


def _ingested(d: dict[str, Any]) -> str:
    what = d.get("phase") or d.get("status") or "-"
    dep = f"deployment {_id(d.get('deployment_id'))}" if d.get("deployment_id") else ""
    return _join("from", d.get("source") or "webhook", "says", what, dep)


def _reason_only(d: dict[str, Any]) -> str:
    return clip(str(d.get("reason") or ""), 120)


_EVENT_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "PushRecorded": _push_recorded,
    "PushConfirmed": _reason_only,
    "PushRejected": _reason_only,
    "MonitorStarted": _monitor_started,
    "DeploymentPolled": _polled,
    "LogsFetched": _logs_fetched,
    "SourcesDisagreed": _disagreed,
    "DeploymentSucceeded": _succeeded,
    "DeploymentFailed": _failed,
    "DeploymentSuperseded": _superseded,
    "MonitorTimedOut": _timed_out,
    "MonitorStopped": _stopped,
    "MonitorNotStarted": _not_started,
    "NotificationIngested": _ingested,
}


def event_json(e: EventRecord) -> str:
    return json.dumps(e.to_dict(), separators=(",", ":"), sort_keys=True)


# -- tracker stats -----------------------------------------------------------------------------

_BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class Comparison:
    """Our calls against a fixed poll's on the same deployments, for the text: the stats' own
    (`fixed_10s`), or the demo's, whose compressed schedule is compared with the same baseline
    compressed alike."""

    interval_s: float
    deployments: int
    fixed_calls: int
    our_calls: int
    our_lag_s: float | None  # our mean detection lag, when the platform's times were known
    note: str = ""  # how the baseline was chosen, when it is not the plain 10 s
    fixed_lag_s: float | None = None  # the baseline's on the same deployments (else interval/2)


def comparison_of(stats: Stats) -> Comparison:
    f = stats.fixed_10s
    return Comparison(
        f.interval_s, f.deployments, f.api_calls, f.our_api_calls, stats.detection_lag_s.mean
    )


def comparison_line(c: Comparison) -> str:
    """`a fixed 10 s poll would have made 8 calls; this made 39, 4.9× more, for a mean
    detection lag of 1.1 s against about 5 s` (which way it goes, in words)."""
    every = f"a fixed {seconds(c.interval_s)} poll{c.note}"
    if c.fixed_calls == 0:
        return f"{every}: no finished deployment with API calls to compare"
    text = f"{every} would have made {count(c.fixed_calls, 'call')}; this made {c.our_calls:,}"
    if c.our_calls > c.fixed_calls:
        text += f", {c.our_calls / c.fixed_calls:.1f}× more"
    elif c.our_calls < c.fixed_calls and c.our_calls:
        text += f", {c.fixed_calls / c.our_calls:.1f}× fewer"
    elif c.our_calls == c.fixed_calls:
        text += ", as many"
    if c.our_lag_s is not None:
        text += f", for a mean detection lag of {seconds(c.our_lag_s)}" + (
            f" against about {seconds(c.interval_s / 2)}"
            if c.fixed_lag_s is None
            else f" against {seconds(c.fixed_lag_s)}"
        )
    return text


_WIDTH = 14  # the label column of the outcome and call lines


def stats_text(stats: Stats, colour: bool = False, comparison: Comparison | None = None) -> str:
    """An aligned table and a histogram of push-to-live times; ANSI only when `colour`.

    Labels are padded before they are styled, so colour never counts toward a width.
    `comparison` replaces the fixed 10 s line (the demo's compressed schedule)."""

    def head(text: str, width: int = 0) -> str:
        pad = " " * max(width - len(text), 0)
        return (style(text, "1") if colour else text) + pad

    lines = [head(_title(stats)), ""]
    lines += _outcome_lines(stats.deployments, head)
    lines += ["", *_duration_lines(stats, head), ""]
    lines += _call_lines(stats, head, comparison or comparison_of(stats))
    bars = _histogram_lines(stats.durations.push_to_live_histogram)
    if bars:
        lines += ["", head(f"push to live ({stats.durations.push_to_live.count} deployments)")]
        lines += bars
    return "\n".join(lines)


def _title(stats: Stats) -> str:
    scope = [f"since {stats.since}" if stats.since else "all time"]
    if stats.branch:
        scope.append(f"branch {stats.branch}")
    return f"Deployment stats ({', '.join(scope)})"


def _outcome_lines(d: Deployments, head: Any) -> list[str]:
    if d.total == 0:
        return [f"{head('deployments', _WIDTH)} none"]
    counts = [
        ("succeeded", d.succeeded), ("failed", d.failed), ("canceled", d.canceled),
        ("superseded", d.superseded), ("timed out", d.timed_out), ("rejected", d.rejected),
        ("pending or in progress", d.in_progress),
    ]  # fmt: skip
    shown = ", ".join(f"{n:,} {name}" for name, n in counts if n)
    rate = "-" if d.success_rate is None else f"{d.success_rate * 100:.1f} %"
    live = d.succeeded + d.superseded_live
    why = f"; {d.superseded_live:,} superseded by a live successor" if d.superseded_live else ""
    return [
        f"{head('deployments', _WIDTH)} {d.total:,} ({shown})",
        f"{'success rate':<{_WIDTH}} {rate} ({live:,} of {d.finished:,} finished went live{why})",
    ]


def _duration_lines(stats: Stats, head: Any) -> list[str]:
    cols = ("count", "mean", "p50", "p90", "p95", "max")
    rows = [("push to live", stats.durations.push_to_live)]
    rows += [(f"  {name}", s) for name, s in stats.durations.phases.items()]
    rows.append(("detection lag", stats.detection_lag_s))
    width = max(16, *(len(label) + 2 for label, _ in rows))
    out = [head("durations", width) + head("".join(f"{c:>9}" for c in cols))]
    for label, s in rows:
        cells = [f"{s.count:,}"] + [duration(getattr(s, c)) for c in cols[1:]]
        out.append(f"{label:<{width}}" + "".join(f"{c:>9}" for c in cells))
    return out


def _call_lines(stats: Stats, head: Any, comparison: Comparison) -> list[str]:
    a, q, e = stats.api_calls, stats.db_queries, stats.errors
    per = a.per_deployment
    w = _WIDTH
    return [
        f"{head('api calls', w)} {a.total:,}{_by(a.by_source)}",
        f"{'  per deploy':<{w}} mean {_num(per.mean)}, p50 {_num(per.p50)}, max {_num(per.max)}",
        f"{'  last minute':<{w}} {a.last_minute:,} of {a.limit_per_minute:,}",
        f"{'  last hour':<{w}} {a.last_hour:,} of {a.limit_per_hour:,}",
        f"{'  remaining':<{w}} {_remaining(a)}",
        f"{head('db queries', w)} {q.total:,}{_by(q.by_source)}",
        f"{head('errors', w)} {e.total:,}{_by(e.by_kind)}, {e.retries:,} retries",
        f"{head('compared', w)} {comparison_line(comparison)}",
    ]


def _histogram_lines(buckets: Sequence[Bucket]) -> list[str]:
    if not buckets:
        return []
    top = max(b.count for b in buckets) or 1
    out = []
    for b in buckets:
        eighths = round(b.count / top * _BAR_WIDTH * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        span = f"{duration(b.start_s)}-{duration(b.end_s)}"
        out.append(f"  {span:>15} {bar:<{_BAR_WIDTH}} {b.count:,}")
    return out


def _by(counts: Mapping[str, int]) -> str:
    return f" ({', '.join(f'{k} {v:,}' for k, v in counts.items())})" if counts else ""


def _remaining(a: ApiCalls) -> str:
    if a.ratelimit_remaining is None:
        return "ratelimit-remaining never seen"
    return f"ratelimit-remaining {a.ratelimit_remaining:,} (at {a.ratelimit_seen_at})"


def _num(value: float | None) -> str:
    """A count's mean or percentile: whole, or with one decimal."""
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
