"""Fixtures for the writer tests: a real llama.cpp OpenAI-compatible server running the
embedded SmolLM2 model, and a scripted HTTP server for the failures a real one rarely shows."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    pytest.importorskip("llama_cpp")
    from llmi.llm.local import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT/v1`` of ``python -m llama_cpp.server`` serving SmolLM2."""
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason="llama_cpp.server needs llama-cpp-python[server]")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        sys.executable, str(Path(__file__).with_name("_llama_server.py")),
        "--model", str(smollm2_path), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--verbose", "False",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the scripted server -------------------------------------------------------------------------


@dataclass
class Scripted:
    """A loopback HTTP server whose behaviour is chosen by the first path segment:
    ``{url}/<scenario>/v1`` is the base URL of an endpoint acting out ``<scenario>``."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def base(self, scenario: str) -> str:
        return f"{self.url}/{scenario}/v1"

    def posts(self, scenario: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["scenario"] == scenario and r["method"] == "POST"]


def _chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    body = {"id": "x", "object": "chat.completion.chunk", "model": "scripted",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _completion(text: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


DRIP_TAIL = "More text, written after the picture was made.\n"
ANSWER = "Owls hunt at night.\n<imgen>{'source': 'search', 'description': 'An owl', 'params': {'query': 'barn owl'}}</imgen>\n"


def _make_handler(state: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # responses end when the connection closes

        def log_message(self, *args: Any) -> None:
            pass

        def _send_json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, parts: list[bytes], length: int | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            for part in parts:
                self.wfile.write(part)
                self.wfile.flush()

        def do_GET(self) -> None:
            self._handle("GET", None)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self._handle("POST", json.loads(self.rfile.read(n) or b"{}"))

        def _handle(self, method: str, body: Any) -> None:
            _, scenario, *rest = self.path.split("/")
            path = "/".join(rest)
            state.requests.append({"scenario": scenario, "method": method, "path": path, "body": body,
                                   "headers": dict(self.headers)})
            key = f"{scenario}:{method}:{path}"
            state.counts[key] = state.counts.get(key, 0) + 1
            count = state.counts[key]
            scenario = scenario.split("-")[0]  # "flaky-2" acts like "flaky", counted on its own
            if path in ("img.png", "text.png"):  # input images given by URL
                from llmi.image import ImageData

                data = ImageData.blank(5, 3, "green").data if path == "img.png" else b"<html>no</html>"
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return self.wfile.write(data)
            if path == "v1/models":
                if scenario == "nomodels":
                    return self._send_json(404, {"detail": "Not Found"})
                ids = ["alpha", "beta"] if scenario in ("two", "wrongmodel") else ["scripted"]
                return self._send_json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
            if path != "v1/chat/completions":
                return self._send_json(404, {"detail": "Not Found"})
            stream = bool(body.get("stream"))
            if scenario == "flaky" and count <= 2:
                return self._send_json(503, {"error": {"message": "warming up"}})
            if scenario == "busy":
                return self._send_json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            if scenario == "broken":
                return self._send_json(500, {"error": {"message": "boom"}})
            if scenario == "auth" and self.headers.get("Authorization") != "Bearer sekrit":
                return self._send_json(401, {"error": {"message": "Incorrect API key provided"}})
            if scenario == "wrongmodel":
                return self._send_json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                       "code": "model_not_found"}})
            if scenario == "badrequest":
                return self._send_json(400, {"error": {"message": "max_tokens is too large"}})
            if scenario == "slow":
                time.sleep(1.5)
            if scenario == "malformed":
                if stream:
                    return self._stream([_chunk("Owls "), b"data: {\"choices\": [{\"delta\": \n\n"])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                return self.wfile.write(b"{\"choices\": [")
            if scenario == "truncated":
                return self._stream([_chunk("Owls "), _chunk("hunt")])  # no finish, no [DONE]
            if scenario == "cut":
                return self._stream([_chunk("Owls ")], length=10_000)  # closes long before that
            if scenario == "nostream":  # ignores "stream": true
                return self._send_json(200, _completion(ANSWER))
            if scenario == "drip" and stream:  # the answer, a pause, then more text
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(ANSWER), 7):
                    self.wfile.write(_chunk(ANSWER[i : i + 7]))
                    self.wfile.flush()
                time.sleep(1.0)
                self.wfile.write(_chunk(DRIP_TAIL) + _chunk(None, "stop") + b"data: [DONE]\n\n")
                return None
            if stream:
                pieces = [ANSWER[i : i + 7] for i in range(0, len(ANSWER), 7)]
                return self._stream([b": keep-alive\n\n", *[_chunk(p) for p in pieces], _chunk(None, "stop"),
                                     b"data: [DONE]\n\n"])
            return self._send_json(200, _completion(ANSWER))

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and left
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def scripted() -> Iterator[Scripted]:
    state = Scripted(url="")
    server = _QuietServer(("127.0.0.1", 0), _make_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
