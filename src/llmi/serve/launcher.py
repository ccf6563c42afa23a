"""Start one image server per GPU, wait until each is ready, keep them up, stop them together.

``llmi serve image --gpus 0,1,2 --port 8000`` runs three servers: GPU ``0`` on port 8000, GPU
``1`` on 8001, GPU ``2`` on 8002 (ports by position). Each child sees only its GPU
(``CUDA_VISIBLE_DEVICES``) and serves on ``cuda``; a ``cpu`` entry runs a CPU server (for tests
and laptops: ``--gpus cpu,cpu``). A child that exits is reported and restarted, up to
``max_restarts`` times each; Ctrl-C or SIGTERM stops every child (SIGTERM, then SIGKILL after
a grace period). Children also die with the launcher (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["Launcher", "ServerSpec", "parse_gpus", "urls_line"]


@dataclass(frozen=True)
class ServerSpec:
    """One child server: where it runs and how to start it."""

    index: int
    device_id: str  # "0", "1", ... or "cpu"
    port: int
    host: str

    @property
    def device(self) -> str:
        return "cpu" if self.device_id == "cpu" else "cuda"

    @property
    def label(self) -> str:
        where = "cpu" if self.device_id == "cpu" else f"gpu{self.device_id}"
        return f"{where}:{self.port}"

    def url(self) -> str:
        """The URL clients elsewhere use."""
        return f"http://{_connect_host(self.host)}:{self.port}"

    def probe_url(self) -> str:
        """The URL the launcher itself probes (loopback when bound to every interface)."""
        return f"http://{_probe_host(self.host)}:{self.port}"

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env["CUDA_VISIBLE_DEVICES"] = "" if self.device_id == "cpu" else self.device_id
        env[PARENT_ENV] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


def parse_gpus(text: str) -> list[str]:
    """``"0,1,2"`` → ``["0", "1", "2"]``; ``cpu`` entries allowed; empty or bad → ConfigError.

    >>> parse_gpus("0, 2,cpu")
    ['0', '2', 'cpu']
    """
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError("--gpus needs at least one entry, e.g. --gpus 0,1 or --gpus cpu")
    for item in items:
        if item != "cpu" and not item.isdigit():
            raise ConfigError(f"--gpus entry {item!r} is neither a GPU index nor 'cpu'")
    gpus = [i for i in items if i != "cpu"]
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus lists a GPU twice: {text!r}")
    return items


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def urls_line(specs: Sequence[ServerSpec]) -> str:
    return ",".join(s.url() for s in specs)


def export_lines(var: str, urls: str) -> list[str]:
    """The shell lines that point clients at the servers.

    llmi's clients read a comma-separated list and balance over it; LLM-I's own clients read
    ONE URL per variable (a list breaks them), so with several servers the lines say so.

    >>> export_lines("QWEN_IMAGE_SERVER_URL", "http://h:8000")
    ['export QWEN_IMAGE_SERVER_URL=http://h:8000']
    >>> for line in export_lines("QWEN_IMAGE_SERVER_URL", "http://h:8000,http://h:8001"): print(line)
    export QWEN_IMAGE_SERVER_URL=http://h:8000,http://h:8001
    # llmi's clients take this comma-separated list and balance over it; LLM-I's own
    # clients take ONE URL per variable (a list breaks them). For those, one server each:
    #   export QWEN_IMAGE_SERVER_URL=http://h:8000
    """
    lines = [f"export {var}={urls}"]
    listed = urls.split(",")
    if len(listed) > 1:
        lines += [
            "# llmi's clients take this comma-separated list and balance over it; LLM-I's own",
            "# clients take ONE URL per variable (a list breaks them). For those, one server each:",
            f"#   export {var}={listed[0]}",
        ]
    return lines


PARENT_ENV = "LLMI_LAUNCHER_PID"


def die_with_launcher() -> None:
    """In a launched server: get SIGTERM when the launcher dies (Linux), even by SIGKILL.

    The launcher sets ``LLMI_LAUNCHER_PID``; a server started by hand is unaffected. (Done in
    the child itself rather than through ``preexec_fn``, which is unsafe beside threads.)
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        return  # no libc to ask: the launcher's own cleanup still applies
    if str(os.getppid()) != parent:  # the launcher died before we got here
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Child:
    spec: ServerSpec
    proc: subprocess.Popen | None = None
    restarts: int = 0
    failed: bool = False
    ready: bool = False
    pump: threading.Thread | None = None
    exits: list[int] = field(default_factory=list)
    missed_health: int = 0
    next_health: float = 0.0


