"""The app's watcher against the simulated App Platform API over real HTTP, in simulated time.

One watcher follows every open push of the app; each tick is one request of the deployments list
answering all of them. The simulated platform and the watcher share one `FakeClock`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_monitor import TOKEN, settings_for
from tracker.clock import FakeClock
from tracker.config import Settings
from tracker.events import PushConfirmed, PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import build_sources
from tracker.monitor.watcher import Watcher, app_stream
from tracker.sim.server import SimulatedPlatform

PHASE_STATE = {"ACTIVE": "succeeded", "ERROR": "failed", "SUPERSEDED": "superseded"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def platform(clock: FakeClock) -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim:
        yield sim


def sha_of(n: int) -> str:
    return f"{n:040x}"


def push(store: SQLiteLog, sha: str, clock: FakeClock) -> None:
    """A hook's push, confirmed (as the confirmer records it)."""
    store.append(sha, PushRecorded(sha=sha, branch="main", source="hook"), at=clock.now())
    store.append(sha, PushConfirmed(sha=sha), at=clock.now())


def watch(store: SQLiteLog, settings: Settings, clock: FakeClock) -> Watcher:
    sources = build_sources(settings, clock)
    watcher = Watcher(store, sources, settings=settings, clock=clock, rand=lambda: 0.5)
    try:
        watcher.run()
    finally:
        for source in sources:
            source.close()
    return watcher


def api_calls_in_log(store: SQLiteLog) -> int:
    return sum(int(e.data.get("api_calls", 0)) for e in store.events())


def list_requests(platform: SimulatedPlatform) -> list[str]:
    return [r.path for r in platform.requests if r.api and r.path.endswith("/deployments")]


def own_requests(platform: SimulatedPlatform, ids: list[str]) -> list[str]:
    """Requests naming one deployment (a poll of its own, not the shared list, not its logs)."""
    return [
        r.path
        for r in platform.requests
        if r.api and any(r.path.endswith(f"/deployments/{i}") for i in ids)
    ]


@pytest.mark.parametrize("count", [1, 5, 20])
def test_one_request_per_tick_whatever_the_commits_in_flight(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock, count: int
) -> None:
    ids = []
    for n in range(count):
        sha = sha_of(n + 1)
        push(store, sha, clock)
        outcome = "build_error" if n % 7 == 3 else "active"
        ids.append(
            platform.add_deployment(
                sha, appear_after_s=5 + 2 * n, build_s=60 + 3 * n, deploy_s=40, outcome=outcome
            )
        )
    watcher = watch(store, settings_for(platform), clock)
    # every tick was one request of the list, whatever the number of commits in flight
    assert len(list_requests(platform)) == watcher.ticks
    assert own_requests(platform, ids) == []
    logs = [r for r in platform.requests if r.api and "/logs" in r.path]
    assert platform.api_requests == watcher.ticks + len(logs)
    # each commit its right verdict: what the platform says became of its deployment
    for n, deployment_id in enumerate(ids):
        row = store.deployment(sha_of(n + 1))
        assert row is not None
        assert row.state == PHASE_STATE[platform.phase(deployment_id) or ""], (n, row.state)
        assert row.state != "timed_out"
    # every request counted once, shared ticks included
    assert api_calls_in_log(store) == platform.api_requests
    assert store.rebuild().clean


def test_requests_per_tick_do_not_grow_with_the_count(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock, tmp_path
) -> None:
    """The same deployments' window costs as many requests with 1 commit as with 20 open."""
    results = {}
    for count in (1, 20):
        clock_n = FakeClock()
        with (
            SimulatedPlatform(clock=clock_n, token=TOKEN) as sim,
            SQLiteLog(tmp_path / f"log-{count}.db") as log,
        ):
            for n in range(count):
                sha = sha_of(n + 1)
                push(log, sha, clock_n)
                sim.add_deployment(sha, appear_after_s=5, build_s=90, deploy_s=60)
            watcher = watch(log, settings_for(sim), clock_n)
            results[count] = (sim.api_requests, watcher.ticks)
            assert api_calls_in_log(log) == sim.api_requests
    assert results[20][0] <= results[1][0] + 1  # 20 commits: no more requests than 1


