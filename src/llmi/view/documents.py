"""A saved document as the viewer shows it: the prose as a reader sees it, and a side panel per
image with everything the engine recorded about it.

A ``document.json`` (``docs/document-json.md``) is read once per version of the file
(``DocumentStore``); its pictures are not decoded here, they are served one by one
(``image_file``) and only when the file holds a raster image. The page's figures link to their
panels (``#image-N``): tool, backend, the request (chart code highlighted), timing, cache hit,
fallback, error, source and licence, and the judge scores when the document was scored.

>>> import tempfile, pathlib
>>> from llmi.document import Document, TextSegment
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = Document((TextSegment("**Hi** <script>x</script>"),), meta={"prompt": "Hi?"}).save(root / "d", ["json"])
>>> page = document_page(DocumentStore(root).get("d"))
>>> page.title, "<strong>Hi</strong> &lt;script&gt;" in str(page.body)
('Hi?', True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..document import SCHEMA_VERSION, Document, ImageSegment, TextSegment
from ..errors import LlmiError
from ..renderers import _common as c
from ..sources import STATS_ORDER
from . import pages, urls
from .index import DOCUMENT_FILE, Entry, NotThere, StampCache, Unreadable, read_json, resolve_inside

__all__ = [
    "DocumentPage", "DocumentStore", "Figure", "Loaded", "Score", "document_page", "image_file",
    "read_document_entry", "scores_of",
]

#: bytes a served picture may have (the engine's own caps are far below)
MAX_IMAGE_BYTES = 64 << 20
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


@dataclass(frozen=True)
class Loaded:
    """One parsed ``document.json``: its dict, the ``Document`` it describes (pictures not
    read), and where it lives (``rel`` relative to the viewed root)."""

    rel: str
    folder: Path
    data: Mapping[str, Any]
    doc: Document

    @property
    def image_entries(self) -> list[Mapping[str, Any]]:
        """The image segments' dicts, in order (the n-th is the n-th image segment)."""
        return [s for s in self.data.get("segments") or () if isinstance(s, Mapping) and s.get("type") != "text"]


def parse_document(data: Any, folder: Path, rel: str) -> Loaded:
    """``Loaded`` from a ``document.json`` dict; ``Unreadable`` saying what is wrong with it."""
    if not isinstance(data, Mapping):
        raise Unreadable(f"{DOCUMENT_FILE} does not hold a JSON object")
    segments = data.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, Mapping) for s in segments):
        raise Unreadable(f"{DOCUMENT_FILE} has segments that are not a list of objects")
    try:
        doc = Document.from_dict(data, None)  # no base folder: pictures are served, not decoded
    except LlmiError as exc:
        raise Unreadable(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Unreadable(f"{DOCUMENT_FILE} does not follow llmi.document/1: {type(exc).__name__} {exc}") from None
    return Loaded(rel, folder, data, doc)


class DocumentStore:
    """Parsed documents under ``root``, each read again only when its file changes."""

    def __init__(self, root: str | Path, size: int = 256) -> None:
        self.root = Path(root).resolve()
        self._cache: StampCache[Loaded] = StampCache(size)

    def get(self, rel: str) -> Loaded:
        """The document in folder ``rel``: ``NotThere`` when there is none, ``Unreadable``
        when it cannot be read."""
        folder = resolve_inside(self.root, rel)
        if folder is None or not (folder / DOCUMENT_FILE).is_file():
            raise NotThere(f"there is no document at {rel or '.'}")
        return self._cache.get(rel, (folder / DOCUMENT_FILE,),
                               lambda: parse_document(read_json(folder / DOCUMENT_FILE), folder, rel))


def read_document_entry(folder: Path, rel: str) -> Entry:
    """The list's entry for the document in ``folder``.

    Read from the dict, without building the ``Document`` (the list reads every file in the
    folder; the document's own page reads one and checks it whole).
    """
    data = read_json(folder / DOCUMENT_FILE)
    if not isinstance(data, Mapping):
        raise Unreadable(f"{DOCUMENT_FILE} does not hold a JSON object")
    if data.get("version") != SCHEMA_VERSION:
        raise Unreadable(f"unsupported document.json version {data.get('version')!r}; this llmi reads {SCHEMA_VERSION!r}")
    meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}
    segments = data.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(s, Mapping) for s in segments):
        raise Unreadable(f"{DOCUMENT_FILE} has segments that are not a list of objects")
    opening = segments[0].get("text") if segments and segments[0].get("type") == "text" else None
    head = Document((TextSegment(opening),) if isinstance(opening, str) else (), meta=meta)  # what a title needs
    images = [s for s in segments if s.get("type") != "text"]
    ok = sum(1 for s in images if s.get("status") == "ok")
    facts = [("images", f"{len(images)}: {ok} made, {len(images) - ok} failed" if images else "none")]
    used = {s.get("tool") for s in images if isinstance(s.get("tool"), str)}
    tools = ", ".join(t for t in STATS_ORDER if t in used)
    if tools:
        facts.append(("tools", tools))
    writer = meta.get("writer") or meta.get("model")
    if isinstance(writer, str) and writer:
        facts.append(("writer", c.one_line(writer, 60)))
    scaling = meta.get("scaling")
    if isinstance(scaling, Mapping) and isinstance(scaling.get("candidates"), list):
        facts.append(("candidates", str(len(scaling["candidates"]))))
    return Entry("scaling" if isinstance(scaling, Mapping) else "document", rel, c.title_of(head),
                 c.prompt_of(head) or "", os.stat(folder / DOCUMENT_FILE).st_mtime, tuple(facts))