class Launcher:
    """Runs and supervises the servers described by ``specs``.

    ``server_args`` are the ``llmi serve image`` arguments every child gets (``--port`` and
    ``--device`` are added per child). ``say`` receives the launcher's own messages.
    """

    def __init__(
        self,
        specs: Sequence[ServerSpec],
        server_args: Sequence[str],
        *,
        ready_timeout: float = 900.0,
        max_restarts: int = 3,
        stop_grace: float = 30.0,
        say: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
        mode: str = "generation",
        health_interval: float = 10.0,
        health_failures: int = 3,
    ) -> None:
        if not specs:
            raise ConfigError("nothing to launch")
        self.children = [_Child(spec) for spec in specs]
        self.server_args = list(server_args)
        self.ready_timeout = ready_timeout
        self.max_restarts = max_restarts
        self.stop_grace = stop_grace
        self.say = say or (lambda msg: print(f"[llmi launcher] {msg}", file=sys.stderr, flush=True))
        self.base_env = dict(os.environ if env is None else env)
        self.mode = mode
        #: a ready server whose /health fails this many times in a row, ``health_interval``
        #: seconds apart, is hung (its event loop never blocks on inference): it is killed and
        #: restarted like a crashed one
        self.health_interval = health_interval
        self.health_failures = health_failures
        self._stop = threading.Event()

    @property
    def specs(self) -> list[ServerSpec]:
        return [c.spec for c in self.children]

    # --- one child -------------------------------------------------------------------------

    def _command(self, spec: ServerSpec) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llmi.serve",
            "image",
            *self.server_args,
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--device",
            spec.device,
        ]

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        child.ready = False
        child.proc = subprocess.Popen(
            self._command(spec),
            env=spec.env(self.base_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own session: a terminal's Ctrl-C reaches only the launcher, which then sends each
            # server exactly one SIGTERM (a second signal would make uvicorn skip draining).
            start_new_session=True,
        )
        child.pump = threading.Thread(
            target=self._pump, args=(child.proc, spec.label), daemon=True
        )
        child.pump.start()
        self.say(f"started {spec.label} (pid {child.proc.pid})")

    @staticmethod
    def _pump(proc: subprocess.Popen, label: str) -> None:
        # Prefix each child's log lines so interleaved output stays readable.
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            sys.stderr.write(f"[{label}] {line.decode(errors='replace')}")
        sys.stderr.flush()

    def _wait_ready(self, child: _Child, deadline: float) -> bool:
        import httpx

        url = child.spec.probe_url()
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline and not self._stop.is_set():
                if child.proc is None or child.proc.poll() is not None:
                    return False
                try:
                    if http.get(f"{url}/ready").status_code == 200:
                        child.ready = True
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        return False

    # --- all of them -----------------------------------------------------------------------

    def start(self) -> bool:
        """Start every child and wait until each is ready; False if any never became ready."""
        for child in self.children:
            self._spawn(child)
        deadline = time.monotonic() + self.ready_timeout
        ok = True
        for child in self.children:
            if self._wait_ready(child, deadline):
                self.say(f"{child.spec.label} ready at {child.spec.url()}")
            else:
                ok = False
                code = child.proc.poll() if child.proc else None
                why = f"exited with code {code}" if code is not None else "not ready in time"
                self.say(f"{child.spec.label} failed to start: {why}")
        return ok

    def check(self) -> list[str]:
        """One supervision pass: report and restart children that exited; note restarted
        ones that became ready. Never blocks on a loading child. Returns the reports."""
        reports = []
        for child in self.children:
            if child.failed or child.proc is None or self._stop.is_set():
                continue
            code = child.proc.poll()
            if code is None:
                if not child.ready and self._probe(child):
                    child.ready = True
                    reports.append(f"{child.spec.label} ready again at {child.spec.url()}")
                    self.say(reports[-1])
                elif child.ready and self._hung(child):
                    msg = (
                        f"{child.spec.label} did not answer /health {child.missed_health} times "
                        "in a row; killing it"
                    )
                    self.say(msg)
                    reports.append(msg)
                    child.proc.kill()
                    child.proc.wait()
                else:
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
            child.exits.append(code)
            child.ready = False
            if child.restarts >= self.max_restarts:
                child.failed = True
                msg = f"{child.spec.label} exited with code {code}; gave up after {child.restarts} restarts"
                self.say(msg)
                reports.append(msg)
                continue
            child.restarts += 1
            child.missed_health = 0
            msg = f"{child.spec.label} exited with code {code}; restarting ({child.restarts}/{self.max_restarts})"
            self.say(msg)
            reports.append(msg)
            self._spawn(child)
        return reports

    def _hung(self, child: _Child) -> bool:
        now = time.monotonic()
        if now < child.next_health:
            return False
        child.next_health = now + self.health_interval
        import httpx

        try:
            ok = httpx.get(child.spec.probe_url() + "/health", timeout=5.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            ok = False
        child.missed_health = 0 if ok else child.missed_health + 1
        return child.missed_health >= self.health_failures

    @staticmethod
    def _probe(child: _Child) -> bool:
        import httpx

        try:
            return httpx.get(child.spec.probe_url() + "/ready", timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def all_failed(self) -> bool:
        return all(c.failed for c in self.children)

    def supervise(self, interval: float = 0.5) -> int:
        """Watch the children until :meth:`stop` (or every child gave up); the exit code."""
        while not self._stop.wait(interval):
            self.check()
            if self.all_failed:
                self.say("every server has failed; stopping")
                return 1
        return 0

    def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL after ``stop_grace`` seconds."""
        self._stop.set()
        procs = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2.0)
        if procs:
            self.say("all servers stopped")

    def run(self) -> int:
        """Start, print the URLs, supervise until Ctrl-C/SIGTERM, stop. The CLI's body."""
        previous = signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        try:
            try:
                if not self.start() and not any(c.ready for c in self.children):
                    self.say("no server came up")
                    return 1
                urls = urls_line([c.spec for c in self.children if c.ready])
                self.say("servers ready; point llmi at them with:")
                var = "QWEN_EDIT_SERVER_URL" if self.mode == "edit" else "QWEN_IMAGE_SERVER_URL"
                print("\n".join(export_lines(var, urls)), flush=True)
                return self.supervise()
            except KeyboardInterrupt:
                return 130
        finally:
            self.stop()
            signal.signal(signal.SIGTERM, previous)


def _probe_host(host: str) -> str:
    """Where the launcher itself connects to probe a child bound on ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return _connect_host(host)
