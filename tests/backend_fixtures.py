"""A real HTTP server on 127.0.0.1 that answers like Volcengine Ark's and OpenAI's images APIs.

It serves ``POST .../images/generations`` (JSON) and ``POST .../images/edits`` (multipart) in
their documented formats — ``{"created", "data": [{"b64_json"} | {"url"}], ...}`` — and serves
the generated files it hands out as URLs at ``/files/<n>.png``. Every request is recorded
(headers, JSON body, form fields, uploaded files) so tests can check what a backend sent.
Replies can be scripted (status, body, delay) to exercise error paths; with nothing scripted it
answers successfully, in the ``response_format`` the request asked for (``default_format`` when
it asked for none).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from http_fixtures import Loopback, send
from PIL import Image


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; bytes -> raw; None -> a generated success
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def png_bytes(width: int = 32, height: int = 24, color: tuple[int, ...] = (200, 40, 40), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


class ImagesApiServer(Loopback):
    """``with ImagesApiServer() as api: api.base`` -> ``http://127.0.0.1:PORT/api/v3``."""

    def __init__(self, default_format: str = "b64_json") -> None:
        self.default_format = default_format
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self.files: dict[str, bytes] = {}
        self.image_color = (200, 40, 40)
        self.file_delay = 0.0  # seconds before a generated file is served
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._record(self, None)
                if owner.file_delay:
                    time.sleep(owner.file_delay)
                data = owner.files.get(self.path)
                if data is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, data, "image/png")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                rec = owner._record(self, raw)
                with owner._lock:
                    reply = owner.replies.popleft() if owner.replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.body if reply.body is not None else owner._success(rec, self)
                if isinstance(body, (dict, list)):
                    self._send(reply.status, json.dumps(body).encode(), "application/json", reply.headers)
                else:
                    self._send(reply.status, body, reply.headers.pop("Content-Type", "text/plain"), reply.headers)

            def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                send(self, status, data, ctype, headers)

            def log_message(self, *args: object) -> None:
                pass

        self._listen(Handler)

    # -- set-up ---------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return self.url + "/api/v3"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    @property
    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    # -- behaviour ------------------------------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes | None) -> Recorded:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        rec = Recorded(handler.command, handler.path, headers)
        ctype = headers.get("content-type", "")
        if raw is not None and ctype.startswith("application/json"):
            rec.json = json.loads(raw)
        elif raw is not None and ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename():
                    rec.files[name] = (part.get_filename(), payload, part.get_content_type())
                else:
                    rec.form[name] = payload.decode()
        with self._lock:
            self.requests.append(rec)
        return rec

    def _success(self, rec: Recorded, handler: BaseHTTPRequestHandler) -> dict[str, Any]:
        fields = rec.json if rec.json is not None else rec.form
        size = str(fields.get("size") or "")
        try:
            w, h = (int(v) for v in size.lower().split("x"))
        except ValueError:
            w, h = 32, 24
        data = png_bytes(w, h, self.image_color)
        fmt = fields.get("response_format") or self.default_format
        if fmt == "url":
            with self._lock:
                name = f"/files/{len(self.files)}.png"
                self.files[name] = data
            item = {"url": self.url + name}
        else:
            item = {"b64_json": base64.b64encode(data).decode()}
        return {"created": 1753847978, "data": [item], "model": fields.get("model", ""),
                "usage": {"generated_images": 1}}


# Fixtures under private names, registered as ``images_api`` / ``closed_port``: test modules
# import them (``from backend_fixtures import api_fixture, port_fixture``) without shadowing.
@pytest.fixture(name="images_api")
def api_fixture() -> Iterator[ImagesApiServer]:
    with ImagesApiServer() as server:
        yield server


@pytest.fixture(name="closed_port")
def port_fixture() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
