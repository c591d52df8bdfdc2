"""`tracker hooks install|uninstall|status` against real repositories, husky and pre-commit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gitrepo import Repo, make_repo, set_hook, tracker_python, wait_until
from tracker.errors import UsageError
from tracker.log.sqlite import SQLiteLog
from tracker.push.install import CHAINED, HUSKY_MARK, PRE_COMMIT_ITEM, install, status, uninstall
from tracker.push.spool import record_paths


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


def confirmed(repo: Repo, sha: str) -> bool:
    if not repo.db.exists():
        return False
    with SQLiteLog(repo.db) as store:
        kinds = [e.type for e in store.events(stream=sha)]
    return kinds == ["PushRecorded", "PushConfirmed"] and not record_paths(repo.spool)


def test_install_is_idempotent_and_records_the_interpreter(repo: Repo) -> None:
    python = tracker_python()
    first = install(repo.work, python=python)
    hook = repo.common / "hooks" / "pre-push"
    assert first == [f"installed {hook}"]
    assert install(repo.work, python=python) == [f"updated {hook}"]
    assert os.access(hook, os.X_OK)
    assert f"TRACKER_PYTHON='{python}'" in hook.read_text()
    found = status(repo.work)
    assert found["plain"] and found["installed"] and not found["husky"]
    assert found["python"] == python and found["python_exists"]
    assert found["chained"] is None and found["hooks_dir"] == str(repo.common / "hooks")


def test_status_says_when_the_interpreter_is_gone(repo: Repo, tmp_path: Path) -> None:
    install(repo.work, python=str(tmp_path / "it's gone" / "python"))
    found = status(repo.work)
    assert found["python"] == str(tmp_path / "it's gone" / "python")
    assert not found["python_exists"]


def test_uninstall_restores_a_chained_hook_and_removes_only_ours(repo: Repo) -> None:
    hooks = repo.common / "hooks"
    lfs = set_hook(hooks, "pre-push", 'git lfs pre-push "$@"  # what git-lfs installs')
    original = lfs.read_text()
    install(repo.work, python=tracker_python())
    install(repo.work, python=tracker_python())  # a second install must not chain ourselves
    assert (hooks / CHAINED).read_text() == original
    assert status(repo.work)["chained"] == str(hooks / CHAINED)
    lines = uninstall(repo.work)
    assert (hooks / "pre-push").read_text() == original and not (hooks / CHAINED).exists()
    assert any("restored" in line for line in lines)
    assert uninstall(repo.work) == ["nothing to remove: the hook was not installed"]


def test_install_refuses_to_bury_two_foreign_hooks(repo: Repo) -> None:
    hooks = repo.common / "hooks"
    set_hook(hooks, "pre-push", "exit 0")
    set_hook(hooks, CHAINED, "exit 0")
    with pytest.raises(UsageError, match="already exists"):
        install(repo.work, python=tracker_python())


def test_core_hooks_path_and_linked_worktrees_are_honoured(repo: Repo, tmp_path: Path) -> None:
    repo.git("config", "core.hooksPath", str(tmp_path / "shared-hooks"))
    tree = tmp_path / "tree"
    repo.git("worktree", "add", "-q", "-b", "topic", str(tree))
    install(tree, python=tracker_python())
    assert (tmp_path / "shared-hooks" / "pre-push").exists()
    assert not (repo.common / "hooks" / "pre-push").exists()
    sha = repo.commit("from the worktree", cwd=tree)
    assert repo.push("origin", "HEAD:main", cwd=tree).returncode == 0
    wait_until(lambda: confirmed(repo, sha))
    uninstall(tree)
    assert not (tmp_path / "shared-hooks" / "pre-push").exists()


def test_husky_install_adds_one_line_and_uninstall_removes_only_it(repo: Repo) -> None:
    husky_file = repo.work / ".husky" / "pre-push"
    husky_file.parent.mkdir()
    husky_file.write_text("npm test\n")
    install(repo.work, husky=True, python=tracker_python())
    install(repo.work, husky=True, python=tracker_python())
    text = husky_file.read_text()
    assert text.count(HUSKY_MARK) == 1 and text.endswith("npm test\n")
    assert text.splitlines()[0].endswith("(tracker hooks install --husky)")
    assert status(repo.work)["husky"] and (repo.common / "tracker" / "pre-push").exists()
    uninstall(repo.work)
    assert husky_file.read_text() == "npm test\n"
    assert not (repo.common / "tracker" / "pre-push").exists()


def test_plain_install_into_husky_hooks_is_refused(repo: Repo) -> None:
    set_hook(repo.work / ".husky" / "_", "h", "exit 0")
    repo.git("config", "core.hooksPath", ".husky/_")
    with pytest.raises(UsageError, match="--husky"):
        install(repo.work, python=tracker_python())


def test_pre_commit_install_tells_what_to_add(repo: Repo) -> None:
    lines = install(repo.work, pre_commit=True)
    text = "\n".join(lines)
    assert "stages: [pre-push]" in text and "entry: tracker-pre-push" in text
    assert "always_run: true" in text and "pass_filenames: false" in text
    assert not (repo.common / "hooks" / "pre-push").exists()  # it only tells


def test_the_shipped_pre_commit_hooks_file_declares_a_pre_push_hook() -> None:
    text = (Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml").read_text()
    for needle in ("id: record-push", "entry: tracker-pre-push", "stages: [pre-push]",
                   "always_run: true", "pass_filenames: false"):  # fmt: skip
        assert needle in text


@pytest.mark.npm
def test_husky_9_from_npm_records_and_confirms_a_push(repo: Repo) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    env = {**repo.env, "npm_config_fund": "false", "npm_config_audit": "false"}
    subprocess.run([npm, "init", "-y"], cwd=repo.work, env=env, capture_output=True, check=True)
    got = subprocess.run(
        [npm, "install", "--save-dev", "husky@9"], cwd=repo.work, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    if got.returncode != 0:
        pytest.skip(f"npm install husky@9 failed: {got.stderr.strip()[-300:]}")
    subprocess.run(["npx", "husky", "init"], cwd=repo.work, env=env, check=True, timeout=120)
    assert repo.git("config", "core.hooksPath").stdout.strip() == ".husky/_"
    (repo.work / ".husky" / "pre-commit").unlink()
    install(repo.work, husky=True, python=tracker_python())
    (repo.work / ".gitignore").write_text("node_modules/\n")
    sha = repo.commit("with husky")
    done = subprocess.run(
        ["git", "push", "origin", "main"], cwd=repo.work, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_until(lambda: confirmed(repo, sha))


@pytest.mark.slow
def test_the_pre_commit_framework_records_and_confirms_a_push(repo: Repo, tmp_path: Path) -> None:
    config = repo.work / ".pre-commit-config.yaml"
    entry = f"{tracker_python()} -I -m tracker.push.prepush"
    config.write_text(
        "repos:\n  - repo: local\n    hooks:\n      - id: tracker-record-push\n"
        f"        name: record the push\n        entry: {entry}\n        language: system\n"
        "        stages: [pre-push]\n        always_run: true\n        pass_filenames: false\n"
    )
    env = {**repo.env, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"],
        cwd=repo.work, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sha = repo.commit("with pre-commit")
    done = subprocess.run(
        ["git", "push", "origin", "main"], cwd=repo.work, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: confirmed(repo, sha))
    assert status(repo.work)["pre_commit"]
    dry = repo.commit("not really")
    assert subprocess.run(
        ["git", "push", "--dry-run", "origin", "main"], cwd=repo.work, env=env,
        capture_output=True, timeout=120,
    ).returncode == 0  # fmt: skip
    assert record_paths(repo.spool) == [] and not confirmed(repo, dry)


@pytest.mark.parametrize(
    ("env", "lines", "expected"),
    [
        ({"PRE_COMMIT_TO_REF": "a" * 40, "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main"}, [], 1),
        ({"PRE_COMMIT_TO_REF": "a" * 40, "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/dev"}, [], 0),
        ({"PRE_COMMIT_TO_REF": "0" * 40, "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main"}, [], 0),
        ({}, [f"HEAD {'b' * 40} refs/heads/main {'0' * 40}"], 1),
        ({}, [f"(delete) {'0' * 40} refs/heads/main {'b' * 40}", "garbage"], 0),
    ],
)
def test_the_pre_commit_entry_reads_pushes_from_its_variables_or_stdin(
    env: dict[str, str], lines: list[str], expected: int
) -> None:
    from tracker.push.prepush import pushed_shas

    assert len(pushed_shas(env, lines, "main")) == expected


def test_pre_commit_without_a_to_ref_resolves_the_local_branch() -> None:
    """pre-commit's push of a history with a root commit (the first push to an empty remote)
    sets only the local and remote branch."""
    from tracker.push.prepush import pushed_shas

    env = {"PRE_COMMIT_LOCAL_BRANCH": "HEAD", "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main"}
    asked: list[str] = []

    def resolve(ref: str) -> str:
        asked.append(ref)
        return "c" * 40

    assert pushed_shas(env, [], "main", resolve) == ["c" * 40] and asked == ["HEAD"]
    other = {**env, "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/dev"}
    assert pushed_shas(other, [], "main", resolve) == [] and asked == ["HEAD"]


@pytest.mark.slow
def test_pre_commit_records_the_first_push_to_an_empty_remote(tmp_path: Path) -> None:
    from tests.support.gitrepo import base_env, git

    env = base_env()
    remote, work = tmp_path / "empty.git", tmp_path / "fresh"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote), env=env)
    git(tmp_path, "clone", "-q", str(remote), str(work), env=env)
    repo = Repo(work, remote, env)
    entry = f"{tracker_python()} -I -m tracker.push.prepush"
    (work / ".pre-commit-config.yaml").write_text(
        "repos:\n" + PRE_COMMIT_ITEM.replace("entry: tracker-pre-push", f"entry: {entry}") + "\n"
    )
    env = {**env, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"],
        cwd=work, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    sha = repo.commit("the very first commit")
    done = subprocess.run(
        ["git", "push", "-u", "origin", "main"], cwd=work, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert repo.remote_head() == sha
    wait_until(lambda: confirmed(repo, sha))


def test_a_hook_installed_by_the_command_calls_the_confirmer_door_and_records_a_push(
    repo: Repo,
) -> None:
    """The kept door: `tracker hooks install` writes a hook that runs `python -I -m
    tracker.confirm` (as hooks installed by earlier releases do), and a push through it is
    recorded and confirmed by that confirmer (nothing here takes the spool in)."""
    done = subprocess.run(
        [tracker_python(), "-I", "-m", "tracker", "hooks", "install"],
        cwd=repo.work, env=repo.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hook = repo.common / "hooks" / "pre-push"
    assert done.stdout.strip() == f"installed {hook}"
    assert "-I -m tracker.confirm" in hook.read_text()
    sha = repo.commit()
    assert repo.push("origin", "main").returncode == 0
    wait_until(lambda: confirmed(repo, sha))
