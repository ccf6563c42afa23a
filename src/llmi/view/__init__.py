"""``llmi view``: a local web app to look at what llmi made in a folder.

The pipeline of one page::

    folder ─► index (what is there: documents, evaluation runs, training runs; cached by mtime)
           ─► documents / evals / training (each read once per version of its files)
           ─► pages (Jinja templates, escaping everything; model prose through llmi's sanitiser)
           ─► app (FastAPI routes, a strict Content-Security-Policy, no script) ─► server (uvicorn)

Modules, in that order: ``index``, ``documents``, ``evals``, ``training``, ``urls``, ``pages``,
``app``, ``server``. ``create_app(root)`` is the ASGI application; ``ViewServer(root)`` serves
it (``with ViewServer(root, port=0) as s: s.url``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ViewServer", "create_app"]

_LAZY = {"create_app": "llmi.view.app", "ViewServer": "llmi.view.server"}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmi.view' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)
