"""The image generation/editing server, its multi-GPU launcher and its client.

- :mod:`llmi.serve.app` — the FastAPI server around one diffusers pipeline
  (``QwenImagePipeline``, ``QwenImageEditPipeline`` or any pipeline folder);
- :mod:`llmi.serve.launcher` — one server per GPU, supervised;
- :mod:`llmi.serve.client` — an async client load-balancing over several servers;
- :mod:`llmi.serve.testing` — tiny random-weight Qwen-Image pipelines built offline.

Nothing heavy is imported here; fastapi, torch and diffusers load when a server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ImageServerClient", "ServerConfig", "create_app"]

_LAZY = {
    "ImageServerClient": "llmi.serve.client:ImageServerClient",
    "ServerConfig": "llmi.serve.app:ServerConfig",
    "create_app": "llmi.serve.app:create_app",
}

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServerConfig, create_app
    from .client import ImageServerClient


def __getattr__(name: str) -> Any:
    import importlib

    try:
        target = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmi.serve' has no attribute {name!r}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
