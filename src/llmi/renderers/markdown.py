"""``document.md``: the answer as Markdown, its images in the ``images/`` folder beside it.

The model's prose is Markdown already and is kept as written; everything llmi adds (titles, alt
text, captions, errors, credits, the stats table) is escaped so that it reads as plain text in
any Markdown viewer.

>>> from llmi.document import Document, TextSegment, ImageSegment
>>> print(render_markdown(Document((TextSegment("Intro."), ImageSegment(0, "<imgen>x</imgen>", "search",
...     "failed", error="no search backend [configured]", error_type="ToolNotConfigured")))).split("\\n\\n")[3])
> **⚠ Figure 1 could not be made** (search)\\
> ToolNotConfigured: no search backend \\[configured\\]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from ..document import Document, ImageSegment, TextSegment
from . import _common as c

__all__ = ["defang_prose", "escape_markdown", "render_markdown"]

_INLINE = re.compile(r"([\\`*_\[\]<>#!|~&])")
_LINE_START = re.compile(r"^(\d+)([.)])|^([+\-=])")


def escape_markdown(text: str) -> str:
    """``text`` (one line) as literal Markdown: inline syntax and line-start markers escaped.

    >>> escape_markdown("# 1. <b>*x*</b> [a](b)")
    '\\\\# 1. \\\\<b\\\\>\\\\*x\\\\*\\\\</b\\\\> \\\\[a\\\\](b)'
    """
    text = _INLINE.sub(r"\\\1", text.strip())
    return _LINE_START.sub(
        lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", text
    )


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)(?<!`)\1(?!`)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])(?!(?:https?|mailto):[^<>\s]*>)")
_LINK_DEST = re.compile(r"\]\((\s*<?)([^)\n]*)")
_REF_DEF = re.compile(r"^( {0,3})\[([^\]\n]+)\]:\s*<?(\S*)")
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def _bad_url(dest: str) -> bool:
    # Browsers drop whitespace and control characters inside a scheme ("java\tscript:").
    squeezed = re.sub(r"[\x00-\x20\x7f]", "", dest).lower()
    return squeezed.startswith(_BAD_SCHEMES)


def _defang_inline(text: str) -> str:
    text = _LINK_DEST.sub(
        lambda m: ("]\\(" if _bad_url(m.group(2)) else "](") + m.group(1) + m.group(2), text
    )
    return _ENTITY.sub(r"\\&", _TAG_START.sub(r"\\<", text))


def defang_prose(text: str) -> str:
    """Model Markdown with raw HTML, entities and script URLs made literal; code left alone.

    Markdown viewers differ in what raw HTML they let through, so the model's HTML is escaped
    here rather than trusted to the viewer. Fenced code blocks and code spans are untouched.

    >>> defang_prose("<b onclick=x>hi</b> `<b>` [a](javascript:alert(1)) <https://x.org>")
    '\\\\<b onclick=x>hi\\\\</b> `<b>` [a]\\\\(javascript:alert(1)) <https://x.org>'
    """
    return _defang(text, None)[0]


def _defang(text: str, fence: str | None) -> tuple[str, str | None]:
    """``defang_prose`` that carries an open code fence across the segments of one answer."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is not None:
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not line.strip()[len(m.group(1)) :]
            ):
                fence = None
            out.append(line)
            continue
        if m:
            fence = m.group(1)
            out.append(line)
            continue
        ref = _REF_DEF.match(line)
        if ref and _bad_url(ref.group(3)):
            line = ref.group(1) + "\\" + line[len(ref.group(1)) :]
        pieces, pos = [], 0
        for span in _CODE_SPAN.finditer(line):
            pieces.append(_defang_inline(line[pos : span.start()]))
            pieces.append(span.group(0))
            pos = span.end()
        pieces.append(_defang_inline(line[pos:]))
        out.append("".join(pieces))
    return "".join(out), fence


def _lines(text: str) -> list[str]:
    """Each line of ``text`` escaped; blank lines dropped (they would end a blockquote)."""
    return [escape_markdown(line) for line in text.splitlines() if line.strip()]


def _url(url: str) -> str:
    # Percent-encode what would end or confuse a Markdown link destination.
    return quote(url, safe=":/?#@!$&'*+,;=%~-._[]")


def _link(text: str, url: str | None) -> str:
    safe = c.safe_url(url)
    label = escape_markdown(c.one_line(text))
    return f"[{label}]({_url(safe)})" if safe else label


