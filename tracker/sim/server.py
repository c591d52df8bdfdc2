"""A simulated DigitalOcean App Platform API on a loopback port, for the demo and the tests.

It serves the documented shapes, ugly parts included: zero progress counters omitted, Go's zero
time for "unset", no `links` when a list fits on one page, 429 with and without `retry-after`,
pre-signed log archives that refuse an `Authorization` header. Every deployment follows a
scripted timeline read from a `Clock`, so a `FakeClock` shared with the monitor runs a whole
deployment in simulated time. Standard library only: the demo imports it on a fresh machine.

This module is the server: routes, the rate budget, the archives and `python -m tracker.sim`.
The timelines are in `timeline.py`, the JSON they are shown as in `shapes.py`, and the
misbehaviour a test can inject in `faults.py`.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tracker.clock import SYSTEM_CLOCK, Clock
from tracker.sim.faults import Fault, FaultKind
from tracker.sim.shapes import (
    COMPONENT_KINDS,
    Json,
    api_time,
    deployment_json,
    error_body,
    spec_json,
    stamped_log,
)
from tracker.sim.timeline import Outcome, Script, ShaIn, SupersedeOn, resolve

# --- budget, the record of requests --------------------------------------------------


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
    user_agent: str | None = None  # who asked (the tracker names its machine there)
    app: str | None = None  # the app id the path names (None: an archive, another path)


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
    # Each turn of `serve` waits at most this long for a connection (serve_forever's poll
    # interval was the same): about how long `stop` takes.
    timeout = 0.02
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

    def serve(self, stopping: threading.Event) -> None:
        """Serve until `stopping` is set: unlike `serve_forever`, whose `shutdown()` waits
        without a deadline for the loop to notice, the one who stops us can bound the join."""
        while not stopping.is_set():
            self.handle_request()


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
    """The App Platform API for one app (more with `add_app`: one token's apps, sharing its
    rate limits), served on 127.0.0.1 from a daemon thread."""

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
        self._scripts: list[Script] = []  # the first app's; every app's in `_apps`
        self._apps: dict[str, list[Script]] = {self.app_id: self._scripts}
        self._faults: list[Fault] = []
        self._requests: list[SimRequest] = []
        self.over_limit = 0  # requests answered 429 by the rate limits (not injected faults)
        self._budget = _Budget(limit_per_hour, limit_per_minute)
        self.supersede_on = supersede_on
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serving: threading.Thread | None = None
        self._created_at = clock.now() - 86400

    # lifecycle

    def start(self) -> str:
        """Start serving; returns the base URL (`http://127.0.0.1:PORT`)."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.platform, server.resets = self, set()
        self._server = server
        self._stopping.clear()
        self._serving = threading.Thread(
            target=server.serve, args=(self._stopping,), name="sim-platform", daemon=True
        )
        self._serving.start()
        return self.base_url

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; waits at most `timeout` for the serving thread (a daemon) to end.

        Requests in flight finish on their own daemon threads; a slow fault ends at once.
        """
        self._stopping.set()
        if self._serving is not None:
            self._serving.join(timeout)
            self._serving = None
        if self._server is not None:
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

    def add_app(self, app_id: str | None = None) -> str:
        """Serve one more app of the same token (its own deployments; the rate limits are the
        token's, shared by all its apps, as DigitalOcean counts them); returns its id."""
        found = app_id or str(uuid.uuid4())
        with self._lock:
            self._apps.setdefault(found, [])
        return found

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
        app_id: str | None = None,
    ) -> str:
        """Script a deployment of `sha` (None: a manual deploy); returns its id.

        It appears in the API `appear_after_s` after now, waits `pending_build_s`, builds for
        `build_s`, waits `pending_deploy_s`, deploys for `deploy_s`, then ends as `outcome`
        (a cancel comes `cancel_after_s` after it appears, by default mid-build), unless a newer
        deployment goes live first (SUPERSEDED). `sha_in` says where the full SHA shows.
        `app_id`: an app made by `add_app` (default: the first).
        """
        if component not in COMPONENT_KINDS:
            raise ValueError(f"component must be one of {COMPONENT_KINDS}")
        with self._lock:
            scripts = self._apps[app_id or self.app_id]
            script = Script(
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
                order=len(scripts),
            )
            scripts.append(script)
            resolve(scripts, self.supersede_on)
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
        `reset_in_s` (429; `exhausted`: a normal answer saying `ratelimit-remaining: 0` until
        then), `status` (5xx), `delay_s` (slow: real seconds), `size_bytes`
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

    def max_in_window(self, seconds: float, *, app: str | None = None) -> int:
        """The most API calls received within any `seconds` (a sliding window over the arrival
        times: what a rate limit counts), of every app or of `app`; answered 429 or not."""
        times = sorted(r.at for r in self.requests if r.api and (app is None or r.app == app))
        most, first = 0, 0
        for last, at in enumerate(times):
            while times[first] <= at - seconds:
                first += 1
            most = max(most, last - first + 1)
        return most

    # request handling (called from the server's threads)

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        api = split.path.startswith("/v2/")
        has_auth = handler.headers.get("Authorization") is not None
        parts = split.path.strip("/").split("/")
        app = parts[2] if api and len(parts) >= 3 and parts[1] == "apps" else None
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
                    handler.headers.get("User-Agent"),
                    app,
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
            if fault is not None and fault.kind == "exhausted" and reply.status == 200:
                reset = math.ceil(self.clock.now() + fault.reset_in_s)  # no call left until then
                reply.headers.update({"ratelimit-remaining": "0", "ratelimit-reset": str(reset)})
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
            body = error_body("too_many_requests", "API rate limit exceeded.")
            return _Reply(429, body, headers)
        if fault.kind == "5xx":
            if fault.status in (502, 504):  # the load balancer's own page, not JSON
                page = f"<html><body><h1>{fault.status} Bad Gateway</h1></body></html>"
                return _Reply(fault.status, page.encode(), headers, "text/html")
            return _Reply(fault.status, error_body("server_error", "Server Error"), headers)
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
                body = error_body("unauthorized", "Unable to authenticate you")
                return _Reply(401, body, self._budget.headers(now))
            admitted, retry_after = self._budget.admit(now)
            headers = self._budget.headers(now)
            if not admitted:
                self.over_limit += 1
                if retry_after is not None:
                    headers["retry-after"] = str(int(retry_after))
                body = error_body("too_many_requests", "API rate limit exceeded.")
                return _Reply(429, body, {**headers, "ratelimit-remaining": "0"})
            reply = self._route(handler.command, path, query, now)
            reply.headers.update(headers)
            return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], now: float) -> _Reply:
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[:2] != ["v2", "apps"] or parts[2] not in self._apps:
            return _not_found()
        app = parts[2]
        if method != "GET":
            return _Reply(405, error_body("method_not_allowed", "Method not allowed"))
        rest = parts[3:]
        if not rest:
            return _json_reply({"app": self._app_json(now, app)})
        if rest == ["deployments"]:
            return self._list(query, now, app)
        found = self._script(rest[1]) if len(rest) >= 2 and rest[0] == "deployments" else None
        script = found if found is not None and found in self._apps[app] else None
        if script is None or script.created_at > now or len(rest) > 3:
            return _not_found()
        if len(rest) == 2:
            return _json_reply({"deployment": deployment_json(script, now, self.app_name)})
        if rest[2] == "logs":
            return self._logs(script, query, now)
        return _not_found()

    def _visible(self, now: float, app: str) -> list[Script]:
        shown = [s for s in self._apps[app] if s.created_at <= now]
        return sorted(shown, key=lambda s: (s.created_at, s.order), reverse=True)

    def _script(self, deployment_id: str) -> Script | None:
        every = (s for scripts in self._apps.values() for s in scripts)
        return next((s for s in every if s.id == deployment_id), None)

    def _list(self, query: dict[str, list[str]], now: float, app: str) -> _Reply:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["20"])[0])
        except ValueError:
            return _Reply(400, error_body("bad_request", "page and per_page must be integers"))
        if page < 1 or not 1 <= per_page <= 200:
            return _Reply(400, error_body("bad_request", "page >= 1, 1 <= per_page <= 200"))
        shown = self._visible(now, app)
        last = max(1, math.ceil(len(shown) / per_page))
        chunk = shown[(page - 1) * per_page : page * per_page]
        body: Json = {"deployments": [deployment_json(s, now, self.app_name) for s in chunk]}
        if last > 1 or page > 1:  # "only the links that make sense"; none on a single page
            body["links"] = {"pages": self._page_links(page, last, per_page, app)}
        body["meta"] = {"total": len(shown)}
        return _json_reply(body)

    def _page_links(self, page: int, last: int, per_page: int, app: str) -> dict[str, str]:
        url = f"{self.base_url}/v2/apps/{app}/deployments?page={{}}&per_page={per_page}"
        links = {}
        if page > 1:
            links["first"] = url.format(1)
            links["prev"] = url.format(min(page - 1, last))
        if page < last:
            links["next"] = url.format(page + 1)
            links["last"] = url.format(last)
        return links

    def _app_json(self, now: float, app_id: str) -> Json:
        shown = self._visible(now, app_id)
        active = next((s for s in shown if s.phase_at(now) == "ACTIVE"), None)
        going = next((s for s in shown if now < s.end_at), None)
        app: Json = {
            "id": app_id,
            "owner_uuid": str(uuid.UUID(int=2)),
            "spec": spec_json(self.app_name, "services"),
            "default_ingress": f"https://{self.app_name}-x7k2q.ondigitalocean.app",
            "created_at": api_time(self._created_at),
            "updated_at": api_time(max([self._created_at] + [s.created_at for s in shown])),
            "region": {"slug": "ams", "label": "Amsterdam"},
        }
        if shown:
            app["last_deployment_created_at"] = api_time(shown[0].created_at)
        if active:
            app["active_deployment"] = deployment_json(active, now, self.app_name)
            app["live_url"] = app["default_ingress"]
        if going:
            app["in_progress_deployment"] = deployment_json(going, now, self.app_name)
        return app

    def _logs(self, script: Script, query: dict[str, list[str]], now: float) -> _Reply:
        stage = query.get("type", ["UNSPECIFIED"])[0]
        if stage not in ("BUILD", "DEPLOY") or not script.stage_ran(stage, now):
            return _Reply(400, error_body("bad_request", f"no {stage} logs for this deployment"))
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
            text = stamped_log(script, stage, now)
        return _Reply(200, text.encode(), content_type="text/plain; charset=utf-8")


def _json_reply(body: Json) -> _Reply:
    return _Reply(200, json.dumps(body).encode())


def _not_found() -> _Reply:
    msg = "The resource you were accessing could not be found."
    return _Reply(404, error_body("not_found", msg))


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
        # Wake up now and then: an untimed wait relies on SIGINT landing on this thread (the
        # kernel may hand a process's signal to any of its threads), and a wait that is never
        # interrupted never lets Python run the handler that raises KeyboardInterrupt.
        idle = threading.Event()
        while not idle.wait(0.2):
            pass
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