def test_a_burst_of_superseded_pushes_is_resolved_from_the_same_answers(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock
) -> None:
    """The platform replaces each queued push as soon as a newer one is created: every commit
    resolved, none timed out, the queued ones polled by no request of their own."""
    platform.supersede_on = "created"
    started = clock.now()
    shas = [sha_of(100 + n) for n in range(8)]
    ids = []
    for n in range(8):
        sha = sha_of(100 + n)
        push(store, sha, clock)
        ids.append(platform.add_deployment(sha, appear_after_s=3 * n, build_s=120, deploy_s=60))
    watcher = watch(store, settings_for(platform), clock)
    states = [store.deployment(sha_of(100 + n)).state for n in range(8)]  # type: ignore[union-attr]
    assert states == ["superseded"] * 7 + ["succeeded"]
    assert own_requests(platform, ids) == []
    assert platform.api_requests == watcher.ticks == len(list_requests(platform))
    assert api_calls_in_log(store) == platform.api_requests
    for n in range(7):
        row = store.deployment(sha_of(100 + n))
        assert row is not None and row.superseded_by == sha_of(107)
    # the shared ticks are on the app's own stream, each commit's share of them is 0
    shared = store.events(stream=app_stream("digitalocean", platform.app_id))
    shared_calls = sum(int(e.data["api_calls"]) for e in shared)
    assert shared_calls > 0
    # `stats`: every request once in the totals, and the shared ones in our side of the
    # comparison with a fixed 10 s poll (whole log, and since the first push)
    from tracker.read.stats import compute_stats

    for since in (None, started):
        with store.stats_queries() as queries:
            st = compute_stats(queries, now=clock.now(), since=since)
        assert st.api_calls.total == platform.api_requests
        own = sum(r.api_calls for r in map(store.deployment, shas) if r and r.api_calls)
        assert st.fixed_10s.our_api_calls == own + shared_calls


def test_a_429_retry_after_holds_back_the_whole_app(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock
) -> None:
    for n in range(3):
        sha = sha_of(200 + n)
        push(store, sha, clock)
        platform.add_deployment(sha, appear_after_s=5, build_s=60, deploy_s=30)
    platform.inject("429", times=1, after=2, retry_after=45)
    watch(store, settings_for(platform), clock)
    api = [r for r in platform.requests if r.api]
    limited = [i for i, r in enumerate(api) if r.fault]
    assert len(limited) == 1  # one 429 for the app, not one per commit
    i = limited[0]
    assert api[i + 1].at - api[i].at >= 45 - 1e-6  # nobody asked again before retry-after
    assert api_calls_in_log(store) == platform.api_requests
    for n in range(3):
        row = store.deployment(sha_of(200 + n))
        assert row is not None and row.state == "succeeded"


def ingest(store: SQLiteLog, sha: str, clock: FakeClock) -> int:
    """What `tracker ingest` appends for a webhook's `{"sha": ..., "status": "success"}`;
    the seq of the verdict."""
    from tracker.log.sqlite import Append
    from tracker.monitor.ingest import events_for

    note = events_for({"sha": sha, "status": "success"}, now=clock.now())
    assert note.outcome is not None
    stored = store.append_all(
        [Append(sha, note.raw, None, clock.now()), Append(sha, note.outcome, note.key, clock.now())]
    )
    return stored[-1].seq


def test_an_ingested_verdict_before_the_watcher_starts_is_never_polled(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock
) -> None:
    first, second = sha_of(300), sha_of(301)
    push(store, first, clock)
    push(store, second, clock)
    platform.add_deployment(second, appear_after_s=5, build_s=60, deploy_s=30)
    ingest(store, first, clock)
    watch(store, settings_for(platform), clock)
    assert "DeploymentPolled" not in [e.type for e in store.events(stream=first)]
    row = store.deployment(second)
    assert row is not None and row.state == "succeeded"


# -- the database source: one query for every open commit -----------------------------------


@pytest.mark.mysql
def test_the_database_source_asks_for_every_open_commit_in_one_query(
    store: SQLiteLog, clock: FakeClock
) -> None:
    from tests.support.mariadb import admin_connection, plan_table
    from tests.test_monitor_mysql import insert
    from tests.test_monitor_mysql import settings_for as mysql_settings

    admin = admin_connection()
    try:
        with plan_table(admin, "deployments_watch") as table:
            shas = [sha_of(400 + n) for n in range(5)]
            for sha in shas:
                push(store, sha, clock)
                insert(admin, table, sha, "pending", "2027-01-15 08:00:00")
            settings = mysql_settings(table)
            sources = build_sources(settings, clock)
            watcher = Watcher(store, sources, settings=settings, clock=clock, rand=lambda: 0.5)
            statuses = ["success", "failed", "success", "failed", "success"]
            original = clock.sleep

            def finish(seconds: float) -> None:
                original(seconds)
                if watcher.ticks == 3:  # after three rounds, every row gets its verdict
                    for sha, status in zip(shas, statuses, strict=True):
                        with admin.cursor() as cur:
                            cur.execute(
                                f"UPDATE `{table}` SET status = %s WHERE commitSha = %s",
                                (status, sha),
                            )

            clock.sleep = finish  # type: ignore[method-assign]
            try:
                watcher.run()
            finally:
                for source in sources:
                    source.close()
    finally:
        admin.close()
    for sha, status in zip(shas, statuses, strict=True):
        row = store.deployment(sha)
        assert row is not None
        assert row.state == ("succeeded" if status == "success" else "failed")
    queries = sum(int(e.data.get("db_queries", 0)) for e in store.events())
    assert queries == watcher.ticks  # one query a tick, for all five commits
    shared = store.events(stream=app_stream(*watcher_app(settings)))
    assert len(shared) == watcher.ticks


