"""DigitalOcean App Platform as a deployment source (httpx).

Finds a commit's deployment by its full SHA in the deployments list (newest first), then polls
that one deployment. One `poll` is one attempt: every failure comes back inside the
`Observation` (never as an exception, never with the token in it); the monitor decides retries.

Nothing the server sends is trusted: bodies are bounded in size and JSON nesting before they are
parsed, every integer (headers, progress counters, page numbers) is range-checked before it
reaches arithmetic or the log, strings are bounded, and an answer that is none of what the API
documents is a `malformed` poll, never an exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from tracker.clock import MAX_CLOCK_SKEW_S, SYSTEM_CLOCK, Clock, parse_iso
from tracker.monitor.sources.base import ErrorKind, LogTail, Observation, Tick
from tracker.monitor.sources.deadline import DeadlineTransport, remaining, within

Json = dict[str, Any]

COMPONENT_KINDS = ("services", "static_sites", "workers", "jobs", "functions")
MAX_BODY_BYTES = 4 * 1024 * 1024  # a page of 20 deployments with full specs is far smaller
MAX_LOG_BYTES = 64 * 1024 * 1024
SKEW_MARGIN_S = 600.0  # our clock against the platform's, when cutting the list off by time
MAX_JSON_DEPTH = 64  # the deepest real answer (steps in steps in a deployment) is about 12
MAX_COUNT = 10**9  # ratelimit-remaining, progress counters: far above any real value
MAX_EPOCH = 10**11  # ratelimit-reset and platform times: epoch seconds before the year 5000
MAX_WAIT_HINT_S = 86400.0  # a retry-after or reset further away than a day is not believed
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 1000  # reasons, step paths, phases, log lines: kept, but bounded
USER_AGENT = "deploy-tracker (+https://github.com/)"


def user_agent(machine: str | None) -> str:
    """Our User-Agent; with the machine's id when one is known (fleet mode: which machine of the
    fleet asked, for whoever reads the platform's logs; an id is no secret)."""
    if not machine:
        return USER_AGENT
    safe = re.sub(r"[^A-Za-z0-9._:-]", "_", machine)[:64]
    return f"{USER_AGENT} machine/{safe}"


class _Failure(Exception):
    """Why one request of a poll went wrong; turned into an `Observation` at the edge."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after


@dataclass
class _Tally:
    """What the requests of one poll cost and what their headers said.

    `until` is the real-time deadline of the whole poll (every request in it): one
    `timeout` from its start, whatever the server does (SPEC §6).
    """

    started: float
    until: float
    calls: int = 0
    status: int | None = None
    remaining: int | None = None
    reset: float | None = None
    unusable: str | None = None  # a rate-limit header that was sent but is no count we can use

    def saw(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.unusable = None
        for name, high in (("ratelimit-remaining", MAX_COUNT), ("ratelimit-reset", MAX_EPOCH)):
            if name not in response.headers:
                continue
            value = _count(response.headers[name], high)
            if value is None:
                self.unusable = name
            elif name == "ratelimit-remaining":
                self.remaining = value
            else:
                self.reset = float(value)


def _count(text: str, high: int) -> int | None:
    """A non-negative integer of at most `high` written in plain digits, else None."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if value <= high else None


def _int_header(response: httpx.Response, name: str, default: int | None) -> int | None:
    value = _count(response.headers.get(name, ""), 2**62)
    return default if value is None else value


