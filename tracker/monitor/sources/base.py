"""The port every deployment source implements, and what one poll of it learns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from tracker.mysqlwire import ErrorKind as ErrorKind  # where it is defined (the log's MySQL too)

# The phases of a DigitalOcean deployment; the MySQL source maps its statuses onto these too.
TERMINAL_PHASES = frozenset({"ACTIVE", "ERROR", "CANCELED", "SUPERSEDED"})

Outcome = Literal["succeeded", "failed", "canceled", "superseded"]


@dataclass(frozen=True)
class Observation:
    """What one poll of one source learned about one commit.

    `api_calls` counts every HTTP request made to the platform's API during this poll (pages,
    retries inside the poll, the successor lookup); `db_queries` counts database queries.
    """

    source: str
    ok: bool
    found: bool = False
    phase: str | None = None  # DigitalOcean phase, or the phase a MySQL status maps to
    status: str | None = None  # the raw status string of the MySQL row
    deployment_id: str | None = None
    http_status: int | None = None
    latency_ms: float = 0.0
    ratelimit_remaining: int | None = None
    ratelimit_reset: float | None = None  # epoch seconds, from `ratelimit-reset`
    retry_after_s: float | None = None  # from `retry-after` on a 429
    error: str | None = None  # short, human, never a secret
    error_kind: ErrorKind | None = None
    api_calls: int = 0
    db_queries: int = 0
    steps_done: int | None = None  # progress: success_steps
    steps_total: int | None = None  # progress: total_steps
    failed_step: str | None = None
    reason_code: str | None = None
    reason_message: str | None = None
    platform_at: float | None = None  # the platform's own time of the current phase
    successor_id: str | None = None  # for SUPERSEDED: the deployment that replaced ours
    successor_sha: str | None = None
    successor_phase: str | None = None


@dataclass(frozen=True)
class LogTail:
    """The tail of a failed deployment's logs, and what fetching it cost."""

    lines: tuple[str, ...] = ()
    api_calls: int = 0
    error: str | None = None
    stages: tuple[str, ...] = field(default=())  # which stages (BUILD, DEPLOY) had logs


@dataclass(frozen=True)
class Tick:
    """One round of a source for every open commit of an app at once (`poll_all`).

    `cost` is the round's own account (its requests or queries, the status and rate-limit
    headers of the last answer, an error that spoiled it all); each of `observations` is what
    the round says of one commit, with no cost of its own (the requests were shared)."""

    cost: Observation | None  # None: each observation carries its own cost (polled one by one)
    observations: dict[str, Observation] = field(default_factory=dict)


class DeploymentSource(Protocol):
    """A place that knows whether a commit's deployment went live."""

    name: str

    def poll(self, sha: str) -> Observation:
        """One poll for the deployment of the full 40-hex `sha`; never raises for bad answers."""
        ...

    def fetch_logs(self, deployment_id: str, lines: int = 20) -> LogTail:
        """The last `lines` lines of the failed deployment's BUILD (then DEPLOY) logs."""
        ...

    def check(self) -> Observation:
        """A cheap reachability and authorisation check, for `tracker doctor`."""
        ...

    def close(self) -> None: ...


def outcome_of(phase: str | None) -> Outcome | None:
    """The terminal outcome a phase means, or None while the deployment is still going."""
    return {
        "ACTIVE": "succeeded",
        "ERROR": "failed",
        "CANCELED": "canceled",
        "SUPERSEDED": "superseded",
    }.get(phase or "")  # type: ignore[return-value]
