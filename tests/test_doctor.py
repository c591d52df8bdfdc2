"""`tracker doctor` and `tracker hooks status` as a person and an agent read them.

Real git repositories with bare remotes, real virtual environments for a hook whose interpreter
is gone or has lost the package, the simulated App Platform for a wrong app id, a port nobody
listens on, a lock file whose permissions deny, the real pre-commit framework; every `--json`
output is checked against docs/schema/doctor.schema.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.support.gitrepo import ROOT, Repo, make_repo, tracker_python, wait_until
from tracker.log.sqlite import SQLiteLog
from tracker.push.install import PRE_COMMIT_ITEM, install
from tracker.push.spool import read_record, record_paths
from tracker.sim.server import SimulatedPlatform

SCHEMA = json.loads((ROOT / "docs" / "schema" / "doctor.schema.json").read_text())
TOKEN = "sim-token-for-doctor"


def doctor(repo: Repo, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()):
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "tracker", "doctor", *args], cwd=repo.work,
        env=env or repo.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def hooks_status(repo: Repo, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "tracker", "hooks", "status", *args], cwd=repo.work,
        env=env or repo.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def line(out: str, mark: str, name: str) -> str:
    """The one line of check `name` with `mark` (`ok`, `warn`, `FAIL`), and its fix if any."""
    lines = out.splitlines()
    found = [i for i, text in enumerate(lines) if text.split()[:2] == [mark, name]]
    assert len(found) == 1, out
    first = found[0]
    fix = lines[first + 1] if first + 1 < len(lines) else ""
    return lines[first] + ("\n" + fix.strip() if fix.strip().startswith("fix:") else "")


def as_json(repo: Repo, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = doctor(repo, "--json", env=env)
    out: dict[str, Any] = json.loads(done.stdout)
    errors = list(Draft202012Validator(SCHEMA).iter_errors(out))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert out["exit_code"] == done.returncode
    return out


def confirmed(repo: Repo, sha: str) -> bool:
    if not repo.db.exists() or record_paths(repo.spool):
        return False
    with SQLiteLog(repo.db) as store:
        return [e.type for e in store.events(stream=sha)] == ["PushRecorded", "PushConfirmed"]


def check(out: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in out["checks"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    return made


@pytest.fixture
def platform() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform(token=TOKEN) as sim:
        yield sim


def do_env(repo: Repo, platform: SimulatedPlatform, **extra: str) -> dict[str, str]:
    return {
        **repo.env, "DIGITALOCEAN_TOKEN": TOKEN, "TRACKER_DO_APP_ID": platform.app_id,
        "TRACKER_DO_API_URL": platform.base_url, **extra,
    }  # fmt: skip


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"])


def test_a_working_setup_is_one_ok_line_per_check(repo: Repo, platform: SimulatedPlatform) -> None:
    env = do_env(repo, platform)
    done = doctor(repo, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done.stdout, "ok", "hook").split(None, 2)[2] == (
        f".git/hooks/pre-push → {tracker_python()}"
    )
    assert line(done.stdout, "ok", "digitalocean").endswith(
        f"{platform.base_url}: app {platform.app_id} reachable and authorised,"
        " 4999 API calls left this hour"
    )
    assert "ok    log" in done.stdout and "ok    lock" in done.stdout
    for key in ("sources", "branch", "poll", "max wait"):
        assert any(text.split()[:1] == key.split()[:1] for text in done.stdout.splitlines())
    assert "{" not in done.stdout and "'" not in done.stdout  # no reprs, no JSON blobs
    assert TOKEN not in done.stdout + done.stderr
    out = as_json(repo, env)
    assert out["ok"] and out["exit_code"] == 0
    assert check(out, "hook")["detail"]["places"][0]["python"] == tracker_python()
    settings = next(c for c in out["checks"] if c["name"] == "settings")
    assert settings["detail"]["digitalocean"]["token"] == "set"  # an object, never the token
    assert TOKEN not in json.dumps(out)


# -- a broken hook ------------------------------------------------------------------------------


def purelib(python: str) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def venv_with_tracker(home: Path, how: str) -> str:
    """A venv whose python imports this checkout's tracker as a wheel install (a copy in
    site-packages) or an editable one (a .pth, recorded in a dist-info's RECORD) would."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = home / "bin" / "python"
    site = purelib(str(python))
    outer = sysconfig.get_paths()["purelib"]  # httpx and friends, for the monitor
    (site / "outer-packages.pth").write_text(f"{outer}\n")
    if how == "wheel":
        shutil.copytree(ROOT / "tracker", site / "tracker", ignore=shutil.ignore_patterns("*.pyc"))
        shutil.copy(ROOT / "schema.sql", site / "tracker" / "schema.sql")  # as the wheel has them
        shutil.copytree(ROOT / "hooks", site / "tracker" / "hooks")
    else:
        (site / "_editable_impl_deploy_tracker.pth").write_text(f"{ROOT}\n")
        info = site / "deploy_tracker-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: deploy-tracker\nVersion: 0.1.0\n"
        )
        (info / "RECORD").write_text(
            "_editable_impl_deploy_tracker.pth,,\ndeploy_tracker-0.1.0.dist-info/RECORD,,\n"
        )
    return str(python)


