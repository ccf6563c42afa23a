"""The inference worker: one thread that loads the pipeline, then runs jobs from a bounded queue.

The event loop never runs a model: handlers :meth:`InferenceWorker.submit` a job (refused at
once when the queue is full) and await its ``concurrent.futures.Future``. One thread per
server is deliberate — a GPU runs one diffusion at a time best, and the launcher runs one
server per GPU.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counters", "InferenceWorker", "NotReady", "QueueFull", "ShuttingDown"]

log = logging.getLogger("llmi.serve")


class QueueFull(Exception):
    """The job queue is at capacity; try again later."""


class NotReady(Exception):
    """The pipeline is still loading (or failed to load)."""


class ShuttingDown(Exception):
    """The server is stopping and takes no new work."""


@dataclass
class Counters:
    """What ``GET /info`` reports; mutated only under the worker's lock."""

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected_queue_full: int = 0
    images: int = 0
    busy_seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "rejected_queue_full": self.rejected_queue_full,
            "images": self.images,
            "busy_seconds": round(self.busy_seconds, 3),
            "by_kind": dict(self.by_kind),
        }


@dataclass
class _Job:
    kind: str
    payload: Any
    future: concurrent.futures.Future
    enqueued: float


class InferenceWorker:
    """Owns the model thread.

    ``load`` builds the runner (on the worker thread, so loading never blocks the loop);
    ``run(runner, payload)`` executes one job there. ``queue_size`` bounds the jobs *waiting*
    (the running one is not counted).
    """

    def __init__(
        self,
        load: Callable[[], Any],
        run: Callable[[Any, Any], Any],
        *,
        queue_size: int = 16,
        name: str = "llmi-inference",
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._load = load
        self._run = run
        self.queue_size = queue_size
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._stopping = False
        self.runner: Any = None
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self.load_seconds: float | None = None
        self.counters = Counters()
        self.running: _Job | None = None
        self._avg_job_seconds = 0.0

    # --- control ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, *, grace: float = 10.0, cancel: Callable[[], None] | None = None) -> None:
        """Stop taking jobs; let the queue drain for up to ``grace`` seconds, then cancel.

        ``cancel`` interrupts the running job (the runner's own hook).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=max(grace, 0.0))
        if self._thread.is_alive():
            with self._cond:
                dropped = list(self._queue)
                self._queue.clear()
            for job in dropped:
                self._finish(job, error=ShuttingDown("server stopped before running this job"))
            if cancel is not None:
                cancel()
            self._thread.join(timeout=5.0)

    # --- submitting ------------------------------------------------------------------------

    def submit(self, kind: str, payload: Any) -> concurrent.futures.Future:
        """Queue a job; raises :class:`QueueFull`, :class:`NotReady` or :class:`ShuttingDown`."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise ShuttingDown("server is shutting down")
            if not self.ready.is_set():
                raise NotReady(
                    f"pipeline failed to load: {self.load_error}"
                    if self.load_error
                    else "pipeline is still loading"
                )
            if len(self._queue) >= self.queue_size:
                self.counters.rejected_queue_full += 1
                raise QueueFull(f"queue full ({self.queue_size} waiting)")
            self._queue.append(_Job(kind, payload, future, time.monotonic()))
            self.counters.accepted += 1
            self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + 1
            self._cond.notify()
        return future

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return 1 if self.running is not None else 0

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, at least 1."""
        per_job = self._avg_job_seconds or 1.0
        return max(1, round(per_job * (len(self._queue) + 1)))

    # --- the thread ------------------------------------------------------------------------

    def _main(self) -> None:
        started = time.monotonic()
        try:
            self.runner = self._load()
        except BaseException as exc:
            log.exception("pipeline failed to load")
            self.load_error = exc
            return
        self.load_seconds = time.monotonic() - started
        self.ready.set()
        log.info("pipeline ready in %.1f s", self.load_seconds)
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:  # stopping and drained
                    return
                job = self._queue.popleft()
                self.running = job
            self._execute(job)
            with self._cond:
                self.running = None

    def _execute(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            with self._cond:
                self.counters.cancelled += 1
            return
        started = time.monotonic()
        try:
            result = self._run(self.runner, job.payload)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
            self._finish(job, error=exc, seconds=time.monotonic() - started)
        else:
            self._finish(job, result=result, seconds=time.monotonic() - started)

    def _finish(
        self, job: _Job, *, result: Any = None, error: BaseException | None = None, seconds: float = 0.0
    ) -> None:
        with self._cond:
            self.counters.busy_seconds += seconds
            if error is None:
                self.counters.completed += 1
                self.counters.images += len(result) if isinstance(result, list) else 0
                # exponential moving average, for Retry-After
                a = self._avg_job_seconds
                self._avg_job_seconds = seconds if a == 0 else 0.8 * a + 0.2 * seconds
            elif isinstance(error, ShuttingDown) or type(error).__name__ == "Cancelled":
                self.counters.cancelled += 1
            else:
                self.counters.failed += 1
        if job.future.cancelled():
            return
        if error is None:
            job.future.set_result(result)
        else:
            if not job.future.running():
                job.future.set_running_or_notify_cancel()
            job.future.set_exception(error)
