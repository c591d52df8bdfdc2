"""Measure the event log: append latency and throughput, and reads over a 1,000,000-event log.

    .venv/bin/python -m bench.bench_store [--writers 32] [--per-writer 200] [--skip-rebuild]

Prints measured numbers next to the goals of the issue; never asserts (tests never time
anything, and a slow machine is a fact to report, not a failure). Scratch files go under
`bench/out/` (on the same disk as a real log: `/tmp` may be a RAM disk that makes FULL free).
"""

from __future__ import annotations

import argparse
import compileall
import functools
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import ROOT, host
from bench.seed import END, OUT, cached, sha_of
from tracker.events import DeploymentPolled, MonitorStopped, PushRecorded
from tracker.log.rebuild import rebuild_parts
from tracker.log.sqlite import SQLiteLog

WRITER = ROOT / "tests" / "support" / "store_writer.py"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def row(name: str, value: str, goal: str = "") -> None:
    print(f"| {name} | {value} | {goal} |", flush=True)


def machine() -> str:
    disk = subprocess.run(
        ["df", "-T", str(OUT)], capture_output=True, text=True
    ).stdout.splitlines()[-1].split()  # fmt: skip
    return (
        f"{host()}, SQLite {sqlite3.sqlite_version}, "
        f"log on {disk[1]} ({disk[0]}), load average {os.getloadavg()[0]:.2f} at the start"
    )


def scratch(name: str) -> Path:
    where = OUT / f"scratch-{name}-{os.getpid()}"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


# -- appends ------------------------------------------------------------------------------------


def bench_one_writer(count: int) -> None:
    where = scratch("one")
    store = SQLiteLog(where / "events.db", synchronous="FULL")
    sha = sha_of(0)
    store.append(sha, PushRecorded(sha=sha, branch="main"))
    latencies = []
    started = time.perf_counter()
    for n in range(count):
        poll = DeploymentPolled(source="digitalocean", ok=True, found=True, phase="BUILDING",
                                deployment_id="d1", api_calls=1, latency_ms=float(n))  # fmt: skip
        t0 = time.perf_counter()
        store.append(sha, poll, key=f"one:{n}")
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    store.close()
    shutil.rmtree(where)
    row(f"one writer, {count:,} appends, FULL: p50", ms(percentile(latencies, 50)))
    row("one writer: p99 / max", f"{ms(percentile(latencies, 99))} / {ms(max(latencies))}")
    row("one writer: events/s", f"{count / wall:,.0f}")


def bench_concurrent(writers: int, per_writer: int, pace: float = 0.0) -> None:
    where = scratch("concurrent")
    db, barrier = where / "events.db", where / "go"
    SQLiteLog(db).last_seq()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shared = [sha_of(900_000 + i) for i in range(2)]
    procs = []
    for w in range(writers):
        streams = ",".join([sha_of(w * 10 + i) for i in range(3)] + shared)
        args = ["concurrent", str(db), str(w), str(per_writer), streams, str(barrier)]
        procs.append(subprocess.Popen(
            [sys.executable, str(WRITER), *args, str(where / f"lat-{w}"), str(pace)],
            stdout=subprocess.PIPE, text=True, env=env,
        ))  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()
    started = time.perf_counter()
    barrier.touch()
    failed = sum(proc.wait() != 0 for proc in procs)
    wall = time.perf_counter() - started
    latencies = [
        float(x) for w in range(writers) if (where / f"lat-{w}").exists()
        for x in (where / f"lat-{w}").read_text().split()
    ]  # fmt: skip
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    shutil.rmtree(where)
    expected = writers * per_writer
    how = f"paced 0-{pace * 1000:g} ms apart" if pace else "as fast as they can"
    name = f"{writers} writer processes × {per_writer}, {how}, FULL"
    row(f"{name}: events/s", f"{stored / wall:,.0f}", "" if pace else ">= 1,000")
    row(f"{name}: p50 / p99 / max",
        f"{ms(percentile(latencies, 50))} / {ms(percentile(latencies, 99))} / "
        f"{ms(max(latencies))}", "p99 <= 50 ms")  # fmt: skip
    row(f"{name}: events lost", f"{expected - stored} of {expected:,}"
        f"{f' ({failed} writers failed)' if failed else ''}", "0")  # fmt: skip


# -- reads over the big log ---------------------------------------------------------------------


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(values: Sequence[float]) -> str:
    return f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))}"


