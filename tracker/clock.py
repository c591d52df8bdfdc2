"""The only place that reads the time or sleeps.

Everything that waits takes a `Clock`, so a whole eight-minute deployment can run in a test in
milliseconds of real time with `FakeClock`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time in epoch seconds, a monotonic reading, and a way to wait."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Simulated time: `sleep` advances the clock at once instead of waiting.

    Thread-safe, so a simulated platform served from another thread can share it.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        return self.now()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._t += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds


SYSTEM_CLOCK = SystemClock()

# How far the platform's clock may be from ours (SPEC §3): a platform time outside
# [our push - skew, our detection + skew] is not trusted, and a re-pushed commit's deployment is
# one created at or after the push, give or take this.
MAX_CLOCK_SKEW_S = 5.0


def iso(ts: float) -> str:
    """Epoch seconds as UTC ISO-8601 with millisecond precision and a `Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float | None:
    """Parse an ISO-8601 time (a `Z` or an offset) to epoch seconds; None when unset or bad.

    DigitalOcean writes Go's zero time `0001-01-01T00:00:00Z` for "unset".
    """
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(text)  # Python 3.11 reads a `Z`
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
