"""The simulator deploys a user's own repository: each new tip of its branch, as App Platform's
auto-deploy does; and the README's "try it on your own repository" steps, run as written.

Real repositories with bare remotes, the simulator as a real process, the installed hook, a real
`git push`, and `tracker wait` reaching the verdict.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitrepo import ROOT, Repo, make_repo, wait_until
from tracker.sim import AutoDeploy, SimulatedPlatform, Timings, main

FAST = Timings(pending_build_s=0.1, build_s=0.3, pending_deploy_s=0.1, deploy_s=0.3)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path)


@pytest.fixture
def platform() -> Iterator[SimulatedPlatform]:
    with SimulatedPlatform() as sim:
        yield sim


def test_each_new_tip_of_a_bare_remote_is_deployed_once(
    repo: Repo, platform: SimulatedPlatform
) -> None:
    deploy = AutoDeploy(platform, repo.remote, timings=FAST)
    assert deploy.ref == "refs/heads/main"
    assert deploy.check() is None, "what was there before it started is not deployed again"
    sha = repo.commit("ship it")
    repo.git("push", "-q", "origin", "HEAD:main")
    done = deploy.check()
    assert done is not None and done.sha == sha and done.outcome == "active"
    assert deploy.check() is None, "one deployment per tip"
    assert wait_until(lambda: platform.phase(done.deployment_id) == "ACTIVE", timeout=10)


def test_a_clone_is_deployed_when_its_push_succeeds_not_when_it_commits(
    repo: Repo, platform: SimulatedPlatform
) -> None:
    deploy = AutoDeploy(platform, repo.work, timings=FAST)
    assert deploy.ref == "refs/remotes/origin/main"
    repo.commit("only local")
    assert deploy.check() is None
    repo.git("push", "-q")
    assert deploy.check() is not None
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("another branch")
    repo.git("push", "-q", "origin", "feature")
    assert deploy.check() is None, "only the deployed branch is watched"


@pytest.mark.parametrize("outcome", ["build_error", "deploy_error", "canceled"])
def test_a_commit_message_asks_for_a_failure(
    repo: Repo, platform: SimulatedPlatform, outcome: str
) -> None:
    deploy = AutoDeploy(platform, repo.remote, timings=FAST)
    repo.commit(f"break it [sim: {outcome}]")
    repo.git("push", "-q", "origin", "HEAD:main")
    done = deploy.check()
    assert done is not None and done.outcome == outcome
    final = "CANCELED" if outcome == "canceled" else "ERROR"
    assert wait_until(lambda: platform.phase(done.deployment_id) == final, timeout=10)


def test_the_watching_thread_deploys_a_push_and_stops(
    repo: Repo, platform: SimulatedPlatform
) -> None:
    seen: list[str] = []
    deploy = AutoDeploy(
        platform, repo.remote, interval=0.05, timings=FAST, on_deploy=lambda d: seen.append(d.sha)
    ).start()
    try:
        sha = repo.commit("watched")
        repo.git("push", "-q", "origin", "HEAD:main")
        wait_until(lambda: seen == [sha], timeout=10)
    finally:
        deploy.stop()
    assert [d.sha for d in deploy.deployed] == [sha]


def test_a_repo_that_is_not_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["--repo", str(tmp_path)]) == 64


# -- the README's steps -------------------------------------------------------------------------


def readme_blocks(after: str, count: int) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.split("```")[0] for b in text[text.index(after) :].split("```sh\n")[1 : count + 1]]


class Simulator:
    """`python -m tracker.sim ...` as a real process; its stdout read line by line."""

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str], stdin: int = subprocess.DEVNULL
    ) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, prefix: str, timeout: float = 120.0) -> str:
        """The first line starting with `prefix`; AssertionError after `timeout`."""

        def found() -> str | None:
            while not self.lines.empty():
                self.seen.append(self.lines.get())
            return next((line for line in self.seen if line.startswith(prefix)), None)

        return str(wait_until(found, timeout=timeout))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        return self.proc.wait(timeout=120)


def test_the_readmes_try_it_on_your_own_repository_steps(repo: Repo) -> None:
    start, push = readme_blocks("### Try it on your own repository", 2)
    assert start.strip() == "python -m tracker.sim --repo ."
    venv_bin = str(Path(sys.executable).parent)
    assert (Path(venv_bin) / "tracker").exists(), "the tracker command is installed beside python"
    env = dict(repo.env, PATH=venv_bin + os.pathsep + repo.env["PATH"])
    # the defaults as a user has them: the informed schedule, cold (no history in this log)

    sim = Simulator([sys.executable, *start.split()[1:]], repo.work, env)
    try:
        sim.until("# Ctrl-C to stop")
        exports = [line for line in sim.seen if line.startswith("export ")]
        assert [e.split("=")[0] for e in exports] == [
            "export DIGITALOCEAN_TOKEN", "export TRACKER_DO_API_URL", "export TRACKER_DO_APP_ID"
        ]  # fmt: skip
        (placeholder,) = [line for line in push.splitlines() if line.startswith("export ")]
        script = push.replace(placeholder, "\n".join(exports))
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=repo.work, env=env, capture_output=True,
            text=True, timeout=300, stdin=subprocess.DEVNULL,  # the steps' wait is at most 2 min
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout, done.stderr)
        head = repo.git("rev-parse", "HEAD").stdout.strip()
        assert sim.until("# deploying ") == f"# deploying {head[:7]}: active"
        assert "succeeded" in done.stdout, done.stdout
        status = subprocess.run(
            ["tracker", "status", "--json"], cwd=repo.work, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0 and '"state": "succeeded"' in status.stdout
    finally:
        assert sim.interrupt() == 0


# Ctrl-C reaches a process, and the kernel hands it to any of its threads that does not block
# it: here the HTTP server's, the follower's, or a request's. Python runs its handler on the main
# thread only, at its next bytecode; a main thread waiting without a timeout never gets there.
SIGINT_ON_ANOTHER_THREAD = """
import signal, sys, threading
from tracker.sim import main

def kick():
    sys.stdin.readline()
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread, not the main one

threading.Thread(target=kick, daemon=True).start()
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("follow", [False, True], ids=["demo", "repo"])
def test_ctrl_c_stops_the_simulator_when_another_thread_receives_it(
    repo: Repo, follow: bool
) -> None:
    argv = [sys.executable, "-c", SIGINT_ON_ANOTHER_THREAD, *(["--repo", "."] if follow else [])]
    sim = Simulator(argv, repo.work, repo.env, stdin=subprocess.PIPE)
    try:
        sim.until("# Ctrl-C to stop")
        assert sim.proc.stdin is not None
        sim.proc.stdin.write("go\n")
        sim.proc.stdin.flush()
        assert sim.proc.wait(timeout=60) == 0
    finally:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.wait(timeout=30)
