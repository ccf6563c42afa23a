"""Fixtures for the reward tests: a scripted judge endpoint on loopback (for error paths and the
message shapes no offline vision model can show), the real llama.cpp server of the writer
tests, and small helpers to build samples."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).with_name("writers")))
from writer_fixtures import _QuietServer, llama_server, smollm2_path  # noqa: E402,F401 - the real llama.cpp server


@dataclass
class Reply:
    """One scripted answer: a chat completion saying ``text``, or any ``status``/``body``."""

    text: str | None = None
    status: int = 200
    body: Any = None  # a JSON-able object, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(text: str, model: str = "scripted-judge") -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@dataclass
class JudgeServer:
    """``{url}/<name>/v1`` answers with the replies scripted under ``name`` (the last repeats)."""

    url: str = ""
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    models: dict[str, list[str]] = field(default_factory=dict)
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, name: str, *replies: Reply | str, models: list[str] | None = None) -> str:
        """Register a scenario; returns its base URL."""
        with self.lock:
            self.scripts[name] = [r if isinstance(r, Reply) else Reply(r) for r in replies]
            self.requests[name] = []
            self.models[name] = models if models is not None else ["scripted-judge"]
        return f"{self.url}/{name}/v1"

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests[name] if r["method"] == "POST"]

    def next_reply(self, name: str) -> Reply:
        with self.lock:
            queue = self.scripts[name]
            return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler(state: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # a client that timed out and left
                pass

        def do_GET(self) -> None:
            self._handle("GET", None)

        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self._handle("POST", json.loads(self.rfile.read(n) or b"{}"))

        def _handle(self, method: str, body: Any) -> None:
            _, name, *rest = self.path.split("/")
            path = "/".join(rest)
            if name not in state.scripts:
                return self._send(404, {"detail": f"no scenario {name}"})
            with state.lock:
                state.requests[name].append({"method": method, "path": path, "body": body, "headers": dict(self.headers)})
            if path == "v1/models":
                return self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in state.models[name]]})
            reply = state.next_reply(name)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.text is not None:
                return self._send(200, completion(reply.text), reply.headers)
            return self._send(reply.status, reply.body if reply.body is not None else {}, reply.headers)

    return Handler


@pytest.fixture(scope="session")
def judge_server() -> Iterator[JudgeServer]:
    state = JudgeServer()
    server = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()


LLM_OK = "Text: 4\nImage: 5"
MLLM_OK = "Image Quality: 4\nTask Relevance: 3\nText-Image Relevance: 5"


def search_tag(query: str, description: str = "a picture") -> str:
    return f"<imgen>{{'source': 'search', 'description': '{description}', 'params': {{'query': '{query}'}}}}</imgen>"


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer saved as a Hugging Face folder (any UTF-8 text round-trips)."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Owls hunt at night. <imgen>{'source': 'code', 'params': {'code': 'plt.plot()'}}</imgen>"] * 8,
                            trainer)
    folder = tmp_path_factory.mktemp("tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>").save_pretrained(folder)
    return folder


def code_tag(code: str = "plt.plot([1, 2, 3])", description: str = "a chart") -> str:
    return f"<imgen>{{'source': 'code', 'description': '{description}', 'params': {{'code': '{code}'}}}}</imgen>"