def _credit(seg: ImageSegment) -> str | None:
    cr = seg.credit
    if cr is None:
        return None
    head = _link(cr.title or "Source", cr.page_url or cr.image_url)
    if cr.author:
        head += f" by {escape_markdown(c.one_line(cr.author, 200))}"
    parts = [head]
    if cr.licence:
        parts.append(_link(cr.licence, cr.licence_url))
    if cr.source:
        parts.append(f"via {escape_markdown(c.one_line(cr.source))}")
    return f"*Credit: {' · '.join(parts)}*"


def _notes(doc: Document, seg: ImageSegment) -> str:
    out = [escape_markdown(c.tool_label(seg))]
    target = c.edit_target(doc, seg)
    if target:
        out.append(f"edits {escape_markdown(target)}")
    if seg.cache_hit:
        out.append("cached")
    return ", ".join(out)


def _figure(doc: Document, seg: ImageSegment, path: str | None) -> str:
    label = c.figure_label(seg)
    desc = escape_markdown(c.one_line(seg.description))
    fb = c.fallback_text(seg)
    fb_line = f"*↪ fallback {escape_markdown(c.one_line(fb))}*" if fb else None
    if not seg.ok or seg.image is None:
        head = f"> **⚠ {label} could not be made** ({_notes(doc, seg)})"
        lines = [head]
        if desc:
            lines.append(f"> {desc}")
        error = seg.error if not seg.ok else "the image is missing from the document"
        reason = _lines(error or "no reason recorded") or ["no reason recorded"]
        kind = f"{escape_markdown(seg.error_type)}: " if seg.error_type and not seg.ok else ""
        lines.append(f"> {kind}{reason[0]}")
        lines.extend(f"> {line}" for line in reason[1:])
        if fb_line:
            lines.append(f"> {fb_line}")
        return "\\\n".join(lines)  # backslash line breaks keep it one blockquote paragraph
    caption = f"*{label}{': ' + desc if desc else ''}* ({_notes(doc, seg)})"
    picture = (
        f"![{desc or label}]({_url(path)})" if path else f"*({label} was not saved to a file)*"
    )
    lines = [picture, caption]
    if fb_line:
        lines.append(fb_line)
    credit = _credit(seg)
    if credit:
        lines.append(credit)
    return "\n\n".join(lines)


def _stats(doc: Document) -> str:
    stats = c.used_stats(doc)
    if not stats:
        return ""
    rows = [
        f"| {escape_markdown(tool)} | {int(r['total'])} | {int(r['success'])} | {c.percent(r['success_rate'])} |"
        for tool, r in stats.items()
    ]
    return "\n".join(
        [
            "## Tool calls",
            "",
            "| tool | total | success | success rate |",
            "|---|--:|--:|--:|",
            *rows,
        ]
    )


def render_markdown(
    doc: Document,
    image_paths: Mapping[int, str] | None = None,
    input_paths: Sequence[str | None] | None = None,
) -> str:
    """The document as Markdown; ``image_paths`` maps a segment's index to its saved file."""
    image_paths = image_paths or {}
    input_paths = list(input_paths or ())
    parts: list[str] = [f"# {escape_markdown(c.title_of(doc))}"]
    prompt = c.prompt_of(doc)
    if prompt and c.one_line(prompt) != c.title_of(doc):
        parts.append("\n".join(f"> {line}" for line in _lines(prompt)))
    n, ok, failed = c.summary_counts(doc)
    parts.append(
        f"*{n} image{'s' if n != 1 else ''}: {ok} made, {failed} failed.*" if n else "*No images.*"
    )
    if doc.inputs:
        saved = [input_paths[i] if i < len(input_paths) else None for i in range(len(doc.inputs))]
        pics = [
            f"![input image {i}]({_url(p)})" if p else f"input image {i} (not saved)"
            for i, p in enumerate(saved)
        ]
        parts.append("**Input images:** " + " ".join(pics))

    body = ""
    fence: str | None = None
    for seg in c.body_segments(doc):
        if isinstance(seg, TextSegment):
            text, fence = _defang(seg.text, fence)
            body += text.lstrip("\n") if body.endswith("\n\n") else text
            continue
        body = body.rstrip(" \t")
        body += "\n" * (2 - (len(body) - len(body.rstrip("\n")))) if body else ""
        body += _figure(doc, seg, image_paths.get(seg.index)) + "\n\n"
    parts.append(body.strip("\n"))
    stats = _stats(doc)
    if stats:
        parts.append(stats)
    return "\n\n".join(p for p in parts if p) + "\n"
