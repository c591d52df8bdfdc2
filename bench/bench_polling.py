"""Polling economy: API calls and detection lag per deployment, informed against fixed and stepped.

    .venv/bin/python -m bench.bench_polling [--count 200] [--workloads W0,W1,W2,W3] [--history 30]
        [--cold] [--scale 1] [--poison] [--seed 1] [--workers 2] [--json PATH]

Replays `--count` simulated deployments of each workload of design/polling.md §1 (W0 this bench's
original list: 90 % live 180-300 s after the push, 10 % failing early; W1 a 4-minute app; W2 a
25-minute monorepo; W3 bimodal build reuse) through the real `Monitor`, against the real
simulated App Platform API over loopback HTTP, in simulated time (one `FakeClock` shared by the
platform and the monitor, as tests/test_monitor.py does). Every policy replays the same
deployments (one seeded RNG) with its own settings and nothing else set (so `TRACKER_MAX_WAIT`
takes its default: max(480 s, 3 × the app's p95 from the log)).

History: before the measured deployments, `--history` earlier deployments of the same workload
are replayed into a template log (by the real monitor, fixed 10 s, so that each one reaches its
verdict); every measured deployment runs in its own copy of that log, so each sees the same
history of K deployments (the design's method: a fixed history, not one that grows during the
run). `--cold` is K = 0 (the broad prior only); `--scale F` makes the measured deployments F times
as long as their history (robustness); `--poison` puts 20 % outliers in the history (10 % × 5,
10 % × 0.1). API calls and detection lag are read back from the log's projection
(`store.deployment(sha)`), which is what `tracker stats` sums.

Durations are whole seconds: the API's timestamps have one-second precision, so whole seconds
keep the projection's detection lag equal to the true one. The scratch logs use
`synchronous=NORMAL` (no fsync per event): this measures calls and lag, not the disk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import host
from tracker.clock import FakeClock, iso
from tracker.config import Settings, load_settings
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import Monitor, build_sources
from tracker.monitor.sources.base import DeploymentSource
from tracker.sim import SimulatedPlatform

TOKEN = "bench-token"  # the simulated platform's credential, not a secret
START = 1_800_000_000.0  # a whole second, so platform times and ours line up
GAP_S = 60.0  # simulated quiet time between one deployment's verdict and the next push
HISTORY_ENV = {"TRACKER_POLL_POLICY": "fixed", "TRACKER_MAX_WAIT": "7200"}  # to every verdict

POLICIES: dict[str, dict[str, str]] = {
    "fixed 10 s": {"TRACKER_POLL_POLICY": "fixed", "TRACKER_POLL_INTERVAL": "10"},
    "stepped 5 s / 120 s / 15 s": {"TRACKER_POLL_POLICY": "stepped"},
    "informed (the default)": {},
}
BASE = "fixed 10 s"


@dataclass(frozen=True)
class Planned:
    """One scripted deployment: where its time goes, and how it ends (whole seconds)."""

    sha: str
    appear_s: int
    pending_build_s: int
    build_s: int
    pending_deploy_s: int
    deploy_s: int
    outcome: str  # active, build_error, deploy_error

    def scaled(self, factor: float, sha: str | None = None) -> Planned:
        def f(x: int) -> int:
            return max(1, round(x * factor))

        return Planned(
            sha or self.sha, self.appear_s, f(self.pending_build_s), f(self.build_s),
            f(self.pending_deploy_s), f(self.deploy_s), self.outcome,
        )  # fmt: skip


def _ln(rng: random.Random, median: float, cv: float) -> float:
    """Log-normal with this median and coefficient of variation."""
    sigma = math.sqrt(math.log(1 + cv * cv))
    return median * math.exp(rng.gauss(0, sigma))


def _pending_build(rng: random.Random) -> float:
    """LN(5 s, 0.5), or with 5 % probability a long queue LN(90 s, 1.0) (design §1)."""
    return _ln(rng, 90, 1.0) if rng.random() < 0.05 else _ln(rng, 5, 0.5)


def _w0(rng: random.Random, sha: str) -> Planned:
    """The original bench: 90 % live 180-300 s after the push, 10 % fail 16-50 s after it."""
    appear = rng.randint(1, 5)
    if rng.random() < 0.1:
        return Planned(sha, appear, 5, rng.randint(10, 40), 5, 1, "build_error")
    live = rng.randint(180, 300)
    work = live - appear - 10
    build = round(work * rng.uniform(0.4, 0.6))
    return Planned(sha, appear, 5, build, 5, work - build, "active")


def _phased(
    rng: random.Random, sha: str, build: float, pending_deploy: float, deploy: float,
    build_fail: float, deploy_fail: float, build_cap: float | None = None,
) -> Planned:  # fmt: skip
    """A deployment of the design's workloads: a build failure ends U(0.1, 1) of the way through
    the build; a failing health check takes U(1, 3) × the deploy (the simulator ends a deploy
    error at 0.9 of its deploy)."""
    appear, pending = rng.randint(1, 5), _pending_build(rng)
    u = rng.random()
    outcome = "active"
    if build_cap is not None and build > build_cap:
        build, outcome = build_cap, "build_error"  # BuildJobTimeout
    elif u < build_fail:
        build, outcome = build * rng.uniform(0.1, 1.0), "build_error"
    elif u < build_fail + deploy_fail:
        deploy, outcome = deploy * rng.uniform(1.0, 3.0) / 0.9, "deploy_error"
    return Planned(
        sha, appear, max(1, round(pending)), max(1, round(build)),
        max(1, round(pending_deploy)), max(1, round(deploy)), outcome,
    )  # fmt: skip


def _w1(rng: random.Random, sha: str) -> Planned:
    return _phased(rng, sha, _ln(rng, 150, 0.3), _ln(rng, 5, 0.5), _ln(rng, 75, 0.35), 0.07, 0.03)


def _w2(rng: random.Random, sha: str) -> Planned:
    build, pending, deploy = _ln(rng, 1200, 0.4), _ln(rng, 10, 0.5), _ln(rng, 240, 0.4)
    return _phased(rng, sha, build, pending, deploy, 0.12, 0.03, build_cap=3600)


def _w3(rng: random.Random, sha: str) -> Planned:
    build = _ln(rng, 15, 0.4) if rng.random() < 0.35 else _ln(rng, 240, 0.35)
    return _phased(rng, sha, build, _ln(rng, 5, 0.5), _ln(rng, 60, 0.3), 0.08, 0.02)


WORKLOADS = {
    "W0": ("the bench's original list (uniform 180-300 s live, 10 % early failures)", _w0),
    "W1": ("small app, cached build (median about 4 min)", _w1),
    "W2": ("monorepo, no layer cache (median about 25 min)", _w2),
    "W3": ("bimodal build reuse (1.5 or 5 min)", _w3),
}


def plan(workload: str, count: int, seed: int) -> list[Planned]:
    """`count` deployments from a seeded RNG: the same list for every policy."""
    rng = random.Random(f"{workload}:{seed}")
    make = WORKLOADS[workload][1]
    return [make(rng, f"{rng.getrandbits(160):040x}") for _ in range(count)]


def history_plan(workload: str, count: int, seed: int, poison: bool) -> list[Planned]:
    """The K earlier deployments every measured one sees (another stream of the same RNG);
    poisoned: 10 % five times as long, 10 % a tenth."""
    rng = random.Random(f"{workload}:{seed}:history")
    make = WORKLOADS[workload][1]
    out = []
    for _ in range(count):
        item = make(rng, f"{rng.getrandbits(160):040x}")
        if poison:
            u = rng.random()
            item = item.scaled(5.0) if u < 0.1 else item.scaled(0.1) if u < 0.2 else item
        out.append(item)
    return out


@dataclass(frozen=True)
class Result:
    """What the log says about one replayed deployment."""

    state: str
    api_calls: int
    polls: int
    detection_lag_s: float | None


def _settings(sim: SimulatedPlatform, env: dict[str, str]) -> Settings:
    return load_settings(
        None,
        env={
            "DIGITALOCEAN_TOKEN": TOKEN,
            "TRACKER_DO_APP_ID": sim.app_id,
            "TRACKER_DO_API_URL": sim.base_url,
            "TRACKER_HTTP_TIMEOUT": "5",
            **env,
        },
    )


def build_history(planned: Sequence[Planned], db: Path) -> float:
    """Replay the history into the log at `db` (fixed 10 s, every one to its verdict); the
    simulated time at its end, where the measured deployments start."""
    clock = FakeClock(START)
    db.parent.mkdir(parents=True, exist_ok=True)
    with (
        SimulatedPlatform(clock=clock, token=TOKEN) as sim,
        SQLiteLog(db, clock=clock, synchronous="NORMAL") as store,
    ):
        settings = _settings(sim, HISTORY_ENV)
        sources = build_sources(settings, clock)
        try:
            for item in planned:
                _one(store, sim, clock, settings, sources, item)
                clock.advance(GAP_S)
        finally:
            for source in sources:
                source.close()
    return clock.now()


def replay(
    env: dict[str, str], planned: Sequence[Planned], template: Path, start: float, work: Path
) -> list[Result]:
    """Run the real monitor over `planned`, one after another, under one policy's settings,
    each deployment in a fresh copy of the history's log.

    One platform and one set of sources serve the whole run: a source keeps no state between
    commits that changes what a poll costs, and building an httpx client (its TLS context)
    costs 50 ms, more than a whole replayed deployment.
    """
    clock = FakeClock(start)
    work.mkdir(parents=True, exist_ok=True)
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        settings = _settings(sim, env)
        sources = build_sources(settings, clock)
        try:
            results = []
            for n, item in enumerate(planned):
                db = work / f"run{n}.db"
                if template.exists():
                    shutil.copyfile(template, db)
                with SQLiteLog(db, clock=clock, synchronous="NORMAL") as store:
                    results.append(_one(store, sim, clock, settings, sources, item))
                for leftover in work.glob(f"run{n}.db*"):
                    leftover.unlink()
                clock.advance(GAP_S)
        finally:
            for source in sources:
                source.close()
    return results


def _one(
    store: SQLiteLog,
    sim: SimulatedPlatform,
    clock: FakeClock,
    settings: Settings,
    sources: Sequence[DeploymentSource],
    item: Planned,
) -> Result:
    sim.add_deployment(
        item.sha,
        appear_after_s=item.appear_s,
        pending_build_s=item.pending_build_s,
        build_s=item.build_s,
        pending_deploy_s=item.pending_deploy_s,
        deploy_s=item.deploy_s,
        outcome=item.outcome,  # type: ignore[arg-type]
    )
    now = clock.now()
    store.append(item.sha, PushRecorded(sha=item.sha, branch="main", pushed_at=iso(now)), at=now)
    monitor = Monitor(store, item.sha, sources, settings=settings, clock=clock, rand=lambda: 0.5)
    state = monitor.run()
    row = store.deployment(item.sha)
    assert row is not None
    return Result(state, row.api_calls, row.polls, row.detection_lag_s)


def replay_all(
    policies: dict[str, dict[str, str]],
    planned: Sequence[Planned],
    history: Sequence[Planned],
    workers: int,
) -> dict[str, list[Result]]:
    """Every policy over the same deployments, each split into `workers` chunks run in
    parallel processes (each chunk its own platform and clock)."""
    size = -(-len(planned) // workers)
    chunks = [planned[i : i + size] for i in range(0, len(planned), size)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp,
        ProcessPoolExecutor(max_workers=workers) as pool,
    ):
        template = Path(tmp) / "history" / "events.db"
        start = pool.submit(build_history, history, template).result() if history else START
        futures = {
            name: [
                pool.submit(replay, env, chunk, template, start, Path(tmp) / f"p{n}c{c}")
                for c, chunk in enumerate(chunks)
            ]
            for n, (name, env) in enumerate(policies.items())
        }
        return {name: [r for f in parts for r in f.result()] for name, parts in futures.items()}


# -- the table ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100), as `tracker stats` computes it."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def figures(results: Sequence[Result], base: Sequence[Result]) -> dict[str, float]:
    calls = [r.api_calls for r in results]
    lags = [r.detection_lag_s for r in results if r.detection_lag_s is not None]
    return {
        "deployments": len(results),
        "calls_mean": statistics.mean(calls),
        "calls_p95": percentile(calls, 95),
        "lag_mean_s": statistics.mean(lags) if lags else math.nan,
        "lag_p95_s": percentile(lags, 95) if lags else math.nan,
        "lag_max_s": max(lags) if lags else math.nan,
        "timed_out": sum(r.state == "timed_out" for r in results),
        "ratio_to_fixed_10s": sum(calls) / max(1, sum(r.api_calls for r in base)),
    }


HEADER = (
    "| workload | history | policy | deployments | API calls/deployment mean | p95 "
    "| detection lag mean (s) | p95 | max | timed out | calls ÷ fixed 10 s |\n"
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def row(workload: str, mode: str, name: str, f: dict[str, float]) -> str:
    return (
        f"| {workload} | {mode} | {name} | {f['deployments']} | {f['calls_mean']:.1f} "
        f"| {f['calls_p95']:g} | {f['lag_mean_s']:.1f} | {f['lag_p95_s']:g} "
        f"| {f['lag_max_s']:g} | {f['timed_out']} | {f['ratio_to_fixed_10s']:.2f} |"
    )


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{host()}, load average at the start {load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workloads", default="W0,W1,W2,W3")
    parser.add_argument("--history", type=int, default=30, help="K earlier deployments")
    parser.add_argument("--cold", action="store_true", help="no history (K = 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="measured ÷ history length")
    parser.add_argument("--poison", action="store_true", help="20 %% outliers in the history")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated names")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.policies.split(",")]
    policies = {name: POLICIES[name] for name in dict.fromkeys([BASE, *names])}
    k = 0 if args.cold else args.history
    mode = f"K={k}" + (f", {args.scale:g}× slower" if args.scale > 1 else "")
    mode += f", {1 / args.scale:g}× faster" if args.scale < 1 else ""
    mode += ", 20 % outliers" if args.poison else ""
    print(f"{machine()}\n")
    print(HEADER)
    out: list[dict[str, object]] = []
    for workload in args.workloads.split(","):
        planned = [p.scaled(args.scale) for p in plan(workload, args.count, args.seed)]
        history = history_plan(workload, k, args.seed, args.poison)
        began = time.monotonic()
        results = replay_all(policies, planned, history, args.workers)
        took = time.monotonic() - began
        for name, found in results.items():
            f = figures(found, results[BASE])
            print(row(workload, mode, name, f), flush=True)
            out.append({"workload": workload, "history": mode, "policy": name, **f})
        print(f"<!-- {workload}: {took:.0f} s of real time -->", flush=True)
    if args.json:
        meta = {"argv": sys.argv[1:], "machine": machine(), **vars(args), "json": str(args.json)}
        args.json.write_text(json.dumps({"run": meta, "rows": out}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
