"""Stage 4: improve the tool calls of the chosen answer, one tag at a time, each change recorded.

Three kinds of tag are worth another try (``Change.kind``):

- ``search_query``: a search that found nothing; the writer rewrites the query, seeing the
  request, the picture wanted, the text around it and the query that failed (again with the
  new query if that finds nothing either, up to ``max_repairs`` attempts);
- ``code_repair``: chart code that raised, timed out or drew nothing; the writer repairs it
  given the error, and a repair that fails again is repaired again with the new error, up to
  ``max_repairs`` attempts;
- ``diffusion_prompt``: a generation prompt too vague to paint (fewer than ``specific_words``
  words, or only the description again); the writer makes it specific, once.

Each round asks about every such tag at once, puts the new tags into the answer and runs it
again through the engine: unchanged tags are answered from its cache, and an edit of an image
that now exists runs again by itself. A change is kept only if its tag then makes an image;
every other tag goes back to what the model wrote, so the document never gets worse for trying.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Mapping

from ..tags import ImageRequest, serialise
from .asks import Kind, ask, prompt
from .costs import Meter
from .record import Change

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document, ImageSegment
    from ..engine import Engine
    from ..llm.base import Sampling, Writer
    from .config import ScaleConfig

__all__ = ["enhance", "rebuild", "vague"]

_REPAIRABLE = ("SandboxError", "EmptyFigure", "ToolTimeout")
_WORD = re.compile(r"\w+", re.U)
#: what each kind of change asks the writer for: the param it rewrites and the reply's shape
_ASKS: Mapping[str, tuple[str, Kind]] = {"search_query": ("query", "line"), "code_repair": ("code", "code"),
                                          "diffusion_prompt": ("prompt", "line")}


def vague(prompt_text: str, description: str, words: int = 6) -> bool:
    """Whether a generation prompt is too vague to paint from.

    >>> vague("a cat", "a cat"), vague("a ginger cat asleep on a windowsill, morning light", "a cat")
    (True, False)
    """
    text = prompt_text.strip().lower()
    return len(_WORD.findall(text)) < words or text == description.strip().lower()


def rebuild(doc: "Document", raws: Mapping[int, str]) -> str:
    """The document's answer with the tags in ``raws`` (by tag index) written anew."""
    from ..document import TextSegment

    return "".join(s.text if isinstance(s, TextSegment) else raws.get(s.index, s.raw) for s in doc.segments)


def _kind(seg: "ImageSegment", first_round: bool, config: "ScaleConfig") -> str | None:
    req = seg.request
    if req is None:
        return None
    if req.source == "search" and not seg.ok and seg.error_type == "NotFound":
        return "search_query"
    if req.source == "code" and not seg.ok and seg.error_type in _REPAIRABLE:
        return "code_repair"
    if req.source == "diffusion" and first_round and vague(req.prompt, req.description, config.specific_words):
        return "diffusion_prompt"
    return None


def _context(doc: "Document", index: int) -> str:
    """The prose just before and after tag ``index``."""
    from ..document import ImageSegment, TextSegment

    segs = doc.segments
    at = next(i for i, s in enumerate(segs) if isinstance(s, ImageSegment) and s.index == index)
    before = segs[at - 1].text[-300:] if at > 0 and isinstance(segs[at - 1], TextSegment) else ""
    after = segs[at + 1].text[:200] if at + 1 < len(segs) and isinstance(segs[at + 1], TextSegment) else ""
    return f"{before.strip()} [the picture] {after.strip()}".strip()


def _question(kind: str, seg: "ImageSegment", doc: "Document", request: str) -> str:
    req = seg.request
    assert req is not None
    if kind == "code_repair":
        return (f"Request: {request}\nChart wanted: {req.description}\nThe code:\n{req.code}\n\n"
                f"What went wrong: {seg.error}")
    value = req.query if kind == "search_query" else req.prompt
    label = "Query that found nothing" if kind == "search_query" else "Vague prompt"
    return (f"Request: {request}\nPicture wanted: {req.description}\nThe text around it: {_context(doc, seg.index)}\n"
            f"{label}: {value}")


async def enhance(
    doc: "Document",
    *,
    writer: "Writer",
    engine: "Engine",
    question: str,
    config: "ScaleConfig",
    sampling: "Sampling",
    seed: int,
    meter: Meter,
) -> tuple["Document", list[Change]]:
    """The document with its tool calls improved where the writer could, and every attempt."""
    original = {s.index: s.raw for s in doc.image_segments}
    current = dict(original)
    tries: dict[int, int] = {}
    changes: list[Change] = []
    for round_no in range(1, max(1, config.max_repairs) + 1):
        todo = [(s, k) for s in doc.image_segments
                if (k := _kind(s, round_no == 1, config)) and tries.get(s.index, 0) < _bound(k, config)]
        if not todo:
            break
        replies = await asyncio.gather(*(
            ask(writer, _ASKS[k][1], prompt(k), _question(k, s, doc, question),
                replace(sampling, seed=seed + 1000 + 10 * s.index + round_no))
            for s, k in todo))
        asked: dict[int, Change] = {}
        for (seg, kind), reply in zip(todo, replies):
            tries[seg.index] = tries.get(seg.index, 0) + 1
            param = _ASKS[kind][0]
            assert seg.request is not None
            before = str(seg.request.params[param])
            change = Change(seg.index, kind, tries[seg.index], before, reply, "no_answer", error_before=seg.error)  # type: ignore[arg-type]
            if reply is not None and reply.strip() == before.strip():
                change = replace(change, outcome="unchanged")
            elif reply is not None:
                request = ImageRequest(seg.request.source, seg.request.description, {**seg.request.params, param: reply})
                current[seg.index] = serialise(request)
                asked[seg.index] = change
            changes.append(change)
        if not asked:
            continue
        rerun = await _rerun(engine, doc, current, meter)
        if rerun is None:  # the new tags did not read back as the same slots: give up on changes
            current = dict(original)
            break
        doc = rerun
        by_index = {s.index: s for s in doc.image_segments}
        for i, change in asked.items():
            seg = by_index[i]
            outcome = ("specific" if change.kind == "diffusion_prompt" else "fixed") if seg.ok else "failed"
            changes[changes.index(change)] = replace(change, outcome=outcome, error_after=seg.error)
    # a change that made no image goes back to what the model wrote
    made = {s.index for s in doc.image_segments if s.ok}
    stale = {i: raw for i, raw in original.items() if current[i] != raw and i not in made}
    if stale:
        current.update(stale)
        doc = await _rerun(engine, doc, current, meter) or doc
    return doc, changes


def _bound(kind: str, config: "ScaleConfig") -> int:
    return 1 if kind == "diffusion_prompt" else config.max_repairs


async def _rerun(engine: "Engine", doc: "Document", raws: Mapping[int, str], meter: Meter) -> "Document | None":
    new = await engine.arun(rebuild(doc, raws), doc.inputs, meta=doc.meta)
    meter.tools(new)
    if [s.index for s in new.image_segments] != [s.index for s in doc.image_segments]:
        return None
    return new
