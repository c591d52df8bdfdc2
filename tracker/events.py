"""The facts the tracker records: frozen dataclasses named in the past tense, and their registry.

An event's `data` in the log is exactly its fields as JSON. Adding a field with a default is a
compatible change; renaming or changing the meaning of one is not (SPEC §3).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

SYSTEM_STREAM = "$tracker"  # events about no commit in particular


@dataclass(frozen=True)
class Event:
    """Base of every event; `TYPE` is the name stored in the log's `type` column."""

    TYPE: ClassVar[str] = ""
    TERMINAL: ClassVar[bool] = False

    def to_data(self) -> dict[str, Any]:
        """The event's fields (shallow: events are frozen and hold only JSON values; `asdict`'s
        deep copy cost more than the rest of an append's work in Python)."""
        return {name: getattr(self, name) for name in _fields(type(self))[0]}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), separators=(",", ":"), sort_keys=True)


REGISTRY: dict[str, type[Event]] = {}
_FIELDS: dict[type[Event], tuple[tuple[str, ...], frozenset[str]]] = {}


def _fields(cls: type[Event]) -> tuple[tuple[str, ...], frozenset[str]]:
    """An event class's field names, in order and as a set (looked up on every append and
    every replayed event, so worked out once)."""
    found = _FIELDS.get(cls)
    if found is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        found = _FIELDS[cls] = (names, frozenset(names))
    return found


E = TypeVar("E", bound=type[Event])


def registered(cls: E) -> E:
    """Class decorator: register an event class under its `TYPE`."""
    cls.TYPE = cls.__name__
    REGISTRY[cls.TYPE] = cls
    return cls


@registered
@dataclass(frozen=True)
class PushRecorded(Event):
    """A push of `sha` to the deployed branch was seen (hook, `tracker push`, or the API)."""

    sha: str
    branch: str
    remote: str = ""
    remote_url: str = ""  # credentials stripped
    pushed_by: str = ""
    host: str = ""
    source: str = "cli"  # hook / cli / api
    pushed_at: str | None = None  # UTC ISO-8601: when the push started (the hook's time)
    push_id: str = ""  # the spool record's id, for the hook path
    again: bool = False  # a new push of a commit already recorded (`tracker push --again`)


@registered
@dataclass(frozen=True)
class PushConfirmed(Event):
    """The push is known to have reached the remote."""

    sha: str
    reason: str = ""


@registered
@dataclass(frozen=True)
class PushRejected(Event):
    """The push is known not to have reached the remote."""

    TERMINAL: ClassVar[bool] = True
    sha: str
    reason: str = ""


@registered
@dataclass(frozen=True)
class MonitorStarted(Event):
    """A monitor process took over a commit."""

    pid: int
    host: str
    policy: str
    sources: list[str] = field(default_factory=list)
    max_wait_s: float = 0.0
    attempt: int | None = None  # the push it follows (None: the newest, as before attempts)


@registered
@dataclass(frozen=True)
class DeploymentPolled(Event):
    """One poll of one source, successful or not."""

    source: str
    ok: bool
    found: bool = False
    phase: str | None = None
    status: str | None = None
    deployment_id: str | None = None
    http_status: int | None = None
    latency_ms: float = 0.0
    ratelimit_remaining: int | None = None
    error: str | None = None
    error_kind: str | None = None
    api_calls: int = 0
    db_queries: int = 0
    retry: bool = False  # this poll retried an earlier failed one
    steps_done: int | None = None
    steps_total: int | None = None
    platform_at: str | None = None  # UTC ISO-8601: the platform's own time of the phase
    attempt: int | None = None  # the push this poll was made for (None: the newest)
    # Fleet mode: the API call was reserved in the fleet's budget (`fleet`), or the shared log
    # was unreachable and the call went by this machine's count and the platform's rate-limit
    # headers (`degraded`). None: a single machine, or not an API poll.
    budget: str | None = None


