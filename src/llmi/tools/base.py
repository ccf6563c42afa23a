"""The tool protocol every backend implements, and the values it exchanges with the engine.

A backend is a small class with a ``source`` (which tag source it serves: ``search``,
``diffusion``, ``code`` or ``edit``), a ``backend`` name (recorded on every image it makes), and
one async ``run``. A backend in the registry is also a :class:`Backend`: ``configured(env)``
says why an environment asks for it (``None``: it does not), ``from_env(env)`` builds it from
that environment (a ``ConfigError`` says what is missing); ``llmi.tools.routing`` chooses
between them. Heavy set-up (weights, worker pools, HTTP clients) happens lazily on the first
``run``, never in ``__init__``, and must not bind to one event loop for good: the engine may call
a tool from different loops over its life (the sync wrapper uses its own). ``aclose`` releases
what ``run`` acquired.

Backends raise only ``llmi.errors.ToolError`` subclasses; anything else is a bug, which the
engine still records as a failed image rather than crashing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol, runtime_checkable

from ..document.model import Credit  # re-exported: backends credit their images with it
from ..image import ImageData
from ..tags import ImageRequest

__all__ = ["Backend", "Credit", "ToolCall", "ToolOutput", "Tool", "prompt_seed"]


@dataclass(frozen=True)
class ToolCall:
    """What the engine hands a tool for one attempt."""

    request: ImageRequest
    #: for ``edit``: the image to edit (an input image or an earlier tag's output)
    input_image: ImageData | None = None
    #: seconds this attempt may take; a tool should give up (and clean up) by then
    timeout: float = 60.0
    #: sha256 digests of images the document already shows: a backend that offers alternatives
    #: (``offers_alternatives = True``) returns its best match that is none of these
    avoid: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ToolOutput:
    """A produced image and what is worth recording about it."""

    image: ImageData
    credit: Credit | None = None
    #: backend-specific facts worth keeping in document.json (query used, seed, model ...)
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Tool(Protocol):
    source: ClassVar[str]
    backend: str

    async def run(self, call: ToolCall) -> ToolOutput: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Backend(Tool, Protocol):
    """A registered backend: a ``Tool`` whose class can be chosen and built from the environment."""

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        """Why ``env`` asks for this backend ("ARK_API_KEY is set"), or ``None``. Builds nothing."""
        ...

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tool:
        """The backend configured by ``env``; a ``ConfigError`` says what to set."""
        ...


def prompt_seed(text: str) -> int:
    """The seed a generator uses when none is configured: derived from ``text`` (0 ≤ seed < 2³¹),
    so the same document renders the same pictures twice without every image sharing one seed.

    >>> prompt_seed("a cat") == prompt_seed("a cat") != prompt_seed("a dog")
    True
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") & 0x7FFFFFFF
