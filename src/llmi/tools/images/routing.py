"""Which diffusion and edit backends the environment asks for.

Explicit choice first, then LLM-I's switches, then whatever is configured:

1. ``LLMI_DIFFUSION_BACKEND`` / ``LLMI_EDIT_BACKEND``: ``auto`` (default), ``qwen``,
   ``seedream`` / ``seededit`` (``seed`` means either), ``openai``, ``classical`` (edit only), or
   ``none`` to switch the tool off. A named backend that is not configured is a ``ConfigError``
   — asking for SeedEdit without ``ARK_API_KEY`` should not quietly give you something else.
2. LLM-I's ``DIFFUSION_BACKBONE`` / ``EDIT_BACKBONE`` = ``seed`` | ``qwen``, when 1 is unset or
   ``auto``.
3. ``auto``: the Qwen-Image server(s) if ``QWEN_IMAGE_SERVER_URL`` / ``QWEN_EDIT_SERVER_URL`` is
   set; else Seedream / SeedEdit if ``ARK_API_KEY`` is set; else an OpenAI-compatible images API
   if one is configured (``LLMI_IMAGES_BASE_URL`` or ``LLMI_IMAGES_API_KEY``, or
   ``OPENAI_API_KEY`` without an ``OPENAI_BASE_URL`` pointing elsewhere — that variable often
   names the writer model's server, which has no images API); else, for edits, the offline
   classical editor, and for diffusion nothing (the engine's fallback policy then acts).

>>> diffusion_choice({"ARK_API_KEY": "k"})
Choice(backend='seedream', reason='ARK_API_KEY is set')
>>> edit_choice({})
Choice(backend='classical', reason='no generative editor is configured; the offline classical editor')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ...errors import ConfigError
from .. import load_backend
from ..base import Tool

__all__ = ["Choice", "diffusion_choice", "edit_choice", "diffusion_from_env", "edit_from_env"]

_OPENAI_DEFAULT = "https://api.openai.com/v1"
_ALIASES = {
    "diffusion": {"qwen": "qwen", "seed": "seedream", "seedream": "seedream", "openai": "openai"},
    "edit": {"qwen": "qwen", "seed": "seededit", "seededit": "seededit", "seedream": "seededit",
             "openai": "openai", "classical": "classical", "offline": "classical"},
}
_OFF = ("none", "off", "disabled")


@dataclass(frozen=True)
class Choice:
    """The backend picked for a tool (``None``: no backend) and why, for logs and diagnostics."""

    backend: str | None
    reason: str


def diffusion_choice(env: Mapping[str, str]) -> Choice:
    """Which diffusion backend ``env`` selects (no backend is constructed)."""
    return _choose("diffusion", env, "LLMI_DIFFUSION_BACKEND", "DIFFUSION_BACKBONE", "QWEN_IMAGE_SERVER_URL")


def edit_choice(env: Mapping[str, str]) -> Choice:
    """Which edit backend ``env`` selects (no backend is constructed)."""
    return _choose("edit", env, "LLMI_EDIT_BACKEND", "EDIT_BACKBONE", "QWEN_EDIT_SERVER_URL")


def diffusion_from_env(env: Mapping[str, str]) -> Tool | None:
    """The diffusion tool ``env`` configures, or ``None`` when there is none."""
    return _build("diffusion", diffusion_choice(env), env)


def edit_from_env(env: Mapping[str, str]) -> Tool | None:
    """The edit tool ``env`` configures; the offline classical editor when nothing else is."""
    return _build("edit", edit_choice(env), env)


def _choose(source: str, env: Mapping[str, str], var: str, backbone_var: str, qwen_var: str) -> Choice:
    aliases = _ALIASES[source]
    # 1. an explicit llmi choice
    wanted = (env.get(var) or "auto").strip().lower()
    if wanted in _OFF:
        return Choice(None, f"{var}={wanted}")
    if wanted != "auto":
        if wanted not in aliases:
            known = ", ".join(sorted({"auto", "none", *aliases}))
            raise ConfigError(f"{var}={wanted!r} is not a {source} backend; use one of: {known}")
        return Choice(aliases[wanted], f"{var}={wanted}")
    # 2. LLM-I's backbone switch
    backbone = (env.get(backbone_var) or "").strip().lower()
    if backbone:
        if backbone not in ("seed", "qwen"):
            raise ConfigError(f"{backbone_var}={backbone!r}: LLM-I's backbones are 'seed' and 'qwen'")
        return Choice(aliases[backbone], f"{backbone_var}={backbone}")
    # 3. whatever is configured, best first
    if (env.get(qwen_var) or "").strip():
        return Choice("qwen", f"{qwen_var} is set")
    if (env.get("ARK_API_KEY") or "").strip():
        return Choice(aliases["seed"], "ARK_API_KEY is set")
    openai = _openai_reason(env)
    if openai:
        return Choice("openai", openai)
    if source == "edit":
        return Choice("classical", "no generative editor is configured; the offline classical editor")
    return Choice(None, f"no image generator is configured (set {qwen_var}, ARK_API_KEY or LLMI_IMAGES_BASE_URL)")


def _openai_reason(env: Mapping[str, str]) -> str | None:
    for var in ("LLMI_IMAGES_BASE_URL", "LLMI_IMAGES_API_KEY"):
        if (env.get(var) or "").strip():
            return f"{var} is set"
    base = (env.get("OPENAI_BASE_URL") or "").strip().rstrip("/")
    if (env.get("OPENAI_API_KEY") or "").strip() and base in ("", _OPENAI_DEFAULT):
        return "OPENAI_API_KEY is set (OpenAI's images API)"
    return None


def _build(source: str, choice: Choice, env: Mapping[str, str]) -> Tool | None:
    if choice.backend is None:
        return None
    cls = load_backend(source, choice.backend)
    return cls.from_env(env)
