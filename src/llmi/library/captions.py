"""What an image file says about itself: a caption, and its author and licence where known.

Sources, best first (the first that yields text gives the caption's head; keywords and names
are added after it):

1. a sidecar text file: ``name.txt`` or ``name.png.txt`` (Tux Paint stamps: the first line is
   English, ``xx.utf8=...`` lines are translations and are skipped);
2. SVG metadata: ``dc:title``, ``dc:description``, ``dc:subject`` keywords, ``dc:creator`` and
   the ``cc:license`` resource (Open Clip Art);
3. raster metadata: PNG text chunks (``Title``, ``Description``, ``Comment``...), EXIF
   ``ImageDescription``/``XPTitle``/``XPComment``/``XPKeywords``, XMP ``dc:title``/``dc:description``;
4. the file and folder names (``animals/mammals/red_kangaroo.png`` -> "red kangaroo, mammals").

>>> humanise("red_kangaroo-01.png")
'red kangaroo'
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "Caption", "humanise", "read_caption"]

IMAGE_SUFFIXES = frozenset({".svg", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

_NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "cc": "http://creativecommons.org/ns#",
    "cc_old": "http://web.resource.org/cc/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}
#: keywords that say nothing about the picture
_NOISE = frozenset(
    {"unsorted", "clip art", "clipart", "clip-art", "image", "media", "png", "svg", "public domain",
     "publicdomain", "openclipart", "externalsource", "remix", "how i did it", "icon", "color", "colour",
     "drawing", "illustration", "cartoon", "picture", "symbol", "line art", "black and white", "pd",
     "hash", "action", "actions", "theme", "icons", ""}
)
_CC = re.compile(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", re.IGNORECASE)
_TRANSLATION = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?(@\w+)?\.utf8=")
_DIGITS = re.compile(r"(?<![a-z])\d+(?![a-z])")
_SEP = re.compile(r"[_\-.+]+")
_SPACE = re.compile(r"\s+")
_XMP_FIELD = re.compile(rb"<dc:(title|description)>(.*?)</dc:\1>", re.DOTALL)
_XMP_TEXT = re.compile(rb"<rdf:li[^>]*>(.*?)</rdf:li>", re.DOTALL)
_CAPTION_CHARS = 400
_JUNK = re.compile(r"HASH\(0x[0-9a-f]+\)|\(?\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} \d+ [\d:]+ \d{4}\)?")


@dataclass(frozen=True)
class Caption:
    """Text to embed for one image, and what to credit."""

    text: str
    title: str
    author: str | None = None
    licence: str | None = None
    licence_url: str | None = None
    origin: str = "filename"  # sidecar | svg | metadata | filename


def humanise(name: str) -> str:
    """A file or folder name as words."""
    stem = Path(name).stem if "." in name else name
    words = _SPACE.sub(" ", _DIGITS.sub(" ", _SEP.sub(" ", stem))).strip()
    return words.lower()


def read_caption(path: Path, root: Path | None = None) -> Caption:
    """The caption for ``path``; ``root`` bounds the folder names used (its own name included)."""
    names = _name_words(path, root)
    title, description, keywords = "", "", []
    author = licence = licence_url = None
    origin = "filename"

    sidecar = _sidecar(path)
    if sidecar:
        title, origin = sidecar, "sidecar"
    if path.suffix.lower() == ".svg":
        svg = _svg_metadata(path)
        if svg is not None:
            s_title, s_desc, s_keys, author, licence, licence_url = svg
            if not title and (s_title or s_desc):
                # no title: the file name heads the caption, the (often boilerplate) description follows
                title, description, origin = s_title or (names[0] if names else path.stem), s_desc, "svg"
            keywords = s_keys
    elif not title:
        meta = _raster_metadata(path)
        if meta:
            title, description, origin = meta[0], meta[1] if len(meta) > 1 else "", "metadata"
    if not title:
        title = names[0] if names else path.stem

    parts = [title]
    if description and description.lower() not in title.lower():
        parts.append(description)
    extra = [k for k in dict.fromkeys(keywords + names) if k.lower() not in title.lower()]
    if extra:
        parts.append(", ".join(extra[:8]))
    text = ". ".join(p.strip().rstrip(".") for p in (_JUNK.sub("", p) for p in parts) if p.strip())
    return Caption(
        text=text[:_CAPTION_CHARS],
        title=title[:200],
        author=author,
        licence=licence,
        licence_url=licence_url,
        origin=origin,
    )


def licence_name(url: str) -> tuple[str, str]:
    """A short licence name for a licence URL (as SVG metadata states it), and the URL.

    >>> licence_name("http://creativecommons.org/licenses/by-sa/3.0/")
    ('CC BY-SA 3.0', 'http://creativecommons.org/licenses/by-sa/3.0/')
    >>> licence_name("http://web.resource.org/cc/PublicDomain")[0]
    'Public domain'
    """
    low = url.lower()
    if "publicdomain/zero" in low:
        return "CC0 1.0", url
    if "publicdomain" in low:
        return "Public domain", url
    cc = _CC.search(url)
    if cc:
        return f"CC {cc.group(1).upper()} {cc.group(2)}", url
    if "gpl" in low:
        return ("LGPL" if "lgpl" in low else "GPL") + (" 2.0" if "2.0" in low else ""), url
    return url, url


# -- sources -------------------------------------------------------------------------------------


def _name_words(path: Path, root: Path | None) -> list[str]:
    words = [humanise(path.name)]
    parent = path.parent
    stop = root.parent if root is not None else None
    for _ in range(3):
        if parent == stop or parent == parent.parent:
            break
        if parent.name in ("svg", "stamps", "images", "pictures"):
            break
        words.append(humanise(parent.name))
        parent = parent.parent
    return [w for w in words if w]


def _sidecar(path: Path) -> str:
    for candidate in (path.with_suffix(".txt"), path.with_name(path.name + ".txt")):
        try:
            raw = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        lines = [ln.strip() for ln in raw.splitlines() if ln.strip() and not _TRANSLATION.match(ln.strip())]
        if lines:
            return _SPACE.sub(" ", " ".join(lines[:3]))[:_CAPTION_CHARS]
    return ""


def _svg_metadata(path: Path) -> tuple[str, str, list[str], str | None, str | None, str | None] | None:
    """Read the ``<metadata>`` block only (it sits near the top; the drawing can be megabytes)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(200_000)
    except OSError:
        return None
    start, end = head.find(b"<metadata"), head.find(b"</metadata>")
    if start < 0 or end < 0:
        return None
    block = head[start : end + len(b"</metadata>")]
    # the namespaces are declared on <svg>; declare them again so the fragment parses alone
    decl = b" ".join(b'xmlns:%s="%s"' % (k.encode(), v.encode()) for k, v in
                     (("dc", _NS["dc"]), ("cc", _NS["cc_old"]), ("rdf", _NS["rdf"]),
                      ("inkscape", "http://www.inkscape.org/namespaces/inkscape"),
                      ("sodipodi", "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd")))
    body = re.sub(rb"\sxmlns(:[\w.-]+)?=\"[^\"]*\"", b"", block)
    known = {b"dc", b"cc", b"rdf", b"inkscape", b"sodipodi", b"xml"}
    for prefix in set(re.findall(rb"[<\s/]([A-Za-z_][\w.-]*):[A-Za-z_]", body)) - known:
        decl += b' xmlns:%s="urn:x-llmi:%s"' % (prefix, prefix)
        known.add(prefix)
    body = re.sub(rb"^<metadata", b"<metadata " + decl, body, count=1)
    try:
        node = ET.fromstring(body)
    except ET.ParseError:
        return None
    dc = "{" + _NS["dc"] + "}"
    rdf_li = "{" + _NS["rdf"] + "}li"
    work = None
    for el in node.iter():
        if el.tag.endswith("}Work"):
            work = el
            break
    if work is None:
        work = node

    def text(tag: str) -> str:
        el = work.find(dc + tag)
        if el is None:
            return ""
        found = "".join(el.itertext()) if el.find(".//" + rdf_li) is None else ""
        return _SPACE.sub(" ", found or "").strip()

    title, description = text("title"), text("description")
    keywords = []
    subject = work.find(dc + "subject")
    if subject is not None:
        for li in subject.iter(rdf_li):
            word = _SPACE.sub(" ", (li.text or "")).strip()
            if word.lower() not in _NOISE:
                keywords.append(word)
    author = None
    creator = work.find(dc + "creator")
    if creator is not None:
        author = _SPACE.sub(" ", " ".join(creator.itertext())).strip() or None
    licence = licence_url = None
    for el in node.iter():
        if el.tag.endswith("}license"):
            resource = el.get("{" + _NS["rdf"] + "}resource") or ""
            if resource:
                licence, licence_url = licence_name(resource)
            break
    return title, description, keywords, author, licence, licence_url


