"""Fixtures for the code tool's tests: a sandboxed tool, fake secrets, a loopback listener."""

from __future__ import annotations

import atexit
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from llmi.tools.sandbox.tool import CodeSandboxTool, Limits

FAKE_SECRETS = {
    "SERP_API_KEY": "llmi-test-secret-serp-7f3a9c",
    "OPENAI_API_KEY": "sk-llmi-test-secret-openai-91bc2e",
    "ARK_API_KEY": "llmi-test-secret-ark-5d1e44",
    "SERPAPI_API_KEY": "llmi-test-secret-serpapi-2b7d90",
    "HF_TOKEN": "hf_llmi-test-secret-hf-6a0c13",
}


@contextmanager
def fake_secrets() -> Iterator[dict[str, str]]:
    """The parent's environment holds API keys while the tool runs (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in FAKE_SECRETS}
    os.environ.update(FAKE_SECRETS)
    try:
        yield FAKE_SECRETS
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Listener:
    """A TCP and a UDP socket on 127.0.0.1 (same port) that count whatever reaches them."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.tcp.listen(16)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.hits: list[str] = []
        self._stop = False
        for target in (self._accept, self._recv):
            threading.Thread(target=target, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, addr = self.tcp.accept()
            except OSError:
                return
            self.hits.append(f"tcp from {addr}")
            conn.close()

    def _recv(self) -> None:
        while not self._stop:
            try:
                data, addr = self.udp.recvfrom(4096)
            except OSError:
                return
            self.hits.append(f"udp {data[:20]!r} from {addr}")

    def close(self) -> None:
        self._stop = True
        self.tcp.close()
        self.udp.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


_shared: CodeSandboxTool | None = None


@pytest.fixture(autouse=True)
def _secrets_in_environment() -> Iterator[None]:
    """Every code-tool test runs with API keys in the parent's environment."""
    with fake_secrets():
        yield


@pytest.fixture
def sandbox_tool(_secrets_in_environment) -> CodeSandboxTool:
    """One two-worker tool with a small memory limit, shared by every code-tool test module.

    Started inside a test (so with the fake keys set), closed when the interpreter exits.
    """
    global _shared
    if _shared is None:
        _shared = CodeSandboxTool(workers=2, timeout=10.0, limits=Limits(memory=512 << 20))
        atexit.register(_shared.close)
        _shared.warm_up()
    return _shared


GOOD_CHART = "x = np.linspace(0, 6.3, 50)\nplt.plot(x, np.sin(x))\nplt.title('sine')"
