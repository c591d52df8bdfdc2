"""Fault injection at length: every fault many times over, and 200 pushes from 8 clones at once.

Each row injects one fault a number of times and counts the facts the log must hold afterwards
(pushes, push verdicts, deployment outcomes, acknowledged appends): how many were expected, how
many are present, lost, or recorded more than once. Platform rows also compare the API calls in
the log with the requests the simulated server received. Run:

    .venv/bin/python -m bench.bench_faults [--pushes 200] [--clones 8] [--rounds 10]

MariaDB rows need 127.0.0.1:3306 (root, no password, database `test`); without it they say so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fault_writer import batch_of
from tests.support.faults import helper
from tests.support.gitrepo import Repo, base_env, git, make_repo, tracker_python, wait_until
from tracker.clock import FakeClock
from tracker.config import load_settings
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog
from tracker.monitor.loop import Monitor, build_sources
from tracker.procs import confirmer_alive, monitor_alive
from tracker.projections import exit_code_of
from tracker.push.install import install
from tracker.push.spool import read_record, record_paths
from tracker.sim import SimulatedPlatform

TOKEN = "bench-fault-token"
OUTCOMES = {"DeploymentSucceeded", "DeploymentFailed", "DeploymentSuperseded", "MonitorTimedOut"}
VERDICTS = {"PushConfirmed", "PushRejected"}
HOST = os.uname().nodename


@dataclass
class Row:
    fault: str
    injected: int
    expected: int
    present: int
    duplicated: int
    note: str = ""

    @property
    def lost(self) -> int:
        return self.expected - self.present


# -- helpers ----------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=120, **kw,
    )  # fmt: skip


@contextlib.contextmanager
def lock_held(db: Path) -> Iterator[None]:
    proc = helper("hold-lock", str(db), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def limit_files(nbytes: int) -> Callable[[], None]:
    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def types_by_stream(db: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with SQLiteLog(db) as store:
        for e in store.events():
            found.setdefault(e.stream, []).append(e.type)
    return found


def count_facts(db: Path, pushes: list[tuple[str, bool]], outcomes: bool) -> tuple[int, int, int]:
    """(expected, present, duplicated) for PushRecorded + verdict (+ outcome if accepted)."""
    streams = types_by_stream(db)
    expected = present = duplicated = 0
    for sha, accepted in pushes:
        types = streams.get(sha, [])
        kinds = [["PushRecorded"], VERDICTS] + ([OUTCOMES] if outcomes and accepted else [])
        for kind in kinds:
            n = sum(1 for t in types if t in kind)
            expected += 1
            present += min(n, 1)
            duplicated += max(n - 1, 0)
    return expected, present, duplicated


def logged_calls(db: Path) -> int:
    with SQLiteLog(db) as store:
        return sum(int(e.data.get("api_calls") or 0) for e in store.events())


def wait_confirmers(repo: Repo) -> None:
    for path in record_paths(repo.spool):
        with contextlib.suppress(FileNotFoundError):
            pid = read_record(path).confirmer_pid
            wait_until(lambda pid=pid: not confirmer_alive(pid), timeout=60)  # type: ignore[misc]


def fresh_repo(tmp: Path, name: str) -> Repo:
    repo = make_repo(tmp, name)
    install(repo.work, python=tracker_python())
    with SQLiteLog(repo.db) as store:
        store.last_seq()
    return repo


# -- the log ----------------------------------------------------------------------------------


def writer_kills(tmp: Path, rounds: int) -> Row:
    """SIGKILL 4 writers at once at random moments; acknowledged batches must be whole."""
    db = tmp / "writers" / "events.db"
    with SQLiteLog(db) as store:
        store.last_seq()
    rng = random.Random(1)
    acked: dict[int, int] = {}
    kills = 0
    for r in range(rounds):
        procs = {w: helper("acked", str(db), str(w)) for w in range(r * 4, r * 4 + 4)}
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        for proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            kills += 1
        for w, proc in procs.items():
            assert proc.stdout is not None
            lines = [x for x in proc.stdout.read().splitlines(keepends=True) if x.endswith("\n")]
            proc.wait()
            acked[w] = int(lines[-1]) if lines else -1
    with contextlib.closing(sqlite3.connect(db)) as conn:
        keys = Counter(str(k) for (k,) in conn.execute("SELECT key FROM events"))
    expected = present = half = 0
    for w, last in acked.items():
        replay = random.Random(w)
        for n in range(last + 2):
            batch = [a.key for a in batch_of(w, n, replay)]
            inside = sum(1 for k in batch if keys[k])
            half += 0 < inside < len(batch)
            if n <= last:
                expected += len(batch)
                present += inside
    with SQLiteLog(db) as store:
        ok = store.integrity_check() == "ok" and not store.rebuild().differing
    note = f"half-written batches {half}; integrity and rebuild {'ok' if ok else 'FAILED'}"
    return Row("SIGKILL writer mid-append", kills, expected, present, 0, note)


def confirmer_kills(tmp: Path, rounds: int) -> Row:
    repo = fresh_repo(tmp, "confirmer")
    pushes = []
    for _ in range(rounds):
        sha = repo.commit()
        with lock_held(repo.db):
            assert repo.push("origin", "main").returncode == 0
            for path in record_paths(repo.spool):
                pid = read_record(path).confirmer_pid
                if pid and confirmer_alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    wait_until(lambda pid=pid: not confirmer_alive(pid))  # type: ignore[misc]
        pushes.append((sha, True))
    cli("status", cwd=repo.work, env=repo.env)  # the next reader takes the spool in
    expected, present, dup = count_facts(repo.db, pushes, outcomes=False)
    return Row("SIGKILL confirmer before append", rounds, expected, present, dup)


def stuck_lock(tmp: Path, rounds: int) -> Row:
    repo = fresh_repo(tmp, "lock")
    env = {**repo.env, "TRACKER_LOCK_TIMEOUT": "0.2"}
    pushes, codes = [], Counter[int]()
    for _ in range(rounds):
        sha = repo.commit()
        with lock_held(repo.db):
            codes[cli("push", "HEAD", "--no-monitor", cwd=repo.work, env=env).returncode] += 1
            assert repo.push("origin", "main").returncode == 0
        pushes.append((sha, True))
    wait_until(lambda: not record_paths(repo.spool), timeout=60)
    expected, present, dup = count_facts(repo.db, pushes, outcomes=False)
    note = f"`tracker push` exits {dict(codes)}"
    return Row("lock held by a stuck process", rounds, expected, present, dup, note)


def disk_full(tmp: Path, rounds: int) -> Row:
    repo = fresh_repo(tmp, "full")
    reader = sqlite3.connect(repo.db)
    reader.execute("SELECT count(*) FROM events").fetchone()
    pushes, codes, before = [], Counter[int](), 0
    with SQLiteLog(repo.db) as store:
        before = store.last_seq()
    for _ in range(rounds):
        sha = repo.commit()
        limit = limit_files(2048)
        done = cli("push", "HEAD", "--no-monitor", cwd=repo.work, env=repo.env, preexec_fn=limit)
        codes[done.returncode] += 1
        pushed = subprocess.run(
            ["git", "push", "origin", "main"], cwd=repo.work, env=repo.env,
            capture_output=True, timeout=60, preexec_fn=limit,
        )  # fmt: skip
        assert pushed.returncode == 0
        pushes.append((sha, True))
    wait_confirmers(repo)
    with SQLiteLog(repo.db) as store:
        unchanged = store.last_seq() == before
    reader.close()
    cli("status", cwd=repo.work, env=repo.env)
    expected, present, dup = count_facts(repo.db, pushes, outcomes=False)
    note = f"`tracker push` exits {dict(codes)}; log untouched while full: {unchanged}"
    return Row("disk full (RLIMIT_FSIZE 2 KiB)", rounds, expected, present, dup, note)


def corrupt_log(tmp: Path, rounds: int) -> Row:
    repo = fresh_repo(tmp, "corrupt")
    repo.db.write_bytes(b"garbage!" * 4096)
    for suffix in ("-wal", "-shm"):
        repo.db.with_name(repo.db.name + suffix).unlink(missing_ok=True)
    pushes, codes = [], Counter[int]()
    for _ in range(rounds):
        sha = repo.commit()
        codes[cli("status", cwd=repo.work, env=repo.env).returncode] += 1
        assert repo.push("origin", "main").returncode == 0
        pushes.append((sha, True))
    wait_confirmers(repo)
    repo.db.rename(repo.db.with_name("events.db.corrupt"))
    cli("status", cwd=repo.work, env=repo.env)
    expected, present, dup = count_facts(repo.db, pushes, outcomes=False)
    note = f"`tracker status` exits {dict(codes)}; recovered by moving the file aside"
    return Row("corrupt log file", rounds, expected, present, dup, note)


# -- monitors ---------------------------------------------------------------------------------


def sim_env(sim: SimulatedPlatform, db: Path, **extra: str) -> dict[str, str]:
    settings = {
        "TRACKER_POLL_POLICY": "stepped", "TRACKER_POLL_INITIAL": "0.2",
        "TRACKER_POLL_LONG": "0.2", "TRACKER_MAX_WAIT": "60",
    }  # fmt: skip
    return base_env(
        TRACKER_DB=str(db), DIGITALOCEAN_TOKEN=TOKEN, TRACKER_DO_APP_ID=sim.app_id,
        TRACKER_DO_API_URL=sim.base_url, **{**settings, **extra},
    )  # fmt: skip


def monitor_kills(tmp: Path, rounds: int) -> Row:
    """A detached monitor per deployment, SIGKILLed while a request hangs; `wait` resumes it."""
    db = tmp / "monitors" / "events.db"
    stale = 0
    shas = [f"{n + 1:x}".rjust(40, "c") for n in range(rounds)]
    with SimulatedPlatform(token=TOKEN) as sim:
        env = sim_env(sim, db, TRACKER_HTTP_TIMEOUT="20")
        for sha in shas:
            with SQLiteLog(db) as store:
                store.append(sha, PushRecorded(sha=sha, branch="main", source="api"))
            sim.add_deployment(sha, pending_build_s=0.3, build_s=1, deploy_s=1)
            sim.inject("slow", times=1, after=2, delay_s=30)
            cli("monitor", sha, "--detach", cwd=tmp, env=env)
            wait_until(lambda: sum(1 for r in sim.requests if r.fault == "slow") > shas.index(sha))
            pid = pids(db, sha)[0]
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda pid=pid: not monitor_alive(pid, HOST))  # type: ignore[misc]
            status = json.loads(cli("status", sha, "--json", cwd=tmp, env=env).stdout)
            stale += status["state"] == "stale"
            cli("wait", sha, "--timeout", "30", cwd=tmp, env=env)
            wait_until(lambda sha=sha: not monitor_alive(pids(db, sha)[-1], HOST))  # type: ignore[misc]
        calls = (
            f"API calls log/server {logged_calls(db)}/{sim.api_requests} (one in flight per kill)"
        )
    streams = types_by_stream(db)
    outcomes = [sum(1 for t in streams.get(sha, []) if t in OUTCOMES) for sha in shas]
    present = sum(min(n, 1) for n in outcomes)
    dup = sum(max(n - 1, 0) for n in outcomes)
    note = f"`status` said stale {stale}/{rounds}; {calls}"
    return Row("SIGKILL detached monitor mid-poll", rounds, rounds, present, dup, note)


def pids(db: Path, sha: str) -> list[int]:
    with SQLiteLog(db) as store:
        return [int(e.data["pid"]) for e in store.events(stream=sha) if e.type == "MonitorStarted"]


STORMS: list[tuple[str, int, dict[str, Any]]] = [
    ("429", 20, {"retry_after": 5}),
    ("429", 20, {"reset_in_s": 7}),
    ("5xx", 30, {"status": 503}),
    ("5xx", 30, {"status": 502}),
    ("malformed", 30, {}),
    ("wrong_shape", 30, {}),
    ("truncated", 30, {}),
    ("huge", 8, {"size_bytes": 5 * 1024 * 1024}),
    ("reset", 30, {}),
    ("slow", 6, {"delay_s": 1.0}),
]


def platform_storm(tmp: Path, kind: str, times: int, options: dict[str, Any], rounds: int) -> Row:
    """`rounds` deployments in simulated time, each meeting `times` faults of one kind."""
    clock = FakeClock()
    db = Path(tempfile.mkdtemp(prefix=f"storm-{kind}-", dir=tmp)) / "events.db"
    results: Counter[str] = Counter()
    injected = 0
    with SimulatedPlatform(clock=clock, token=TOKEN) as sim, SQLiteLog(db, clock=clock) as store:
        env = {
            "DIGITALOCEAN_TOKEN": TOKEN, "TRACKER_DO_APP_ID": sim.app_id,
            "TRACKER_DO_API_URL": sim.base_url, "TRACKER_HTTP_TIMEOUT": "0.3",
        }  # fmt: skip
        settings = load_settings(None, env=env)
        shas = [f"{n:040x}" for n in range(1, rounds + 1)]
        outcomes: list[Any] = ["active", "build_error", "deploy_error", "canceled"]
        for n, sha in enumerate(shas):
            sim.add_deployment(sha, build_s=60, deploy_s=60, outcome=outcomes[n % 4])
            sim.inject(kind, times=times, after=2, **options)  # type: ignore[arg-type]
            injected += times
            store.append(sha, PushRecorded(sha=sha, branch="main"), at=clock.now())
            sources = build_sources(settings, clock)
            try:
                monitor = Monitor(store, sha, sources, settings=settings, clock=clock)
                results[monitor.run()] += 1
            except Exception as exc:  # a crash is what this row is looking for
                results[f"crash {type(exc).__name__}"] += 1
            finally:
                for source in sources:
                    source.close()
            clock.advance(600)  # the next deployment on quiet ground
        calls = (logged_calls(db), sim.api_requests)
    streams = types_by_stream(db)
    per = [sum(1 for t in streams.get(sha, []) if t in OUTCOMES) for sha in shas]
    present, dup = sum(min(n, 1) for n in per), sum(max(n - 1, 0) for n in per)
    label = f"platform {kind}" + (f" {options}" if options else "")
    note = f"verdicts {dict(results)}; API calls log/server {calls[0]}/{calls[1]}"
    return Row(label, injected, rounds, present, dup, note)


def mysql_kills(rounds: int) -> Row | None:
    """The server KILLs the monitor's connection mid-query, `rounds` times, then says success."""
    try:
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    except Exception as exc:
        print(f"(MariaDB rows skipped: {type(exc).__name__})", file=sys.stderr)
        return None
    table = f"bench_faults_{os.getpid()}"
    sha = "d" * 40
    with admin.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, commitSha VARCHAR(40),"
            " status VARCHAR(32), createdAt DATETIME(3))"
        )
        cur.execute(f"INSERT INTO `{table}` VALUES (NULL, %s, 'building', NOW(3))", (sha,))
    clock = FakeClock()
    env = {
        "TRACKER_MYSQL_URL": "mysql://root@127.0.0.1:3306/test",
        "TRACKER_MYSQL_TABLE": table, "TRACKER_MAX_WAIT": "3600",
    }  # fmt: skip
    settings = load_settings(None, env=env)
    db = Path(tempfile.mkdtemp()) / "events.db"
    store = SQLiteLog(db, clock=clock)
    store.append(sha, PushRecorded(sha=sha, branch="main"), at=clock.now())
    locker = pymysql.connect(host="127.0.0.1", user="root", database="test", autocommit=True)
    result: dict[str, str] = {}
    kills = 0

    def run() -> None:
        sources = build_sources(settings, clock)
        result["state"] = Monitor(store, sha, sources, settings=settings, clock=clock).run()

    with locker.cursor() as lc:
        lc.execute(f"LOCK TABLES `{table}` WRITE")
        thread = threading.Thread(target=run)
        thread.start()
        for _ in range(rounds):
            victim = wait_until(lambda: waiting(admin, table), timeout=10)
            with admin.cursor() as cur:
                cur.execute("KILL CONNECTION %s", (victim,))
            kills += 1
            time.sleep(0.01)
        lc.execute(
            f"INSERT INTO `{table}` VALUES (NULL, %s, 'success', NOW(3) + INTERVAL 1 SECOND)",
            (sha,),
        )
        lc.execute("UNLOCK TABLES")
    thread.join(timeout=60)
    outcomes = [e.type for e in store.events(stream=sha) if e.type in OUTCOMES]
    with admin.cursor() as cur:
        cur.execute(f"DROP TABLE `{table}`")
    note = f"verdict {result.get('state')}"
    return Row(
        "MariaDB KILL mid-query", kills, 1, min(len(outcomes), 1), max(len(outcomes) - 1, 0), note
    )


