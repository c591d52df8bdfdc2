"""The one place text for a person is written (SPEC §5).

`say` writes everything through `tracker.output.printable`, which shows every control character
from outside escaped. Our own colours survive because `style` marks them with a nonce drawn when
the process starts, which no text from outside can know: `say` escapes everything else first,
then turns only those marks into ANSI codes. `--json` output is not written here; JSON escapes
control characters itself.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TextIO

from tracker.output import printable

_NONCE = os.urandom(8).hex()  # what `secrets.token_hex(8)` draws, without importing `secrets`
_MARK = re.compile("\x00" + _NONCE + r"([0-9;]{1,8})\x00")


def style(text: str, code: str) -> str:
    """`text` to be shown with the SGR `code` (e.g. "1" bold, "32" green) by `say`."""
    return f"\x00{_NONCE}{code}\x00{text}\x00{_NONCE}0\x00"


def safe(text: str) -> str:
    """What `say` writes for `text`: outside control characters escaped, our styles as ANSI."""
    parts = _MARK.split(text)  # text, code, text, code, ..., text
    return "".join(f"\x1b[{p}m" if i % 2 else printable(p) for i, p in enumerate(parts))


def say(
    text: str = "",
    *,
    stream: TextIO | None = None,
    lead: str = "",
    end: str = "\n",
    flush: bool = False,
) -> None:
    """Write `text` for a person. `lead` and `end` are ours (a repaint's `\\r`), never escaped."""
    out = sys.stdout if stream is None else stream
    out.write(lead + safe(text) + end)
    if flush:
        out.flush()