def image_file(loaded: Loaded, *, tag: int | None = None, input: int | None = None) -> tuple[Path, str]:
    """(path, media type) of a document's picture: the ``tag``-th image segment's, or input
    image ``input``'s. ``NotThere`` unless it is a raster image file inside the document's
    folder (the file's first bytes decide its type, never its name)."""
    entries = loaded.image_entries if tag is not None else list(loaded.data.get("inputs") or ())
    position = tag if tag is not None else input
    if position is None or not 0 <= position < len(entries) or not isinstance(entries[position], Mapping):
        raise NotThere("no such picture in this document")
    rel = entries[position].get("path")
    path = resolve_inside(loaded.folder, rel) if isinstance(rel, str) and rel else None
    if path is None or not path.is_file():
        raise NotThere("the picture is not in the document's folder")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise NotThere("the picture is too large to show")
    with open(path, "rb") as fh:
        head = fh.read(16)
    media = next((m for magic, m in _MAGIC if head.startswith(magic)), None)
    if media is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        media = "image/webp"
    if media is None:
        raise NotThere("the file is not a picture a browser shows safely (PNG, JPEG, GIF, WebP, BMP)")
    return path, media


# -- the page --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One judge score shown beside a document (a criterion, a judge's field)."""

    name: str
    score: Any
    max: Any = None
    text: str = ""
    justification: str = ""
    error: str | None = None
    error_type: str | None = None


def scores_of(criteria: Any) -> tuple[Score, ...]:
    """``Score`` values from an evaluation record's ``criteria`` list (malformed rows skipped;
    anything but a list gives none).

    >>> [s.name for s in scores_of([{"name": "r1", "score": 2}, "junk"])], scores_of(True)
    (['r1'], ())
    """
    out = []
    for row in criteria if isinstance(criteria, (list, tuple)) else ():
        if isinstance(row, Mapping):
            out.append(Score(str(row.get("name", "")), row.get("score"), row.get("max"), str(row.get("text") or ""),
                             str(row.get("justification") or ""), _text(row.get("error")), _text(row.get("error_type"))))
    return tuple(out)


@dataclass(frozen=True)
class Param:
    name: str
    text: str
    code: Any = None  # highlighted HTML, for chart code


@dataclass(frozen=True)
class CreditView:
    title: str
    link: str | None
    author: str | None
    licence: str | None
    licence_link: str | None
    source: str


@dataclass(frozen=True)
class Figure:
    """One image segment as the viewer shows it (in the prose and in its side panel)."""

    position: int  # its place among the image segments, from 0: its address in the page
    label: str
    ok: bool
    tool: str | None
    tool_label: str
    backend: str | None
    description: str
    src: str | None
    width: int | None
    height: int | None
    format: str | None
    sha256: str | None
    fallback: str | None
    cache_hit: bool
    elapsed: str
    attempts: int
    error: str | None
    error_type: str | None
    edit_target: str | None
    params: tuple[Param, ...]
    credit: CreditView | None
    info: tuple[tuple[str, Any], ...]
    counted: bool
    raw: str
    prefix: str = ""  # makes addresses unique when a page shows several documents

    @property
    def anchor(self) -> str:
        """The address of its side panel."""
        return f"{self.prefix}image-{self.position + 1}"

    @property
    def figure_id(self) -> str:
        """The address of the figure in the prose."""
        return f"{self.prefix}fig-{self.position + 1}"