def waiting(admin: Any, table: str) -> int | None:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            (f"%FROM `{table}`%",),
        )
        found = cur.fetchone()
    return int(found[0]) if found else None


# -- 200 pushes from 8 clones -----------------------------------------------------------------


def racing_clones(tmp: Path, total: int, clones: int) -> tuple[Row, dict[str, Any]]:
    """`clones` agents push `total` commits to main of one bare remote, pulling --rebase on a
    rejection; one shared log; a monitor per accepted push against the real-clock simulator."""
    db = tmp / "race-log" / "events.db"
    attempts: list[tuple[str, bool]] = []
    lock = threading.Lock()
    with SimulatedPlatform(token=TOKEN) as sim:
        first = make_repo(tmp, "race0")
        env = sim_env(sim, db, TRACKER_POLL_INITIAL="1", TRACKER_POLL_LONG="2",
                      TRACKER_POLL_SWITCH_AFTER="10", TRACKER_MAX_WAIT="300")  # fmt: skip
        env.update({k: v for k, v in first.env.items() if k.startswith("GIT_")})
        repos = [Repo(first.work, first.remote, env)]
        for n in range(1, clones):
            git(tmp, "clone", "-q", str(first.remote), str(tmp / f"race{n}"), env=env)
            repos.append(Repo(tmp / f"race{n}", first.remote, env))
        for repo in repos:
            install(repo.work, python=tracker_python())
        per_clone = total // clones
        started = time.monotonic()

        def agent(repo: Repo) -> None:
            for _ in range(per_clone):
                repo.commit(f"from {repo.work.name}")
                while True:
                    sha = repo.git("rev-parse", "HEAD").stdout.strip()
                    ok = repo.push("origin", "main").returncode == 0
                    with lock:
                        attempts.append((sha, ok))
                        if ok:
                            sim.add_deployment(
                                sha, pending_build_s=0.5, build_s=2, pending_deploy_s=0.2,
                                deploy_s=2,
                            )  # fmt: skip
                    if ok:
                        break
                    repo.git("pull", "-q", "--rebase", "origin", "main")

        threads = [threading.Thread(target=agent, args=(r,)) for r in repos]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        pushing_s = time.monotonic() - started
        accepted = [sha for sha, ok in attempts if ok]

        def decided() -> bool:
            with SQLiteLog(db) as store:
                return all((row := store.deployment(s)) and row.terminal for s, _ in attempts)

        wait_until(decided, timeout=900)
        wait_until(lambda: not record_paths(db.parent / "spool"), timeout=120)
        with SQLiteLog(db) as store:
            monitors = [int(e.data["pid"]) for e in store.events() if e.type == "MonitorStarted"]
        wait_until(lambda: not any(monitor_alive(p, HOST) for p in monitors), timeout=300)
        total_s = time.monotonic() - started
        requests = sim.requests
        times = sorted(r.at for r in requests if r.api)
        peak = max((sum(1 for t in times if s <= t < s + 60) for s in times), default=0)
        refused = sim.over_limit
        calls = (logged_calls(db), sim.api_requests)
    with SQLiteLog(db) as store:
        rows = [store.deployment(s) for s in accepted]
        states = Counter(r.state if r else "missing" for r in rows)
        went_live = Counter(
            (r.state, r.superseded_went_live) for r in rows if r and r.state == "superseded"
        )
    expected, present, dup = count_facts(db, attempts, outcomes=True)
    rejected = len(attempts) - len(accepted)
    wrong = sum(1 for r in rows if not r or exit_code_of(r.state, r.superseded_went_live) != 0)
    note = (
        f"{len(accepted)} accepted, {rejected} rejected; states {dict(states)};"
        f" wrong verdicts {wrong}; API calls log/server {calls[0]}/{calls[1]}"
    )
    figures = {
        "accepted": len(accepted), "rejected": rejected, "states": dict(states),
        "superseded_went_live": {str(k[1]): v for k, v in went_live.items()},
        "peak_api_requests_per_60s": peak, "answered_429": refused,
        "pushing_s": round(pushing_s, 1), "until_all_decided_s": round(total_s, 1),
        "api_calls_log": calls[0], "api_calls_server": calls[1], "wrong_verdicts": wrong,
    }  # fmt: skip
    label = f"{total} pushes from {clones} clones"
    return Row(label, len(attempts), expected, present, dup, note), figures


