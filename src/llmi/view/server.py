"""Serving the viewer: uvicorn on a socket bound here, in the foreground or in a thread.

``ViewServer(root).serve()`` blocks (``llmi view``); ``with ViewServer(root, port=0) as s:``
serves from a thread on a free port until the block ends (tests, benchmarks, notebooks), with
``s.url`` the address to open.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ConfigError, MissingDependency
from .app import LOOPBACK_HOSTS, create_app

__all__ = ["DEFAULT_PORT", "ViewServer", "is_loopback"]

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("::1")
    (True, True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int, tries: int) -> socket.socket:
    """A socket bound to ``host:port``; when that port is taken, the next free one of ``tries``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in range(port, port + max(1, tries)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE or port == 0:
                break
            continue
        return sock
    raise ConfigError(f"cannot listen on {host}:{port}: {last.strerror if last else 'unknown error'}; "
                      "choose another --port or --host")


class ViewServer:
    """The viewer of ``root`` on ``host:port`` (``port=0``: any free port; a taken port moves
    on to the next of ``tries``). Requests must name the host it listens on, a loopback name
    or one of ``allow_hosts``; listening on every interface (``0.0.0.0``) accepts any name."""

    def __init__(self, root: str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, tries: int = 1,
                 allow_hosts: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.host = host
        open_to_all = host in ("0.0.0.0", "::", "[::]")
        hosts = None if open_to_all else [*LOOPBACK_HOSTS, host.strip("[]"), *allow_hosts]
        self.app = create_app(self.root, allowed_hosts=hosts)
        self._socket = _bind(host, port, tries)
        self.port = self._socket.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "[::1]" if self.host in ("::", "[::]") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def _uvicorn(self, on_ready: Callable[[], None] | None) -> Any:
        uvicorn = MissingDependency.require("uvicorn", "view")

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if self.started and on_ready is not None:
                    on_ready()

        return Server(uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off"))

    def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until interrupted; ``on_ready`` runs once the socket accepts connections."""
        self._server = self._uvicorn(on_ready)
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def __enter__(self) -> "ViewServer":
        ready = threading.Event()
        self._server = self._uvicorn(ready.set)  # uvicorn leaves signals alone outside the main thread
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="llmi-view", daemon=True)
        self._thread.start()
        while not ready.wait(0.05):
            if not self._thread.is_alive():
                raise ConfigError("the viewer stopped while starting (see the log above)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._socket.close()
