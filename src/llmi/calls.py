"""One tool call as the engine makes it.

``Caller.call`` goes through the content-addressed cache (``llmi.cache``), joins an identical
call already in flight instead of making it twice, waits for the tool's concurrency limit,
bounds each attempt by the tool's timeout and the document's deadline, and retries transient
errors with jittered exponential backoff (or the ``Retry-After`` a service asked for).
``Caller.tries`` adds what a search needs: when the query finds nothing, the other queries of
``llmi.queries`` are tried in turn, each recorded.

Every outcome is a value (``Outcome``): a backend's failure, or a bug in it, is recorded, never
raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from .cache import MemoryCache, cache_key
from .document import Fallback
from .errors import NotFound, ToolError, ToolTimeout
from .http import Retry
from .image import ImageData
from .queries import alternatives
from .sources import ToolLimits
from .tags import ImageRequest
from .tools.base import Tool, ToolCall, ToolOutput

__all__ = ["Caller", "Deadline", "Outcome"]

log = logging.getLogger("llmi.engine")


@dataclass
class Deadline:
    """When a document's tools must be done (``None``: no limit yet). A streamed answer's
    deadline is set only when its text is complete: the budget is for the tools, not for
    the writer."""

    at: float | None = None

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def past(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


@dataclass
class Outcome:
    """What one tag's calls came to."""

    output: ToolOutput | None = None
    error: ToolError | None = None
    backend: str | None = None
    attempts: int = 0
    elapsed: float = 0.0
    cache_hit: bool = False
    fallback: Fallback | None = None
    tool: Tool | None = None  # the tool that answered (or failed)
    asked: ImageRequest | None = None  # the request it was asked, before any query rewrite
    notes: dict[str, Any] = field(default_factory=dict)  # search tries, repeats avoided


#: ``emit(kind, index, source, backend, message)``: a call starts or is retried
Emit = Callable[[str, int, str, str, str], None]


@dataclass
class _LoopState:
    """Objects bound to one event loop (semaphores, calls in flight)."""

    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    inflight: dict[str, asyncio.Future] = field(default_factory=dict)


