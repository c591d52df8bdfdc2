"""The fleet's watch leases (`tracker.log.mysql_lease`, SPEC §10): take, renew, expiry, takeover
and the fence on appends, on the session's private MariaDB (the server's clock decides expiry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.gitrepo import wait_until
from tests.support.mariadb_private import PrivateMariaDB, readme_user
from tracker.clock import FakeClock
from tracker.errors import LeaseLostError
from tracker.events import DeploymentPolled, PushRecorded
from tracker.log.base import Fence
from tracker.log.fleet import FleetLog
from tracker.log.mysql import MySQLLog
from tracker.log.mysql_lease import LeaseLink

pytestmark = pytest.mark.mysql

A = "a" * 40
APP = "digitalocean:app-1"
POLL = DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING")


@pytest.fixture
def link(url: str) -> Iterator[LeaseLink]:
    made = LeaseLink(MySQLLog.from_url(url, env={}).settings)
    yield made
    made.close()


def expired(link: LeaseLink) -> bool:
    found = link.read(APP)
    return found is not None and found.remaining_s < 0


def test_take_renew_expire_and_takeover_move_the_fence_on_the_servers_clock(
    link: LeaseLink,
) -> None:
    first = link.take(APP, "a:1", "host-a", 1, ttl=30)
    assert (first.holder, first.fence, first.host, first.pid) == ("a:1", 1, "host-a", 1)
    assert 25 < first.remaining_s <= 30 and first.machine == "a"
    held = link.take(APP, "b:2", "host-b", 2, ttl=30)  # not expired: still a's
    assert (held.holder, held.fence, held.host) == ("a:1", 1, "host-a")
    renewed = link.renew(APP, "a:1", 1, ttl=0.3)
    assert renewed is not None and renewed.holder == "a:1" and renewed.remaining_s <= 0.3
    wait_until(lambda: expired(link), timeout=30)
    again = link.take(APP, "a:1", "host-a", 1, ttl=0.3)  # its own, expired: the tenure goes on
    assert (again.holder, again.fence) == ("a:1", 1) and again.remaining_s > 0
    wait_until(lambda: expired(link), timeout=30)
    taken = link.take(APP, "b:2", "host-b", 2, ttl=30)  # expired: taken over, fence on
    assert (taken.holder, taken.fence, taken.host, taken.pid) == ("b:2", 2, "host-b", 2)
    stale = link.renew(APP, "a:1", 1, ttl=30)  # the old holder's renewal changes nothing
    assert stale is not None and (stale.holder, stale.fence) == ("b:2", 2)
    link.release(APP, "a:1", 1)  # not a's to release
    assert not expired(link)
    link.release(APP, "b:2", 2)
    wait_until(lambda: expired(link), timeout=30)  # at once on the server's clock
    third = link.take(APP, "c:3", "host-c", 3, ttl=30)
    assert (third.holder, third.fence) == ("c:3", 3)


def test_an_unreachable_server_is_a_log_error_and_the_link_opens_again(
    link: LeaseLink, mariadb: PrivateMariaDB
) -> None:
    from tracker.errors import LogError

    link.take(APP, "a:1", "host-a", 1, ttl=30)
    mariadb.kill()
    try:
        with pytest.raises(LogError, match="lease"):
            link.renew(APP, "a:1", 1, ttl=30)
    finally:
        mariadb.start()
    found = link.renew(APP, "a:1", 1, ttl=30)
    assert found is not None and found.holder == "a:1"


def test_a_fenced_append_is_refused_after_a_takeover_and_an_unfenced_one_passes(
    url: str, link: LeaseLink
) -> None:
    log = MySQLLog.from_url(url, env={}, clock=FakeClock(start=1_800_000_000.0))
    try:
        log.append(A, PushRecorded(sha=A, branch="main"), key="push")
        mine = link.take(APP, "a:1", "host-a", 1, ttl=0.3)
        log.fence = mine.fence_of()
        assert log.append(A, POLL, key="poll:1") is not None  # held: written
        wait_until(lambda: expired(link), timeout=30)
        assert log.append(A, POLL, key="poll:2") is not None  # expired, nobody took it: still
        theirs = link.take(APP, "b:2", "host-b", 2, ttl=30)
        with pytest.raises(LeaseLostError, match=r"lease lost to b:2 \(fence 2\)") as lost:
            log.append(A, POLL, key="poll:1")  # a key stored already: still the fence's refusal
        assert (lost.value.holder, lost.value.fence) == ("b:2", 2)
        with pytest.raises(LeaseLostError):
            log.append(A, POLL, key="poll:3")
        assert log.retries["replanned"] == 0  # a refused fence is not a conflict to replan
        log.fence = None
        assert log.append(A, POLL, key="poll:4") is not None  # unfenced: never refused
        log.fence = theirs.fence_of()
        assert log.append(A, POLL, key="poll:5") is not None
        log.fence = Fence("digitalocean:other", "a:1", 1)  # a lease nobody ever took
        with pytest.raises(LeaseLostError, match="lease lost to nobody"):
            log.append(A, POLL, key="poll:6")
        keys = [e.key for e in log.events()]
        assert keys == ["push", "poll:1", "poll:2", "poll:4", "poll:5"]
        assert log.integrity_check() == "ok"
    finally:
        log.close()


def fleet(tmp_path: Path, url: str, name: str) -> FleetLog:
    return FleetLog.open(
        tmp_path / name / "events.db", url, env={"TRACKER_MACHINE_ID": name},
        clock=FakeClock(start=1_800_000_000.0), retry_for=0.5, io_timeout=5.0,
    )  # fmt: skip


def test_outbox_rows_of_a_lost_fence_are_refused_and_dropped_each_event_stored_once(
    url: str, link: LeaseLink, tmp_path: Path
) -> None:
    a = fleet(tmp_path, url, "a")
    try:
        a.forward_on_append = False  # as when its appends waited out an outage
        a.append(A, PushRecorded(sha=A, branch="main"), key="push")  # unfenced
        a.fence = link.take(APP, "a:1", "host-a", 1, ttl=0.3).fence_of()
        a.append(A, POLL, key="poll:1")
        a.append(A, POLL, key="poll:2")
        a.fence = None
        a.append(A, POLL, key="poll:3")  # unfenced again (say, a reader's)
        assert a.sync_state().outbox == 4
        assert a.deployment(A).polls == 2 + 1  # type: ignore[union-attr]  # its own view
        wait_until(lambda: expired(link), timeout=30)
        link.take(APP, "b:2", "host-b", 2, ttl=30)  # taken over while a's rows waited
        sent = a.forward()  # not a's fence (a reader forwarding): dropped, no error
        assert sent is not None and [s.key for s in sent] == ["push", "poll:3"]
        assert a.sync_state().outbox == 0
        assert [e.key for e in a.events()] == ["push", "poll:3"]
        assert a.deployment(A).polls == 1  # type: ignore[union-attr]
        # the holder's own process: the refusal reaches it, even through append
        a.fence = Fence(APP, "a:1", 1)
        a.forward_on_append = True
        with pytest.raises(LeaseLostError, match="b:2"):
            a.append(A, POLL, key="poll:4")
        assert a.sync_state().outbox == 0 and a.sync_state().error is None
        again = a.forward()
        assert again == []  # nothing left, nothing doubled
        b = fleet(tmp_path, url, "b")
        try:
            b.fence = Fence(APP, "b:2", 2)
            assert b.append(A, POLL, key="poll:5") is not None
            assert b.sync_state().outbox == 0
            keys = [e.key for e in b.events()]
            assert keys == ["push", "poll:3", "poll:5"] and len(set(keys)) == len(keys)
        finally:
            b.close()
    finally:
        a.close()


def test_a_pull_keeps_the_leases_with_the_time_left_on_the_servers_clock(
    url: str, link: LeaseLink, tmp_path: Path
) -> None:
    b = fleet(tmp_path, url, "b")
    try:
        assert b.pull() == 0 and b.lease(APP) is None
        link.take(APP, "a:1", "host-a", 1, ttl=30)
        assert b.pull() == 0
        found = b.lease(APP)
        assert found is not None and (found.holder, found.fence, found.machine) == ("a:1", 1, "a")
        assert 20 < found.remaining_s <= 30
        b.clock.advance(31)  # type: ignore[attr-defined]  # this machine's clock only
        found = b.lease(APP)
        assert found is not None and found.remaining_s < 0  # reckoned: expired by now
        assert b.claim_resume(APP, every=10) and not b.claim_resume(APP, every=10)
        b.clock.advance(11)  # type: ignore[attr-defined]
        assert b.claim_resume(APP, every=10)
    finally:
        b.close()


def test_the_lease_table_has_a_primary_key_and_is_migration_2(url: str) -> None:
    from tracker.log.mysql_server import known

    assert 2 in known()
    settings = MySQLLog.from_url(url, env={}).settings
    with pymysql.connect(
        host=settings.host, port=settings.port, user=settings.user, password=settings.password,
        database=settings.database,
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute("SELECT version FROM schema_migrations WHERE version = 2")
        assert cur.fetchone() == (2,)
        cur.execute("SHOW KEYS FROM watch_leases WHERE Key_name = 'PRIMARY'")
        assert [r[4] for r in cur.fetchall()] == ["app"]


def test_the_readme_grants_suffice_to_take_renew_release_and_fence(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, tmp_path: Path
) -> None:
    with readme_user(mariadb, fresh_database) as user:
        target = user.url
        env = user.env
        limited = LeaseLink(MySQLLog.from_url(target, env=env).settings)
        try:
            mine = limited.take(APP, "a:1", "host-a", 1, ttl=30)
            renewed = limited.renew(APP, "a:1", 1, ttl=30)
            assert renewed is not None and renewed.holder == "a:1"
            log = FleetLog.open(tmp_path / "a" / "events.db", target, env={**env,
                                "TRACKER_MACHINE_ID": "a"})  # fmt: skip
            try:
                log.fence = mine.fence_of()
                assert log.append(A, PushRecorded(sha=A, branch="main")) is not None
                assert log.sync_state().outbox == 0 and log.lease(APP) is not None
            finally:
                log.close()
            limited.release(APP, "a:1", 1)
            found = limited.read(APP)
            assert found is not None and found.remaining_s <= 0
        finally:
            limited.close()
