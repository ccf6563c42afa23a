"""Renderers for a ``Document``: a self-contained HTML page, Markdown, and ``document.json``.

``save`` writes the chosen formats into one folder; Markdown and JSON share the pictures it
writes once under ``images/``::

    out/
      index.html        (images embedded; opens offline, runs no script)
      document.md       (links images/...)
      document.json     (llmi.document/1, see docs/document-json.md)
      images/image-0.png, images/input-0.jpg, ...

>>> import tempfile, pathlib
>>> from llmi.document import Document, TextSegment
>>> out = save(Document((TextSegment("Hello"),)), pathlib.Path(tempfile.mkdtemp()), ("md", "json"))
>>> sorted(out), out["md"].name
(['json', 'md'], 'document.md')
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError
from ..image import ImageData

__all__ = ["FILENAMES", "FORMATS", "normalise_formats", "save", "write_images"]

FORMATS = ("html", "md", "json")
FILENAMES = {"html": "index.html", "md": "document.md", "json": "document.json"}
_ALIASES = {"markdown": "md", "htm": "html"}
_EXT = re.compile(r"[a-z0-9]{1,8}")
IMAGES_DIR = "images"


def normalise_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """Known format names, deduplicated in order; ``ConfigError`` names an unknown one.

    >>> normalise_formats(["HTML", "markdown", "json", "md"])
    ('html', 'md', 'json')
    """
    if isinstance(formats, str):
        formats = formats.split(",")
    out: list[str] = []
    for name in formats:
        key = str(name).strip().lower()
        key = _ALIASES.get(key, key)
        if key not in FORMATS:
            raise ConfigError(f"unknown output format {name!r}; choose from {', '.join(FORMATS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ConfigError(f"no output format given; choose from {', '.join(FORMATS)}")
    return tuple(out)


def _write(path: Path, data: bytes) -> None:
    """Write atomically; an existing symlink at ``path`` is replaced, never followed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".llmi-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_dir(parent: Path, name: str) -> Path:
    """``parent/name`` as a real directory inside ``parent`` (not a symlink leading elsewhere)."""
    path = parent / name
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; llmi writes only inside {parent}")
    path.mkdir(exist_ok=True)
    return path


def _filename(stem: str, image: ImageData) -> str:
    ext = image.extension.lower()
    return f"{stem}.{ext if _EXT.fullmatch(ext) else 'img'}"


def write_images(doc, out_dir: Path) -> tuple[dict[int, str], list[str]]:
    """Write the document's pictures under ``out_dir/images``.

    Returns (segment index -> relative path, [relative path of each input image]); paths use
    ``/`` and are relative to ``out_dir``. File names come from numbers only.
    """
    image_paths: dict[int, str] = {}
    input_paths: list[str] = []
    todo: list[tuple[str, ImageData]] = []
    for i, img in enumerate(doc.inputs):
        todo.append((_filename(f"input-{i}", img), img))
        input_paths.append(f"{IMAGES_DIR}/{todo[-1][0]}")
    for seg in doc.image_segments:
        if seg.ok and seg.image is not None and int(seg.index) not in image_paths:
            todo.append((_filename(f"image-{int(seg.index)}", seg.image), seg.image))
            image_paths[int(seg.index)] = f"{IMAGES_DIR}/{todo[-1][0]}"
    if todo:
        folder = _safe_dir(out_dir, IMAGES_DIR)
        for name, img in todo:
            _write(folder / name, img.data)
    return image_paths, input_paths


def save(doc, out_dir: Path, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Write ``doc`` into ``out_dir`` in each of ``formats``; returns format -> file path."""
    from ..document.schema import document_to_dict, dumps
    from .html import render_html
    from .markdown import render_markdown

    chosen = normalise_formats(formats)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ConfigError(f"cannot write the document into {out_dir}: it is not a folder") from exc
    image_paths: dict[int, str] = {}
    input_paths: list[str] = []
    if "md" in chosen or "json" in chosen:
        image_paths, input_paths = write_images(doc, out_dir)

    written: dict[str, Path] = {}
    for fmt in chosen:
        if fmt == "html":
            text = render_html(doc)
        elif fmt == "md":
            text = render_markdown(doc, image_paths, input_paths)
        else:
            text = dumps(document_to_dict(doc, image_paths, input_paths=input_paths))
        path = out_dir / FILENAMES[fmt]
        _write(path, text.encode("utf-8"))
        written[fmt] = path
    return written
