"""The push spool: records the pre-push hook leaves beside the log, and `take_in`, which moves
them into it.

The hook cannot wait for the log's lock, so it makes each push durable as one small file in
`<log dir>/spool/` (`key=value` lines, written to a temp file and renamed). The detached confirmer
and every reader of the log (`take_in`) turn records into `PushRecorded` and a verdict; a record
is removed only after its events are committed, so none is ever lost. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

from tracker.clock import Clock, iso
from tracker.errors import LockTimeoutError, TrackerError
from tracker.events import PushConfirmed, PushRecorded, PushRejected
from tracker.gitutil import clean_env, pusher
from tracker.log.sqlite import Append, SQLiteLog

SUFFIX = ".push"
BUDGET_S = 900.0  # how long a push may stay undecided before we stop waiting for git
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_NAME = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,200}$")  # remote and branch names
_ID = re.compile(r"^[0-9A-Za-z._-]{1,100}$")


@dataclass(frozen=True)
class PushRecord:
    """One push of the deployed branch, as the hook saw it."""

    push_id: str
    sha: str
    branch: str
    remote: str  # empty for a push by URL
    url: str  # credentials stripped
    git_pid: int | None
    pushed_at: float  # epoch seconds
    source: str
    common: str  # the git common dir (absolute)
    db: str  # the log this record belongs to (absolute)
    toplevel: str = ""
    confirmer_pid: int | None = None

    def format(self) -> str:
        """The record as the hook writes it: one `key=value` line per field."""
        lines = ["version=1"]
        for f in fields(self):
            value = getattr(self, f.name)
            lines.append(f"{f.name}={'' if value is None else value}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> PushRecord:
        """Read a record; ValueError when a field is missing or malformed."""
        raw: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key not in raw:
                raw[key] = value
        try:
            record = cls(
                push_id=raw["push_id"], sha=raw["sha"], branch=raw["branch"],
                remote=raw.get("remote", ""), url=raw.get("url", ""),
                git_pid=_int(raw.get("git_pid", "")), pushed_at=float(raw["pushed_at"]),
                source=raw.get("source", "hook") or "hook", common=raw["common"],
                db=raw.get("db", ""), toplevel=raw.get("toplevel", ""),
                confirmer_pid=_int(raw.get("confirmer_pid", "")),
            )  # fmt: skip
        except KeyError as exc:
            raise ValueError(f"spool record lacks {exc.args[0]}") from exc
        record.validate()
        return record

    def validate(self) -> None:
        if not _ID.match(self.push_id):
            raise ValueError("bad push id")
        if not _SHA.match(self.sha):
            raise ValueError("bad sha")
        if not _NAME.match(self.branch) or (self.remote and not _NAME.match(self.remote)):
            raise ValueError("bad branch or remote name")
        if not self.remote and (not self.url or self.url.startswith("-")):
            raise ValueError("a push by URL needs a URL")
        if not os.path.isabs(self.common):
            raise ValueError("the git common dir must be absolute")

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


@dataclass(frozen=True)
class Verdict:
    """What became of a push: confirmed (True), rejected (False) or unverifiable (None)."""

    confirmed: bool | None
    reason: str


# -- files ------------------------------------------------------------------------------------


def spool_dir(log_dir: Path) -> Path:
    return Path(log_dir) / "spool"


def record_paths(directory: Path) -> list[Path]:
    """The records waiting in `directory` (one scandir; temp files and quarantined ones skipped)."""
    try:
        with os.scandir(directory) as entries:
            names = [e.name for e in entries if e.name.endswith(SUFFIX) and e.name[0] != "."]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(directory) / name for name in sorted(names)]


def write_record(directory: Path, record: PushRecord) -> Path:
    """Write `record` atomically (temp file, then rename), readable by its owner only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = directory / f".tmp.{record.push_id}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, record.format().encode())
    finally:
        os.close(fd)
    final = directory / f"{record.push_id}{SUFFIX}"
    os.replace(temp, final)
    return final


def read_record(path: Path) -> PushRecord:
    return PushRecord.parse(path.read_text(encoding="utf-8", errors="replace"))


