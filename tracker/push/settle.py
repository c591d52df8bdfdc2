"""Settling a push: did the pushed commit reach the remote branch? (the git checks).

`settle` is asked by the confirmer while git runs and after it exits, and by every reader
(`local=True`: from what this repository knows, never the network). Standard library only.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tracker.gitutil import clean_env
from tracker.push.spool import SHA, PushRecord

BUDGET_S = 900.0  # how long a push may stay undecided before we stop waiting for git


@dataclass(frozen=True)
class Verdict:
    """What became of a push: confirmed (True), rejected (False) or unverifiable (None)."""

    confirmed: bool | None
    reason: str


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
    return out if code == 0 and SHA.match(out) else None


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
    return head if not head or SHA.match(head) else None


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
