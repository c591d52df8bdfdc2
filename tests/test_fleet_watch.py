"""One watcher per app fleet-wide (SPEC §10): machines (separate logs, their own
`TRACKER_MACHINE_ID`, one `TRACKER_LOG_URL`) whose watchers are real `tracker monitor --watch`
processes against one simulated platform, on the session's private MariaDB. A watcher killed
(`kill -9`) is resumed by another machine's `wait` once its lease expires; a frozen one
(SIGSTOP) taken over and thawed has its next append refused and exits; three clones of one
remote pushing at once through the real hook are polled by exactly one machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, git, make_repo, tracker_python, wait_until
from tests.support.mariadb_private import PrivateMariaDB
from tests.test_log_fleet import dump
from tests.test_push_races import sim_env
from tracker.log.fleet import FleetLog
from tracker.procs import process_alive
from tracker.push.install import install
from tracker.sim.server import SimulatedPlatform

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

TOKEN = "sim-token-fleet-watch"
TTL = "2"  # TRACKER_LEASE_TTL: renewed every 0.67 s
VERDICTS = {"DeploymentSucceeded", "DeploymentFailed", "DeploymentSuperseded"}
SETTLE_S = 240.0


@pytest.fixture
def sim() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as platform:
        yield platform


def machine_env(repo: Repo, name: str, url: str, sim: SimulatedPlatform) -> dict[str, str]:
    env = dict(repo.env)
    env.update({k: v for k, v in sim_env(sim).items() if k != "DIGITALOCEAN_TOKEN"})
    env.update(
        DIGITALOCEAN_TOKEN=TOKEN,
        TRACKER_LOG_URL=url,
        TRACKER_MACHINE_ID=name,
        TRACKER_LEASE_TTL=TTL,
        TRACKER_DB=str(repo.work.parent / f"log-{name}" / "events.db"),
        TRACKER_SYNC_DEADLINE="5s",
    )
    return env


def tracker(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def watcher(sha: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tracker", "monitor", sha, "--watch"], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def shared(mariadb: PrivateMariaDB, database: str, sql: str) -> list[tuple[object, ...]]:
    with mariadb.admin(database) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def events(mariadb: PrivateMariaDB, database: str) -> list[tuple[int, str, str, str]]:
    """Every event of the shared log: (seq, stream, type, origin machine)."""
    rows = shared(mariadb, database, "SELECT seq, stream, type, origin FROM events ORDER BY seq")
    return [(int(s), _text(st), str(t), str(o)) for s, st, t, o in rows]  # type: ignore[call-overload]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def lease(mariadb: PrivateMariaDB, database: str) -> tuple[str, int, bool] | None:
    """The app's lease: (holder, fence, expired on the server's clock)."""
    rows = shared(mariadb, database, "SELECT holder, fence, expires_at < NOW(6) FROM watch_leases")
    if not rows:
        return None
    holder, fence, expired = rows[0]
    return _text(holder), int(fence), bool(expired)  # type: ignore[call-overload]


def polled_by(mariadb: PrivateMariaDB, database: str, machine: str) -> bool:
    return any(t == "DeploymentPolled" and o == machine for _, _, t, o in events(mariadb, database))


def knows_lease(env: dict[str, str], url: str, sim: SimulatedPlatform, holder: str) -> bool:
    """Whether the machine of `env` has pulled the app's lease of `holder`."""
    with FleetLog.open(env["TRACKER_DB"], url, env=env) as log:
        found = log.lease(f"digitalocean:{sim.app_id}")
    return found is not None and found.holder == holder


def pushed(tmp_path: Path, sim: SimulatedPlatform, **phases: float) -> tuple[Repo, str]:
    repo = make_repo(tmp_path)
    sha = repo.commit("watched")
    repo.git("push", "-q", "origin", "HEAD:main")
    sim.add_deployment(sha, **phases)
    return repo, sha


