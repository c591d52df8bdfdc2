"""Secrets stay secret (SPEC §8): not in process arguments, the log, its files, or any output.

A real detached monitor runs against the simulated platform (real clock, short phases, fast
polls) and the real MariaDB with a user of its own, the token and the password only in its
environment; then every file under the log directory and the output of the read commands are
searched for both. Remote URLs lose their credentials, by the API and through a real hook push.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import base_env, make_repo, set_hook, tracker_python, wait_until
from tests.support.hostile import Listener, listener
from tests.support.mariadb import admin_connection
from tracker.api import Tracker
from tracker.config import load_settings
from tracker.log.sqlite import SQLiteLog
from tracker.push.install import install
from tracker.push.spool import record_paths
from tracker.sim.server import SimulatedPlatform

TOKEN = "dop_v1_s3cr3tT0k3n9f2b7c41e8d06a5"
PASSWORD = "Pw-s3cr3t-Db-4be1c9d7"
WRONG_TOKEN = "dop_v1_wr0ngT0k3n1c8e5d2f9a7b34"
SECRETS = (TOKEN.encode(), PASSWORD.encode(), WRONG_TOKEN.encode())
CREDENTIAL_URL = f"https://deployer:{TOKEN}@git.example.com/acme/app.git"
STRIPPED_URL = "https://git.example.com/acme/app.git"


def leaks(blob: bytes | str) -> list[bytes]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [s for s in SECRETS if s in data]


def cli(
    db: Path, *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m tracker --db DB ARGS` with the secrets only in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", "--db", str(db), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, umask=0o022,
    )  # fmt: skip


@pytest.fixture
def platform() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as sim:
        yield sim


def do_env(platform: SimulatedPlatform, db: Path, token: str = TOKEN, **extra: str) -> dict:
    return base_env(
        DIGITALOCEAN_TOKEN=token,
        TRACKER_DO_APP_ID=platform.app_id,
        TRACKER_DO_API_URL=platform.base_url,
        TRACKER_DB=str(db),
        TRACKER_HTTP_TIMEOUT="2",
        TRACKER_POLL_POLICY="stepped",
        TRACKER_POLL_INITIAL="0.2",
        TRACKER_POLL_SWITCH_AFTER="2",
        TRACKER_POLL_LONG="0.3",
        TRACKER_MAX_WAIT="30",
        **extra,
    )


def record(db: Path, sha: str) -> None:
    with Tracker(db, settings=load_settings(None, env={})) as tracker:
        tracker.record_push(sha, branch="main", remote="origin", remote_url=CREDENTIAL_URL)


# -- MariaDB: a user of our own with a distinctive password ----------------------------------


@pytest.fixture
def mysql_user() -> Iterator[tuple[str, str]]:
    """(user, table): a MariaDB user with PASSWORD allowed to read one empty deployments table."""
    admin = admin_connection()
    suffix = uuid.uuid4().hex[:10]
    user, table = f"trk_sec_{suffix}", f"deployments_sec_{suffix}"
    hosts = ("localhost", "127.0.0.1", "%")
    with admin.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY, commitSha VARCHAR(40),"
            " status VARCHAR(32), createdAt DATETIME(3))"
        )
        for host in hosts:
            cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, PASSWORD))
            cur.execute(f"GRANT SELECT ON `test`.`{table}` TO %s@%s", (user, host))
    try:
        yield user, table
    finally:
        with admin.cursor() as cur:
            for host in hosts:
                cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
        admin.close()


def watch_cmdline(pid: int, timeout: float = 30.0) -> list[bytes]:
    """Read /proc/PID/cmdline until the process is gone (or a zombie); every reading."""
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            break
        if not line:
            break  # a zombie has no arguments left
        seen.append(line)
        time.sleep(0.02)
    return seen


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.mysql
def test_a_detached_monitor_keeps_the_secrets_out_of_everything(
    tmp_path: Path, platform: SimulatedPlatform, mysql_user: tuple[str, str]
) -> None:
    user, table = mysql_user
    log_dir = tmp_path / "log"
    db = log_dir / "events.db"
    sha = uuid.uuid4().hex + "abcdef01"
    env = do_env(
        platform,
        db,
        TRACKER_MYSQL_URL=f"mysql://{user}:{PASSWORD}@127.0.0.1:3306/test",
        TRACKER_MYSQL_TABLE=table,
    )
    platform.add_deployment(
        sha, appear_after_s=0.5, pending_build_s=0.3, build_s=2.0, outcome="build_error"
    )
    platform.inject("5xx", times=1, after=2, status=503)
    record(db, sha)
    with SQLiteLog(db) as keeper:  # an open reader keeps the WAL file (and its frames) on disk
        keeper.deployment(sha)
        _run_and_check(tmp_path, db, sha, env, platform)


def _run_and_check(
    tmp_path: Path, db: Path, sha: str, env: dict[str, str], platform: SimulatedPlatform
) -> None:
    log_dir = db.parent
    started = cli(db, "monitor", sha, "--detach", env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.rsplit("pid ", 1)[1].split(")")[0])
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert TOKEN.encode() in environ and PASSWORD.encode() in environ  # the only way in
    readings = watch_cmdline(pid)
    assert readings, "the monitor was gone before its arguments could be read"
    assert b"monitor" in readings[0] and sha.encode() in readings[0]
    assert not [r for r in readings if leaks(r)]

    wait_until(lambda: _state(db, sha) == "failed", timeout=30)
    wait_until(lambda: not watch_cmdline(pid, timeout=0.1), timeout=10)
    with SQLiteLog(db) as store:
        started_events = [e for e in store.events(stream=sha) if e.type == "MonitorStarted"]
        polls = [e.data for e in store.events(stream=sha) if e.type == "DeploymentPolled"]
        row = store.deployment(sha)
    assert started_events[0].data["pid"] == pid
    assert {p["source"] for p in polls} == {"mysql", "digitalocean"}
    assert all(p["ok"] for p in polls if p["source"] == "mysql")  # the password let us in
    assert any(not p["ok"] for p in polls)  # the 503 went through the error path
    assert row is not None and row.log_tail and row.remote_url == STRIPPED_URL

    for args in (
        ("status", sha),
        ("status", sha, "--json"),
        ("events", sha),
        ("events", "--json"),
        ("stats",),
        ("stats", "--json"),
        ("doctor",),
        ("doctor", "--json"),
    ):
        done = cli(db, *args, env=env, cwd=tmp_path)
        assert done.stdout, (args, done.stderr)
        assert not leaks(done.stdout + done.stderr), args
        if args == ("status", sha, "--json"):
            assert done.returncode == 1 and '"failed"' in done.stdout

    monitor_log = log_dir / "monitor.log"
    assert "verdict" in monitor_log.read_text()
    for path in files_under(log_dir):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode == 0o600, (path, oct(mode))
            assert not leaks(path.read_bytes()), path
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    names = {p.name for p in files_under(log_dir)}
    assert names >= {"events.db", "events.db-wal", "events.db.lock", "monitor.log"}
    # the app's watcher's lock and who holds it, beside the log
    assert {n.rsplit(".", 1)[1] for n in names if n.startswith("watch-digitalocean-")} == {
        "lock",
        "json",
    }


def _state(db: Path, sha: str) -> str | None:
    with SQLiteLog(db) as store:
        row = store.deployment(sha)
    return row.state if row else None


# -- a committed settings file that names another host (SPEC §6) ---------------------------


@pytest.fixture
def evil() -> Iterator[Listener]:
    with listener() as server:
        yield server


def hostile_files(work: Path, evil: Listener, *, host: bool) -> None:
    """A `.tracker.toml` and a `[tool.tracker]` that try to send the logins to `evil`."""
    lines = [f"mysql_port = {evil.port}", 'mysql_ssl = "disabled"', 'mysql_ssl_ca = "/etc/hosts"']
    if host:
        lines += ['mysql_host = "127.0.0.1"', 'mysql_user = "root"', 'mysql_database = "test"']
    (work / ".tracker.toml").write_text("\n".join(lines) + "\n")
    (work / "pyproject.toml").write_text(
        f'[project]\nname = "app"\n[tool.tracker]\ndo_api_url = "{evil.url}"\n'
        f'TRACKER_MYSQL_URL = "mysql://root:x@127.0.0.1:{evil.port}/test"\n'
    )


def named_in_doctor(db: Path, env: dict[str, str], cwd: Path) -> set[str]:
    done = cli(db, "doctor", "--json", env=env, cwd=cwd)
    checks = __import__("json").loads(done.stdout)["checks"]
    assert done.returncode == 78, done.stdout
    return {c["message"].split()[0] for c in checks if not c["ok"] and "refused" in c["message"]}


@pytest.mark.mysql
def test_a_committed_file_cannot_send_the_database_login_elsewhere(
    tmp_path: Path, evil: Listener, mysql_user: tuple[str, str]
) -> None:
    """The port, TLS mode, CA, API URL and MySQL URL in the files are refused: the monitor logs
    in where the environment says (the real MariaDB), and nothing ever reaches `evil`."""
    user, table = mysql_user
    repo = make_repo(tmp_path)
    hostile_files(repo.work, evil, host=False)
    db, sha = tmp_path / "log" / "events.db", "7" * 40
    record(db, sha)
    admin = admin_connection()
    with admin.cursor() as cur:
        cur.execute(f"INSERT INTO `{table}` VALUES (NULL, %s, 'success', NOW(3))", (sha,))
    admin.close()
    env = base_env(
        DB_HOST="127.0.0.1", DB_USER=user, DB_PASS=PASSWORD, DB_NAME="test",
        TRACKER_MYSQL_TABLE=table, TRACKER_MAX_WAIT="20", TRACKER_POLL_POLICY="stepped",
        TRACKER_POLL_INITIAL="0.2",
    )  # fmt: skip
    done = cli(db, "monitor", sha, env=env, cwd=repo.work)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: succeeded" in done.stdout
    assert named_in_doctor(db, env, repo.work) == {
        "mysql_port", "mysql_ssl", "mysql_ssl_ca", "do_api_url", "TRACKER_MYSQL_URL",
    }  # fmt: skip
    for args in (("status", sha), ("events", sha), ("stats",)):
        read = cli(db, *args, env=env, cwd=repo.work)
        assert read.returncode == 0, (args, read.stderr)
        assert not leaks(read.stdout + read.stderr)
    assert evil.connections == 0, evil.first_bytes


def test_a_committed_file_alone_configures_no_source_and_reads_go_on(
    tmp_path: Path, evil: Listener
) -> None:
    """Host, port and TLS mode only in the files: MySQL is not watched at all (no login is
    sent anywhere), `status`, `events`, `stats` and `wait` answer, `doctor` names every key."""
    repo = make_repo(tmp_path)
    hostile_files(repo.work, evil, host=True)
    db, sha = tmp_path / "log" / "events.db", "8" * 40
    record(db, sha)
    env = base_env(DB_PASS=PASSWORD, TRACKER_MAX_WAIT="2")
    assert cli(db, "monitor", sha, env=env, cwd=repo.work).returncode == 78
    status = cli(db, "status", sha, env=env, cwd=repo.work)
    assert status.returncode == 2 and "nothing is watching it" in status.stdout
    assert cli(db, "wait", sha, "--timeout", "0.2", env=env, cwd=repo.work).returncode == 2
    assert cli(db, "events", sha, env=env, cwd=repo.work).returncode == 0
    assert cli(db, "stats", env=env, cwd=repo.work).returncode == 0
    assert named_in_doctor(db, env, repo.work) == {
        "mysql_host", "mysql_port", "mysql_ssl", "mysql_ssl_ca", "do_api_url",
        "TRACKER_MYSQL_URL",
    }  # fmt: skip
    assert evil.connections == 0, evil.first_bytes


# -- a wrong token ---------------------------------------------------------------------------


def test_a_wrong_token_is_one_clear_error_that_does_not_echo_it(
    tmp_path: Path, platform: SimulatedPlatform
) -> None:
    db = tmp_path / "log" / "events.db"
    sha = "5" * 40
    platform.add_deployment(sha, build_s=1, deploy_s=1)
    record(db, sha)
    env = do_env(platform, db, token=WRONG_TOKEN)
    done = cli(db, "monitor", sha, env=env, cwd=tmp_path)
    assert done.returncode == 69
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("tracker: error:"), done.stderr
    assert "credentials" in errors[0] and "tracker doctor" in errors[0]
    assert not leaks(done.stdout + done.stderr)
    doctor = cli(db, "doctor", "--json", env=env, cwd=tmp_path)
    assert doctor.returncode == 69 and "digitalocean" in doctor.stdout
    assert not leaks(doctor.stdout + doctor.stderr)
    for path in files_under(db.parent):
        if path.is_file():
            assert not leaks(path.read_bytes()), path


# -- remote URLs with credentials --------------------------------------------------------------


def test_record_push_strips_credentials_from_the_remote_url(tmp_path: Path) -> None:
    db = tmp_path / "log" / "events.db"
    sha = "6" * 40
    record(db, sha)
    with SQLiteLog(db) as store:
        [pushed] = [e for e in store.events(stream=sha) if e.type == "PushRecorded"]
        row = store.deployment(sha)
    assert pushed.data["remote_url"] == STRIPPED_URL
    assert row is not None and row.remote_url == STRIPPED_URL
    for path in files_under(db.parent):
        if path.is_file():
            assert not leaks(path.read_bytes()), path


def test_a_hook_push_to_an_https_url_with_a_token_records_it_stripped(tmp_path: Path) -> None:
    """A push over `https://user:token@host/...`: a remote helper (`remote.origin.vcs`) carries
    it to a local bare repository, so git hands the hook the URL with the token, as for real."""
    bin_dir = tmp_path / "bin"
    set_hook(
        bin_dir,
        "git-remote-fake",
        'while read -r line; do\n  case "$line" in\n'
        "    capabilities) printf 'connect\\n\\n' ;;\n"
        '    "connect "*) printf \'\\n\'; exec ${line#connect } "$FAKE_REMOTE" ;;\n'
        "    *) exit 0 ;;\n  esac\ndone",
    )
    repo = make_repo(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}")
    repo.env["FAKE_REMOTE"] = str(repo.remote)
    repo.git("remote", "set-url", "origin", CREDENTIAL_URL)
    repo.git("config", "remote.origin.vcs", "fake")
    install(repo.work, python=tracker_python())
    sha = repo.commit()
    pushed = repo.push("origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert repo.remote_head() == sha
    assert not leaks(pushed.stdout)  # git itself prints the URL without the password

    def settled() -> list[str]:
        if not repo.db.exists() or record_paths(repo.spool):
            return []
        with SQLiteLog(repo.db) as store:
            return [e.type for e in store.events(stream=sha)]

    assert wait_until(lambda: "PushConfirmed" in settled())
    with SQLiteLog(repo.db) as store:
        [event] = [e for e in store.events(stream=sha) if e.type == "PushRecorded"]
    assert event.data["remote_url"] == STRIPPED_URL
    assert event.data["source"] == "hook"
    for path in files_under(repo.log_dir):
        if path.is_file():
            assert not leaks(path.read_bytes()), path
