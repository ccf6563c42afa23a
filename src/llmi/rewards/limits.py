"""Limits for calls to a judge: requests at once, requests per minute, tokens per minute.

Both work across threads and event loops (a verl worker, TRL's reward loop and a sync wrapper
may share one judge client), so a limit set on a judge holds for everything that uses it.

>>> import asyncio
>>> async def demo():
...     gate = Gate(2)
...     async with gate:
...         return gate.held
>>> asyncio.run(demo())
1
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Gate", "RateLimiter", "JudgeLimits"]


@dataclass(frozen=True)
class JudgeLimits:
    """How one judge endpoint is called.

    At most ``concurrency`` requests at once, ``rpm`` requests and ``tpm`` tokens per minute
    (``None``: unlimited), each attempt at most ``timeout`` seconds, up to ``retries`` more
    attempts for transient errors (connection failures, timeouts, 408/429/5xx), waiting
    ``backoff · 2^k`` seconds (jittered) or the server's ``Retry-After`` (at most
    ``max_retry_after``).
    """

    concurrency: int = 16
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 1.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"judge concurrency must be a positive integer, not {self.concurrency!r}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"judge {name} must be a positive number or None, not {value!r}")
        if not self.timeout > 0:
            raise ConfigError(f"judge timeout must be positive, not {self.timeout!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"judge retries must be 0 or more, not {self.retries!r}")
        if self.backoff < 0 or self.max_retry_after < 0:
            raise ConfigError("judge backoff and max_retry_after must be 0 or more")


class Gate:
    """An async semaphore that any event loop in any thread can wait on."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.held < self.limit and not self._waiters:
                self._take()
                return
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued and waiter[1].done() and not waiter[1].cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                if loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self._hand_over, future)
                return  # the slot moves to the waiter: held stays the same
            self.held -= 1

    def _take(self) -> None:
        self.held += 1
        self.peak = max(self.peak, self.held)

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.done():  # its waiter was cancelled meanwhile
            self.release()
        else:
            future.set_result(None)

    async def __aenter__(self) -> "Gate":
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RateLimiter:
    """A token bucket refilled at ``per_minute / 60`` per second, holding one second's worth.

    ``acquire(n)`` reserves ``n`` (going into debt if needed) and sleeps until the debt is
    paid, so requests are paced evenly rather than burst at the top of each minute;
    ``adjust(n)`` corrects a reservation once the real cost is known (a judge's token usage).

    >>> bucket = RateLimiter(60)            # one per second
    >>> bucket.reserve(1), round(bucket.reserve(1), 1)
    (0.0, 1.0)
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        """Take ``amount`` now; returns how long to wait before using it."""
        with self._lock:
            self._refill()
            self._tokens -= amount
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def adjust(self, amount: float) -> None:
        """Take ``amount`` more (or give back a negative amount) without waiting."""
        with self._lock:
            self._refill()
            self._tokens = min(self.capacity, self._tokens - amount)

    async def acquire(self, amount: float = 1.0) -> None:
        delay = self.reserve(amount)
        if delay > 0:
            await asyncio.sleep(delay)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
