"""Fleet mode's commands (SPEC §10): `tracker migrate --shared` and `tracker sync [--follow]`.

`migrate --shared` is the only thing that runs the shared schema's migrations (under the named
lock `tracker:migrate`, `tracker.log.mysql_server.migrate`); never a hook, an append or a read.
`sync` forwards this machine's outbox and pulls the shared log into the cache; `--follow` keeps
doing so every `--interval`, keeping a cache warm for fast `status` answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracker.cli.output import say
from tracker.errors import ConfigError, LogError, UsageError
from tracker.log import LOG_URL_ENV, fleet_url

if TYPE_CHECKING:
    from tracker.cli.core import Log
    from tracker.log.fleet import FleetLog

NOT_FLEET = (
    f"fleet mode is off: set {LOG_URL_ENV}=mysql://user@host:port/db?ssl=required (the"
    " password in TRACKER_LOG_PASSWORD)"
)


def migrate_command(*, shared: bool) -> int:
    """Run the shared log's pending migrations; say which ran."""
    if not shared:
        raise UsageError(
            "the local log migrates itself when opened; `tracker migrate --shared` migrates the"
            " fleet's shared log"
        )
    url = fleet_url()
    if url is None:
        raise ConfigError(NOT_FLEET, setting=LOG_URL_ENV)
    from tracker.log.mysql_server import migrate

    done = migrate(url)
    if done:
        say(f"the shared log: ran migrations {', '.join(str(n) for n in done)}")
    else:
        say("the shared log's schema is up to date")
    return 0


def sync_command(*, follow: bool, interval: float, log: Log) -> int:
    """Forward the outbox and pull once (74 when the shared log is unreachable); with `follow`,
    again every `interval` seconds until interrupted, saying each change and each failure."""
    if fleet_url() is None:
        raise ConfigError(NOT_FLEET, setting=LOG_URL_ENV)
    with log.open() as tracker:
        store = tracker.store
        from tracker.log.fleet import FleetLog

        assert isinstance(store, FleetLog)  # fleet_url() is set: the tracker opened a fleet log
        if not follow:
            ok, line = _sync_once(store)
            say(line)
            if not ok:
                raise LogError(line)
            return 0
        last = ""
        while True:
            _, line = _sync_once(store)
            if line != last:
                say(line)
                last = line
            tracker.clock.sleep(interval)


def _sync_once(store: FleetLog) -> tuple[bool, str]:
    before = store.last_seq()
    sent = store.forward()
    state = store.sync_state()
    if sent is None:
        return False, (
            f"the shared log is unreachable: {state.error}; {state.outbox} events wait in the"
            " outbox"
        )
    return True, (
        f"synced: forwarded {len(sent)}, pulled {store.last_seq() - before}, cache at"
        f" position {store.last_seq()}, outbox {state.outbox}"
    )