@registered
@dataclass(frozen=True)
class LogsFetched(Event):
    """The logs of a failed deployment were fetched (each API request counted)."""

    deployment_id: str
    api_calls: int = 0
    lines: int = 0
    error: str | None = None


@registered
@dataclass(frozen=True)
class SourcesDisagreed(Event):
    """The database and the API told different stories about the same commit."""

    mysql_status: str | None
    api_phase: str | None
    detail: str = ""


@registered
@dataclass(frozen=True)
class DeploymentSucceeded(Event):
    """Terminal: the deployment is live."""

    TERMINAL: ClassVar[bool] = True
    deployment_id: str | None
    phase: str = "ACTIVE"
    push_to_live_s: float | None = None
    detected_at: str | None = None  # UTC ISO-8601
    platform_at: str | None = None  # UTC ISO-8601: the platform's own time of the terminal phase
    source: str = ""
    attempt: int | None = None  # the push this verdict judges (None: the newest)


@registered
@dataclass(frozen=True)
class DeploymentFailed(Event):
    """Terminal: ERROR or CANCELED, or the database row says failed."""

    TERMINAL: ClassVar[bool] = True
    deployment_id: str | None
    phase: str = "ERROR"
    reason: dict[str, str] = field(default_factory=dict)  # code, message
    failed_step: str | None = None
    log_tail: list[str] = field(default_factory=list)
    detected_at: str | None = None
    platform_at: str | None = None
    source: str = ""
    attempt: int | None = None  # the push this verdict judges (None: the newest)


@registered
@dataclass(frozen=True)
class DeploymentSuperseded(Event):
    """Terminal: the platform replaced our deployment by a newer push.

    `went_live` is True when the successor went live and contains our commit (git ancestry).
    """

    TERMINAL: ClassVar[bool] = True
    by_sha: str | None
    by_deployment_id: str | None
    went_live: bool | None = None
    successor_phase: str | None = None
    detected_at: str | None = None
    platform_at: str | None = None
    source: str = ""
    attempt: int | None = None  # the push this verdict judges (None: the newest)


@registered
@dataclass(frozen=True)
class MonitorTimedOut(Event):
    """Terminal: the monitor gave up after `max_wait`."""

    TERMINAL: ClassVar[bool] = True
    waited_s: float
    last_phase: str | None = None
    attempt: int | None = None


@registered
@dataclass(frozen=True)
class MonitorStopped(Event):
    """A monitor ended without a verdict (signal, source unreachable, configuration).

    `fix` is set when nothing can watch the commit until someone acts (a refused token): the
    headline then says why and how (SPEC §4)."""

    pid: int
    reason: str = ""
    fix: str = ""


@registered
@dataclass(frozen=True)
class MonitorNotStarted(Event):
    """No monitor could be started for a push (added): a setting it rejects, no source."""

    reason: str
    fix: str = ""


@registered
@dataclass(frozen=True)
class NotificationIngested(Event):
    """A deployment notification arrived from outside (`tracker ingest`), raw fields kept."""

    status: str | None = None
    phase: str | None = None
    deployment_id: str | None = None
    source: str = "webhook"


def event_from(type_name: str, data: dict[str, Any]) -> Event:
    """Rebuild an event from its stored type and data; unknown fields are ignored.

    When `data` has exactly the event's fields (every event written since they last changed),
    the fields are set without calling `__init__`, which only assigns them: a replay builds a
    million events, and a frozen dataclass's `__init__` costs more than the rest of the fold.
    """
    cls = REGISTRY.get(type_name)
    if cls is None:
        raise KeyError(type_name)
    names = _fields(cls)[1]
    if len(data) == len(names) and names.issuperset(data):
        event = object.__new__(cls)
        event.__dict__.update(data)
        return event
    if names.issuperset(data):
        return cls(**data)
    return cls(**{k: v for k, v in data.items() if k in names})
