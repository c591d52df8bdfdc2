"""Faults of the push path: a confirmer SIGKILLed before it appends, credentials in remote URLs,
the spool's permissions, and pushes racing from several clones. Every push is recorded once,
with one outcome.

Real git with the real hook, real processes, the simulated platform over real HTTP. The longer
runs (200 pushes from 8 clones) are in `bench/bench_faults.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.faults import (
    OUTCOMES,
    PASSWORD,
    ROOT,
    TOKEN,
    assert_consistent,
    cli,
    event_types,
    lock_holder,
    logged_api_calls,
    max_seq,
    settled,
    sim_env,
)
from tests.support.gitrepo import Repo, make_repo, tracker_python, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.procs import confirmer_alive
from tracker.projections import exit_code_of
from tracker.push.install import install
from tracker.push.spool import read_record, record_paths
from tracker.sim import SimulatedPlatform

# -- SIGKILL of a confirmer before it appends -------------------------------------------------


def test_sigkill_of_the_confirmer_before_it_appends_loses_nothing(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    sha = repo.commit()
    with lock_holder(repo.db):  # the confirmer cannot append anything while we hold the lock
        assert repo.push("origin", "main").returncode == 0
        [path] = record_paths(repo.spool)
        pid = read_record(path).confirmer_pid
        # with a deadline: read while the hook's child execs, its command line is empty
        assert wait_until(lambda: confirmer_alive(pid))
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_until(lambda: not confirmer_alive(pid))
        assert max_seq(repo.db) == 0
    status = cli("status", sha, "--json", cwd=repo.work, env=repo.env)
    assert status.returncode == 2 and json.loads(status.stdout)["state"] == "pending"
    assert event_types(repo.db, sha) == ["PushRecorded", "PushConfirmed"]
    assert record_paths(repo.spool) == []


# -- security on the hook path and in the spool -----------------------------------------------

URLS = [
    "https://x-access-token:ghs_S3CRET@github.com/acme/app.git",
    "https://ghp_S3CRET@github.com/acme/app.git",
    "https://user:p@ss:S3CRET@example.com:8443/a/b.git",
    "ssh://deployer:S3CRET@host:2222/srv/app.git",
    "https://user:S3CRET@host",
    "git@github.com:acme/app.git",
    "https://github.com/acme/app.git",
    "https://host/path/with@sign.git",
    "/srv/git/app.git",
    "file:///srv/git/app.git",
    "host:path/app.git",
    "https://gitlab.example.com/acme/app.git?private_token=S3CRET",
    "https://host/acme/app.git#S3CRET",
    "https://oauth2:S3CRET?x@host/app.git?token=S3CRET#S3CRET",
    "https://host?S3CRET",
]


def hook_function(name: str) -> str:
    """The text of one shell function of hooks/pre-push."""
    text = (ROOT / "hooks" / "pre-push").read_text()
    start = text.index(f"{name}() {{")
    return text[start : text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("url", URLS)
def test_the_hook_strips_credentials_exactly_as_the_python_side_does(url: str) -> None:
    from tracker.gitutil import strip_credentials

    script = hook_function("strip_credentials") + 'strip_credentials "$1"'
    done = subprocess.run(
        ["sh", "-c", script, "sh", url], capture_output=True, text=True, check=True
    )
    assert done.stdout == strip_credentials(url)
    assert "S3CRET" not in done.stdout


def test_spool_records_are_owner_only_whatever_the_pushers_umask(repo: Repo) -> None:
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    sha = repo.commit()
    with lock_holder(repo.db):
        pushed = subprocess.run(
            ["git", "push", "origin", "main"], cwd=repo.work, env={**repo.env, "DB_PASS": PASSWORD},
            capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0),
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        [path] = record_paths(repo.spool)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(repo.spool.stat().st_mode & 0o777) == "0o700"
        pid = read_record(path).confirmer_pid

        def confirmer_args() -> list[bytes] | None:  # once the hook's child has exec'd
            found = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            return found if b"tracker.confirm" in found else None

        args = wait_until(confirmer_args)
        assert args[-2:] == [str(path).encode(), b""]  # type: ignore[index]  # the path only
        assert PASSWORD.encode() not in path.read_bytes()
    assert settled(repo, sha) == ["PushRecorded", "PushConfirmed"]
    for file in repo.log_dir.rglob("*"):
        if file.is_file():
            assert file.stat().st_mode & 0o077 == 0, file
            assert PASSWORD.encode() not in file.read_bytes(), file


# -- pushes racing from several clones --------------------------------------------------------


def push_until_accepted(
    clone: Repo, sim: SimulatedPlatform, attempts: list[tuple[str, bool]]
) -> None:
    """Commit, then push main; on a rejection pull --rebase and push again (as agents do).

    `attempts` gets the pushes the hook saw: git refuses a push whose remote tip it has and
    that is not an ancestor ("non-fast-forward") before it runs the pre-push hook, and such a
    tip is here once a confirmer fetched it to check an earlier push."""
    clone.commit(f"change from {clone.work.name}")
    for _ in range(20):
        sha = clone.git("rev-parse", "HEAD").stdout.strip()
        done = clone.push("origin", "main")
        if "(non-fast-forward)" not in done.stderr:  # else refused by git itself: no hook ran
            attempts.append((sha, done.returncode == 0))
        if done.returncode == 0:
            sim.add_deployment(
                sha, pending_build_s=0.2, build_s=0.4, pending_deploy_s=0.1, deploy_s=0.4
            )
            return
        clone.git("pull", "-q", "--rebase", "origin", "main")
    raise AssertionError(f"{clone.work.name} could not push in 20 attempts")


def test_pushes_racing_from_two_clones_are_each_recorded_once_with_one_outcome(
    tmp_path: Path,
) -> None:
    import threading

    from tests.support.gitrepo import git

    db = tmp_path / "shared-log" / "events.db"
    with SimulatedPlatform(token=TOKEN) as sim:
        first = make_repo(tmp_path, "clone0")
        env = sim_env(sim, db)
        env.update({k: v for k, v in first.env.items() if k.startswith("GIT_")})
        clones = [Repo(first.work, first.remote, env)]
        git(tmp_path, "clone", "-q", str(first.remote), str(tmp_path / "clone1"), env=env)
        clones.append(Repo(tmp_path / "clone1", first.remote, env))
        for clone in clones:
            install(clone.work, python=tracker_python())
        attempts: list[tuple[str, bool]] = []

        def agent(clone: Repo) -> None:
            for _ in range(5):
                push_until_accepted(clone, sim, attempts)

        threads = [threading.Thread(target=agent, args=(c,)) for c in clones]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        accepted = [sha for sha, ok in attempts if ok]
        assert len(accepted) == 10

        def all_decided() -> bool:
            with SQLiteLog(db) as store:
                rows = [store.deployment(sha) for sha, _ in attempts]
            return all(row is not None and row.terminal for row in rows)

        wait_until(all_decided, timeout=60)
        spool = db.parent / "spool"
        wait_until(lambda: not record_paths(spool))
        for sha, ok in attempts:
            types = event_types(db, sha)
            assert types.count("PushRecorded") == 1, (sha, types)
            verdicts = [t for t in types if t in ("PushConfirmed", "PushRejected")]
            assert verdicts == (["PushConfirmed"] if ok else ["PushRejected"]), (sha, types)
            outcomes = [t for t in types if t in OUTCOMES]
            assert len(outcomes) == (1 if ok else 0), (sha, types)
        wait_until(lambda: not any(monitor_pids_alive(db)))
        with SQLiteLog(db) as store:
            final = [store.deployment(sha) for sha in accepted]
        # Each accepted push went live, itself or inside a newer commit that did.
        assert [exit_code_of(r.state, r.superseded_went_live) for r in final if r] == [0] * 10
        assert logged_api_calls(db) == sim.api_requests
        assert not [r for r in sim.requests if r.fault]
        assert sim.over_limit == 0  # no request was refused by the 250/min limit
        arrivals = [r.at for r in sim.requests]
        assert arrivals == sorted(arrivals) and arrivals[0] > 0
    assert_consistent(db)


def monitor_pids_alive(db: Path) -> list[int]:
    from tracker.procs import monitor_alive

    with SQLiteLog(db) as store:
        pids = [int(e.data["pid"]) for e in store.events() if e.type == "MonitorStarted"]
    return [pid for pid in pids if monitor_alive(pid, os.uname().nodename)]


def test_superseded_by_a_push_from_another_clone_that_went_live_is_exit_0(
    tmp_path: Path,
) -> None:
    from tests.support.gitrepo import git

    db = tmp_path / "shared-log" / "events.db"
    with SimulatedPlatform(token=TOKEN, supersede_on="created") as sim:
        first = make_repo(tmp_path, "clone0")
        env = sim_env(sim, db)
        env.update({k: v for k, v in first.env.items() if k.startswith("GIT_")})
        ours_clone = Repo(first.work, first.remote, env)
        git(tmp_path, "clone", "-q", str(first.remote), str(tmp_path / "clone1"), env=env)
        theirs_clone = Repo(tmp_path / "clone1", first.remote, env)
        install(ours_clone.work, python=tracker_python())
        ours = ours_clone.commit("ours")
        assert ours_clone.push("origin", "main").returncode == 0
        sim.add_deployment(ours, pending_build_s=0.5, build_s=2, deploy_s=2)
        theirs_clone.git("pull", "-q", "origin", "main")
        theirs = theirs_clone.commit("theirs, on top of ours")
        theirs_clone.git("push", "-q", "origin", "main")  # no hook in this clone
        sim.add_deployment(theirs, pending_build_s=0.1, build_s=0.3, deploy_s=0.3)

        def decided() -> bool:
            with SQLiteLog(db) as store:
                row = store.deployment(ours)
            return row is not None and row.terminal

        wait_until(decided, timeout=30)
        status = cli("status", ours, "--json", cwd=ours_clone.work, env=env)
    assert json.loads(status.stdout)["superseded_by"] == theirs
    assert status.returncode == 0, status.stdout