@dataclass(frozen=True)
class DocumentPage:
    rel: str
    title: str
    prompt: str | None
    body: Any  # safe HTML
    figures: tuple[Figure, ...]
    inputs: tuple[tuple[str, str], ...]  # (label, url)
    counts: tuple[int, int, int]  # images, made, failed
    stats: tuple[tuple[str, int, int, str], ...]  # tool, total, success, rate
    profile: str
    meta: tuple[tuple[str, str], ...]
    judge_view: str
    answer: str
    scores: tuple[Score, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # meta values that are not plain text
    prefix: str = ""

    @property
    def overview_id(self) -> str:
        return f"{self.prefix}overview"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _credit(seg: ImageSegment) -> CreditView | None:
    cr = seg.credit
    if cr is None:
        return None
    return CreditView(str(cr.title or "Source"), c.safe_url(cr.page_url) or c.safe_url(cr.image_url),
                      _text(cr.author), _text(cr.licence), c.safe_url(cr.licence_url), str(cr.source or ""))


def _params(seg: ImageSegment) -> tuple[Param, ...]:
    if seg.request is None or not isinstance(seg.request.params, Mapping):
        return ()
    out = []
    for name, value in seg.request.params.items():
        text = value if isinstance(value, str) else repr(value)
        out.append(Param(str(name), text, pages.highlight(text) if name == "code" else None))
    return tuple(out)


def _figure(loaded: Loaded, position: int, seg: ImageSegment, entry: Mapping[str, Any], prefix: str) -> Figure:
    src = urls.image(loaded.rel, tag=position) if seg.ok and entry.get("path") else None
    info = seg.info if isinstance(seg.info, Mapping) else {}
    return Figure(
        position=position, label=c.figure_label(seg), ok=seg.ok, tool=seg.tool, tool_label=c.tool_label(seg),
        backend=seg.backend, description=seg.description, src=src, width=_int(entry.get("width")),
        height=_int(entry.get("height")), format=_text(entry.get("format")), sha256=_text(entry.get("sha256")),
        fallback=c.fallback_text(seg), cache_hit=seg.cache_hit, elapsed=c.format_seconds(seg.elapsed),
        attempts=seg.attempts, error=seg.error, error_type=seg.error_type, edit_target=c.edit_target(loaded.doc, seg),
        params=_params(seg), credit=_credit(seg), info=tuple((str(k), v) for k, v in info.items()),
        counted=seg.counted, raw=seg.raw, prefix=prefix,
    )


def _meta_rows(meta: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], dict[str, Any]]:
    rows, extra = [], {}
    for key, value in meta.items():
        if key in ("title", "prompt", "scaling"):  # shown as the page's title, prompt, scaling section
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append((str(key), c.one_line(str(value), 300)))
        else:
            extra[str(key)] = value
    return tuple(rows), extra


def document_page(loaded: Loaded, scores: Sequence[Score] = (), prefix: str = "") -> DocumentPage:
    """Everything the document template shows, with the prose rendered and sanitised;
    ``prefix`` starts every address in it (for pages that show several documents).

    ``Unreadable`` when a field holds a value of a type the format does not allow (the file
    was written by something else than llmi, or changed by hand).
    """
    try:
        return _page(loaded, scores, prefix)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise Unreadable(f"{DOCUMENT_FILE} holds a value of the wrong type ({type(exc).__name__}: {exc})") from None


def _page(loaded: Loaded, scores: Sequence[Score], prefix: str) -> DocumentPage:
    doc = loaded.doc
    entries = loaded.image_entries
    segments = doc.image_segments
    figures = tuple(_figure(loaded, i, seg, entries[i] if i < len(entries) else {}, prefix)
                    for i, seg in enumerate(segments))
    by_segment = {id(seg): fig for seg, fig in zip(segments, figures)}

    def figure_html(_doc: Document, seg: ImageSegment) -> str:
        return pages.render("figure.html", f=by_segment[id(seg)])

    from ..renderers.html import render_body

    body = pages.markup(render_body(doc, figure_html))
    inputs = tuple((f"input image {i}", urls.image(loaded.rel, input=i))
                   for i, item in enumerate(loaded.data.get("inputs") or ())
                   if isinstance(item, Mapping) and item.get("path"))
    stats = tuple((tool, int(r["total"]), int(r["success"]), c.percent(r["success_rate"]))
                  for tool, r in c.used_stats(doc).items())
    meta, extra = _meta_rows(doc.meta)
    answer = "".join(s.text if isinstance(s, TextSegment) else s.raw for s in doc.segments)
    return DocumentPage(loaded.rel, c.title_of(doc), c.prompt_of(doc), body, figures, inputs, c.summary_counts(doc),
                        stats, doc.profile.name, meta, doc.judge_view(), answer, tuple(scores), extra, prefix)
