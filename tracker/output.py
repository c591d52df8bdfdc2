"""The one function that makes text from outside safe for a terminal (SPEC §5).

Text from outside (build logs, failure reasons, step names, phases, deployment ids, error bodies,
ingested log tails, database values) may hold control characters that a terminal acts on: set
the window title (OSC 0), write the clipboard (OSC 52), clear the screen, or make the terminal
answer (DSR). `printable` shows every C0 and C1 control character and DEL escaped (`\\x1b`,
`\\x9b`, `\\t`, `\\r`), keeping only line breaks. Standard library only, and no printing: any
wing may call it; `tracker.cli.output.say`, the one writer of text for people, writes
everything through it.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every C0 but \n, DEL, every C1
_SHORT = {"\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """`text` with every control character but the line break shown as an escape."""
    return _CONTROL.sub(lambda m: _SHORT.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
