"""The one place text for a person is written, and the one function that makes it safe (SPEC §5).

Text from outside (build logs, failure reasons, step names, phases, deployment ids, error bodies,
ingested log tails, database values) may hold control characters that a terminal acts on: set
the window title (OSC 0), write the clipboard (OSC 52), clear the screen, or make the terminal
answer (DSR). `printable` shows every C0 and C1 control character and DEL escaped (`\\x1b`,
`\\x9b`, `\\t`, `\\r`), keeping only line breaks; `say` writes everything through it.

Our own colours survive because `style` marks them with a nonce drawn when the process starts,
which no text from outside can know: `say` escapes everything else first, then turns only those
marks into ANSI codes. `--json` output is not written here; JSON escapes control characters
itself.
"""

from __future__ import annotations

import re
import secrets
import sys
from typing import TextIO

_NONCE = secrets.token_hex(8)
_MARK = re.compile("\x00" + _NONCE + r"([0-9;]{1,8})\x00")
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every C0 but \n, DEL, every C1
_SHORT = {"\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """`text` with every control character but the line break shown as an escape."""
    return _CONTROL.sub(lambda m: _SHORT.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


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
