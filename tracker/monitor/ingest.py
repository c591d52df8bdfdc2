"""`tracker ingest`: a deployment notification from the team's webhook system, as events.

Pure: validates the notification and says which events it means; the caller appends them.
Malformed input raises `UsageError` (exit 64) before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracker.clock import iso
from tracker.errors import UsageError
from tracker.events import (
    DeploymentFailed,
    DeploymentSucceeded,
    DeploymentSuperseded,
    Event,
    NotificationIngested,
)
from tracker.gitutil import FULL_SHA

PHASES = frozenset(
    {
        "UNKNOWN",
        "PENDING_BUILD",
        "BUILDING",
        "PENDING_DEPLOY",
        "DEPLOYING",
        "ACTIVE",
        "SUPERSEDED",
        "ERROR",
        "CANCELED",
    }
)
STATUS_PHASE = {
    "success": "ACTIVE",
    "succeeded": "ACTIVE",
    "failed": "ERROR",
    "error": "ERROR",
    "canceled": "CANCELED",
    "cancelled": "CANCELED",
}
_MAX_TEXT = 200
_MAX_LINES = 200


@dataclass(frozen=True)
class Notification:
    """The events one notification means: the raw fact, and a terminal outcome if it has one."""

    sha: str
    raw: NotificationIngested
    outcome: Event | None
    key: str | None


def events_for(note: Mapping[str, Any], *, now: float) -> Notification:
    """Validate `note` and turn it into events (UsageError on anything malformed)."""
    sha = _text(note, "sha", required=True).lower()
    if not FULL_SHA.match(sha):
        raise UsageError(f"'sha' must be a full 40-hex commit SHA, not {sha[:50]!r}")
    status = _text(note, "status")
    phase = _text(note, "phase").upper()
    if not status and not phase:
        raise UsageError("the notification needs 'status' or 'phase'")
    if phase and phase not in PHASES:
        raise UsageError(f"unknown phase {phase!r}; expected one of {', '.join(sorted(PHASES))}")
    if not phase:
        phase = STATUS_PHASE.get(status.lower(), "")
    deployment_id = _text(note, "deployment_id") or None
    source = _text(note, "source") or "webhook"
    log_tail = _lines(note.get("log_tail"))
    raw = NotificationIngested(
        status=status or None, phase=phase or None, deployment_id=deployment_id, source=source
    )
    outcome: Event | None = None
    detected = iso(now)
    origin = f"ingest:{source}"
    if phase == "ACTIVE":
        outcome = DeploymentSucceeded(deployment_id, "ACTIVE", detected_at=detected, source=origin)
    elif phase in {"ERROR", "CANCELED"}:
        outcome = DeploymentFailed(
            deployment_id,
            phase,
            reason={"code": "", "message": f"{source} reported {status or phase}"},
            log_tail=log_tail,
            detected_at=detected,
            source=origin,
        )
    elif phase == "SUPERSEDED":
        outcome = DeploymentSuperseded(None, None, detected_at=detected, source=origin)
    key = f"ingest:{sha}:{deployment_id or '-'}:{phase}" if outcome else None
    return Notification(sha, raw, outcome, key)


def _text(note: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = note.get(name)
    if value is None:
        if required:
            raise UsageError(f"the notification has no {name!r}")
        return ""
    if not isinstance(value, str) or len(value) > _MAX_TEXT or not value.isprintable():
        raise UsageError(f"{name!r} must be a short printable string")
    return value.strip()


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError("'log_tail' must be a string or a list of strings")
    return [line[:1000] for line in value[-_MAX_LINES:]]


def status_for_notification(payload: str) -> dict[str, Any]:
    """Parse a notification's JSON text into a dict; `UsageError` when it is not an object."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise UsageError(f"the notification is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError("the notification nests too deeply (it is one flat JSON object)") from None
    if not isinstance(value, dict):
        raise UsageError("the notification must be a JSON object")
    return value
