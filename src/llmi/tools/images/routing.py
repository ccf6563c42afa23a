"""Which diffusion and edit backends the environment asks for (see :mod:`llmi.tools.routing`,
which chooses every family the same way, and ``docs/image-backends.md``).

``auto`` tries, per tool: the Qwen-Image server(s) (``QWEN_IMAGE_SERVER_URL`` /
``QWEN_EDIT_SERVER_URL``), Seedream / SeedEdit (``ARK_API_KEY``), an OpenAI-compatible images
API (``LLMI_IMAGES_BASE_URL`` or ``LLMI_IMAGES_API_KEY``, or ``OPENAI_API_KEY`` without an
``OPENAI_BASE_URL`` pointing elsewhere), and for edits the offline classical editor; diffusion
with nothing configured has no backend (the engine's fallback policy then acts).
``LLMI_DIFFUSION_BACKEND`` / ``LLMI_EDIT_BACKEND`` choose explicitly, LLM-I's
``DIFFUSION_BACKBONE`` / ``EDIT_BACKBONE`` (``seed`` | ``qwen``) are honoured when those are unset.

>>> diffusion_choice({"ARK_API_KEY": "k"})
Choice(backend='seedream', reason='ARK_API_KEY is set')
>>> edit_choice({})
Choice(backend='classical', reason='no generative editor is configured; the offline classical editor')
"""

from __future__ import annotations

from collections.abc import Mapping

from ..base import Tool
from ..routing import Choice, choose, from_env

__all__ = ["Choice", "diffusion_choice", "edit_choice", "diffusion_from_env", "edit_from_env"]


def diffusion_choice(env: Mapping[str, str]) -> Choice:
    """Which diffusion backend ``env`` selects (no backend is constructed)."""
    return choose("diffusion", env)


def edit_choice(env: Mapping[str, str]) -> Choice:
    """Which edit backend ``env`` selects (no backend is constructed)."""
    return choose("edit", env)


def diffusion_from_env(env: Mapping[str, str]) -> Tool | None:
    """The diffusion tool ``env`` configures, or ``None`` when there is none."""
    return from_env("diffusion", env)


def edit_from_env(env: Mapping[str, str]) -> Tool | None:
    """The edit tool ``env`` configures; the offline classical editor when nothing else is."""
    return from_env("edit", env)
