"""The scripted timeline of a simulated deployment: when each stage starts and ends, and how.

Pure arithmetic on epoch seconds; `resolve` decides which deployments a newer one superseded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["active", "build_error", "deploy_error", "canceled", "superseded"]
ShaIn = Literal["both", "cause_details", "components"]
SupersedeOn = Literal["live", "created"]


@dataclass(frozen=True)
class Leaf:
    """One leaf step of `progress.steps`, with its scripted start and end (epoch seconds)."""

    path: str  # dotted, e.g. "build.components.web"
    start: float
    end: float
    component: str | None = None
    message_base: str | None = None


@dataclass
class Script:
    """A deployment's timeline; `end_at`/`end_phase` are resolved against newer deployments."""

    id: str
    sha: str | None
    created_at: float
    pending_build_s: float
    build_s: float
    pending_deploy_s: float
    deploy_s: float
    outcome: Outcome
    cancel_after_s: float
    sha_in: ShaIn
    component: str
    order: int
    end_at: float = 0.0
    end_phase: str = "ACTIVE"

    @property
    def build_start(self) -> float:
        return self.created_at + self.pending_build_s

    @property
    def build_end(self) -> float:
        return self.build_start + self.build_s

    @property
    def deploy_start(self) -> float:
        return self.build_end + self.pending_deploy_s

    @property
    def deploy_end(self) -> float:
        return self.deploy_start + self.deploy_s

    def scripted_end(self) -> tuple[float, str]:
        """When and how this deployment ends if nothing newer goes live first."""
        if self.outcome == "build_error":
            return self.build_end, "ERROR"
        if self.outcome == "deploy_error":
            return self.deploy_start + 0.9 * self.deploy_s, "ERROR"
        if self.outcome == "canceled":
            return self.created_at + self.cancel_after_s, "CANCELED"
        if self.outcome == "superseded":  # skipped while queued, whatever becomes of the newer
            return self.created_at + self.cancel_after_s, "SUPERSEDED"
        return self.deploy_end, "ACTIVE"

    def leaves(self) -> list[Leaf]:
        b0, b, d0, d = self.build_start, self.build_s, self.deploy_start, self.deploy_s
        return [
            Leaf("build.initialize", b0, b0 + 0.1 * b),
            Leaf("build.components.web", b0 + 0.1 * b, b0 + b, "web", "Building service"),
            Leaf("deploy.initialize", d0, d0 + 0.1 * d),
            Leaf(
                "deploy.components.web.deploy",
                d0 + 0.1 * d,
                d0 + 0.6 * d,
                "web",
                "Deploying service",
            ),
            Leaf(
                "deploy.components.web.wait",
                d0 + 0.6 * d,
                d0 + 0.9 * d,
                "web",
                "Waiting for service",
            ),
            Leaf("deploy.finalize", d0 + 0.9 * d, d0 + d),
        ]

    def phase_at(self, now: float) -> str:
        if now >= self.end_at:
            return self.end_phase
        if now < self.build_start:
            return "PENDING_BUILD"
        if now < self.build_end:
            return "BUILDING"
        return "PENDING_DEPLOY" if now < self.deploy_start else "DEPLOYING"

    def phase_since(self, now: float) -> float | None:
        """When the current phase began; None while still in the first phase (unset)."""
        starts = {
            "BUILDING": self.build_start,
            "PENDING_DEPLOY": self.build_end,
            "DEPLOYING": self.deploy_start,
        }
        phase = self.phase_at(now)
        return self.end_at if now >= self.end_at else starts.get(phase)

    def stage_ran(self, stage: str, now: float) -> bool:
        start = self.build_start if stage == "BUILD" else self.deploy_start
        return start <= min(now, self.end_at) and start < self.end_at


def resolve(scripts: list[Script], supersede_on: SupersedeOn) -> None:
    """Mark as SUPERSEDED every deployment that a newer one replaced before it ended.

    `live`: when a newer deployment goes ACTIVE first; `created`: as soon as a newer one
    appears, whatever becomes of it.
    """
    replaced_at: list[float] = []
    for s in sorted(scripts, key=lambda s: (s.created_at, s.order), reverse=True):
        end, phase = s.scripted_end()
        newer = min(replaced_at, default=math.inf)
        if newer < end:
            end, phase = newer, "SUPERSEDED"
        s.end_at, s.end_phase = end, phase
        if supersede_on == "created":
            replaced_at.append(s.created_at)
        elif phase == "ACTIVE":
            replaced_at.append(end)
