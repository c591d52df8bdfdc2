"""What every command shares, without cyclopts: the log it is given, how an error becomes an exit
code, and the plain `tracker status` that answers without parsing a command line.

`Log` is what the meta app injects (`Parameter(parse=False)`): the `--db` it was given, and
`open()` to make the `Tracker` when the command is ready to use it (after its own arguments are
checked, so that a usage error is said before the log is touched). A command that does not
declare it (`hooks`, `demo`) gets nothing built.

`tracker status [REF] [--json]`, with `--db PATH` before it or not, is the command people and
agents run most: `plain_status` recognises exactly that and calls the same `status_command` the
cyclopts app does, without importing cyclopts (about half the time of the whole command). Any
other command line -- another option, `--help`, a token cyclopts would read differently -- is
parsed by the app.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker import __version__
from tracker.cli.output import say
from tracker.errors import TrackerError, UsageError

if TYPE_CHECKING:
    from tracker.api import Tracker
    from tracker.read.status import DeploymentStatus

USAGE = 64
INTERNAL = 70


@dataclass(frozen=True)
class Log:
    """The event log a command works on: `--db`, or the repository's (`TRACKER_DB`, SPEC §3)."""

    db: Path | None = None

    def open(self) -> Tracker:
        """The `Tracker` of the current repository; a broken settings file is said once here."""
        from tracker.api import Tracker

        tracker = Tracker.open(".", db=self.db)
        for problem in tracker.warnings:  # reads go on
            say(f"tracker: warning: {problem}", stream=sys.stderr)
        return tracker


def guarded(call: Callable[[], object], help_of: Callable[[], str]) -> int:
    """Run a command; its exit code, an error's (SPEC §4), or 70 for a bug, said on stderr."""
    try:
        result = call()
    except UsageError as exc:  # bad input to a command: point to that command's help
        return fail(USAGE, f"{exc} (run '{help_of()}')")
    except TrackerError as exc:
        return fail(exc.exit_code, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so, and where to look
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        return fail(
            INTERNAL,
            f"internal error: {type(exc).__name__}: {exc} (at {Path(where.filename).name}:"
            f"{where.lineno}; this is a bug in tracker {__version__}, please report it)",
        )
    if isinstance(result, bool) or not isinstance(result, int):
        return 0
    return result


def fail(code: int, message: str) -> int:
    say(f"tracker: error: {one_line(message, limit=500)}", stream=sys.stderr)
    return code


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(part.strip("│╭╮╰╯─ ") for part in text.splitlines() if part.strip("│╭╮╰╯─ "))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def decodable(token: str) -> bool:
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def colour() -> bool:
    from tracker.cli.text import use_colour

    return use_colour(sys.stdout)


# -- tracker status ---------------------------------------------------------------------------


def status_command(ref: str, *, as_json: bool, log: Log, offline: bool = False) -> int:
    with log.open() as tracker:
        st = tracker.status(ref, offline=offline)
    return print_status(st, as_json=as_json)


def print_status(st: DeploymentStatus, *, as_json: bool) -> int:
    if as_json:
        emit(status_json(st))
    else:
        from tracker.cli.text import status_text

        say(status_text(st, colour=colour()))
    return st.exit_code


def status_json(st: DeploymentStatus) -> dict[str, Any]:
    data = st.to_dict()
    data["recent_events"] = [e.to_dict() for e in st.recent_events]
    return data


def plain_status(tokens: Sequence[str]) -> tuple[str, bool, Log] | None:
    """`(ref, json, log)` when the tokens are `[--db PATH] status [REF] [--json]` (REF and
    `--json` in either order) and nothing else; None for anything the app must parse."""
    rest = list(tokens)
    db = None
    if rest[:1] == ["--db"]:
        if len(rest) < 2 or not rest[1] or rest[1].startswith("-"):
            return None
        db, rest = Path(rest[1]), rest[2:]
    if rest[:1] != ["status"]:
        return None
    words = rest[1:]
    as_json = words.count("--json") == 1
    refs = [w for w in words if w != "--json"]
    if words.count("--json") > 1 or len(refs) > 1:
        return None
    if any(not w or w.startswith("-") or not decodable(w) for w in refs):
        return None
    return (refs[0] if refs else "HEAD"), as_json, Log(db)


def main_status(tokens: Sequence[str]) -> int | None:
    """The exit code of a plain `tracker status` (see `plain_status`), or None to use the app."""
    plain = plain_status(tokens)
    if plain is None:
        return None
    ref, as_json, log = plain
    return guarded(
        lambda: status_command(ref, as_json=as_json, log=log), lambda: "tracker status --help"
    )
