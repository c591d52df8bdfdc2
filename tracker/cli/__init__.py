"""The command line: the only code that prints or picks an exit code.

`main` is the `tracker` entry point (and `python -m tracker`'s). A plain `tracker status [REF]
[--json]` is answered by `core` without cyclopts; any other command line imports the app, on
call, so that a module of this wing (the text of a verdict, say) can be imported without
cyclopts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from tracker.cli.core import main_status

    tokens = list(sys.argv[1:] if argv is None else argv)
    code = main_status(tokens)
    if code is not None:
        return code
    from tracker.cli.app import main as run

    return run(tokens)