def _raster_metadata(path: Path) -> list[str]:
    """[title, description] from PNG text, EXIF or XMP, whichever speaks first."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return []
    try:
        with Image.open(path) as im:
            info = dict(im.info)
            exif = im.getexif()
    except Exception:  # noqa: BLE001 - unreadable files are skipped by the indexer
        return []
    found: list[str] = []
    for key in ("Title", "title", "Description", "description", "Subject", "Comment", "comment", "parameters"):
        value = info.get(key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip() and value.strip() not in found:
            found.append(_SPACE.sub(" ", value).strip())
    if exif:
        description = exif.get(270)
        if isinstance(description, str) and description.strip():
            found.append(description.strip())
        for tag in (0x9C9B, 0x9C9C, 0x9C9E):  # XPTitle, XPComment, XPKeywords (UTF-16LE)
            raw = exif.get(tag)
            if isinstance(raw, (bytes, tuple)):
                try:
                    found.append(bytes(raw).decode("utf-16-le").rstrip("\x00").strip())
                except (UnicodeDecodeError, ValueError):
                    pass
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    if isinstance(xmp, bytes):
        for _field, inner in _XMP_FIELD.findall(xmp):
            for li in _XMP_TEXT.findall(inner) or [inner]:
                text = re.sub(rb"<[^>]+>", b"", li).decode("utf-8", "replace").strip()
                if text:
                    found.append(text)
    return [f for f in dict.fromkeys(found) if f][:2]
