"""`tracker-pre-push`: the push hook as a Python entry point, for the pre-commit framework.

pre-commit consumes git's stdin and passes the first pushed ref in `PRE_COMMIT_*` variables
instead; without them the entry reads git's pre-push stdin like the sh hook. It spools the push
and starts the detached confirmer exactly as `hooks/pre-push` does, and always exits 0.
Standard library only (pre-commit already costs half a second per push).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.gitutil import common_dir, log_path_from_env, strip_credentials
from tracker.procs import is_dry_run, real_git_pid, spawn_confirmer
from tracker.push.spool import PushRecord, spool_dir, write_record

ZERO = "0" * 40


def from_pre_commit(env: Mapping[str, str]) -> bool:
    """Whether pre-commit runs us: it has consumed git's stdin and says the ref in variables."""
    return "PRE_COMMIT_TO_REF" in env or "PRE_COMMIT_REMOTE_BRANCH" in env


def resolve(ref: str) -> str:
    """The commit `ref` (a local ref as git gave it to the hook) names, or ""."""
    out = subprocess.run(
        ["git", "rev-parse", "-q", "--verify", "--end-of-options", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return out.stdout.strip() if out.returncode == 0 else ""


def pushed_shas(
    env: Mapping[str, str],
    lines: list[str],
    branch: str,
    resolve: Callable[[str], str] = resolve,
) -> list[str]:
    """The local shas pushed to `refs/heads/<branch>` (deletes left out).

    pre-commit sets no `PRE_COMMIT_TO_REF` when the pushed history reaches a root commit (the
    first push to an empty remote: it then runs on all files), only the local and remote
    branch: the local one, as git gave it to the hook, is resolved here."""
    target = f"refs/heads/{branch}"
    if "PRE_COMMIT_TO_REF" in env:
        pairs = [(env.get("PRE_COMMIT_REMOTE_BRANCH", ""), env["PRE_COMMIT_TO_REF"])]
    elif "PRE_COMMIT_REMOTE_BRANCH" in env:
        local = env.get("PRE_COMMIT_LOCAL_BRANCH", "")
        remote_ref = env["PRE_COMMIT_REMOTE_BRANCH"]
        pairs = [(remote_ref, resolve(local) if local and remote_ref == target else "")]
    else:
        pairs = [(f[2], f[1]) for f in (line.split() for line in lines) if len(f) == 4]
    return [sha for ref, sha in pairs if ref == target and sha != ZERO and len(sha) >= 40]


def deployed_branch(root: Path | None) -> str:
    try:
        from tracker.config import load_read_settings

        return load_read_settings(root).branch
    except Exception:
        return os.environ.get("TRACKER_BRANCH") or "main"


def record_pushes(
    argv: list[str], env: Mapping[str, str], lines: list[str], clock: Clock = SYSTEM_CLOCK
) -> int:
    """Spool every push of the deployed branch and start its confirmer; how many."""
    remote = env.get("PRE_COMMIT_REMOTE_NAME") or (argv[0] if argv else "")
    url = env.get("PRE_COMMIT_REMOTE_URL") or (argv[1] if len(argv) > 1 else remote)
    common = common_dir(".")
    if common is None:
        return 0
    root = Path.cwd()
    shas = pushed_shas(env, lines, deployed_branch(root))
    git_pid = real_git_pid(os.getppid())
    if not shas or is_dry_run(git_pid):
        return 0
    chosen = env.get("TRACKER_DB")
    db = log_path_from_env(chosen) if chosen else common / "tracker" / "events.db"
    now = clock.now()
    for n, sha in enumerate(shas, 1):
        push_id = f"{now:.6f}-{os.getpid()}-{n}"
        path = spool_dir(db.parent) / f"{push_id}.push"
        record = PushRecord(
            push_id=push_id, sha=sha, branch=deployed_branch(root),
            remote="" if remote == url else remote, url=strip_credentials(url),
            git_pid=git_pid, pushed_at=now, source="hook", common=str(common), db=str(db),
            toplevel=str(root), confirmer_pid=spawn_confirmer(path),
        )  # fmt: skip
        write_record(path.parent, record)
    return len(shas)


def main() -> int:
    """Console script `tracker-pre-push`: record the push, never fail it."""
    try:
        lines = [] if from_pre_commit(os.environ) else sys.stdin.read().splitlines()
        old = os.umask(0o077)
        try:
            record_pushes(sys.argv[1:], os.environ, lines)
        finally:
            os.umask(old)
    except Exception as exc:  # the push must go on whatever happens here
        print(f"tracker: not recording the push: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