class Caller:
    """Makes tool calls under ``limits`` through ``cache`` (``None``: no cache); reports
    starts and retries to ``emit``. Works from any event loop."""

    def __init__(self, limits: Mapping[str, ToolLimits], cache: MemoryCache | None, emit: Emit) -> None:
        self.limits = dict(limits)
        self.cache = cache
        self.emit = emit
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    async def tries(self, index: int, tool: Tool, request: ImageRequest, source_image: ImageData | None,
                    deadline: Deadline, context: str = "", avoid: frozenset[str] = frozenset(),
                    rewrite: bool = True) -> Outcome:
        """``call``; for a search that finds nothing (and ``rewrite``), the other queries of
        ``llmi.queries`` after it until one finds a picture, each recorded in ``notes["tries"]``.
        ``context`` is the sentence before the tag."""
        outcome = await self.call(index, tool, request, source_image, deadline, avoid)
        outcome.tool, outcome.asked = tool, request
        if not (rewrite and request.source == "search" and isinstance(outcome.error, NotFound)):
            return outcome
        tried = [{"from": "query", "query": request.query, "error": str(outcome.error)}]
        attempts, elapsed = outcome.attempts, outcome.elapsed
        for label, query in alternatives(request.query, request.description, context):
            if deadline.past():
                break
            result = await self.call(index, tool, ImageRequest("search", request.description, {"query": query}),
                                     None, deadline, avoid)
            attempts, elapsed = attempts + result.attempts, elapsed + result.elapsed
            if result.output is None:
                tried.append({"from": label, "query": query, "error": str(result.error)})
                if isinstance(result.error, NotFound):
                    continue
            else:
                tried.append({"from": label, "query": query})
            outcome = result
            break
        else:
            if len(tried) > 1:
                outcome.error = NotFound(f"nothing found in {len(tried)} tries: " + "; ".join(
                    f"{t['from']} {t['query']!r}: {t['error']}" for t in tried))
        outcome.tool, outcome.asked = tool, request
        outcome.attempts, outcome.elapsed = attempts, elapsed
        outcome.notes["tries"] = tried
        return outcome

    async def call(self, index: int, tool: Tool, request: ImageRequest, source_image: ImageData | None,
                   deadline: Deadline, avoid: frozenset[str] = frozenset()) -> Outcome:
        """One tool call through the cache, de-duplicating identical calls in flight."""
        key = self.key(tool, request, source_image, avoid)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            if isinstance(hit, ToolOutput):
                return Outcome(output=hit, backend=tool.backend, cache_hit=True)
            return Outcome(error=hit, backend=tool.backend, cache_hit=True)
        state = self._state()
        pending = state.inflight.get(key)
        if pending is not None:
            first: Outcome = await asyncio.shield(pending)
            return replace(first, cache_hit=True, elapsed=0.0, attempts=0, notes={})
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        state.inflight[key] = future
        try:
            outcome = await self._attempts(index, tool, request, source_image, deadline, avoid)
            if self.cache is not None:
                if outcome.output is not None:
                    self.cache.put(key, outcome.output)
                elif outcome.error is not None and not outcome.error.transient:
                    self.cache.put(key, outcome.error)
            future.set_result(replace(outcome, notes={}))  # a copy: the caller goes on to annotate its own
            return outcome
        except BaseException as exc:  # cancelled: let waiters see a failure, not hang
            future.set_result(Outcome(error=ToolError(f"cancelled: {exc!r}"), backend=tool.backend))
            raise
        finally:
            state.inflight.pop(key, None)

    @staticmethod
    def key(
        tool: Tool, request: ImageRequest, source_image: ImageData | None = None, avoid: frozenset[str] = frozenset()
    ) -> str:
        """Content address of a call (see ``llmi.cache.cache_key``); images to avoid count."""
        key = cache_key(tool.backend, request, source_image)
        if avoid:
            key = hashlib.sha256(" ".join([key, *sorted(avoid)]).encode()).hexdigest()
        return key

    async def _attempts(self, index: int, tool: Tool, request: ImageRequest, source_image: ImageData | None,
                        deadline: Deadline, avoid: frozenset[str]) -> Outcome:
        limits = self.limits.get(request.source, ToolLimits())
        sem = self._semaphore(request.source, limits)
        started = time.monotonic()
        outcome = Outcome(backend=tool.backend)
        for attempt in range(limits.retries + 1):
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                outcome.error = ToolTimeout("the document's deadline passed before this image was made", transient=False)
                break
            timeout = limits.timeout if remaining is None else min(limits.timeout, remaining)
            outcome.attempts += 1
            async with sem:
                self.emit("start", index, request.source, tool.backend, "")
                try:
                    output = await asyncio.wait_for(tool.run(ToolCall(request, source_image, timeout, avoid)), timeout)
                except asyncio.TimeoutError:
                    outcome.error = ToolTimeout(f"{tool.backend} took longer than {timeout:.1f} s")
                except ToolError as exc:
                    outcome.error = exc
                except Exception as exc:  # a bug in a backend is still only a failed image
                    log.exception("backend %s raised an unexpected error", tool.backend)
                    outcome.error = ToolError(f"internal error in {tool.backend}: {type(exc).__name__}: {exc}")
                else:
                    outcome.output, outcome.error = output, None
                    break
            if not outcome.error.transient or attempt == limits.retries:
                break
            delay = Retry(backoff=limits.backoff).delay(attempt, outcome.error)  # Retry-After honoured
            remaining = deadline.remaining()
            if remaining is not None and delay >= remaining:
                break
            self.emit("retry", index, request.source, tool.backend, str(outcome.error))
            await asyncio.sleep(delay)
        outcome.elapsed = time.monotonic() - started
        return outcome

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        return state

    def _semaphore(self, source: str, limits: ToolLimits) -> asyncio.Semaphore:
        sems = self._state().semaphores
        if source not in sems:
            sems[source] = asyncio.Semaphore(max(1, limits.concurrency))
        return sems[source]