def test_kill_9_of_the_watcher_another_machines_wait_resumes_it_and_the_verdict_comes(
    tmp_path: Path, url: str, sim: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    repo, sha = pushed(tmp_path, sim, pending_build_s=0.5, build_s=8.0, deploy_s=2.0,
                       pending_deploy_s=0.5)  # fmt: skip
    a, b = (machine_env(repo, n, url, sim) for n in ("a", "b"))
    done = tracker("push", sha, "--branch", "main", "--no-monitor", env=a, cwd=repo.work)
    assert done.returncode == 0, done.stderr
    first = watcher(sha, a, repo.work)
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: polled_by(mariadb, fresh_database, "a"), timeout=SETTLE_S)
        held = lease(mariadb, fresh_database)
        assert held is not None and held[:2] == (f"a:{first.pid}", 1) and not held[2]
        # b waits while a watches: b's first answer is `in progress` (a's lease is alive), so
        # only the re-check in its loop can resume the watch
        waiter = subprocess.Popen(
            [sys.executable, "-m", "tracker", "wait", sha, "--timeout", "200"], env=b,
            cwd=repo.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: knows_lease(b, url, sim, f"a:{first.pid}"), timeout=SETTLE_S)
        killed_at = time.monotonic()
        [(server_kill,)] = shared(mariadb, fresh_database, "SELECT NOW(6)")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        out, err = waiter.communicate(timeout=300)
    finally:
        for proc in (first, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert waiter.returncode == 0, (out, err)
    assert "in progress" in out.splitlines()[0], out
    assert out.splitlines()[-1] == "final: succeeded (exit 0)", out
    found = events(mariadb, fresh_database)
    resumed = next(seq for seq, s, t, o in found if t == "MonitorStarted" and o == "b")
    verdicts = [(t, o) for _, s, t, o in found if s == sha and t in VERDICTS]
    assert verdicts == [("DeploymentSucceeded", "b")], verdicts  # once, by the new holder
    assert all(o == "b" for seq, _, _, o in found if seq > resumed)  # a stored nothing after
    taken = lease(mariadb, fresh_database)
    assert taken is not None and taken[0].startswith("b:") and taken[1] == 2
    first_poll = next(seq for seq, _, t, o in found if t == "DeploymentPolled" and o == "b")
    assert first_poll > resumed
    holder = int(taken[0].split(":")[1])
    wait_until(lambda: not process_alive(holder), timeout=SETTLE_S)  # it ends with nothing open
    [(polled_at,)] = shared(
        mariadb, fresh_database,
        f"SELECT appended_at FROM events WHERE seq = {first_poll}",
    )  # fmt: skip
    print(
        f"\nkill -9 -> b's first poll {(polled_at - server_kill).total_seconds():.2f} s later"  # type: ignore[operator]
        f" (server clock; TTL {TTL} s, poll 0.2 s); wait returned after"
        f" {time.monotonic() - killed_at:.2f} s"
    )


def test_sigstop_past_the_expiry_takeover_then_sigcont_the_old_holder_is_refused_and_exits(
    tmp_path: Path, url: str, sim: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    repo, sha = pushed(tmp_path, sim, pending_build_s=0.5, build_s=12.0, deploy_s=2.0,
                       pending_deploy_s=0.5)  # fmt: skip
    a, b = (machine_env(repo, n, url, sim) for n in ("a", "b"))
    done = tracker("push", sha, "--branch", "main", "--no-monitor", env=a, cwd=repo.work)
    assert done.returncode == 0, done.stderr
    first = watcher(sha, a, repo.work)
    frozen = False
    try:
        wait_until(lambda: polled_by(mariadb, fresh_database, "a"), timeout=SETTLE_S)
        # machine b sees the commit a watches as in progress, not stale (the lease, not a pid)
        shown = tracker("status", sha, "--json", env=b, cwd=repo.work)
        assert shown.returncode == 2, shown.stdout
        assert '"state": "in_progress"' in shown.stdout, shown.stdout
        os.kill(first.pid, signal.SIGSTOP)
        frozen = True
        wait_until(lambda: (lease(mariadb, fresh_database) or ("", 0, False))[2], timeout=60)
        # its pid still runs on this host, but its lease expired: stale, and status resumes it
        shown = tracker("status", sha, "--json", env=b, cwd=repo.work)
        assert shown.returncode == 2 and '"state": "stale"' in shown.stdout, shown.stdout
        wait_until(
            lambda: (lease(mariadb, fresh_database) or ("",))[0].startswith("b:"), timeout=120
        )
        taken = lease(mariadb, fresh_database)
        assert taken is not None and taken[1] == 2
        wait_until(lambda: polled_by(mariadb, fresh_database, "b"), timeout=SETTLE_S)
        os.kill(first.pid, signal.SIGCONT)
        frozen = False
        out, _ = first.communicate(timeout=120)
    finally:
        if frozen:
            os.kill(first.pid, signal.SIGCONT)
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 0, out
    assert f"lease lost to {taken[0]} (fence 2)" in out, out
    found = events(mariadb, fresh_database)
    takeover = next(seq for seq, _, t, o in found if t == "MonitorStarted" and o == "b")
    late = [(seq, t) for seq, _, t, o in found if o == "a" and seq > takeover]
    assert late == [], late  # nothing of the old holder's after the takeover
    assert not any(t == "MonitorStopped" for _, _, t, _ in found)  # a did not say it stopped
    with FleetLog.open(a["TRACKER_DB"], url, env={"TRACKER_MACHINE_ID": "a"}) as log:
        assert log.sync_state().outbox == 0  # refused, and dropped
    waited = tracker("wait", sha, "--timeout", "200", env=b, cwd=repo.work)
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    verdicts = [(t, o) for _, s, t, o in events(mariadb, fresh_database) if t in VERDICTS]
    assert verdicts == [("DeploymentSucceeded", "b")]


# -- three clones of one remote as three machines -------------------------------------------------


def same_rows(log: FleetLog) -> list[tuple[object, ...]]:
    """The cache's projection rows, but a measure row's surrogate id (where the machine's
    inserts happened to land)."""
    found = [r[:1] + r[2:] if r[0] == "deployment_measures" else r for r in dump(log)]
    return sorted(found, key=repr)


def three_machines(tmp_path: Path, url: str, sim: SimulatedPlatform) -> list[Repo]:
    first = make_repo(tmp_path, "clone-a")
    made = [first]
    for name in ("b", "c"):
        work = tmp_path / f"clone-{name}"
        git(tmp_path, "clone", "-q", str(first.remote), str(work), env=first.env)
        made.append(Repo(work, first.remote, dict(first.env)))
    for repo, name in zip(made, "abc", strict=True):
        repo.env = machine_env(repo, name, url, sim)
        repo.env["TRACKER_LEASE_TTL"] = "10"  # no takeover here: a slow renewal is no death
        install(repo.work, python=tracker_python())
    return made


def push_until_accepted(repo: Repo, shas: list[str], lock: threading.Lock) -> None:
    """Commit and push to main; refused (another clone got there first), rebase and push
    again at once."""
    repo.commit(f"from {repo.work.name}")
    for _ in range(20):
        sha = repo.git("rev-parse", "HEAD").stdout.strip()
        if repo.push("origin", "HEAD:main").returncode == 0:
            with lock:
                shas.append(sha)
            return
        repo.git("pull", "-q", "--rebase", "origin", "main")
    raise AssertionError(f"{repo.work.name} never got its push in")


def test_three_clones_pushing_at_once_are_polled_by_exactly_one_machine_and_agree(
    tmp_path: Path, url: str, sim: SimulatedPlatform, mariadb: PrivateMariaDB, fresh_database: str
) -> None:
    made = three_machines(tmp_path, url, sim)
    shas: list[str] = []
    lock = threading.Lock()
    pushers = [threading.Thread(target=push_until_accepted, args=(r, shas, lock)) for r in made]
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join(timeout=300)
    assert len(shas) == 3

    def confirmed() -> bool:
        found = events(mariadb, fresh_database)
        return all((sha, "PushConfirmed") in {(s, t) for _, s, t, _ in found} for sha in shas)

    wait_until(confirmed, timeout=SETTLE_S)  # every confirmer done: each machine's monitor ran
    for sha in shas:  # long enough that every push is in the shared log before any verdict
        sim.add_deployment(sha, pending_build_s=1.0, build_s=4.0, pending_deploy_s=0.5,
                           deploy_s=1.0)  # fmt: skip
    final: dict[tuple[str, str], str] = {}

    def settled() -> bool:
        for repo in made:
            for sha in shas:
                key = (repo.env["TRACKER_MACHINE_ID"], sha)
                if key in final:
                    continue
                shown = tracker("status", sha, env=repo.env, cwd=repo.work)
                if shown.returncode in (0, 1):
                    final[key] = shown.stdout.splitlines()[0] if shown.stdout else ""
        return len(final) == 9

    wait_until(settled, timeout=SETTLE_S)
    asked = {r.user_agent for r in sim.requests if r.api}
    machines = {ua.rsplit("machine/", 1)[-1] for ua in asked if ua and "machine/" in ua}
    assert len(machines) == 1 and all(ua and "machine/" in ua for ua in asked), asked
    everything = events(mariadb, fresh_database)
    assert [e[0] for e in everything] == list(range(1, len(everything) + 1))
    keys = shared(mariadb, fresh_database, "SELECT ikey FROM events")
    assert len(keys) == len(set(keys))
    for sha in shas:
        verdicts = [t for _, s, t, _ in everything if s == sha and t in VERDICTS]
        assert len(verdicts) == 1, (sha, verdicts)
    rows = []
    for repo in made:
        synced = tracker("sync", env=repo.env, cwd=repo.work)
        assert synced.returncode == 0, synced.stderr
        name = repo.env["TRACKER_MACHINE_ID"]
        with FleetLog.open(repo.env["TRACKER_DB"], url, env={"TRACKER_MACHINE_ID": name}) as log:
            assert log.rebuild().clean and log.sync_state().outbox == 0
            assert [e.seq for e in log.events()] == [e[0] for e in everything]
            rows.append(same_rows(log))
    assert rows[0] == rows[1] == rows[2]
    print(f"\nthree machines: polled by {machines}, {len(asked)} user agents, "
          f"{sim.api_requests} API requests, {len(everything)} events")  # fmt: skip
