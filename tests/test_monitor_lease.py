"""The watcher's fleet lease (`tracker.monitor.lease.AppLease`) in one process, on the session's
private MariaDB: degraded while the shared log is unreachable, the lease taken when it answers
again; lost to another machine meanwhile; a holder cut off keeps its tenure when nobody took
over, and what it appended meanwhile is stored once it gets through.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import wait_until
from tests.support.mariadb_private import PrivateMariaDB
from tracker.clock import FakeClock
from tracker.errors import LeaseLostError
from tracker.events import DeploymentPolled, PushRecorded
from tracker.log.base import Lease
from tracker.log.fleet import FleetLog
from tracker.log.mysql import MySQLLog
from tracker.log.mysql_lease import LeaseLink, lease_ttl
from tracker.monitor.lease import AppLease, lease_key

mysql = pytest.mark.mysql

A = "a" * 40
APP = lease_key("digitalocean", "app-1")
lease_of_nobody = Lease(APP, "", "", 0, 0, 1.0)
POLL = DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING")


@pytest.fixture
def log(url: str, tmp_path: Path) -> Iterator[FleetLog]:
    made = FleetLog.open(
        tmp_path / "a" / "events.db", url, env={"TRACKER_MACHINE_ID": "a"},
        clock=FakeClock(start=1_800_000_000.0), retry_for=0.3, io_timeout=2.0,
    )  # fmt: skip
    yield made
    made.close()


@pytest.fixture
def other(url: str) -> Iterator[LeaseLink]:
    made = LeaseLink(MySQLLog.from_url(url, env={}).settings)
    yield made
    made.close()


def test_the_ttl_comes_from_tracker_lease_ttl() -> None:
    from tracker.errors import ConfigError

    assert lease_ttl({}) == 15.0 and lease_ttl({"TRACKER_LEASE_TTL": "2"}) == 2.0
    assert lease_ttl({"TRACKER_LEASE_TTL": "1m"}) == 60.0
    for bad in ("0", "-3", "soon", "2h"):
        with pytest.raises(ConfigError, match="TRACKER_LEASE_TTL"):
            lease_ttl({"TRACKER_LEASE_TTL": bad})


@mysql
def test_unreachable_at_the_start_it_runs_degraded_and_takes_the_lease_when_it_answers(
    log: FleetLog, mariadb: PrivateMariaDB
) -> None:
    lease = AppLease(log, APP, ttl=30)
    mariadb.kill()
    try:
        assert lease.take() is None  # watch all the same: degraded, unfenced
        assert lease.degraded and log.fence is None
        log.append(A, PushRecorded(sha=A, branch="main"), key="push")  # waits in the outbox
        lease.renew()
        assert lease.degraded and log.fence is None and lease.lost is None
    finally:
        mariadb.start()
    lease.renew()  # a take, this time through
    assert lease.degraded is None and lease.lost is None
    assert log.fence is not None and (log.fence.holder, log.fence.fence) == (lease.holder, 1)
    found = log.lease(APP)
    assert found is not None and found.holder == lease.holder  # readers here know at once
    assert log.forward() is not None and log.sync_state().outbox == 0
    lease.release()
    assert log.fence is None


@mysql
def test_another_machine_took_the_app_while_it_was_degraded_so_it_stops(
    log: FleetLog, mariadb: PrivateMariaDB, other: LeaseLink
) -> None:
    lease = AppLease(log, APP, ttl=30)
    mariadb.kill()
    try:
        assert lease.take() is None and lease.degraded
    finally:
        mariadb.start()
    other.take(APP, "b:7", "host-b", 7, ttl=30)
    lease.renew()
    with pytest.raises(LeaseLostError, match=r"lease lost to b:7 \(fence 1\)"):
        lease.check()
    with pytest.raises(LeaseLostError):  # and nothing more of it is stored
        log.append(A, POLL, key="late")
    assert log.sync_state().outbox == 0 and log.known_keys(["late"]) == set()
    lease.release()


@mysql
def test_a_holder_cut_off_keeps_its_tenure_when_nobody_took_over_and_its_facts_get_through(
    log: FleetLog, mariadb: PrivateMariaDB, other: LeaseLink
) -> None:
    lease = AppLease(log, APP, ttl=0.5)
    assert lease.take() is None and log.fence is not None
    mariadb.kill()
    try:
        log.append(A, PushRecorded(sha=A, branch="main"), key="push")
        log.append(A, POLL, key="poll")
        lease.renew()  # cannot get through: keeps its fence
        assert lease.degraded and log.fence is not None and lease.lost is None
    finally:
        mariadb.start()
    wait_until(lambda: (other.read(APP) or lease_of_nobody).remaining_s < 0, timeout=30)
    found = other.read(APP)  # expired meanwhile; nobody took it
    assert found is not None and found.holder == lease.holder
    lease.renew()
    assert lease.lost is None and log.fence is not None and log.fence.fence == 1
    sent = log.forward()
    assert sent is not None and [s.key for s in sent] == ["push", "poll"]
    lease.release()


def test_the_api_is_asked_with_the_machine_in_the_user_agent() -> None:
    from tracker.monitor.sources.digitalocean import USER_AGENT, DigitalOceanSource
    from tracker.sim.server import SimulatedPlatform

    with SimulatedPlatform(token="t") as sim:
        for machine, expected in (
            (None, USER_AGENT),
            ("ci-7", f"{USER_AGENT} machine/ci-7"),
            ("b\r\nX-Evil: 1", f"{USER_AGENT} machine/b__X-Evil:_1"),  # no header injection
        ):
            source = DigitalOceanSource(sim.base_url, "t", sim.app_id, machine=machine)
            try:
                source.poll(A)
            finally:
                source.close()
            assert sim.requests[-1].user_agent == expected
