"""Which backend serves each tool, chosen from the environment over the registry, one way.

Every family (``search``, ``diffusion``, ``edit``) is chosen by the same three steps:

1. llmi's explicit choice, ``LLMI_<FAMILY>_BACKEND``: ``auto`` (default), a backend name (or an
   alias: ``seed`` for Seedream/SeedEdit, ``offline`` for the classical editor), or ``none`` to
   switch the tool off. A named backend that the environment does not configure is a
   ``ConfigError`` when it is built — asking for SeedEdit without ``ARK_API_KEY`` should not
   quietly give you something else.
2. LLM-I's switch, where it has one (``DIFFUSION_BACKBONE`` / ``EDIT_BACKBONE`` = ``seed`` |
   ``qwen``), when 1 is unset or ``auto``.
3. ``auto``: the first backend in the family's priority list whose ``configured(env)`` gives a
   reason. A backend that needs the network but no key (Wikimedia Commons) is only tried when
   the family's opt-in variable is on (``LLMI_ONLINE=1``): llmi never probes the network to decide.

Each backend class says for itself what configures it (``configured``) and how it is built
(``from_env``); this module holds only the order. No backend is built, and nothing is fetched,
to choose.

>>> choose("diffusion", {"ARK_API_KEY": "k"})
Choice(backend='seedream', reason='ARK_API_KEY is set')
>>> choose("search", {"LLMI_ONLINE": "1"})
Choice(backend='wikimedia', reason='LLMI_ONLINE=1: Wikimedia Commons (keyless)')
>>> choose("edit", {"LLMI_EDIT_BACKEND": "seed"}).backend
'seededit'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..env import env_flag
from ..errors import ConfigError
from . import BACKENDS, load_backend
from .base import Tool

__all__ = ["Choice", "Family", "FAMILIES", "choose", "from_env"]

_OFF = ("none", "off", "disabled")


@dataclass(frozen=True)
class Choice:
    """The backend picked for a tool (``None``: no backend) and why, for logs and diagnostics."""

    backend: str | None
    reason: str


@dataclass(frozen=True)
class Family:
    """How one tool's backend is chosen: the variables read and the order ``auto`` tries."""

    source: str
    #: llmi's explicit choice
    var: str
    #: what ``auto`` tries, best first
    priority: tuple[str, ...]
    #: other names accepted for a backend in ``var`` (and LLM-I's switch)
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: LLM-I's switch (values ``seed`` | ``qwen``), if the family has one
    backbone_var: str | None = None
    #: backends ``auto`` tries only when this on/off variable is on
    opt_in: Mapping[str, str] = field(default_factory=dict)
    #: the reason given when nothing is configured
    nothing: str = "nothing is configured"

    def names(self) -> list[str]:
        return sorted({"auto", "none", *BACKENDS[self.source], *self.aliases})

    def resolve(self, var: str, value: str) -> str:
        name = self.aliases.get(value, value)
        if name not in BACKENDS[self.source]:
            raise ConfigError(f"{var}={value!r} is not one of the {self.source} backends: {', '.join(self.names())}")
        return name


FAMILIES: Mapping[str, Family] = {
    "search": Family(
        "search", "LLMI_SEARCH_BACKEND", ("serpapi", "wikimedia", "library"),
        opt_in={"wikimedia": "LLMI_ONLINE"},
        nothing="no SERP_API_KEY, LLMI_ONLINE unset, and no local library indexed",
    ),
    "diffusion": Family(
        "diffusion", "LLMI_DIFFUSION_BACKEND", ("qwen", "seedream", "openai"),
        aliases={"seed": "seedream"}, backbone_var="DIFFUSION_BACKBONE",
        nothing="no image generator is configured (set QWEN_IMAGE_SERVER_URL, ARK_API_KEY or LLMI_IMAGES_BASE_URL)",
    ),
    "edit": Family(
        "edit", "LLMI_EDIT_BACKEND", ("qwen", "seededit", "openai", "classical"),
        aliases={"seed": "seededit", "seedream": "seededit", "offline": "classical"}, backbone_var="EDIT_BACKBONE",
    ),
}


def choose(source: str, env: Mapping[str, str]) -> Choice:
    """Which backend ``env`` selects for ``source`` (nothing is built, nothing is fetched)."""
    family = FAMILIES[source]
    # 1. an explicit llmi choice
    wanted = (env.get(family.var) or "auto").strip().lower()
    if wanted in _OFF:
        return Choice(None, f"{family.var}={wanted}")
    if wanted != "auto":
        return Choice(family.resolve(family.var, wanted), f"{family.var}={wanted}")
    # 2. LLM-I's backbone switch
    if family.backbone_var:
        backbone = (env.get(family.backbone_var) or "").strip().lower()
        if backbone:
            if backbone not in ("seed", "qwen"):
                raise ConfigError(f"{family.backbone_var}={backbone!r}: LLM-I's backbones are 'seed' and 'qwen'")
            return Choice(family.resolve(family.backbone_var, backbone), f"{family.backbone_var}={backbone}")
    # 3. whatever is configured, best first
    for name in family.priority:
        switch = family.opt_in.get(name)
        if switch and not env_flag(env, switch, False):
            continue
        reason = load_backend(source, name).configured(env)
        if reason:
            return Choice(name, f"{switch}=1: {reason}" if switch else reason)
    return Choice(None, family.nothing)


def from_env(source: str, env: Mapping[str, str]) -> Tool | None:
    """The ``source`` tool ``env`` configures, built by its class's ``from_env``; ``None`` when
    the environment switches it off or configures none."""
    choice = choose(source, env)
    if choice.backend is None:
        return None
    return load_backend(source, choice.backend).from_env(env)
