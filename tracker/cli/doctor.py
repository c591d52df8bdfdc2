"""`tracker doctor`: check the log, the lock, the hook and each source, and say what to fix;
in fleet mode the shared log too (`tracker/cli/doctor_fleet.py`).

One line per check, as `gh auth status` reads (`ok    hook          .git/hooks/pre-push →
/venv/bin/python3`), a `fix:` line under each that is not ok; `--json` gives the same checks as
objects (docs/schema/doctor.schema.json). Exit: 0 all ok (warnings included), else the code of
the first failure: 74 the log or its lock, 75 a lock held too long, 78 the configuration (a
broken hook included), 69 a source unreachable or refusing us.

Never prints a secret: settings are shown through `Settings.describe()`, which has none, and the
sources' error messages are scrubbed by the sources themselves.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker import gitutil
from tracker.cli.check import Check
from tracker.errors import LockTimeoutError, TrackerError

if TYPE_CHECKING:
    from tracker.config import Settings
    from tracker.log.base import LogCheck
    from tracker.monitor.sources.base import DeploymentSource, Observation

DOCTL_APPS = "`doctl apps list --format ID,Spec.Name` lists the apps a token can see"
API_TOKENS_PAGE = "https://cloud.digitalocean.com/account/api/tokens"


def run_checks(db: Path | None, repo: Path | str = ".") -> list[Check]:
    """Every check, in order; stops early only where later checks cannot run."""
    from tracker.api import locate_db
    from tracker.log import fleet_url

    checks: list[Check] = []
    try:
        path = locate_db(repo, db)
    except TrackerError as exc:
        fix = "run inside a git repository or set TRACKER_DB"
        return [Check("log", "fail", str(exc), fix, exc.exit_code)]
    report = _check_storage(path)
    checks.append(_check_log(path, report))
    checks.append(_check_lock(path, report))
    url = fleet_url()
    if url is not None:  # fleet mode: the shared log's own checks (doctor_fleet)
        from tracker.cli.doctor_fleet import fleet_checks

        checks.extend(fleet_checks(url, path, os.environ))
    checks.append(_check_hook(repo))
    settings_checks, settings = _check_settings(repo)
    checks.extend(settings_checks)
    if settings is not None:
        checks.extend(_check_sources(settings))
    return checks


def _shown(path: Path | str) -> str:
    from tracker.push.install import shown

    return shown(path)


# -- the log and its lock ------------------------------------------------------------------------


def _permission(exc: BaseException) -> bool:
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return True
    return "readonly" in str(exc) or "Permission denied" in str(exc)


def _writable_fix(path: Path) -> str:
    return (
        f"give yourself write access to {path} and its directory (ls -ld {path.parent} {path};"
        " chown or chmod them), or set TRACKER_DB to a log on a writable local disk"
    )


def _check_storage(path: Path) -> LogCheck:
    """The log's own check (`EventLog.check`): its storage, and its lock within 2 s."""
    from tracker.log import open_log
    from tracker.log.base import LogCheck

    try:
        log = open_log(path, lock_timeout=2.0)
    except TrackerError as exc:
        return LogCheck(str(path), f"{path}.lock", None, None, exc, exc)
    try:
        return log.check()
    finally:
        log.close()


def _check_log(path: Path, report: LogCheck) -> Check:
    detail: dict[str, Any] = {"path": str(path)}
    exc = report.storage_error
    if isinstance(exc, LockTimeoutError):
        return Check("log", "fail", str(exc), _lock_held_fix(path), exc.exit_code, detail)
    if exc is not None:
        if _permission(exc):
            return Check("log", "fail", str(exc), _writable_fix(path), exc.exit_code, detail)
        fix = "see the cause named in the line above; `tracker doctor` again once it is fixed"
        if "corrupt" in str(exc):
            fix = f"mv {path} {path}.corrupt (a new log starts); sqlite3 {path}.corrupt .recover"
        return Check("log", "fail", str(exc), fix, exc.exit_code, detail)
    result, count = report.integrity, report.events
    if result != "ok":
        fix = f"move {path} aside and start a new log; `sqlite3 FILE .recover` may save events"
        message = f"{_shown(path)}: integrity check says {result}"
        return Check("log", "fail", message, fix, 74, detail)
    local = _local_disk(path)
    detail.update(events=count, local_disk=local)
    message = f"{_shown(path)} ({count} events)"
    if not local:
        fix = "set TRACKER_DB to a path on a local disk (SQLite's WAL and flock need one)"
        return Check("log", "warn", message + ", on a network file system", fix, 0, detail)
    return Check("log", "ok", message, None, 0, detail)


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


