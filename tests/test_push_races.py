"""Every push gets its right verdict and is watched: clones pushing in turns by URL and by name,
bursts of pushes, and a push whose confirmer never ran. Real git with bare remotes, the real
hook and detached confirmers and monitors, the simulated platform over HTTP (sub-second phases).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, git, make_repo, tracker_python, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.procs import process_alive
from tracker.push.install import install
from tracker.push.intake import take_in
from tracker.push.spool import read_record, record_paths
from tracker.sim.server import SimulatedPlatform

pytestmark = pytest.mark.slow

TOKEN = "sim-token-push-races"
PHASES = {"pending_build_s": 0.1, "build_s": 0.3, "pending_deploy_s": 0.1, "deploy_s": 0.3}
VERDICTS = {"DeploymentSucceeded", "DeploymentFailed", "DeploymentSuperseded"}
SETTLE_S = 240.0  # generous: two shared cores, and the suite must pass under a CPU hog


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedPlatform]:
    """The simulated platform, configured in this process too: the readers below start
    monitors as an agent's `tracker status` would."""
    with SimulatedPlatform(token=TOKEN) as platform:
        for name, value in sim_env(platform).items():
            monkeypatch.setenv(name, value)
        yield platform


def sim_env(sim: SimulatedPlatform) -> dict[str, str]:
    return {
        "DIGITALOCEAN_TOKEN": TOKEN,
        "TRACKER_DO_APP_ID": sim.app_id,
        "TRACKER_DO_API_URL": sim.base_url,
        "TRACKER_POLL_POLICY": "fixed",
        "TRACKER_POLL_INTERVAL": "0.2",
        "TRACKER_MAX_WAIT": "200",
    }


def clones(tmp_path: Path, sim: SimulatedPlatform, count: int) -> list[Repo]:
    """`count` clones of one bare remote, the hook installed in each, one shared log."""
    db = tmp_path / "log" / "events.db"
    first = make_repo(tmp_path, "clone0", TRACKER_DB=str(db), **sim_env(sim))
    made = [first]
    for n in range(1, count):
        work = tmp_path / f"clone{n}"
        git(tmp_path, "clone", "-q", str(first.remote), str(work), env=first.env)
        made.append(Repo(work, first.remote, first.env))
    for clone in made:
        install(clone.work, python=tracker_python())
    return made


def read(db: Path) -> None:
    """What every reader (`tracker status`, `events`, ...) does first: take in the spool."""
    with SQLiteLog(db) as store:
        take_in(store, db.parent)


def event_types(db: Path, sha: str) -> list[str]:
    with SQLiteLog(db) as store:
        return [e.type for e in store.events(stream=sha)]


def monitors_alive(db: Path) -> list[int]:
    with SQLiteLog(db) as store:
        pids = {int(e.data["pid"]) for e in store.events() if e.type == "MonitorStarted"}
    return [pid for pid in pids if process_alive(pid)]


def unsettled(db: Path, accepted: list[str], refused: list[str]) -> str | None:
    """What is not settled yet (None once every accepted push is confirmed with a verdict,
    every refused one rejected, the spool empty and no monitor left running)."""
    spooled = record_paths(db.parent / "spool")
    if spooled:
        return f"{len(spooled)} records still in the spool: {[p.name for p in spooled][:4]}"
    for sha in accepted:
        types = event_types(db, sha)
        if not VERDICTS & set(types):
            return f"accepted {sha[:7]} has no verdict: {types}"
    for sha in refused:
        types = event_types(db, sha)
        if "PushRejected" not in types:
            return f"refused {sha[:7]} is not rejected: {types}"
    alive = monitors_alive(db)
    return f"monitors still running: {alive}" if alive else None


def check(db: Path, accepted: list[str], refused: list[str]) -> None:
    last: list[str | None] = []

    def done() -> bool:
        last[:] = [unsettled(db, accepted, refused)]
        return last[0] is None

    try:
        wait_until(done, timeout=SETTLE_S)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last[0]}") from None
    for sha in accepted:
        types = event_types(db, sha)
        assert types.count("PushRecorded") == 1, (sha, types)
        assert [t for t in types if t.startswith("Push")] == ["PushRecorded", "PushConfirmed"]
        assert "MonitorStarted" in types, (sha, types)  # watched
        assert len([t for t in types if t in VERDICTS]) == 1, (sha, types)
        assert "MonitorTimedOut" not in types, (sha, types)
    for sha in refused:
        assert event_types(db, sha) == ["PushRecorded", "PushRejected"]


