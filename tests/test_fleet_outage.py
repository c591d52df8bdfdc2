"""The fleet when the shared log is away (SPEC §10; design/fleet.md §3, scenarios (e), (f), (g)).

End to end: two clones of one bare remote as two machines, each with the installed hook, one
`TRACKER_LOG_URL` and one simulated App Platform. Machine A reaches MySQL only through a test
proxy (tests/support/delay_proxy.py `--who`: it says which process and session each connection
came from); machine B straight. A partition is the proxy holding every connection (a frozen peer:
connections are accepted and nothing answers); an outage is the session's private server stopped.
Either way: the hook opens no connection, `status` answers from the cache within the sync
deadline and says the shared log is unreachable, the watcher polls on (degraded) and its verdict
shows on A at once; afterwards the outbox drains, every event is stored once, positions are
contiguous and B sees the verdict. Then the connection `KILL`ed again and again while a machine
appends through its outbox, and the reads of a fresh machine: `events` pulls once as `status`
does, and a read never creates a log directory that a setting names and that does not exist.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.gitrepo import Repo, base_env, git, make_repo, tracker_python, wait_until
from tests.support.mariadb_private import PrivateMariaDB
from tracker.clock import FakeClock
from tracker.events import DeploymentPolled, DeploymentSucceeded, PushRecorded
from tracker.log.base import Append
from tracker.log.fleet import FORWARD_BACKOFF_S, FleetLog, SyncState, machine_id
from tracker.log.mysql import MySQLLog
from tracker.log.rows import MEASURE_COLUMNS
from tracker.projections import StoredEvent
from tracker.push.install import install
from tracker.sim.server import SimulatedPlatform

pytestmark = pytest.mark.mysql

TOKEN = "sim-token"
FAST = {"pending_build_s": 0.2, "build_s": 0.3, "pending_deploy_s": 0.1, "deploy_s": 0.3}
# Long enough for the watcher to try the shared log on its appends, again and again: its first
# forwards back off; later ones each wait out the connection's timeout.
SLOW = {"pending_build_s": 0.5, "build_s": 25.0, "pending_deploy_s": 0.5, "deploy_s": 5.0}
# A watcher's polls are never held up longer than this by the shared log being away (one try
# at most waits out the shared log's timeout, 15 s; its poll interval is 0.2 s).
MAX_POLL_GAP_S = 60.0
DEADLINE_S = 1.0  # TRACKER_SYNC_DEADLINE of both machines
# Above the deadline: an interpreter starting on a loaded machine. Below what a pull that is not
# bounded would take through a partition: the shared log's own timeout, 10 s.
MARGIN_S = 5.0
PROXY = Path(__file__).resolve().parent / "support" / "delay_proxy.py"
ROOT = Path(__file__).resolve().parents[1]
X = "d" * 40


class Proxy:
    """tests/support/delay_proxy.py as a process: `partition`, `heal`, and who connected."""

    def __init__(self, target: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY), str(target), "0", "--who"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first and first[0] == "ready", first
        self.port = int(first[1])
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def clients(self) -> list[tuple[int, int]]:
        """(pid, session) of every connection so far, in order."""
        found = [line.split() for line in list(self.lines) if line.startswith("conn ")]
        return [(int(pid), int(sid)) for _, pid, sid in found]

    def _switch(self, sig: signal.Signals, said: str) -> None:
        before = self.lines.count(said)
        self.proc.send_signal(sig)
        wait_until(lambda: self.lines.count(said) > before, timeout=30)

    def partition(self) -> None:
        self._switch(signal.SIGUSR1, "partitioned")

    def heal(self) -> None:
        self._switch(signal.SIGUSR2, "healed")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def proxy(mariadb: PrivateMariaDB) -> Iterator[Proxy]:
    found = Proxy(mariadb.port)
    yield found
    found.close()


@pytest.fixture
def sim() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as platform:
        yield platform


def machine_env(sim: SimulatedPlatform, log_url: str, name: str) -> dict[str, str]:
    return base_env(
        DIGITALOCEAN_TOKEN=TOKEN,
        TRACKER_DO_APP_ID=sim.app_id,
        TRACKER_DO_API_URL=sim.base_url,
        TRACKER_POLL_POLICY="fixed",
        TRACKER_POLL_INTERVAL="0.2",
        TRACKER_MAX_WAIT="120",
        TRACKER_LOG_URL=log_url,
        TRACKER_MACHINE_ID=name,
        TRACKER_SYNC_DEADLINE=f"{DEADLINE_S:g}",
    )


def machines(tmp_path: Path, sim: SimulatedPlatform, url: str, proxied: str) -> tuple[Repo, Repo]:
    """Machine A (the shared log through the proxy) and B (straight), clones of one remote,
    each with the installed hook."""
    a = make_repo(tmp_path, "a")
    a.env = machine_env(sim, proxied, "a")
    git(tmp_path, "clone", "-q", str(a.remote), str(tmp_path / "b"), env=a.env)
    b = Repo(tmp_path / "b", a.remote, machine_env(sim, url, "b"))
    for repo in (a, b):
        repo.git("config", "user.name", "Test Pusher")
        repo.git("config", "user.email", "pusher@example.com")
        install(repo.work, python=tracker_python())
    return a, b


def tracker(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=repo.work, env=repo.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def status(repo: Repo, ref: str, *flags: str) -> tuple[dict[str, object], float]:
    """`tracker status REF --json` on the machine, and how long it took."""
    started = time.monotonic()
    done = tracker(repo, "status", ref, "--json", *flags)
    took = time.monotonic() - started
    found: dict[str, object] = json.loads(done.stdout)
    assert done.returncode == found["exit_code"], done.stderr
    return found, took


def shared_of(st: dict[str, object]) -> dict[str, object]:
    found = st["shared_log"]
    assert isinstance(found, dict)
    return found


def processes_of(repo: Repo) -> list[int]:
    """The machine's confirmers and monitors still running (their spool file, or TRACKER_DB)."""
    mine = str(repo.log_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mine in (entry / "cmdline").read_bytes() or mine in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def dump(log: FleetLog) -> list[tuple[object, ...]]:
    """Every projection row of the cache, for comparing machines: by their keys, without the
    measures' surrogate `id` (its order is the insertion order, which a set decides)."""
    conn = sqlite3.connect(log.cache.path)
    try:
        found: list[tuple[object, ...]] = []
        for table, columns in (
            ("deployments", "*"),
            ("source_calls", "*"),
            ("deployment_measures", MEASURE_COLUMNS),
        ):
            found += [
                (table, *r) for r in conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2")
            ]
        return found
    finally:
        conn.close()


def shared_events(url: str) -> list[StoredEvent]:
    log = MySQLLog.from_url(url, env={})
    try:
        return log.events()
    finally:
        log.close()


def assert_each_once(events: list[StoredEvent]) -> None:
    """Positions 1..n; each key and each (stream, version) once; versions 1..k in each stream."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    keys = Counter(e.key for e in events)
    assert None not in keys and max(keys.values()) == 1, keys.most_common(3)
    pairs = Counter((e.stream, e.version) for e in events)
    assert max(pairs.values()) == 1, pairs.most_common(3)
    for stream in {e.stream for e in events}:
        versions = [e.version for e in events if e.stream == stream]
        assert versions == list(range(1, len(versions) + 1))


def push_in_own_session(repo: Repo) -> tuple[subprocess.CompletedProcess[str], int, float]:
    """`git push origin main` in a session of its own (its id is the pid): what ran, the
    session, and how long it took. The hook's processes stay in that session; the confirmer
    it starts leaves it (setsid)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["git", "push", "origin", "main"], cwd=repo.work, env=repo.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid, took


def test_the_proxy_tells_the_process_and_session_of_each_connection(proxy: Proxy) -> None:
    """What lets the scenarios below say the hook opened no connection: a process of another
    session that connects is named, with its session, while it waits for the server."""
    client = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys; socket.create_connection(('127.0.0.1',"
         " int(sys.argv[1]))).recv(1)", str(proxy.port)],
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (client.pid, client.pid) in proxy.clients(), timeout=60)
    finally:
        client.kill()
        client.wait(timeout=30)


@pytest.mark.parametrize("how", ["partition", "outage"])
def test_with_the_shared_log_away_pushes_and_verdicts_go_on_and_reach_it_once_after(
    how: str,
    tmp_path: Path,
    url: str,
    mariadb: PrivateMariaDB,
    proxy: Proxy,
    sim: SimulatedPlatform,
) -> None:
    proxied = url.replace(f":{mariadb.port}/", f":{proxy.port}/")
    a, b = machines(tmp_path, sim, url, proxied)
    cut: Callable[[], None] = proxy.partition if how == "partition" else mariadb.stop
    restore: Callable[[], None] = proxy.heal if how == "partition" else mariadb.start

    # the link up: A's push goes live, its events in the shared log
    first = a.commit("first")
    assert a.push("origin", "main").returncode == 0
    sim.add_deployment(first, **FAST)  # type: ignore[arg-type]
    done = tracker(a, "wait", first, "--timeout", "90", "--json")
    assert json.loads(done.stdout)["state"] == "succeeded", done.stdout
    wait_until(lambda: not processes_of(a), timeout=120)
    assert shared_of(status(a, first)[0])["outbox"] == 0
    # B records a push A has not pulled
    other = b.commit("b's own, never pushed")
    done = tracker(b, "push", other, "--no-monitor")
    assert done.returncode == 0, done.stderr
    clients, requests = len(proxy.clients()), len(sim.requests)

    cut()
    try:
        second = a.commit("second")
        pushed, session, took = push_in_own_session(a)
        assert pushed.returncode == 0 and a.remote_head() == second, pushed.stderr
        assert "tracker:" not in pushed.stderr  # not even a warning
        assert took < MARGIN_S  # generous: the budget is bench/bench_hook.py's
        sim.add_deployment(second, **SLOW)  # type: ignore[arg-type]
        # the confirmer (a session of its own) tries the shared log: the proxy tells who connects
        wait_until(
            lambda: any(pid and s != session for pid, s in proxy.clients()[clients:]), timeout=60
        )

        # another machine's push, not in A's cache: 3 here, one bounded pull, and it says why
        st, took = status(a, other)
        assert st["state"] == "not_found" and st["exit_code"] == 3
        assert shared_of(st)["unreachable"] and shared_of(st)["pulled"] is False
        assert took < DEADLINE_S + MARGIN_S
        text = tracker(a, "status", other)
        assert text.returncode == 3 and "the shared log is unreachable: " in text.stdout
        assert "as of " in text.stdout
        st, _ = status(a, first)  # a verdict in the cache: answered, no pull
        assert st["state"] == "succeeded" and shared_of(st)["pulled"] is False

        # the watcher polls the simulator on and its verdict shows on A at once (the outbox)
        def live() -> dict[str, object] | None:
            found, _ = status(a, second, "--offline")
            return found if found["state"] == "succeeded" else None

        final = wait_until(live, timeout=180)
        assert isinstance(final, dict) and shared_of(final)["outbox"]
        assert any(r.api for r in sim.requests[requests:])
        if how == "partition":  # the server is up: nothing of A's reached it
            assert [e for e in shared_events(url) if e.stream == second] == []
        with FleetLog.open(a.db, proxied, env=a.env) as log:
            outbox = log.outbox_events()
        waiting = {e.key for e in outbox}
        polls = sorted(e.at or 0.0 for e in outbox if e.event.TYPE == "DeploymentPolled")
        assert len(polls) >= 10  # the watcher polled on, degraded ...
        gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
        assert max(gaps) < MAX_POLL_GAP_S, gaps  # ... and on time, give or take one try
    finally:
        if how == "outage" or proxy.lines.count("partitioned") > proxy.lines.count("healed"):
            restore()

    wait_until(lambda: not processes_of(a), timeout=180)  # the watcher is done
    done = tracker(a, "sync")
    assert done.returncode == 0 and "outbox 0" in done.stdout, (done.stdout, done.stderr)
    found = shared_events(url)
    assert_each_once(found)
    assert waiting <= {e.key for e in found}
    types = [e.type for e in found if e.stream == second]
    assert types[0] == "PushRecorded" and types.count("DeploymentSucceeded") == 1
    st, _ = status(b, second)  # B pulls: A's verdict
    assert st["state"] == "succeeded" and shared_of(st)["pulled"] is True
    st, _ = status(a, other)  # and A sees B's push (followed by the app's one watcher since)
    assert st["state"] != "not_found" and shared_of(st)["unreachable"] is None
    assert all(s != session for _, s in proxy.clients()), "the hook opened a connection"
    with (
        FleetLog.open(a.db, proxied, env=a.env) as log_a,
        FleetLog.open(b.db, url, env=b.env) as log_b,
    ):
        for log in (log_a, log_b):
            assert log.pull() is not None and log.sync_state().outbox == 0
            assert [(e.seq, e.key) for e in log.events()] == [(e.seq, e.key) for e in found]
            assert log.rebuild().clean
        assert dump(log_a) == dump(log_b)


# -- the shared log's connection KILLed while a machine appends through its outbox --------------


def connections(admin: pymysql.connections.Connection, database: str) -> set[int]:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT id FROM information_schema.processlist"
            " WHERE db = %s AND id <> CONNECTION_ID() AND command <> 'Killed'",
            (database,),
        )
        return {int(r[0]) for r in cur.fetchall()}


