"""Intake: how the spool's records become events of the log.

`take_in` is what every reader of the log does first, so `status` right after `git push` says
pending; `recorded` and `verdict_append` are the events of a record, shared with the confirmer;
`watch` hands a confirmed push on to a monitor. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from tracker.clock import iso
from tracker.errors import LockTimeoutError, TrackerError
from tracker.events import PushConfirmed, PushRecorded, PushRejected
from tracker.gitutil import pusher
from tracker.log.sqlite import Append, SQLiteLog
from tracker.procs import confirmer_alive, host, process_alive, spawn_confirmer
from tracker.push.settle import Verdict, settle
from tracker.push.spool import (
    PushRecord,
    held,
    note,
    quarantine,
    read_record,
    record_paths,
    spool_dir,
    write_record,
)

if TYPE_CHECKING:
    from tracker.log.fleet import FleetLog

Store: TypeAlias = (
    "SQLiteLog | FleetLog"  # the local log, or in fleet mode its cache plus the outbox
)


def pushed_by(record: PushRecord) -> str:
    """Who pushed (`gitutil.pusher`, in the pushed repository)."""
    return pusher(git_dir=record.common)


def recorded(record: PushRecord) -> Append:
    """The `PushRecorded` of a record; its key makes taking it in twice a no-op."""
    event = PushRecorded(
        sha=record.sha, branch=record.branch, remote=record.remote, remote_url=record.url,
        pushed_by=pushed_by(record), host=host(), source=record.source,
        pushed_at=iso(record.pushed_at), push_id=record.push_id,
    )  # fmt: skip
    return Append(record.sha, event, key=push_key(record))


def push_key(record: PushRecord) -> str:
    """The idempotency key of a record's `PushRecorded`."""
    return f"push:{record.push_id}"


def verdict_append(record: PushRecord, verdict: Verdict) -> Append | None:
    """`PushConfirmed` / `PushRejected` for a decided push; None when it could not be verified."""
    key = f"confirm:{record.push_id}"
    if verdict.confirmed is None:
        return None
    if verdict.confirmed:
        return Append(record.sha, PushConfirmed(sha=record.sha, reason=verdict.reason), key=key)
    return Append(record.sha, PushRejected(sha=record.sha, reason=verdict.reason), key=key)


# -- take_in ----------------------------------------------------------------------------------


def take_in(store: Store, log_dir: Path) -> int:
    """Move spooled pushes into the log; returns how many events were appended.

    Every reader calls this first, so `status` right after `git push` says pending. Records
    whose git and confirmer are both gone are decided here from what this repository knows,
    and removed; one only the remote can decide gets a new confirmer (a reader never touches
    the network). If the log's lock cannot be taken, the spool is left as it is.
    """
    paths = record_paths(spool_dir(log_dir))
    if not paths:
        return 0
    records = _readable(paths, store.path)
    ordered = sorted(records, key=lambda pr: pr[1].pushed_at)
    try:
        count = len(store.append_all([recorded(r) for _, r in ordered]))
    except LockTimeoutError:
        return 0
    for path, record in ordered:
        try:
            count += _decide_orphan(store, path, record)
        except LockTimeoutError:
            break
    return count


def unread(store: Store, log_dir: Path, sha: str) -> list[PushRecord]:
    """The spooled pushes of `sha` that the log does not hold yet (oldest first), for a reader
    that could not take the spool in (the log's lock or SQLite's write lock held elsewhere).
    Reading needs no lock; when even that is impossible (the log is not created or migrated
    yet, and the lock is held), every record of `sha` counts as unread."""
    paths = record_paths(spool_dir(log_dir))
    if not paths:
        return []
    mine = sorted(
        (r for _, r in _readable(paths, store.path) if r.sha == sha), key=lambda r: r.pushed_at
    )
    if not mine:
        return []
    try:
        known = store.known_keys([push_key(r) for r in mine])
    except LockTimeoutError:
        known = set()
    return [r for r in mine if push_key(r) not in known]


def _readable(paths: list[Path], db: Path) -> list[tuple[Path, PushRecord]]:
    found = []
    mine = os.path.realpath(db)
    for path in paths:
        try:
            record = read_record(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            quarantine(path)
            continue
        if not record.db or os.path.realpath(record.db) == mine:
            found.append((path, record))
    return found


def _decide_orphan(store: Store, path: Path, record: PushRecord) -> int:
    """Decide a record nobody is confirming any more (git and its confirmer both gone)."""
    if process_alive(record.git_pid, "git") or confirmer_alive(record.confirmer_pid):
        return 0
    with held(path) as ours:
        if not ours:
            return 0
        verdict = settle(record, git_alive=False, local=True)
        if verdict is None:
            _hand_over(path, record)
            return 0
        append = verdict_append(record, verdict)
        written = store.append_all([recorded(record), append] if append else [recorded(record)])
        path.unlink()
    if verdict.confirmed:
        watch(record, store)  # the confirmer, finding the record gone, does not
    return len(written)


def _hand_over(path: Path, record: PushRecord) -> None:
    """Start a confirmer for a record only the remote can decide: a reader never touches the
    network (SPEC §5), and the record names its new confirmer, so other readers leave it be."""
    pid = spawn_confirmer(path)
    if pid is not None:
        with contextlib.suppress(OSError):
            write_record(path.parent, replace(record, confirmer_pid=pid))


# -- the monitor of a confirmed push ----------------------------------------------------------


def wants_monitor(record: PushRecord, log_dir: Path) -> bool:
    """Whether a deployment source is configured for the pushed repository, valid or not: a
    monitor with a bad setting refuses it and records why (`MonitorNotStarted`), for `status`."""
    try:
        from tracker.config import source_names

        root = Path(record.toplevel) if record.toplevel else None
        return bool(source_names(root))
    except ImportError:
        return False
    except TrackerError as exc:
        note(log_dir, f"push {record.push_id}: no monitor: {exc}")
        return False


def watch(record: PushRecord, store: Store) -> int | None:
    """Make sure a monitor follows a confirmed push: start one detached unless no source is
    configured or the commit is decided already; its pid. Whoever settles a record as
    confirmed calls this. Starting one more is harmless: it joins the app's watcher (one per
    app per log, `monitor.lock.AppLock`), exiting at once when one runs."""
    log_dir = store.path.parent
    try:
        if not wants_monitor(record, log_dir):
            return None
        row = store.deployment(record.sha)
        if row is None or row.terminal:
            return None
        from tracker.procs import spawn_detached

        repo = Path(record.toplevel) if record.toplevel else None
        return spawn_detached(store.path, record.sha, repo=repo)
    except Exception as exc:  # the reader goes on: its answer does not depend on this
        note(log_dir, f"push {record.push_id}: cannot start the monitor: {exc}")
        return None
