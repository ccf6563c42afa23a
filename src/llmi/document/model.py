"""The assembled document: ordered prose and image segments, with provenance.

A ``Document`` is what the engine returns for one model answer. Each image segment records the
tag that asked for it, which tool and backend answered (or why none did), timing, cache hits and
fallbacks. The document also records the profile (``llmi.profiles``) it was read with, which
decides its judge view and statistics.

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

from ..image import ImageData
from ..profiles import LLMI, Profile
from ..sources import STATS_ORDER
from ..tags import ImageRequest

__all__ = [
    "FAIL_TOKEN",
    "IMAGE_TOKEN",
    "INVALID",
    "Credit",
    "Document",
    "Fallback",
    "ImageSegment",
    "Segment",
    "TextSegment",
    "merge_text",
]

IMAGE_TOKEN = "<image>"
FAIL_TOKEN = "<fail_to_generate_image>"
#: the statistics row of tags that name no known source (``llmi`` profile)
INVALID = "invalid"

# Placeholders typed by the model would be counted as images by a judge and by LLM-I's image
# count; a profile with ``typed_markers="defused"`` rewrites them so counts stay honest.
_STRAY_TOKENS = re.compile(r"<(image|fail_to_generate_image)>", re.I)


@dataclass(frozen=True)
class Credit:
    """Where an image came from, for the document to credit it."""

    source: str  # human label of the backend: "Wikimedia Commons", "Google Images (SerpAPI)", ...
    title: str | None = None
    page_url: str | None = None  # the page the image is shown on
    image_url: str | None = None  # the file itself
    author: str | None = None
    licence: str | None = None
    licence_url: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


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
    """One tag's slot in the document, successful or not.

    ``counted`` says whether the statistics count it: always under the ``llmi`` profile, and
    under ``llmi-compat`` only where LLM-I's rule does (``Tag.counted``).
    """

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
    counted: bool = True
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
    """Ordered segments of one answer, plus the input images, run metadata and the profile
    the answer was read with."""

    segments: tuple[Segment, ...]
    inputs: tuple[ImageData, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    profile: Profile = LLMI

    # -- views -----------------------------------------------------------------------------
    @property
    def image_segments(self) -> tuple[ImageSegment, ...]:
        return tuple(s for s in self.segments if isinstance(s, ImageSegment))

    @property
    def images(self) -> tuple[ImageData, ...]:
        """The successful images, in tag order (what an MLLM judge is shown: the i-th
        ``<image>`` of a tag is the i-th image)."""
        return tuple(s.image for s in self.image_segments if s.ok and s.image is not None)

    @property
    def text(self) -> str:
        """The prose alone, tags removed."""
        return "".join(s.text for s in self.segments if isinstance(s, TextSegment))

    @property
    def failures(self) -> tuple[ImageSegment, ...]:
        return tuple(s for s in self.image_segments if not s.ok)

    def judge_view(self) -> str:
        """LLM-I's processed text: each tag replaced by ``<image>`` or
        ``<fail_to_generate_image>``, everything else as written.

        Under the ``llmi`` profile, placeholders the model typed itself are defused
        (``<image>`` -> ``[image]``) so that the number of ``<image>`` tokens equals the number
        of made images; ``llmi-compat`` keeps them, as LLM-I does.
        """
        defuse = self.profile.typed_markers == "defused"
        out = []
        for seg in self.segments:
            if isinstance(seg, TextSegment):
                out.append(_STRAY_TOKENS.sub(r"[\1]", seg.text) if defuse else seg.text)
            else:
                out.append(IMAGE_TOKEN if seg.ok else FAIL_TOKEN)
        return "".join(out)

    def stats(self) -> dict[str, dict[str, float | int]]:
        """Per-tool ``total``, ``success`` and ``success_rate`` as LLM-I logs them: always all
        four tools in LLM-I's order, rates rounded to 4 decimals, 1.0 for an unused tool.

        Which tags count follows the profile: under ``llmi-compat`` LLM-I's rule; under
        ``llmi`` every tag, under the source it names, and an ``invalid`` row (always present)
        for tags that name none. A fallback counts under the tool the tag asked for.

        >>> from llmi.profiles import LLMI_COMPAT
        >>> Document((), profile=LLMI_COMPAT).stats()
        {'diffusion': {'total': 0, 'success': 0, 'success_rate': 1.0}, 'search': {'total': 0, 'success': 0, 'success_rate': 1.0}, 'code': {'total': 0, 'success': 0, 'success_rate': 1.0}, 'edit': {'total': 0, 'success': 0, 'success_rate': 1.0}}
        """
        names = STATS_ORDER + ((INVALID,) if self.profile.counting == "all" else ())
        counts = {name: [0, 0] for name in names}
        for seg in self.image_segments:
            if not seg.counted:
                continue
            row = counts.get(seg.tool or INVALID) or counts.get(INVALID)
            if row is not None:
                row[0] += 1
                row[1] += int(seg.ok)
        return {
            name: {"total": total, "success": ok, "success_rate": round(ok / total, 4) if total else 1.0}
            for name, (total, ok) in counts.items()
        }

    # -- output ----------------------------------------------------------------------------
    def to_dict(self, image_paths: Mapping[int, str] | None = None) -> dict[str, Any]:
        """The ``document.json`` form (see ``docs/document-json.md``)."""
        from .schema import document_to_dict

        return document_to_dict(self, image_paths)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | Path | None = None) -> Document:
        """The document ``to_dict`` (or ``document.json``) describes; images are read from
        their paths under ``base_dir``."""
        from .schema import document_from_dict

        return document_from_dict(data, base_dir)

    def save(self, out_dir: str | Path, formats: str | Iterable[str] = ("html", "md", "json")) -> dict[str, Path]:
        """Write the document in each format (``"html,md"`` or a list) into ``out_dir``;
        returns format -> path. A convenience for ``llmi.renderers.save``."""
        from ..renderers import normalise_formats, save

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
