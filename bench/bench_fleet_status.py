"""Measure fleet mode's reads and appends: `status` of another machine's push and the append.

    .venv/bin/python -m bench.bench_fleet_status [--calls 50] [--delays 0,20]

Starts a private MariaDB (tests/support/mariadb_private.py) in a temporary directory and, for
each one-way delay (0: loopback; 20 ms: RTT 40 ms through tests/support/delay_proxy.py), two
"machines" (separate local logs, one shared URL, `Tracker` in this process). Prints p50/p99 of:
machine B's `status` of machine A's push answered from the cache (a verdict: no pull), needing
the bounded pull (pending: one pull each time), `--offline`, and with the server stopped; and
of one append on a single machine (SQLiteLog) next to the fleet log's (outbox, forward, pull)
and the fleet log's with the server stopped (outboxed only). Never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.bench_fleet import percentile, start_proxy
from tests.support.mariadb_private import create_database, start_private
from tracker.api import Tracker
from tracker.config import load_settings
from tracker.events import DeploymentPolled, DeploymentSucceeded
from tracker.log.fleet import FleetLog
from tracker.log.mysql import migrate
from tracker.log.sqlite import SQLiteLog


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    found: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return percentile(found, 50), percentile(found, 99)


def tracker(path: Path, url: str, name: str) -> Tracker:
    os.environ["TRACKER_LOG_URL"] = url
    os.environ["TRACKER_MACHINE_ID"] = name
    return Tracker(path / name / "events.db", settings=load_settings(None, env={}))


def show(label: str, p: tuple[float, float]) -> None:
    print(f"  {label:<52} p50 {p[0]:8.2f} ms   p99 {p[1]:8.2f} ms")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--delays", default="0,20")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="tracker-bench-fleet-status-"))
    server = start_private(base / "db")
    try:
        for delay in (float(d) for d in args.delays.split(",")):
            database = create_database(server)
            url = server.url(database)
            migrate(url, env={})
            proxy = None
            if delay:
                proxy, port = start_proxy(server.port, delay)
                url = url.replace(f":{server.port}/", f":{port}/")
            print(f"one-way delay {delay:g} ms ({args.calls} calls each)")
            scratch = base / f"d{delay:g}"
            a, b = tracker(scratch, url, "a"), tracker(scratch, url, "b")
            done, going = "a" * 40, "b" * 40
            a.record_push(done, branch="main", monitor=False)
            a.store.append(done, DeploymentSucceeded(deployment_id="d1"), key="ok:1")
            a.record_push(going, branch="main", monitor=False)
            b.status(done)  # pulls both
            show("status of A's push on B, cache hit (verdict)", timed(lambda: b.status(done),
                 args.calls))  # fmt: skip
            show("status of A's push on B, bounded pull (pending)",
                 timed(lambda: b.status(going), args.calls))  # fmt: skip
            show("status --offline (pending)",
                 timed(lambda: b.status(going, offline=True), args.calls))  # fmt: skip
            local = SQLiteLog(scratch / "single" / "events.db")
            poll = DeploymentPolled(source="digitalocean", ok=True, phase="BUILDING")
            show("append, single machine (SQLiteLog)", timed(lambda: local.append(done, poll),
                 args.calls))  # fmt: skip
            fleet = a.store
            assert isinstance(fleet, FleetLog)
            show("append, fleet (outbox + forward + pull)",
                 timed(lambda: fleet.append(going, poll), args.calls))  # fmt: skip
            if proxy is not None:
                proxy.terminate()
                proxy.wait()
            server.stop()
            try:
                b.status(going)  # the first failure (then status answers within the deadline)
                show("status (pending) with the server stopped",
                     timed(lambda: b.status(going), args.calls))  # fmt: skip
                show("append, fleet, server stopped (outboxed only)",
                     timed(lambda: fleet.append(going, poll), args.calls))  # fmt: skip
            finally:
                server.start()
            for t in (a, b):
                t.close()
            local.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
