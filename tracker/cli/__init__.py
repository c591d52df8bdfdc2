"""The command line: the only code that prints or picks an exit code.

`main` is the `tracker` entry point; it imports the app on call, so that a module of this wing
(the text of a verdict, say) can be imported without cyclopts.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from tracker.cli.app import main as run

    return run(argv)
