"""The Python face of the tracker, for agents and managers: `from tracker import Tracker`.

Every method returns frozen dataclasses with the same fields as the CLI's JSON output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker import gitutil
from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.errors import TrackerError, UsageError
from tracker.events import PushRecorded
from tracker.log import fleet_url
from tracker.log.sqlite import SQLiteLog
from tracker.procs import host, monitor_alive
from tracker.projections import TERMINAL_STATES, DeploymentRow, exit_code_of, starts_attempt
from tracker.read.status import (
    NO_SOURCE,
    NOT_FOUND,
    DeploymentStatus,
    EventRecord,
    may_be_unreachable,
    may_be_unwatched,
    status_of,
)
from tracker.words import count, seconds

if TYPE_CHECKING:
    from tracker.config import ReadSettings, Settings
    from tracker.log.base import Lease
    from tracker.log.fleet import FleetLog
    from tracker.log.sqlite import RebuildReport
    from tracker.read.stats import Stats

# Error kinds that mean a source was never reached, as a noun and its plural.
UNREACHABLE_KINDS = {
    "connection": ("connection error", "connection errors"),
    "timeout": ("timeout", "timeouts"),
}
READ_WAIT_S = 0.5  # a reader waits this long for the lock to take in the spool, then reads
RESUME_GRACE_S = 10.0  # `wait` gives a monitor it started this long to say it runs (or why not)


class Tracker:
    """The log of one repository (or of any `db_path`), and what can be asked of it."""

    def __init__(
        self,
        db_path: Path | str,
        *,
        repo: Path | str | None = None,
        settings: Settings | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db_path = Path(db_path)
        self.repo = Path(repo) if repo is not None else None
        self.clock = clock
        self._settings = settings
        self._read_settings: ReadSettings | None = None
        self._source_names: list[str] | None = None
        url = fleet_url()
        if url is None:
            self.store: SQLiteLog | FleetLog = SQLiteLog(
                self.db_path,
                clock=clock,
                lock_timeout=self.read_settings.lock_timeout,
                synchronous=self.read_settings.synchronous,
            )
        else:  # fleet mode (SPEC §10): the log is the cache of the shared one, plus an outbox
            from tracker.log.fleet import FleetLog

            self.store = FleetLog.open(
                self.db_path,
                url,
                clock=clock,
                lock_timeout=self.read_settings.lock_timeout,
                synchronous=self.read_settings.synchronous,
            )

    @classmethod
    def open(
        cls, repo: Path | str = ".", *, db: Path | str | None = None, **kwargs: Any
    ) -> Tracker:
        """The tracker of the repository at `repo`; `db` or `TRACKER_DB` override the location."""
        return cls(locate_db(repo, db), repo=gitutil.toplevel(repo) or Path(repo), **kwargs)

    @property
    def settings(self) -> Settings:
        """Every setting, validated: what the monitor needs (`ConfigError` when one is bad)."""
        if self._settings is None:
            from tracker.config import load_settings

            self._settings = load_settings(self.repo)
        return self._settings

    @property
    def read_settings(self) -> ReadSettings:
        """What reads and recording a push need (SPEC §4: a setting only the monitor uses never
        stops them); a broken settings file is in its `warnings`, not an error."""
        if self._read_settings is None:
            from tracker.config import ReadSettings, load_read_settings

            if self._settings is not None:
                self._read_settings = ReadSettings.of(self._settings)
            else:
                self._read_settings = load_read_settings(self.repo)
        return self._read_settings

    @property
    def warnings(self) -> tuple[str, ...]:
        """Settings files (or values in them) that are broken and not used, one line each."""
        return self.read_settings.warnings

    def monitor_ready(self) -> bool:
        """Whether a monitor started here would accept its settings."""
        from tracker.errors import ConfigError

        try:
            return bool(self.settings.sources())
        except ConfigError:
            return False

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def take_in_spool(self, *, wait: float | None = None) -> int:
        """Append the pushes the hook has spooled but nobody has recorded yet. With `wait`,
        give up after that many seconds when the log is busy (the records stay spooled)."""
        from tracker.push.intake import take_in

        if wait is None:
            return take_in(self.store, self.db_path.parent)
        with self.store.patience(wait):
            return take_in(self.store, self.db_path.parent)

    def _no_log(self) -> bool:
        """Whether there is no log yet and nothing spooled for one (a read then creates none)."""
        from tracker.push import spool

        lock = self.db_path.with_name(self.db_path.name + ".lock")
        if self.db_path.exists() or lock.exists():  # a log, or one being made
            return False
        above = self.db_path.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            return False  # not a place a log can be: the store says why (74)
        return not spool.record_paths(spool.spool_dir(self.db_path.parent))

    def resolve(self, ref: str = "HEAD") -> str:
        """The full SHA `ref` names (SPEC §5).

        A full 40-hex SHA is taken as it is, even where neither the repository nor the log has
        it; anything else must name exactly one commit, in the repository or (for an abbreviated
        SHA) in the log; otherwise `UsageError`.
        """
        ref = ref.strip()
        if gitutil.FULL_SHA.match(ref.lower()):
            return ref.lower()
        gitutil.check_rev(ref)
        found = gitutil.resolve_commit(ref, self.repo or ".") if self.repo else None
        if found:
            return found
        if ref == "HEAD" and gitutil.toplevel(self.repo or ".") is None:
            here = (self.repo or Path(".")).absolute()
            raise UsageError(f"{here} is not inside a git repository: name the commit (its SHA)")
        if gitutil.SHORT_SHA.match(ref) and not self._no_log():
            matches = self.store.shas_with_prefix(ref.lower())
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"the abbreviated SHA {ref} is ambiguous in the log")
        where = f"the repository at {self.repo}" if self.repo else "the log"
        raise UsageError(f"{gitutil.shown(ref)} does not name a commit in {where}")

    def status(
        self, ref: str = "HEAD", *, recent: int = 5, offline: bool = False, resume: bool = True
    ) -> DeploymentStatus:
        """The status of the commit `ref` names, answered from the log alone (no network).

        Reading needs no lock (WAL). When the log is too busy to take the spool in (its lock
        held, a writer stopped, another client's write transaction), a push still in the spool
        answers `pending`; `LockTimeoutError` (75) only when nothing can be read at all.

        In fleet mode (SPEC §10) the answer is from the cache plus the outbox, with one pull
        bounded by `TRACKER_SYNC_DEADLINE` only when it would be 2 or 3 (never with `offline`);
        `shared_log` says as of when, and why the shared log could not be reached. A log path
        below a missing directory is not pulled into (`_may_pull`). There a commit is `stale`
        when its app's watch lease has expired (not by a pid, meaningful only on its machine),
        and (with `resume`) an open commit whose lease expired is resumed: a watcher is started
        here, detached (SPEC §10: any machine's `status` resumes it)."""
        store = self.store
        if isinstance(store, SQLiteLog):
            return self._local_status(ref, recent)
        from tracker.log.fleet import sync_deadline

        with store.local_appends():
            st = self._local_status(ref, recent)
            pulled = False
            if st.exit_code in (2, NOT_FOUND) and not offline and self._may_pull():
                pulled = store.pull_within(sync_deadline()) is not None
                if pulled:
                    st = self._local_status(ref, recent)
        if resume and not offline:
            self._resume_expired(store, st)
        return dataclasses.replace(
            st, shared_log=store.shared_report(pulled=pulled, offline=offline)
        )

    def pull_shared(self) -> bool:
        """Fleet mode: one pull of the shared log bounded by `TRACKER_SYNC_DEADLINE` (what
        `events` does first and `events --follow` as it goes); False without fleet mode or when
        it could not (or may not: `_may_pull`)."""
        store = self.store
        if isinstance(store, SQLiteLog) or not self._may_pull():
            return False
        from tracker.log.fleet import sync_deadline

        return store.pull_within(sync_deadline()) is not None

    def _may_pull(self) -> bool:
        """Whether a read may pull into this machine's cache, and so make it: where the log's
        directory exists or can be made in one that does (as `mkdir` without `-p`: a fresh
        clone's `<git common dir>/tracker`, a new machine's `--db DIR/events.db`). A path
        below a missing directory (a mistyped `TRACKER_DB`) is not made by a read, as without
        fleet mode: the answer is then this machine's, nothing recorded."""
        parent = self.db_path.parent
        return parent.is_dir() or (not parent.exists() and parent.parent.is_dir())

    def _local_status(self, ref: str, recent: int) -> DeploymentStatus:
        self.take_in_spool(wait=READ_WAIT_S)
        sha = self.resolve(ref)
        if self._no_log():  # a mistyped TRACKER_DB is not created by a read
            reason = self._pushed_elsewhere(sha) or {
                "code": "no_log",
                "message": f"no log at {self.db_path} (nothing recorded)",
            }
            return DeploymentStatus(sha, sha[:7], None, "not_found", NOT_FOUND, reason=reason)
        spooled = self._unread_push(sha)
        if spooled is not None:
            return spooled
        row = self.store.deployment(sha)
        if row is None:
            return DeploymentStatus(
                sha, sha[:7], None, "not_found", NOT_FOUND, reason=self._pushed_elsewhere(sha)
            )
        events = self._records(sha, limit=recent, newest=True) if recent else []
        return self._status_of(row, events)

    def _unread_push(self, sha: str) -> DeploymentStatus | None:
        """`pending` from the newest spooled push of `sha` the log does not hold yet."""
        from tracker.push.intake import unread

        with self.store.patience(READ_WAIT_S):  # a log that must be created first waits no more
            records = unread(self.store, self.db_path.parent, sha)
        if not records:
            return None
        record = records[-1]
        return DeploymentStatus(
            sha=record.sha,
            short_sha=record.sha[:7],
            branch=record.branch,
            state="pending",
            exit_code=exit_code_of("pending"),
            pushed_at=iso(record.pushed_at),
            watched=bool(self._sources()),
            spooled=True,
            not_watched=None if self._sources() else NO_SOURCE,
        )

    def _status_of(self, row: DeploymentRow, recent: list[EventRecord]) -> DeploymentStatus:
        now = self.clock.now()
        alive = self._monitor_alive(row)
        watched = not may_be_unwatched(row, now, alive) or bool(self._sources())
        found = status_of(row, now, alive, watched, recent)
        if may_be_unreachable(found):
            unreachable = self._unreachable(row)
            if unreachable is not None:
                reason: dict[str, str | None] = {"code": "unreachable", "message": unreachable}
                return dataclasses.replace(found, reason=reason)
        return found

    def _app_lease(self) -> tuple[str, Lease | None] | None:
        """Fleet mode: the configured app's lease key and its lease as last read (its time
        left reckoned to now); None without fleet mode or with settings a watcher refuses."""
        store = self.store
        if isinstance(store, SQLiteLog):
            return None
        from tracker.monitor.lease import lease_key
        from tracker.monitor.watcher import app_of

        try:
            key = lease_key(*app_of(self.settings))
        except TrackerError:
            return None
        return key, store.lease(key)

    def lease_free(self, platform: str, app: str) -> bool:
        """Whether no watcher holds the app's fleet lease, as last pulled (True without fleet
        mode, and for a lease never taken): what a follower waits for before it takes over."""
        store = self.store
        if isinstance(store, SQLiteLog):
            return True
        from tracker.monitor.lease import lease_key

        lease = store.lease(lease_key(platform, app))
        return lease is None or lease.remaining_s <= 0

    def _monitor_alive(self, row: DeploymentRow) -> bool:
        """Whether the commit's watcher runs. In fleet mode, once a lease of its app is known:
        while the lease is unexpired (as last read, reckoned on this machine's clock), or when
        its holder is a watcher of this machine that still runs (its renewals cannot get
        through); else (single machine, no lease yet) the monitor's pid on this host."""
        if row.terminal or row.monitor_pid is None or isinstance(self.store, SQLiteLog):
            return monitor_alive(row.monitor_pid, row.monitor_host)  # (or it does not matter)
        found = self._app_lease()
        lease = found[1] if found is not None else None
        if lease is None:
            return monitor_alive(row.monitor_pid, row.monitor_host)
        if lease.remaining_s > 0:
            return True
        return lease.machine == self.store.machine and monitor_alive(lease.pid, lease.host)

    def _resume_expired(self, store: FleetLog, st: DeploymentStatus) -> None:
        """Fleet mode: start a watcher here, detached, for an open commit whose watcher's
        lease has expired (`stale`); once per `RESUME_GRACE_S` on this machine whoever asks.
        (A push never watched yet is left to its confirmer, and to `wait`.)"""
        if st.state != "stale" or not self._sources():
            return
        found = self._app_lease()
        if found is None or (found[1] is not None and found[1].remaining_s > 0):
            return
        try:
            if self.monitor_ready() and store.claim_resume(found[0], RESUME_GRACE_S):
                self.start_monitor(st.sha)
        except (TrackerError, OSError):  # the answer stands: the next reader tries again
            return

    def _sources(self) -> list[str]:
        """The configured sources, by which settings are set: a bad value does not hide one
        (its monitor refuses it and records why, which the headline then says)."""
        if self._source_names is None:
            from tracker.config import source_names

            if self._settings is not None:
                self._source_names = self._settings.sources()
            else:
                self._source_names = source_names(self.repo)
        return list(self._source_names)

    def _unreachable(self, row: DeploymentRow) -> str | None:
        """`the DigitalOcean API at URL was unreachable for 6 s (18 connection errors)` when no
        poll of the commit's newest attempt reached any source (only connection errors and
        timeouts), from its polls in the log; None when some source answered."""
        polls: dict[str, list[tuple[float, str | None]]] = {}
        waited = None
        for e in self.store.events(stream=row.sha, after_seq=row.first_seq - 1):
            if e.type == "MonitorTimedOut":
                waited = e.data.get("waited_s")
            if e.type != "DeploymentPolled" or e.data.get("attempt") not in (None, row.attempt):
                continue
            if e.data.get("ok") or e.data.get("error_kind") not in UNREACHABLE_KINDS:
                return None  # a source answered (or failed in a way that means it was reached)
            polls.setdefault(str(e.data.get("source")), []).append((e.at, e.data["error_kind"]))
        if not polls:
            return None
        times = [at for found in polls.values() for at, _ in found]
        span = waited if isinstance(waited, int | float) else max(times) - min(times)
        where = " and ".join(self._where(name) for name in sorted(polls))
        kinds: dict[str, int] = {}
        for found in polls.values():
            for _, kind in found:
                kinds[str(kind)] = kinds.get(str(kind), 0) + 1
        errors = ", ".join(count(n, *UNREACHABLE_KINDS[kind]) for kind, n in sorted(kinds.items()))
        return f"{where} {'was' if len(polls) == 1 else 'were'} unreachable for {seconds(span)}" + (
            f" ({errors})"
        )

    def _where(self, source: str) -> str:
        """A source in words, with where it is (no credentials): `the DigitalOcean API at URL`."""
        try:
            settings: Settings | None = self.settings
        except TrackerError:  # a setting the monitor rejects never stops `status`
            settings = None
        if source == "digitalocean":
            do = settings.do if settings is not None else None
            at = f" at {gitutil.strip_credentials(do.api_url)}" if do is not None else ""
            return f"the DigitalOcean API{at}"
        if source == "mysql":
            db = settings.mysql if settings is not None else None
            return "the MySQL database" + (f" at {db.host}:{db.port}" if db is not None else "")
        return f"the source {source}"

    def _pushed_elsewhere(self, sha: str) -> dict[str, str | None] | None:
        """For a commit the log never saw pushed: the remote branches that have it when none
        is the deployed branch (`not pushed to main (TRACKER_BRANCH)`); None otherwise."""
        if self.repo is None:
            return None
        found = gitutil.git(
            ["for-each-ref", "--contains", sha, "--format=%(refname:short)", "refs/remotes"],
            cwd=self.repo,
        )
        names = [n for n in (found or "").splitlines() if n and not n.endswith("/HEAD")]
        if not names:
            return None
        try:
            branch = self.settings.branch
        except TrackerError:
            return None
        if any(n.split("/", 1)[-1] == branch for n in names):
            return None  # it is on the deployed branch: pushed before the tracker was set up
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return {
            "code": "other_branch",
            "message": f"not pushed to {branch} (TRACKER_BRANCH); {shown} has it",
        }

    def events(
        self,
        ref: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        *,
        newest: bool = False,
    ) -> list[EventRecord]:
        """Events of the log (of one commit when `ref` is given), oldest first."""
        self.take_in_spool(wait=READ_WAIT_S)
        stream = self.resolve(ref) if ref else None
        if self._no_log():
            return []  # nothing recorded there (and a read creates no log)
        return self._records(stream, after_seq=after_seq, limit=limit, newest=newest)

    def _records(
        self,
        stream: str | None,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[EventRecord]:
        found = self.store.events(stream=stream, after_seq=after_seq, limit=limit, newest=newest)
        return [
            EventRecord(e.seq, e.stream, e.version, e.type, e.recorded_at, e.data) for e in found
        ]

    def stats(self, *, since: float | None = None, branch: str | None = None) -> Stats:
        """Outcomes, durations, API calls and detection lag over the log (SPEC §5)."""
        from tracker.read.stats import compute_stats

        self.take_in_spool(wait=READ_WAIT_S)
        with self.store.stats_queries() as queries:
            return compute_stats(queries, now=self.clock.now(), since=since, branch=branch)

    def rebuild(self) -> RebuildReport:
        """Recompute every projection from the log alone; report rows that differed."""
        return self.store.rebuild()

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self,
        ref: str = "HEAD",
        timeout: float = 30.0,
        *,
        interval: float = 0.5,
        on_change: Callable[[DeploymentStatus], None] | None = None,
        resume: bool = True,
    ) -> DeploymentStatus:
        """Wait up to `timeout` seconds (0: until the end) for a terminal state; never raises
        for a deployment still in progress: check `.exit_code` (2 = still going). A commit
        nothing can watch (`.watched` false: no monitor, no source) returns at once."""
        sha = self.resolve(ref)
        deadline = self.clock.monotonic() + timeout if timeout > 0 else None
        current = self.status(sha, resume=resume)
        orphan = current.state == "pending" and current.monitor.pid is None and not current.spooled
        resumed: tuple[int, float] | None = None  # the log's last seq and when, at the resume
        resumed = self._resume_stale(sha, current, resume, resumed, orphan=orphan)
        if on_change:
            on_change(current)
        while current.state not in TERMINAL_STATES and current.state != "not_found":
            if not current.watched and not self._resuming(sha, resumed):
                break  # nothing will ever change it: say so now, not at the timeout
            if deadline is not None and self.clock.monotonic() >= deadline:
                break
            step = (
                interval if deadline is None else min(interval, deadline - self.clock.monotonic())
            )
            self.clock.sleep(max(step, 0.0))
            latest = self.status(sha, resume=resume)
            # A watcher that dies while we wait (its lease expired, in fleet mode) is resumed.
            resumed = self._resume_stale(sha, latest, resume, resumed)
            if on_change and _changed(current, latest):
                on_change(latest)
            current = latest
        return current

    def _resume_stale(
        self,
        sha: str,
        st: DeploymentStatus,
        resume: bool,
        resumed: tuple[int, float] | None,
        *,
        orphan: bool = False,
    ) -> tuple[int, float] | None:
        """Start a monitor for a commit whose monitor died (or that never had one) unless one
        was started here less than `RESUME_GRACE_S` ago; the resume's (last seq, grace end).
        A commit whose monitor refused its settings (or was refused) is resumed once they look
        right here: the fix its headline asks for, then `tracker wait`. With a setting still bad
        here, the headline stands. In fleet mode `status` itself resumes (its lease expired)."""
        if resumed is not None and self.clock.monotonic() < resumed[1]:
            return resumed
        if not resume or not (st.state == "stale" or orphan) or not self._sources():
            return resumed
        if not (st.watched or self.monitor_ready()):
            return resumed
        mark = (self.store.last_seq(), self.clock.monotonic() + RESUME_GRACE_S)
        if isinstance(self.store, SQLiteLog) or st.state != "stale":
            self.start_monitor(sha)  # (a stale one in fleet mode: `status` saw to it)
        return mark

    def _resuming(self, sha: str, resumed: tuple[int, float] | None) -> bool:
        """Whether a monitor `wait` started has yet to say anything (within a grace period)."""
        if resumed is None or self.clock.monotonic() >= resumed[1]:
            return False
        return not self.store.events(stream=sha, after_seq=resumed[0], limit=1)

    # -- writing ----------------------------------------------------------------------------

    def record_push(
        self,
        sha: str,
        branch: str | None = None,
        remote: str = "",
        *,
        remote_url: str = "",
        source: str = "api",
        monitor: bool = True,
        again: bool = False,
    ) -> DeploymentStatus:
        """Record a push made by other means and (unless `monitor=False`) start its monitor.

        Recording a push already in the log (the hook saw it too, or a retry) is a no-op that
        answers its status with `already_recorded`; `again=True` says the commit really was
        pushed once more (a rollback made by other means): a new attempt (SPEC §3)."""
        full = self.resolve(sha)
        branch = gitutil.check_branch(branch or self.read_settings.branch)
        remote = gitutil.check_remote(remote)
        self.take_in_spool()  # the hook's record of this very push, if there is one
        now = self.clock.now()
        event = PushRecorded(
            sha=full,
            branch=branch,
            remote=remote,
            remote_url=gitutil.strip_credentials(remote_url),
            pushed_by=gitutil.pusher(self.repo),
            host=host(),
            source=source,
            pushed_at=iso(now),
            again=again,
        )
        row = self.store.deployment(full)
        repeat = row is not None and not starts_attempt(row, event)
        if not repeat:
            self.store.append(full, event, at=now)
        if monitor and self._sources() and not (row is not None and repeat and row.terminal):
            self.start_monitor(full)  # one per commit: a second one leaves at once
        return dataclasses.replace(self.status(full, resume=False), already_recorded=repeat)

    def ingest(self, notification: Mapping[str, Any]) -> DeploymentStatus:
        """Append a deployment notification from a webhook system (see `tracker ingest`)."""
        from tracker.monitor.ingest import events_for

        note = events_for(notification, now=self.clock.now())
        if self.store.deployment(note.sha) is None:
            raise UsageError(f"no push of {note.sha} in the log: record the push first")
        self.store.append(note.sha, note.raw, at=self.clock.now())
        if note.outcome is not None:
            self.store.append(note.sha, note.outcome, key=note.key, at=self.clock.now())
        return self.status(note.sha)

    def start_monitor(self, sha: str) -> int:
        """Start a detached monitor process for `sha`; its pid."""
        from tracker.procs import spawn_detached

        return spawn_detached(self.db_path, sha, repo=self.repo)


def locate_db(repo: Path | str = ".", db: Path | str | None = None) -> Path:
    """SPEC §2: `--db`, else `TRACKER_DB`, else `<git common dir>/tracker/events.db`.

    A relative `db` (`--db`, like any path given as an argument) is taken from the current
    directory; a relative `TRACKER_DB` from where git runs the hook, as the hook takes it
    (`gitutil.log_path_from_env`)."""
    if db:
        return Path(db).expanduser().absolute()
    chosen = os.environ.get("TRACKER_DB")
    if chosen:
        return gitutil.log_path_from_env(chosen, repo)
    found = gitutil.default_db_path(repo)
    if found is None:
        raise UsageError(
            f"{Path(repo).absolute()} is not inside a git repository;"
            " run from one, or set TRACKER_DB or --db to choose the log"
        )
    return found


def _changed(a: DeploymentStatus, b: DeploymentStatus) -> bool:
    return (a.state, a.phase, a.steps_done, a.deployment_id) != (
        b.state,
        b.phase,
        b.steps_done,
        b.deployment_id,
    )