def _lock_held_fix(path: Path) -> str:
    lock = f"{path}.lock"
    return f"wait for it and try again; `fuser -v {lock}` shows which process holds it"


def _check_lock(path: Path, report: LogCheck) -> Check:
    lock = Path(report.lock_location)
    detail = {"path": str(lock)}
    exc = report.lock_error
    if isinstance(exc, LockTimeoutError):
        message = f"{_shown(lock)} is held by another process (waited 2 s)"
        return Check("lock", "fail", message, _lock_held_fix(path), exc.exit_code, detail)
    if exc is not None:
        if _permission(exc):
            cause = exc.__cause__
            why = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
            message = f"{_shown(lock)} cannot be opened for writing: {why}"
            return Check("lock", "fail", message, _writable_fix(lock), 74, detail)
        return Check("lock", "fail", str(exc), _writable_fix(lock), exc.exit_code, detail)
    return Check("lock", "ok", f"{_shown(lock)} can be taken", None, 0, detail)


# -- the hook ------------------------------------------------------------------------------------


def _check_hook(repo: Path | str) -> Check:
    try:
        from tracker.push import install as hooks_install

        found = hooks_install.places(Path(repo))
    except (ImportError, TrackerError, OSError) as exc:
        return Check("hook", "warn", f"cannot inspect the hooks: {exc}")
    detail = {"places": [p.to_dict() for p in found]}
    broken = [p for p in found if p.level == "fail"]
    working = [p for p in found if p.level == "ok"]
    odd = [p for p in found if p.level == "warn"]
    if broken:
        first = broken[0]
        return Check("hook", "fail", first.message, first.fix, 78, detail)
    if odd:
        return Check("hook", "warn", odd[0].message, odd[0].fix, 0, detail)
    if working:
        return Check("hook", "ok", "; ".join(p.message for p in working), None, 0, detail)
    message = "no pre-push hook of ours is installed: pushes are not recorded"
    fix = "run `tracker hooks install` (or `--husky`, or `--pre-commit`)"
    return Check("hook", "warn", message, fix, 0, detail)


# -- settings ------------------------------------------------------------------------------------


def _check_settings(repo: Path | str) -> tuple[list[Check], Settings | None]:
    from tracker.config import load_settings

    try:
        settings = load_settings(gitutil.toplevel(repo))
    except TrackerError as exc:
        fix = "correct or remove the setting the line above names"
        return [Check("settings", "fail", str(exc), fix, exc.exit_code)], None
    described = settings.describe()
    checks = [_settings_summary(settings, described)]
    if not settings.sources():
        checks.append(_no_source(settings))
    else:
        checks += [Check("settings", "warn", note, None, 0) for note in settings.notes]
    refused_fix = "delete the key from the file; set the variable in the environment if you need it"
    checks += [Check("settings", "fail", line, refused_fix, 78) for line in settings.refused]
    return checks, settings


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _settings_summary(settings: Settings, described: dict[str, Any]) -> Check:
    origins = settings.origins

    def where(*keys: str) -> str:
        found = [origins[k] for k in keys if origins.get(k) and origins[k] != "default"]
        return f" ({', '.join(dict.fromkeys(found)) or 'default'})"

    if settings.poll_policy == "fixed":
        poll = f"fixed, every {_seconds(settings.poll_interval)}" + where(
            "poll_policy", "poll_interval"
        )
    else:
        poll = (
            f"stepped, every {_seconds(settings.poll_initial)}, then"
            f" {_seconds(settings.poll_long)} after {_seconds(settings.poll_switch_after)}"
        ) + where("poll_policy", "poll_initial", "poll_long", "poll_switch_after")
    sources = []
    if settings.mysql is not None:
        my = settings.mysql
        sources.append(f"mysql {my.host}:{my.port}/{my.database}" + where("mysql_host"))
    if settings.do is not None:
        sources.append(f"digitalocean app {settings.do.app_id}" + where("do_app_id"))
    more = (
        ("sources", "; ".join(sources) or "none"),
        ("branch", settings.branch + where("branch")),
        ("poll", poll),
        ("max wait", _seconds(settings.max_wait) + where("max_wait")),
    )
    names = settings.sources()
    message = f"branch {settings.branch}, watching {' and '.join(names) if names else 'nothing'}"
    return Check("settings", "ok", message, None, 0, described, more)