@pytest.mark.parametrize("count", [2, 4])
def test_clones_pushing_in_turns_by_url_and_by_name_get_their_right_verdicts(
    tmp_path: Path, sim: SimulatedPlatform, count: int
) -> None:
    """50 pushes. A clone behind the remote is refused (`fetch first`, or `non-fast-forward`
    before the hook runs when it has the remote's tip), pulls with rebase (so
    the refused commit never reaches main) and pushes again at once; each push goes by the
    remote's name or by its path, at random; a reader takes the spool in after every push."""
    made = clones(tmp_path, sim, count)
    db = made[0].db
    url = str(made[0].remote)
    chooser = random.Random(count)
    accepted: list[str] = []
    refused: list[str] = []
    unoffered: list[str] = []  # refused by git before the hook ran: never offered to it
    ways: set[tuple[str, bool]] = set()
    turn = 0
    while len(accepted) + len(refused) + len(unoffered) < 50:
        clone = made[turn % count]
        turn += 1
        clone.commit(f"turn {turn}")
        while len(accepted) + len(refused) + len(unoffered) < 50:
            how = chooser.choice(["name", "url"])
            sha = clone.git("rev-parse", "HEAD").stdout.strip()
            done = clone.push("origin" if how == "name" else url, "HEAD:main")
            read(db)
            ways.add((how, done.returncode == 0))
            if done.returncode == 0:
                accepted.append(sha)
                sim.add_deployment(sha, **PHASES)
                break
            # "fetch first": the hook is given the line, and the push ends rejected. Or
            # "non-fast-forward", once the clone has the remote's tip (a watcher fetched it to
            # tell a superseded commit): git refuses before the hook and never gives it the
            # line (reference/git-hooks.md), so nothing is recorded, as nothing was pushed.
            if "non-fast-forward" in done.stderr:
                unoffered.append(sha)
            else:
                assert "fetch first" in done.stderr, done.stderr
                refused.append(sha)
            clone.git("pull", "-q", "--rebase", "origin", "main")
    assert ways == {("name", True), ("name", False), ("url", True), ("url", False)}
    assert len(refused) >= 5
    check(db, accepted, refused)
    assert all(event_types(db, sha) == [] for sha in unoffered)
    assert made[0].remote_head() == accepted[-1]


def test_bursts_of_three_pushes_are_each_confirmed_and_watched(
    tmp_path: Path, sim: SimulatedPlatform
) -> None:
    """30 bursts of three pushes 0.4 s apart; a reader takes the spool in straight after each
    push, racing the confirmer for the record (whoever settles it starts the monitor)."""
    [repo] = clones(tmp_path, sim, 1)
    accepted: list[str] = []
    for burst in range(30):
        start = time.monotonic()
        for n in range(3):
            pace = start + 0.4 * n - time.monotonic()  # the burst's rhythm, not a wait for a result
            if pace > 0:
                time.sleep(pace)
            sha = repo.commit(f"burst {burst} push {n}")
            done = repo.push("origin", "main")
            assert done.returncode == 0, done.stderr
            accepted.append(sha)
            sim.add_deployment(sha, **PHASES)
            read(repo.db)
    check(repo.db, accepted, [])


@pytest.mark.parametrize("how", ["name", "url"])
def test_a_push_whose_confirmer_never_ran_is_confirmed_and_watched_after_20_more(
    tmp_path: Path, sim: SimulatedPlatform, how: str
) -> None:
    [repo] = clones(tmp_path, sim, 1)
    target = "origin" if how == "name" else str(repo.remote)
    install(repo.work, python=str(tmp_path / "moved-venv" / "bin" / "python"))
    lost = repo.commit("its confirmer never runs")
    done = repo.push(target, "HEAD:main")
    assert done.returncode == 0 and "interpreter" in done.stderr
    sim.add_deployment(lost, **PHASES)
    [path] = record_paths(repo.spool)
    assert read_record(path).confirmer_pid is None
    install(repo.work, python=tracker_python())
    later = []
    for n in range(20):
        later.append(repo.commit(f"later {n}"))
        assert repo.push(target, "HEAD:main").returncode == 0
        sim.add_deployment(later[-1], **PHASES)
    wait_until(lambda: record_paths(repo.spool) == [path], timeout=SETTLE_S)  # 20 confirmed
    assert event_types(repo.db, lost) == []  # nobody has read the spool yet
    read(repo.db)  # a reader settles it (or hands it to a confirmer), 20 pushes later
    wait_until(
        lambda: event_types(repo.db, lost)[:2] == ["PushRecorded", "PushConfirmed"],
        timeout=SETTLE_S,
    )
    check(repo.db, [lost, *later], [])
    with SQLiteLog(repo.db) as store:
        row = store.deployment(lost)
    assert row is not None and row.terminal and os.path.exists(repo.db)


def test_a_push_a_reader_settles_before_its_confirmer_is_watched(
    tmp_path: Path, sim: SimulatedPlatform
) -> None:
    """The reader wins the race for the record (here: the confirmer never ran at all); the
    push is confirmed and the reader starts its monitor."""
    [repo] = clones(tmp_path, sim, 1)
    install(repo.work, python=str(tmp_path / "moved-venv" / "bin" / "python"))
    sha = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    sim.add_deployment(sha, **PHASES)
    read(repo.db)
    check(repo.db, [sha], [])
    assert event_types(repo.db, sha)[-1] == "DeploymentSucceeded"
    # One more monitor started late (its confirmer and a reader may both start one) has
    # nothing to follow, and records nothing.
    late = subprocess.run(
        [sys.executable, "-m", "tracker", "monitor", sha], cwd=repo.work, env=repo.env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert late.returncode == 0 and "decided already: succeeded" in late.stdout, late.stderr
    assert event_types(repo.db, sha).count("MonitorStarted") == 1
