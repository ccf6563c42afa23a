"""Real image servers for tests: tiny random Qwen-Image pipelines behind real uvicorn on loopback.

The tiny pipelines are built once per test session (offline, ~1 s after imports). Servers run
in threads of the test process (a real uvicorn on a real socket; the model is shared memory, so
start-up costs no interpreter); the launcher tests start real subprocesses instead.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from llmi.serve.app import ServerConfig, create_app
from llmi.serve.schemas import Limits

TINY_EDIT_PIXELS = 32 * 32  # the edit pipeline's condition image, shrunk (see --edit-max-pixels)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from llmi.serve.testing import build_tiny_pipeline

    base = tmp_path_factory.mktemp("tiny-qwen")
    return {
        "generation": build_tiny_pipeline(base / "generation", "generation"),
        "edit": build_tiny_pipeline(base / "edit", "edit"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadServer:
    """``create_app(config)`` served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, config: ServerConfig) -> None:
        import uvicorn

        self.config = config
        self.app = create_app(config)
        self.worker = self.app.state.worker
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=10
            )
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, ready_timeout: float = 120.0) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.worker.load_error is not None:
                raise RuntimeError(f"pipeline failed to load: {self.worker.load_error}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def info(self) -> dict:
        return httpx.get(self.url + "/info", timeout=10).json()


def _config(model: Path, mode: str, **kwargs) -> ServerConfig:
    base = ServerConfig(
        model=str(model),
        mode=mode,
        device="cpu",
        dtype="float32",
        edit_max_pixels=TINY_EDIT_PIXELS if mode == "edit" else None,
        shutdown_grace=10,
        threads=1,  # tiny models gain nothing from threads; a busy 2-core host loses a lot
    )
    return replace(base, **kwargs)


def start_server(tiny_models, mode: str = "generation", **kwargs) -> ThreadServer:
    return ThreadServer(_config(tiny_models[mode], mode, **kwargs)).start()


@pytest.fixture(scope="session")
def gen_server(tiny_models) -> Iterator[ThreadServer]:
    server = start_server(tiny_models, "generation", queue_size=128)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gen_server_b(tiny_models) -> Iterator[ThreadServer]:
    server = start_server(tiny_models, "generation", queue_size=128)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def edit_server(tiny_models) -> Iterator[ThreadServer]:
    limits = Limits(max_input_pixels=256 * 256, max_body_bytes=2 * 1024 * 1024)
    server = start_server(tiny_models, "edit", queue_size=16, limits=limits)
    yield server
    server.stop()


@pytest.fixture
def slow_server(tiny_models) -> Iterator[ThreadServer]:
    """One job at a time, one waiting, each job held 1 s: for queue-full and in-flight tests."""
    server = start_server(tiny_models, "generation", queue_size=1, debug_job_delay=1.0)
    yield server
    server.stop()


def png_b64(width: int, height: int, mode: str = "RGB", color=(200, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def gen_body(**overrides) -> dict:
    # guidance 1 turns classifier-free guidance off: half the work per request
    body = {
        "prompt": "a red fox",
        "height": 16,
        "width": 16,
        "num_inference_steps": 2,
        "guidance_scale": 1.0,
        "seed": 1,
    }
    body.update(overrides)
    return body


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")
