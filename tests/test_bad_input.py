"""Bad input exits 64, 74 or 78 with one line naming what is wrong, and writes nothing (issue 11,
item 6); a setting only the monitor uses never stops a read (item 7, SPEC §4).

Every case runs the real `tracker` as a subprocess in a real git repository, against a real log
holding one push, and compares the whole log (`iterdump`) before and after. Arguments and
variables cannot carry a NUL byte (execve ends each string at the first one), so NUL bytes are
tried where they can arrive: on standard input, in settings files, and through the Python API.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo
from tracker.api import Tracker
from tracker.errors import UsageError
from tracker.events import PushRecorded
from tracker.log.sqlite import SQLiteLog

SHA = "ab12cd3" + "0" * 33
DEADLINE_S = 60.0
BAD_TOKEN = "dop_v1_tökén"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    made = make_repo(tmp_path_factory.mktemp("bad-input"))
    with SQLiteLog(made.db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    return made


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def run(
    repo: Repo,
    args: list[str | bytes],
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args], cwd=cwd or repo.work,
        env={**repo.env, **(env or {})}, input=stdin, capture_output=True, timeout=DEADLINE_S,
    )  # fmt: skip


def nested(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def note(**fields: object) -> bytes:
    return json.dumps({"sha": SHA, "status": "success", **fields}).encode()


# (id, argv, environment, stdin, exit code)
CASES: list[tuple[str, list[str | bytes], dict[str, str], bytes, int]] = [
    # numbers given as options: huge, negative, NaN, not numbers, empty
    ("limit 2^63", ["events", "--limit", str(2**63)], {}, b"", 64),
    ("limit 2^64", ["events", "--limit", str(2**64)], {}, b"", 64),
    ("limit 10^30", ["events", "--limit", "1" + "0" * 30], {}, b"", 64),
    ("limit 5000 digits", ["events", "--limit", "9" * 5000], {}, b"", 64),
    ("limit -1", ["events", "--limit", "-1"], {}, b"", 64),
    ("limit 0", ["events", "--limit", "0"], {}, b"", 64),
    ("limit nan", ["events", "--limit", "nan"], {}, b"", 64),
    ("limit 1e3", ["events", "--limit", "1e3"], {}, b"", 64),
    ("limit empty", ["events", "--limit", ""], {}, b"", 64),
    ("since 20 digits", ["stats", "--since", "1" * 20], {}, b"", 64),
    ("since 400 digits", ["stats", "--since", "9" * 400], {}, b"", 64),
    ("since 2^63 days", ["stats", "--since", f"{2**63}d"], {}, b"", 64),
    ("since negative", ["stats", "--since", "-5m"], {}, b"", 64),
    ("since nan", ["stats", "--since", "nan"], {}, b"", 64),
    ("since inf", ["stats", "--since", "inf"], {}, b"", 64),
    ("since 1e3", ["stats", "--since", "1e3"], {}, b"", 64),
    ("since empty", ["stats", "--since", ""], {}, b"", 64),
    ("since words", ["stats", "--since", "8 minutes"], {}, b"", 64),
    ("timeout 2^63", ["wait", SHA, "--timeout", str(2**63)], {}, b"", 64),
    ("timeout 20 digits", ["wait", SHA, "--timeout", "1" * 20], {}, b"", 64),
    ("timeout 8d", ["wait", SHA, "--timeout", "8d"], {}, b"", 64),
    ("timeout negative", ["wait", SHA, "--timeout", "-1"], {}, b"", 64),
    ("timeout -0.5m", ["wait", SHA, "--timeout", "-0.5m"], {}, b"", 64),
    ("timeout nan", ["wait", SHA, "--timeout", "nan"], {}, b"", 64),
    ("timeout inf", ["wait", SHA, "--timeout", "inf"], {}, b"", 64),
    ("timeout 1e400", ["wait", SHA, "--timeout", "1e400"], {}, b"", 64),
    ("timeout empty", ["wait", SHA, "--timeout", ""], {}, b"", 64),
    # empty strings, and strings no ref or name can be
    ("status empty", ["status", ""], {}, b"", 64),
    ("wait empty", ["wait", ""], {}, b"", 64),
    ("events empty", ["events", ""], {}, b"", 64),
    ("monitor empty", ["monitor", ""], {}, b"", 64),
    ("push empty", ["push", ""], {}, b"", 64),
    ("push branch empty", ["push", SHA, "--branch", "", "--no-monitor"], {}, b"", 64),
    ("push branch bad", ["push", SHA, "--branch", "a..b", "--no-monitor"], {}, b"", 64),
    ("push remote bad", ["push", SHA, "--remote", "x;y", "--no-monitor"], {}, b"", 64),
    ("stats branch empty", ["stats", "--branch", ""], {}, b"", 64),
    ("stats branch 100k", ["stats", "--branch", "b" * 100_000], {}, b"", 64),
    ("status ref 100k", ["status", "a" * 100_000], {}, b"", 64),
    ("status option-like", ["status", "--", "--upload-pack=touch x"], {}, b"", 64),
    ("status not utf-8", ["status", b"\xff\xfe"], {}, b"", 64),
    ("stats branch not utf-8", ["stats", "--branch", b"ma\xffin"], {}, b"", 64),
    ("events ref control", ["events", "HEAD\x1b[2J"], {}, b"", 64),
    ("unknown option", ["status", "--jsn"], {}, b"", 64),
    # tracker ingest: deep, broken, huge or wrongly typed JSON on standard input
    ("ingest nested arrays", ["ingest"], {}, nested(100_000), 64),
    ("ingest nested objects", ["ingest"], {}, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 64),
    (
        "ingest nested in a field",
        ["ingest"],
        {},
        note(log_tail=None)[:-1] + b',"x":' + nested(100_000) + b"}",
        64,
    ),
    ("ingest not utf-8", ["ingest"], {}, b'{"sha": "\xff"}', 64),
    ("ingest empty", ["ingest"], {}, b"", 64),
    ("ingest array", ["ingest"], {}, b"[]", 64),
    ("ingest NUL in sha", ["ingest"], {}, json.dumps({"sha": "\x00" * 40}).encode(), 64),
    ("ingest NUL in status", ["ingest"], {}, note(status="succ\x00ess"), 64),
    ("ingest number sha", ["ingest"], {}, json.dumps({"sha": 10**30}).encode(), 64),
    ("ingest 1e400 id", ["ingest"], {}, note()[:-1] + b',"deployment_id":1e400}', 64),
    (
        "ingest 5000-digit id",
        ["ingest"],
        {},
        note()[:-1] + b',"deployment_id":' + b"9" * 5000 + b"}",
        64,
    ),
    ("ingest over 1 MB", ["ingest"], {}, note(log_tail="x" * 1_100_000), 64),
    (
        "ingest unknown sha",
        ["ingest"],
        {},
        json.dumps({"sha": "c" * 40, "status": "ok"}).encode(),
        64,
    ),
    # where the log is: a directory, nothing, somewhere unusable
    ("db /", ["--db", "/", "status", SHA], {}, b"", 74),
    ("db a directory", ["--db", "/tmp", "events"], {}, b"", 74),
    ("db empty", ["--db", "", "stats"], {}, b"", 74),
    ("db under a file", ["--db", "/dev/null/events.db", "status", SHA], {}, b"", 74),
    ("db name too long", ["--db", "/tmp/" + "x" * 300, "status", SHA], {}, b"", 74),
    ("TRACKER_DB /", ["events"], {"TRACKER_DB": "/"}, b"", 74),
    ("TRACKER_DB a directory", ["status", SHA], {"TRACKER_DB": "/tmp"}, b"", 74),
    # what reads need, badly set in the environment: bad configuration
    ("lock timeout nan", ["status", SHA], {"TRACKER_LOCK_TIMEOUT": "nan"}, b"", 78),
    ("lock timeout 1e400", ["events"], {"TRACKER_LOCK_TIMEOUT": "1e400"}, b"", 78),
    ("lock timeout huge", ["stats"], {"TRACKER_LOCK_TIMEOUT": "9" * 400}, b"", 78),
    ("lock timeout negative", ["status", SHA], {"TRACKER_LOCK_TIMEOUT": "-1"}, b"", 78),
    ("lock timeout 8 days", ["status", SHA], {"TRACKER_LOCK_TIMEOUT": "8d"}, b"", 78),
    ("synchronous OFF", ["status", SHA], {"TRACKER_SYNCHRONOUS": "OFF"}, b"", 78),
    ("branch bad", ["push", SHA, "--no-monitor"], {"TRACKER_BRANCH": "a..b"}, b"", 78),
    ("branch control", ["status", SHA], {"TRACKER_BRANCH": "ma\x1bin"}, b"", 78),
    # the monitor's own settings, for the monitor of a commit the log does not hold
    (
        "monitor token non-ascii",
        ["monitor", "d" * 40],
        {"DIGITALOCEAN_TOKEN": BAD_TOKEN, "TRACKER_DO_APP_ID": "app"},
        b"",
        78,
    ),
    (
        "monitor max wait",
        ["monitor", "d" * 40],
        {"DIGITALOCEAN_TOKEN": "t", "TRACKER_DO_APP_ID": "app", "TRACKER_MAX_WAIT": "abc"},
        b"",
        78,
    ),
    (
        "monitor http url",
        ["monitor", "d" * 40],
        {
            "DIGITALOCEAN_TOKEN": "t",
            "TRACKER_DO_APP_ID": "app",
            "TRACKER_DO_API_URL": "http://example.invalid",
        },
        b"",
        78,
    ),
    ("monitor no source", ["monitor", "d" * 40], {}, b"", 78),
]


@pytest.mark.parametrize(
    ("args", "env", "stdin", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_exits_64_74_or_78_with_one_line_and_writes_nothing(
    repo: Repo, args: list[str | bytes], env: dict[str, str], stdin: bytes, code: int
) -> None:
    before = dump(repo.db)
    done = run(repo, args, env, stdin)
    err = done.stderr.decode(errors="replace")
    assert done.returncode == code, (done.returncode, err, done.stdout[:500])
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracker: error: "), err[:2000]
    assert len(lines[0]) <= 520 and "internal error" not in err and "Traceback" not in err
    assert done.stdout == b""
    assert dump(repo.db) == before
    assert not (repo.work / "x").exists()


def test_doctor_names_a_token_that_is_not_ascii_and_exits_78(repo: Repo) -> None:
    env = {"DIGITALOCEAN_TOKEN": BAD_TOKEN, "TRACKER_DO_APP_ID": "app"}
    done = run(repo, ["doctor"], env)
    out = done.stdout.decode()
    assert done.returncode == 78, out + done.stderr.decode()
    [line] = [ln for ln in out.splitlines() if ln.startswith("FAIL  settings")]
    assert "DIGITALOCEAN_TOKEN: contains characters that are not printable" in line
    assert BAD_TOKEN not in out + done.stderr.decode() and "Traceback" not in out


def test_nul_bytes_through_the_api_are_usage_errors(repo: Repo) -> None:
    with Tracker(repo.db, repo=repo.work) as t:
        for ref in ("a\x00b", "\x00", "HEAD\x00", SHA[:7] + "\x00"):
            with pytest.raises(UsageError):
                t.status(ref)
        with pytest.raises(UsageError):
            t.record_push(SHA, branch="ma\x00in", monitor=False)


# -- a broken settings file never stops a read --------------------------------------------------

BROKEN_FILES = [
    (".tracker.toml", b"\xff\xfe\x00b\x00r", "not UTF-8"),
    (".tracker.toml", b"lock_timeout = [", "not valid TOML"),
    (".tracker.toml", b"a = " + nested(100_000), "not valid TOML"),
    (".tracker.toml", b'branch = "ma\\u0000in"', "branch in .tracker.toml"),
    (".tracker.toml", b"lock_timeout = nan", "lock_timeout in .tracker.toml"),
    (".tracker.toml", b"secret_token = 'x'", "only from the environment"),
    ("pyproject.toml", b"[tool.tracker]\nbranch = '\xc3\x28'", "not UTF-8"),
    ("pyproject.toml", b"[tool.tracker\n", "not valid TOML"),
]
READS: list[tuple[list[str], int]] = [
    (["status", SHA], 2),
    (["status", SHA, "--json"], 2),
    (["events", SHA, "--limit", "5"], 0),
    (["stats", "--since", "8m"], 0),
    (["wait", SHA, "--timeout", "0"], 2),
]


@pytest.mark.parametrize(
    ("name", "data", "fragment"), BROKEN_FILES, ids=[f[2] for f in BROKEN_FILES]
)
def test_reads_answer_with_a_broken_settings_file_and_warn_once(
    tmp_path: Path, name: str, data: bytes, fragment: str
) -> None:
    made = make_repo(tmp_path)
    with SQLiteLog(made.db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    (made.work / name).write_bytes(data)
    for args, code in READS:
        done = run(made, list(args))
        err = done.stderr.decode(errors="replace")
        assert done.returncode == code, (args, err)
        assert len(err.splitlines()) == 1 and err.startswith("tracker: warning: "), err[:1000]
        assert fragment in err and "not used" in err
    json.loads(run(made, ["status", SHA, "--json"]).stdout)  # stdout holds only the answer
    doctor = run(made, ["doctor"])
    assert doctor.returncode == 78 and fragment in doctor.stdout.decode(errors="replace")


# -- a setting only the monitor uses never stops a read (item 7) ----------------------------------

DO = {"DIGITALOCEAN_TOKEN": "dop_v1_token", "TRACKER_DO_APP_ID": "app"}
MONITOR_ONLY: list[tuple[str, dict[str, str], str]] = [
    ("max wait 8 minutes", {"TRACKER_MAX_WAIT": "8 minutes"}, "TRACKER_MAX_WAIT"),
    ("max wait abc", {**DO, "TRACKER_MAX_WAIT": "abc"}, "TRACKER_MAX_WAIT"),
    ("max wait nan", {**DO, "TRACKER_MAX_WAIT": "nan"}, "TRACKER_MAX_WAIT"),
    ("max wait 1e400", {**DO, "TRACKER_MAX_WAIT": "1e400"}, "TRACKER_MAX_WAIT"),
    ("max wait huge", {**DO, "TRACKER_MAX_WAIT": "9" * 400}, "TRACKER_MAX_WAIT"),
    ("max wait -8m", {**DO, "TRACKER_MAX_WAIT": "-8m"}, "TRACKER_MAX_WAIT"),
    ("poll interval 0", {**DO, "TRACKER_POLL_INTERVAL": "0"}, "TRACKER_POLL_INTERVAL"),
    ("poll initial -1", {**DO, "TRACKER_POLL_INITIAL": "-1"}, "TRACKER_POLL_INITIAL"),
    ("poll switch nan", {**DO, "TRACKER_POLL_SWITCH_AFTER": "nan"}, "TRACKER_POLL_SWITCH_AFTER"),
    ("poll long 8d", {**DO, "TRACKER_POLL_LONG": "8d"}, "TRACKER_POLL_LONG"),
    ("poll policy", {**DO, "TRACKER_POLL_POLICY": "sometimes"}, "TRACKER_POLL_POLICY"),
    ("http timeout 0", {**DO, "TRACKER_HTTP_TIMEOUT": "0"}, "TRACKER_HTTP_TIMEOUT"),
    ("api url http", {**DO, "TRACKER_DO_API_URL": "http://example.invalid"}, "TRACKER_DO_API_URL"),
    ("api url ftp", {**DO, "TRACKER_DO_API_URL": "ftp://x"}, "TRACKER_DO_API_URL"),
    ("app id", {**DO, "TRACKER_DO_APP_ID": "../../v2/account"}, "TRACKER_DO_APP_ID"),
    ("token non-ascii", {**DO, "DIGITALOCEAN_TOKEN": BAD_TOKEN}, "DIGITALOCEAN_TOKEN"),
    ("mysql url scheme", {"TRACKER_MYSQL_URL": "postgres://u:p@h/d"}, "TRACKER_MYSQL_URL"),
    ("mysql url port", {"TRACKER_MYSQL_URL": "mysql://u:p@h:99999/d"}, "TRACKER_MYSQL_URL"),
    (
        "db port",
        {"DB_HOST": "127.0.0.1", "DB_USER": "u", "DB_NAME": "d", "DB_PORT": "0"},
        "DB_PORT",
    ),
    ("db user missing", {"DB_HOST": "127.0.0.1", "DB_NAME": "d"}, "DB_USER"),
    (
        "mysql table",
        {"TRACKER_MYSQL_URL": "mysql://u:p@127.0.0.1/d", "TRACKER_MYSQL_TABLE": "x; DROP TABLE y"},
        "TRACKER_MYSQL_TABLE",
    ),
    (
        "mysql ssl",
        {"TRACKER_MYSQL_URL": "mysql://u:p@127.0.0.1/d", "TRACKER_MYSQL_SSL": "maybe"},
        "TRACKER_MYSQL_SSL",
    ),
    (
        "mysql connect timeout",
        {"TRACKER_MYSQL_URL": "mysql://u:p@127.0.0.1/d", "TRACKER_MYSQL_CONNECT_TIMEOUT": "-5"},
        "TRACKER_MYSQL_CONNECT_TIMEOUT",
    ),
]


@pytest.mark.parametrize(
    ("env", "variable"), [m[1:] for m in MONITOR_ONLY], ids=[m[0] for m in MONITOR_ONLY]
)
def test_reads_answer_whatever_the_monitor_settings_and_the_monitor_records_why(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    made = make_repo(tmp_path)
    with SQLiteLog(made.db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    before = dump(made.db)
    for args, code in [*READS[:-1], (["status", "d" * 40], 3), (["events"], 0)]:
        done = run(made, list(args), env)
        assert done.returncode == code, (args, done.stderr.decode())
        assert done.stderr == b""
    assert dump(made.db) == before
    refused = run(made, ["monitor", SHA], env)
    err = refused.stderr.decode()
    assert refused.returncode == 78 and len(err.splitlines()) == 1
    assert err.startswith("tracker: error: ") and variable in err, err
    with SQLiteLog(made.db) as store:
        last = store.events(stream=SHA)[-1]
    assert last.type == "MonitorNotStarted"
    assert variable in last.data["reason"] and variable in last.data["fix"]
    assert BAD_TOKEN not in json.dumps(last.data)
    status = run(made, ["status", SHA], env)
    headline = status.stdout.decode().splitlines()[0]
    assert status.returncode == 2
    assert headline.startswith("ab12cd3: pending, but nothing is watching it: ")
    assert variable in headline and headline.endswith(", then `tracker wait ab12cd3`")
    done = run(made, ["wait", SHA, "--timeout", "5m"], env)  # at once, not after 5 minutes
    assert done.returncode == 2 and done.stdout.decode().splitlines()[0] == headline
    assert [e.type for e in SQLiteLog(made.db).events(stream=SHA)].count("MonitorNotStarted") == 1


def test_wait_resumes_the_monitor_once_the_setting_is_fixed(tmp_path: Path) -> None:
    """The headline says "fix X, then `tracker wait`": that wait starts a monitor."""
    from tracker.sim.server import SimulatedPlatform

    made = make_repo(tmp_path)
    with SQLiteLog(made.db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    with SimulatedPlatform(token="tok") as sim:
        good = {"DIGITALOCEAN_TOKEN": "tok", "TRACKER_DO_APP_ID": sim.app_id,
                "TRACKER_DO_API_URL": sim.base_url, "TRACKER_POLL_INITIAL": "0.2",
                "TRACKER_MAX_WAIT": "2s"}  # fmt: skip
        bad = {**good, "TRACKER_MAX_WAIT": "abc"}
        assert run(made, ["monitor", SHA], bad).returncode == 78
        done = run(made, ["wait", SHA, "--timeout", "0"], bad)
        assert done.returncode == 2 and "TRACKER_MAX_WAIT" in done.stdout.decode()
        done = run(made, ["wait", SHA, "--timeout", "30s"], good)
        out = done.stdout.decode()
    assert "nothing is watching it" not in out.splitlines()[-1], out
    types = [e.type for e in SQLiteLog(made.db).events(stream=SHA)]
    assert types.count("MonitorNotStarted") == 1 and "MonitorStarted" in types, types


def test_a_push_with_a_bad_monitor_setting_says_so_in_its_headline(tmp_path: Path) -> None:
    """Through the real hook: the confirmer starts the monitor although a setting is bad; the
    monitor refuses it and records why; `status` says so and exits 2; `wait` returns at once."""
    from tests.support.gitrepo import tracker_python, wait_until
    from tracker.push.install import install

    made = make_repo(tmp_path, **DO, TRACKER_MAX_WAIT="abc")
    install(made.work, python=tracker_python())
    sha = made.commit()
    assert made.push("origin", "main").returncode == 0

    def refused() -> bool:
        with SQLiteLog(made.db) as store:
            return any(e.type == "MonitorNotStarted" for e in store.events(stream=sha))

    wait_until(refused, timeout=DEADLINE_S)
    done = run(made, ["status", sha])
    headline = done.stdout.decode().splitlines()[0]
    assert done.returncode == 2, done.stdout.decode() + done.stderr.decode()
    assert headline == (
        f"{sha[:7]}: pending, but nothing is watching it: TRACKER_MAX_WAIT: must be a duration"
        f" like 480, 8m or 2h, got 'abc'; fix TRACKER_MAX_WAIT, then `tracker wait {sha[:7]}`"
    )
    st = json.loads(run(made, ["status", sha, "--json"]).stdout)
    assert (st["state"], st["watched"], st["exit_code"]) == ("pending", False, 2)
    waited = run(made, ["wait", sha, "--timeout", "10m"])
    assert waited.returncode == 2 and waited.stdout.decode().splitlines()[0] == headline


# -- durations accept the same forms everywhere (SPEC §5) -----------------------------------------

FORMS = ["90", "90s", "1.5m", "8m", "2h", "1d", "0.5", " 10 S "]


@pytest.mark.parametrize("form", FORMS)
def test_every_duration_option_takes_every_form(repo: Repo, form: str) -> None:
    before = dump(repo.db)
    waited = run(repo, ["wait", SHA, "--timeout", form])  # nothing watches it: at once
    assert waited.returncode == 2, waited.stderr.decode()
    assert run(repo, ["stats", "--since", form, "--json"]).returncode == 0
    env = {"TRACKER_LOCK_TIMEOUT": form, "TRACKER_MAX_WAIT": form, "TRACKER_POLL_LONG": form}
    assert run(repo, ["status", SHA], env).returncode == 2
    assert dump(repo.db) == before


def test_the_monitor_takes_durations_with_units(tmp_path: Path) -> None:
    from tracker.sim.server import SimulatedPlatform

    made = make_repo(tmp_path)
    with SQLiteLog(made.db) as store:
        store.append(SHA, PushRecorded(sha=SHA, branch="main", source="cli"))
    with SimulatedPlatform(token="tok") as sim:
        env = {"DIGITALOCEAN_TOKEN": "tok", "TRACKER_DO_APP_ID": sim.app_id,
               "TRACKER_DO_API_URL": sim.base_url, "TRACKER_POLL_POLICY": "fixed",
               "TRACKER_POLL_INTERVAL": "0.005m", "TRACKER_MAX_WAIT": "0.025m",
               "TRACKER_HTTP_TIMEOUT": "5s"}  # fmt: skip
        done = run(made, ["monitor", SHA], env)
    assert done.returncode == 1, done.stdout.decode() + done.stderr.decode()  # timed out
    with SQLiteLog(made.db) as store:
        found = {e.type: e.data for e in store.events(stream=SHA)}
    assert found["MonitorStarted"]["max_wait_s"] == 1.5
    assert found["MonitorTimedOut"]["waited_s"] >= 1.5
