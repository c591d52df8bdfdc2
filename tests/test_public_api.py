"""The package's public surface is exactly what `__all__` says, and importing it is light."""

from __future__ import annotations

import subprocess
import sys

import tracker


def test_every_name_in_all_is_exported_and_is_what_its_module_defines() -> None:
    assert sorted(tracker.__all__) == tracker.__all__
    assert set(tracker.__all__) == {*tracker._EXPORTS, "__version__"}
    for name in tracker.__all__:
        value = getattr(tracker, name)
        if name != "__version__":
            assert value.__name__ == name
            assert value.__module__.startswith("tracker.")
    assert {"Tracker", "DeploymentStatus", "EventRecord", "Stats", "RebuildReport"} <= set(
        tracker.__all__
    )
    assert issubclass(tracker.ConfigError, tracker.TrackerError)


def test_star_import_gives_exactly_all() -> None:
    found: dict[str, object] = {}
    exec("from tracker import *", found)
    assert sorted(k for k in found if k != "__builtins__") == tracker.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        tracker.SQLiteLog  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "SQLiteLog" in str(exc)
    else:
        raise AssertionError("tracker.SQLiteLog should not be public")


def test_importing_the_package_imports_no_command_line_or_network_code() -> None:
    probe = (
        "import sys, tracker; from tracker import Tracker, DeploymentStatus;"
        " heavy = [m for m in ('cyclopts', 'httpx', 'pymysql', 'sqlite_utils', 'tracker.cli.app')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
