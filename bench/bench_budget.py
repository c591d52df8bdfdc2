"""Measure the fleet-wide API budget: one reservation's latency with many processes at once.

    .venv/bin/python -m bench.bench_budget [--processes 1,8] [--per-process 200] [--delays 0,5,20]

Starts a private MariaDB (tests/support/mariadb_private.py) under bench/out/, and for each
one-way delay (0: loopback; 5 and 20 ms: RTT 10 and 40 ms through tests/support/delay_proxy.py)
a fresh migrated database and that many processes (this module with `--worker`), all started at
once by a barrier file, each reserving one call of one token back to back through
`MySQLLog.reserve_api_calls` under DigitalOcean's limits (250 a minute, 5,000 an hour). Prints
p50/p99 of a reservation (granted and refused apart), how many were granted, and checks that no
more than the limit was granted and that the buckets hold exactly what was granted. Never
asserts on time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.bench_fleet import child_env, percentile, select_one_ms, start_proxy
from bench.common import ROOT, host
from tests.support.mariadb_private import create_database, start_private
from tracker.log.mysql import MySQLLog, migrate
from tracker.monitor.decide import token_id

OUT = ROOT / "bench" / "out" / "budget"
PER_MINUTE, PER_HOUR = 250, 5000
TOKEN = token_id("bench-token")


def worker(url: str, count: int, barrier: Path, out: Path) -> None:
    """Reserve `count` times as fast as answers come; write `granted seconds` per line."""
    log = MySQLLog.from_url(url, env={})
    log.last_seq()  # connected and the schema checked before the start
    print("ready", flush=True)
    while not barrier.exists():
        time.sleep(0.001)
    lines = []
    for _ in range(count):
        started = time.perf_counter()
        wait = log.reserve_api_calls(TOKEN, 1, PER_MINUTE, PER_HOUR)
        took = time.perf_counter() - started
        if wait is None:
            raise SystemExit(f"unreachable: {log.budget_error}")
        lines.append(f"{int(wait == 0)} {took:.6f}")
    out.write_text("\n".join(lines) + "\n")
    log.close()


def run(url: str, processes: int, per_process: int, scratch: Path) -> dict[str, float]:
    barrier = scratch / f"go-{processes}"
    barrier.unlink(missing_ok=True)
    outs = [scratch / f"lat-{processes}-{n}" for n in range(processes)]
    command = [sys.executable, "-m", "bench.bench_budget", "--worker", url, str(per_process)]
    procs = [
        subprocess.Popen(
            [*command, str(barrier), str(out)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        for out in outs
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    barrier.touch()
    codes = [p.wait(timeout=1800) for p in procs]
    wall = time.perf_counter() - started
    assert codes == [0] * processes, codes
    rows = [line.split() for out in outs for line in out.read_text().split("\n") if line]
    granted = [float(t) for g, t in rows if g == "1"]
    refused = [float(t) for g, t in rows if g == "0"]
    every = granted + refused
    log = MySQLLog.from_url(url, env={})
    with log.query("SELECT coalesce(sum(calls), 0) AS n FROM api_calls") as found:
        [(stored,)] = [tuple(r) for r in found.rows]
    log.close()
    return {
        "tries": len(every),
        "granted": len(granted),
        "stored": int(stored),
        "per_s": len(every) / wall,
        "p50": percentile(every, 50) * 1000,
        "p99": percentile(every, 99) * 1000,
        "granted_p50": percentile(granted, 50) * 1000 if granted else float("nan"),
        "refused_p50": percentile(refused, 50) * 1000 if refused else float("nan"),
        "refused_p99": percentile(refused, 99) * 1000 if refused else float("nan"),
        "mean": statistics.fmean(every) * 1000,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--processes", default="1,8", help="process counts, one row each")
    parser.add_argument("--per-process", type=int, default=200)
    parser.add_argument("--delays", default="0", help="one-way ms added (0: loopback)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "mariadb"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    server = start_private(base)
    print(f"{host()}; private mariadbd on :{server.port}")
    print(
        "| RTT added | `SELECT 1` p50 | processes | tries | granted | stored | reservations/s"
        " | p50 | p99 | granted p50 | refused p50 | refused p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for delay in (float(d) for d in args.delays.split(",")):
            proxy, port = start_proxy(server.port, delay) if delay else (None, server.port)
            try:
                for processes in (int(p) for p in args.processes.split(",")):
                    database = create_database(server)
                    url = f"mysql://root@127.0.0.1:{port}/{database}"
                    migrate(url, env={})
                    rtt = select_one_ms(url)
                    r = run(url, processes, args.per_process, OUT)
                    assert r["granted"] == r["stored"] <= PER_MINUTE, r  # never over the limit
                    print(
                        f"| {2 * delay:g} ms | {rtt:.2f} ms | {processes} | {r['tries']:.0f} |"
                        f" {r['granted']:.0f} | {r['stored']:.0f} | {r['per_s']:.0f} |"
                        f" {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['granted_p50']:.2f} ms |"
                        f" {r['refused_p50']:.2f} ms | {r['refused_p99']:.2f} ms |",
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
