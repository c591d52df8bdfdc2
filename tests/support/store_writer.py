"""A writer process for the store's tests and benches: `python tests/support/store_writer.py`.

Modes:
  concurrent DB WRITER COUNT STREAMS BARRIER [LATENCIES [PACE]]
      print `ready`, wait for the file BARRIER to exist, then append COUNT events through
      `SQLiteLog.append`, round-robin over STREAMS (comma-separated SHAs), each keyed
      `w<WRITER>:<n>`; write one append latency in seconds per line to LATENCIES if given;
      with PACE, sleep a random 0..PACE seconds before each append (an offered, not a
      saturating, load).
  forever DB WRITER
      append batches of 1 to 5 events (keyed `k<WRITER>:<batch>:<i>/<size>`) until killed,
      printing `ready` once the store is open; a terminal verdict always comes alone.
  hold-lock DB
      hold the log's lock, print `held`, and keep it until standard input closes.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from tracker.events import DeploymentPolled, DeploymentSucceeded, Event, PushRecorded
from tracker.log import open_log
from tracker.log.sqlite import Append, SQLiteLog


def sha_of(n: int) -> str:
    """A deterministic 40-hex commit SHA."""
    import hashlib

    return hashlib.sha1(f"commit-{n}".encode()).hexdigest()


def event_for(writer: int, n: int, stream: str) -> Event:
    """The n-th event a writer appends to a stream: a push first, then polls."""
    if n < 1:
        return PushRecorded(sha=stream, branch="main", source="api", push_id=f"w{writer}")
    return DeploymentPolled(
        source="digitalocean", ok=n % 7 != 0, found=True, phase="BUILDING",
        deployment_id=f"dep-{stream[:8]}", api_calls=1, latency_ms=float(n),
        error=None if n % 7 else "timeout", error_kind=None if n % 7 else "timeout",
    )  # fmt: skip


def run_concurrent(args: list[str]) -> None:
    db, writer, count, streams, barrier = args[:5]
    latencies_path = args[5] if len(args) > 5 else None
    pace = float(args[6]) if len(args) > 6 else 0.0
    rng = random.Random(writer)
    shas = streams.split(",")
    store = open_log(db)  # a file path, or the shared log's mysql:// URL
    store.last_seq()  # open and migrate before the start line, like a warm process
    print("ready", flush=True)
    while not Path(barrier).exists():
        time.sleep(0.002)
    latencies: list[float] = []
    w = int(writer)
    for n in range(int(count)):
        stream = shas[n % len(shas)]
        if pace:
            time.sleep(rng.uniform(0, pace))
        started = time.perf_counter()
        store.append(stream, event_for(w, n // len(shas), stream), key=f"w{w}:{n}")
        latencies.append(time.perf_counter() - started)
    if latencies_path:
        Path(latencies_path).write_text("".join(f"{x:.9f}\n" for x in latencies))


def run_forever(args: list[str]) -> None:
    db, writer = args[:2]
    store = SQLiteLog(db)
    store.last_seq()
    rng = random.Random(int(writer))
    shas = [sha_of(int(writer) * 10 + i) for i in range(3)]
    print("ready", flush=True)
    batch = 0
    while True:
        size = rng.randint(1, 5)
        items = []
        for i in range(size):
            sha = rng.choice(shas)
            event = event_for(int(writer), rng.randint(0, 20), sha)
            items.append(Append(sha, event, key=f"k{writer}:{batch}:{i}/{size}"))
        if rng.random() < 0.1:  # alone in its batch: a late verdict is skipped, not half-written
            verdict = DeploymentSucceeded(deployment_id="dep", source="test")
            items = [Append(rng.choice(shas), verdict, key=f"k{writer}:{batch}:0/1")]
        store.append_all(items)
        batch += 1


def run_hold_lock(args: list[str]) -> None:
    store = SQLiteLog(args[0])
    store.last_seq()
    with store.locked():
        print("held", flush=True)
        sys.stdin.read()


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    {"concurrent": run_concurrent, "forever": run_forever, "hold-lock": run_hold_lock}[mode](args)


if __name__ == "__main__":
    main()
