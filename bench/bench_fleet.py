"""Measure the fleet's shared log on MySQL: appends/s and append latency with many writers.

    .venv/bin/python -m bench.bench_fleet [--writers 2,8,32] [--per-writer 100] [--delays 0,5,20]

Starts a private MariaDB (tests/support/mariadb_private.py) under bench/out/, and for each
one-way delay (0: loopback; 5 and 20 ms: RTT 10 and 40 ms through tests/support/delay_proxy.py)
and each writer count, a fresh migrated database and that many writer processes
(tests/support/store_writer.py `concurrent`, through `open_log(url)`), all started at once. Prints
appends/s, p50/p99 of one append, and checks 0 lost, 0 doubled, 0 gaps. Never asserts on time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import ROOT
from tests.support.mariadb_private import create_database, start_private
from tracker.log import open_log
from tracker.log.mysql import connect, migrate

WRITER = ROOT / "tests" / "support" / "store_writer.py"
PROXY = ROOT / "tests" / "support" / "delay_proxy.py"
OUT = ROOT / "bench" / "out" / "fleet"
STREAMS = ",".join(c * 40 for c in "abc")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_proxy(target: int, delay_ms: float) -> tuple[subprocess.Popen[str], int]:
    proxy = subprocess.Popen(
        [sys.executable, str(PROXY), str(target), str(delay_ms)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proxy.stdout is not None
    line = proxy.stdout.readline().split()
    assert line and line[0] == "ready", line
    return proxy, int(line[1])


def select_one_ms(url: str, tries: int = 50) -> float:
    """p50 of `SELECT 1` on an open connection: the round trip as the client sees it."""
    from tracker.config import log_settings

    conn = connect(log_settings(url, {}))
    times = []
    with conn.cursor() as cur:
        for _ in range(tries):
            started = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchall()
            times.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(times) * 1000


def run(url: str, writers: int, per_writer: int, scratch: Path) -> dict[str, object]:
    barrier = scratch / f"go-{writers}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "concurrent",
                url,
                str(w),
                str(per_writer),
                STREAMS,
                str(barrier),
                str(scratch / f"lat-{writers}-{w}"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for w in range(writers)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    barrier.touch()
    codes = [p.wait(timeout=1800) for p in procs]
    wall = time.perf_counter() - started
    assert codes == [0] * writers, codes
    latencies = [
        float(x)
        for w in range(writers)
        for x in (scratch / f"lat-{writers}-{w}").read_text().split()
    ]
    log = open_log(url)
    events = log.events()
    total = writers * per_writer
    keys = {e.key for e in events}
    result = {
        "writers": writers,
        "appends": len(events),
        "per_s": total / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "lost": total - len(keys),
        "doubled": len(events) - len(keys),
        "gaps": sum(1 for i, e in enumerate(events, 1) if e.seq != i),
        "integrity": log.integrity_check(),
    }
    log.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="2,8,32")
    parser.add_argument("--per-writer", type=int, default=100)
    parser.add_argument("--delays", default="0,5,20", help="one-way ms added (0: loopback)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "mariadb"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    server = start_private(base)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}, private mariadbd on :{server.port}")  # fmt: skip
    print("| RTT added | SELECT 1 p50 | writers | appends | appends/s | p50 | p99 |"
          " lost | doubled | gaps | integrity |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for delay in (float(d) for d in args.delays.split(",")):
            proxy, port = start_proxy(server.port, delay) if delay else (None, server.port)
            try:
                for writers in (int(w) for w in args.writers.split(",")):
                    database = create_database(server)
                    url = f"mysql://root@127.0.0.1:{port}/{database}"
                    migrate(url, env={})
                    rtt = select_one_ms(url)
                    r = run(url, writers, args.per_writer, OUT)
                    print(
                        f"| {2 * delay:g} ms | {rtt:.2f} ms | {writers} | {r['appends']} |"
                        f" {r['per_s']:.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
                        f" {r['lost']} | {r['doubled']} | {r['gaps']} | {r['integrity']} |",
                        flush=True,
                    )
            finally:
                if proxy is not None:
                    proxy.kill()
                    proxy.wait()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
