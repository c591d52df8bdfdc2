"""Only `tracker/clock.py` reads the time or sleeps (STYLE.md, "side effects stay at the edges").

Every module under `tracker/` is parsed with `ast`; a reference to a clock-reading or sleeping
function of the standard library (called or passed along, under any import alias) outside
`clock.py` fails, unless it is listed below with a reason. Everything that waits takes a `Clock`,
so a test can run a whole deployment in simulated time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tracker"

FORBIDDEN = {
    "time.time",
    "time.time_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.sleep",
    "datetime.datetime.now",
    "datetime.datetime.utcnow",
    "datetime.datetime.today",
    "datetime.date.today",
}

# (module relative to tracker/, forbidden name) -> why it may stay. Keep this list short: an
# entry that no longer matches anything fails too, so fixed offenders leave the list.
ALLOWED: dict[tuple[str, str], str] = {
    ("clock.py", "time.time"): "the clock itself",
    ("clock.py", "time.monotonic"): "the clock itself",
    ("clock.py", "time.sleep"): "the clock itself",
}


def _qualify(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it stands for, from the module's imports (aliases included)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def offences(source: str) -> Iterator[tuple[int, str]]:
    """(line, qualified name) of every forbidden reference in `source`."""
    tree = ast.parse(source)
    names = _qualify(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in FORBIDDEN:
                    yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            parts = _dotted(node)
            if parts is None or parts[0] not in names:
                continue
            qualified = ".".join([names[parts[0]], *parts[1:]])
            if qualified in FORBIDDEN and not isinstance(node, ast.Name):
                yield node.lineno, qualified


def found() -> dict[tuple[str, str], list[int]]:
    seen: dict[tuple[str, str], list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for line, name in offences(path.read_text(encoding="utf-8")):
            seen.setdefault((module, name), []).append(line)
    return seen


def test_only_the_clock_reads_the_time_or_sleeps() -> None:
    offenders = {
        f"tracker/{module}:{lines[0]} uses {name}"
        for (module, name), lines in found().items()
        if (module, name) not in ALLOWED
    }
    assert not offenders, "take a Clock (tracker.clock) instead:\n" + "\n".join(sorted(offenders))


def test_every_allowed_use_still_exists() -> None:
    stale = set(ALLOWED) - set(found())
    assert not stale, f"drop these entries from ALLOWED, they match nothing now: {sorted(stale)}"


def test_every_allowed_use_has_a_reason() -> None:
    assert all(reason.strip() for reason in ALLOWED.values())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time\ntime.time()", ["time.time"]),
        ("import time as t\nt.sleep(1)", ["time.sleep"]),
        ("from time import monotonic\nmonotonic()", ["time.monotonic"]),
        ("from time import sleep as nap\nnap(1)", ["time.sleep"]),
        ("from datetime import datetime\ndatetime.now()", ["datetime.datetime.now"]),
        ("import datetime\ndatetime.datetime.utcnow()", ["datetime.datetime.utcnow"]),
        ("from datetime import datetime as dt\ndt.now(tz=None)", ["datetime.datetime.now"]),
        ("import time\nclock = time.monotonic", ["time.monotonic"]),
        ("from datetime import UTC, datetime\ndatetime.fromtimestamp(0, UTC)", []),
        ("import time\ntime.strftime('%Y')", []),
        ("from tracker.clock import SYSTEM_CLOCK\nSYSTEM_CLOCK.now()", []),
        ("def now():\n    return 1\nnow()", []),
    ],
)
def test_the_checker_sees_through_aliases(source: str, expected: list[str]) -> None:
    assert [name for _, name in offences(source)] == expected
