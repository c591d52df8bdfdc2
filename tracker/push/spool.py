"""The push spool: the records the pre-push hook leaves beside the log.

The hook cannot wait for the log's lock, so it makes each push durable as one small file in
`<log dir>/spool/` (`key=value` lines, written to a temp file and renamed). The detached confirmer
and every reader of the log (`tracker.push.intake`) turn records into `PushRecorded` and a
verdict; a record is removed only after its events are committed, so none is ever lost. This
module is the records and their files; `settle` decides a push, `intake` takes records in.
Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from tracker.clock import SYSTEM_CLOCK, Clock, iso

SUFFIX = ".push"
BUDGET_S = 900.0  # how long a push may stay undecided before we stop waiting for git
SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
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
        if not SHA.match(self.sha):
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


# -- the confirmer's log ------------------------------------------------------------------


def note(log_dir: Path, message: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """Append one line to `<log dir>/confirm.log` (owner-only); never raises."""
    now = clock.now()
    text = f"{iso(now)} pid {os.getpid()}: {' '.join(message.split())}\n"
    with contextlib.suppress(OSError):
        fd = os.open(log_dir / "confirm.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text.encode(errors="replace"))
        finally:
            os.close(fd)
