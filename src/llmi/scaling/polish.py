"""Stage 5: the writer revises the prose around the images, and the document is made again.

Each prose segment (the text between two tags) is revised on its own, all at once, the writer
seeing the request and the whole answer with its pictures marked; the tags themselves are never
shown to it as tags and never rewritten, so every picture keeps its place. A revision is refused
(and the segment kept) when it is empty, writes tags, image markers or the picture markers it was
shown, or is under half or over
twice the original's length; the segment's leading and trailing line breaks are kept, so tags
stay on lines of their own. The new answer runs through the engine again (its tools answer from
the cache) and must read back with the very same tags in the same order.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from .asks import ask, prompt
from .costs import Meter
from .record import PolishEdit, answer_of
from .selection import judged_text

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..engine import Engine
    from ..llm.base import Sampling, Writer

__all__ = ["polish", "accept"]

_MIN_WORDS = 3


def accept(before: str, after: str | None) -> tuple[str | None, str]:
    """The segment to use for ``before`` given the writer's ``after``, and the edit's status.

    >>> accept("\\nOwls hunt at night.\\n", "Owls hunt after dark.")
    ('\\nOwls hunt after dark.\\n', 'revised')
    >>> accept("Owls hunt at night.", "Owls.")
    (None, 'length')
    """
    if after is None or not after.strip():
        return None, "empty"
    if "[picture" in after or "[missing picture" in after:
        return None, "markers"  # the writer copied the picture markers it was shown into its prose
    core, new = before.strip(), after.strip()
    if not 0.5 <= len(new) / max(1, len(core)) <= 2.0:
        return None, "length"
    lead = before[: len(before) - len(before.lstrip())]
    trail = before[len(before.rstrip()):]
    return lead + new + trail, "revised"


async def polish(
    doc: "Document",
    *,
    writer: "Writer",
    engine: "Engine",
    question: str,
    sampling: "Sampling",
    seed: int,
    meter: Meter,
) -> tuple["Document | None", list[PolishEdit], str]:
    """The polished document (``None`` when nothing changed or the tags moved), each segment's
    edit, and the stage's status (``applied``, ``unchanged`` or ``rejected``)."""
    from ..document import TextSegment

    segments = list(doc.segments)
    targets = [i for i, s in enumerate(segments) if isinstance(s, TextSegment) and len(s.text.split()) >= _MIN_WORDS]
    if not targets:
        return None, [], "unchanged"
    shown = judged_text(doc)
    replies = await asyncio.gather(*(
        ask(writer, "prose", prompt("polish"),
            f"Request: {question}\n\nThe answer:\n{shown}\n\nThe paragraph to revise:\n{segments[i].text.strip()}",
            replace(sampling, seed=seed + 2000 + i))
        for i in targets))
    edits: list[PolishEdit] = []
    for i, reply in zip(targets, replies):
        before = segments[i].text  # type: ignore[union-attr]
        new, status = accept(before, reply)
        edits.append(PolishEdit(i, before, reply, status))
        if new is not None:
            segments[i] = TextSegment(new)
    if not any(e.status == "revised" for e in edits):
        return None, edits, "unchanged"
    answer = answer_of(replace(doc, segments=tuple(segments)))
    new_doc = await engine.arun(answer, doc.inputs, meta=doc.meta)
    meter.tools(new_doc)
    if [s.raw for s in new_doc.image_segments] != [s.raw for s in doc.image_segments]:
        return None, [replace(e, status="tags") if e.status == "revised" else e for e in edits], "rejected"
    return new_doc, edits, "applied"
