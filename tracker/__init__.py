"""tracker: follow every push to the deployed branch until it is live or has failed.

The public surface is what `__all__` names; each name is imported on first use, so that the
push hook's confirmer, which imports `tracker.log.sqlite`, pays for nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "Tracker": "tracker.api",
    "DeploymentStatus": "tracker.read.status",
    "EventRecord": "tracker.read.status",
    "AttemptRecord": "tracker.read.status",
    "Stats": "tracker.read.stats",
    "RebuildReport": "tracker.log.sqlite",
    "TrackerError": "tracker.errors",
    "UsageError": "tracker.errors",
    "ConfigError": "tracker.errors",
    "LogError": "tracker.errors",
    "LockTimeoutError": "tracker.errors",
    "SourceUnavailableError": "tracker.errors",
}
__all__ = [
    "AttemptRecord",
    "ConfigError",
    "DeploymentStatus",
    "EventRecord",
    "LockTimeoutError",
    "LogError",
    "RebuildReport",
    "SourceUnavailableError",
    "Stats",
    "Tracker",
    "TrackerError",
    "UsageError",
    "__version__",
]

if TYPE_CHECKING:
    from tracker.api import Tracker
    from tracker.errors import (
        ConfigError,
        LockTimeoutError,
        LogError,
        SourceUnavailableError,
        TrackerError,
        UsageError,
    )
    from tracker.log.sqlite import RebuildReport
    from tracker.read.stats import Stats
    from tracker.read.status import AttemptRecord, DeploymentStatus, EventRecord


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
