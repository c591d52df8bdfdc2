"""Small pieces of wording shared by the projections (pure folds) and the text for people.

Standard library only, no clock and no I/O: `tracker.projections` folds with these, and a replay
must give the same words as the append that first wrote them.
"""

from __future__ import annotations

import math


def seconds(value: float | None) -> str:
    """A duration rounded for a person: `6 s`, `2.5 s`, `45 s`, `3 min 12 s`, `1 h 02 min`.

    Never three decimals: under 10 s one decimal at most (none when it is whole), else whole
    seconds, minutes or hours."""
    if value is None or not math.isfinite(value):
        return "-"
    value = max(value, 0.0)
    if value < 9.95:
        text = f"{value:.1f}".removesuffix(".0")
        return f"{text} s"
    whole = round(value)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min" if secs == 0 else f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 connection error`, `18 connection errors`."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def clip(text: str, limit: int = 120) -> str:
    """`text` on one line and at most `limit` characters (an ellipsis says it was cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def timed_out_reason(waited_s: float, last_phase: str | None) -> str:
    """The reason of a `MonitorTimedOut`, as the projection keeps it."""
    seen = f"last phase {last_phase}" if last_phase else "no phase seen"
    return f"the monitor gave up after {seconds(waited_s)} ({seen})"