def bench_reads(db: Path, deployments: int, runs: int, skip_rebuild: bool) -> None:
    rng = random.Random(7)
    recent, old = sha_of(0), sha_of(deployments - 1)
    warm(db)
    t0 = time.perf_counter()
    store = SQLiteLog(db)
    store.deployment(recent)
    row("SQLiteLog: open + first deployment(sha)", ms(time.perf_counter() - t0))
    shas = [sha_of(rng.randrange(deployments)) for _ in range(2000)]
    it = iter(shas)
    row("SQLiteLog.deployment(sha), 2,000 random commits", summary(
        timed(lambda: store.deployment(next(it)), len(shas))), "<= 5 ms")  # fmt: skip
    bench_api(db, recent, old, runs)
    if skip_rebuild:
        row("SQLiteLog.rebuild()", "skipped (--skip-rebuild)", "<= 15 s")
        return
    store.close()
    copy = scratch("rebuild") / "events.db"  # the appends below must not change the cached log
    shutil.copyfile(db, copy)
    store = SQLiteLog(copy)
    default = f"{rebuild_parts(None, 10**9)} processes (the default)"
    for workers, label, meanwhile in (
        (None, default, False),
        (None, default + ", appends meanwhile", True),
        (1, "1 process", False),
    ):
        appends = AppendsMeanwhile(copy) if meanwhile else None
        t0 = time.perf_counter()
        report = store.rebuild(workers=workers)
        took = time.perf_counter() - t0
        row(f"SQLiteLog.rebuild() of {report.events:,} events, {label}", f"{took:.1f} s "
            f"({report.events / took:,.0f} events/s, {'nothing' if report.clean else 'something'}"
            " differed)", "<= 15 s")  # fmt: skip
        if appends is not None:
            waits = appends.stop()
            row(
                "  the appends (one every 50 ms, each a commit's next event): p50 / max",
                f"{ms(percentile(waits, 50))} / {ms(max(waits))} ({len(waits)} appends)",
            )
    store.close()
    shutil.rmtree(copy.parent)


def warm(db: Path) -> None:
    """Read the log once, so that the reads below find it in the page cache, as on a machine
    that uses its log (the copies the rebuild rows make may have pushed it out)."""
    with db.open("rb") as f:
        while f.read(1 << 24):
            pass


class AppendsMeanwhile:
    """A writer appending every 50 ms in a thread of its own (its own connection), to show
    that a rebuild holds the lock only for its short last step."""

    def __init__(self, db: Path) -> None:
        self.waits: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(db,))
        self.thread.start()

    def run(self, db: Path) -> None:
        with SQLiteLog(db, synchronous="NORMAL") as writer:
            n = 0
            while not self.done.wait(0.05):
                t0 = time.perf_counter()
                writer.append(sha_of(n % 1000), MonitorStopped(pid=0, reason="bench"))
                self.waits.append(time.perf_counter() - t0)
                n += 1

    def stop(self) -> list[float]:
        self.done.set()
        self.thread.join()
        return self.waits


def bench_api(db: Path, recent: str, old: str, runs: int) -> None:
    from tracker.api import Tracker

    tracker = Tracker(db)
    for label, sha in (("newest", recent), ("oldest", old)):
        row(f"Tracker.status(sha) in-process, {label} commit",
            summary(timed(functools.partial(tracker.status, sha), 200)))  # fmt: skip
    for label, sha in (("newest", recent), ("oldest", old)):
        row(f"`tracker --db X status SHA`, {label} commit, median of {runs}",
            ms(statistics.median(cli_times(db, ["status", sha], runs))), "<= 200 ms")  # fmt: skip
    stats = timed(tracker.stats, 7)
    row("Tracker.stats() in-process, median of 7", ms(statistics.median(stats)), "<= 100 ms")
    for label, kwargs in (
        ("--since 1d", {"since": END - 86_400}),
        ("--since 30d", {"since": END - 30 * 86_400}),
        ("--branch main", {"branch": "main"}),
    ):
        took = timed(functools.partial(tracker.stats, **kwargs), 7)  # type: ignore[arg-type]
        row(f"Tracker.stats({label}) in-process, median of 7", ms(statistics.median(took)))
    row("`tracker --db X stats`, median of 7",
        ms(statistics.median(cli_times(db, ["stats"], 7))))  # fmt: skip
    row("`tracker --db X stats --json`, median of 7",
        ms(statistics.median(cli_times(db, ["stats", "--json"], 7))))  # fmt: skip
    tracker.close()


def cli_times(db: Path, args: list[str], runs: int) -> list[float]:
    """Wall times of the whole command `python -m tracker --db DB ARGS`, interpreter included.

    The package is byte-compiled first, as an installed one is: under `PYTHONDONTWRITEBYTECODE`
    every run would otherwise compile it again, and time the compiler (about 80 ms)."""
    compileall.compile_dir(ROOT / "tracker", quiet=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "tracker", "--db", str(db), *args]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=OUT)
        out.append(time.perf_counter() - t0)
        if result.returncode not in (0, 1):
            raise SystemExit(f"tracker {args[0]} exited {result.returncode}: {result.stderr}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="appends by one writer")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--per-writer", type=int, default=200)
    parser.add_argument("--paced", type=int, default=100, help="appends per paced writer")
    parser.add_argument("--deployments", type=int, default=100_000, help="× 10 events")
    parser.add_argument("--runs", type=int, default=15, help="runs of the CLI command")
    parser.add_argument("--skip-rebuild", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    print(f"Machine: {machine()}\n")
    print("| measurement | result | goal |\n| --- | --- | --- |")
    bench_one_writer(args.single)
    bench_concurrent(args.writers, args.per_writer)
    bench_concurrent(args.writers, args.paced, pace=0.2)
    t0 = time.perf_counter()
    db = cached(args.deployments)
    row(f"seeded log of {args.deployments * 10:,} events (bench/seed.py, cached)",
        f"{time.perf_counter() - t0:.1f} s, {db.stat().st_size / 1e6:,.0f} MB")  # fmt: skip
    bench_reads(db, args.deployments, args.runs, args.skip_rebuild)


if __name__ == "__main__":
    main()