def quarantine(path: Path) -> None:
    """Set an unreadable record aside (`.bad`), never deleting what might be a push."""
    with contextlib.suppress(OSError):
        path.rename(path.with_name(path.name + ".bad"))


@contextlib.contextmanager
def held(path: Path) -> Iterator[bool]:
    """Try to own a record (non-blocking flock on it); yields False if another process does
    or the record is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield os.fstat(fd).st_nlink > 0  # unlinked while we waited: someone finished it
    finally:
        os.close(fd)


# -- processes --------------------------------------------------------------------------------

_HAVE_PROC = os.path.isdir("/proc/self")


def process_alive(pid: int | None, comm: str | None = None) -> bool:
    """Whether `pid` runs (not a zombie) and, where /proc tells, its name is `comm`."""
    if not pid or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not _HAVE_PROC:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    name, state = stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :][:1]
    return state not in ("Z", "X") and (comm is None or name == comm)


def confirmer_alive(pid: int | None) -> bool:
    """Whether the confirmer the hook started for a record still runs (or is about to: the
    hook's forked shell that has not yet exec'd it still has the hook's command line)."""
    if not process_alive(pid):
        return False
    if not _HAVE_PROC:
        return True
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"tracker.confirm" in argv or b"pre-push" in argv


# -- the check --------------------------------------------------------------------------------


def _git(record: PushRecord, args: list[str], timeout: float = 10.0) -> tuple[int, str]:
    env = clean_env()
    env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        done = subprocess.run(
            ["git", "--git-dir", record.common, *args], env=env, capture_output=True,
            text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL, cwd="/",
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return -1, ""
    return done.returncode, done.stdout.strip()


def tracking_tip(record: PushRecord) -> str | None:
    """The remote-tracking ref of the pushed branch, or None when it does not exist."""
    code, out = _git(record, ["rev-parse", "-q", "--verify", record.tracking_ref])
    return out if code == 0 and _SHA.match(out) else None


REFLOG_SLACK_S = 120.0  # reflog entries this much older than the push are not read
REFLOG_TAIL_BYTES = 4 << 20


def pushed_per_reflog(record: PushRecord) -> bool:
    """Whether the tracking ref's reflog says git itself moved it to our sha by a push made
    since this one began: every entry since then is read, however many followed it."""
    path = Path(record.common, "logs", *record.tracking_ref.split("/"))
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(size - REFLOG_TAIL_BYTES, 0))
            lines = log.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return _pushed_per_git_reflog(record)
    except OSError:
        return False
    since = record.pushed_at - REFLOG_SLACK_S
    for line in reversed(lines):  # `old new name <email> epoch tz<TAB>message`
        head, _, message = line.partition("\t")
        words = head.split()
        if len(words) < 4 or not words[-2].isdigit():
            continue
        if int(words[-2]) < since:
            break
        if words[1] == record.sha and message.startswith("update by push"):
            return True
    return False


def _pushed_per_git_reflog(record: PushRecord) -> bool:
    """The same through `git log -g`, for a ref store that is not plain files."""
    args = ["log", "-g", "-n", "2000", "--format=%H %gs", record.tracking_ref]
    code, out = _git(record, args)
    return code == 0 and f"{record.sha} update by push" in out.splitlines()


def remote_head(record: PushRecord) -> str | None:
    """The branch's sha on the remote (`ls-remote`); "" when absent, None when unreachable."""
    code, out = _git(record, ["ls-remote", _target(record), f"refs/heads/{record.branch}"], 30.0)
    if code != 0:
        return None
    head = out.split()[0] if out else ""
    return head if not head or _SHA.match(head) else None


def _target(record: PushRecord) -> str:
    """Where the push went: the remote's name, or the URL of a push by URL."""
    return record.remote or record.url


def _ancestor(record: PushRecord, tip: str) -> bool | None:
    """Whether the pushed commit is `tip` or in its history; None when `tip` is not here."""
    code, _ = _git(record, ["merge-base", "--is-ancestor", record.sha, tip])
    return {0: True, 1: False}.get(code)


def reached(record: PushRecord, tip: str) -> bool | None:
    """Whether the pushed commit is in the remote branch whose tip is `tip`; None when git
    cannot tell (the tip's objects could not be fetched).

    A tip pushed from another clone is not in this repository yet: it is fetched (by its sha,
    else the branch) without writing any ref or FETCH_HEAD, so the user's refs never move.
    """
    found = _ancestor(record, tip)
    if found is not None:
        return found
    quiet = ["fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--refmap="]
    quiet.append("--no-recurse-submodules")
    for wanted in (tip, f"refs/heads/{record.branch}"):
        code, _ = _git(record, [*quiet, _target(record), wanted], 60.0)
        if code == 0:
            found = _ancestor(record, tip)
            if found is not None:
                return found
    return None


def settle(
    record: PushRecord, *, git_alive: bool, give_up: bool = False, local: bool = False
) -> Verdict | None:
    """Decide a push, or None while it cannot be decided yet.

    A push is confirmed when its commit is on the remote branch: the tip itself or in its
    history, however many pushes came after it; rejected only when the commit is not there.
    `git_alive` must be observed before calling: git writes the tracking ref before it exits,
    so what is read after seeing git gone is final. While git runs only the tracking ref is
    read (the pack may not have been sent yet); then the tracking ref's reflog, and the
    remote itself (`ls-remote`, and the ancestry of its tip), which also covers pushes by URL.
    """
    tip = tracking_tip(record) if record.remote else None
    if tip == record.sha:
        return Verdict(True, f"{record.tracking_ref} moved to the pushed commit")
    if git_alive:
        return None
    if record.remote and pushed_per_reflog(record):
        return Verdict(True, f"the reflog of {record.tracking_ref} records the push")
    if tip is not None and _ancestor(record, tip):
        return Verdict(True, f"the pushed commit is in {record.tracking_ref}")
    if local:
        return None  # the rest asks the remote: not for a reader, which never touches the network
    head = remote_head(record)
    if head is None:
        return Verdict(None, "the remote could not be reached to verify") if give_up else None
    branch = record.branch
    if head == record.sha:
        return Verdict(True, f"the remote's {branch} is the pushed commit")
    if not head:
        return Verdict(False, f"git exited and the remote has no {branch}")
    inside = reached(record, head)
    if inside:
        return Verdict(True, f"the pushed commit is in the remote's {branch} (now {head[:12]})")
    if inside is False:
        return Verdict(False, f"git exited and the remote's {branch} ({head[:12]}) lacks it")
    if give_up:
        return Verdict(None, f"could not fetch the remote's {branch} to verify")
    return None


# -- events -----------------------------------------------------------------------------------


def pushed_by(record: PushRecord) -> str:
    """Who pushed (`gitutil.pusher`, in the pushed repository)."""
    return pusher(git_dir=record.common)


def recorded(record: PushRecord) -> Append:
    """The `PushRecorded` of a record; its key makes taking it in twice a no-op."""
    event = PushRecorded(
        sha=record.sha, branch=record.branch, remote=record.remote, remote_url=record.url,
        pushed_by=pushed_by(record), host=socket.gethostname(), source=record.source,
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


def take_in(store: SQLiteLog, log_dir: Path) -> int:
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


def unread(store: SQLiteLog, log_dir: Path, sha: str) -> list[PushRecord]:
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


def _decide_orphan(store: SQLiteLog, path: Path, record: PushRecord) -> int:
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
    from tracker.push.prepush import spawn_confirmer

    pid = spawn_confirmer(path)
    if pid is not None:
        with contextlib.suppress(OSError):
            write_record(path.parent, with_confirmer(record, pid))


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


def watch(record: PushRecord, store: SQLiteLog) -> int | None:
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


def note(log_dir: Path, message: str, clock: Clock | None = None) -> None:
    """Append one line to `<log dir>/confirm.log` (owner-only); never raises."""
    now = time.time() if clock is None else clock.now()
    text = f"{iso(now)} pid {os.getpid()}: {' '.join(message.split())}\n"
    with contextlib.suppress(OSError):
        fd = os.open(log_dir / "confirm.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text.encode(errors="replace"))
        finally:
            os.close(fd)


def with_confirmer(record: PushRecord, pid: int | None) -> PushRecord:
    return replace(record, confirmer_pid=pid)
