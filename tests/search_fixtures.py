"""A real HTTP server on 127.0.0.1 for the fetcher and search-backend tests, and image makers.

``LoopbackServer`` is a threading ``http.server`` with a route table: each route is a function
``(handler) -> None`` that writes the whole response itself, so tests can lie about
Content-Length, trickle bytes, hang, redirect anywhere or stream forever.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

Route = Callable[[BaseHTTPRequestHandler], None]


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.route("/a.png", srv.bytes_route(data)); srv.url("/a.png")``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with owner._lock:
                    owner.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                    owner.active += 1
                    owner.max_active = max(owner.max_active, owner.active)
                try:
                    route = owner.routes.get(path)
                    if route is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with owner._lock:
                        owner.active -= 1

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients hanging up on hostile payloads is the point of these tests

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def route(self, path: str, fn: Route) -> None:
        self.routes[path] = fn

    # -- ready-made routes ---------------------------------------------------------------------

    @staticmethod
    def bytes_route(body: bytes, content_type: str = "image/png", status: int = 200, delay: float = 0.0) -> Route:
        def fn(h: BaseHTTPRequestHandler) -> None:
            if delay:
                time.sleep(delay)
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        return fn

    @staticmethod
    def json_route(payload: object, status: int = 200, check: Callable[[dict[str, list[str]]], None] | None = None) -> Route:
        def fn(h: BaseHTTPRequestHandler) -> None:
            query = parse_qs(urlsplit(h.path).query)
            code = status
            body = payload
            if check is not None:
                try:
                    check(query)
                except AssertionError as exc:  # the test sees the 400 and the reason
                    code, body = 400, {"error": f"fixture check failed: {exc}"}
            data = json.dumps(body).encode()
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        return fn

    @staticmethod
    def redirect_route(location: str, status: int = 302) -> Route:
        def fn(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return fn


# -- images made in the test -------------------------------------------------------------------


def png_bytes(width: int = 500, height: int = 500, color: str = "steelblue") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def noisy_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A JPEG whose scan data is large (noise), so cutting it leaves a truncated scan."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def gif_bytes(width: int = 450, height: int = 450) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (width, height), 3).save(buf, "GIF")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG signature and a valid IHDR declaring ``width`` x ``height``, then a little IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
