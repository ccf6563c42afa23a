"""A scripted HTTP server on 127.0.0.1 for the error paths a real service shows only rarely.

Each request takes the next scripted :class:`Step` (or, with nothing scripted, answers
``200 {"ok": true}``): a status, a body, headers and a delay, or one of the transport failures
``"reset"`` (the connection is dropped without an answer), ``"cut"`` (the answer stops
half-way through its declared body) and ``"stream"`` (``body`` is a list of byte pieces sent
as a chunked body, ``delay`` seconds apart). Every request is recorded.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest


@dataclass
class Step:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> as they are; None -> {"ok": true}
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str | None = None  # None | "reset" | "cut" | "stream"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Loopback:
    """A threaded HTTP server on 127.0.0.1 (any free port) run in a daemon thread by ``with``."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class ScriptedServer(Loopback):
    """``with ScriptedServer() as s: s.script(Step(503)); s.url``"""

    def __init__(self) -> None:
        self.steps: deque[Step] = deque()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw))
                    step = owner.steps.popleft() if owner.steps else Step()
                if step.delay and step.action != "stream":
                    time.sleep(step.delay)
                if step.action == "reset":
                    # SO_LINGER 0: close sends a RST, the client sees a reset, not a clean end
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    for stream in (self.rfile, self.wfile, self.connection):
                        stream.close()  # all three: the socket closes only with its last handle
                    return
                if step.action == "stream":
                    self._stream(step)
                    return
                data, ctype = _encode(step.body)
                ctype = step.headers.pop("Content-Type", ctype)
                # "cut": declare twice the body, send it, and close: the client sees it cut short
                send(self, step.status, data, ctype, step.headers, declared=len(data) * (2 if step.action == "cut" else 1))
                if step.action == "cut":
                    self.close_connection = True

            def _stream(self, step: Step) -> None:
                try:
                    self.send_response(step.status)
                    self.send_header("Content-Type", step.headers.pop("Content-Type", "text/event-stream"))
                    self.send_header("Transfer-Encoding", "chunked")
                    for k, v in step.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    for piece in step.body:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                        self.wfile.flush()
                        if step.delay:
                            time.sleep(step.delay)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        self._listen(Handler)

    def script(self, *steps: Step) -> None:
        with self._lock:
            self.steps.extend(steps)


def send(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
    headers: dict[str, str] | None = None, *, declared: int | None = None,
) -> None:
    """Answer ``handler``'s request with ``data``; a client that hung up is not an error."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data) if declared is None else declared))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass


def _encode(body: Any) -> tuple[bytes, str]:
    if body is None:
        body = {"ok": True}
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), "application/json"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return bytes(body), "application/octet-stream"


@pytest.fixture(name="scripted")
def scripted_fixture() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server