def _no_source(settings: Settings) -> Check:
    """No source configured: name the half that is missing when only one half is set."""
    origins = settings.origins
    token, app = "do_token" in origins, "do_app_id" in origins
    detail = {"digitalocean_token": token, "digitalocean_app_id": app}
    if token and not app:
        message = "DIGITALOCEAN_TOKEN is set, but TRACKER_DO_APP_ID is not: nothing is watched"
        fix = f"set TRACKER_DO_APP_ID to the id of the app to follow ({DOCTL_APPS})"
        return Check("sources", "fail", message, fix, 78, detail)
    if app and not token:
        message = (
            f"TRACKER_DO_APP_ID is set ({origins['do_app_id']}), but DIGITALOCEAN_TOKEN is not:"
            " nothing is watched"
        )
        fix = f"export DIGITALOCEAN_TOKEN (a read-only token from {API_TOKENS_PAGE})"
        return Check("sources", "fail", message, fix, 78, detail)
    notes = [n for n in settings.notes if "not watched" in n]
    if notes:
        fix = "set DB_HOST (or TRACKER_MYSQL_URL=mysql://user:pass@host:port/database)"
        return Check("sources", "fail", notes[0], fix, 78, detail)
    fix = "set DIGITALOCEAN_TOKEN and TRACKER_DO_APP_ID, or TRACKER_MYSQL_URL"
    return Check("sources", "fail", "no deployment source is configured", fix, 78, detail)


# -- the sources ---------------------------------------------------------------------------------


def _check_sources(settings: Settings) -> list[Check]:
    from tracker.clock import SYSTEM_CLOCK
    from tracker.monitor.loop import build_sources

    checks = []
    for source in build_sources(settings, SYSTEM_CLOCK):
        try:
            obs = source.check()
        finally:
            source.close()
        if source.name == "digitalocean":
            checks.append(_digitalocean(settings, source, obs))
        else:
            checks.append(_mysql(settings, obs))
    return checks


def _observed(obs: Observation, **extra: Any) -> dict[str, Any]:
    return {
        "http_status": obs.http_status,
        "error_kind": obs.error_kind,
        "error": obs.error,
        "latency_ms": obs.latency_ms,
        "ratelimit_remaining": obs.ratelimit_remaining,
        **extra,
    }


def _origin(settings: Settings, key: str, variable: str) -> str:
    origin = settings.origins.get(key, "default")
    return variable if origin == "default" else origin


def _digitalocean(settings: Settings, source: DeploymentSource, obs: Observation) -> Check:
    do = settings.do
    assert do is not None
    base = str(getattr(source, "api_url", do.api_url))
    url = f"{base}/v2/apps/{do.app_id}"
    detail = _observed(obs, api_url=base, url=url, app_id=do.app_id)
    if obs.ok:
        left = (
            f", {obs.ratelimit_remaining} API calls left this hour"
            if obs.ratelimit_remaining is not None
            else ""
        )
        message = f"{base}: app {do.app_id} reachable and authorised{left}"
        return Check("digitalocean", "ok", message, None, 0, detail)
    kind, status = obs.error_kind, obs.http_status
    app_from = _origin(settings, "do_app_id", "TRACKER_DO_APP_ID")
    url_from = _origin(settings, "do_api_url", "TRACKER_DO_API_URL")
    if kind in ("connection", "timeout"):
        what = "timed out" if kind == "timeout" else "is unreachable"
        message = f"the DigitalOcean API at {base} {what}: {obs.error} (GET {url})"
        if "do_api_url" in settings.origins and settings.origins["do_api_url"] != "default":
            fix = f"check {url_from} (the host and the port), and the network"
        else:
            fix = "check the network (and HTTPS_PROXY, if you need a proxy)"
        return Check("digitalocean", "fail", message, fix, 69, detail)
    if kind == "auth":
        message = f"DigitalOcean refused the token (HTTP {status}) for GET {url}"
        fix = f"set DIGITALOCEAN_TOKEN to a valid token with read access ({API_TOKENS_PAGE})"
        return Check("digitalocean", "fail", message, fix, 69, detail)
    if status == 404:
        message = f"no app {do.app_id} for this token (GET {url} answered HTTP 404)"
        fix = f"check TRACKER_DO_APP_ID (from {app_from}): {DOCTL_APPS}"
        return Check("digitalocean", "fail", message, fix, 69, detail)
    if kind == "rate_limited":
        message = f"{base}: reachable and authorised, but rate limited now (HTTP 429)"
        fix = "nothing to do: monitors wait for the limit to reset"
        return Check("digitalocean", "warn", message, fix, 0, detail)
    if kind == "server_error":
        message = f"the DigitalOcean API at {base} is failing: {obs.error} (GET {url})"
        fix = "try again later (https://status.digitalocean.com)"
        return Check("digitalocean", "fail", message, fix, 69, detail)
    if kind == "malformed":
        message = f"{base} does not answer as the App Platform API: {obs.error} (GET {url})"
        fix = f"check {url_from}: it must be the App Platform API's base URL"
        return Check("digitalocean", "fail", message, fix, 69, detail)
    message = f"GET {url}: {obs.error}"
    fix = f"check TRACKER_DO_APP_ID (from {app_from}) and the token's access to it"
    return Check("digitalocean", "fail", message, fix, 69, detail)


