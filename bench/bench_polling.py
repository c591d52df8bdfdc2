"""Polling economy: API calls and detection lag per deployment, informed against fixed and stepped.

    .venv/bin/python -m bench.bench_polling [--count 200] [--workloads W0,W1,W2,W3] [--history 30]
        [--cold] [--scale 1] [--poison] [--seed 1] [--workers 2] [--json PATH]
    .venv/bin/python -m bench.bench_polling --workloads W4 [--rates 5,20,60] [--hours 8]
        [--seed 1] [--json PATH]

Replays `--count` simulated deployments of each workload of design/polling.md §1 (W0 this bench's
original list: 90 % live 180-300 s after the push, 10 % failing early; W1 a 4-minute app; W2 a
25-minute monorepo; W3 bimodal build reuse) through the real `Monitor`, against the real
simulated App Platform API over loopback HTTP, in simulated time (one `FakeClock` shared by the
platform and the monitor, as tests/test_monitor.py does). Every policy replays the same
deployments (one seeded RNG) with its own settings and nothing else set (so `TRACKER_MAX_WAIT`
takes its default: max(480 s, 3 × the app's p95 from the log)).

W4 (an agent swarm on one app) runs the real app watcher (`tracker.monitor.watcher.Watcher`)
over `--hours` simulated hours of pushes at each of `--rates` pushes an hour, in bursts (mean 2
pushes within a minute), W1's durations, and the platform building one deployment at a time:
when the running one ends the newest queued one starts and the older queued ones are superseded
(scripted here on the simulator: a skipped one waits in PENDING_BUILD and turns SUPERSEDED
when the builder takes the newer one). It reports the requests the simulator received
in the peak minute and the peak hour, requests per commit, superseded commits and those timed
out, and the verdict lag.

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
from tracker.events import PushConfirmed, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import Monitor, build_sources
from tracker.monitor.sources.base import DeploymentSource
from tracker.monitor.watcher import Watcher
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
    outcome: str  # active, build_error, deploy_error (W4: superseded, `end_s` after it appears)
    end_s: float = 0.0

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


# -- W4: a swarm of agents on one app, through the real watcher ---------------------------------


@dataclass(frozen=True)
class Push:
    at: float  # seconds from the start
    item: Planned
    skipped: bool  # superseded while queued: never built


def swarm_plan(rate_per_h: float, hours: float, seed: int) -> list[Push]:
    """Pushes in bursts (Poisson bursts of 1 + Poisson(1) pushes within a minute) at
    `rate_per_h` on average, W1 durations; one build at a time, the newest queued next."""
    rng = random.Random(f"W4:{rate_per_h}:{seed}")
    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_h / 2 / 3600.0)
        if t >= hours * 3600.0:
            break
        size = 1 + _poisson(rng, 1.0)
        times += sorted(t + rng.uniform(0, 60) for _ in range(size))
    times.sort()
    items = [_w1(rng, f"{rng.getrandbits(160):040x}") for _ in times]
    # one build at a time: who runs, who waits, who is skipped
    starts: dict[int, float] = {}
    skipped: dict[int, float] = {}  # who was skipped, and when
    running_end = -math.inf
    queue: list[int] = []

    def drain(until: float) -> None:
        nonlocal running_end
        while queue and running_end <= until:
            newest = queue.pop()
            skipped.update({n: running_end for n in queue})
            queue.clear()
            starts[newest] = running_end
            running_end += _span(items[newest])

    for n, at in enumerate(times):
        created = at + items[n].appear_s
        drain(created)
        if running_end <= created and not queue:
            starts[n] = created
            running_end = created + _span(items[n])
        else:
            queue.append(n)
    drain(math.inf)
    out = []
    for n, at in enumerate(times):
        item = items[n]
        created = at + item.appear_s
        if n in skipped:  # waits in PENDING_BUILD, then is superseded when it is skipped
            end = max(1.0, skipped[n] - created)
            item = Planned(item.sha, item.appear_s, 10**6, 1, 1, 1, "superseded", end)
        else:
            wait = round(starts[n] - created)
            item = Planned(
                item.sha, item.appear_s, item.pending_build_s + wait, item.build_s,
                item.pending_deploy_s, item.deploy_s, item.outcome,
            )  # fmt: skip
        out.append(Push(round(at), item, n in skipped))
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _span(item: Planned) -> float:
    """How long a deployment holds the builder."""
    if item.outcome == "build_error":
        return item.pending_build_s + item.build_s
    return item.pending_build_s + item.build_s + item.pending_deploy_s + item.deploy_s


class _SwarmClock(FakeClock):
    """Simulated time that pushes each planned commit when its moment comes (into the log and
    the simulator), whoever is sleeping."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.start = start
        self.due: list[Push] = []
        self.push: object = None

    def sleep(self, seconds: float) -> None:
        target = self.now() + max(seconds, 0.0)
        while self.due and self.start + self.due[0].at <= target:
            nxt = self.due.pop(0)
            super().sleep(max(self.start + nxt.at - self.now(), 0.0))
            self.push(nxt)  # type: ignore[operator]
        super().sleep(max(target - self.now(), 0.0))