def kill(admin: pymysql.connections.Connection, ids: set[int]) -> int:
    landed = 0
    with admin.cursor() as cur:
        for thread in ids:
            try:
                cur.execute(f"KILL CONNECTION {int(thread)}")
                landed += 1
            except pymysql.err.OperationalError:  # gone meanwhile
                pass
    return landed


def test_connections_killed_again_and_again_while_a_machine_appends_lose_and_double_nothing(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, tmp_path: Path
) -> None:
    """Machine A appends (to its outbox, forwarded and pulled at once) while B pulls; every
    connection to the shared log is killed between, during and after their round trips."""
    rounds = 200
    clock = FakeClock(start=1_800_000_000.0)

    def open_machine(name: str) -> FleetLog:
        return FleetLog.open(
            tmp_path / name / "events.db", url, clock=clock, env={"TRACKER_MACHINE_ID": name},
            retry_for=0.5, io_timeout=5.0, lock_timeout=2.0,
        )  # fmt: skip

    a, b = open_machine("a"), open_machine("b")
    a.append(X, PushRecorded(sha=X, branch="main"), key="push:x")
    go: queue.Queue[int] = queue.Queue()  # how many appends A may make next
    went: queue.Queue[BaseException | None] = queue.Queue()  # after each go: done, or why not

    def appender() -> None:
        n = 0
        while n < rounds:
            try:
                for _ in range(go.get(timeout=120)):
                    # keyed and keyless (the outbox keys it): each known by its latency, n
                    key = f"k:{n}" if n % 3 else None
                    a.append(
                        X, DeploymentPolled(source="digitalocean", ok=True, latency_ms=n), key=key
                    )
                    n += 1
                went.put(None)
            except BaseException as exc:  # pragma: no cover (reported below)
                went.put(exc)
                return

    admin = mariadb.admin()
    worker = threading.Thread(target=appender)
    worker.start()
    kills, given, failed, rng = 0, 0, 0, random.Random(15)
    try:
        while given < rounds:
            step = min(rng.randint(1, 3), rounds - given)
            go.put(step)  # A starts on its next appends, and meanwhile ...
            if rng.random() < 0.3:
                failed += b.pull() is None  # ... B pulls, and ...
            kills += kill(admin, connections(admin, fresh_database))  # ... both are killed
            given += step
            assert went.get(timeout=120) is None
            failed += a.sync_state().error is not None
            clock.advance(FORWARD_BACKOFF_S + 1)  # a failed forward backs off: not for long
    finally:
        worker.join(timeout=120)
        admin.close()
    assert kills >= 50, f"only {kills} kills landed: the test proved little"
    assert a.shared.retries["lost"] >= 20, a.shared.retries
    sent = a.forward()  # what a failed forward left in the outbox: sent now, once
    assert sent is not None and a.sync_state().outbox == 0
    found = shared_events(url)
    assert_each_once(found)
    assert len(found) == rounds + 1  # none lost, none doubled, keyed or not
    assert sorted(e.data["latency_ms"] for e in found[1:]) == list(range(rounds))
    keys = {e.key for e in found}
    assert {f"k:{n}" for n in range(rounds) if n % 3} <= keys
    assert sum(1 for k in keys if k and k.startswith("a:")) == len(range(0, rounds, 3))
    for log in (a, b):
        assert log.pull() is not None
        assert [(e.seq, e.key) for e in log.events()] == [(e.seq, e.key) for e in found]
        assert log.rebuild().clean
        row = log.deployment(X)
        assert row is not None and row.polls == rounds
    assert dump(a) == dump(b)
    a.close()
    b.close()


