"""The document model: what the engine makes of one answer, and its ``document.json`` form.

- ``model``: ``Document`` (ordered ``TextSegment`` and ``ImageSegment`` values with provenance,
  the input images, run metadata and the reading profile), ``Credit``, ``Fallback``;
- ``schema``: ``document.json`` (``document_to_dict``, ``document_from_dict``, ``load``).

Renderers (``llmi.renderers``) depend on this package, never the other way round
(``Document.save`` is a convenience that hands over to them).
"""

from __future__ import annotations

from . import model, schema
from .model import *  # noqa: F403 - the package is its two modules' names
from .schema import *  # noqa: F403

__all__ = [*model.__all__, *schema.__all__]
