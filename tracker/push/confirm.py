"""The detached confirmer: `python -I -m tracker.confirm SPOOLFILE`.

Started by the pre-push hook with no inherited descriptors, it appends `PushRecorded`, watches
until the push is known to have reached the remote (or git exits without it), appends the
verdict, removes the spool record and, for a confirmed push with a deployment source
configured, joins its app's watcher (or becomes it). Standard library only; errors go to
`<log dir>/confirm.log`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.errors import LockTimeoutError, LogError, TrackerError
from tracker.log import fleet_url
from tracker.log.sqlite import Append, SQLiteLog
from tracker.procs import detach, exec_monitor, process_alive
from tracker.push.intake import recorded, verdict_append, wants_monitor
from tracker.push.settle import BUDGET_S, Verdict, settle
from tracker.push.spool import PushRecord, held, note, read_record

if TYPE_CHECKING:
    from tracker.log.fleet import FleetLog

POLL_S = 0.1
APPEAR_S = 10.0  # the hook starts us before it renames the record into place
LOCK_WAIT_S = 2.0


def wait_for_record(path: Path, clock: Clock) -> PushRecord | None:
    """The record at `path` once the hook has renamed it into place; None if it never comes."""
    deadline = clock.monotonic() + APPEAR_S
    while True:
        try:
            return read_record(path)
        except FileNotFoundError:
            if clock.monotonic() >= deadline:
                return None
        clock.sleep(0.01)


def local_or_fleet(db: str, clock: Clock) -> SQLiteLog | FleetLog:
    """The log at `db`; in fleet mode (`TRACKER_LOG_URL`, SPEC §10) the fleet log over it, so
    that what the confirmer appends goes to the outbox and is forwarded (the hook itself never
    talks to the shared log: this process is detached)."""
    url = fleet_url()
    if url is None:
        return SQLiteLog(db, clock=clock, lock_timeout=LOCK_WAIT_S)
    from tracker.log.fleet import FleetLog

    return FleetLog.open(db, url, clock=clock, lock_timeout=LOCK_WAIT_S)


class Confirmer:
    """Follows one spooled push to its verdict."""

    def __init__(self, path: Path, record: PushRecord, clock: Clock) -> None:
        self.path = path
        self.record = record
        self.clock = clock
        self.log_dir = Path(record.db).parent if record.db else path.parent.parent
        self.store = local_or_fleet(record.db, clock)
        self.deadline = clock.monotonic() + BUDGET_S

    def log(self, message: str) -> None:
        note(self.log_dir, f"push {self.record.push_id}: {message}", self.clock)

    def commit(self, batch: list[Append], *, patient: bool) -> bool:
        """Append `batch`; with `patient`, keep retrying a held lock until the deadline."""
        while True:
            try:
                self.store.append_all(batch)
                return True
            except LockTimeoutError:
                if not patient or self.clock.monotonic() >= self.deadline:
                    return False
            except LogError as exc:
                self.log(str(exc))
                return False

    def verdict(self) -> Verdict | None:
        """Poll until decided; None when git is still running at the deadline."""
        tries = 0
        while True:
            alive = process_alive(self.record.git_pid, "git")
            late = self.clock.monotonic() >= self.deadline
            found = settle(self.record, git_alive=alive, give_up=late or tries >= 2)
            if found is not None:
                return found
            if late:
                return None
            if not alive:
                tries += 1  # the remote could not be reached: try again a little later
                self.clock.sleep(1.0)
            self.clock.sleep(POLL_S)

    def run(self) -> Verdict | None:
        """Record, decide, commit, remove the record; the verdict, or None if left spooled."""
        first = recorded(self.record)
        self.commit([first], patient=False)  # `status` says pending even before the verdict
        verdict = self.verdict()
        if verdict is None:
            self.log("git still runs after the time budget; the push stays spooled")
            return None
        extra = verdict_append(self.record, verdict)
        if not self.commit([first, extra] if extra else [first], patient=True):
            self.log("could not write the verdict; the push stays spooled")
            return None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if verdict.confirmed is None:
            self.log(verdict.reason)
        return verdict


def become_monitor(record: PushRecord, log_dir: Path) -> None:
    """Replace this process by the commit's monitor, which joins the app's watcher (or becomes it
    when none runs); returns only on failure (said in the log)."""
    failed = exec_monitor(record.db, record.sha, cwd=record.toplevel or "/")
    note(log_dir, f"push {record.push_id}: cannot start the monitor: {failed.strerror}")


def confirm(path: Path, clock: Clock = SYSTEM_CLOCK) -> int:
    """Follow the push spooled at `path`; the exit status of the confirmer."""
    record = wait_for_record(path, clock)
    if record is None:
        return 0  # never written, or already taken in and decided by a reader
    deadline = clock.monotonic() + BUDGET_S
    confirmed: bool | None = None
    while True:
        with held(path) as ours:
            if ours:
                confirmer = Confirmer(path, record, clock)
                verdict = confirmer.run()
                confirmer.store.close()
                confirmed = verdict is not None and verdict.confirmed
                break
        if not path.exists():
            confirmed = confirmed_in_log(record, clock)  # a reader decided it while we waited
            break
        if clock.monotonic() >= deadline:
            return 0  # owned by another process for good
        clock.sleep(POLL_S)
    log_dir = Path(record.db).parent if record.db else path.parent.parent
    if confirmed and wants_monitor(record, log_dir):
        become_monitor(record, log_dir)
    return 0


def confirmed_in_log(record: PushRecord, clock: Clock) -> bool:
    """Whether the log holds this push's `PushConfirmed` (a reader settled the record), so
    that the push is watched whoever settled it; the monitor's lock keeps it to one."""
    if not record.db:
        return False
    try:
        with SQLiteLog(record.db, clock=clock, lock_timeout=LOCK_WAIT_S) as store:
            events = store.events(stream=record.sha)
    except TrackerError:
        return False
    key = f"confirm:{record.push_id}"
    return any(e.key == key and e.type == "PushConfirmed" for e in events)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -I -m tracker.confirm SPOOLFILE", file=sys.stderr)
        return 64
    path = Path(args[0]).absolute()
    detach()
    try:
        return confirm(path)
    except ValueError as exc:
        note(path.parent.parent, f"{path.name}: unreadable spool record: {exc}")
        return 65
    except Exception as exc:  # the last resort of a detached process: one line, no traceback
        note(path.parent.parent, f"{path.name}: internal error {type(exc).__name__}: {exc}")
        return 70


if __name__ == "__main__":
    raise SystemExit(main())
