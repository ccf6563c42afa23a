"""The ``code`` tool: chart code from a model, run in a pool of sandboxed Python workers.

>>> tool = CodeSandboxTool(workers=2, timeout=20)  # nothing starts until the first run
>>> (tool.source, tool.backend)
('code', 'sandbox')

``await tool.run(ToolCall(ImageRequest("code", "sine", {"code": "plt.plot([1, 2])"})))`` gives a
``ToolOutput`` whose image is a PNG and whose ``info`` holds ``figures`` and ``sandbox_level``.

How it works (details in ``docs/sandbox.md``):

1. On the first ``run`` the tool picks the strongest sandbox level the host supports
   (``bwrap`` > ``unshare`` > ``rlimits``; a weaker one is logged as a warning) and starts one
   worker (``inside/worker.py``), then the other ``workers - 1`` once it is ready.
2. Each job goes to an idle worker over a private pipe; there a process forked from a zygote
   that never saw a job, in its own namespaces, tmpfs, uid, rlimits and seccomp filter, runs
   it and renders every drawn figure to one PNG.
3. The answer is believed only as far as it checks out (``png.checked_png``). A job that hangs,
   crashes, floods its output or leaves processes behind is killed; a worker that dies, stops
   answering, breaks the protocol or cannot give a job a clean start is killed with its whole
   sandbox and replaced, so the pool never shrinks for good.

The pool lives in threads with blocking pipes, so ``run`` works from any event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from typing import Any, ClassVar

from ...errors import EmptyFigure, SandboxError, ToolTimeout
from ...image import ImageData
from ..base import ToolCall, ToolOutput
from .launch import LEVELS, Launcher, Limits, probe_level
from .png import checked_png
from .pool import Pool, Worker, WorkerGone

__all__ = ["CodeSandboxTool", "Limits"]

log = logging.getLogger("llmi.tools.sandbox")

_MAX_CODE = 256 << 10
_GRACE = 5.0  # seconds the parent waits past a job's time limit before killing the worker
# C0 and C1 controls but newline and tab, and bidirectional overrides: what the code prints or
# puts in an exception must not drive a terminal (escape sequences, carriage returns) or reorder
# text where llmi shows it
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_probe_lock = threading.Lock()
_probe_cache: dict[tuple[str, str], str | None] = {}


# --- the tool -----------------------------------------------------------------------------


class CodeSandboxTool:
    """Renders ``code`` tags (matplotlib/seaborn/pandas chart code) in sandboxed workers.

    Parameters
    ----------
    workers:
        warm worker processes kept ready (each serves one job at a time).
    timeout:
        seconds one job may run (capped by the engine's per-call timeout).
    sandbox:
        ``"auto"`` (strongest available), or one of ``"bwrap"``, ``"unshare"``, ``"rlimits"``
        to insist on one (``run`` fails if it does not work here).
    limits:
        per-job resource limits (``Limits(memory=..., fsize=..., nproc=..., ...)``).
    max_jobs_per_worker:
        a worker is retired and replaced after this many jobs.
    prewarm:
        the process forked for the next job draws a throw-away chart while it waits, so the
        job does not pay for first-touch page copies (lower latency, a little more CPU).
    """

    source: ClassVar[str] = "code"
    backend: str = "sandbox"

    def __init__(
        self,
        *,
        workers: int = 2,
        timeout: float = 20.0,
        sandbox: str = "auto",
        limits: Limits | None = None,
        max_jobs_per_worker: int = 500,
        startup_timeout: float = 90.0,
        python: str | None = None,
        prewarm: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if sandbox != "auto" and sandbox not in LEVELS:
            raise ValueError(f"sandbox must be 'auto' or one of {', '.join(LEVELS)}")
        self.workers = workers
        self.timeout = float(timeout)
        self.limits = limits or Limits()
        self.requested_sandbox = sandbox
        self.max_jobs_per_worker = max_jobs_per_worker
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.prewarm = prewarm
        self._lock = threading.Lock()
        self._pool: Pool | None = None
        self._level: str | None = None
        self._closed = False
        self._warming = False
        self._job_ids = 0

    # -- public ------------------------------------------------------------------------------

    @property
    def sandbox_level(self) -> str:
        """The sandbox level in use (``bwrap``, ``unshare`` or ``rlimits``); probes if needed."""
        if self._level is None:
            self._level = self._choose_level()
        return self._level

    async def run(self, call: ToolCall) -> ToolOutput:
        code = call.request.params.get("code")
        if not isinstance(code, str):
            raise SandboxError("the code tag has no code to run")
        if not code.strip():
            raise EmptyFigure("there is no code to run, so nothing was drawn", _blank_figure())
        if len(code.encode("utf-8", "replace")) > _MAX_CODE:
            raise SandboxError(
                f"the code is longer than {_MAX_CODE >> 10} KB; charts need far less"
            )
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._run_blocking, code, call.timeout, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker thread kills the job and replaces the worker
            raise

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop every worker (sync form of ``aclose``)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def render(self, code: str, timeout: float | None = None) -> ToolOutput:
        """Synchronous convenience: run ``code`` and return its chart (for scripts and tests)."""
        limit = timeout if timeout is not None else self.timeout
        # the first call may wait for the workers to start; the code itself gets ``limit``
        return self._run_blocking(code, limit + self.startup_timeout, None, limit)

    def warm_up(self, wait: bool = True, timeout: float | None = None) -> None:
        """Start the workers now instead of on the first ``run`` (cheap to call again).

        With ``wait=False`` it returns at once (the sandbox probe and the start happen in the
        background): one worker starts, the rest when it is ready.
        """
        if wait:
            self._get_pool().wait_ready(time.monotonic() + (timeout or self.startup_timeout))
            return
        with self._lock:
            if self._warming or self._closed:
                return
            self._warming = True
        threading.Thread(target=self._start_pool, name="llmi-sandbox-warm-up", daemon=True).start()

    def _start_pool(self) -> None:
        try:
            pool = self._get_pool()
            with pool._cond:
                pool._fill()
        except SandboxError as exc:  # the first run says it again, to its caller
            log.warning("warming up the code sandbox failed: %s", exc)

    @property
    def stats(self) -> dict[str, int]:
        """Workers ``started``, ``replaced`` and, of those, ``unhealthy`` (no clean start)."""
        pool = self._pool
        if pool is None:
            return {"started": 0, "replaced": 0, "unhealthy": 0}
        return {"started": pool.started, "replaced": pool.replaced, "unhealthy": pool.unhealthy}

    # -- internals ---------------------------------------------------------------------------

    def _choose_level(self) -> str:
        wanted = LEVELS if self.requested_sandbox == "auto" else (self.requested_sandbox,)
        reasons = []
        for level in wanted:
            key = (level, self.python)
            with _probe_lock:
                if key not in _probe_cache:
                    _probe_cache[key] = probe_level(level, self.python)
                why = _probe_cache[key]
            if why is None:
                if level != LEVELS[0]:
                    missing = "; ".join(reasons) or f"sandbox={level!r} was requested"
                    log.warning(
                        "code sandbox DEGRADED to %r (%s): %s", level, missing,
                        "no network isolation, the file system is visible"
                        if level == "rlimits"
                        else "the host file system is visible to the job (as an unprivileged uid"
                        " when llmi runs as root)",
                    )  # fmt: skip
                return level
            reasons.append(f"{level}: {why}")
        raise SandboxError("no usable code sandbox: " + "; ".join(reasons))

    def _get_pool(self) -> Pool:
        with self._lock:
            if self._closed:
                raise SandboxError("the code tool was closed")
            if self._pool is None:
                launcher = Launcher(self.sandbox_level, self.limits, self.python, self.prewarm)
                self._pool = Pool(
                    launcher, self.workers, self.startup_timeout, self.max_jobs_per_worker
                )
            return self._pool

    def _run_blocking(
        self,
        code: str,
        call_timeout: float,
        cancel: threading.Event | None,
        job_timeout: float | None = None,
    ) -> ToolOutput:
        started = time.monotonic()
        call_deadline = started + max(float(call_timeout), 0.1)
        pool = self._get_pool()
        for attempt in (1, 2):
            # 1. an idle worker (starting them if this is the first call)
            worker = pool.acquire(call_deadline)
            waited = time.monotonic() - started
            # 2. the job, with the time that is left
            limit = min(job_timeout or self.timeout, call_deadline - time.monotonic())
            if limit < 0.05:
                pool.release(worker, healthy=True)
                raise ToolTimeout("the call's time ran out while waiting for a sandbox worker")
            try:
                header, png = self._send(worker, code, limit, cancel)
            except WorkerGone as exc:
                pool.release(worker, healthy=False, unhealthy=exc.why == "protocol")
                if exc.why == "cancelled":
                    raise ToolTimeout("the chart was cancelled") from None
                if exc.why == "late" and worker.alive():
                    raise SandboxError(
                        f"the code ran longer than the {limit:.3g} s time limit and was killed"
                    ) from None
                if attempt == 1:
                    # A worker can die between jobs (killed from outside, host OOM): the job
                    # gets one more try on a fresh worker.
                    log.warning("sandbox worker lost during a job (%s); retrying on another", exc)
                    continue
                raise SandboxError(
                    f"the sandbox worker failed while running the code ({exc}); it was replaced"
                ) from None
            if header.get("kind") == "unhealthy":
                # it could not give this job a clean start: the job never ran; try another
                pool.release(worker, healthy=False, unhealthy=True)
                if attempt == 1:
                    log.warning("%s; replacing it", header.get("message"))
                    continue
                raise SandboxError(str(header.get("message")))
            pool.release(worker, healthy=True, unhealthy=bool(header.get("unhealthy")))
            # 3. the answer
            return self._to_output(header, png, waited)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, worker: Worker, code: str, limit: float, cancel: threading.Event | None
    ) -> tuple[dict, bytes]:
        with self._lock:
            self._job_ids += 1
            job_id = self._job_ids
        job = {
            "type": "job",
            "id": job_id,
            "code": code,
            "timeout": limit,
            "max_output": self.limits.max_output,
            "max_pixels": self.limits.max_pixels,
        }
        return worker.run(job, time.monotonic() + limit + _GRACE, cancel)

    def _to_output(self, header: dict, png: bytes, waited: float) -> ToolOutput:
        level = self.sandbox_level
        output = _printable(str(header.get("output") or "").strip())
        if not header.get("ok"):
            message = _printable(str(header.get("message") or "the code failed"))
            if header.get("kind") == "empty":
                raise EmptyFigure(message, _blank_figure())
            if output and header.get("kind") in ("exit", "signal", "cpu", "timeout", "memory"):
                message += f"; last output: {output[-300:]!r}"
            raise SandboxError(message)
        try:
            image = checked_png(png, self.limits.max_pixels)
        except ValueError as exc:
            raise SandboxError(f"{exc}; it was refused") from None
        info: dict[str, Any] = {
            "figures": _number(header.get("figures"), int, 1),
            "sandbox_level": level,
            "render_s": round(_number(header.get("wall_s"), float, 0.0), 4),
            "queue_s": round(waited, 4),
        }
        # the clean start: this job's set-up, and clearing away the worker's previous job
        for key in ("setup_ms", "setup_cpu_ms", "clear_ms", "clear_cpu_ms"):
            info[key] = _number(header.get(key), float, 0.0)
        if output:
            info["stdout_tail"] = output[-500:]
        return ToolOutput(image=image, info=info)

    def __del__(self) -> None:  # best effort; bwrap's --die-with-parent covers interpreter exit
        try:
            if self._pool is not None:
                self._pool.close()
        except Exception:
            pass


def _blank_figure() -> ImageData:
    """What LLM-I's runner saves when nothing was drawn: the empty default figure, 660x500 of
    white once ``bbox_inches='tight'`` pads it."""
    return ImageData.blank(660, 500)


def _printable(text: str) -> str:
    r"""``text`` with control characters shown as escapes, so the code's words stay words.

    >>> _printable("ok\x1b]0;owned\x07\r\nnext\tline")
    'ok\\x1b]0;owned\\x07\\x0d\nnext\tline'
    """
    return _UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _number(value: object, kind: type, default: float) -> Any:
    """A number from the worker's answer, or ``default`` for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return kind(value)
    return default
