"""The code tool's worker pool, seen from the llmi process: start, feed, kill, replace.

``Pool`` keeps ``size`` sandboxed workers (``worker.py``, started by a ``Launcher``)
ready; ``Worker`` is one of them behind two private pipes. Everything here is blocking and
thread-safe, so the async tool can drive it from any event loop through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import select
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Any

from ...errors import SandboxError, ToolTimeout
from .inside import frames
from .launch import Launcher, LaunchPlan, in_cgroup, memory_cgroup, remove_cgroup

__all__ = ["Pool", "Worker", "WorkerGone"]

log = logging.getLogger("llmi.tools.sandbox")


class WorkerGone(Exception):
    """The worker stopped answering or broke the protocol; it must be replaced.

    ``why`` is ``"late"`` (no answer by the deadline), ``"died"``, ``"protocol"`` or
    ``"cancelled"``.
    """

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


class Worker:
    """One sandboxed worker behind two private pipes (jobs in, results out)."""

    def __init__(self, launcher: Launcher, startup_timeout: float) -> None:
        self.jobs = 0
        self.info: dict[str, Any] = {}
        self.next_uid: int | None = None  # the uid of the job process it holds ready
        job_r, self._job_w = os.pipe()
        self._res_r, res_w = os.pipe()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _close_fds
        self.plan: LaunchPlan = launcher.plan(job_r, res_w)
        self.plan.config["startup"] = startup_timeout
        config_r = _pipe_holding(json.dumps(self.plan.config).encode())
        options = b"".join(o.encode() + b"\0" for o in self.plan.options)
        options_r = _pipe_holding(options) if options else None
        passed = [fd for fd in (job_r, res_w, config_r, options_r) if fd is not None]
        # all of the worker's memory, every process of every job included, where the host
        # lets us make a cgroup
        self.cgroup = memory_cgroup(launcher.limits.worker_memory())
        try:
            self.proc = _spawn(
                in_cgroup(self.cgroup, self.plan.argv(config_r, options_r)),
                env=self.plan.env,
                cwd=self.plan.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                pass_fds=passed,
                start_new_session=True,  # one process group to kill
            )
        except OSError as exc:
            self._close_fds()
            self.plan.cleanup()
            if self.cgroup:
                remove_cgroup(self.cgroup)
            raise SandboxError(f"could not start a sandbox worker: {exc}") from exc
        finally:
            for fd in passed:
                os.close(fd)
        try:
            header, _ = self._read_frame(time.monotonic() + startup_timeout, None)
        except WorkerGone as exc:
            detail = self._stderr_tail() or str(exc)
            self.kill()
            raise SandboxError(f"a sandbox worker failed to start: {detail}") from None
        if header.get("type") != "ready":
            self.kill()
            raise SandboxError(f"a sandbox worker failed to start: {header.get('message')}")
        self.info = header
        self.next_uid = header.get("next_uid")

    def run(self, job: dict, deadline: float, cancel: threading.Event | None) -> tuple[dict, bytes]:
        self.jobs += 1
        self._write_frame(job)
        header, png = self._read_frame(deadline, cancel)
        if header.get("type") != "result" or header.get("id") != job.get("id"):
            raise WorkerGone("protocol", "the worker answered out of turn")
        self.next_uid = header.get("next_uid")
        return header, png

    def _write_frame(self, header: dict) -> None:
        try:
            frames.write(self._job_w, header)
        except OSError as exc:
            raise WorkerGone("died", f"the worker stopped reading jobs ({exc})") from None

    def _read_exact(self, n: int, deadline: float, cancel: threading.Event | None) -> bytes:
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerGone("late", "the worker did not answer in time")
            if cancel is not None and cancel.is_set():
                raise WorkerGone("cancelled", "the call was cancelled")
            ready, _, _ = select.select([self._res_r], [], [], min(left, 0.25))
            if not ready:
                continue
            chunk = os.read(self._res_r, min(n, 1 << 20))
            if not chunk:
                raise WorkerGone("died", "the worker died")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float, cancel: threading.Event | None) -> tuple[dict, bytes]:
        try:
            jlen, blen = frames.lengths(self._read_exact(8, deadline, cancel))
            header = frames.header_of(self._read_exact(jlen, deadline, cancel))
        except frames.FrameError as exc:
            raise WorkerGone("protocol", f"the worker broke the protocol ({exc})") from None
        payload = self._read_exact(blen, deadline, cancel) if blen else b""
        return header, payload

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return text.splitlines()[-1] if text else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Kill the worker's whole sandbox (its process group; namespaces die with it)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if not self.plan.pidns and self.next_uid is not None:
            _kill_uid(self.next_uid)  # a job's daemons outside the process group, no PID namespace
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            log.error("sandbox worker %s did not die", self.proc.pid)
        self._close_fds()
        self.plan.cleanup()
        if self.cgroup:
            remove_cgroup(self.cgroup)

    def _close_fds(self) -> None:
        for fd in (self._job_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()


def _pipe_holding(data: bytes) -> int:
    """The read end of a pipe that already holds ``data`` (and whose write end is closed)."""
    r, w = os.pipe()
    try:
        if len(data) > 60_000:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, min(1 << 20, len(data) + 4096))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view) :]
    finally:
        os.close(w)
    return r


_spawn_queue: queue.SimpleQueue[tuple[Future, tuple, dict]] = queue.SimpleQueue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _spawner_loop() -> None:
    while True:
        future, args, kwargs = _spawn_queue.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(subprocess.Popen(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


def _spawn(*args: Any, **kwargs: Any) -> subprocess.Popen:
    """``Popen`` from one thread that lives as long as the process.

    bwrap's ``--die-with-parent`` (like any ``PR_SET_PDEATHSIG``) fires when the *thread* that
    forked it exits, so workers must not be started from short-lived threads.
    """
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(
                target=_spawner_loop, name="llmi-sandbox-spawner", daemon=True
            )
            _spawner.start()
    future: Future = Future()
    _spawn_queue.put((future, args, kwargs))
    return future.result()


def _kill_uid(uid: int) -> None:
    """Kill every process of a job uid (jobs that escaped the worker's process group)."""
    try:
        subprocess.run(
            ["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=5, env={"PATH": "/usr/bin:/bin"}, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError, ValueError):
        pass


# --- the pool -----------------------------------------------------------------------------


class Pool:
    """Keeps ``size`` workers started; hands idle ones out and replaces broken ones.

    A cold pool starts one worker first and the others once it is ready, so the first chart
    does not share the machine's cores with every other worker's imports.
    """

    def __init__(self, launcher: Launcher, size: int, startup_timeout: float, max_jobs: int):
        self.launcher = launcher
        self.size = size
        self.startup_timeout = startup_timeout
        self.max_jobs = max_jobs
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._count = 0  # idle + busy + starting
        self._starting = 0
        self._closed = False
        self._start_error: SandboxError | None = None
        self._failures = 0
        self.started = 0
        self.replaced = 0
        self.unhealthy = 0  # replaced because they could not promise a job a clean start

    def _fill(self) -> None:
        """Start workers until the pool is full again (caller holds the lock)."""
        target = self.size if self.started else 1
        while self._count < target and not self._closed:
            self._count += 1
            self._starting += 1
            threading.Thread(target=self._start_one, name="llmi-sandbox-start", daemon=True).start()

    def _start_one(self) -> None:
        if self._failures:
            time.sleep(min(0.2 * 2 ** min(self._failures, 5), 5.0))  # a broken host: back off
        try:
            worker = Worker(self.launcher, self.startup_timeout)
        except SandboxError as exc:
            with self._cond:
                self._count -= 1
                self._starting -= 1
                self._start_error = exc
                self._failures += 1
                self._cond.notify_all()
            log.error("%s", exc)
            return
        with self._cond:
            self._starting -= 1
            self.started += 1
            self._failures = 0
            self._start_error = None
            if self._closed:
                worker.kill()
                self._count -= 1
                return
            self._idle.append(worker)
            self._fill()  # the first worker is up: now the others
            self._cond.notify_all()

    def wait_ready(self, deadline: float) -> None:
        """Start every worker and wait until all are idle (or raise why they cannot start)."""
        with self._cond:
            self._fill()
            while len(self._idle) < self.size and time.monotonic() < deadline:
                if self._closed:
                    raise SandboxError("the code tool was closed")
                if self._start_error is not None and self._starting == 0:
                    raise self._start_error
                self._cond.wait(0.5)

    def acquire(self, deadline: float) -> Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxError("the code tool was closed")
                self._fill()
                while self._idle:
                    # the worker idle longest: its next job process has had time to prewarm
                    worker = self._idle.pop(0)
                    if worker.alive():
                        return worker
                    self._count -= 1  # died while idle
                    self.replaced += 1
                    threading.Thread(target=worker.kill, daemon=True).start()
                    self._fill()
                # No worker alive and starting them fails: say why instead of waiting out the
                # deadline (starts go on being retried, with a back-off).
                if self._start_error is not None and self._count == self._starting:
                    err, self._start_error = self._start_error, None
                    raise err
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ToolTimeout("no sandbox worker became free in time")
                self._cond.wait(min(left, 1.0))

    def release(self, worker: Worker, healthy: bool, unhealthy: bool = False) -> None:
        """Back to the idle list, or (``healthy=False``) killed and replaced; ``unhealthy``
        counts a worker that said it could not give the next job a clean start."""
        if healthy and worker.jobs >= self.max_jobs:
            healthy = False
        with self._cond:
            if healthy and not unhealthy and not self._closed and worker.alive():
                self._idle.append(worker)
                self._cond.notify_all()
                return
            self._count -= 1
            if not self._closed:
                self.replaced += 1
                self.unhealthy += bool(unhealthy)
            self._fill()  # the replacement starts before the old one is even dead
        worker.kill()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for worker in idle:
            worker.kill()
