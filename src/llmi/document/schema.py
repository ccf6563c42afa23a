"""``document.json``: the documented, versioned form of a ``Document`` (``docs/document-json.md``).

The format is plain JSON (no NaN, no binary): images are referenced by a path relative to the
folder holding ``document.json``; ``llmi.renderers.save`` writes them under ``images/``.

>>> d = document_to_dict(Document((TextSegment("Hi "), ImageSegment(0, "<imgen>?</imgen>", None, "failed",
...     error="not a dict literal"))))
>>> d["version"], d["segments"][1]["status"], d["judge_view"], d["profile"]["name"]
('llmi.document/1', 'failed', 'Hi <fail_to_generate_image>', 'llmi')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..image import ImageData
from ..profiles import LLMI, Profile
from ..tags import ImageRequest
from .model import Credit, Document, Fallback, ImageSegment, TextSegment

__all__ = ["SCHEMA_VERSION", "document_from_dict", "document_to_dict", "dumps", "jsonable", "load"]

#: bumped in its number when a field changes meaning or disappears; new fields do not bump it
SCHEMA_VERSION = "llmi.document/1"

_MAX_DEPTH = 32


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` made JSON-safe: mappings with string keys, lists, finite numbers, strings.

    Anything else (paths, enums, objects) becomes its ``str``; bytes are summarised, never
    dumped; non-finite floats become ``None`` so the file stays strict JSON.

    >>> jsonable({"a": (1, float("nan")), 2: b"xyz"})
    {'a': [1, None], '2': '<3 bytes>'}
    """
    if _depth > _MAX_DEPTH:
        return "<too deep>"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v, _depth + 1) for v in items]
    if callable(getattr(value, "to_dict", None)):  # llmi's own values (Credit, Fallback, ...)
        return jsonable(value.to_dict(), _depth + 1)
    return str(value)


def _image_facts(image: ImageData | None) -> dict[str, Any]:
    if image is None:
        return {"width": None, "height": None, "format": None, "sha256": None}
    return {
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "sha256": image.sha256,
    }


def _segment_to_dict(seg: TextSegment | ImageSegment, image_paths: Mapping[int, str]) -> dict[str, Any]:
    if isinstance(seg, TextSegment):
        return {"type": "text", "text": seg.text}
    has_image = seg.status == "ok" and seg.image is not None
    return {
        "type": "image",
        "index": seg.index,
        "status": seg.status,
        "tool": seg.tool,
        "backend": seg.backend,
        "description": seg.description,
        "request": seg.request.to_dict() if seg.request is not None else None,
        "raw": seg.raw,
        "error": seg.error,
        "error_type": seg.error_type,
        "path": image_paths.get(seg.index) if has_image else None,
        **_image_facts(seg.image if has_image else None),
        "elapsed": jsonable(float(seg.elapsed)),
        "attempts": seg.attempts,
        "cache_hit": seg.cache_hit,
        "fallback": seg.fallback.to_dict() if seg.fallback is not None else None,
        "credit": seg.credit.to_dict() if seg.credit is not None else None,
        "info": jsonable(seg.info),
        "counted": seg.counted,
    }


def document_to_dict(
    doc: Document,
    image_paths: Mapping[int, str] | None = None,
    *,
    input_paths: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The ``document.json`` dict of ``doc``.

    ``image_paths`` maps an image segment's ``index`` to the path its picture was saved at
    (relative to the JSON file); ``input_paths`` lists the saved input images in order. Without
    them the ``path`` fields are ``null``.
    """
    image_paths = image_paths or {}
    input_paths = list(input_paths or ())
    segments = [_segment_to_dict(seg, image_paths) for seg in doc.segments]
    images = [s for s in segments if s["type"] == "image"]
    ok = sum(1 for s in images if s["status"] == "ok")
    return {
        "version": SCHEMA_VERSION,
        "profile": doc.profile.to_dict(),
        "meta": jsonable(doc.meta),
        "inputs": [
            {
                "index": i,
                "path": input_paths[i] if i < len(input_paths) else None,
                **_image_facts(img),
            }
            for i, img in enumerate(doc.inputs)
        ],
        "segments": segments,
        "summary": {"images": len(images), "ok": ok, "failed": len(images) - ok},
        "stats": jsonable(doc.stats()),
        "judge_view": doc.judge_view(),
    }


def dumps(data: Mapping[str, Any]) -> str:
    """Strict, readable JSON text (UTF-8 characters kept, no NaN)."""
    return json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


# -- reading back ---------------------------------------------------------------------------


def _read_image(path: str | None, base_dir: Path | None) -> ImageData | None:
    """The image at ``path`` under ``base_dir``; ``None`` if absent, unreadable or outside it."""
    if not path or base_dir is None:
        return None
    base = base_dir.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        return None  # a document.json may not make us read files outside its folder
    try:
        return ImageData.from_path(str(target))
    except (OSError, ValueError):
        return None


def _known(cls: type, data: Mapping[str, Any] | None) -> Any:
    if not data:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def document_from_dict(data: Mapping[str, Any], base_dir: str | Path | None = None) -> Document:
    """Rebuild a ``Document`` from its ``document.json`` dict.

    Images are read from each ``path`` relative to ``base_dir`` (the JSON file's folder); paths
    that leave that folder are ignored. A file without a ``profile`` (written before profiles
    existed) was read with the ``llmi`` profile. Raises ``ConfigError`` for another format
    version or an unknown profile option value.
    """

    version = str(data.get("version", ""))
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"unsupported document.json version {version!r}; this llmi reads {SCHEMA_VERSION!r}"
        )
    base = Path(base_dir) if base_dir is not None else None
    segments: list[Any] = []
    for s in data.get("segments", ()):
        if s.get("type") == "text":
            segments.append(TextSegment(str(s.get("text", ""))))
            continue
        req = s.get("request")
        request = (
            ImageRequest(req["source"], req.get("description", ""), req.get("params") or {})
            if req
            else None
        )
        segments.append(
            ImageSegment(
                index=int(s["index"]),
                raw=s.get("raw") or "",
                tool=s.get("tool"),
                status="ok" if s.get("status") == "ok" else "failed",
                request=request,
                image=_read_image(s.get("path"), base),
                backend=s.get("backend"),
                error=s.get("error"),
                error_type=s.get("error_type"),
                elapsed=float(s.get("elapsed") or 0.0),
                attempts=int(s.get("attempts") or 0),
                cache_hit=bool(s.get("cache_hit")),
                fallback=_known(Fallback, s.get("fallback")),
                credit=_known(Credit, s.get("credit")),
                info=s.get("info") or {},
                counted=bool(s.get("counted", True)),
            )
        )
    inputs = tuple(
        img
        for img in (_read_image(i.get("path"), base) for i in data.get("inputs", ()))
        if img is not None
    )
    profile = Profile.from_dict(data["profile"]) if data.get("profile") else LLMI
    return Document(tuple(segments), inputs, dict(data.get("meta") or {}), profile)


def load(path: str | Path) -> Document:
    """Read a saved ``document.json`` (and its images) back into a ``Document``."""
    path = Path(path)
    if path.is_dir():
        path = path / "document.json"
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return document_from_dict(data, path.parent)
