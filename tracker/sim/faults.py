"""Injected misbehaviour: what `SimulatedPlatform.inject` scripts for the next requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "429", "5xx", "malformed", "wrong_shape", "truncated", "huge", "slow", "reset", "exhausted"
]  # fmt: skip


@dataclass
class Fault:
    """A scripted misbehaviour for the next matching requests (see `SimulatedPlatform.inject`)."""

    kind: FaultKind
    times: int = 1
    after: int = 0
    retry_after: float | None = None
    reset_in_s: float = 30.0
    delay_s: float = 2.0
    status: int = 503
    size_bytes: int = 8 * 1024 * 1024
    path: str | None = None

    def matches(self, path: str, api: bool) -> bool:
        return api if self.path is None else self.path in path