# -- the table --------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("fault", "times injected", "events expected", "present", "lost", "duplicated", "notes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.fault, r.injected, r.expected, r.present, r.lost, r.duplicated, r.note)
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--clones", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated row groups to run")
    args = parser.parse_args()
    groups = set(filter(None, args.only.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    rows: list[Row] = []
    figures: dict[str, Any] = {}

    def want(name: str) -> bool:
        return not groups or name in groups

    started = time.monotonic()
    if want("log"):
        rows += [
            writer_kills(tmp, args.rounds),
            confirmer_kills(tmp, args.rounds),
            stuck_lock(tmp, args.rounds),
            disk_full(tmp, args.rounds),
            corrupt_log(tmp, args.rounds),
        ]
    if want("monitor"):
        rows.append(monitor_kills(tmp, args.rounds))
    if want("platform"):
        rows += [platform_storm(tmp, k, t, o, args.rounds) for k, t, o in STORMS]
    if want("mysql"):
        found = mysql_kills(args.rounds)
        rows += [found] if found else []
    if want("race"):
        row, figures = racing_clones(tmp, args.pushes, args.clones)
        rows.append(row)
    print(table(rows))
    if figures:
        print("\nrace:", json.dumps(figures, sort_keys=True))
    print(f"\n{time.monotonic() - started:.0f} s in all; temporary files in {tmp}")
    bad = any(r.lost or r.duplicated for r in rows) or figures.get("wrong_verdicts")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
