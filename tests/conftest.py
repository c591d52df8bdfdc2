"""Shared fixtures, and the rule that CI may not skip what needs a service.

Tests marked `mysql` or `npm` skip with a clear reason where the service is missing; under
`CI=true` (set by `.ci/run`) such a skip is turned into a failure, so CI always runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mariadb_private import fresh_database, mariadb, private_mariadb  # noqa: F401
from tracker.config import Settings, load_settings
from tracker.log.sqlite import SQLiteLog

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
