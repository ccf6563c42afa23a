"""The document model: what the engine makes of one answer, and its ``document.json`` form.

- ``model``: ``Document`` (ordered ``TextSegment`` and ``ImageSegment`` values with provenance,
  the input images, run metadata and the reading profile), ``Credit``, ``Fallback``;
- ``schema``: ``document.json`` (``document_to_dict``, ``document_from_dict``, ``load``).

Renderers (``llmi.renderers``) depend on this package, never the other way round
(``Document.save`` is a convenience that hands over to them).
"""

from __future__ import annotations

from .model import (
    FAIL_TOKEN,
    IMAGE_TOKEN,
    INVALID,
    Credit,
    Document,
    Fallback,
    ImageSegment,
    Segment,
    TextSegment,
    merge_text,
)
from .schema import SCHEMA_VERSION, document_from_dict, document_to_dict, dumps, jsonable, load

__all__ = [
    "FAIL_TOKEN",
    "IMAGE_TOKEN",
    "INVALID",
    "SCHEMA_VERSION",
    "Credit",
    "Document",
    "Fallback",
    "ImageSegment",
    "Segment",
    "TextSegment",
    "document_from_dict",
    "document_to_dict",
    "dumps",
    "jsonable",
    "load",
    "merge_text",
]
