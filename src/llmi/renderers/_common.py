"""What the HTML and Markdown renderers say the same way: titles, labels, URLs, summaries."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ..document import Document, ImageSegment, Segment, TextSegment

_WS = re.compile(r"\s+")
# Control characters (and Unicode line/paragraph separators) never belong in a URL we print.
_URL_BAD = re.compile(r"[\x00-\x20\x7f\u2028\u2029]")


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` with runs of whitespace collapsed, cut to ``limit`` characters with an ellipsis."""
    text = _WS.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


_LEADING_HEADING = re.compile(r"\A\s*# +([^\n]+?)[ #]*(?:\n|\Z)")
_MD_INLINE = re.compile(r"[*_`~]|\\(?=[^\w\s])")


def leading_heading(doc: Document) -> str | None:
    """The text of a ``# heading`` that opens the prose, as plain text (the answer's own title)."""
    first = doc.segments[0] if doc.segments else None
    if not isinstance(first, TextSegment):
        return None
    m = _LEADING_HEADING.match(first.text)
    return one_line(_MD_INLINE.sub("", m.group(1)), 120) or None if m else None


def title_of(doc: Document) -> str:
    """The document's title: ``meta['title']``, the prompt's first line, the prose's opening
    ``# heading``, or a default."""
    for key in ("title", "prompt", "question"):
        value = doc.meta.get(key)
        if isinstance(value, str) and value.strip():
            return one_line(value.strip().splitlines()[0], 120)
    return leading_heading(doc) or "Illustrated document"


def body_segments(doc: Document) -> tuple[Segment, ...]:
    """The segments to render under the title: an opening ``# heading`` that became the title
    is not repeated."""
    heading = leading_heading(doc)
    if heading is None or title_of(doc) != heading:
        return doc.segments
    first = doc.segments[0]
    assert isinstance(first, TextSegment)
    rest = _LEADING_HEADING.sub("", first.text, count=1)
    return (TextSegment(rest), *doc.segments[1:])


def prompt_of(doc: Document) -> str | None:
    value = doc.meta.get("prompt")
    return value if isinstance(value, str) and value.strip() else None


def figure_label(seg: ImageSegment) -> str:
    """Readers count figures from 1; the tag index (``seg.index``) counts from 0."""
    return f"Figure {seg.index + 1}"


def edit_target(doc: Document, seg: ImageSegment) -> str | None:
    """What an edit tag edits, in readers' words (LLM-I's ``img_index``: inputs first, then tags)."""
    if seg.request is None or seg.request.source != "edit":
        return None
    idx = seg.request.params.get("img_index")
    if not isinstance(idx, int) or isinstance(idx, bool):
        return None
    m = len(doc.inputs)
    if idx < 0:
        return f"image {idx} (invalid)"
    return f"input image {idx}" if idx < m else f"Figure {idx - m + 1}"


def tool_label(seg: ImageSegment) -> str:
    """``search · wikimedia`` or ``diffusion`` or ``invalid tag``; a fallback names the tool used."""
    tool = seg.fallback.used if seg.fallback is not None else (seg.tool or "invalid tag")
    return f"{tool} · {seg.backend}" if seg.backend else tool


def fallback_text(seg: ImageSegment) -> str | None:
    fb = seg.fallback
    if fb is None:
        return None
    return (
        f"{fb.requested} → {fb.used}: {fb.reason}" if fb.reason else f"{fb.requested} → {fb.used}"
    )


def safe_url(url: Any) -> str | None:
    """``url`` if it is an absolute http(s) URL without control characters, else ``None``.

    >>> safe_url("javascript:alert(1)") is None, safe_url("https://commons.wikimedia.org/x")
    (True, 'https://commons.wikimedia.org/x')
    """
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or _URL_BAD.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def used_stats(doc: Document) -> dict[str, dict[str, float | int]]:
    """The statistics rows of the tools the answer used (``Document.stats`` lists all)."""
    return {tool: row for tool, row in doc.stats().items() if row["total"]}


def summary_counts(doc: Document) -> tuple[int, int, int]:
    """(images, ok, failed)."""
    segs = doc.image_segments
    ok = sum(1 for s in segs if s.ok)
    return len(segs), ok, len(segs) - ok


def percent(rate: float) -> str:
    return f"{100 * float(rate):.0f}%"


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def guess_lang(text: str) -> str:
    """``zh`` when the prose is mostly CJK, ``ja`` for kana, else ``en`` (for fonts and hyphenation)."""
    sample = text[:4000]
    letters = [c for c in sample if c.isalpha()]
    if not letters:
        return "en"
    kana = sum(1 for c in letters if "\u3040" <= c <= "\u30ff")
    cjk = sum(1 for c in letters if "\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf")
    if kana / len(letters) > 0.1:
        return "ja"
    return "zh" if cjk / len(letters) > 0.3 else "en"
