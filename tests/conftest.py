"""Shared fixtures, and the rule that CI may not skip what needs a service.

Tests marked `mysql` or `npm` skip with a clear reason where the service is missing; under
`CI=true` (set by `.ci/run`) such a skip is turned into a failure, so CI always runs them.

A module that needs another `repo`, `clock` or `sim` than the ones here defines its own fixture
of that name, which pytest prefers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.support")  # the helpers' asserts explain themselves too

from tests.support.gitrepo import Repo, make_repo, tracker_python  # noqa: E402
from tests.support.mariadb_private import (  # noqa: E402, F401
    fresh_database,
    mariadb,
    private_mariadb,
    url,
)
from tests.support.simulated import SIM_TOKEN  # noqa: E402
from tracker.clock import FakeClock  # noqa: E402
from tracker.config import Settings, load_settings  # noqa: E402
from tracker.log.sqlite import SQLiteLog  # noqa: E402
from tracker.push.install import install  # noqa: E402
from tracker.sim import SimulatedPlatform  # noqa: E402

MUST_RUN = ("mysql", "npm")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("CI") == "true" or os.environ.get("TRACKER_TEST_STRICT") == "1"
    if strict and report.skipped and any(item.get_closest_marker(m) for m in MUST_RUN):
        report.outcome = "failed"
        report.longrepr = f"CI must not skip this test (it needs a service): {report.longrepr}"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own tracker settings or credentials."""
    for name in list(os.environ):
        if name.startswith(("TRACKER_", "DB_")) or name in {"DIGITALOCEAN_TOKEN", "NO_COLOR"}:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "log" / "events.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteLog]:
    with SQLiteLog(db_path) as s:
        yield s


@pytest.fixture
def no_sources() -> Settings:
    return load_settings(None, env={})


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository with a bare remote and the tracker's hook installed."""
    made = make_repo(tmp_path)
    install(made.work, python=tracker_python())
    return made


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatedPlatform]:
    """The simulated platform on the test's `clock`, accepting `SIM_TOKEN`."""
    with SimulatedPlatform(clock=clock, token=SIM_TOKEN) as platform:
        yield platform