def _mysql(settings: Settings, obs: Observation) -> Check:
    my = settings.mysql
    assert my is not None
    where = f"MySQL at {my.host}:{my.port}"
    detail = _observed(obs, host=my.host, port=my.port, database=my.database, table=my.table)
    if obs.ok:
        message = f"{my.host}:{my.port}, table {my.database}.{my.table}: reachable and readable"
        return Check("mysql", "ok", message, None, 0, detail)
    kind = obs.error_kind
    if kind in ("connection", "timeout"):
        message = f"{where} is unreachable: {obs.error}"
        fix = "check DB_HOST and DB_PORT (or TRACKER_MYSQL_URL), and the network"
    elif kind == "auth":
        message = f"{where} refused user {my.user!r}: {obs.error}"
        fix = "check DB_USER and DB_PASS (or TRACKER_MYSQL_URL)"
    else:
        message = f"{where}, table {my.database}.{my.table}: {obs.error}"
        fix = "check DB_NAME, TRACKER_MYSQL_TABLE and the TRACKER_MYSQL_*_COLUMN names"
    return Check("mysql", "fail", message, fix, 69, detail)


# -- the command ---------------------------------------------------------------------------------


def doctor_command(db: Path | None, *, as_json: bool) -> int:
    """Print the checks; exit with the code of the first real failure (warnings do not count)."""
    checks = run_checks(db)
    failures = [c for c in checks if c.level == "fail"]
    code = failures[0].exit_code if failures else 0
    if as_json:
        out = {"ok": not failures, "exit_code": code, "checks": [c.to_dict() for c in checks]}
        print(json.dumps(out, indent=2))
        return code
    from tracker.cli.output import say

    for line in render(checks):
        say(line)
    return code


MARKS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def render(checks: list[Check]) -> list[str]:
    """The human lines: mark, name, message; the extra key-value lines; `fix:` under trouble."""
    width = max((len(c.name) for c in checks), default=0)
    width = max([width, *(len(k) for c in checks for k, _ in c.more)]) + 2
    lines = []
    for c in checks:
        lines.append(f"{MARKS[c.level]:<6}{c.name:<{width}}{c.message}")
        lines += [f"{'':<6}{key:<{width}}{value}" for key, value in c.more]
        if c.level != "ok" and c.fix:
            lines.append(f"{'':<6}fix: {c.fix}")
    return lines


def hooks_status_command(repo: Path, *, as_json: bool) -> int:
    """`tracker hooks status`: one line per place; 78 when a hook of ours is installed but
    broken, else 0."""
    from tracker.cli.output import say
    from tracker.push import install as hooks_install

    info = hooks_install.status(repo)
    code = 78 if any(p["level"] == "fail" for p in info["places"]) else 0
    if as_json:
        print(json.dumps(info, indent=2))
        return code
    rows = info["places"]
    width = max(len(p["name"]) for p in rows) + 2
    marks = {**MARKS, "none": "--"}
    for p in rows:
        say(f"{marks[p['level']]:<6}{p['name']:<{width}}{p['message']}")
        if p["fix"] and p["level"] != "ok":
            say(f"{'':<6}fix: {p['fix']}")
    if not info["installed"]:
        say("no hook of ours is installed: pushes are not recorded (`tracker hooks install`)")
    return code
