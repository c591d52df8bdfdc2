"""One check of `tracker doctor` (`Check`): shared by the single-machine checks (`doctor`) and
fleet mode's (`doctor_fleet`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One check: its human line (`message`), what to do (`fix`) and the facts (`detail`)."""

    name: str
    level: Level
    message: str
    fix: str | None = None
    exit_code: int = 0  # what this check's failure means for the whole run
    detail: Mapping[str, Any] = field(default_factory=dict)
    more: tuple[tuple[str, str], ...] = ()  # (key, value) lines shown under the check

    @property
    def ok(self) -> bool:
        return self.level == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "level": self.level,
            "message": self.message,
            "fix": self.fix,
            "exit_code": self.exit_code,
            "detail": dict(self.detail),
        }
