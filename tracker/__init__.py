"""tracker: follow every push to the deployed branch until it is live or has failed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Tracker", "__version__"]

if TYPE_CHECKING:
    from tracker.api import Tracker


def __getattr__(name: str) -> Any:
    # Lazy, so that the push hook's confirmer importing `tracker.store` pays for nothing else.
    if name == "Tracker":
        from tracker.api import Tracker

        return Tracker
    raise AttributeError(name)
