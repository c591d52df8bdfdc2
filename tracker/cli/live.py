"""`tracker wait`, `tracker events --follow` and `tracker monitor`: watching the log change.

On a terminal the wait view repaints one line in place; to a pipe it prints one plain line per
change and a final line, with no escape codes.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

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
from tracker.errors import ConfigError, LeaseLostError, TrackerError
from tracker.projections import exit_code_of
from tracker.read.status import DeploymentStatus
from tracker.words import seconds

if TYPE_CHECKING:
    from tracker.log.base import Lease
    from tracker.monitor.lease import AppLease
    from tracker.monitor.lock import AppLock

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
            tracker.pull_shared()  # fleet mode: the other machines' events too
            for event in tracker.events(ref, after_seq=after):
                show(fmt(event), flush=True)
                after = event.seq
    except KeyboardInterrupt:
        return


def monitor_command(
    tracker: Tracker, ref: str, *, detach: bool, colour: bool, watch: bool = False
) -> int:
    """`tracker monitor REF [--detach] [--watch]`."""
    sha = tracker.resolve(ref)
    try:
        settings = tracker.settings
    except ConfigError as exc:
        record_not_started(tracker, sha, exc)
        raise
    if not settings.sources():
        raise ConfigError(
            "no deployment source is configured: set DIGITALOCEAN_TOKEN and TRACKER_DO_APP_ID,"
            " or TRACKER_MYSQL_URL (see `tracker doctor`)"
        )
    if tracker.store.deployment(sha) is None:
        tracker.take_in_spool()
        if tracker.store.deployment(sha) is None:
            say(f"no push of {sha[:7]} in the log; record one with `tracker push {sha[:7]}`")
            return 3
    if detach:
        from tracker.procs import spawn_detached

        pid = spawn_detached(tracker.db_path, sha, repo=tracker.repo)
        say(f"monitor for {sha[:7]} started in the background (pid {pid})")
        return 0
    return run_foreground(tracker, sha, watch=watch)


def record_not_started(tracker: Tracker, sha: str, exc: ConfigError) -> None:
    """Say in the commit's stream why no monitor runs (a setting it refuses), so that `status`
    and `wait` say it in their headline; nothing when the log has no push of the commit."""
    from tracker.events import MonitorNotStarted

    try:
        row = tracker.store.deployment(sha)
        if row is None:
            tracker.take_in_spool()
            row = tracker.store.deployment(sha)
        if row is not None and not row.terminal:
            tracker.store.append(sha, MonitorNotStarted(reason=str(exc), fix=exc.fix))
    except TrackerError as failed:  # the refusal is what we exit with; say this one too
        say(f"tracker: could not record why no monitor runs: {failed}", stream=sys.stderr)


def run_foreground(tracker: Tracker, sha: str, *, watch: bool = False) -> int:
    """Follow one commit in the foreground through its app's watcher, printing its progress;
    the exit code of its verdict. This process becomes the watcher when none runs (then, with
    `watch`, it stays the watcher until no push of the app is open; without, it hands the
    watch to a detached watcher once its commit is decided and others are still open). When
    another process is the watcher, this one follows the commit in the log, and takes over
    should the watcher die. In fleet mode the watcher holds the app's fleet lease too (one
    watcher per app fleet-wide, `tracker.monitor.lease`): another machine's unexpired lease
    is followed as a local watcher is; losing the lease stops this watcher (exit 0)."""
    from tracker.monitor.lock import AppLock, app_key
    from tracker.monitor.watcher import app_of, open_pushes

    row = tracker.store.deployment(sha)
    if row is not None and row.terminal:
        # Decided while this monitor started (more than one may be started for a push:
        # its confirmer and a reader that settled its record): nothing left to follow.
        print(f"{sha[:7]} is decided already: {row.state}")
        return exit_code_of(row.state, row.superseded_went_live)
    app = app_of(tracker.settings)
    lock = AppLock(tracker.db_path.parent, app_key(*app))
    while True:
        holder = lock.acquire()
        if holder is None:
            watcher = _Watching(tracker, app)
            other = watcher.take_lease()
            if other is None:
                try:
                    watcher.run(sha, until=None if watch else sha)
                except LeaseLostError as lost:
                    say(f"{sha[:7]} {lost}: the watch is theirs now", flush=True)
                    return 0
                finally:
                    watcher.close()
                    lock.release()
                # A push recorded while we were leaving found the lock (or the lease) still
                # held, and its monitor went away: look again, now that both are free.
                tracker.pull_shared()
                left = open_pushes(tracker.store, tracker.clock.now(), repo=tracker.repo)
                if left and watch:
                    continue
                if left:
                    from tracker.procs import spawn_detached

                    spawn_detached(tracker.db_path, left[0], repo=tracker.repo)
                break
            watcher.close()
            lock.release()
            if watch:
                say(
                    f"{sha[:7]} is followed by its app's watcher on another machine:"
                    f" {other.holder} on {other.host} (fence {other.fence}), its lease good for"
                    f" {seconds(max(other.remaining_s, 0.0))} more"
                )
                return 0
        elif watch:
            say(
                f"{sha[:7]} is followed by its app's watcher: pid {holder.pid} on {holder.host}"
                f" since {holder.started_at}"
            )
            return 0
        if _follow_in_log(tracker, sha, lock, app):
            break
    row = tracker.store.deployment(sha)
    if row is None:
        return 3
    return exit_code_of(row.state, row.superseded_went_live)


class _Watching:
    """This process as the app's watcher: its own log (and, in fleet mode, the app's lease)."""

    def __init__(self, tracker: Tracker, app: tuple[str, str]) -> None:
        from tracker.log import open_log
        from tracker.log.fleet import FleetLog
        from tracker.monitor.loop import max_wait_of

        # Nobody waits on a watcher: it waits for the log's lock as long as a deployment may
        # take, rather than die and leave its commits stale (TRACKER_LOCK_TIMEOUT is for the
        # commands people wait on). Its own log, opened with that patience: the reader's is
        # not touched.
        self.tracker = tracker
        settings = tracker.settings
        patience = max(tracker.read_settings.lock_timeout, max_wait_of(tracker.store, settings))
        self.log = open_log(tracker.db_path, clock=tracker.clock, lock_timeout=patience)
        self.lease: AppLease | None = None
        if isinstance(self.log, FleetLog):
            from tracker.log.mysql_lease import lease_ttl
            from tracker.monitor.lease import AppLease, lease_key

            self.lease = AppLease(self.log, lease_key(*app), ttl=lease_ttl())

    def take_lease(self) -> Lease | None:
        """Fleet mode: take the app's lease; another machine's unexpired lease when it has one
        (None: ours, degraded, or no fleet mode)."""
        return self.lease.take() if self.lease is not None else None

    def run(self, sha: str, *, until: str | None) -> None:
        """Be the app's watcher until nothing is open (or `until` is decided)."""
        from tracker.log.fleet import FleetLog
        from tracker.monitor.loop import build_sources
        from tracker.monitor.watcher import Watcher, stop_on_signals

        machine = self.log.machine if isinstance(self.log, FleetLog) else None
        sources = build_sources(self.tracker.settings, self.tracker.clock, machine=machine)

        def show(of: str, line: str) -> None:
            if of == sha or until is None:
                say(f"{of[:7]} {line}", flush=True)

        if self.lease is not None:
            self.lease.start()
        watcher = Watcher(
            self.log,
            sources,
            settings=self.tracker.settings,
            clock=self.tracker.clock,
            repo=self.tracker.repo,
            progress=show,
            asked=[sha],
            guard=self.lease.check if self.lease is not None else None,
        )
        try:
            with stop_on_signals(self.log, watcher):
                watcher.run(until=until)
        finally:
            for source in sources:
                source.close()

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
        self.log.close()


def _follow_in_log(tracker: Tracker, sha: str, lock: AppLock, app: tuple[str, str]) -> bool:
    """Show the commit's progress from the log while another process watches it; True once it
    is decided, False when the watcher's lock (and, in fleet mode, its lease) is free and the
    commit still open (resume it)."""
    after = tracker.store.last_seq()
    while True:
        tracker.pull_shared()  # fleet mode: the watcher may be another machine's
        for event in tracker.events(sha, after_seq=after):
            say(event_line(event), flush=True)
            after = event.seq
        row = tracker.store.deployment(sha)
        if row is None or row.terminal:
            return True
        if lock.free() and tracker.lease_free(*app):
            return False
        tracker.clock.sleep(FOLLOW_EVERY_S * 4)
