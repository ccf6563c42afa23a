"""Helpers for testing code that uses llmi: a latency-controlled tool for engine tests and
benchmarks (it draws a real PNG so that documents built with it render like real ones), and a
latency-controlled OpenAI-compatible chat server for writer and judge tests and benchmarks."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from .errors import BackendError, NotFound, ToolError
from .image import ImageData
from .tools.base import ToolCall, ToolOutput

__all__ = ["LatencyChatServer", "LatencyTool"]


@dataclass
class LatencyTool:
    """A tool that answers after ``latency`` seconds with a small solid image.

    ``fail_first`` makes the first N calls raise a transient ``BackendError``; ``fail_with``
    makes every call raise that error; ``fail_if`` makes a call fail (``NotFound``, not
    transient) when the request's text (query, prompt or code) contains it, so a test can
    script each tag's outcome in the answer itself. It counts calls and the peak number
    running at once.
    """

    source: str = "search"  # type: ignore[misc]
    latency: float = 0.05
    backend: str = "latency"
    fail_first: int = 0
    fail_with: ToolError | None = None
    fail_if: str | None = None
    calls: int = 0
    peak: int = 0
    _running: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    async def run(self, call: ToolCall) -> ToolOutput:
        with self._lock:
            self.calls += 1
            n = self.calls
            self._running += 1
            self.peak = max(self.peak, self._running)
        try:
            await asyncio.sleep(self.latency)
            if self.fail_with is not None:
                raise self.fail_with
            if self.fail_if is not None and self.fail_if in call.request.text:
                raise NotFound(f"scripted failure: the request contains {self.fail_if!r}")
            if n <= self.fail_first:
                raise BackendError(f"transient failure {n}", transient=True)
            shade = 40 + (len(call.request.text) * 37) % 200
            if call.input_image is not None:  # an "edit": darken the input a little
                shade = max(0, call.input_image.to_pil().getpixel((0, 0))[0] - 10)
            return ToolOutput(ImageData.blank(8, 8, (shade, shade, shade)), info={"call": n})
        finally:
            with self._lock:
                self._running -= 1

    async def aclose(self) -> None:
        return None


class LatencyChatServer:
    """An OpenAI-compatible chat endpoint on loopback whose every answer takes ``latency`` seconds.

    ``respond(body)`` gives the text of the answer to a request body (default: ``"ok"``); streamed
    requests get it as server-sent events. Requests are served on threads, so concurrent calls
    overlap as they would on a real server with free capacity. ``calls`` and ``peak`` (most at
    once) are counted. Use as a context manager; ``base_url`` ends in ``/v1``.

    >>> import httpx
    >>> with LatencyChatServer(0.0, respond=lambda body: "hi") as server:
    ...     r = httpx.post(server.base_url + "/chat/completions", json={"messages": []})
    >>> r.json()["choices"][0]["message"]["content"], server.calls
    ('hi', 1)
    """

    def __init__(self, latency: float = 0.1, respond=None, model: str = "latency-model") -> None:
        self.latency = latency
        self.respond = respond or (lambda body: "ok")
        self.model = model
        self.calls = 0
        self.peak = 0
        self._running = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.base_url = ""

    def __enter__(self) -> "LatencyChatServer":
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(json.dumps({"object": "list", "data": [{"id": owner.model, "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with owner._lock:
                    owner.calls += 1
                    owner._running += 1
                    owner.peak = max(owner.peak, owner._running)
                try:
                    import time

                    time.sleep(owner.latency)
                    text = owner.respond(body)
                finally:
                    with owner._lock:
                        owner._running -= 1
                if body.get("stream"):
                    chunk = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
                    return self._send(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream")
                self._send(json.dumps({"id": "x", "object": "chat.completion", "model": owner.model, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
