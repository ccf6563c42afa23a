"""A self-contained HTML page for a ``Document``.

Everything model-written is escaped or sanitised: the prose goes through Markdown with raw HTML
disabled and then through nh3 with a small allow-list, and every field llmi prints itself
(descriptions, errors, credits, params) is HTML-escaped. Images are embedded as ``data:`` URIs
and a Content-Security-Policy forbids scripts and every external resource, so the page works
offline and no script from a model or a prompt can run in it.

The prose is rendered as one Markdown stream, so a paragraph split by a tag still renders as
Markdown; each image's place is held by a token that contains a random nonce drawn for this
render, so text from the model cannot forge one.

>>> from llmi.document import Document, TextSegment
>>> page = render_html(Document((TextSegment("**Hi** <script>alert(1)</script>"),)))
>>> "<strong>Hi</strong> &lt;script&gt;" in page, "<script>" in page
(True, False)
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from functools import lru_cache
from html import escape
from importlib import resources
from typing import Any

from ..document import Document, ImageSegment, TextSegment
from ..image import ImageData
from . import _common as c

__all__ = ["render_body", "render_fragment", "render_html", "render_prose", "stylesheet"]

# What model prose may contain after Markdown rendering. No images (they would be external
# resources), no styles, no classes (which could imitate llmi's own failure boxes), no ids.
_PROSE_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "s", "del",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th",
    "td", "sup", "sub",
}  # fmt: skip
_PROSE_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
_EMBEDDABLE = {"png", "jpeg", "gif", "webp", "bmp"}


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


@lru_cache(maxsize=1)
def _style() -> tuple[str, str]:
    """The page's CSS and its CSP hash source."""
    css = resources.files("llmi.renderers").joinpath("style.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return css, f"'sha256-{digest}'"


@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")  # a model's ![](url) stays visible as a link, never an external fetch
    return md


def _sanitise(html: str) -> str:
    import nh3

    return nh3.clean(
        html,
        tags=_PROSE_TAGS,
        attributes=_PROSE_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_prose(markdown_text: str) -> str:
    """Model-written Markdown as sanitised HTML.

    >>> render_prose("[x](javascript:alert(1)) <img src=x onerror=alert(1)>")
    '<p>[x](javascript:alert(1)) &lt;img src=x onerror=alert(1)&gt;</p>\\n'
    """
    return _sanitise(_markdown().render(markdown_text))


# -- figures ----------------------------------------------------------------------------------


def _data_uri(image: ImageData) -> str | None:
    """A ``data:`` URI for ``image``; other formats are converted to PNG; ``None`` if unreadable."""
    if image.format not in _EMBEDDABLE:
        from PIL import Image

        try:
            image = image.to_png()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None  # foreign bytes: the figure says why instead
    return image.data_url


def _badges(doc: Document, seg: ImageSegment) -> str:
    out = [f'<span class="badge">{_e(c.tool_label(seg))}</span>']
    target = c.edit_target(doc, seg)
    if target:
        out.append(f'<span class="badge">edits {_e(target)}</span>')
    if seg.cache_hit:
        out.append('<span class="badge">cached</span>')
    fb = c.fallback_text(seg)
    if fb:
        out.append(f'<span class="badge fallback" title="fallback">↪ {_e(fb)}</span>')
    return " ".join(out)


def _link(text: str, url: str | None) -> str:
    safe = c.safe_url(url)
    if safe is None:
        return _e(text)
    return f'<a href="{_e(safe)}" rel="noopener noreferrer nofollow">{_e(text)}</a>'


def _credit(seg: ImageSegment) -> str:
    cr = seg.credit
    if cr is None:
        return ""
    parts = [_link(cr.title or "Source", cr.page_url or cr.image_url)]
    if cr.author:
        parts[0] += f" by {_e(c.one_line(cr.author, 200))}"
    if cr.licence:
        parts.append(_link(cr.licence, cr.licence_url))
    if cr.source:
        parts.append(f"via {_e(cr.source)}")
    return f'<p class="credit">Credit: {" · ".join(parts)}</p>'


def _facts(seg: ImageSegment) -> str:
    rows: list[tuple[str, str]] = [("tag index", _e(seg.index)), ("tool", _e(seg.tool or "—"))]
    if seg.backend:
        rows.append(("backend", _e(seg.backend)))
    if seg.ok and seg.image is not None:
        rows.append(("size", f"{seg.image.width}×{seg.image.height} {_e(seg.image.format)}"))
    if seg.elapsed or seg.cache_hit or seg.ok:
        rows.append(
            ("time", _e(c.format_seconds(seg.elapsed)) + (" (cache hit)" if seg.cache_hit else ""))
        )
    if seg.attempts:
        rows.append(("attempts", _e(seg.attempts)))
    params = dict(seg.request.params) if seg.request is not None else {}
    for key, value in params.items():
        text = str(value)
        cell = f"<pre>{_e(text)}</pre>" if "\n" in text or key == "code" else _e(text)
        rows.append((_e(key), cell))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    raw = "" if seg.ok else f"<p>Tag as written:</p><pre>{_e(seg.raw)}</pre>"
    return f'<details><summary>Details</summary><dl class="facts">{items}</dl>{raw}</details>'


def _failed_figure(doc: Document, seg: ImageSegment, reason: str | None = None) -> str:
    error = reason or seg.error or "no reason recorded"
    kind = f"<code>{_e(seg.error_type)}</code>: " if seg.error_type and not reason else ""
    desc = f'<p class="desc">{_e(seg.description)}</p>' if seg.description else ""
    tag = "pre" if "\n" in error.strip() else "p"  # tracebacks keep their lines
    return (
        f'<figure class="image failed" id="figure-{seg.index + 1}" role="note">'
        f'<div class="failbox"><p class="title">⚠ {_e(c.figure_label(seg))} could not be made</p>'
        f"<p>{_badges(doc, seg)}</p>{desc}"
        f'<{tag} class="reason">{kind}{_e(error)}</{tag}>{_facts(seg)}</div></figure>'
    )


def _figure(doc: Document, seg: ImageSegment) -> str:
    if not seg.ok or seg.image is None:
        return _failed_figure(
            doc, seg, None if not seg.ok else "the image is missing from the document"
        )
    uri = _data_uri(seg.image)
    if uri is None:
        return _failed_figure(doc, seg, f"the {seg.image.format} image could not be embedded")
    desc = seg.description
    return (
        f'<figure class="image ok" id="figure-{seg.index + 1}">'
        f'<img src="{uri}" alt="{_e(c.one_line(desc) or c.figure_label(seg))}" '
        f'width="{int(seg.image.width)}" height="{int(seg.image.height)}">'
        f'<figcaption><span class="num">{_e(c.figure_label(seg))}</span>{_e(desc)} {_badges(doc, seg)}'
        f"{_credit(seg)}{_facts(seg)}</figcaption></figure>"
    )


# -- the prose with figures in place ------------------------------------------------------------


def render_body(doc: Document, figure: Callable[[Document, ImageSegment], str] | None = None) -> str:
    """Prose rendered as one Markdown stream, each image's figure put where its tag was.

    ``figure(doc, segment)`` gives a figure's HTML (default: this page's own, the picture
    embedded); other llmi pages pass theirs (the viewer links its pictures and side panels).
    """
    figure = figure or _figure
    segments = c.body_segments(doc)
    source = "".join(s.text for s in segments if isinstance(s, TextSegment))
    nonce = secrets.token_hex(16)
    while nonce in source:  # astronomically unlikely; cheap to rule out
        nonce = secrets.token_hex(16)
    figures = [seg for seg in segments if isinstance(seg, ImageSegment)]

    stream: list[str] = []
    pos = 0
    for seg in segments:
        if isinstance(seg, TextSegment):
            stream.append(seg.text)
            continue
        # A blank line on each side makes the token a paragraph of its own: figures are blocks.
        stream.append(f"\n\nLLMIFIG{nonce}X{pos}X\n\n")
        pos += 1
    html = render_prose("".join(stream))

    placed: set[int] = set()

    def put(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if i >= len(figures) or i in placed:
            return ""
        placed.add(i)
        return figure(doc, figures[i])

    # One pass, so figure HTML is never rescanned; a token left inside a code block (a tag the
    # model wrote inside a fence) still becomes its figure there.
    html = re.sub(rf"(?:<p>)?LLMIFIG{nonce}X(\d+)X(?:</p>\n?)?", put, html)
    # Never let an image vanish silently, whatever Markdown did with its token.
    html += "".join(figure(doc, f) for i, f in enumerate(figures) if i not in placed)
    return html


def _stats_table(doc: Document) -> str:
    stats = c.used_stats(doc)
    if not stats:
        return ""
    rows = "".join(
        f'<tr><td>{_e(tool)}</td><td class="num">{int(r["total"])}</td><td class="num">{int(r["success"])}</td>'
        f'<td class="num">{c.percent(r["success_rate"])}</td></tr>'
        for tool, r in stats.items()
    )
    return (
        '<section class="stats"><h2>Tool calls</h2><table><thead><tr><th>tool</th><th>total</th>'
        f"<th>success</th><th>success rate</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _inputs(doc: Document) -> str:
    if not doc.inputs:
        return ""
    items = []
    for i, img in enumerate(doc.inputs):
        uri = _data_uri(img)
        pic = (
            f'<img src="{uri}" alt="input image {i}" width="{int(img.width)}" height="{int(img.height)}">'
            if uri
            else "<p>(unreadable)</p>"
        )
        items.append(f"<figure>{pic}<figcaption>input image {i}</figcaption></figure>")
    return f'<section class="inputs-section"><h2>Input images</h2><div class="inputs">{"".join(items)}</div></section>'


def _summary(doc: Document) -> str:
    n, ok, failed = c.summary_counts(doc)
    if not n:
        return '<p class="summary">No images.</p>'
    word = "image" if n == 1 else "images"
    return (
        f'<p class="summary">{n} {word}: <span class="ok">{ok} made</span>, '
        f'<span class="failed">{failed} failed</span>.</p>'
    )


def _meta_rows(doc: Document) -> Iterable[str]:
    yield f"<dt>profile</dt><dd>{_e(doc.profile.name)}</dd>"  # how the answer was read
    for key, value in doc.meta.items():
        if key in ("title", "prompt") or not isinstance(value, (str, int, float, bool)):
            continue
        yield f"<dt>{_e(key)}</dt><dd>{_e(c.one_line(str(value), 300))}</dd>"


def stylesheet() -> str:
    """The CSS of llmi's document pages, for pages that embed documents (``render_fragment``)."""
    return _style()[0]


def render_fragment(doc: Document) -> str:
    """A document's input images and prose with its figures, to embed in another llmi page
    (evaluation reports) that carries ``stylesheet()`` and the same Content-Security-Policy."""
    return f'{_inputs(doc)}<article class="prose">\n{render_body(doc)}</article>\n'


def render_html(doc: Document) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    css, style_hash = _style()
    csp = (
        f"default-src 'none'; img-src data:; style-src {style_hash}; "
        "base-uri 'none'; form-action 'none'"
    )
    title = c.title_of(doc)
    prompt = c.prompt_of(doc)
    prompt_html = (
        f'<blockquote class="prompt">{_e(prompt)}</blockquote>'
        if prompt and c.one_line(prompt) != title
        else ""
    )
    meta = "".join(_meta_rows(doc))
    from ..document.schema import SCHEMA_VERSION

    footer_meta = (
        f'<details><summary>Run details</summary><dl class="facts">{meta}</dl></details>'
        if meta
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{c.guess_lang(doc.text)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="llmi">\n'
        f"<title>{_e(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{_e(title)}</h1>{prompt_html}{_summary(doc)}{_inputs(doc)}</header>\n"
        f'<article class="prose">\n{render_body(doc)}</article>\n{_stats_table(doc)}\n'
        f"<footer><p>Rendered by llmi · {_e(SCHEMA_VERSION)}</p>{footer_meta}</footer>\n"
        "</main>\n</body>\n</html>\n"
    )
