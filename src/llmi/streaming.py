"""Tools that start while the model writes: an answer run as it streams in.

``Engine.stream()`` gives a ``StreamRun``. Each piece of text the writer produces is fed to it;
whenever a piece could have completed a tag (it holds a ``>``), the text so far is read as the
profile says and ``settled_tags`` tells from the profile's options how many of its leading tags
no continuation can change. Each such tag is planned and started at once, exactly as
``Engine.arun`` would start it, so a search or a chart runs while the writer is still on the
next paragraph; an edit still waits for the image it edits.

``finish()`` parses the finished text and checks every started tag against it: a tag that
reads the same (index, request or error, and the sentence before it, which a failed search
falls back on) keeps its running task; from the first one that does not, tasks are cancelled
and started afresh. The document is therefore always the one that rendering the finished
text gives; streaming only moves work earlier. The deadline for the tools counts from
``finish``.

>>> from llmi.engine import Engine
>>> async def main(engine):
...     run = engine.stream()
...     for piece in ["Owls hunt at night.", "\\n<imgen>{'source': 'sea", "rch', 'description': 'owl', ",
...                   "'params': {'query': 'owl'}}</imgen>", "\\nThe end."]:
...         run.feed(piece)
...     return await run.finish()
>>> with Engine() as engine:   # no search backend: the tag fails, visibly, in its slot
...     asyncio.run(main(engine)).judge_view()
'Owls hunt at night.\\n<fail_to_generate_image>\\nThe end.'
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

from .calls import Deadline
from .errors import TagSyntaxError

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document, ImageSegment
    from .engine import Engine
    from .image import ImageData
    from .profiles import Profile
    from .tags import ParsedText, Tag

__all__ = ["StreamRun", "settled_tags"]


class StreamRun:
    """One document whose answer is still being written (see the module docstring)."""

    def __init__(self, engine: "Engine", inputs: tuple["ImageData", ...], budget: float | None,
                 profile: "Profile") -> None:
        self.engine = engine
        self.inputs = inputs
        self.budget = budget
        self.profile = profile
        self.started = time.monotonic()
        self._deadline = Deadline()  # set by finish(): the budget is for the tools
        self._pieces: list[str] = []
        self._tasks: dict[int, asyncio.Task[ImageSegment]] = {}
        self._signatures: dict[int, tuple[Any, ...]] = {}
        self._done = False

    @property
    def text(self) -> str:
        """The text fed so far."""
        return "".join(self._pieces)

    @property
    def started_tags(self) -> int:
        """How many tags are already running (or done)."""
        return len(self._tasks)

    def feed(self, piece: str) -> None:
        """Add the next piece of the answer; tags it completes start now."""
        if self._done:
            raise RuntimeError("this answer is finished; start another with Engine.stream()")
        if not self._pieces:
            # Warm the tools up from the first piece, not before: until then a local writer is
            # reading its prompt on every core, and a sandbox starting beside it stalled that
            # (1.40x the writer's time for a document, against 1.13x warming up from here)
            self.engine.warm_up()
        self._pieces.append(piece)
        if ">" in piece:  # every tag (and every think block) ends with one
            self._start_settled(self.text)

    async def finish(self, text: str | None = None, *, meta: Mapping[str, Any] | None = None) -> "Document":
        """The document for the finished answer: ``text`` if given (for example the fed text
        with an unfinished tail trimmed), else everything fed."""
        self._done = True
        text = self.text if text is None else text
        ended = time.monotonic()
        try:
            parsed, thinking = self.engine._parse(text, self.profile, len(self.inputs))
            final = {tag.index: tag for tag in parsed.tags}
            await self._reconcile(parsed)
            if self.budget is not None:
                self._deadline.at = ended + self.budget
            segments = await self.engine._collect(self._tasks, self._deadline, parsed.tags)
        except BaseException:
            await self.cancel()
            raise
        # a slot may have grown since its tag started (a code fence closed around it)
        by_index = {i: _with_slot(seg, final[i]) for i, seg in segments.items()}
        info = {"tools_after_text": round(time.monotonic() - ended, 4), **thinking, **(meta or {})}
        return self.engine._assemble(parsed, by_index, self.inputs, self.started, info)

    async def cancel(self) -> None:
        """Stop every started tag (the writer failed or the caller gave up)."""
        self._done = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ---------------------------------------------------------------------------

    def _start_settled(self, text: str) -> None:
        parsed, _thinking = self.engine._parse(text, self.profile, len(self.inputs))
        for tag in parsed.tags[: settled_tags(parsed, self.profile)]:
            if tag.index not in self._tasks:
                self._start(parsed, tag)

    def _start(self, parsed: "ParsedText", tag: "Tag") -> None:
        context = self.engine._context(parsed.text, tag)
        self._signatures[tag.index] = _signature(tag, context)
        self._tasks[tag.index] = self.engine._start(tag, context, self.inputs, self._tasks, self._deadline, self.profile)

    async def _reconcile(self, parsed: "ParsedText") -> None:
        """Keep the started tags the finished text confirms; restart from the first that differs."""
        keep = 0
        for tag in parsed.tags:
            started = self._signatures.get(tag.index)
            if started is None or started != _signature(tag, self.engine._context(parsed.text, tag)):
                break
            keep += 1
        stale = [self._tasks.pop(i) for i in sorted(self._tasks) if i >= keep]  # later ones may depend on them
        for task in stale:
            task.cancel()
        if stale:  # gone for good before a new call could join one of theirs still in flight
            await asyncio.gather(*stale, return_exceptions=True)
        self._signatures = {i: sig for i, sig in self._signatures.items() if i < keep}
        for tag in parsed.tags[keep:]:
            self._start(parsed, tag)


def settled_tags(parsed: "ParsedText", profile: "Profile") -> int:
    """How many leading tags of ``parsed`` (the reading of an answer still being written, its
    thinking removed) no continuation of the text can change, by ``profile``'s options.

    - ``tag_finding="llmi"`` (LLM-I's pattern): a match ends at the first ``}</imgen>`` after
      its ``{``, which later text cannot move: every match is final.
    - ``tag_finding="tolerant"``: a tag is final at its ``</imgen>``, unless its body does not
      read at all; such a tag may still widen to a later stray ``</imgen>`` (one that sat in a
      string), until an ``<imgen>`` opens after it.
    - ``thinking`` other than ``"keep"``: a tag after a ``<think>`` not yet closed may turn out
      to be thinking, so it waits, with every tag after it.

    Two readings can still change, rarely, and are started anyway, because ``finish`` restarts
    what the finished text reads differently: ``thinking="all"`` drops an answer's opening up to
    a ``</think>`` with no ``<think>`` before it, which only a later ``</think>`` reveals; and
    ``counting="llmi"`` judges an edit's index against the number of tags in the whole answer.

    >>> from llmi.profiles import LLMI
    >>> from llmi.tags import parse
    >>> tag = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
    >>> settled_tags(parse(tag + " <think>plan"), LLMI), settled_tags(parse("<think>plan " + tag), LLMI)
    (1, 0)
    """
    text = parsed.text
    limit = len(text)
    if profile.thinking != "keep":
        opened = text.rfind("<think>")
        if opened >= 0 and "</think>" not in text[opened:]:
            limit = opened
    count = 0
    for tag in parsed.tags:
        if tag.start >= limit:
            break
        if profile.tag_finding == "tolerant" and isinstance(tag.error, TagSyntaxError) and "<imgen>" not in text[tag.end :]:
            break
        count += 1
    return count


def _signature(tag: "Tag", context: str) -> tuple[Any, ...]:
    """What a tag's image depends on, besides the tools: its index, what it asks for (or why
    it cannot be read), whether it counts, and the sentence before it."""
    error = (type(tag.error).__name__, str(tag.error)) if tag.error is not None else None
    return (tag.index, tag.request, error, tag.counted, context)


def _with_slot(segment: "ImageSegment", tag: "Tag") -> "ImageSegment":
    return segment if segment.raw == tag.raw else replace(segment, raw=tag.raw)
