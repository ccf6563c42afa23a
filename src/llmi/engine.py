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
   a search that finds nothing tries the tag's description and the key words of the sentence
   before it (``llmi.queries``), and an image that repeats an earlier one of the same
   document is replaced by the next distinct match where the backend has one;
4. **assemble** the ``Document``: ordered segments, each image with its provenance.

``arun`` also takes the answer as a stream of text pieces (an async iterator, e.g. a writer's
output): each tag is then planned and started as soon as it is complete, so the tools work
while the model is still writing (``llmi.streaming``), and the document is the one the
finished text gives.

No tool failure escapes: each becomes a failed ``ImageSegment`` with the error's class and
message. ``Engine.run`` is the synchronous wrapper; it drives the same async core on a private
event-loop thread, so tools and caches are shared across calls.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterable, Awaitable, Callable, Iterable, Literal, Mapping, Sequence

from ._tag_compat import index_problem
from .cache import MemoryCache
from .calls import Caller, Deadline, Outcome
from .document import Document, Fallback, ImageSegment, TextSegment, merge_text
from .errors import DependencyFailed, EmptyFigure, ToolError, ToolNotConfigured, ToolTimeout
from .image import ImageData
from .profiles import Profile, ProfileLike, get_profile, remove_thinking
from .queries import sentence_before
from .sources import DEFAULT_LIMITS, NOT_CONFIGURED_HELP, SOURCES, ToolLimits
from .tags import ImageRequest, ParsedText, Tag, parse
from .tools.base import Tool, ToolOutput

if TYPE_CHECKING:  # pragma: no cover
    from .streaming import StreamRun

__all__ = ["Engine", "EngineEvent", "ToolLimits", "MemoryCache", "DEFAULT_LIMITS", "NOT_CONFIGURED_HELP", "Deadline"]

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


#: seconds past the deadline that a call already running is given to report its own timeout
_DEADLINE_GRACE = 1.0


