"""llmi: language models as authors of illustrated documents.

Light to import: heavy libraries load only when the feature that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Document", "Engine", "ImageData", "ImageRequest", "LlmiError", "generate", "parse", "render"]

_LAZY = {
    "Document": "llmi.document:Document",
    "Engine": "llmi.engine:Engine",
    "ImageData": "llmi.image:ImageData",
    "ImageRequest": "llmi.tags:ImageRequest",
    "LlmiError": "llmi.errors:LlmiError",
    "parse": "llmi.tags:parse",
    "render": "llmi.api:render",
    "generate": "llmi.api:generate",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import generate, render
    from .document import Document
    from .engine import Engine
    from .errors import LlmiError
    from .image import ImageData
    from .tags import ImageRequest, parse


def __getattr__(name: str) -> Any:
    import importlib

    try:
        target = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmi' has no attribute {name!r}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