def test_a_forward_killed_inside_its_transaction_again_and_again_is_stored_once(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, tmp_path: Path
) -> None:
    """The forward's batch waits for the head (held by another client) inside its transaction
    and its connection is killed there, five times: the outbox's events are stored once."""
    a = FleetLog.open(
        tmp_path / "a" / "events.db", url, env={"TRACKER_MACHINE_ID": "a"},
        retry_for=60.0, io_timeout=30.0, lock_timeout=20.0,
    )  # fmt: skip
    a.append(X, PushRecorded(sha=X, branch="main"), key="push:x")
    holder, admin = mariadb.admin(fresh_database), mariadb.admin()
    results: list[list[StoredEvent]] = []
    with holder.cursor() as cur:
        cur.execute("START TRANSACTION")
        cur.execute("SELECT last_seq FROM log_head WHERE id = 1 FOR UPDATE")
    batch = [
        Append(X, DeploymentPolled(source="digitalocean", ok=True, latency_ms=1.0)),
        Append(X, DeploymentSucceeded(deployment_id="d1"), "ok:x"),
    ]
    appender = threading.Thread(target=lambda: results.append(a.append_all(batch)))
    appender.start()
    killed: set[int] = set()
    try:
        for _ in range(5):
            waiting = wait_until(
                lambda: {
                    c
                    for c in connections(admin, fresh_database) - killed - {holder.thread_id()}
                    if waits_on_head(admin, c)
                },
                timeout=60,
            )
            assert isinstance(waiting, set)
            kill(admin, waiting)
            killed |= waiting
    finally:
        holder.rollback()
        holder.close()
        appender.join(timeout=120)
        admin.close()
    assert not appender.is_alive()
    (written,) = results
    assert [e.type for e in written] == ["DeploymentPolled", "DeploymentSucceeded"]
    assert [e.seq for e in written] == [2, 3]  # as the shared log stored them
    assert a.sync_state().outbox == 0 and a.forward() == []
    found = shared_events(url)
    assert_each_once(found)
    assert [e.type for e in found] == ["PushRecorded", "DeploymentPolled", "DeploymentSucceeded"]
    assert [(e.seq, e.key) for e in a.events()] == [(e.seq, e.key) for e in found]
    row = a.deployment(X)
    assert row is not None and row.state == "succeeded" and a.rebuild().clean
    a.close()


