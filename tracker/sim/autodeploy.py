"""App Platform's auto-deploy, simulated for a repository on disk: one deployment per new tip.

App Platform watches a repository's branch and deploys each commit pushed to it. `AutoDeploy`
does the same for the simulated platform: it polls `git rev-parse` of the branch in a repository
the user names (a bare remote, whose `refs/heads/BRANCH` moves on each push, or a clone, whose
`refs/remotes/REMOTE/BRANCH` moves when `git push` succeeds) and scripts a deployment of each new
tip. So `python -m tracker.sim --repo .` lets anyone try the tracker on their own repository
without credentials. Standard library only.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, get_args

from tracker.gitutil import git
from tracker.sim.timeline import Outcome

if TYPE_CHECKING:
    from collections.abc import Callable


# A commit message can ask for a failure: "[sim: build_error]", "[sim: deploy_error]", ...
_ASKED = re.compile(r"\[sim:\s*(\w+)\s*\]")


class Platform(Protocol):
    """What an auto-deploy needs of the platform (`tracker.sim.SimulatedPlatform` is one)."""

    def add_deployment(
        self,
        sha: str | None,
        *,
        pending_build_s: float,
        build_s: float,
        pending_deploy_s: float,
        deploy_s: float,
        outcome: Outcome,
    ) -> str: ...


@dataclass(frozen=True)
class Timings:
    """How long each stage of a simulated deployment takes, in seconds."""

    pending_build_s: float = 1.0
    build_s: float = 4.0
    pending_deploy_s: float = 1.0
    deploy_s: float = 4.0


@dataclass(frozen=True)
class Deployed:
    """A deployment scripted for a new tip."""

    sha: str
    deployment_id: str
    outcome: str


class AutoDeploy:
    """Deploy every new tip of `branch` in the repository at `repo` on `platform`."""

    def __init__(
        self,
        platform: Platform,
        repo: Path | str,
        *,
        branch: str = "main",
        remote: str = "origin",
        interval: float = 0.5,
        timings: Timings = Timings(),
        on_deploy: Callable[[Deployed], None] | None = None,
    ) -> None:
        self.platform, self.repo = platform, Path(repo)
        self.interval, self.timings = interval, timings
        self.on_deploy = on_deploy
        self.ref = self._ref(branch, remote)
        self.deployed: list[Deployed] = []
        self._last = self.tip()  # what is there already was deployed before we started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ref(self, branch: str, remote: str) -> str:
        bare = git(["rev-parse", "--is-bare-repository"], cwd=self.repo)
        if bare is None:
            raise ValueError(f"{self.repo} is not a git repository")
        return f"refs/heads/{branch}" if bare == "true" else f"refs/remotes/{remote}/{branch}"

    def tip(self) -> str | None:
        """The commit the watched branch points at now (None before its first push)."""
        return git(["rev-parse", "-q", "--verify", f"{self.ref}^{{commit}}"], cwd=self.repo)

    def check(self) -> Deployed | None:
        """Script a deployment when the branch has a new tip since the last check."""
        tip = self.tip()
        if tip is None or tip == self._last:
            return None
        self._last = tip
        outcome = self._outcome(tip)
        t = self.timings
        deployment_id = self.platform.add_deployment(
            tip, pending_build_s=t.pending_build_s, build_s=t.build_s,
            pending_deploy_s=t.pending_deploy_s, deploy_s=t.deploy_s, outcome=outcome,
        )  # fmt: skip
        done = Deployed(tip, deployment_id, outcome)
        self.deployed.append(done)
        if self.on_deploy is not None:
            self.on_deploy(done)
        return done

    def _outcome(self, sha: str) -> Outcome:
        message = git(["log", "-1", "--format=%B", sha], cwd=self.repo) or ""
        asked = _ASKED.search(message)
        if asked and asked[1] in get_args(Outcome):
            return asked[1]  # type: ignore[return-value]
        return "active"

    # -- the watching thread ----------------------------------------------------------------

    def start(self) -> AutoDeploy:
        self._thread = threading.Thread(target=self._run, name="sim-autodeploy", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; waits at most `timeout` for the thread to end (a daemon: one caught in a
        slow git call is left to finish, or to die with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()