class Engine:
    """Runs the tools behind a model's ``<imgen>`` tags and assembles the ``Document``.

    ``tools`` maps a tag source (``search``, ``diffusion``, ``code``, ``edit``) to a backend;
    a source with no backend yields failed images that say how to configure one (or follows
    ``fallback``, e.g. ``{"diffusion": "search"}``, recorded on the image). ``profile`` says
    how answers are read (``"llmi"``, ``"llmi-compat"`` or a ``Profile``); ``arun`` can
    override it per answer.

    ``search_retries``: a search that finds nothing tries the tag's description and the key
    words of the sentence before the tag (each try is recorded in the image's ``info``).
    ``distinct``: an image identical to an earlier one in the same document is replaced by
    the backend's next distinct match, where the backend offers one (``offers_alternatives``).
    Both are off here, so that each tag makes exactly the call it asks for, as LLM-I's does;
    ``Engine.from_env`` turns them on for documents read the llmi way.

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
        search_retries: bool = False,
        distinct: bool = False,
    ) -> None:
        self.profile: Profile = get_profile(profile)
        self.tools: dict[str, Tool] = dict(tools or {})
        for source in self.tools:
            if source not in SOURCES:
                raise ValueError(f"unknown tool source {source!r}; expected one of {SOURCES}")
        self.fallback = dict(fallback or {})
        self.fallback_on_failure = fallback_on_failure
        self.deadline = deadline
        self.on_event = on_event
        self._caller = Caller({**DEFAULT_LIMITS, **(limits or {})},
                              MemoryCache() if cache is True else None if cache is False else cache, self._emit_call)
        self.search_retries = search_retries
        self.distinct = distinct
        self._warmed: set[int] = set()  # ids of the tools whose warm-up has been started
        self._warming: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Task]] = (
            weakref.WeakKeyDictionary()
        )
        self._runner: _LoopThread | None = None

    @property
    def limits(self) -> dict[str, ToolLimits]:
        """Per-tool limits (concurrency, timeout, retries, backoff)."""
        return self._caller.limits

    @property
    def cache(self) -> MemoryCache | None:
        return self._caller.cache

    # -- construction from the environment ------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "Engine":
        """The engine a user gets with no code: every backend the environment configures,
        the sandboxed code tool, and unless the profile reads tags LLM-I's way (``llmi-compat``,
        whose rewards must see the tool outcomes LLM-I's would: each tag makes exactly the call
        it asks for), diffusion falling back to search (visibly), search retries and no
        repeated picture."""
        import os

        from .tools import default_tools

        env = os.environ if env is None else env
        llmi_way = get_profile(kwargs.get("profile")).tag_finding != "llmi"
        if kwargs.get("fallback") is None:
            kwargs["fallback"] = {"diffusion": "search"} if llmi_way else {}
        kwargs.setdefault("search_retries", llmi_way)
        kwargs.setdefault("distinct", llmi_way)
        return cls(default_tools(env), **kwargs)

    # -- the async core --------------------------------------------------------------------
    async def arun(
        self,
        text: str | AsyncIterable[str],
        inputs: Sequence[ImageData] = (),
        *,
        deadline: float | None = None,
        meta: Mapping[str, Any] | None = None,
        profile: ProfileLike = None,
    ) -> Document:
        """Run every tag in ``text`` and return the document (never raises for tool errors).
        ``profile`` overrides the engine's for this answer.

        ``text`` may be the whole answer or an async iterator of its pieces, whose tags then
        start while the rest is still arriving (see ``stream``).
        """
        if not isinstance(text, str):
            run = self.stream(inputs, deadline=deadline, profile=profile)
            try:
                async for piece in text:
                    run.feed(piece)
            except BaseException:
                await run.cancel()
                raise
            return await run.finish(meta=meta)
        started = time.monotonic()
        budget = self.deadline if deadline is None else deadline
        clock = Deadline(None if budget is None else started + budget)
        parsed, thinking = self._parse(text, get_profile(profile, self.profile), len(inputs))  # 1. parse
        tasks = self._plan(parsed, tuple(inputs), clock)  # 2. plan (and start)
        segments = await self._collect(tasks, clock, parsed.tags)  # 3. execute
        return self._assemble(parsed, segments, tuple(inputs), started, {**thinking, **(meta or {})})  # 4. assemble

    def stream(
        self, inputs: Sequence[ImageData] = (), *, deadline: float | None = None, profile: ProfileLike = None
    ) -> "StreamRun":
        """A document whose answer arrives in pieces: ``run.feed(piece)`` as they come (each
        complete tag starts at once), then ``await run.finish()`` for the ``Document``.

        Call it inside the event loop that will run the tools; the tools' optional
        ``warm_up`` starts in the background with the first piece. ``deadline`` (default: the
        engine's) counts from ``finish``, when the text is complete.

        >>> async def main(engine):
        ...     run = engine.stream()
        ...     for piece in ("No pictures ", "today."):
        ...         run.feed(piece)
        ...     return await run.finish()
        >>> with Engine() as engine:
        ...     asyncio.run(main(engine)).text
        'No pictures today.'
        """
        from .streaming import StreamRun

        return StreamRun(self, tuple(inputs), self.deadline if deadline is None else deadline,
                         get_profile(profile, self.profile))

    async def arun_many(
        self,
        texts: Iterable[str | AsyncIterable[str]],
        inputs: Sequence[Sequence[ImageData]] | None = None,
        *,
        concurrency: int = 32,
        profile: ProfileLike = None,
    ) -> list[Document]:
        """Run many answers (a GRPO group, a benchmark) sharing the limits and the cache;
        answers may be streams, as for ``arun``."""
        texts = list(texts)
        inputs = list(inputs) if inputs is not None else [()] * len(texts)
        gate = asyncio.Semaphore(concurrency)

        async def one(text: str | AsyncIterable[str], imgs: Sequence[ImageData]) -> Document:
            async with gate:
                return await self.arun(text, imgs, profile=profile)

        return list(await asyncio.gather(*(one(t, i) for t, i in zip(texts, inputs))))

    def warm_up(self) -> None:
        """Start the optional ``warm_up()`` of every tool (once each) in the background, so
        that worker pools, indexes and models load while the writer writes. A failure is only
        logged: the tool's first real call reports it."""
        loop = asyncio.get_running_loop()
        for tool in {id(t): t for t in self.tools.values()}.values():
            method = getattr(tool, "warm_up", None)
            if method is None or id(tool) in self._warmed:
                continue
            self._warmed.add(id(tool))
            task = loop.create_task(_warm(tool, method))
            warming = self._warming.setdefault(loop, set())
            warming.add(task)
            task.add_done_callback(warming.discard)

    # -- stages --------------------------------------------------------------------------------
    @staticmethod
    def _parse(text: str, profile: Profile, inputs: int) -> tuple[ParsedText, dict[str, Any]]:
        """The answer read as ``profile`` says, thinking removed first where it says so; and
        the thinking removed, for the document's metadata."""
        answer, thinking = remove_thinking(text, profile.thinking)
        return parse(answer, profile, inputs=inputs), ({"thinking": list(thinking)} if thinking else {})

    def _plan(
        self, parsed: ParsedText, inputs: tuple[ImageData, ...], deadline: Deadline
    ) -> dict[int, asyncio.Task[ImageSegment]]:
        tasks: dict[int, asyncio.Task[ImageSegment]] = {}
        for tag in parsed.tags:
            # Tasks are created in text order, so an edit can only ever wait on earlier tags.
            tasks[tag.index] = self._start(tag, self._context(parsed.text, tag), inputs, tasks, deadline, parsed.profile)
        return tasks

    @staticmethod
    def _context(text: str, tag: Tag) -> str:
        """The sentence before a tag (what a failed search falls back on). Only text before the
        tag counts, so a tag read from a prefix of the answer gets the same context."""
        return sentence_before(text[: tag.position])

    def _start(self, tag: Tag, *args: Any) -> "asyncio.Task[ImageSegment]":
        """Plan ``tag`` and start making its image (the other arguments as for ``_produce``)."""
        self._emit(EngineEvent("planned", tag.index, _tool_of(tag)))
        return asyncio.ensure_future(self._produce(tag, *args))

    async def _collect(
        self, tasks: Mapping[int, "asyncio.Task[ImageSegment]"], deadline: Deadline, tags: Sequence[Tag]
    ) -> dict[int, ImageSegment]:
        """Every task's segment; a task still running past the deadline (a call that began
        before a streamed answer's deadline was set) is cancelled and fails as timed out."""
        if not tasks:
            return {}
        left = deadline.remaining()
        try:
            _done, late = await asyncio.wait(
                tasks.values(), timeout=None if left is None else max(left, 0.0) + _DEADLINE_GRACE
            )
        except BaseException:
            for task in tasks.values():
                task.cancel()
            raise
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        out = {}
        by_index = {tag.index: tag for tag in tags}
        for index, task in tasks.items():
            if task.cancelled():
                err: ToolError = ToolTimeout("the document's deadline passed before this image was made", transient=False)
            elif task.exception() is not None:  # a bug in the engine itself: still one failed image
                exc = task.exception()
                log.error("producing image %d failed", index, exc_info=exc)
                err = ToolError(f"internal error: {type(exc).__name__}: {exc}")
            else:
                out[index] = task.result()
                continue
            tag = by_index[index]
            out[index] = ImageSegment(index=index, raw=tag.raw, tool=_tool_of(tag), status="failed", request=tag.request,
                                      error=str(err), error_type=type(err).__name__, counted=tag.counted)
        return out

    async def _produce(
        self,
        tag: Tag,
        context: str,
        inputs: tuple[ImageData, ...],
        earlier: Mapping[int, "asyncio.Task[ImageSegment]"],
        deadline: Deadline,
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
            outcome = Outcome(error=exc)
        else:
            outcome = await self._call_with_fallback(tag.index, request, source_image, deadline, context)
            if self.distinct and outcome.output is not None:
                outcome = await self._distinct(tag.index, outcome, earlier, deadline, context)
        if isinstance(outcome.error, EmptyFigure) and profile.blank_figure == "image":
            # LLM-I saves whatever the figure holds, so a chart with nothing drawn is an image
            outcome.output, outcome.error = ToolOutput(outcome.error.image, info={"blank": str(outcome.error)}), None
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
        self, index: int, request: ImageRequest, source_image: ImageData | None, deadline: Deadline, context: str
    ) -> Outcome:
        primary = self.tools.get(request.source)
        outcome = (
            await self._caller.tries(index, primary, request, source_image, deadline, context, rewrite=self.search_retries)
            if primary is not None
            else Outcome(error=ToolNotConfigured(NOT_CONFIGURED_HELP[request.source]))
        )
        target = self.fallback.get(request.source)
        wants_fallback = outcome.error is not None and (primary is None or self.fallback_on_failure)
        if not wants_fallback or target is None or target not in self.tools or deadline.past():
            return outcome
        reason = f"{request.source} failed: {outcome.error}" if primary is not None else f"no {request.source} backend configured"
        try:
            alt = request.with_source(target)
        except ValueError:
            return outcome
        second = await self._caller.tries(index, self.tools[target], alt, None, deadline, context, rewrite=self.search_retries)
        second.fallback = Fallback(request.source, target, reason)
        second.attempts += outcome.attempts
        return second

    async def _distinct(
        self, index: int, outcome: Outcome, earlier: Mapping[int, "asyncio.Task[ImageSegment]"], deadline: Deadline, context: str
    ) -> Outcome:
        """``outcome`` unless its image repeats an earlier tag's, in which case the backend's
        next distinct match (when it has alternatives to offer)."""
        if not getattr(outcome.tool, "offers_alternatives", False) or outcome.asked is None:
            return outcome
        shown: dict[str, int] = {}
        for k in range(index):  # what the earlier tags show, once they are done
            seg = await asyncio.shield(earlier[k])
            if seg.ok and seg.image is not None:
                shown.setdefault(seg.image.sha256, k)
        assert outcome.output is not None
        repeats = shown.get(outcome.output.image.sha256)
        if repeats is None:
            return outcome
        second = await self._caller.tries(index, outcome.tool, outcome.asked, None, deadline, context, frozenset(shown),
                                          rewrite=self.search_retries)
        if second.output is None:  # nothing else matches: a repeated picture beats none
            outcome.notes["repeat_of"] = repeats
            return outcome
        second.fallback = outcome.fallback
        second.attempts += outcome.attempts
        second.notes["repeat_avoided"] = repeats
        return second

    # -- keys, events ------------------------------------------------------------------------
    @staticmethod
    def cache_key(tool: Tool, request: ImageRequest, source_image: ImageData | None = None) -> str:
        """Content address of a call (see ``llmi.cache.cache_key``)."""
        return Caller.key(tool, request, source_image)

    def _emit_call(self, kind: str, index: int, source: str, backend: str, message: str) -> None:
        self._emit(EngineEvent(kind, index, source, backend, message))  # type: ignore[arg-type]

    def _emit(self, event: EngineEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a progress display must never break a run
                log.exception("on_event callback failed")

    def _segment(self, tag: Tag, outcome: Outcome) -> ImageSegment:
        request = tag.request
        if outcome.output is not None:
            out = outcome.output
            return ImageSegment(
                index=tag.index, raw=tag.raw, tool=request.source if request else None, status="ok",
                request=request, image=out.image, backend=outcome.backend, elapsed=outcome.elapsed,
                attempts=outcome.attempts, cache_hit=outcome.cache_hit, fallback=outcome.fallback,
                credit=out.credit, info={**out.info, **outcome.notes}, counted=tag.counted,
            )
        err = outcome.error or ToolError("no output")
        return ImageSegment(
            index=tag.index, raw=tag.raw, tool=request.source if request else None, status="failed",
            request=request, backend=outcome.backend, error=str(err), error_type=type(err).__name__,
            elapsed=outcome.elapsed, attempts=outcome.attempts, cache_hit=outcome.cache_hit,
            fallback=outcome.fallback, info=dict(outcome.notes), counted=tag.counted,
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
        for task in list(self._warming.get(asyncio.get_running_loop(), ())):
            task.cancel()
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


async def _warm(tool: Any, method: Callable[[], Any]) -> None:
    """One tool's warm-up: ``async def warm_up()``, or a plain one run in a thread."""
    try:
        if inspect.iscoroutinefunction(method):
            await method()
        else:
            await asyncio.to_thread(method)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the first real call will report it properly
        log.debug("warming up %s failed: %s", getattr(tool, "backend", tool), exc)
