"""`tracker doctor` in fleet mode (`TRACKER_LOG_URL` set, SPEC §10): the shared log's checks.

One line each, as the other checks read: reachable; TLS; the user's privileges against the
README's grants; the schema's version; `@@max_connections`; the clock against the server's;
this machine's outbox. The facts come from `tracker.log.mysql_probe`; here they are judged and
worded, each trouble with its fix. Exit codes as the rest of doctor: 74 the shared log cannot be
used (unreachable, refused, missing grants, a schema to migrate or a tracker to upgrade), 78 a
bad `TRACKER_LOG_URL`; the rest are warnings (exit 0).

Never prints a secret: the URL is shown without its password, the driver's errors are scrubbed
(`tracker.mysqlwire.describe_error`), and grants only as the privileges parsed from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.cli.check import Check
from tracker.clock import SYSTEM_CLOCK, Clock, iso
from tracker.config import MySQLSettings, is_loopback, log_settings
from tracker.errors import TrackerError

if TYPE_CHECKING:
    from tracker.log.mysql_probe import ServerFacts

# design/fleet.md §4: one connection per working process (confirmer, watcher, a pulling read),
# none while idle, no pool; "with 50 agents and 20 live monitors, expect about 30-70
# connections", and the team's app shares the same limit. Below 100 a fleet of that size (70 at
# its peak) leaves the app almost nothing, and DigitalOcean's small plans sit at 75.
MIN_CONNECTIONS = 100
# Leases and the API budget use the server's clock (NOW(6)), but push and verdict times, and so
# `stats`' durations and `status`' ages, are each machine's own: a machine more than 2 s off
# mixes them visibly (a verdict before its push, a poll "2 s" early against the 5 s interval).
MAX_SKEW_S = 2.0
UPGRADE = "pip install -U deploy-tracker"


def fleet_checks(
    url: str, log_path: Path, env: Mapping[str, str], clock: Clock = SYSTEM_CLOCK
) -> list[Check]:
    """The shared log's checks, then the outbox's; only the outbox when the server cannot be
    reached (the others need it)."""
    from tracker.log.mysql_probe import probe

    try:
        settings = log_settings(url, env)
    except TrackerError as exc:
        fix = "correct TRACKER_LOG_URL (mysql://user@host:port/database?ssl=required)"
        return [Check("shared-log", "fail", str(exc), fix, exc.exit_code)]
    try:
        facts = probe(settings, clock)
    except TrackerError as exc:
        return [_unreachable(settings, exc), _outbox(log_path, url, env)]
    return [
        _reachable(settings, facts),
        _tls(settings, facts),
        _privileges(settings, facts),
        _schema(settings, facts),
        _connections(facts),
        _clock(facts),
        _outbox(log_path, url, env),
    ]


def _where(s: MySQLSettings) -> str:
    return f"mysql://{s.user}@{s.host}:{s.port}/{s.database}"


def _unreachable(settings: MySQLSettings, exc: TrackerError) -> Check:
    from tracker.mysqlwire import describe_error

    cause = exc.__cause__
    kind = describe_error(cause, settings)[0] if cause is not None else "connection"
    detail = {"url": _where(settings), "error_kind": kind}
    if kind == "auth":
        fix = "check the user in TRACKER_LOG_URL and the password in TRACKER_LOG_PASSWORD"
    elif "does not offer TLS" in str(exc) or "TLS with" in str(exc):
        fix = "give the CA with ?ssl_ca=FILE in TRACKER_LOG_URL, or enable TLS on the server"
    elif kind == "database":
        fix = "check the database name in TRACKER_LOG_URL (created by an administrator)"
    else:
        fix = (
            "check the host and port in TRACKER_LOG_URL and the network (a managed database"
            " admits only its trusted sources: add this machine's address)"
        )
    return Check("shared-log", "fail", str(exc), fix, 74, detail)


def _reachable(settings: MySQLSettings, facts: ServerFacts) -> Check:
    detail = {"url": _where(settings), "user": facts.user, "server_version": facts.version}
    message = f"{_where(settings)}: reachable as {facts.user} (server {facts.version})"
    return Check("shared-log", "ok", message, None, 0, detail)


def _tls(settings: MySQLSettings, facts: ServerFacts) -> Check:
    verified = settings.ssl == "required"
    detail = {
        "version": facts.tls_version, "cipher": facts.tls_cipher, "mode": settings.ssl,
        "verified": verified and facts.tls_version is not None,
    }  # fmt: skip
    if facts.tls_version is not None:
        how = "certificate and host name verified" if verified else "certificate not verified"
        message = f"{facts.tls_version} ({facts.tls_cipher or 'cipher not said'}), {how}"
        return Check("tls", "ok", message, None, 0, detail)
    if is_loopback(settings.host):
        message = (
            f"not encrypted: fine on loopback ({settings.host}), where nothing leaves this machine"
        )
        fix = "use ?ssl=required in TRACKER_LOG_URL once the server is on another machine"
        return Check("tls", "warn", message, fix, 0, detail)
    message = f"the connection to {settings.host} is not encrypted: the password travels in clear"
    return Check("tls", "fail", message, "enable TLS on the server; keep ?ssl=required", 74, detail)


def _privileges(settings: MySQLSettings, facts: ServerFacts) -> Check:
    from tracker.log.mysql_probe import GRANTS

    db, account = settings.database, _account(facts.user)
    if facts.grants is None:
        message = f"cannot read the grants of {facts.user}: {facts.errors.get('grants')}"
        return Check("privileges", "warn", message, None, 0, {"user": facts.user})
    missing = {t: sorted(need - facts.privileges(db, t)) for t, need in GRANTS.items()}
    missing = {t: p for t, p in missing.items() if p}
    extra = {t: sorted(facts.privileges(db, t) - need) for t, need in GRANTS.items()}
    extra = {t: p for t, p in extra.items() if p}
    detail: dict[str, Any] = {
        "user": facts.user, "missing": missing, "extra": extra, "roles": facts.roles,
    }  # fmt: skip
    if missing:
        lacks = "; ".join(f"{', '.join(p)} on {db}.{t}" for t, p in missing.items())
        roles = " (grants through roles are not expanded here)" if facts.roles else ""
        message = f"{facts.user} lacks {lacks}{roles}"
        fix = "as an administrator: " + " ".join(
            f"GRANT {', '.join(p)} ON `{db}`.`{t}` TO {account};" for t, p in missing.items()
        )
        return Check("privileges", "fail", message, fix, 74, detail)
    if extra:
        return _too_much(facts, db, account, extra, detail)
    message = f"{facts.user} holds the README's grants on {db}, and no more"
    return Check("privileges", "ok", message, None, 0, detail)


def _too_much(
    facts: ServerFacts, db: str, account: str, extra: dict[str, list[str]], detail: dict[str, Any]
) -> Check:
    """More than the README's grants: a warning (the tracker works), loudest for `events`,
    whose append-only rests on the user's lack of UPDATE and DELETE there. A grant on every
    table (`db.*`, `*.*`) cannot be revoked table by table: the fix is a user of its own."""
    why = (
        ": append-only relies on the tracker's user having only SELECT, INSERT on events"
        if "events" in extra
        else ""
    )
    broad = [
        g for g in facts.grants or ()
        if g.table == "*" and g.covers(db, "events") and g.privileges - {"USAGE", "SELECT"}
    ]  # fmt: skip
    if broad:
        held = "; ".join(
            f"{', '.join(sorted(g.privileges))} on {g.database}.*" for g in broad
        ).replace("*.*", "*")
        message = f"{facts.user} holds {held}: it could change or delete events{why}"
        fix = (
            "give the tracker a user of its own with only the README's grants (keep this one"
            " for `tracker migrate --shared`)"
        )
        return Check("privileges", "warn", message, fix, 0, detail)
    more = "; ".join(f"{', '.join(p)} on {db}.{t}" for t, p in extra.items())
    message = f"{facts.user} holds more than it needs: {more}{why}"
    fix = " ".join(
        f"REVOKE {', '.join(p)} ON `{db}`.`{t}` FROM {account};" for t, p in extra.items()
    )
    return Check("privileges", "warn", message, f"as an administrator: {fix}", 0, detail)


def _account(user: str) -> str:
    name, _, host = user.rpartition("@")
    return f"'{name}'@'{host}'" if name else f"'{user}'"


def _schema(settings: MySQLSettings, facts: ServerFacts) -> Check:
    from tracker.log.mysql_server import SCHEMA_VERSION, known

    state = facts.schema
    ours = sorted(known())
    if state is None:
        message = f"cannot read the schema's version: {facts.errors.get('schema')}"
        fix = "grant SELECT on schema_migrations and schema_compat (the README's GRANT block)"
        return Check("schema", "fail", message, fix, 74, {"known": ours})
    detail = {
        "applied": sorted(state.applied), "known": ours, "client": SCHEMA_VERSION,
        "min_client": state.min_client, "unknown": state.unknown,
    }  # fmt: skip
    problem = state.problem(f"{settings.user}@{settings.host}:{settings.port}/{settings.database}")
    if problem is not None:
        if state.incompatible:
            fix = (
                f"upgrade tracker on this machine ({UPGRADE}) to the version that migrated the"
                " shared log; until then this machine's events wait in its outbox"
            )
        else:
            fix = (
                "as an administrator (a user with DDL rights): TRACKER_LOG_URL=... tracker"
                " migrate --shared"
            )
        return Check("schema", "fail", problem, fix, 74, detail)
    message = f"migrations {_numbers(state.applied)} applied (this tracker knows {_numbers(ours)})"
    if state.unknown:
        message += f"; {_numbers(state.unknown)} from a newer tracker, compatible"
    return Check("schema", "ok", message, None, 0, detail)


def _numbers(found: object) -> str:
    return ", ".join(str(n) for n in sorted(found))  # type: ignore[call-overload]


def _connections(facts: ServerFacts) -> Check:
    limit, per_user = facts.max_connections, facts.max_user_connections
    detail = {
        "max_connections": limit, "max_user_connections": per_user,
        "connected": facts.connected, "threshold": MIN_CONNECTIONS,
    }  # fmt: skip
    if limit is None:
        message = f"cannot read @@max_connections: {facts.errors.get('connections')}"
        return Check("connections", "warn", message, None, 0, detail)
    using = f" ({facts.connected} in use now)" if facts.connected is not None else ""
    message = f"@@max_connections {limit}{using}"
    low = [f"@@max_connections {limit}"] if limit < MIN_CONNECTIONS else []
    if per_user and per_user < MIN_CONNECTIONS:
        low.append(f"@@max_user_connections {per_user}")
        message += f", @@max_user_connections {per_user}"
    if low:
        message = (
            f"{' and '.join(low)}: low for a fleet (each working process holds one connection:"
            f" about 30-70 for 50 agents, and the app shares the limit); {MIN_CONNECTIONS} or"
            " more is advised"
        ) + using
        fix = "a larger database plan, or fewer agents per shared log"
        return Check("connections", "warn", message, fix, 0, detail)
    return Check("connections", "ok", message, None, 0, detail)


def _clock(facts: ServerFacts) -> Check:
    skew, rtt = facts.skew, facts.round_trip
    detail = {
        "skew_s": skew, "round_trip_ms": None if rtt is None else round(rtt * 1000, 3),
        "threshold_s": MAX_SKEW_S,
    }  # fmt: skip
    if skew is None or rtt is None:
        message = f"cannot read the server's clock: {facts.errors.get('clock')}"
        return Check("clock", "warn", message, None, 0, detail)
    if abs(skew) > MAX_SKEW_S:
        way = "behind" if skew > 0 else "ahead of"
        message = (
            f"this machine's clock is {abs(skew):.1f} s {way} the server's: leases use the"
            " server's clock, but push and verdict times (and so stats) are this machine's"
        )
        fix = "synchronise the clock (NTP: chrony or systemd-timesyncd)"
        return Check("clock", "warn", message, fix, 0, detail)
    off = f"{abs(skew) * 1000:.1f} ms" if abs(skew) < 1 else f"{abs(skew):.2f} s"
    message = (
        f"within {off} of the server's (NOW(6), half the {rtt * 1000:.1f} ms round trip"
        " allowed for)"
    )
    return Check("clock", "ok", message, None, 0, detail)


def _outbox(log_path: Path, url: str, env: Mapping[str, str]) -> Check:
    """How many events wait on this machine, and why the last attempt failed (the outbox file
    alone: read even when the server cannot be reached)."""
    from tracker.log.fleet import FleetLog

    try:
        with FleetLog.open(log_path, url, env=env) as log:
            state = log.sync_state()
            where = log.outbox_path
    except TrackerError as exc:
        fix = "see the cause in the line above; the outbox is a file beside the local log"
        return Check("outbox", "fail", str(exc), fix, exc.exit_code, {"path": str(log_path)})
    pulled = None if state.pulled_at is None else iso(state.pulled_at)
    detail = {
        "path": str(where), "waiting": state.outbox, "error": state.error, "pulled_at": pulled,
    }  # fmt: skip
    last = f"last pulled {pulled}" if pulled else "never pulled here yet"
    if state.outbox:
        why = f"; the last attempt failed: {state.error}" if state.error else ""
        count = "1 event waits" if state.outbox == 1 else f"{state.outbox} events wait"
        message = f"{count} to be forwarded ({last}){why}"
        fix = "`tracker sync` forwards them (each is stored once) once the lines above are ok"
        return Check("outbox", "warn", message, fix, 0, detail)
    message = f"empty ({last})"
    if state.error:
        message += f"; the last attempt failed: {state.error}"
        return Check("outbox", "warn", message, "`tracker sync` tries again", 0, detail)
    return Check("outbox", "ok", message, None, 0, detail)