def waits_on_head(admin: pymysql.connections.Connection, thread: int) -> bool:
    with admin.cursor() as cur:
        cur.execute("SELECT info FROM information_schema.processlist WHERE id = %s", (thread,))
        found = cur.fetchone()
    return bool(found and found[0] and "FROM log_head WHERE id = 1 FOR UPDATE" in found[0])


# -- the reads of a machine: `events` pulls once; a missing directory is not created ------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], env=env, capture_output=True, text=True,
        timeout=120, cwd="/",
    )  # fmt: skip


def test_events_pulls_once_as_status_does_and_says_when_it_cannot(
    mariadb: PrivateMariaDB, url: str, tmp_path: Path
) -> None:
    a = FleetLog.open(tmp_path / "a" / "events.db", url, env={"TRACKER_MACHINE_ID": "a"})
    a.append(X, PushRecorded(sha=X, branch="main"), key="push:x")
    b_db = tmp_path / "b" / "events.db"
    b_db.parent.mkdir()
    env = cli_env(TRACKER_LOG_URL=url, TRACKER_MACHINE_ID="b", TRACKER_SYNC_DEADLINE="1")

    def types(*flags: str) -> tuple[list[str], str]:
        done = run_cli("--db", str(b_db), "events", "--json", *flags, env=env)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["type"] for line in done.stdout.splitlines()], done.stderr

    assert types() == (["PushRecorded"], "")  # another machine's push: pulled
    a.append(X, DeploymentSucceeded(deployment_id="d1"), key="ok:x")
    assert types("--offline") == (["PushRecorded"], "")  # the cache alone
    assert types(X)[0] == ["PushRecorded", "DeploymentSucceeded"]
    a.close()
    mariadb.stop()
    try:
        found, said = types()  # from the cache, and it says as of when and why
        assert found == ["PushRecorded", "DeploymentSucceeded"]
        assert said.startswith("tracker: as of ") and "the shared log is unreachable" in said
    finally:
        mariadb.start()


