"""Polling economy: API calls and detection lag per deployment, fixed 10 s against stepped.

    .venv/bin/python bench/bench_polling.py [--count 1000] [--seed 1] [--workers 2] [--no-third]

Replays `--count` simulated deployments (90 % go live 180 to 300 s after the push, 10 % fail
early in the build, 16 to 50 s after it) through the real `Monitor`, against the real simulated
App Platform API over loopback HTTP, in simulated time (one `FakeClock` shared by the platform
and the monitor, as tests/test_monitor.py does). Every policy replays the same deployments (one
seeded RNG), each into a `Store` of its own; API calls and detection lag are read back from the
log's projection (`store.deployment(sha)`). Policies run in parallel processes (`--workers`).

Durations are whole seconds: the API's timestamps have one-second precision, so whole seconds
keep the projection's detection lag equal to the true one. The scratch logs use
`synchronous=NORMAL` (no fsync per event): this measures calls and lag, not the disk.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracker.clock import FakeClock, iso  # noqa: E402
from tracker.config import Settings, load_settings  # noqa: E402
from tracker.events import PushRecorded  # noqa: E402
from tracker.monitor import Monitor, build_sources  # noqa: E402
from tracker.sim import SimulatedPlatform  # noqa: E402
from tracker.sources.base import DeploymentSource  # noqa: E402
from tracker.store import Store  # noqa: E402

TOKEN = "bench-token"  # the simulated platform's credential, not a secret
START = 1_800_000_000.0  # a whole second, so platform times and ours line up
GAP_S = 60.0  # simulated quiet time between one deployment's verdict and the next push
FAIL_SHARE = 0.1

POLICIES: dict[str, dict[str, str]] = {
    "fixed 10 s": {"TRACKER_POLL_POLICY": "fixed", "TRACKER_POLL_INTERVAL": "10"},
    "stepped 5 s / 120 s / 15 s": {"TRACKER_POLL_POLICY": "stepped"},
}
# Nothing in this distribution ends between ~50 s and 180 s: poll slowly through that gap and
# fast once deployments start going live. Same settings, another shape (slow start, fast end).
THIRD = (
    "stepped 15 s / 180 s / 5 s",
    {
        "TRACKER_POLL_POLICY": "stepped",
        "TRACKER_POLL_INITIAL": "15",
        "TRACKER_POLL_SWITCH_AFTER": "180",
        "TRACKER_POLL_LONG": "5",
    },
)


@dataclass(frozen=True)
class Planned:
    """One scripted deployment: where its time goes, and how it ends."""

    sha: str
    appear_s: int
    build_s: int
    deploy_s: int
    fails: bool

    @property
    def ends_after_s(self) -> int:
        """Seconds from the push to its terminal phase (pending build and deploy are 5 s)."""
        if self.fails:
            return self.appear_s + 5 + self.build_s
        return self.appear_s + 5 + self.build_s + 5 + self.deploy_s


def plan(count: int, seed: int) -> list[Planned]:
    """`count` deployments from a seeded RNG: the same list for every policy."""
    rng = random.Random(seed)
    out: list[Planned] = []
    for _ in range(count):
        sha = f"{rng.getrandbits(160):040x}"
        appear = rng.randint(1, 5)
        if rng.random() < FAIL_SHARE:
            out.append(Planned(sha, appear, rng.randint(10, 40), 0, fails=True))
            continue
        live = rng.randint(180, 300)  # push to live
        work = live - appear - 10  # minus the two 5 s pending phases
        build = round(work * rng.uniform(0.4, 0.6))
        out.append(Planned(sha, appear, build, work - build, fails=False))
    return out


@dataclass(frozen=True)
class Result:
    """What the log says about one replayed deployment."""

    state: str
    api_calls: int
    polls: int
    detection_lag_s: float | None


def replay(env: dict[str, str], planned: Sequence[Planned], db: Path) -> list[Result]:
    """Run the real monitor over `planned`, one after another, under one policy's settings.

    One platform and one set of sources serve the whole run: a source keeps no state between
    commits that changes what a poll costs, and building an httpx client (its TLS context)
    costs 50 ms, more than a whole replayed deployment.
    """
    clock = FakeClock(START)
    with (
        SimulatedPlatform(clock=clock, token=TOKEN) as sim,
        Store(db, clock=clock, synchronous="NORMAL") as store,
    ):
        settings = load_settings(
            None,
            env={
                "DIGITALOCEAN_TOKEN": TOKEN,
                "TRACKER_DO_APP_ID": sim.app_id,
                "TRACKER_DO_API_URL": sim.base_url,
                "TRACKER_HTTP_TIMEOUT": "5",
                **env,
            },
        )
        sources = build_sources(settings, clock)
        try:
            results = []
            for item in planned:
                results.append(_one(store, sim, clock, settings, sources, item))
                clock.advance(GAP_S)
        finally:
            for source in sources:
                source.close()
    return results


def _one(
    store: Store,
    sim: SimulatedPlatform,
    clock: FakeClock,
    settings: Settings,
    sources: Sequence[DeploymentSource],
    item: Planned,
) -> Result:
    sim.add_deployment(
        item.sha,
        appear_after_s=item.appear_s,
        build_s=item.build_s,
        deploy_s=item.deploy_s,
        outcome="build_error" if item.fails else "active",
    )
    now = clock.now()
    store.append(item.sha, PushRecorded(sha=item.sha, branch="main", pushed_at=iso(now)), at=now)
    monitor = Monitor(store, item.sha, sources, settings=settings, clock=clock, rand=lambda: 0.5)
    state = monitor.run()
    row = store.deployment(item.sha)
    assert row is not None
    return Result(state, row.api_calls, row.polls, row.detection_lag_s)


def replay_all(
    policies: dict[str, dict[str, str]], planned: Sequence[Planned], workers: int
) -> dict[str, list[Result]]:
    """Every policy over the same deployments, each split into `workers` chunks run in
    parallel processes (each chunk its own platform and clock; one log per policy)."""
    size = -(-len(planned) // workers)
    chunks = [planned[i : i + size] for i in range(0, len(planned), size)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp,
        ProcessPoolExecutor(max_workers=workers) as pool,
    ):
        futures = {
            name: [
                pool.submit(replay, env, chunk, Path(tmp) / f"policy{n}" / "events.db")
                for chunk in chunks
            ]
            for n, (name, env) in enumerate(policies.items())
        }
        return {name: [r for f in parts for r in f.result()] for name, parts in futures.items()}


# -- the table ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..100), as `tracker stats` computes it."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary_row(name: str, results: Sequence[Result]) -> str:
    calls = [r.api_calls for r in results]
    lags = [r.detection_lag_s for r in results if r.detection_lag_s is not None]
    return (
        f"| {name} | {len(results)} | {statistics.mean(calls):.2f} | {percentile(calls, 50):g} "
        f"| {percentile(calls, 95):g} | {max(calls)} | {statistics.mean(lags):.2f} "
        f"| {percentile(lags, 95):g} | {max(lags):g} | {sum(calls)} |"
    )


HEADER = (
    "| policy | deployments | API calls/deployment mean | p50 | p95 | max "
    "| detection lag mean (s) | p95 | max | total API calls |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def outcome_rows(name: str, results: Sequence[Result]) -> list[str]:
    """The same split by outcome: early failures and successes cost and lag differently."""
    rows = []
    for state in ("succeeded", "failed"):
        subset = [r for r in results if r.state == state]
        if subset:
            rows.append(summary_row(f"{name}: {state}", subset))
    return rows


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} × {model}, "
        f"Python {platform.python_version()}, load average at the start {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-third", action="store_true", help="only fixed and stepped")
    args = parser.parse_args(argv)
    planned = plan(args.count, args.seed)
    policies = dict(POLICIES)
    if not args.no_third:
        policies[THIRD[0]] = THIRD[1]
    where = machine()
    began = time.monotonic()
    results = replay_all(policies, planned, args.workers)
    took = time.monotonic() - began
    fails = sum(p.fails for p in planned)
    print(f"{args.count} deployments (seed {args.seed}, {fails} failing early in the build),")
    print(f"{len(policies)} policies replayed in {took:.1f} s of real time on {where}\n")
    print(HEADER)
    for name, found in results.items():
        print(summary_row(name, found))
    print("\nby outcome:\n")
    print(HEADER)
    for name, found in results.items():
        for line in outcome_rows(name, found):
            print(line)
    print()
    totals = {name: sum(r.api_calls for r in found) for name, found in results.items()}
    fixed = totals["fixed 10 s"]
    for name, total in totals.items():
        if name != "fixed 10 s":
            print(f"API calls {name} / fixed 10 s: {total / fixed:.3f}")
    states = {name: sorted({r.state for r in found}) for name, found in results.items()}
    print(f"\nstates seen: {states}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