def uninstall_tracker(python: str, how: str) -> None:
    """What `pip uninstall deploy-tracker` removes."""
    site = purelib(python)
    if how == "wheel":  # (a confirmer may still be writing its __pycache__ there)
        wait_until(
            lambda: (
                shutil.rmtree(site / "tracker", ignore_errors=True)
                or not (site / "tracker").exists()
            )
        )
    else:
        (site / "_editable_impl_deploy_tracker.pth").unlink()
        shutil.rmtree(site / "deploy_tracker-0.1.0.dist-info")
    assert subprocess.run(
        [python, "-I", "-c", "import tracker.push.confirm"], capture_output=True
    ).returncode


def test_a_moved_interpreter_is_a_fail_with_the_fix(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    python = venv_with_tracker(tmp_path / "venv", "wheel")
    install(repo.work, python=python)
    assert doctor(repo).stdout.count("ok    hook") == 1
    (tmp_path / "venv").rename(tmp_path / "venv-moved")
    done = doctor(repo)
    assert done.returncode == 78, done.stdout
    assert line(done.stdout, "FAIL", "hook").split(None, 2)[2] == (
        f".git/hooks/pre-push calls {python}, which is missing\n"
        "fix: run `tracker hooks install` again (the hook then calls the interpreter of the"
        " tracker that runs it)"
    )
    status = hooks_status(repo)
    assert status.returncode == 78
    assert (
        f"FAIL  hooks dir   .git/hooks/pre-push calls {python}, which is missing" in status.stdout
    )
    out = as_json(repo)
    assert check(out, "hook")["level"] == "fail" and check(out, "hook")["exit_code"] == 78


@pytest.mark.parametrize("how", ["wheel", "editable"])
def test_an_interpreter_that_lost_the_package_fails_doctor_and_the_hook_warns_once(
    tmp_path: Path, how: str
) -> None:
    repo = make_repo(tmp_path)
    python = venv_with_tracker(tmp_path / "venv", how)
    assert install(repo.work, python=python) == [f"installed {repo.common / 'hooks' / 'pre-push'}"]
    sha = repo.commit()
    pushed = repo.push("origin", "main")
    assert pushed.returncode == 0 and "tracker:" not in pushed.stderr
    wait_until(lambda: confirmed(repo, sha))  # the venv works: its confirmer ran
    uninstall_tracker(python, how)
    done = doctor(repo)
    assert done.returncode == 78
    assert (
        line(done.stdout, "FAIL", "hook")
        .split(None, 2)[2]
        .startswith(
            f".git/hooks/pre-push calls {python}, which no longer has the tracker package\n"
            "fix: run `tracker hooks install` again"
        )
    )
    later = repo.commit()
    pushed = repo.push("origin", "main")
    assert pushed.returncode == 0
    warned = [text for text in pushed.stderr.splitlines() if text.startswith("tracker:")]
    assert warned == [
        f"tracker: the push is spooled but not confirmed: '{python}' no longer has the tracker"
        " package (run `tracker hooks install` again)"
    ]
    [kept] = record_paths(repo.spool)
    assert read_record(kept).sha == later and read_record(kept).confirmer_pid is None


# -- settings and sources -----------------------------------------------------------------------


def test_only_the_app_id_missing_is_named(repo: Repo) -> None:
    env = {**repo.env, "DIGITALOCEAN_TOKEN": TOKEN}
    done = doctor(repo, env=env)
    assert done.returncode == 78
    assert (
        line(done.stdout, "FAIL", "sources")
        .split(None, 2)[2]
        .startswith(
            "DIGITALOCEAN_TOKEN is set, but TRACKER_DO_APP_ID is not: nothing is watched\n"
            "fix: set TRACKER_DO_APP_ID to the id of the app to follow (`doctl apps list"
        )
    )
    assert TOKEN not in done.stdout + done.stderr
    assert check(as_json(repo, env), "sources")["detail"] == {
        "digitalocean_token": True, "digitalocean_app_id": False,
    }  # fmt: skip


def test_only_the_token_missing_is_named(repo: Repo) -> None:
    done = doctor(repo, env={**repo.env, "TRACKER_DO_APP_ID": "1234"})
    assert done.returncode == 78
    assert (
        line(done.stdout, "FAIL", "sources")
        .split(None, 2)[2]
        .startswith("TRACKER_DO_APP_ID is set (TRACKER_DO_APP_ID), but DIGITALOCEAN_TOKEN is not")
    )


def test_a_wrong_app_id_is_no_app_for_this_token(repo: Repo, platform: SimulatedPlatform) -> None:
    wrong = "00000000-0000-4000-8000-000000000000"
    env = do_env(repo, platform, TRACKER_DO_APP_ID=wrong)
    done = doctor(repo, env=env)
    assert done.returncode == 69
    assert line(done.stdout, "FAIL", "digitalocean").split(None, 2)[2] == (
        f"no app {wrong} for this token (GET {platform.base_url}/v2/apps/{wrong} answered"
        " HTTP 404)\nfix: check TRACKER_DO_APP_ID (from TRACKER_DO_APP_ID): `doctl apps list"
        " --format ID,Spec.Name` lists the apps a token can see"
    )
    detail = check(as_json(repo, env), "digitalocean")["detail"]
    assert detail["http_status"] == 404 and detail["app_id"] == wrong


def test_a_refused_token_says_so(repo: Repo, platform: SimulatedPlatform) -> None:
    env = do_env(repo, platform, DIGITALOCEAN_TOKEN="not-the-token")
    done = doctor(repo, env=env)
    assert done.returncode == 69
    assert "DigitalOcean refused the token (HTTP 401)" in line(done.stdout, "FAIL", "digitalocean")
    assert "not-the-token" not in done.stdout + done.stderr


def test_an_unreachable_url_is_named(repo: Repo) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**repo.env, "DIGITALOCEAN_TOKEN": TOKEN, "TRACKER_DO_APP_ID": "app",
           "TRACKER_DO_API_URL": url}  # fmt: skip
    done = doctor(repo, env=env)
    assert done.returncode == 69
    assert line(done.stdout, "FAIL", "digitalocean").split(None, 2)[2] == (
        f"the DigitalOcean API at {url} is unreachable: connection failed (ConnectError)"
        f" (GET {url}/v2/apps/app)\nfix: check TRACKER_DO_API_URL (the host and the port),"
        " and the network"
    )
    assert check(as_json(repo, env), "digitalocean")["detail"]["url"] == f"{url}/v2/apps/app"


