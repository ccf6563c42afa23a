"""``document.json``: written by ``llmi.renderers.save``; its schema lives with the document
model in ``llmi.document.schema`` (these names are kept here for existing callers)."""

from __future__ import annotations

from ..document.schema import SCHEMA_VERSION, document_from_dict, document_to_dict, dumps, jsonable, load

__all__ = ["SCHEMA_VERSION", "document_from_dict", "document_to_dict", "dumps", "jsonable", "load"]
