"""The assembled document: ordered prose and image segments, with provenance.

A ``Document`` is what the engine returns for one model answer. Each image segment records the
tag that asked for it, which tool and backend answered (or why none did), timing, cache hits and
fallbacks. Renderers (``llmi.renderers``) turn it into HTML, Markdown and ``document.json``.

>>> from llmi.tags import ImageRequest
>>> doc = Document((TextSegment("Hello "), ImageSegment(index=0, raw="<imgen>...</imgen>",
...     tool="search", status="failed", error="no search backend")))
>>> doc.judge_view()
'Hello <fail_to_generate_image>'
>>> doc.stats()["search"]
{'total': 1, 'success': 0, 'success_rate': 0.0}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from .image import ImageData
from .tags import SOURCES, ImageRequest
from .tools.base import Credit

__all__ = ["Fallback", "TextSegment", "ImageSegment", "Segment", "Document", "IMAGE_TOKEN", "FAIL_TOKEN"]

IMAGE_TOKEN = "<image>"
FAIL_TOKEN = "<fail_to_generate_image>"

# Literal placeholders typed by the model would be counted as images by a judge; they are
# neutralised in the judge view so that counts stay honest.
_STRAY_TOKENS = re.compile(r"<(image|fail_to_generate_image)>", re.I)


@dataclass(frozen=True)
class Fallback:
    """An image made by another tool than the tag asked for, and why."""

    requested: str  # the source the tag named
    used: str  # the source that produced the image
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


@dataclass(frozen=True)
class TextSegment:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ImageSegment:
    """One tag's slot in the document, successful or not."""

    index: int  # the tag's ordinal in the text (what edit.img_index counts, after the inputs)
    raw: str  # the tag as the model wrote it
    tool: str | None  # the source the tag asked for (None if it could not be read at all)
    status: Literal["ok", "failed"]
    request: ImageRequest | None = None
    image: ImageData | None = None
    backend: str | None = None
    error: str | None = None
    error_type: str | None = None  # the llmi.errors class name
    elapsed: float = 0.0  # seconds spent producing it (0 for a cache hit)
    attempts: int = 0
    cache_hit: bool = False
    fallback: Fallback | None = None
    credit: Credit | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    type: Literal["image"] = "image"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def description(self) -> str:
        return self.request.description if self.request else ""


Segment = TextSegment | ImageSegment


@dataclass(frozen=True)
class Document:
    """Ordered segments of one answer, plus the input images and run metadata."""

    segments: tuple[Segment, ...]
    inputs: tuple[ImageData, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    # -- views -----------------------------------------------------------------------------
    @property
    def image_segments(self) -> tuple[ImageSegment, ...]:
        return tuple(s for s in self.segments if isinstance(s, ImageSegment))

    @property
    def images(self) -> tuple[ImageData, ...]:
        """The successful images, in order (what an MLLM judge is shown)."""
        return tuple(s.image for s in self.image_segments if s.ok and s.image is not None)

    @property
    def text(self) -> str:
        """The prose alone, tags removed."""
        return "".join(s.text for s in self.segments if isinstance(s, TextSegment))

    def judge_view(self) -> str:
        """LLM-I's judge text: each tag replaced by ``<image>`` or ``<fail_to_generate_image>``.

        Placeholders the model typed itself are defused (``<image>`` -> ``[image]``) so that the
        number of ``<image>`` tokens equals the number of successful images.
        """
        out = []
        for seg in self.segments:
            if isinstance(seg, TextSegment):
                out.append(_STRAY_TOKENS.sub(lambda m: f"[{m.group(1)}]", seg.text))
            else:
                out.append(IMAGE_TOKEN if seg.ok else FAIL_TOKEN)
        return "".join(out)

    def stats(self) -> dict[str, dict[str, float | int]]:
        """Per-tool ``total``, ``success``, ``success_rate`` as LLM-I logs them.

        Tags that could not be read count under ``invalid``; a fallback counts under the tool the
        tag asked for.
        """
        table: dict[str, dict[str, float | int]] = {}
        for seg in self.image_segments:
            row = table.setdefault(seg.tool or "invalid", {"total": 0, "success": 0})
            row["total"] += 1
            row["success"] += int(seg.ok)
        for row in table.values():
            row["success_rate"] = row["success"] / row["total"] if row["total"] else 0.0
        order = {name: i for i, name in enumerate((*SOURCES, "invalid"))}
        return dict(sorted(table.items(), key=lambda kv: order.get(kv[0], len(order))))

    @property
    def failures(self) -> tuple[ImageSegment, ...]:
        return tuple(s for s in self.image_segments if not s.ok)

    # -- output ----------------------------------------------------------------------------
    def to_dict(self, image_paths: Mapping[int, str] | None = None) -> dict[str, Any]:
        """The ``document.json`` form (see ``docs/document-json.md``)."""
        from .renderers.json import document_to_dict

        return document_to_dict(self, image_paths)

    def save(self, out_dir: str | Path, formats: str | Iterable[str] = ("html", "md", "json")) -> dict[str, Path]:
        """Write the document in each format (``"html,md"`` or a list) into ``out_dir``;
        returns format -> path."""
        from .renderers import normalise_formats, save

        return save(self, Path(out_dir), normalise_formats(formats))


def merge_text(parts: Sequence[Segment]) -> tuple[Segment, ...]:
    """Adjacent text segments joined, empty ones dropped."""
    out: list[Segment] = []
    for seg in parts:
        if isinstance(seg, TextSegment):
            if not seg.text:
                continue
            if out and isinstance(out[-1], TextSegment):
                out[-1] = TextSegment(out[-1].text + seg.text)
                continue
        out.append(seg)
    return tuple(out)