@pytest.mark.parametrize("fleet", [False, True], ids=["single", "fleet"])
def test_a_read_makes_no_log_below_a_missing_directory(
    fleet: bool, url: str, tmp_path: Path
) -> None:
    """`TRACKER_DB` below a directory that does not exist (a mistyped path): every read
    answers (3, nothing recorded, as a single machine does) and makes nothing, in fleet mode
    too; below a file, the log is unreadable (74) in both modes."""
    missing = tmp_path / "typo" / "tracker"
    env = cli_env(TRACKER_DB=str(missing / "events.db"), TRACKER_SYNC_DEADLINE="1")
    if fleet:
        env["TRACKER_LOG_URL"] = url
    for args, code in (
        (["status", X, "--json"], 3),
        (["status", X, "--offline", "--json"], 3),
        (["events", "--json"], 0),
        (["events", X, "--json"], 0),
    ):
        if not fleet and "--offline" in args:
            continue
        done = run_cli(*args, env=env)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        if args[0] == "status":
            found = json.loads(done.stdout)
            assert found["reason"]["code"] == "no_log"
            assert found["shared_log"] is None or found["shared_log"]["pulled"] is False
        else:
            assert done.stdout == ""
        assert not (tmp_path / "typo").exists(), args
    below_a_file = tmp_path / "a-file"
    below_a_file.write_text("")
    env["TRACKER_DB"] = str(below_a_file / "events.db")
    done = run_cli("status", X, "--json", env=env)
    assert done.returncode == 74 and "internal error" not in done.stderr, done.stderr


