"""A simulated DigitalOcean App Platform API on a loopback port, for the demo and the tests.

It serves the documented shapes, ugly parts included: zero progress counters omitted, Go's zero
time for "unset", no `links` when a list fits on one page, 429 with and without `retry-after`,
pre-signed log archives that refuse an `Authorization` header. Every deployment follows a
scripted timeline read from a `Clock`, so a `FakeClock` shared with the monitor runs a whole
deployment in simulated time. Standard library only: the demo imports it on a fresh machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import socket
import socketserver
import struct
import sys
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tracker.clock import SYSTEM_CLOCK, Clock, iso

Outcome = Literal["active", "build_error", "deploy_error", "canceled", "superseded"]
ShaIn = Literal["both", "cause_details", "components"]
SupersedeOn = Literal["live", "created"]
FaultKind = Literal["429", "5xx", "malformed", "wrong_shape", "truncated", "huge", "slow", "reset"]
Json = dict[str, Any]

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: DigitalOcean's "unset"
COMPONENT_KINDS = ("services", "static_sites", "workers", "jobs", "functions")
BUILD_FAILURE_LINE = "npm ERR! Failed at the sample-app@1.0.0 build script."
DEPLOY_FAILURE_LINE = (
    "ERROR failed health checks after 6 attempts with error Readiness probe failed: "
    "dial tcp 10.244.17.9:8080: connect: connection refused"
)
BUILD_REASON = {
    "code": "BuildJobExitNonZero",
    "message": "Your build job failed because it returned a non-zero exit code. "
    "See the logs for details.",
}
DEPLOY_REASON = {
    "code": "DeployContainerHealthChecksFailed",
    "message": "Your deploy failed because your container failed to pass health checks. "
    "See the logs for details.",
}
_FAILING_LEAF = {
    "build_error": "build.components.web",
    "deploy_error": "deploy.components.web.wait",
}


def _iso(ts: float) -> str:
    """The API's own time format: UTC, whole seconds, `Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_body(error_id: str, message: str) -> bytes:
    return json.dumps({"id": error_id, "message": message}).encode()


# --- the scripted timeline of one deployment ------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    """One leaf step of `progress.steps`, with its scripted start and end (epoch seconds)."""

    path: str  # dotted, e.g. "build.components.web"
    start: float
    end: float
    component: str | None = None
    message_base: str | None = None


