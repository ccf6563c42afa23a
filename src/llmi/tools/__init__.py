"""Tool backends, one module each, and the explicit registry naming them.

The registry maps ``(source, backend name)`` to ``"module:Class"`` so that nothing heavy is
imported until a backend is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Credit, Tool, ToolCall, ToolOutput

__all__ = ["BACKENDS", "Credit", "Tool", "ToolCall", "ToolOutput", "load_backend"]

BACKENDS: dict[str, dict[str, str]] = {
    "code": {
        "sandbox": "llmi.tools.code_sandbox:CodeSandboxTool",
    },
    "search": {
        "serpapi": "llmi.tools.search_serpapi:SerpApiSearch",
        "wikimedia": "llmi.tools.search_wikimedia:WikimediaSearch",
        "library": "llmi.tools.search_library:LibrarySearch",
    },
    "diffusion": {
        "qwen": "llmi.tools.diffusion_qwen:QwenImageDiffusion",
        "seedream": "llmi.tools.diffusion_ark:SeedreamDiffusion",
        "openai": "llmi.tools.diffusion_openai:OpenAIDiffusion",
    },
    "edit": {
        "qwen": "llmi.tools.edit_qwen:QwenImageEdit",
        "seededit": "llmi.tools.edit_ark:SeedEdit",
        "openai": "llmi.tools.edit_openai:OpenAIEdit",
        "classical": "llmi.tools.edit_classical:ClassicalEdit",
    },
}


def load_backend(source: str, name: str) -> type[Any]:
    """The backend class registered as ``name`` for ``source``."""
    try:
        target = BACKENDS[source][name]
    except KeyError:
        known = ", ".join(f"{s}:{n}" for s, names in BACKENDS.items() for n in names)
        raise ConfigError(f"no backend {name!r} for {source!r}; known backends: {known}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
