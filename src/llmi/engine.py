"""The engine: from a model's answer to a ``Document``.

``Engine.arun(text, inputs)`` does four things in order:

1. **parse** the text into prose and tag slots (``llmi.tags.parse``; never raises), read as
   the engine's profile says (``llmi.profiles``: ``llmi`` by default, ``llmi-compat`` for
   LLM-I's exact reading; thinking is removed first where the profile says so);
2. **plan**: every tag becomes a task; an ``edit`` waits only for the one image it edits
   (a dependency graph, not waves);
3. **execute** all tasks concurrently under per-tool concurrency limits, per-call timeouts,
   retries with backoff for transient errors only, one deadline for the whole document, a
   content-addressed cache with in-flight de-duplication, and configurable fallback routing;
4. **assemble** the ``Document``: ordered segments, each image with its provenance.

No tool failure escapes: each becomes a failed ``ImageSegment`` with the error's class and
message. ``Engine.run`` is the synchronous wrapper; it drives the same async core on a private
event-loop thread, so tools and caches are shared across calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Iterable, Literal, Mapping, Sequence

from ._tag_compat import index_problem
from .cache import MemoryCache, cache_key
from .document import Document, Fallback, ImageSegment, TextSegment, merge_text
from .errors import DependencyFailed, EmptyFigure, ToolError, ToolNotConfigured, ToolTimeout
from .image import ImageData
from .profiles import Profile, ProfileLike, get_profile, remove_thinking
from .sources import DEFAULT_LIMITS, NOT_CONFIGURED_HELP, SOURCES, ToolLimits
from .tags import ImageRequest, ParsedText, Tag, parse
from .tools.base import Tool, ToolCall, ToolOutput

__all__ = ["Engine", "EngineEvent", "ToolLimits", "MemoryCache", "DEFAULT_LIMITS", "NOT_CONFIGURED_HELP"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineEvent:
    """Progress of one tag, for progress displays. ``kind`` is one of ``start`` (a call
    begins), ``retry`` (a transient error, trying again), ``done`` or ``failed``."""

    kind: Literal["planned", "start", "retry", "done", "failed"]
    index: int
    tool: str | None
    backend: str | None = None
    message: str = ""
    segment: ImageSegment | None = None


# -- per-run bookkeeping -----------------------------------------------------------------------


@dataclass
class _Outcome:
    output: ToolOutput | None = None
    error: ToolError | None = None
    backend: str | None = None
    attempts: int = 0
    elapsed: float = 0.0
    cache_hit: bool = False
    fallback: Fallback | None = None


@dataclass
class _LoopState:
    """Objects bound to one event loop (semaphores, in-flight calls)."""

    semaphores: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    inflight: dict[str, asyncio.Future] = field(default_factory=dict)


class Engine:
    """Runs the tools behind a model's ``<imgen>`` tags and assembles the ``Document``.

    ``tools`` maps a tag source (``search``, ``diffusion``, ``code``, ``edit``) to a backend;
    a source with no backend yields failed images that say how to configure one (or follows
    ``fallback``, e.g. ``{"diffusion": "search"}``, recorded on the image). ``profile`` says
    how answers are read (``"llmi"``, ``"llmi-compat"`` or a ``Profile``); ``arun`` can
    override it per answer.

    >>> engine = Engine()
    >>> doc = engine.run("No images here.")
    >>> doc.judge_view()
    'No images here.'
    >>> engine.close()
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        *,
        limits: Mapping[str, ToolLimits] | None = None,
        fallback: Mapping[str, str] | None = None,
        fallback_on_failure: bool = True,
        deadline: float | None = 600.0,
        cache: MemoryCache | bool = True,
        on_event: Callable[[EngineEvent], None] | None = None,
        profile: ProfileLike = "llmi",
    ) -> None:
        self.profile: Profile = get_profile(profile)
        self.tools: dict[str, Tool] = dict(tools or {})
        for source in self.tools:
            if source not in SOURCES:
                raise ValueError(f"unknown tool source {source!r}; expected one of {SOURCES}")
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.fallback = dict(fallback or {})
        self.fallback_on_failure = fallback_on_failure
        self.deadline = deadline
        self.cache: MemoryCache | None = (
            MemoryCache() if cache is True else None if cache is False else cache
        )
        self.on_event = on_event
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._runner: _LoopThread | None = None

    # -- construction from the environment ------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "Engine":
        """The engine a user gets with no code: every backend the environment configures,
        the sandboxed code tool, and diffusion falling back to search (visibly)."""
        import os

        from .tools import default_tools

        env = os.environ if env is None else env
        if kwargs.get("fallback") is None:
            kwargs["fallback"] = {"diffusion": "search"}
        return cls(default_tools(env), **kwargs)

    # -- the async core --------------------------------------------------------------------
    async def arun(
        self,
        text: str,
        inputs: Sequence[ImageData] = (),
        *,
        deadline: float | None = None,
        meta: Mapping[str, Any] | None = None,
        profile: ProfileLike = None,
    ) -> Document:
        """Run every tag in ``text`` and return the document (never raises for tool errors).
        ``profile`` overrides the engine's for this answer."""
        started = time.monotonic()
        budget = self.deadline if deadline is None else deadline
        deadline_at = None if budget is None else started + budget
        prof = get_profile(profile, self.profile)
        answer, thinking = remove_thinking(text, prof.thinking)
        parsed = parse(answer, prof, inputs=len(inputs))  # 1. parse
        tasks = self._plan(parsed, tuple(inputs), deadline_at)  # 2. plan (and start)
        segments = await asyncio.gather(*tasks.values())  # 3. execute
        extra = {"thinking": list(thinking)} if thinking else {}
        return self._assemble(parsed, dict(zip(tasks, segments)), tuple(inputs), started, {**extra, **(meta or {})})  # 4.

    async def arun_many(
        self,
        texts: Iterable[str],
        inputs: Sequence[Sequence[ImageData]] | None = None,
        *,
        concurrency: int = 32,
        profile: ProfileLike = None,
    ) -> list[Document]:
        """Run many answers (a GRPO group, a benchmark) sharing the limits and the cache."""
        texts = list(texts)
        inputs = list(inputs) if inputs is not None else [()] * len(texts)
        gate = asyncio.Semaphore(concurrency)

        async def one(text: str, imgs: Sequence[ImageData]) -> Document:
            async with gate:
                return await self.arun(text, imgs, profile=profile)

        return list(await asyncio.gather(*(one(t, i) for t, i in zip(texts, inputs))))

    def _plan(
        self, parsed: ParsedText, inputs: tuple[ImageData, ...], deadline_at: float | None
    ) -> dict[int, asyncio.Task[ImageSegment]]:
        tasks: dict[int, asyncio.Task[ImageSegment]] = {}
        for tag in parsed.tags:
            self._emit(EngineEvent("planned", tag.index, _tool_of(tag)))
            # Tasks are created in text order, so an edit can only ever wait on earlier tags.
            tasks[tag.index] = asyncio.ensure_future(self._produce(tag, inputs, tasks, deadline_at, parsed.profile))
        return tasks

    async def _produce(
        self,
        tag: Tag,
        inputs: tuple[ImageData, ...],
        earlier: Mapping[int, "asyncio.Task[ImageSegment]"],
        deadline_at: float | None,
        profile: Profile,
    ) -> ImageSegment:
        tool = _tool_of(tag)
        if tag.request is None:
            err = tag.error
            seg = ImageSegment(
                index=tag.index, raw=tag.raw, tool=tool, status="failed",
                error=err.reason if err else "unreadable tag", error_type=type(err).__name__,
                counted=tag.counted,
            )
            self._emit(EngineEvent("failed", tag.index, tool, message=seg.error or "", segment=seg))
            return seg
        request = tag.request
        try:
            source_image = await self._edit_source(tag.index, request, inputs, earlier)
        except DependencyFailed as exc:
            outcome = _Outcome(error=exc)
        else:
            outcome = await self._call_with_fallback(tag.index, request, source_image, deadline_at)
        if isinstance(outcome.error, EmptyFigure) and profile.blank_figure == "image":
            # LLM-I saves whatever the figure holds, so a chart with nothing drawn is an image
            outcome = replace(outcome, output=ToolOutput(outcome.error.image, info={"blank": str(outcome.error)}), error=None)
        seg = self._segment(tag, outcome)
        self._emit(EngineEvent("done" if seg.ok else "failed", tag.index, tool, seg.backend, seg.error or "", seg))
        return seg

    async def _edit_source(
        self, own: int, request: ImageRequest, inputs: tuple[ImageData, ...], earlier: Mapping[int, "asyncio.Task[ImageSegment]"]
    ) -> ImageData | None:
        """The image an edit works on: an input (``0..M-1``) or tag ``k``'s output (``M+k``)."""
        if request.source != "edit":
            return None
        i, m = request.img_index, len(inputs)
        if 0 <= i < m:
            return inputs[i]
        problem = index_problem(i, own, m)
        if problem is not None:
            raise DependencyFailed(problem)
        k = i - m
        parent = await asyncio.shield(earlier[k])
        if not parent.ok or parent.image is None:
            raise DependencyFailed(f"cannot edit image {i}: tag {k} failed ({parent.error})")
        return parent.image

    async def _call_with_fallback(
        self, index: int, request: ImageRequest, source_image: ImageData | None, deadline_at: float | None
    ) -> _Outcome:
        primary = self.tools.get(request.source)
        outcome = (
            await self._call(index, primary, request, source_image, deadline_at)
            if primary is not None
            else _Outcome(error=ToolNotConfigured(NOT_CONFIGURED_HELP[request.source]))
        )
        target = self.fallback.get(request.source)
        wants_fallback = outcome.error is not None and (primary is None or self.fallback_on_failure)
        if not wants_fallback or target is None or target not in self.tools or _past(deadline_at):
            return outcome
        reason = f"{request.source} failed: {outcome.error}" if primary is not None else f"no {request.source} backend configured"
        try:
            alt = request.with_source(target)
        except ValueError:
            return outcome
        second = await self._call(index, self.tools[target], alt, None, deadline_at)
        second.fallback = Fallback(request.source, target, reason)
        second.attempts += outcome.attempts
        return second

    async def _call(
        self, index: int, tool: Tool, request: ImageRequest, source_image: ImageData | None, deadline_at: float | None
    ) -> _Outcome:
        """One tool call through the cache, de-duplicating identical calls in flight."""
        key = self.cache_key(tool, request, source_image)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            if isinstance(hit, ToolOutput):
                return _Outcome(output=hit, backend=tool.backend, cache_hit=True)
            return _Outcome(error=hit, backend=tool.backend, cache_hit=True)
        state = self._state()
        pending = state.inflight.get(key)
        if pending is not None:
            first: _Outcome = await asyncio.shield(pending)
            return replace(first, cache_hit=True, elapsed=0.0, attempts=0)
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        state.inflight[key] = future
        try:
            outcome = await self._attempts(index, tool, request, source_image, deadline_at)
            if self.cache is not None:
                if outcome.output is not None:
                    self.cache.put(key, outcome.output)
                elif outcome.error is not None and not outcome.error.transient:
                    self.cache.put(key, outcome.error)
            future.set_result(outcome)
            return outcome
        except BaseException as exc:  # cancelled: let waiters see a failure, not hang
            future.set_result(_Outcome(error=ToolError(f"cancelled: {exc!r}"), backend=tool.backend))
            raise
        finally:
            state.inflight.pop(key, None)

    async def _attempts(
        self, index: int, tool: Tool, request: ImageRequest, source_image: ImageData | None, deadline_at: float | None
    ) -> _Outcome:
        limits = self.limits.get(request.source, ToolLimits())
        sem = self._semaphore(request.source, limits)
        started = time.monotonic()
        outcome = _Outcome(backend=tool.backend)
        for attempt in range(limits.retries + 1):
            remaining = _remaining(deadline_at)
            if remaining is not None and remaining <= 0:
                outcome.error = ToolTimeout("the document's deadline passed before this image was made", transient=False)
                break
            timeout = limits.timeout if remaining is None else min(limits.timeout, remaining)
            outcome.attempts += 1
            async with sem:
                self._emit(EngineEvent("start", index, request.source, tool.backend))
                try:
                    output = await asyncio.wait_for(tool.run(ToolCall(request, source_image, timeout)), timeout)
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
            delay = limits.backoff * (2**attempt) * (0.5 + random.random())
            remaining = _remaining(deadline_at)
            if remaining is not None and delay >= remaining:
                break
            self._emit(EngineEvent("retry", index, request.source, tool.backend, str(outcome.error)))
            await asyncio.sleep(delay)
        outcome.elapsed = time.monotonic() - started
        return outcome

    # -- keys, state, events ---------------------------------------------------------------
    @staticmethod
    def cache_key(tool: Tool, request: ImageRequest, source_image: ImageData | None = None) -> str:
        """Content address of a call (see ``llmi.cache.cache_key``)."""
        return cache_key(tool.backend, request, source_image)

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

    def _emit(self, event: EngineEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a progress display must never break a run
                log.exception("on_event callback failed")

    def _segment(self, tag: Tag, outcome: _Outcome) -> ImageSegment:
        request = tag.request
        if outcome.output is not None:
            out = outcome.output
            return ImageSegment(
                index=tag.index, raw=tag.raw, tool=request.source if request else None, status="ok",
                request=request, image=out.image, backend=outcome.backend, elapsed=outcome.elapsed,
                attempts=outcome.attempts, cache_hit=outcome.cache_hit, fallback=outcome.fallback,
                credit=out.credit, info=dict(out.info), counted=tag.counted,
            )
        err = outcome.error or ToolError("no output")
        return ImageSegment(
            index=tag.index, raw=tag.raw, tool=request.source if request else None, status="failed",
            request=request, backend=outcome.backend, error=str(err), error_type=type(err).__name__,
            elapsed=outcome.elapsed, attempts=outcome.attempts, cache_hit=outcome.cache_hit,
            fallback=outcome.fallback, counted=tag.counted,
        )

    def _assemble(
        self,
        parsed: ParsedText,
        by_index: Mapping[int, ImageSegment],
        inputs: tuple[ImageData, ...],
        started: float,
        meta: Mapping[str, Any] | None,
    ) -> Document:
        segments = [TextSegment(p) if isinstance(p, str) else by_index[p.index] for p in parsed.parts]
        info = {
            "elapsed": round(time.monotonic() - started, 4),
            "tools": {s: t.backend for s, t in self.tools.items()},
            "fallback": dict(self.fallback),
            "warnings": [str(w) for w in getattr(parsed, "warnings", ())],
            **(meta or {}),
        }
        return Document(merge_text(segments), inputs, info, parsed.profile)

    # -- the sync wrapper and lifecycle ------------------------------------------------------
    def run(self, text: str, inputs: Sequence[ImageData] = (), **kwargs: Any) -> Document:
        """Synchronous ``arun`` (runs on the engine's private event-loop thread)."""
        return self._loop_thread().call(self.arun(text, inputs, **kwargs))

    def run_many(self, texts: Iterable[str], inputs: Sequence[Sequence[ImageData]] | None = None, **kwargs: Any) -> list[Document]:
        return self._loop_thread().call(self.arun_many(texts, inputs, **kwargs))

    def _loop_thread(self) -> "_LoopThread":
        if self._runner is None:
            self._runner = _LoopThread()
        return self._runner

    async def aclose(self) -> None:
        """Release every tool's resources (worker pools, HTTP clients)."""
        for tool in self.tools.values():
            try:
                await tool.aclose()
            except Exception:
                log.exception("closing %s failed", getattr(tool, "backend", tool))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.call(self.aclose())
            self._runner.stop()
            self._runner = None
        else:
            asyncio.run(self.aclose())

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _LoopThread:
    """An event loop running forever on a daemon thread, for the sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmi-engine", daemon=True)
        self.thread.start()

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def _tool_of(tag: Tag) -> str | None:
    return tag.source if tag.source in SOURCES else None


def _remaining(deadline_at: float | None) -> float | None:
    return None if deadline_at is None else deadline_at - time.monotonic()


def _past(deadline_at: float | None) -> bool:
    r = _remaining(deadline_at)
    return r is not None and r <= 0
