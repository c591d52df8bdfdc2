"""What the push hook adds to `git push` (SPEC §7: at most 25 ms, median, to a local bare remote).

Interleaved pairs: the same repository pushes a new commit to a local bare remote with the hook
and without it (`--no-verify`), the caller reading git's output through pipes
(`capture_output=True`); the same through husky 9's stub when npm works; then 16 clones pushing
at once, checking that every push is in the log, confirmed. Run:

    .venv/bin/python -m bench.bench_hook [--pairs 30] [--clones 16]

With `--fleet URL` (a migrated shared log; its password in TRACKER_LOG_PASSWORD) or `--fleet
private` (a private MariaDB started here, tests/support/mariadb_private.py), it measures the hook
in fleet mode next to single-machine mode instead: two clones, one with TRACKER_LOG_URL set,
pushed in turn (no hook, hook; each clone), each push waiting for the last one's confirmer to
finish first; then checks that every fleet push reached the shared log, confirmed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.gitrepo import Repo, git, make_repo, tracker_python, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.push.install import install
from tracker.push.intake import take_in
from tracker.push.spool import record_paths


def timed_push(repo: Repo, *flags: str) -> float:
    repo.commit("bench")
    started = time.perf_counter()
    done = subprocess.run(
        ["git", "push", *flags, "origin", "HEAD:main"], cwd=repo.work, env=repo.env,
        capture_output=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"push failed: {done.stderr.decode()}")
    return elapsed * 1000


def settled(repo: Repo) -> None:
    """Wait until the last push's confirmer has taken its spool record in (so it does not
    compete with the next timed push for the CPU)."""
    wait_until(lambda: not record_paths(repo.spool), 120)


def fleet_pairs(plain: Repo, fleet: Repo, count: int) -> dict[str, list[float]]:
    """Interleaved: per round, each clone pushes without and with the hook (which clone goes
    first alternates); every timed push starts once the confirmers are done."""
    found: dict[str, list[float]] = {k: [] for k in ("plain", "plain+hook", "fleet", "fleet+hook")}
    for i in range(count + 3):
        order = [(plain, "plain"), (fleet, "fleet")]
        for repo, name in order if i % 2 == 0 else order[::-1]:
            settled(repo)
            a = timed_push(repo, "--no-verify")
            b = timed_push(repo)
            if i >= 3:  # warm-up
                found[name].append(a)
                found[name + "+hook"].append(b)
    settled(plain)
    settled(fleet)
    return found


def fleet_main(tmp: Path, url: str, count: int) -> None:
    import os

    from tracker.log.mysql import MySQLLog

    plain = make_repo(tmp, "plain")
    fleet = make_repo(tmp, "fleet", TRACKER_LOG_URL=url, TRACKER_MACHINE_ID="bench-fleet")
    if "TRACKER_LOG_PASSWORD" in os.environ:
        fleet.env["TRACKER_LOG_PASSWORD"] = os.environ["TRACKER_LOG_PASSWORD"]
    for repo in (plain, fleet):
        install(repo.work, python=tracker_python())
    shared = MySQLLog.from_url(url)
    before = shared.last_seq()
    found = fleet_pairs(plain, fleet, count)
    med = {k: statistics.median(v) for k, v in found.items()}
    print(f"git {git(tmp, 'version').stdout.split()[-1]}, {count} interleaved rounds;")
    print("caller uses capture_output=True; medians in ms")
    print(f"{'mode':<16} {'no hook':>9} {'hook':>9} {'added':>9}")
    for name in ("plain", "fleet"):
        base, hooked = med[name], med[name + "+hook"]
        print(f"{name:<16} {base:9.1f} {hooked:9.1f} {hooked - base:+9.1f}")
    pushes = count + 3  # the hooked pushes of the fleet clone (warm-up included)

    def stored() -> tuple[int, int]:
        kinds = [e.type for e in shared.events(after_seq=before)]
        return kinds.count("PushRecorded"), kinds.count("PushConfirmed")

    wait_until(lambda: stored()[1] >= pushes, 120)
    recorded, confirmed = stored()
    print(f"fleet pushes in the shared log: {recorded} recorded, {confirmed} confirmed"
          f" of {pushes}")  # fmt: skip
    shared.close()


def pairs(repo: Repo, count: int) -> tuple[float, float]:
    """Median ms without and with the hook, from interleaved pushes."""
    without, with_hook = [], []
    for i in range(count + 3):
        a = timed_push(repo, "--no-verify")
        b = timed_push(repo)
        if i >= 3:  # warm-up
            without.append(a)
            with_hook.append(b)
        time.sleep(0.05)  # let the confirmer of the last push finish off the critical path
    return statistics.median(without), statistics.median(with_hook)


def husky_repo(tmp: Path) -> Repo | None:
    npm = shutil.which("npm")
    if npm is None:
        return None
    repo = make_repo(tmp, "husky")
    env = {**repo.env, "npm_config_fund": "false", "npm_config_audit": "false"}
    for argv in ([npm, "init", "-y"], [npm, "install", "--save-dev", "husky@9"]):
        if subprocess.run(argv, cwd=repo.work, env=env, capture_output=True).returncode:
            return None
    subprocess.run(["npx", "husky", "init"], cwd=repo.work, env=env, capture_output=True)
    (repo.work / ".husky" / "pre-commit").unlink(missing_ok=True)
    (repo.work / ".gitignore").write_text("node_modules/\n")
    install(repo.work, husky=True, python=tracker_python())
    return repo


def concurrent(tmp: Path, clones: int) -> tuple[int, int, float]:
    """`clones` clones of one remote, each pushing to its own remote at the same moment.

    Each clone has its own log, so this measures the hook and confirmer under load (16 confirmers
    starting at once on 2 cores); returns (pushes, confirmed, seconds until all were).
    """
    repos = [make_repo(tmp, f"c{i}") for i in range(clones)]
    for repo in repos:
        install(repo.work, python=tracker_python())
    shas = [repo.commit("concurrent") for repo in repos]
    started = time.perf_counter()
    with ThreadPoolExecutor(clones) as pool:
        results = list(pool.map(lambda r: r.push("origin", "main").returncode, repos))
    assert results == [0] * clones, results

    def confirmed(repo: Repo, sha: str) -> bool:
        if record_paths(repo.spool) or not repo.db.exists():
            return False
        with SQLiteLog(repo.db) as store:
            return [e.type for e in store.events(stream=sha)] == ["PushRecorded", "PushConfirmed"]

    wait_until(lambda: all(confirmed(r, s) for r, s in zip(repos, shas, strict=True)), 120)
    return clones, clones, time.perf_counter() - started


def shared_log(tmp: Path, clones: int) -> tuple[int, int]:
    """`clones` worktrees of one repository (one shared log) pushing at once: none lost."""
    main = make_repo(tmp, "shared")
    install(main.work, python=tracker_python())
    trees = []
    for i in range(clones):
        tree = tmp / f"tree{i}"
        main.git("worktree", "add", "-q", "-b", f"t{i}", str(tree))
        trees.append(tree)
    shas = [main.commit(f"tree {i}", cwd=tree) for i, tree in enumerate(trees)]
    with ThreadPoolExecutor(clones) as pool:
        list(pool.map(lambda t: main.push("-f", "origin", "HEAD:main", cwd=t), trees))
    wait_until(lambda: not record_paths(main.spool), 120)
    with SQLiteLog(main.db) as store:
        take_in(store, main.log_dir)
        recorded = {e.stream for e in store.events() if e.type == "PushRecorded"}
        verdicts = [e for e in store.events() if e.type in ("PushConfirmed", "PushRejected")]
    return len(recorded & set(shas)), len(verdicts)


def fleet_bench(tmp: Path, url: str, count: int) -> None:
    if url != "private":
        fleet_main(tmp, url, count)
        return
    from tests.support.mariadb_private import create_database, start_private
    from tracker.log.mysql import migrate

    server = start_private(tmp / "db")
    try:
        found = server.url(create_database(server))
        migrate(found, env={})
        fleet_main(tmp, found, count)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--clones", type=int, default=16)
    parser.add_argument("--fleet", metavar="URL", help="a shared log's URL, or `private`")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hook-"))
    if args.fleet:
        try:
            fleet_bench(tmp, args.fleet, args.pairs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        plain = make_repo(tmp, "plain")
        install(plain.work, python=tracker_python())
        rows = [("plain pre-push", *pairs(plain, args.pairs))]
        husky = husky_repo(tmp)
        if husky is not None:
            rows.append(("husky 9 stub", *pairs(husky, args.pairs)))
        print(f"git {git(tmp, 'version').stdout.split()[-1]}, {args.pairs} interleaved pairs,")
        print("caller uses capture_output=True; medians in ms")
        print(f"{'setup':<16} {'no hook':>9} {'hook':>9} {'added':>9}")
        for name, base, hooked in rows:
            print(f"{name:<16} {base:9.1f} {hooked:9.1f} {hooked - base:+9.1f}")
        if husky is None:
            print("husky: skipped (npm missing or `npm install husky@9` failed)")
        pushes, ok, seconds = concurrent(tmp, args.clones)
        print(f"{args.clones} clones pushing at once: {ok}/{pushes} confirmed in {seconds:.2f} s")
        got, verdicts = shared_log(tmp, args.clones)
        print(
            f"{args.clones} worktrees of one repo (one log) pushing at once: {got}/{args.clones}"
            f" pushes recorded, {verdicts} verdicts"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
