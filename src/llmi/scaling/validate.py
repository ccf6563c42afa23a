"""Stage 2: drop candidates whose tags cannot work, and prefer those with the images asked for.

A candidate has a problem when a tag cannot be read (a syntax or validation error: it can never
make an image) or an edit asks for the impossible (an image that does not exist, itself, or a
later one). Such candidates are dropped, unless every candidate has one: then all are kept and
the selection decides (a user always gets a document). Among the rest, those whose number of
images satisfies the request (``image_num``, LLM-I's convention, counted exactly as the
evaluation does) are preferred: the selection chooses among them when there are any.

>>> from llmi.document import Document, ImageSegment, TextSegment
>>> bad = Document((TextSegment("Owls."), ImageSegment(0, "<imgen>{</imgen>", None, "failed",
...     error="not a dict", error_type="TagSyntaxError")))
>>> problems(bad)
('tag 0 cannot be read: not a dict',)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from .._tag_compat import index_problem
from .record import Candidate

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document

__all__ = ["problems", "satisfies", "validate", "pool"]

_UNREADABLE = ("TagSyntaxError", "TagValidationError")


def problems(doc: "Document") -> tuple[str, ...]:
    """Why a document's tags cannot all work, one reason per tag."""
    out = []
    for seg in doc.image_segments:
        if seg.request is None or seg.error_type in _UNREADABLE:
            out.append(f"tag {seg.index} cannot be read: {seg.error or 'unreadable'}")
        elif seg.request.source == "edit":
            problem = index_problem(seg.request.img_index, seg.index, len(doc.inputs))
            if problem is not None:
                out.append(f"tag {seg.index} asks for an impossible edit: {problem}")
    return tuple(out)


def satisfies(doc: "Document", image_num: int | None) -> bool:
    """Whether the made images are what ``image_num`` asks for (``None``: anything goes)."""
    from ..rewards.rules import image_num_score

    if image_num is None:
        return True
    return image_num_score(len(doc.images), image_num, train=False) == 1.0


def validate(candidates: Sequence[Candidate], image_num: int | None) -> tuple[list[Candidate], str]:
    """The candidates with their problems and image-count check filled in, and a summary."""
    out = [c if c.doc is None else replace(c, problems=problems(c.doc), satisfies=satisfies(c.doc, image_num))
           for c in candidates]
    written = [c for c in out if c.ok]
    valid = [c for c in written if not c.problems]
    dropped = len(written) - len(valid)
    summary = f"{len(valid)} of {len(written)} written candidates valid"
    if dropped and not valid:
        summary += "; every candidate had a problem, so none was dropped"
        out = [replace(c, kept=True) if c.ok else c for c in out]
    if image_num is not None:
        summary += f"; {sum(c.satisfies for c in valid or written)} with the images asked for ({image_num})"
    return out, summary


def pool(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates the selection chooses among: written, valid (if any are), with the images
    asked for (if any have them)."""
    written = [c for c in candidates if c.ok]
    valid = [c for c in written if not c.problems] or written
    return [c for c in valid if c.satisfies] or valid
