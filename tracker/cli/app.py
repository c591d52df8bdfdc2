"""The `tracker` command: parse, call into the package, print, exit.

Each command is handed its log by the meta app (`_launcher`): a parameter annotated
`Annotated[Log, Parameter(parse=False)]` is not read from the command line, and the launcher
gives it a `core.Log` of `--db`, which the command opens when it is ready. A command that does
not declare one (`hooks ...`, `demo`) has nothing built for it; `doctor` is given the path and
checks the log itself. Each command calls one method, prints, and returns its exit code: this
wing alone decides exit codes (SPEC §4) and prints. Usage errors exit 64, never 2 (2 means
"in progress" here, whatever cyclopts would do by default).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import App, CycloptsError, Parameter, UnknownCommandError, UnusedCliTokensError

from tracker import __version__
from tracker.cli.core import (
    USAGE,
    Log,
    colour,
    decodable,
    emit,
    fail,
    guarded,
    one_line,
    print_status,
    status_command,
    status_json,
)
from tracker.cli.output import say
from tracker.errors import UsageError

if TYPE_CHECKING:
    from tracker.api import Tracker
    from tracker.read.status import DeploymentStatus

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a longer wait is a typo (milliseconds for seconds)
MAX_LIMIT = 2**63 - 1  # SQLite's largest integer
MAX_NOTIFICATION = 1_000_000  # bytes of JSON on `tracker ingest`'s standard input
MAX_SINCE_S = 100 * 365 * 86400.0  # further back than any log: a typo

# The log a command works on, injected by `_launcher` (never read from the command line).
Injected = Annotated[Log, Parameter(parse=False)]

app = App(
    name="tracker",
    help="Follow every push to the deployed branch until it is live or has failed.",
    version=__version__,
    help_format="plaintext",
    default_parameter=Parameter(negative=()),  # flags are --json, never --no-json/--no-no-monitor
)
hooks_app = App(
    name="hooks",
    help="Wire the push hook into a repository.",
    default_parameter=Parameter(negative=()),
)
app.command(hooks_app)


def parse_since(text: str, now: float) -> float:
    """`--since 90s|30m|12h|7d|2w|300` (fractions welcome): the epoch time that far before now.
    The one duration parser of every option and setting (`config.parse_duration`)."""
    from tracker.config import parse_duration

    seconds = parse_duration(
        text, "--since", maximum=MAX_SINCE_S, error=UsageError, example="90s, 30m, 12h or 7d"
    )
    return now - seconds


# -- read commands ------------------------------------------------------------------------------


@app.command(usage="Usage: tracker status [REF] [OPTIONS]")
def status(
    ref: str = "HEAD", /, *, json: bool = False, offline: bool = False, log: Injected
) -> int:
    """Show whether the deployment of a commit is live.

    Exit codes: 0 live (or superseded by a live successor that contains it), 1
    failed, canceled, timed out or rejected, 2 pending or in progress, 3 not
    found, 64 usage error, 74 log unreadable, 75 log busy.

    Parameters
    ----------
    ref
        A full or abbreviated SHA, or any git revision.
    json
        Print the status as one JSON object.
    offline
        Fleet mode: answer from this machine's cache and outbox only, never pulling.
    """
    return status_command(ref, as_json=json, log=log, offline=offline)


@app.command(usage="Usage: tracker wait [REF] [OPTIONS]")
def wait(ref: str = "HEAD", /, *, timeout: str = "30", json: bool = False, log: Injected) -> int:
    """Wait a bounded time for the deployment of a commit to finish.

    Prints one line per change (a live view on a terminal); a failure ends with
    its reason and the last log lines. At the timeout it says the deployment is
    still in progress and exits 2: it warns, it does not block. A stale monitor
    is resumed; a commit nothing can watch returns at once, with why and the
    fix.

    Exit codes: as `tracker status` (0 live, 1 failed, 2 still in progress or
    not watched, 3 not found, 64 usage error, 74 log unreadable, 75 log busy).

    Parameters
    ----------
    ref
        A full or abbreviated SHA, or any git revision.
    timeout
        How long to wait (90, 90s, 1.5m, 8m, 2h, 1d); 0 waits until the end.
    json
        Print the final status as one JSON object (no progress lines).
    """
    from tracker.cli.live import wait_command
    from tracker.config import parse_duration

    seconds = parse_duration(
        timeout, "--timeout", maximum=MAX_TIMEOUT_S, error=UsageError, example="30, 90s or 5m"
    )
    with log.open() as tracker:
        st = wait_command(tracker, ref, seconds, as_json=json, colour=colour())
    if json:
        emit(status_json(st))
    return st.exit_code


@app.command(usage="Usage: tracker events [REF] [OPTIONS]")
def events(
    ref: str | None = None,
    /,
    *,
    follow: bool = False,
    json: bool = False,
    limit: int | None = None,
    offline: bool = False,
    log: Injected,
) -> int:
    """Print the event log, one line per event, newest last.

    Exit codes: 0, 64 usage error, 74 log unreadable.

    Parameters
    ----------
    ref
        Only the events of this commit.
    follow
        Keep printing new events as they are recorded (Ctrl-C stops).
    json
        One JSON object per line (NDJSON).
    limit
        Only the last N events.
    offline
        Fleet mode: this machine's cache only, never pulling (not with --follow).
    """
    from tracker.cli.live import events_command

    _not_empty(ref, "a ref")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be a whole number from 1 to {MAX_LIMIT}, not {limit}")
    if offline and follow:
        raise UsageError("--offline and --follow do not go together: --follow pulls as it goes")
    with log.open() as tracker:
        if not offline:
            _pull_first(tracker)
        events_command(tracker, ref, follow=follow, as_json=json, limit=limit)
    return 0


def _pull_first(tracker: Tracker) -> None:
    """Fleet mode: one pull bounded by `TRACKER_SYNC_DEADLINE` before the events are listed
    (as `status` pulls: the log as far as the fleet has it, not as far as this machine last
    looked); when it cannot, say as of when and why on stderr (stdout stays the events)."""
    from tracker.cli.text import shared_log_line
    from tracker.log.fleet import FleetLog

    store = tracker.store
    if not isinstance(store, FleetLog) or tracker.pull_shared():
        return
    report = store.shared_report(pulled=False)
    if report["unreachable"]:
        say(f"tracker: {shared_log_line(report)}", stream=sys.stderr)


@app.command
def stats(
    *, json: bool = False, since: str | None = None, branch: str | None = None, log: Injected
) -> int:
    """Deployments by outcome, durations, API calls, rate limits, errors, detection lag.

    Exit codes: 0, 64 usage error, 74 log unreadable.

    Parameters
    ----------
    json
        Print everything as one JSON object.
    since
        Only deployments pushed within this duration (e.g. 90s, 30m, 12h, 7d).
    branch
        Only deployments of this branch.
    """
    from tracker.cli.text import stats_text
    from tracker.gitutil import check_branch

    if branch is not None:
        check_branch(branch)
    with log.open() as tracker:
        window = None if since is None else parse_since(since, now=tracker.clock.now())
        result = tracker.stats(since=window, branch=branch)
    if json:
        emit(result.to_dict())
    else:
        say(stats_text(result, colour=colour()))
    return 0


@app.command
def rebuild(*, log: Injected) -> int:
    """Recompute the projections from the log alone and report any difference.

    Exit codes: 0 (also when it fixed a difference), 74 log unreadable, 75 log
    busy.
    """
    with log.open() as tracker:
        report = tracker.rebuild()
    say(f"replayed {report.events} events into {report.rows} deployments")
    if not report.clean:
        shown = ", ".join(s[:7] for s in report.differing[:10])
        more = ", ..." if len(report.differing) > 10 else ""
        fixed = [
            f"{len(report.differing)} deployment rows ({shown}{more})" if report.differing else "",
            f"{report.calls_differing} source-call rows" if report.calls_differing else "",
            f"{report.measures_differing} measure rows" if report.measures_differing else "",
            f"{report.totals_differing} totals rows" if report.totals_differing else "",
        ]
        say("fixed what differed from the log: " + ", ".join(f for f in fixed if f))
    else:
        say("the projections matched the log exactly")
    return 0


@app.command
def migrate(*, shared: bool = False) -> int:
    """Run the fleet's shared log's schema migrations (an administrator's step).

    Exit codes: 0, 64 without --shared, 74 the shared log unreachable, 75 another
    migration holds the lock, 78 fleet mode off (TRACKER_LOG_URL unset).

    Parameters
    ----------
    shared
        Migrate the shared log at TRACKER_LOG_URL (under a named lock).
    """
    from tracker.cli.fleet import migrate_command

    return migrate_command(shared=shared)


@app.command
def sync(*, follow: bool = False, interval: str = "2s", log: Injected) -> int:
    """Forward this machine's outbox to the shared log and pull it into the cache.

    Exit codes: 0, 74 the shared log unreachable (without --follow), 78 fleet
    mode off (TRACKER_LOG_URL unset).

    Parameters
    ----------
    follow
        Keep syncing every --interval until interrupted (keeps a cache warm).
    interval
        How often --follow syncs.
    """
    from tracker.cli.fleet import sync_command
    from tracker.config import parse_duration

    every = parse_duration(interval, "--interval", positive=True, error=UsageError, example="2s")
    return sync_command(follow=follow, interval=every, log=log)


@app.command
def query(
    sql: str,
    *,
    param: Annotated[
        list[tuple[str, str]] | None, Parameter(name=["--param", "-p"], negative="")
    ] = None,
    json: bool = False,
    nl: bool = False,
    csv: bool = False,
    table: bool = False,
    log: Injected,
) -> int:
    """Run read-only SQL over the log and its projections (`deployment_status`, `events`).

    The spool is taken in first, so the answer is as current as `tracker status`. A statement
    that would write is refused (exit 64). Default output: a table on a terminal, JSON (an array
    of objects) in a pipe.

    Parameters
    ----------
    sql
        One SELECT statement; `:name` stands for the value given by `-p name VALUE`.
    param
        `-p NAME VALUE` binds VALUE, as text, to `:NAME` (repeatable); never interpolated.
    json
        A JSON array of objects.
    nl
        One JSON object per line (NDJSON).
    csv
        CSV with a header row.
    table
        Aligned columns.
    """
    from tracker.cli.query import output_format, query_lines

    fmt = output_format(json=json, nl=nl, csv=csv, table=table, terminal=sys.stdout.isatty())
    with log.open() as tracker:
        for line in query_lines(tracker, sql, param or (), fmt):
            print(line)
    return 0


# -- write commands -----------------------------------------------------------------------------


@app.command(usage="Usage: tracker push [REF] [OPTIONS]")
def push(
    ref: str = "HEAD",
    /,
    *,
    branch: str | None = None,
    remote: Annotated[str, Parameter(show_default=False)] = "",
    no_monitor: bool = False,
    again: bool = False,
    log: Injected,
) -> int:
    """Record a push made by other means, and start its monitor.

    A push already in the log (the hook saw it, or this ran twice) is not
    recorded again; say `--again` when the commit really was pushed once more (a
    rollback made by other means).

    Exit codes: 0 recorded (or already recorded), 64 usage error, 74 log
    unreadable, 75 log busy.

    Parameters
    ----------
    ref
        The commit that was pushed.
    branch
        The branch it was pushed to (default: the deployed branch).
    remote
        The remote it was pushed to (default: none recorded).
    no_monitor
        Only record the push; start no monitor.
    again
        The commit was pushed once more: a new attempt, judged by a new deployment.
    """
    _not_empty(branch, "--branch")
    with log.open() as tracker:
        st = tracker.record_push(
            ref, branch=branch, remote=remote, monitor=not no_monitor, source="cli", again=again
        )
    from tracker.cli.text import already_recorded, verdict

    if st.already_recorded:
        say(already_recorded(st))
    else:
        say(
            f"recorded the push of {st.sha}"
            + (f" (attempt {st.attempt})" if st.attempt > 1 else "")
        )
        say(verdict(st))
    return 0


@app.command(usage="Usage: tracker monitor REF [OPTIONS]")
def monitor(ref: str, /, *, detach: bool = False, watch: bool = False, log: Injected) -> int:
    """Poll the platform for a commit until its deployment is live or has failed.

    It follows the commit through its app's watcher (one per app per log,
    which follows every open push of the app): when none runs, this process
    becomes it; when one does, this one shows the commit's progress from
    the log.

    Exit codes: as `tracker status` for the verdict (0 live, 1 failed, 2 still
    in progress, 3 not found), 64 usage error, 69 a source unreachable or
    refusing our credentials, 74 log unreadable, 78 no deployment source
    configured.

    Parameters
    ----------
    ref
        The commit to follow.
    detach
        Run in the background, detached from this terminal.
    watch
        Stay the app's watcher until no push of it is open; when another
        process is the watcher, exit 0 at once (how hooks and readers start it).
    """
    from tracker.cli.live import monitor_command

    with log.open() as tracker:
        return monitor_command(tracker, ref, detach=detach, colour=colour(), watch=watch)


@app.command
def ingest(*, json: bool = False, log: Injected) -> int:
    """Append a deployment notification read as a JSON object from standard input.

    It needs `sha` and `status` or `phase`; `deployment_id`, `source` and
    `log_tail` are optional. A terminal notification stops a running monitor at
    once.

    Exit codes: as `tracker status` for the commit afterwards (0, 1, 2), 64
    malformed input or a commit with no push in the log, 74 log unreadable.

    Parameters
    ----------
    json
        Print the resulting status as JSON.
    """
    from tracker.monitor.ingest import status_for_notification

    raw = getattr(sys.stdin, "buffer", None)  # bytes, to say when they are not UTF-8
    try:
        text = (
            raw.read(MAX_NOTIFICATION + 1).decode() if raw else sys.stdin.read(MAX_NOTIFICATION + 1)
        )
    except UnicodeDecodeError as exc:
        raise UsageError(f"the notification is not UTF-8 text (byte {exc.start})") from None
    if len(text) > MAX_NOTIFICATION:
        raise UsageError(f"the notification is larger than {MAX_NOTIFICATION} bytes")
    note = status_for_notification(text)
    with log.open() as tracker:
        st = tracker.ingest(note)
    return print_status(st, as_json=json) if json else _say(st)


def _say(st: DeploymentStatus) -> int:
    from tracker.cli.text import verdict

    say(verdict(st))
    return st.exit_code


@app.command
def doctor(*, json: bool = False, log: Injected) -> int:
    """Check the log, the lock, the hook and each deployment source; say what to fix.

    In fleet mode (TRACKER_LOG_URL) also the shared log: reachable, TLS,
    privileges, schema version, @@max_connections, clock skew, the outbox.

    Exit codes: 0 all well (warnings allowed), 69 a source unreachable or
    refusing our credentials, 74 log unreadable (or the shared log unusable),
    75 lock busy, 78 configuration error.

    Parameters
    ----------
    json
        Print the checks as JSON.
    """
    from tracker.cli.doctor import doctor_command

    return doctor_command(log.db, as_json=json)  # the path only: doctor opens and checks it


@app.command
def demo(*, keep: bool = False) -> int:
    """Run the whole job on a simulated platform: no credentials, no network beyond loopback.

    Exit codes: 0 every commit ended as scripted, 1 otherwise.

    Parameters
    ----------
    keep
        Keep the temporary repository and log, and print where they are.
    """
    from tracker.cli.demo import run_demo

    return run_demo(keep=keep, colour=colour())


# -- hooks --------------------------------------------------------------------------------------


@hooks_app.command
def install(*, husky: bool = False, pre_commit: bool = False) -> int:
    """Install the pre-push hook (chaining any existing one).

    Exit codes: 0 installed, 64 not in a git repository (or husky in use without
    --husky).

    Parameters
    ----------
    husky
        Add the hook to `.husky/pre-push` instead (husky ignores .git/hooks).
    pre_commit
        Show how to use the hook through the pre-commit framework.
    """
    from tracker.push import install as hooks_install

    for line in hooks_install.install(Path("."), husky=husky, pre_commit=pre_commit):
        say(line)
    return 0


@hooks_app.command
def uninstall() -> int:
    """Remove what `tracker hooks install` added, and only that."""
    from tracker.push import install as hooks_install

    for line in hooks_install.uninstall(Path(".")):
        say(line)
    return 0


@hooks_app.command(name="status")
def hooks_status(*, json: bool = False) -> int:
    """Show where the hook is installed and what it calls.

    Parameters
    ----------
    json
        Print as JSON.
    """
    from tracker.cli.doctor import hooks_status_command

    return hooks_status_command(Path("."), as_json=json)


# -- entry point --------------------------------------------------------------------------------


@app.meta.default
def _launcher(
    *tokens: Annotated[str, Parameter(show=False, allow_leading_hyphen=True)],
    db: Annotated[Path | None, Parameter(name="--db", help="The event log to use.")] = None,
) -> Any:
    command, bound, ignored = app.parse_args(tokens, exit_on_error=False, print_error=False)
    for name, hint in ignored.items():  # what the command declared `Parameter(parse=False)`
        if hint is Log:
            bound.arguments[name] = Log(db)
    return command(*bound.args, **bound.kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the process exit code."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    paths = {i + 1 for i, t in enumerate(tokens) if t == "--db"}  # a file name may be any bytes
    undecodable = next(
        (t for i, t in enumerate(tokens) if i not in paths and not decodable(t)), None
    )
    if undecodable is not None:  # bytes that are not UTF-8 (surrogate escapes): no ref or name
        return fail(USAGE, f"an argument is not valid UTF-8: {undecodable!r}")

    def call() -> object:
        try:
            return app.meta(
                tokens, exit_on_error=False, print_error=False, result_action="return_value"
            )
        except CycloptsError as exc:
            return fail(USAGE, _usage_message(exc, tokens))

    return guarded(call, lambda: _help_of(tokens))


def _not_empty(value: str | None, what: str) -> None:
    """An empty string given for an option is a mistake, not "the default"."""
    if value is not None and not value.strip():
        raise UsageError(f"{what} must not be empty")


def _usage_message(exc: CycloptsError, tokens: list[str]) -> str:
    """One line: what was wrong, in our words where cyclopts' are unclear, and the help of the

    command it concerns (`run 'tracker status --help'`).
    """
    words = [t for i, t in enumerate(tokens) if i == 0 or tokens[i - 1] != "--db"]
    chain = _command_of([t for t in words if not t.startswith("-")])
    text = one_line(str(exc)).rstrip(".")
    if isinstance(exc, UnknownCommandError) and not chain:
        first = next((t for t in words if t != "--db"), "")
        if first.startswith("-"):
            text = f"unknown option {first.split('=', 1)[0]}"
    elif isinstance(exc, UnusedCliTokensError):
        extra = " ".join(str(t) for t in getattr(exc, "unused_tokens", []) or [])
        text = f"unexpected argument{'s' if ' ' in extra else ''}: {extra}" if extra else text
    where = " ".join(["tracker", *chain])
    return f"{text} (run '{where} --help')"


def _help_of(tokens: list[str]) -> str:
    """`tracker CMD --help` for the command the tokens name (`--db PATH` skipped)."""
    words = [t for i, t in enumerate(tokens) if i == 0 or tokens[i - 1] != "--db"]
    return " ".join(
        ["tracker", *_command_of([t for t in words if not t.startswith("-")]), "--help"]
    )


def _command_of(words: list[str]) -> list[str]:
    """The command (and subcommand) that the first words name, as far as they name one."""
    found: list[str] = []
    current = app
    for word in words:
        try:
            current = current[word]
        except Exception:  # cyclopts raises its own error for a name that is no command
            break
        found.append(word)
    return found