def watcher_app(settings: Settings) -> tuple[str, str]:
    from tracker.monitor.watcher import app_of

    return app_of(settings)


def test_an_ingested_verdict_ends_its_commit_at_once_while_the_watcher_runs(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock
) -> None:
    ingested, other = sha_of(500), sha_of(501)
    for sha in (ingested, other):
        push(store, sha, clock)
        platform.add_deployment(sha, appear_after_s=5, build_s=200, deploy_s=60)
    settings = settings_for(platform)
    sources = build_sources(settings, clock)
    watcher = Watcher(store, sources, settings=settings, clock=clock, rand=lambda: 0.5)
    original = clock.sleep
    at: list[int] = []

    def ingest_once(seconds: float) -> None:
        original(seconds)
        if watcher.ticks == 3 and not at:
            at.append(ingest(store, ingested, clock))

    clock.sleep = ingest_once  # type: ignore[method-assign]
    try:
        watcher.run()
    finally:
        for source in sources:
            source.close()
    row = store.deployment(ingested)
    assert row is not None and row.state == "succeeded" and row.terminal_source == "ingest:webhook"
    later = [e for e in store.events(stream=ingested, after_seq=at[0])]
    assert [e.type for e in later if e.type == "DeploymentPolled"] == []  # never polled again
    row = store.deployment(other)
    assert row is not None and row.state == "succeeded"
    assert api_calls_in_log(store) == platform.api_requests


def test_a_watcher_follows_only_pushes_to_its_own_repository(
    store: SQLiteLog, platform: SimulatedPlatform, clock: FakeClock, tmp_path
) -> None:
    """A log may hold another repository's pushes (a `TRACKER_DB` shared by two repositories,
    the fleet's shared log), deployed by another app: the watcher of this repository's app
    follows its own pushes and those recorded without a remote, never the other's (which it
    would poll for in vain and time out)."""
    import subprocess

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "git@github.com:org/app.git"],
        check=True,
    )
    ours, theirs, by_hand = sha_of(1), sha_of(2), sha_of(3)
    urls = {ours: "https://github.com/org/app", theirs: "https://github.com/org/other.git"}
    for sha, url in urls.items():
        store.append(
            sha, PushRecorded(sha=sha, branch="main", source="hook", remote_url=url), at=clock.now()
        )
        store.append(sha, PushConfirmed(sha=sha), at=clock.now())
    store.append(by_hand, PushRecorded(sha=by_hand, branch="main", source="api"), at=clock.now())
    for sha in (ours, by_hand):
        platform.add_deployment(sha, appear_after_s=5, build_s=30, deploy_s=20)
    settings = settings_for(platform)
    sources = build_sources(settings, clock)
    watcher = Watcher(store, sources, settings=settings, clock=clock, rand=lambda: 0.5, repo=repo)
    try:
        assert {r.sha for r in watcher.open_rows()} == {ours, by_hand}
        results = watcher.run()
    finally:
        for source in sources:
            source.close()
    assert results == {ours: "succeeded", by_hand: "succeeded"}
    other = store.deployment(theirs)
    assert other is not None and other.state == "pending" and other.monitor_pid is None
    # not one event of the watcher's on it
    assert [e.type for e in store.events(stream=theirs)] == ["PushRecorded", "PushConfirmed"]


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("git@github.com:org/app.git", "github.com/org/app"),
        ("https://tok@github.com/org/app", "github.com/org/app"),
        ("https://GitHub.com/org/app.git/", "github.com/org/app"),
        ("ssh://git@github.com:22/org/app.git", "github.com/org/app"),
        ("/srv/git/app.git", "/srv/git/app.git"),
        ("file:///srv/git/app.git", "/srv/git/app.git"),
    ],
)
def test_remote_urls_of_one_repository_have_one_key(url: str, key: str) -> None:
    from tracker.gitutil import repo_key

    assert repo_key(url) == key
