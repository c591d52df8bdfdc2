"""A fleet machine's appender, for tests: `fleet_writer.py DB URL MACHINE COUNT BARRIER`.

Opens the fleet log of the local log DB over the shared log URL as MACHINE, waits for the file
BARRIER to exist (all writers start at once), appends a push and COUNT keyed polls of its own
stream, then forwards what is left; prints `done`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tracker.events import DeploymentPolled, PushRecorded
from tracker.log.fleet import FleetLog


def main() -> None:
    db, url, machine, count, barrier = sys.argv[1:6]
    log = FleetLog.open(Path(db), url, env={"TRACKER_MACHINE_ID": machine}, retry_for=30.0)
    stream = machine[0] * 40
    print("ready", flush=True)
    while not Path(barrier).exists():
        time.sleep(0.005)
    log.append(stream, PushRecorded(sha=stream, branch="main"), key=f"push:{stream}")
    for n in range(int(count)):
        log.append(
            stream,
            DeploymentPolled(source="digitalocean", ok=True, latency_ms=n),
            key=f"poll:{machine}:{os.getpid()}:{n}",
        )
    assert log.forward() is not None
    log.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