@dataclass
class _Script:
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

    def leaves(self) -> list[_Leaf]:
        b0, b, d0, d = self.build_start, self.build_s, self.deploy_start, self.deploy_s
        return [
            _Leaf("build.initialize", b0, b0 + 0.1 * b),
            _Leaf("build.components.web", b0 + 0.1 * b, b0 + b, "web", "Building service"),
            _Leaf("deploy.initialize", d0, d0 + 0.1 * d),
            _Leaf(
                "deploy.components.web.deploy",
                d0 + 0.1 * d,
                d0 + 0.6 * d,
                "web",
                "Deploying service",
            ),
            _Leaf(
                "deploy.components.web.wait",
                d0 + 0.6 * d,
                d0 + 0.9 * d,
                "web",
                "Waiting for service",
            ),
            _Leaf("deploy.finalize", d0 + 0.9 * d, d0 + d),
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


def _resolve(scripts: list[_Script], supersede_on: SupersedeOn) -> None:
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


# --- the JSON shapes ------------------------------------------------------------------------


def _leaf_state(s: _Script, leaf: _Leaf, now: float) -> Json:
    terminal = now >= s.end_at
    cut = min(now, s.end_at)
    name = leaf.path.rsplit(".", 1)[-1]
    step: Json = {"name": name}
    if leaf.component:
        step["component_name"] = leaf.component
    if leaf.message_base:
        step["message_base"] = leaf.message_base
    if terminal and s.end_phase == "ERROR" and leaf.path == _FAILING_LEAF.get(s.outcome):
        reason = BUILD_REASON if s.outcome == "build_error" else DEPLOY_REASON
        step.update(status="ERROR", started_at=_iso(leaf.start), ended_at=_iso(s.end_at))
        step["reason"] = dict(reason)
    elif leaf.end <= cut:
        step.update(status="SUCCESS", started_at=_iso(leaf.start), ended_at=_iso(leaf.end))
    elif leaf.start <= cut and not terminal:
        step.update(status="RUNNING", started_at=_iso(leaf.start))
    else:
        step["status"] = "PENDING"
    return step


def _parent_status(children: list[Json]) -> str:
    statuses = {c["status"] for c in children}
    if "ERROR" in statuses:
        return "ERROR"
    if statuses == {"SUCCESS"}:
        return "SUCCESS"
    if "RUNNING" in statuses or ("SUCCESS" in statuses and "PENDING" in statuses):
        return "RUNNING"
    return "PENDING"


def _nest(items: list[tuple[list[str], Json]], depth: int) -> list[Json]:
    """Group leaf steps by their dotted path into the nested `steps` tree."""
    groups: dict[str, list[tuple[list[str], Json]]] = {}
    for parts, step in items:
        groups.setdefault(parts[depth], []).append((parts, step))
    out: list[Json] = []
    for name, members in groups.items():
        if len(members) == 1 and len(members[0][0]) == depth + 1:
            out.append(members[0][1])
            continue
        children = _nest(members, depth + 1)
        parent: Json = {"name": name, "status": _parent_status(children)}
        starts = [c["started_at"] for c in children if "started_at" in c]
        if starts:
            parent["started_at"] = min(starts)
        if parent["status"] in ("SUCCESS", "ERROR") and all("ended_at" in c for c in children):
            parent["ended_at"] = max(c["ended_at"] for c in children)
        reason = next((c["reason"] for c in children if "reason" in c), None)
        if reason:
            parent["reason"] = reason
        parent["steps"] = children
        out.append(parent)
    return out


def _strip_reasons_below_top(steps: list[Json], depth: int = 0) -> None:
    """The API puts `reason` on the failing leaf and on its top-level step only."""
    for step in steps:
        children = step.get("steps")
        if children:
            if depth > 0:
                step.pop("reason", None)
            _strip_reasons_below_top(children, depth + 1)


def _progress(s: _Script, now: float) -> Json:
    leaves = [_leaf_state(s, leaf, now) for leaf in s.leaves()]
    counts: Json = {}
    for status in ("PENDING", "RUNNING", "SUCCESS", "ERROR"):
        n = sum(1 for step in leaves if step["status"] == status)
        if n:  # zero counters are omitted, as godo's `omitempty` does
            counts[f"{status.lower()}_steps"] = n
    counts["total_steps"] = len(leaves)
    steps = _nest(
        [(leaf.path.split("."), st) for leaf, st in zip(s.leaves(), leaves, strict=True)], 0
    )
    _strip_reasons_below_top(steps)
    counts["steps"] = steps
    summary = [{k: v for k, v in st.items() if k != "steps"} for st in steps]
    counts["summary_steps"] = summary
    return counts


def _updated_at(s: _Script, now: float) -> float:
    cut = min(now, s.end_at)
    marks = [s.created_at] + [t for leaf in s.leaves() for t in (leaf.start, leaf.end) if t <= cut]
    if now >= s.end_at:
        marks.append(s.end_at)
    return max(marks)


def _cause(s: _Script, app_name: str) -> Json:
    if s.sha is None:
        user = {"uuid": str(uuid.UUID(int=1)), "email": "ops@example.com", "full_name": "Ops"}
        return {
            "cause": "manual",
            "cause_details": {
                "type": "MANUAL",
                "digitalocean_user_action": {"user": user, "name": "CREATE_DEPLOYMENT"},
            },
        }
    git_push: Json = {
        "github": {"repo": f"acme/{app_name}", "branch": "main"},
        "username": "octocat",
        "commit_author": "Octo Cat",
        "commit_message": "Simulated change",
    }
    if s.sha_in in ("both", "cause_details"):
        git_push["commit_sha"] = s.sha
    return {
        "cause": f"commit {s.sha[:7]} pushed to github/acme/{app_name}",
        "cause_details": {"type": "DEPLOY_ON_PUSH", "git_push": git_push},
    }


def _spec(app_name: str, component: str) -> Json:
    web = {
        "name": "web",
        "github": {"repo": f"acme/{app_name}", "branch": "main", "deploy_on_push": True},
        "environment_slug": "node-js",
        "instance_size_slug": "apps-s-1vcpu-0.5gb",
        "instance_count": 1,
        "http_port": 8080,
        "routes": [{"path": "/"}],
    }
    return {"name": app_name, "region": "ams", component: [web]}


def _deployment(s: _Script, now: float, app_name: str) -> Json:
    piece: Json = {"name": "web"}
    if s.sha is not None and s.sha_in in ("both", "components"):
        piece["source_commit_hash"] = s.sha
    since = s.phase_since(now)
    return {
        "id": s.id,
        "spec": _spec(app_name, s.component),
        s.component: [piece],
        "created_at": _iso(s.created_at),
        "updated_at": _iso(_updated_at(s, now)),
        "phase_last_updated_at": ZERO_TIME if since is None else _iso(since),
        **_cause(s, app_name),
        "phase": s.phase_at(now),
        "progress": _progress(s, now),
        "tier_slug": "basic",
    }


def _log_lines(s: _Script, stage: str) -> list[str]:
    """The text of a stage's archived log (without timestamps)."""
    if stage == "BUILD":
        sha = s.sha or "0" * 40
        lines = [
            "╭──────────── git repo clone ───────────╼",
            "│ › fetching app source code",
            '│ => Selecting branch "main"',
            f'│ => Checking out commit "{sha}"',
            "│  ✔ cloned repo to /workspace",
            "╰────────────────────────────────────────╼",
            "╭──────────── buildpack detection ───────────╼",
            "│ › using Ubuntu 22.04 stack",
            "│ Detected the following buildpacks suitable to build your app:",
            "│    digitalocean/node-js    v0.3.9 (Node.js)",
            "╰─────────────────────────────────────────────╼",
            "╭──────────── app build ───────────╼",
        ]
        lines += [f"│ added {n * 37} packages in {n}s" for n in range(1, 9)]
        lines += ["│ Running custom build command: npm run build", "│ > sample-app@1.0.0 build"]
        if s.outcome == "build_error" and s.end_phase == "ERROR":
            return [
                *lines,
                "│ src/index.ts(12,7): error TS2322: Type 'string' is not assignable to 'number'.",
                "│ npm ERR! code ELIFECYCLE",
                "│ npm ERR! errno 2",
                BUILD_FAILURE_LINE,
            ]
        if s.end_at < s.build_end:  # canceled or superseded mid-build
            return [*lines, "│ ✘ build canceled"]
        return [*lines, "│ ✔ build complete", "╰──────────────────────────────────╼"]
    lines = ["› deploying web", "› starting container", "> sample-app@1.0.0 start"]
    lines += [f"health check {n}: waiting for :8080" for n in range(1, 7)]
    if s.outcome == "deploy_error" and s.end_phase == "ERROR":
        return [*lines, DEPLOY_FAILURE_LINE]
    if s.end_at < s.deploy_end:
        return [*lines, "✘ deploy canceled"]
    return [*lines, "Server listening on :8080", "✔ health checks passed"]


def _stamped_log(s: _Script, stage: str, now: float) -> str:
    """The archived log up to `now`, lines spread evenly over the stage's run."""
    lines = _log_lines(s, stage)
    start = s.build_start if stage == "BUILD" else s.deploy_start
    end = min(s.build_end if stage == "BUILD" else s.deploy_end, s.end_at)
    step = (end - start) / max(len(lines), 1)
    out = []
    for i, text in enumerate(lines):
        ts = start + (i + 1) * step
        if ts <= now:
            out.append(f"web {iso(ts)} {text}")
    return "".join(line + "\n" for line in out)


# --- budget, faults, the record of requests --------------------------------------------------


class _Budget:
    """DigitalOcean's sliding limits: `per_hour` per hour and `per_minute` per minute."""

    def __init__(self, per_hour: int, per_minute: int) -> None:
        self.per_hour, self.per_minute = per_hour, per_minute
        self._times: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._times and self._times[0] <= now - 3600:
            self._times.popleft()

    def admit(self, now: float) -> tuple[bool, float | None]:
        """Count a request; (False, retry_after or None) when it is over a limit."""
        self._prune(now)
        if len(self._times) >= self.per_hour:
            return False, None
        recent = [t for t in self._times if t > now - 60]
        if len(recent) >= self.per_minute:
            return False, max(1.0, math.ceil(recent[0] + 60 - now))
        self._times.append(now)
        return True, None

    def headers(self, now: float) -> dict[str, str]:
        self._prune(now)
        reset = self._times[0] + 3600 if self._times else now
        return {
            "ratelimit-limit": str(self.per_hour),
            "ratelimit-remaining": str(max(0, self.per_hour - len(self._times))),
            "ratelimit-reset": str(int(reset)),
        }


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


@dataclass(frozen=True)
class SimRequest:
    """One request the simulator received."""

    method: str
    path: str
    query: str
    api: bool  # an API call (under /v2/), as opposed to a pre-signed archive fetch
    authorization: bool  # whether an Authorization header was sent
    fault: str | None = None
    at: float = 0.0  # the simulator's clock when the request arrived (for rate windows)


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


# --- the server -----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    platform: SimulatedPlatform
    resets: set[int]

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (`getfqdn`), which can take seconds."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def shutdown_request(self, request: Any) -> None:
        if id(request) in self.resets:  # close without FIN so that SO_LINGER 0 sends a RST
            self.resets.discard(id(request))
            request.close()
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early are part of the game; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def do_GET(self) -> None:
        self.server.platform._handle(self)

    def do_POST(self) -> None:
        self.server.platform._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""


class SimulatedPlatform:
    """The App Platform API for one app, served on 127.0.0.1 from a daemon thread."""

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        token: str = "sim-token",  # noqa: S107 (a test credential, not a secret)
        app_id: str | None = None,
        *,
        app_name: str = "sample-app",
        limit_per_hour: int = 5000,
        limit_per_minute: int = 250,
        supersede_on: SupersedeOn = "live",
        port: int = 0,
    ) -> None:
        self.clock, self.token, self.app_name, self.port = clock, token, app_name, port
        self.app_id = app_id or str(uuid.uuid4())
        self._lock = threading.Lock()
        self._scripts: list[_Script] = []
        self._faults: list[Fault] = []
        self._requests: list[SimRequest] = []
        self.over_limit = 0  # requests answered 429 by the rate limits (not injected faults)
        self._budget = _Budget(limit_per_hour, limit_per_minute)
        self.supersede_on = supersede_on
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._created_at = clock.now() - 86400

    # lifecycle

    def start(self) -> str:
        """Start serving; returns the base URL (`http://127.0.0.1:PORT`)."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.platform, server.resets = self, set()
        self._server = server
        serve = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="sim-platform", daemon=True
        )
        serve.start()
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SimulatedPlatform:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulated platform is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # scripting

    def add_deployment(
        self,
        sha: str | None,
        *,
        build_s: float = 60.0,
        deploy_s: float = 90.0,
        outcome: Outcome = "active",
        appear_after_s: float = 0.0,
        pending_build_s: float = 5.0,
        pending_deploy_s: float = 5.0,
        cancel_after_s: float | None = None,
        sha_in: ShaIn = "both",
        component: str = "services",
        deployment_id: str | None = None,
    ) -> str:
        """Script a deployment of `sha` (None: a manual deploy); returns its id.

        It appears in the API `appear_after_s` after now, waits `pending_build_s`, builds for
        `build_s`, waits `pending_deploy_s`, deploys for `deploy_s`, then ends as `outcome`
        (a cancel comes `cancel_after_s` after it appears, by default mid-build), unless a newer
        deployment goes live first (SUPERSEDED). `sha_in` says where the full SHA shows.
        """
        if component not in COMPONENT_KINDS:
            raise ValueError(f"component must be one of {COMPONENT_KINDS}")
        with self._lock:
            script = _Script(
                id=deployment_id or str(uuid.uuid4()),
                sha=sha.lower() if sha else None,
                created_at=self.clock.now() + appear_after_s,
                pending_build_s=pending_build_s,
                build_s=build_s,
                pending_deploy_s=pending_deploy_s,
                deploy_s=deploy_s,
                outcome=outcome,
                cancel_after_s=(
                    pending_build_s + build_s / 2 if cancel_after_s is None else cancel_after_s
                ),
                sha_in=sha_in,
                component=component,
                order=len(self._scripts),
            )
            self._scripts.append(script)
            _resolve(self._scripts, self.supersede_on)
            return script.id

    def phase(self, deployment_id: str) -> str | None:
        """The phase of a deployment now (None before it appears)."""
        with self._lock:
            now = self.clock.now()
            s = self._script(deployment_id)
            return s.phase_at(now) if s and s.created_at <= now else None

    def inject(self, kind: FaultKind, times: int = 1, **options: Any) -> Fault:
        """Misbehave on the next `times` API requests (after skipping `after` of them).

        Options: `after`, `retry_after` (429; omit for a 429 with only `ratelimit-reset`),
        `reset_in_s` (429), `status` (5xx), `delay_s` (slow: real seconds), `size_bytes`
        (huge), `path` (only requests whose path contains it; may target `/archive/`).
        """
        fault = Fault(kind=kind, times=times, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    # what happened

    @property
    def requests(self) -> list[SimRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def api_requests(self) -> int:
        """How many API calls (not archive fetches) the server received."""
        with self._lock:
            return sum(1 for r in self._requests if r.api)

    # request handling (called from the server's threads)

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        api = split.path.startswith("/v2/")
        has_auth = handler.headers.get("Authorization") is not None
        with self._lock:
            fault = self._take_fault(split.path, api)
            self._requests.append(
                SimRequest(
                    handler.command,
                    split.path,
                    split.query,
                    api,
                    has_auth,
                    fault.kind if fault else None,
                    self.clock.now(),
                )
            )
        try:
            self._respond(handler, split.path, split.query, api, fault)
        except OSError:
            handler.close_connection = True  # the client hung up: expected with slow/huge

    def _take_fault(self, path: str, api: bool) -> Fault | None:
        chosen = None
        for fault in self._faults:
            if not fault.matches(path, api):
                continue
            if fault.after > 0:
                fault.after -= 1
            elif chosen is None:
                chosen = fault
                fault.times -= 1
        self._faults = [f for f in self._faults if f.times > 0]
        return chosen

    def _respond(
        self, handler: _Handler, path: str, query: str, api: bool, fault: Fault | None
    ) -> None:
        if fault is not None and fault.kind == "reset":
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.server.resets.add(id(handler.connection))
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "slow" and self._stopping.wait(fault.delay_s):
            handler.close_connection = True
            return
        if fault is not None and fault.kind in ("429", "5xx", "malformed", "wrong_shape", "huge"):
            reply = self._fault_reply(fault)
        elif api:
            reply = self._api(handler, path, parse_qs(query))
        else:
            reply = self._archive(path, parse_qs(query), handler.headers.get("Authorization"))
        self._send(handler, reply, truncate=fault is not None and fault.kind == "truncated")

    def _send(self, handler: _Handler, reply: _Reply, truncate: bool = False) -> None:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body[: len(reply.body) // 2] if truncate else reply.body)
        handler.wfile.flush()
        if truncate:
            handler.close_connection = True

    def _fault_reply(self, fault: Fault) -> _Reply:
        with self._lock:
            now = self.clock.now()
            headers = self._budget.headers(now)
        if fault.kind == "429":
            wait = fault.retry_after if fault.retry_after is not None else fault.reset_in_s
            headers.update({"ratelimit-remaining": "0", "ratelimit-reset": str(int(now + wait))})
            if fault.retry_after is not None:
                headers["retry-after"] = str(math.ceil(fault.retry_after))
            body = _error_body("too_many_requests", "API rate limit exceeded.")
            return _Reply(429, body, headers)
        if fault.kind == "5xx":
            if fault.status in (502, 504):  # the load balancer's own page, not JSON
                page = f"<html><body><h1>{fault.status} Bad Gateway</h1></body></html>"
                return _Reply(fault.status, page.encode(), headers, "text/html")
            return _Reply(fault.status, _error_body("server_error", "Server Error"), headers)
        if fault.kind == "malformed":
            return _Reply(200, b'{"deployments": [{"id": "5f0a2f3e", "phase": ', headers)
        if fault.kind == "wrong_shape":
            shape = {"deployments": {"id": 7}, "deployment": [1, 2], "app": "x", "meta": "many"}
            return _Reply(200, json.dumps(shape).encode(), headers)
        padding = b"x" * fault.size_bytes
        return _Reply(200, b'{"deployments": [], "padding": "' + padding + b'"}', headers)

    def _api(self, handler: _Handler, path: str, query: dict[str, list[str]]) -> _Reply:
        with self._lock:
            now = self.clock.now()
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                body = _error_body("unauthorized", "Unable to authenticate you")
                return _Reply(401, body, self._budget.headers(now))
            admitted, retry_after = self._budget.admit(now)
            headers = self._budget.headers(now)
            if not admitted:
                self.over_limit += 1
                if retry_after is not None:
                    headers["retry-after"] = str(int(retry_after))
                body = _error_body("too_many_requests", "API rate limit exceeded.")
                return _Reply(429, body, {**headers, "ratelimit-remaining": "0"})
            reply = self._route(handler.command, path, query, now)
            reply.headers.update(headers)
            return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], now: float) -> _Reply:
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["v2", "apps"] or parts[2] != self.app_id:
            return _not_found()
        if method != "GET":
            return _Reply(405, _error_body("method_not_allowed", "Method not allowed"))
        rest = parts[3:]
        if not rest:
            return _json_reply({"app": self._app_json(now)})
        if rest == ["deployments"]:
            return self._list(query, now)
        script = self._script(rest[1]) if len(rest) >= 2 and rest[0] == "deployments" else None
        if script is None or script.created_at > now or len(rest) > 3:
            return _not_found()
        if len(rest) == 2:
            return _json_reply({"deployment": _deployment(script, now, self.app_name)})
        if rest[2] == "logs":
            return self._logs(script, query, now)
        return _not_found()

    def _visible(self, now: float) -> list[_Script]:
        shown = [s for s in self._scripts if s.created_at <= now]
        return sorted(shown, key=lambda s: (s.created_at, s.order), reverse=True)

    def _script(self, deployment_id: str) -> _Script | None:
        return next((s for s in self._scripts if s.id == deployment_id), None)

    def _list(self, query: dict[str, list[str]], now: float) -> _Reply:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["20"])[0])
        except ValueError:
            return _Reply(400, _error_body("bad_request", "page and per_page must be integers"))
        if page < 1 or not 1 <= per_page <= 200:
            return _Reply(400, _error_body("bad_request", "page >= 1, 1 <= per_page <= 200"))
        shown = self._visible(now)
        last = max(1, math.ceil(len(shown) / per_page))
        chunk = shown[(page - 1) * per_page : page * per_page]
        body: Json = {"deployments": [_deployment(s, now, self.app_name) for s in chunk]}
        if last > 1 or page > 1:  # "only the links that make sense"; none on a single page
            body["links"] = {"pages": self._page_links(page, last, per_page)}
        body["meta"] = {"total": len(shown)}
        return _json_reply(body)

    def _page_links(self, page: int, last: int, per_page: int) -> dict[str, str]:
        url = f"{self.base_url}/v2/apps/{self.app_id}/deployments?page={{}}&per_page={per_page}"
        links = {}
        if page > 1:
            links["first"] = url.format(1)
            links["prev"] = url.format(min(page - 1, last))
        if page < last:
            links["next"] = url.format(page + 1)
            links["last"] = url.format(last)
        return links

    def _app_json(self, now: float) -> Json:
        shown = self._visible(now)
        active = next((s for s in shown if s.phase_at(now) == "ACTIVE"), None)
        going = next((s for s in shown if now < s.end_at), None)
        app: Json = {
            "id": self.app_id,
            "owner_uuid": str(uuid.UUID(int=2)),
            "spec": _spec(self.app_name, "services"),
            "default_ingress": f"https://{self.app_name}-x7k2q.ondigitalocean.app",
            "created_at": _iso(self._created_at),
            "updated_at": _iso(max([self._created_at] + [s.created_at for s in shown])),
            "region": {"slug": "ams", "label": "Amsterdam"},
        }
        if shown:
            app["last_deployment_created_at"] = _iso(shown[0].created_at)
        if active:
            app["active_deployment"] = _deployment(active, now, self.app_name)
            app["live_url"] = app["default_ingress"]
        if going:
            app["in_progress_deployment"] = _deployment(going, now, self.app_name)
        return app

    def _logs(self, script: _Script, query: dict[str, list[str]], now: float) -> _Reply:
        stage = query.get("type", ["UNSPECIFIED"])[0]
        if stage not in ("BUILD", "DEPLOY") or not script.stage_ran(stage, now):
            return _Reply(400, _error_body("bad_request", f"no {stage} logs for this deployment"))
        path = f"/archive/{script.id}/{stage.lower()}.log"
        url = f"{self.base_url}{path}?X-Amz-Expires=900&X-Amz-Signature={self._sign(path)}"
        return _json_reply({"live_url": "", "historic_urls": [url]})

    def _sign(self, path: str) -> str:
        return hashlib.sha256(f"{self.app_id}:{path}".encode()).hexdigest()

    def _archive(self, path: str, query: dict[str, list[str]], authorization: str | None) -> _Reply:
        """A pre-signed object-store URL: a second auth mechanism is refused, as S3 does."""
        xml = "application/xml"
        if authorization is not None:
            msg = b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
            return _Reply(400, msg + b"</Message></Error>", content_type=xml)
        if query.get("X-Amz-Signature", [""])[0] != self._sign(path):
            body = b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
            return _Reply(403, body, content_type=xml)
        parts = path.strip("/").split("/")
        with self._lock:
            now = self.clock.now()
            script = self._script(parts[1]) if len(parts) == 3 else None
            stage = parts[2].removesuffix(".log").upper() if len(parts) == 3 else ""
            if script is None or stage not in ("BUILD", "DEPLOY"):
                return _Reply(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type=xml)
            text = _stamped_log(script, stage, now)
        return _Reply(200, text.encode(), content_type="text/plain; charset=utf-8")


def _json_reply(body: Json) -> _Reply:
    return _Reply(200, json.dumps(body).encode())


def _not_found() -> _Reply:
    msg = "The resource you were accessing could not be found."
    return _Reply(404, _error_body("not_found", msg))


# --- a stand-alone server -------------------------------------------------------------------


def _demo_shas() -> Iterator[str]:
    for n in range(3):
        yield hashlib.sha1(f"demo-{n}".encode()).hexdigest()  # noqa: S324 (not security)


def main(argv: list[str] | None = None) -> int:
    """`python -m tracker.sim`: serve a simulated App Platform app on loopback until Ctrl-C."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error; 2 means "in progress" here
        return 64 if exc.code == 2 else 0
    sim = SimulatedPlatform(token=args.token, port=args.port)
    follower = None
    if args.repo is None:
        outcomes: list[Outcome] = ["active", "build_error", "deploy_error"]
        for sha, outcome in zip(_demo_shas(), outcomes, strict=True):
            sim.add_deployment(
                sha, build_s=8, deploy_s=8, pending_build_s=1, pending_deploy_s=1, outcome=outcome
            )
    else:
        from tracker.sim.autodeploy import AutoDeploy, Timings

        try:
            follower = AutoDeploy(
                sim, args.repo, branch=args.branch, remote=args.remote, interval=args.interval,
                timings=Timings(args.pending_s, args.build_s, args.pending_s, args.deploy_s),
                on_deploy=lambda d: print(f"# deploying {d.sha[:7]}: {d.outcome}", flush=True),
            )  # fmt: skip
        except ValueError as exc:
            print(f"python -m tracker.sim: {exc}", file=sys.stderr)
            return 64
    url = sim.start()
    print(f"export DIGITALOCEAN_TOKEN={args.token}\nexport TRACKER_DO_API_URL={url}")
    print(f"export TRACKER_DO_APP_ID={sim.app_id}")
    if follower is None:
        print("# serving three deployments of fixed demo SHAs (sha1 of demo-0 .. demo-2); use")
        print("# --repo PATH to deploy the pushes of your own repository")
    else:
        print(f"# watching {follower.ref} in {Path(args.repo).absolute()}: each new tip deploys")
        follower.start()
    print("# Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if follower is not None:
            follower.stop()
        sim.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.sim",
        description="Serve a simulated DigitalOcean App Platform API on 127.0.0.1 and print the"
        " variables that point the tracker at it. Without --repo it knows only three deployments"
        " of fixed demo SHAs; with --repo it deploys each new tip of the branch, as App"
        " Platform's auto-deploy does (a commit message with [sim: build_error],"
        " [sim: deploy_error] or [sim: canceled] fails that way).",
    )
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--token", default="sim-token", help="the token it accepts")
    parser.add_argument(
        "--repo", help="a repository to follow: a bare remote, or a clone (its REMOTE/BRANCH)"
    )
    parser.add_argument("--branch", default="main", help="the deployed branch (default: main)")
    parser.add_argument("--remote", default="origin", help="in a clone (default: origin)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    parser.add_argument("--pending-s", type=float, default=1.0, help="before each stage")
    parser.add_argument("--build-s", type=float, default=4.0, help="how long a build takes")
    parser.add_argument("--deploy-s", type=float, default=4.0, help="how long a deploy takes")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
