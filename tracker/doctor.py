"""`tracker doctor`: check the log, the lock, the hook and each source, and say what to fix.

Never prints a secret: settings are shown through `Settings.describe()`, which has none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tracker import gitutil
from tracker.errors import TrackerError

if TYPE_CHECKING:
    from tracker.config import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    exit_code: int = 0  # what this check's failure means for the whole run
    warning: bool = False


def run_checks(db: Path | None, repo: Path | str = ".") -> list[Check]:
    """Every check, in order; stops early only where later checks cannot run."""
    from tracker.api import locate_db

    checks: list[Check] = []
    try:
        path = locate_db(repo, db)
    except TrackerError as exc:
        return [Check("log", False, str(exc), "run inside a git repository or set TRACKER_DB", 64)]
    checks.append(_check_log(path))
    checks.append(_check_lock(path))
    checks.append(_check_hook(repo))
    settings_check, settings = _check_settings(repo)
    checks.append(settings_check)
    if settings is not None:
        checks.extend(_check_refused(settings))
        checks.extend(_check_sources(settings))
    return checks


def _check_log(path: Path) -> Check:
    from tracker.store import Store

    try:
        with Store(path, lock_timeout=2.0) as store:
            result = store.integrity_check()
            count = store.last_seq()
    except TrackerError as exc:
        return Check("log", False, str(exc), "see the message above", exc.exit_code)
    if result != "ok":
        fix = f"move {path} aside and start a new log; `sqlite3 FILE .recover` may save events"
        return Check("log", False, f"{path}: integrity check says {result}", fix, 74)
    local = "" if _local_disk(path) else " (WARNING: not a local disk; SQLite WAL needs one)"
    return Check("log", True, f"{path} ({count} events){local}")


def _local_disk(path: Path) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return True
    best, fstype = "", ""
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return not fstype.startswith(("nfs", "cifs", "smb", "fuse.sshfs", "9p"))


def _check_lock(path: Path) -> Check:
    from tracker.store import Store

    try:
        with Store(path, lock_timeout=2.0) as store, store.locked():
            pass
    except TrackerError as exc:
        return Check("lock", False, str(exc), "find the process holding it: fuser FILE", 75)
    return Check("lock", True, f"{path.name}.lock can be taken")


def _check_hook(repo: Path | str) -> Check:
    try:
        from tracker import hooks_install

        info = hooks_install.status(Path(repo))
    except (ImportError, TrackerError, OSError) as exc:
        return Check("hook", False, f"cannot inspect hooks: {exc}", "", 0, warning=True)
    if info.get("installed"):
        return Check("hook", True, f"installed: {info.get('where') or info}")
    return Check(
        "hook",
        False,
        "the pre-push hook is not installed: pushes are not recorded",
        "run `tracker hooks install` (or `--husky`)",
        0,
        warning=True,
    )


def _check_settings(repo: Path | str) -> tuple[Check, Settings | None]:
    from tracker.config import load_settings

    try:
        settings = load_settings(gitutil.toplevel(repo))
    except TrackerError as exc:
        return Check("settings", False, str(exc), "fix the named setting", exc.exit_code), None
    described = json.dumps(settings.describe(), default=str, sort_keys=True)
    if not settings.sources():
        fix = "set DIGITALOCEAN_TOKEN and TRACKER_DO_APP_ID, or TRACKER_MYSQL_URL"
        return Check("sources", False, "no deployment source is configured", fix, 78), settings
    return Check("settings", True, described), settings


def _check_refused(settings: Settings) -> list[Check]:
    """A file that tries to say where a secret goes: not used, and named here (SPEC §6)."""
    fix = "delete the key from the file; set the variable in the environment if you need it"
    return [Check("settings", False, line, fix, 78) for line in settings.refused]


def _check_sources(settings: Settings) -> list[Check]:
    from tracker.clock import SYSTEM_CLOCK
    from tracker.monitor import build_sources

    checks = []
    for source in build_sources(settings, SYSTEM_CLOCK):
        try:
            obs = source.check()
        finally:
            source.close()
        if obs.ok:
            left = f", {obs.ratelimit_remaining} API calls left" if obs.ratelimit_remaining else ""
            checks.append(Check(source.name, True, f"reachable and authorised{left}"))
            continue
        fix = {
            "auth": "check the credentials in the environment",
            "connection": "check the host, the port and the network",
            "timeout": "check the host, the port and the network",
        }.get(obs.error_kind or "", "see the error")
        checks.append(Check(source.name, False, f"{obs.error_kind}: {obs.error}", fix, 69))
    return checks


def doctor_command(db: Path | None, *, as_json: bool) -> int:
    """Print the checks; exit with the code of the first real failure (warnings do not count)."""
    checks = run_checks(db)
    failures = [c for c in checks if not c.ok and not c.warning]
    code = failures[0].exit_code if failures else 0
    if as_json:
        print(
            json.dumps(
                {"ok": not failures, "exit_code": code, "checks": [asdict(c) for c in checks]},
                indent=2,
            )
        )
        return code
    from tracker.output import say

    for c in checks:
        mark = "ok  " if c.ok else ("warn" if c.warning else "FAIL")
        say(f"{mark}  {c.name}: {c.detail}")
        if not c.ok and c.fix:
            say(f"      fix: {c.fix}")
    return code