def swarm(
    rate_per_h: float, hours: float, seed: int, work: Path, history: int = 30
) -> dict[str, object]:
    """W4 at one rate through the real watcher, after `history` earlier W1 deployments in the
    log (as the other workloads); its figures."""
    planned = swarm_plan(rate_per_h, hours, seed)
    db = work / f"swarm-{rate_per_h:g}.db"
    start = build_history(history_plan("W1", history, seed, False), db) if history else START
    clock = _SwarmClock(start)
    clock.due = list(planned)
    with (
        SimulatedPlatform(clock=clock, token=TOKEN, supersede_on="live") as sim,
        SQLiteLog(db, clock=clock, synchronous="NORMAL") as log,
    ):
        settings = _settings(sim, {})

        def push(p: Push) -> None:
            now = clock.now()
            sim.add_deployment(
                p.item.sha, appear_after_s=p.item.appear_s,
                pending_build_s=p.item.pending_build_s, build_s=p.item.build_s,
                pending_deploy_s=p.item.pending_deploy_s, deploy_s=p.item.deploy_s,
                outcome=p.item.outcome,  # type: ignore[arg-type]
                cancel_after_s=p.item.end_s,
            )  # fmt: skip
            log.append(
                p.item.sha,
                PushRecorded(sha=p.item.sha, branch="main", source="hook", pushed_at=iso(now)),
                at=now,
            )
            log.append(p.item.sha, PushConfirmed(sha=p.item.sha), at=now)

        clock.push = push
        first_seq = log.last_seq()  # the history's calls went to another simulator
        sources = build_sources(settings, clock)
        ticks = 0
        try:
            while clock.due:
                clock.sleep(clock.start + clock.due[0].at - clock.now())  # the next push
                watcher = Watcher(log, sources, settings=settings, clock=clock, rand=lambda: 0.5)
                watcher.run()
                ticks += watcher.ticks
        finally:
            for source in sources:
                source.close()
        times = sorted(r.at for r in sim.requests if r.api)
        rows = [log.deployment(p.item.sha) for p in planned]
        in_log = sum(int(e.data.get("api_calls", 0)) for e in log.events(after_seq=first_seq))
    states = [r.state if r else "missing" for r in rows]
    superseded = [s for s, p in zip(states, planned, strict=True) if p.skipped]
    # detection lag of the deployments that were built (a skipped one's verdict waits, by
    # design, for its successor's: SPEC §3)
    lags = [
        r.detection_lag_s
        for r, p in zip(rows, planned, strict=True)
        if r and r.detection_lag_s is not None and not p.skipped
    ]
    return {
        "workload": "W4",
        "history": history,
        "pushes_per_hour": rate_per_h,
        "hours": hours,
        "commits": len(planned),
        "requests": len(times),
        "requests_in_log": in_log,
        "ticks": ticks,
        "requests_per_commit": round(len(times) / max(1, len(planned)), 2),
        "peak_minute": _peak(times, 60.0),
        "peak_hour": _peak(times, 3600.0),
        "superseded_while_queued": len(superseded),
        "superseded_timed_out": sum(s == "timed_out" for s in superseded),
        "timed_out": states.count("timed_out"),
        "unresolved": sum(s not in FINISHED for s in states),
        "lag_mean_s": round(statistics.mean(lags), 1) if lags else math.nan,
        "lag_p95_s": percentile(lags, 95) if lags else math.nan,
        "lag_max_s": max(lags) if lags else math.nan,
    }


FINISHED = {"succeeded", "failed", "canceled", "superseded", "timed_out"}


def _peak(times: Sequence[float], window: float) -> int:
    """The most requests in any `window` seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


SWARM_HEADER = (
    "| pushes/h | commits | superseded while queued | requests/commit | peak requests in 60 s "
    "| peak in 1 h | superseded timed out | timed out | lag mean / p95 / max (s) "
    "| requests in log = received |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
)


def swarm_row(f: dict[str, object]) -> str:
    same = "yes" if f["requests_in_log"] == f["requests"] else f"no ({f['requests_in_log']})"
    return (
        f"| {f['pushes_per_hour']:g} | {f['commits']} | {f['superseded_while_queued']} "
        f"| {f['requests_per_commit']} | {f['peak_minute']} | {f['peak_hour']} "
        f"| {f['superseded_timed_out']} | {f['timed_out']} "
        f"| {f['lag_mean_s']} / {f['lag_p95_s']} / {f['lag_max_s']} | {same} |"
    )


def main_swarm(args: argparse.Namespace) -> int:
    print(f"{machine()}\n")
    k = 0 if args.cold else args.history
    print(f"W4: {args.hours:g} simulated hours a rate, K={k}, the real watcher (informed)\n")
    print(SWARM_HEADER)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        for rate in (float(r) for r in args.rates.split(",")):
            began = time.monotonic()
            f = swarm(rate, args.hours, args.seed, Path(tmp), 0 if args.cold else args.history)
            print(swarm_row(f), flush=True)
            print(f"<!-- {rate:g}/h: {time.monotonic() - began:.0f} s of real time -->")
            out.append(f)
    if args.json:
        meta = {"argv": sys.argv[1:], "machine": machine(), **vars(args), "json": str(args.json)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run": meta, "rows": out}, indent=1, default=str))
    return 0


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
    parser.add_argument("--rates", default="5,20,60", help="W4: pushes an hour")
    parser.add_argument("--hours", type=float, default=8.0, help="W4: simulated hours a rate")
    args = parser.parse_args(argv)
    if args.workloads == "W4":
        return main_swarm(args)
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
