"""Build a large event log fast, exactly as appends would have left it.

Each deployment is ten events (push, confirmed, monitor started, six polls, a terminal verdict;
about 10 % fail with a log tail). Events are written with `executemany` in big transactions using
the real schema, and the projection rows are computed with the real fold
(`tracker.projections.evolve`), so `SQLiteLog.rebuild()` finds no difference (a test checks it).

    .venv/bin/python -m bench.seed --deployments 100000 [--out PATH]

`cached(n)` returns a seeded file under `bench/out/`, building it only when the code that shapes
it (schema, events, projections, this file) has changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tracker.clock import iso
from tracker.events import (
    DeploymentFailed,
    DeploymentPolled,
    DeploymentSucceeded,
    Event,
    MonitorStarted,
    PushConfirmed,
    PushRecorded,
)
from tracker.log.sqlite import PROJECTION, SQLiteLog
from tracker.projections import (
    CALL_COLUMNS,
    ROW_COLUMNS,
    StoredEvent,
    evolve,
    measure_rows,
    row_values,
    source_call,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
END = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the seeded history ends here (deterministic)
SPACING_S = 60.0  # one push a minute
PHASES = ("PENDING_BUILD", "BUILDING", "BUILDING", "DEPLOYING", "DEPLOYING", "DEPLOYING")
CHUNK = 5_000  # deployments per transaction
EVENTS_PER_DEPLOYMENT = 10
_INSERT_EVENT = (
    "INSERT INTO events (seq, stream, version, type, recorded_at, data, key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ROW = (
    f"INSERT INTO deployments ({', '.join(ROW_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
_INSERT_MEASURE = (
    "INSERT INTO deployment_measures (sha, measure, value, pushed_at, branch)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_CALL = (
    f"INSERT INTO source_calls ({', '.join(CALL_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)


def sha_of(n: int) -> str:
    """The deterministic commit SHA of the n-th seeded deployment."""
    return hashlib.sha1(f"seeded-commit-{n}".encode()).hexdigest()


def deployment_events(n: int, rng: random.Random) -> Iterator[tuple[float, Event, str | None]]:
    """The ten events of deployment `n`: (recorded at, event, idempotency key)."""
    sha, t0 = sha_of(n), END - SPACING_S * (n + 1)
    dep = f"dep-{sha[:12]}"
    yield t0, PushRecorded(sha=sha, branch="main", remote="origin", pushed_by="agent",
                           host="bench", source="hook", pushed_at=iso(t0),
                           push_id=f"p{n}"), f"{sha}:push:p{n}"  # fmt: skip
    yield t0 + 0.8, PushConfirmed(sha=sha), f"{sha}:confirmed"
    yield t0 + 1.2, MonitorStarted(pid=10_000 + n % 50_000, host="bench", policy="stepped",
                                   sources=["digitalocean"], max_wait_s=480.0), None  # fmt: skip
    at = t0 + 1.2
    for i, phase in enumerate(PHASES):
        at += 5.0 + rng.random() * (10.0 if i > 2 else 0.5)
        ok = rng.random() > 0.03
        yield at, DeploymentPolled(
            source="digitalocean", ok=ok, found=ok and i > 0, phase=phase if ok and i else None,
            deployment_id=dep if ok and i else None, http_status=200 if ok else 503,
            latency_ms=round(80 + rng.random() * 200, 1), ratelimit_remaining=5000 - i,
            error=None if ok else "HTTP 503", error_kind=None if ok else "http_5xx",
            api_calls=1, retry=not ok and i > 0, steps_done=i, steps_total=6,
        ), None  # fmt: skip
    at += 5.0 + rng.random() * 5.0
    if rng.random() < 0.1:
        tail = [f"step build: line {k} of the failed build" for k in range(20)]
        yield at, DeploymentFailed(
            deployment_id=dep, reason={"code": "BuildJobFailed", "message": "build failed"},
            failed_step="build", log_tail=tail, detected_at=iso(at), platform_at=iso(at - 2.0),
            source="digitalocean",
        ), f"{sha}:outcome"  # fmt: skip
    else:
        yield at, DeploymentSucceeded(
            deployment_id=dep, detected_at=iso(at), platform_at=iso(at - 2.0),
            source="digitalocean",
        ), f"{sha}:outcome"  # fmt: skip


def _dumps(data: dict[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


Rows = list[tuple[object, ...]]
Chunk = tuple[Rows, Rows, Rows, Rows]


def _chunk(job: tuple[int, int, int]) -> Chunk:
    """Event, projection, measure and call rows of deployments first..last-1 (10 events
    each)."""
    first, last, seed_value = job
    rng = random.Random(seed_value * 1_000_003 + first)
    events: list[tuple[object, ...]] = []
    rows: list[tuple[object, ...]] = []
    calls: list[tuple[object, ...]] = []
    measured: list[tuple[object, ...]] = []
    seq = first * EVENTS_PER_DEPLOYMENT
    for n in range(first, last):
        sha, row = sha_of(n), None
        for version, (at, event, key) in enumerate(deployment_events(n, rng), start=1):
            seq += 1
            data = event.to_data()
            stored = StoredEvent(seq, sha, version, event.TYPE, iso(at), data, key)
            events.append((seq, sha, version, event.TYPE, stored.recorded_at, _dumps(data), key))
            row = evolve(row, event, stored)
            call = source_call(event, stored, row)
            if call is not None:
                calls.append(call)
        assert row is not None
        rows.append(row_values(row))
        measured += measure_rows(row)
    return events, rows, measured, calls


def seed(path: Path, deployments: int, *, seed_value: int = 1, workers: int = 2) -> int:
    """Write a fresh log of `deployments` × 10 events to `path`; returns the event count.

    Worker processes fold chunks of deployments while this one writes them.
    """
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with SQLiteLog(path, synchronous="OFF") as store:
        store.last_seq()  # creates the file owner-only and migrates it
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    jobs = [(f, min(f + CHUNK, deployments), seed_value) for f in range(0, deployments, CHUNK)]
    if workers <= 1:
        _write(conn, map(_chunk, jobs))
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            _write(conn, pool.imap(_chunk, jobs))
    total = deployments * EVENTS_PER_DEPLOYMENT
    conn.execute(
        "INSERT OR REPLACE INTO projection_checkpoints (name, last_seq) VALUES (?, ?)",
        (PROJECTION, total),
    )
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return total


def _write(conn: sqlite3.Connection, chunks: Iterable[Chunk]) -> None:
    """One transaction per chunk (the journal is off while seeding: a crash means re-seed)."""
    for events, rows, measured, calls in chunks:
        conn.execute("BEGIN")
        conn.executemany(_INSERT_EVENT, events)
        conn.executemany(_INSERT_ROW, rows)
        conn.executemany(_INSERT_MEASURE, measured)
        conn.executemany(_INSERT_CALL, calls)  # the triggers sum them into call_totals
        conn.execute("COMMIT")


def _fingerprint() -> str:
    """A hash of everything that shapes a seeded file, so a stale cache is never reused."""
    digest = hashlib.sha256()
    for name in ("schema.sql", "tracker/events.py", "tracker/projections.py", "bench/seed.py"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:12]


def cached(deployments: int) -> Path:
    """A seeded log of `deployments` × 10 events under `bench/out/`, built if missing."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"events-{deployments}-{_fingerprint()}.db"
    if not path.exists():
        for stale in OUT.glob(f"events-{deployments}-*.db*"):
            stale.unlink()
        partial = path.with_name(path.name + ".partial")
        seed(partial, deployments)
        partial.rename(path)
        Path(f"{partial}.lock").unlink(missing_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="write here instead of the bench/out/ cache")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.out:
        count = seed(args.out, args.deployments)
        path = args.out
    else:
        path = cached(args.deployments)
        count = args.deployments * 10
    print(f"{path}: {count:,} events in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
