"""Tool backends, one module each, and the explicit registry naming them.

The registry maps ``(source, backend name)`` to ``"module:Class"`` so that nothing heavy is
imported until a backend is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from ..errors import ConfigError
from .base import Backend, Credit, Tool, ToolCall, ToolOutput

__all__ = ["BACKENDS", "Backend", "Credit", "Tool", "ToolCall", "ToolOutput", "default_tools", "load_backend"]

BACKENDS: dict[str, dict[str, str]] = {
    "code": {
        "sandbox": "llmi.tools.sandbox.tool:CodeSandboxTool",
    },
    "search": {
        "serpapi": "llmi.tools.search.serpapi:SerpApiSearch",
        "wikimedia": "llmi.tools.search.wikimedia:WikimediaSearch",
        "library": "llmi.tools.search.library:LibrarySearch",
    },
    "diffusion": {
        "qwen": "llmi.tools.images.qwen:QwenImageDiffusion",
        "seedream": "llmi.tools.images.ark:SeedreamDiffusion",
        "openai": "llmi.tools.images.openai:OpenAIDiffusion",
    },
    "edit": {
        "qwen": "llmi.tools.images.qwen:QwenImageEdit",
        "seededit": "llmi.tools.images.ark:SeedEdit",
        "openai": "llmi.tools.images.openai:OpenAIEdit",
        "classical": "llmi.tools.classical.editor:ClassicalEdit",
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


def default_tools(env: Mapping[str, str]) -> dict[str, Tool]:
    """Every backend the environment configures, plus the sandboxed code tool.

    ``llmi.tools.routing`` chooses each family's backend (see ``docs/search.md`` and
    ``docs/image-backends.md``); a family with nothing configured is simply absent, and the
    engine reports how to configure it on the images that needed it.
    """
    from .routing import FAMILIES, from_env
    from .sandbox.tool import CodeSandboxTool

    tools: dict[str, Tool] = {"code": CodeSandboxTool()}
    for source in FAMILIES:
        tool = from_env(source, env)
        if tool is not None:
            tools[source] = tool
    return tools