class DigitalOceanSource:
    """The `DeploymentSource` for one App Platform app."""

    name = "digitalocean"

    def __init__(
        self,
        api_url: str,
        token: str,
        app_id: str,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 10.0,
        *,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
        per_page: int = 20,
        max_pages: int = 10,
        lookback_s: float = 6 * 3600.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        machine: str | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.user_agent = user_agent(machine)
        self.app_id = app_id
        self.timeout = timeout
        self.per_page, self.max_pages, self.lookback_s = per_page, max_pages, lookback_s
        self.max_body_bytes = max_body_bytes
        self._token = token
        self._clock = clock
        self._transport = transport
        self._client = client or httpx.Client(
            timeout=timeout, transport=transport or DeadlineTransport()
        )
        self._archive_client: httpx.Client | None = None  # built on the first failure's logs
        self._app_url = f"{self.api_url}/v2/apps/{quote(app_id, safe='')}"
        self._matched: dict[str, str] = {}  # sha -> deployment id
        self._scanned: dict[str, set[str]] = {}  # sha -> ids already seen not to match
        self._cutoff: dict[str, float] = {}  # sha -> deployments created before are not ours
        self._strict: set[str] = set()  # shas whose cutoff also rules out a match (attempts > 1)
        self._excluded: dict[str, frozenset[str]] = {}  # sha -> ids that judged earlier attempts

    def __repr__(self) -> str:
        return f"DigitalOceanSource(api_url={self.api_url!r}, app_id={self.app_id!r})"

    def close(self) -> None:
        self._client.close()
        if self._archive_client is not None:
            self._archive_client.close()

    @property
    def _archive(self) -> httpx.Client:
        """Pre-signed archive URLs get a client of their own that never carries the token."""
        if self._archive_client is None:
            self._archive_client = httpx.Client(
                timeout=self.timeout,
                transport=self._transport or DeadlineTransport(),
                follow_redirects=True,
            )
        return self._archive_client

    def _tally(self) -> _Tally:
        """The account of one poll, check or log fetch, with its deadline."""
        return _Tally(self._clock.monotonic(), SYSTEM_CLOCK.monotonic() + self.timeout)

    def expect(
        self, sha: str, pushed_at: float, *, exclude: Collection[str] = (), again: bool = False
    ) -> None:
        """Say when `sha` was pushed, so the list search stops at older deployments.

        `again`: the commit was pushed before, so only a deployment created at or after this
        push (give or take the clock skew) is its own, and none of `exclude` (the deployments
        that judged its earlier attempts) ever is (SPEC §3). A match made before is forgotten.
        """
        sha = sha.lower()
        self._cutoff[sha] = pushed_at - (MAX_CLOCK_SKEW_S if again else SKEW_MARGIN_S)
        self._excluded[sha] = frozenset(exclude)
        self._strict.discard(sha)
        if again:
            self._strict.add(sha)
        self._matched.pop(sha, None)
        self._scanned.pop(sha, None)

    # --- the protocol ---------------------------------------------------------------------

    def poll(self, sha: str) -> Observation:
        """One poll for the deployment of the full 40-hex `sha`."""
        sha = sha.lower()
        self._cutoff.setdefault(sha, self._clock.now() - self.lookback_s)
        tally = self._tally()
        known = self._matched.get(sha)
        try:
            if known is not None:
                data = self._get_json(f"{self._app_url}/deployments/{quote(known, safe='')}", tally)
                deployment = _object(data, "deployment")
            else:
                found = self._find(sha, tally)
                if found is None:
                    return self._observation(tally, ok=True)
                deployment = found
                self._matched[sha] = deployment["id"]
                self._scanned.pop(sha, None)
            return self._observe(deployment, tally)
        except _Failure as failure:
            return self._failed(failure, tally, self._matched.get(sha))
        except Exception as exc:  # no answer, however built, may crash a monitor (SPEC §6)
            return self._failed(_unreadable(exc), tally, self._matched.get(sha))

    def poll_all(self, shas: Sequence[str]) -> Tick:
        """One round for every commit in `shas` at once (the app's watcher): the deployments
        list, newest first, `per_page` sized to what is in flight, a further page only while a
        commit is still unmatched and older ground is not reached. Every commit's observation
        comes from the same answers, its successor's too when it was superseded; the round's
        requests are counted once, in `Tick.cost`."""
        wanted = [sha.lower() for sha in shas]
        now = self._clock.now()
        for sha in wanted:
            self._cutoff.setdefault(sha, now - self.lookback_s)
        tally = self._tally()
        try:
            listed = self._list_for(wanted, tally)
            found: dict[str, Observation] = {}
            for sha in wanted:
                deployment = self._match(sha, listed)
                if deployment is None:
                    found[sha] = Observation(self.name, ok=True)
                    continue
                self._matched[sha] = deployment["id"]
                found[sha] = _free(self._observe(deployment, self._tally(), listed))
            return Tick(self._observation(tally, ok=True), found)
        except _Failure as failure:
            failed = self._failed(failure, tally, None)
        except Exception as exc:  # as in `poll`
            failed = self._failed(_unreadable(exc), tally, None)
        each = {
            sha: _free(failed, found=sha in self._matched, deployment_id=self._matched.get(sha))
            for sha in wanted
        }
        return Tick(failed, each)

    def _list_for(self, shas: Sequence[str], tally: _Tally) -> list[Json]:
        """The list's pages, newest first, until every commit has its deployment or older
        ground (its cutoff, a deployment already settled as not its own) is reached."""
        per_page = min(200, max(5, 2 * len(shas) + 1))
        url, params = f"{self._app_url}/deployments", {"page": 1, "per_page": per_page}
        listed: list[Json] = []
        open_ = set(shas)
        for _ in range(self.max_pages):
            data = self._get_json(url, tally, params)
            deployments = data.get("deployments")
            if not isinstance(deployments, list):
                raise _Failure("malformed", "deployments is not a list")
            page = [_deployment(item) for item in deployments]
            listed.extend(page)
            for sha in list(open_):
                if self._match(sha, page) is not None or self._reached_older(sha, page):
                    open_.discard(sha)
            next_url = _dig(data, "links", "pages", "next")
            if not open_ or not isinstance(next_url, str) or not page:
                break
            url, params = self._next_page(next_url, int(params["page"]) + 1)
            params["per_page"] = per_page
        # a scan that ended normally: what it settled as not a commit's own stays settled
        settled = {d["id"] for d in listed if _shas_of(d) or d.get("cause") == "manual"}
        for sha in shas:
            if self._match(sha, listed) is None:
                self._scanned.setdefault(sha, set()).update(settled)
        return listed

    def _match(self, sha: str, listed: Sequence[Json]) -> Json | None:
        """`sha`'s own deployment among `listed`, by the rules of `_find`."""
        known = self._matched.get(sha)
        excluded = self._excluded.get(sha, frozenset())
        for deployment in listed:
            if known is not None:
                if deployment["id"] == known:
                    return deployment
                continue
            created = parse_iso(str(deployment.get("created_at") or ""))
            older = created is not None and created < self._cutoff[sha]
            ours = sha in _shas_of(deployment) and deployment["id"] not in excluded
            if ours and not (older and sha in self._strict):
                return deployment
        return None

    def _reached_older(self, sha: str, page: Sequence[Json]) -> bool:
        seen = self._scanned.get(sha, set())
        for deployment in page:
            created = parse_iso(str(deployment.get("created_at") or ""))
            if deployment["id"] in seen or (created is not None and created < self._cutoff[sha]):
                return True
        return False

    def check(self) -> Observation:
        """One cheap authorised request (`GET /v2/apps/{id}`), for `tracker doctor`."""
        tally = self._tally()
        try:
            _object(self._get_json(self._app_url, tally), "app")
        except _Failure as failure:
            return self._failed(failure, tally, None)
        except Exception as exc:  # as in `poll`
            return self._failed(_unreadable(exc), tally, None)
        return self._observation(tally, ok=True, found=True)

    def fetch_logs(self, deployment_id: str, lines: int = 20) -> LogTail:
        """The last `lines` lines of the BUILD then DEPLOY logs; a stage never run is skipped."""
        tally = self._tally()
        tail: deque[str] = deque(maxlen=max(lines, 0))
        stages: list[str] = []
        errors: list[str] = []
        url = f"{self._app_url}/deployments/{quote(deployment_id, safe='')}/logs"
        for stage in ("BUILD", "DEPLOY"):
            try:
                data = self._get_json(url, tally, {"type": stage, "follow": "false"})
                urls = data.get("historic_urls") or []
                if not isinstance(urls, list):
                    raise _Failure("malformed", "historic_urls is not a list")
            except _Failure as failure:
                if failure.status != 400:  # 400: the stage was never reached
                    errors.append(f"{stage}: {failure.message}")
                continue
            except Exception as exc:  # as in `poll`
                errors.append(f"{stage}: {_unreadable(exc).message}")
                continue
            archives = [u for u in urls if isinstance(u, str)]
            with within(tally.until):
                if self._read_archives(archives, tail, errors, stage):
                    stages.append(stage)
        return LogTail(
            lines=tuple(tail),
            api_calls=tally.calls,
            error=self._scrub("; ".join(errors)) if errors else None,
            stages=tuple(stages),
        )

    # --- finding and reading a deployment -------------------------------------------------

    def _find(self, sha: str, tally: _Tally) -> Json | None:
        """Page through the list, newest first, until `sha` matches or older ground is reached.

        Deployments settled as not ours are remembered only once a scan has ended normally:
        a later scan stops at the first one it meets, which is right only if everything older
        was read. A scan cut short by a fault (a 429 on page 3) leaves nothing remembered, so
        the next poll reads past the pages it already saw.
        """
        seen = self._scanned.setdefault(sha, set())
        settled: set[str] = set()
        url, params = f"{self._app_url}/deployments", {"page": 1, "per_page": self.per_page}
        for _ in range(self.max_pages):
            data = self._get_json(url, tally, params)
            deployments = data.get("deployments")
            if not isinstance(deployments, list):
                raise _Failure("malformed", "deployments is not a list")
            stop = False
            excluded = self._excluded.get(sha, frozenset())
            for item in deployments:
                deployment = _deployment(item)
                created = parse_iso(str(deployment.get("created_at") or ""))
                older = created is not None and created < self._cutoff[sha]
                ours = sha in _shas_of(deployment) and deployment["id"] not in excluded
                if ours and not (older and sha in self._strict):
                    return deployment
                stop = stop or deployment["id"] in seen or older
                if _shas_of(deployment) or deployment.get("cause") == "manual":
                    settled.add(deployment["id"])  # it will never turn into ours
            next_url = _dig(data, "links", "pages", "next")
            if stop or not isinstance(next_url, str) or not deployments:
                break
            url, params = self._next_page(next_url, int(params["page"]) + 1)
        seen |= settled
        return None

    def _next_page(self, link: str, page: int) -> tuple[str, dict[str, int]]:
        """Follow `links.pages.next` only on our own API origin: the token goes nowhere else."""
        ours, theirs = urlsplit(self.api_url), urlsplit(link)
        params = {"page": page, "per_page": self.per_page}
        if (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc):
            linked = _count(parse_qs(theirs.query).get("page", [""])[0], MAX_COUNT)
            if linked is not None and linked >= 1:
                params["page"] = linked
        return f"{self._app_url}/deployments", params

    def _observe(
        self, deployment: Json, tally: _Tally, listed: Sequence[Json] | None = None
    ) -> Observation:
        """What `deployment` says; a superseded one's successor from `listed` when given (no
        request of its own), else asked for."""
        phase = deployment.get("phase")
        progress = deployment.get("progress") or {}
        if not isinstance(phase, str) or not isinstance(progress, dict):
            raise _Failure("malformed", "deployment has no phase or a bad progress")
        if not 0 < len(phase) <= 64:
            raise _Failure("malformed", "deployment has a phase no API sends")
        failed_step, reason = _failed_step(progress) if phase == "ERROR" else (None, {})
        successor: tuple[str | None, str | None, str | None] = (None, None, None)
        if phase == "SUPERSEDED":
            if listed is not None:
                successor = _successor_in(deployment, listed)
            else:
                successor = self._successor(deployment, tally)
        platform_at = _time(deployment.get("phase_last_updated_at"))
        if platform_at is None:
            platform_at = _time(deployment.get("updated_at"))
        return self._observation(
            tally,
            ok=True,
            found=True,
            phase=phase,
            deployment_id=deployment["id"],
            steps_done=_counter(progress, "success_steps"),
            steps_total=_counter(progress, "total_steps"),
            failed_step=_bounded(failed_step),
            reason_code=_bounded(reason.get("code")),
            reason_message=_bounded(reason.get("message")),
            platform_at=platform_at,
            successor_id=successor[0],
            successor_sha=successor[1],
            successor_phase=successor[2],
        )

    def _successor(self, ours: Json, tally: _Tally) -> tuple[str | None, str | None, str | None]:
        """The deployment that replaced ours: the app's live one if newer, else the newest."""
        created = parse_iso(str(ours.get("created_at") or "")) or 0.0

        def newer(d: Json) -> bool:
            when = parse_iso(str(d.get("created_at") or ""))
            # DigitalOcean times have one-second precision: the same second may still be newer
            return d["id"] != ours["id"] and (when is None or when >= created)

        app = _object(self._get_json(self._app_url, tally), "app")
        active = app.get("active_deployment")
        candidates = [_deployment(active)] if isinstance(active, dict) else []
        if not candidates or not newer(candidates[0]):
            data = self._get_json(
                f"{self._app_url}/deployments", tally, {"page": 1, "per_page": self.per_page}
            )
            listed = data.get("deployments")
            if not isinstance(listed, list):
                raise _Failure("malformed", "deployments is not a list")
            candidates = [d for d in map(_deployment, listed) if newer(d)]
            candidates.sort(key=lambda d: d.get("phase") != "ACTIVE")  # stable: newest first
        if not candidates or not newer(candidates[0]):
            return None, None, None
        best = candidates[0]
        shas = sorted(_shas_of(best))
        phase = best.get("phase")
        return best["id"], shas[0] if shas else None, _bounded(phase, 64)

    # --- HTTP -----------------------------------------------------------------------------

    def _get_json(self, url: str, tally: _Tally, params: dict[str, Any] | None = None) -> Json:
        """One counted, authorised GET that must answer 2xx with a JSON object."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        if tally.until <= SYSTEM_CLOCK.monotonic():
            raise _Failure("timeout", f"timed out after {self.timeout:g}s (the whole poll)")
        tally.calls += 1
        try:
            with (
                within(tally.until),
                self._client.stream("GET", url, params=params, headers=headers) as response,
            ):
                tally.saw(response)
                body = self._read(response)
        except httpx.TimeoutException as exc:
            raise _Failure("timeout", f"timed out after {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise _Failure("connection", f"connection failed ({type(exc).__name__})") from exc
        if not 200 <= response.status_code < 300:
            raise self._http_failure(response, body)
        if tally.unusable is not None:
            msg = f"{tally.unusable} is not a count we can use"
            raise _Failure("malformed", msg, response.status_code)
        data = _parse_json(body, response.status_code)
        if not isinstance(data, dict):
            raise _Failure("malformed", "the answer is not a JSON object", response.status_code)
        return data

    def _read(self, response: httpx.Response) -> bytes:
        """The body, refusing anything over `max_body_bytes` without reading it all."""
        declared = _int_header(response, "content-length", 0) or 0
        if declared > self.max_body_bytes:
            raise _Failure("malformed", f"answer of {declared} bytes refused", response.status_code)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            left = remaining()
            if left is not None and left <= 0:  # the transport checks too; this is for any other
                raise httpx.ReadTimeout("the whole-request deadline has passed")
            size += len(chunk)
            if size > self.max_body_bytes:
                msg = f"answer over {self.max_body_bytes} bytes refused"
                raise _Failure("malformed", msg, response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _http_failure(self, response: httpx.Response, body: bytes) -> _Failure:
        status = response.status_code
        detail = _error_detail(body)
        message = self._scrub(f"HTTP {status}" + (f": {detail}" if detail else ""))
        if status == 429:
            return _Failure("rate_limited", message, status, self._retry_after(response))
        if status in (401, 403):
            return _Failure("auth", message + " (check DIGITALOCEAN_TOKEN)", status)
        kind: ErrorKind = "server_error" if status >= 500 else "client_error"
        return _Failure(kind, message, status)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait, from `retry-after` (seconds or an HTTP date), else from
        `ratelimit-reset`; None when neither says a time in the future we can believe (0, a
        negative number, `nan`, text, a date in the past: the monitor then backs off)."""
        now = self._clock.now()
        wait = retry_after_seconds(response.headers.get("retry-after", ""), now)
        if wait is not None:
            return wait
        reset = _count(response.headers.get("ratelimit-reset", ""), MAX_EPOCH)
        if reset is None or not 0 < reset - now <= MAX_WAIT_HINT_S:
            return None
        return reset - now

    def _read_archives(
        self, urls: list[str], tail: deque[str], errors: list[str], stage: str
    ) -> bool:
        got = False
        for url in urls:
            try:
                for line in self._archive_lines(url):
                    tail.append(line)
                    got = True
            except _Failure as failure:
                errors.append(f"{stage} archive: {failure.message}")
        return got

    def _archive_lines(self, url: str) -> Iterator[str]:
        """The lines of one pre-signed archive, fetched with no Authorization (not an API call)."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise _Failure("malformed", "archive URL is not http(s)")
        size = 0
        try:
            with self._archive.stream(
                "GET", url, headers={"User-Agent": self.user_agent}
            ) as response:
                if response.status_code != 200:
                    raise _Failure("client_error", f"HTTP {response.status_code}")
                for line in response.iter_lines():
                    size += len(line) + 1
                    if size > MAX_LOG_BYTES:
                        raise _Failure("malformed", "log archive too large; tail incomplete")
                    if line.strip():
                        yield line.rstrip()[:MAX_TEXT_CHARS]
        except httpx.TimeoutException as exc:
            raise _Failure("timeout", "archive fetch timed out") from exc
        except httpx.HTTPError as exc:
            raise _Failure("connection", f"archive fetch failed ({type(exc).__name__})") from exc

    # --- results --------------------------------------------------------------------------

    def _observation(self, tally: _Tally, **fields: Any) -> Observation:
        return Observation(
            source=self.name,
            http_status=tally.status,
            latency_ms=round((self._clock.monotonic() - tally.started) * 1000.0, 3),
            ratelimit_remaining=tally.remaining,
            ratelimit_reset=tally.reset,
            api_calls=tally.calls,
            **fields,
        )

    def _failed(self, failure: _Failure, tally: _Tally, deployment_id: str | None) -> Observation:
        return self._observation(
            tally,
            ok=False,
            found=deployment_id is not None,
            deployment_id=deployment_id,
            error=self._scrub(failure.message),
            error_kind=failure.kind,
            retry_after_s=failure.retry_after,
        )

    def _scrub(self, text: str) -> str:
        """Short, and never the token, whatever a server echoed back."""
        if self._token:
            text = text.replace(self._token, "***")
        return " ".join(text.split())[:200]


# --- pure helpers over the answers ----------------------------------------------------------


def _free(obs: Observation, **changes: Any) -> Observation:
    """What a shared round says of one commit: no requests of its own, no rate-limit headers
    (those are the round's, in `Tick.cost`)."""
    return dataclasses.replace(
        obs, api_calls=0, http_status=None, ratelimit_remaining=None, latency_ms=0.0, **changes
    )


def _successor_in(ours: Json, listed: Sequence[Json]) -> tuple[str | None, str | None, str | None]:
    """The deployment that replaced ours, from a list newest first: the newest live one newer
    than ours, else the newest newer one (as `_successor` finds it with requests of its own)."""
    created = parse_iso(str(ours.get("created_at") or "")) or 0.0

    def newer(d: Json) -> bool:
        when = parse_iso(str(d.get("created_at") or ""))
        return d["id"] != ours["id"] and (when is None or when >= created)

    candidates = [d for d in listed if newer(d)]
    candidates.sort(key=lambda d: d.get("phase") != "ACTIVE")  # stable: newest first
    if not candidates:
        return None, None, None
    best = candidates[0]
    shas = sorted(_shas_of(best))
    return best["id"], shas[0] if shas else None, _bounded(best.get("phase"), 64)


def retry_after_seconds(value: str, now: float) -> float | None:
    """`retry-after` as seconds from `now`: a positive number of seconds or an HTTP date in the
    future, at most a day away; None for anything else (absent, 0, negative, nan, text)."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_WAIT_HINT_S:
        return None
    return seconds


_JSON_STRUCTURE = re.compile(rb'["\\\[\]{}]')


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit` (strings skipped)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # too few brackets to nest that deep: the common case, in C
    depth, in_string, escaped_at = 0, False, -1
    for match in _JSON_STRUCTURE.finditer(body):  # only the bytes that matter, found in C
        byte, at = match.group(), match.start()
        if in_string:
            if byte == b"\\" and escaped_at != at:
                escaped_at = at + 1  # the next byte is escaped
            elif byte == b'"' and escaped_at != at:
                in_string = False
        elif byte == b'"':
            in_string = True
        elif byte in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif byte in (b"]", b"}"):
            depth -= 1
    return False


def _parse_json(body: bytes, status: int | None) -> Any:
    """The parsed body; too deep, not JSON, or too big a number is a `_Failure`."""
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise _Failure("malformed", f"the answer nests deeper than {MAX_JSON_DEPTH}", status)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: also a number of 4,300+ digits
        raise _Failure("malformed", "the answer is not JSON", status) from exc


def _unreadable(exc: Exception) -> _Failure:
    """A failure for an answer that broke an assumption no check above caught."""
    return _Failure("malformed", f"an answer we cannot read ({type(exc).__name__})")


def _bounded(value: object, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A string from the answer, cut to `limit` characters; None if it is not a string."""
    return value[:limit] if isinstance(value, str) else None


def _time(value: object) -> float | None:
    """A platform time as epoch seconds, if it is one between 1970 and the year 5000."""
    when = parse_iso(value) if isinstance(value, str) and len(value) <= 64 else None
    return when if when is not None and 0 <= when <= MAX_EPOCH else None


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _object(data: Json, key: str) -> Json:
    value = data.get(key)
    if not isinstance(value, dict):
        raise _Failure("malformed", f"{key} is not an object")
    return _deployment(value) if key == "deployment" else value


def _deployment(item: Any) -> Json:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise _Failure("malformed", "a deployment without an id")
    if not 0 < len(item["id"]) <= MAX_ID_CHARS:
        raise _Failure("malformed", "a deployment with an id no API sends")
    return item


def _shas_of(deployment: Json) -> set[str]:
    """Every full commit SHA the deployment names: components' and the git push's."""
    shas = set()
    for kind in COMPONENT_KINDS:
        pieces = deployment.get(kind)
        for piece in pieces if isinstance(pieces, list) else []:
            commit = piece.get("source_commit_hash") if isinstance(piece, dict) else None
            if isinstance(commit, str) and commit:
                shas.add(commit.lower())
    pushed = _dig(deployment, "cause_details", "git_push", "commit_sha")
    if isinstance(pushed, str) and pushed:
        shas.add(pushed.lower())
    return shas


def _counter(progress: Json, key: str) -> int:
    """A progress counter; the API omits zero counters."""
    value = progress.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise _Failure("malformed", f"progress.{key} is not a count")
    return value


def _failed_step(progress: Json) -> tuple[str | None, dict[str, str]]:
    """The dotted path of the failing leaf step and the nearest `reason` above it."""
    for key in ("steps", "summary_steps"):
        steps = progress.get(key)
        found = _error_leaf(steps if isinstance(steps, list) else [], [], {})
        if found is not None:
            return found
    return None, {}


def _error_leaf(
    steps: list[Any], path: list[str], inherited: dict[str, str]
) -> tuple[str, dict[str, str]] | None:
    for step in steps:
        if not isinstance(step, dict) or step.get("status") != "ERROR":
            continue
        here = [*path, str(step.get("name") or "?")]
        reason = _reason(step.get("reason")) or inherited
        children = step.get("steps")
        if isinstance(children, list):
            deeper = _error_leaf(children, here, reason)
            if deeper is not None:
                return deeper
        return ".".join(here), reason
    return None


def _reason(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: str(value[k]) for k in ("code", "message") if isinstance(value.get(k), str)}


def _error_detail(body: bytes) -> str:
    """The `message` of a DigitalOcean error body, if it is one; short."""
    try:
        data = _parse_json(body[:65536], None)
    except _Failure:
        return ""
    if not isinstance(data, dict):
        return ""
    parts = [str(data[k]) for k in ("id", "message") if isinstance(data.get(k), str)]
    return ": ".join(parts)[:120]