def test_a_new_machine_pulls_into_a_log_directory_it_makes_in_an_existing_one(
    url: str, tmp_path: Path
) -> None:
    """A fresh clone (no `.git/tracker` yet) and a new `--db DIR/events.db` (DIR missing, its
    parent there) see another machine's push at once: the pull makes the cache."""
    a = FleetLog.open(tmp_path / "a" / "events.db", url, env={"TRACKER_MACHINE_ID": "a"})
    try:
        a.append(X, PushRecorded(sha=X, branch="main"), key="push:x")
    finally:
        a.close()
    fresh = make_repo(tmp_path, "fresh")
    assert not fresh.log_dir.exists()
    env = dict(fresh.env, TRACKER_LOG_URL=url, TRACKER_SYNC_DEADLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "status", X, "--json"], cwd=fresh.work, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["shared_log"]["pulled"] is True
    assert fresh.db.exists() and (fresh.log_dir / "events.db.machine-id").exists()
    new = tmp_path / "new" / "events.db"
    env = cli_env(TRACKER_LOG_URL=url, TRACKER_SYNC_DEADLINE="1")
    done = run_cli("--db", str(new), "events", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["type"] == "PushRecorded"
    assert new.exists()


def test_the_machine_id_is_kept_by_the_first_write_not_by_opening_or_asking(
    mariadb: PrivateMariaDB, fresh_database: str, url: str, tmp_path: Path
) -> None:
    path = tmp_path / "m" / "tracker" / "events.db"
    log = FleetLog.open(path, url, env={})
    try:
        assert log.sync_state() == SyncState(None, None, 0)
        assert log.shared_report(pulled=False)["outbox"] == 0
        assert not (tmp_path / "m").exists()  # opened and asked: nothing made
        made = log.machine
        stored = log.append(X, PushRecorded(sha=X, branch="main"))  # keyless: the outbox keys it
        assert stored is not None and stored.key is not None and stored.key.startswith(made + ":")
        assert (path.parent / "events.db.machine-id").read_text().strip() == made == log.machine
    finally:
        log.close()
    assert machine_id(path, {}) == made  # every later process of the machine: the same id
    with mariadb.admin(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT origin FROM events")
        assert cur.fetchall() == ((made,),)


def test_forwards_that_keep_failing_back_off_longer_each_time_until_one_works(
    mariadb: PrivateMariaDB, url: str, tmp_path: Path
) -> None:
    """With the shared log away an append only outboxes for 5 s after a failed forward, then
    10, 20, 40 and at most 60 s (a watcher's polls are held up by one try a minute at most);
    a forward that works starts again from 5 s."""
    clock = FakeClock(start=1_800_000_000.0)
    a = FleetLog.open(
        tmp_path / "a" / "events.db", url, clock=clock, env={"TRACKER_MACHINE_ID": "a"},
        retry_for=0.2, io_timeout=2.0, lock_timeout=2.0,
    )  # fmt: skip
    a.append(X, PushRecorded(sha=X, branch="main"), key="push:x")

    def tried_at(seconds: list[float]) -> list[float]:
        """Append every `seconds` (simulated): the times (since the first) it tried to forward."""
        tried, start = [], clock.now()
        for step in seconds:
            clock.advance(step)
            before = a.shared.retries["lost"]
            a.append(X, DeploymentPolled(source="digitalocean", ok=True))
            if a.shared.retries["lost"] > before:
                tried.append(clock.now() - start)
        return tried

    mariadb.stop()
    try:
        assert tried_at([0.0] + [1.0] * 200) == [0.0, 5.0, 15.0, 35.0, 75.0, 135.0, 195.0]
    finally:
        mariadb.start()
    clock.advance(60.0)
    assert a.append(X, DeploymentPolled(source="digitalocean", ok=True)) is not None
    assert a.sync_state().outbox == 0 and a.sync_state().error is None  # drained at once
    mariadb.stop()
    try:
        assert tried_at([0.0] + [1.0] * 6) == [0.0, 5.0]  # 5 s again
    finally:
        mariadb.start()
    a.close()
