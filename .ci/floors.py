"""The floor of every dependency, from pyproject.toml, for the CI run that installs them all.

`python .ci/floors.py constraints` prints `name==floor` for each runtime dependency and for the
test tools the quick suite needs; `python .ci/floors.py check` (in the floor venv) fails unless
each is installed at exactly that version.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

QUICK_TOOLS = {"pytest", "pytest-timeout"}  # what the quick suite needs from the test extra
_FLOOR = re.compile(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)")


def floors() -> dict[str, str]:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    tools = [r for r in project["optional-dependencies"]["test"] if _name(r) in QUICK_TOOLS]
    found = {}
    for requirement in [*project["dependencies"], *tools]:
        match = _FLOOR.fullmatch(requirement.replace(" ", ""))
        if not match:
            raise SystemExit(f"{requirement!r}: every dependency needs a plain floor (name>=X.Y)")
        found[match[1]] = match[2]
    return found


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]


def main(mode: str) -> int:
    if mode == "constraints":
        for name, floor in floors().items():
            print(f"{name}=={floor}")
        return 0
    wrong = {n: version(n) for n, f in floors().items() if version(n) != f}
    for name, installed in wrong.items():
        print(f"{name} {installed} is installed, not its floor {floors()[name]}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