# -- the lock -----------------------------------------------------------------------------------


def test_a_lock_whose_permissions_deny_gets_the_permission_advice(repo: Repo) -> None:
    SQLiteLog(repo.db).last_seq()  # the log exists and is migrated: only the lock is in the way
    lock = Path(f"{repo.db}.lock")
    lock.chmod(0)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root opens any file: run doctor without the capability that does it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    try:
        done = doctor(repo, prefix=prefix)
    finally:
        lock.chmod(0o600)
    assert done.returncode == 74, done.stdout + done.stderr
    found = line(done.stdout, "FAIL", "lock").split(None, 2)[2]
    assert found.startswith(
        ".git/tracker/events.db.lock cannot be opened for writing: Permission denied\n"
        f"fix: give yourself write access to {lock} and its directory"
    )
    assert "fuser" not in found and "try again" not in found
    assert "ok    log" in done.stdout


# -- pre-commit ---------------------------------------------------------------------------------


def pre_commit(repo: Repo, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    env = {**(env or repo.env), "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=repo.work, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_pre_commit_wiring_is_recognised(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    config = repo.work / ".pre-commit-config.yaml"
    config.write_text("repos:\n" + PRE_COMMIT_ITEM + "\n")
    done = doctor(repo)
    assert done.returncode == 78
    assert line(done.stdout, "FAIL", "hook").split(None, 2)[2] == (
        ".pre-commit-config.yaml has hook tracker-record-push, but .git/hooks/pre-push is not"
        " pre-commit's pre-push shim\nfix: run `pre-commit install --hook-type pre-push`"
    )
    assert pre_commit(repo, tmp_path, "install", "--hook-type", "pre-push").returncode == 0
    on_path = {**repo.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{repo.env['PATH']}"}
    done = doctor(repo, env=on_path)
    assert done.returncode == 78, done.stdout  # no source configured: only that fails
    assert line(done.stdout, "ok", "hook").split(None, 2)[2] == (
        ".pre-commit-config.yaml: hook tracker-record-push at stage pre-push, via pre-commit's"
        " shim .git/hooks/pre-push"
    )
    status = hooks_status(repo, env=on_path)
    assert status.returncode == 0
    assert (
        status.stdout.splitlines()[0]
        == "--    hooks dir   .git/hooks/pre-push is pre-commit's shim"
    )
    assert status.stdout.splitlines()[2].startswith("ok    pre-commit  .pre-commit-config.yaml:")
    info = json.loads(hooks_status(repo, "--json", env=on_path).stdout)
    assert info["installed"] and info["works"] and info["pre_commit"]
    no_path = {**repo.env, "PATH": "/usr/bin:/bin"}
    if shutil.which("tracker-pre-push", path=no_path["PATH"]) is None:
        done = doctor(repo, env=no_path)
        assert "runs `tracker-pre-push`, which is not on PATH" in line(done.stdout, "FAIL", "hook")
    config.write_text(config.read_text().replace("stages: [pre-push]", "stages: [pre-commit]"))
    done = doctor(repo, env=on_path)
    assert "runs at pre-commit, not pre-push" in line(done.stdout, "FAIL", "hook")
    as_json(repo, on_path)


def test_the_pre_commit_snippet_pastes_into_an_existing_config(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    config = repo.work / ".pre-commit-config.yaml"
    lines = install(repo.work, pre_commit=True)
    assert lines[0] == f"create {config}:"
    existing = (
        "default_stages: [pre-commit]\nrepos:\n  - repo: local\n    hooks:\n"
        "      - id: lint\n        name: lint\n        entry: 'true'\n        language: system\n"
    )
    config.write_text(existing)
    lines = install(repo.work, pre_commit=True)
    assert lines[0].startswith(f"add this item to the `repos:` list of {config}")
    snippet = lines[lines.index("") + 1 : lines.index("", lines.index("") + 1)]
    config.write_text(existing + "\n".join(snippet) + "\n")
    assert pre_commit(repo, tmp_path, "validate-config").returncode == 0
    import yaml  # pre-commit's own dependency

    loaded = yaml.safe_load(config.read_text())
    hooks = [h["id"] for r in loaded["repos"] for h in r["hooks"]]
    assert hooks == ["lint", "tracker-record-push"]
    assert install(repo.work, pre_commit=True)[0] == f"{config} already has the tracker's hook; run"


# -- hooks status -------------------------------------------------------------------------------


def test_hooks_status_is_one_line_per_place(repo: Repo, tmp_path: Path) -> None:
    done = hooks_status(repo)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        f"ok    hooks dir   .git/hooks/pre-push → {tracker_python()}",
        "--    husky       .husky/pre-push: no tracker line",
        "--    pre-commit  .pre-commit-config.yaml: no tracker hook",
    ]
    info = json.loads(hooks_status(repo, "--json").stdout)
    assert info["works"] and info["python_exists"]
    validator = Draft202012Validator({**SCHEMA["$defs"]["place"], "$defs": SCHEMA["$defs"]})
    for place in info["places"]:
        assert not list(validator.iter_errors(place)), place
    install(repo.work, husky=True, python=tracker_python())
    husky = hooks_status(repo).stdout.splitlines()[1]
    assert husky.startswith("warn  husky       .husky/pre-push → .git/tracker/pre-push → ")
    assert "not husky's stub" in husky


def test_a_committed_pre_commit_config_does_not_fail_a_clone_wired_plainly(repo: Repo) -> None:
    (repo.work / ".pre-commit-config.yaml").write_text("repos:\n" + PRE_COMMIT_ITEM + "\n")
    done = doctor(repo)
    assert line(done.stdout, "ok", "hook").split(None, 2)[2] == (
        f".git/hooks/pre-push → {tracker_python()}"
    )
    status = hooks_status(repo)
    assert status.returncode == 0
    assert status.stdout.splitlines()[2].endswith("not needed here: hooks dir has the hook")
