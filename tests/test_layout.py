"""The house's rules, read from the code's own imports (README "Development" draws the tree).

Every module of `tracker/` is parsed with `ast`; its imports (top level and inside functions alike:
a lazy import is still an arrow) are held against the wings' order. The rules:

- the wings import only what sits below them (`WINGS` below), so no import runs back up a layer,
  and there is no import circle between modules;
- nothing outside `tracker/log/` touches `sqlite3`, `sqlite_utils` or the lock's `fcntl`;
- only `tracker/cli/` prints or picks an exit code (`print`, `sys.exit`, writes to
  `sys.stdout`/`sys.stderr`), apart from the three process entry points named in `PRINTERS`,
  which must stay light and so cannot import the CLI.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracker"

# wing -> the wings it may import (the foundation, `""`, is the package's top-level modules).
# `read` sits below `log`: the answers' shapes and the queries a backend must answer
# (`StatsQueries`) are declared there, and each backend of the log implements them.
WINGS: dict[str, set[str]] = {
    "": {""},
    "read": {"", "read"},
    "log": {"", "read", "log"},
    "push": {"", "log", "push"},
    "monitor": {"", "log", "read", "monitor"},
    "api": {"", "log", "read", "push", "monitor"},
    "sim": {"", "sim"},
    "cli": {"", "log", "read", "push", "monitor", "api", "sim", "cli"},
}
# modules that may print or set an exit code outside cli/, and why
PRINTERS = {
    "tracker.push.confirm": "the detached confirmer's usage line (python -I -m tracker.confirm)",
    "tracker.push.prepush": "the pre-commit framework's entry point: stays off cyclopts",
    "tracker.sim.server": "python -m tracker.sim, a program of its own",
}
LOG_ONLY = {"sqlite3", "sqlite_utils"}
# what only the log may reach into: its connection, its lock, a timeout rewritten after opening
# (another object's, that is: `self._lock` of a class of its own is its own business)
LOG_INTERNALS = re.compile(r"\b(?!self\b)\w+\.(_conn\b|_lock\b|lock_timeout =|reading\()")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


MODULES = _modules()


def _wing(module: str) -> str:
    parts = module.split(".")
    if module in {"tracker", "tracker.__main__"}:
        return "cli"  # the doors: `tracker` re-exports lazily, `python -m tracker` runs the CLI
    if module == "tracker.api":
        return "api"
    if module == "tracker.confirm":
        return "push"  # the door installed hooks call
    return parts[1] if len(parts) > 2 or module in _packages() else ""


def _imports(tree: ast.Module, module: str) -> Iterator[tuple[str, int]]:
    package = module if module in _packages() else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def _packages() -> set[str]:
    return {name for name in MODULES if (PACKAGE.parent / name.replace(".", "/")).is_dir()}


def _internal(tree: ast.Module, module: str) -> set[str]:
    runtime = ast.Module(body=[n for n in tree.body if not _type_checking(n)], type_ignores=[])
    return {target for target, _ in _imports(runtime, module) if target in MODULES} - {module}


def _type_checking(node: ast.stmt) -> bool:
    """`if TYPE_CHECKING:` imports only the type checker runs: they draw no arrow."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in {
        "TYPE_CHECKING",
        "typing.TYPE_CHECKING",
    }


def test_every_import_runs_down_the_house_never_back_up() -> None:
    wrong = []
    for module, tree in MODULES.items():
        wing = _wing(module)
        for target in sorted(_internal(tree, module)):
            if target == "tracker" or _wing(target) in WINGS[wing]:
                continue
            wrong.append(f"{module} ({wing or 'foundation'}) imports {target} ({_wing(target)})")
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_circle() -> None:
    graph = {m: _internal(t, m) - {"tracker"} for m, t in MODULES.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("name", sorted(LOG_ONLY))
def test_only_the_log_touches_the_database_and_its_lock(name: str) -> None:
    touching = [
        f"{module}:{line}"
        for module, tree in MODULES.items()
        if not module.startswith("tracker.log")
        for target, line in _imports(tree, module)
        if target.split(".")[0] == name
    ]
    assert not touching, f"{name} imported outside tracker/log/: {touching}"


def test_nothing_outside_the_log_reaches_into_it() -> None:
    reaching = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "log" not in path.relative_to(PACKAGE).parts[:1]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if LOG_INTERNALS.search(line) and not line.lstrip().startswith("#")
    ]
    private = [
        f"{module}: from {target}"
        for module, tree in MODULES.items()
        if not module.startswith("tracker.log")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tracker.log")
        for target in (
            f"{node.module} import {a.name}" for a in node.names if a.name.startswith("_")
        )
    ]
    assert not reaching + private, "\n".join(reaching + private)


def _prints(tree: ast.Module) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called in {
                "print",
                "say",
                "sys.exit",
                "exit",
                "sys.stdout.write",
                "sys.stderr.write",
            }:
                yield node.lineno
        elif isinstance(node, ast.Raise) and node.exc is not None:
            if ast.unparse(node.exc).startswith("SystemExit("):
                yield node.lineno


def test_only_the_cli_prints_or_picks_an_exit_code() -> None:
    outside = [
        f"{module}:{line}"
        for module, tree in MODULES.items()
        if _wing(module) != "cli" and module not in PRINTERS
        for line in _prints(tree)
        if not _is_main_guard(tree, line)
    ]
    assert not outside, "printing or exiting outside tracker/cli/: " + ", ".join(outside)


def _is_main_guard(tree: ast.Module, line: int) -> bool:
    """`if __name__ == "__main__": raise SystemExit(main())` is how a module is run, not output."""
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test):
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end:
                return True
    return False
