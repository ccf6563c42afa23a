"""What the reward sees of a document: the answer, the judge text, the images, the counts.

``view_of(doc, options)`` is the one place where the reward options change what the judges
are shown. With LLM-I's options it is the document's own judge view (under the
``llmi-compat`` profile: LLM-I's processed text, a typed ``<image>`` left in place); the
stricter options rebuild it from the segments:

* ``typed_image="ignore"``: placeholders the model typed become ``[image]``, so the i-th
  ``<image>`` is always the i-th produced image;
* ``lenient_tags="invalid"``: a tag only llmi's lenient reader could read is shown as
  ``<fail_to_generate_image>`` and its image is withheld.

>>> from llmi.document import Document, TextSegment
>>> v = view_of(Document((TextSegment("Owls <image> hunt."),)), RewardOptions(typed_image="ignore"))
>>> v.text, v.image_count
('Owls [image] hunt.', 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Mapping

from .config import RewardOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document, ImageSegment
    from ..image import ImageData

__all__ = ["RewardView", "view_of", "read_leniently", "IMAGE_TOKEN", "FAIL_TOKEN"]

IMAGE_TOKEN = "<image>"
FAIL_TOKEN = "<fail_to_generate_image>"
_TYPED = re.compile(r"<(image|fail_to_generate_image)>")


@dataclass(frozen=True)
class RewardView:
    """One answer as the reward sees it."""

    answer: str  # the raw answer, tags included (what the LLM judge reads)
    text: str  # the judge text: tags replaced by <image> / <fail_to_generate_image>
    images: "tuple[ImageData, ...]"  # the images shown to the MLLM judge, in order
    image_count: int  # k, what the image-count score counts
    tags: int  # tag slots in the answer
    failed: int  # slots that produced no image (unreadable tags included)
    stats: Mapping[str, Mapping[str, float]]

    @property
    def failed_share(self) -> float:
        return self.failed / self.tags if self.tags else 0.0

    @property
    def text_is_empty(self) -> bool:
        """LLM-I's test for an answer made of images only (``Text`` is then forced to 1)."""
        return not self.text.replace(IMAGE_TOKEN, "").strip()


def view_of(doc: "Document", options: RewardOptions = RewardOptions(), *, answer: str | None = None) -> RewardView:
    """The reward's view of ``doc`` under ``options``; ``answer`` is the text the document was
    made from (by default, the document's segments put back together)."""
    from ..document import ImageSegment, TextSegment

    segments = doc.image_segments
    if answer is None:
        answer = "".join(s.text if isinstance(s, TextSegment) else s.raw for s in doc.segments)
    withheld = (
        {s.index for s in segments if s.ok and read_leniently(s)} if options.lenient_tags == "invalid" else set()
    )
    if options.typed_image == "count" and not withheld:
        text, images = doc.judge_view(), tuple(doc.images)
    else:
        parts: list[str] = []
        shown: list[ImageData] = []
        for seg in doc.segments:
            if isinstance(seg, TextSegment):
                raw = seg.text
                parts.append(_TYPED.sub(r"[\1]", raw) if options.typed_image == "ignore" else raw)
            elif isinstance(seg, ImageSegment) and seg.ok and seg.image is not None and seg.index not in withheld:
                parts.append(IMAGE_TOKEN)
                shown.append(seg.image)
            else:
                parts.append(FAIL_TOKEN)
        text, images = "".join(parts), tuple(shown)
    k = text.count(IMAGE_TOKEN) if options.typed_image == "count" else len(images)
    failed = sum(1 for s in segments if not s.ok or s.index in withheld)
    return RewardView(answer, text, images, k, len(segments), failed, doc.stats())


def read_leniently(seg: "ImageSegment") -> bool:
    """Whether the tag in ``seg`` could be read only by llmi's lenient reader."""
    return _recovered(seg.raw)


@lru_cache(maxsize=4096)
def _recovered(raw: str) -> bool:
    from ..tags import parse

    return any(w.kind == "recovered" for w in parse(raw).warnings)
