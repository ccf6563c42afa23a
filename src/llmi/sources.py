"""The four tag sources, described once.

Everything llmi knows about a source lives in ``SOURCE_TABLE``: the params a tag takes and their
types, what to tell a model that left one blank, how the cache compares two calls, how the
engine calls the tool by default and what it says when no backend is configured. The tag
reader and validator (``llmi.tags``), ``ImageRequest.with_source``, the cache key
(``llmi.cache``) and the engine read it from here, so adding a source touches this table.

>>> SOURCE_TABLE["edit"].shape
"{'img_index': 0, 'prompt': '...'}"
>>> [s.name for s in SOURCE_TABLE.values() if s.takes_text]
['search', 'diffusion']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "DEFAULT_LIMITS",
    "NOT_CONFIGURED_HELP",
    "PARAM_TYPES",
    "SOURCES",
    "SOURCE_TABLE",
    "STATS_ORDER",
    "Param",
    "Source",
    "ToolLimits",
]


@dataclass(frozen=True)
class ToolLimits:
    """How one tool is called: at most ``concurrency`` calls at once, each attempt at most
    ``timeout`` seconds, up to ``retries`` more attempts for transient errors, waiting
    ``backoff · 2^k`` seconds (jittered) before retry ``k``."""

    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 2
    backoff: float = 0.5


@dataclass(frozen=True)
class Param:
    """One key of a source's ``params``.

    ``key`` says how the cache compares values: ``text`` with runs of whitespace collapsed,
    ``folded`` also case-insensitively (search engines ignore case), ``code`` with trailing
    spaces and surrounding blank lines ignored, ``none`` not at all (an edit is keyed by the
    bytes of the image it edits, not by where that image sits).
    """

    name: str
    type: type
    blank_hint: str = ""  # what to write instead of a blank value (str params)
    key: Literal["text", "folded", "code", "none"] = "text"

    @property
    def placeholder(self) -> str:
        return "0" if self.type is int else "'...'"


@dataclass(frozen=True)
class Source:
    """One tag source: its params in LLM-I's order, engine defaults and help text."""

    name: str
    params: tuple[Param, ...]
    purpose: str  # one line for docs and help: what the tool is for
    limits: ToolLimits
    not_configured: str  # why an image failed when no backend serves this source, and the fix
    types: Mapping[str, type] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", MappingProxyType({p.name: p.type for p in self.params}))

    @property
    def shape(self) -> str:
        """The params as a model should write them, for error messages."""
        return "{" + ", ".join(f"'{p.name}': {p.placeholder}" for p in self.params) + "}"

    @property
    def takes_text(self) -> bool:
        """Whether any request can be re-addressed here: one free-text param (a fallback)."""
        return len(self.params) == 1 and self.params[0].type is str and self.params[0].key != "code"

    @property
    def runs_code(self) -> bool:
        return any(p.key == "code" for p in self.params)

    @property
    def text_param(self) -> str | None:
        """The param holding the request's main text (``query``, ``prompt`` or ``code``)."""
        return next((p.name for p in self.params if p.type is str), None)


_IMAGES_API = "LLMI_IMAGES_BASE_URL for an OpenAI-compatible images API"

SOURCE_TABLE: Mapping[str, Source] = MappingProxyType(
    {
        "search": Source(
            "search",
            (Param("query", str, "say what to search for", key="folded"),),
            "a real photo of a real-world thing, place, person or event",
            ToolLimits(concurrency=8, timeout=30.0),
            "no search backend is configured: set SERP_API_KEY for Google Images, LLMI_ONLINE=1 for "
            "Wikimedia Commons, or build the offline library with `llmi library add --defaults`",
        ),
        "diffusion": Source(
            "diffusion",
            (Param("prompt", str, "describe the picture to generate"),),
            "a new picture of something imagined, stylised or not photographable",
            ToolLimits(concurrency=4, timeout=300.0),
            "no image generator is configured: set QWEN_IMAGE_SERVER_URL (start one with "
            f"`llmi serve image --mode generation`), ARK_API_KEY for Seedream, or {_IMAGES_API}",
        ),
        "code": Source(
            "code",
            (Param("code", str, "write the Python code that draws the chart", key="code"),),
            "a chart drawn from data by Python code (plt, pd, sns and np are imported)",
            ToolLimits(concurrency=2, timeout=30.0, retries=0),
            "the code tool is not configured: pass tools={'code': CodeSandboxTool()} to Engine",
        ),
        "edit": Source(
            "edit",
            (Param("img_index", int, key="none"), Param("prompt", str, "say how to change the image")),
            "a change to an input image or an earlier tag's image",
            ToolLimits(concurrency=4, timeout=300.0),
            "no image editor is configured: set QWEN_EDIT_SERVER_URL (start one with "
            f"`llmi serve image --mode edit`), ARK_API_KEY for SeedEdit, or {_IMAGES_API}",
        ),
    }
)

#: the source names, in the order messages list them
SOURCES: tuple[str, ...] = tuple(SOURCE_TABLE)

#: the order of LLM-I's statistics dict (its reward manager logs the tools in this order)
STATS_ORDER: tuple[str, ...] = ("diffusion", "search", "code", "edit")

#: the params each source takes, exactly these keys, in LLM-I's order
PARAM_TYPES: Mapping[str, Mapping[str, type]] = MappingProxyType(
    {name: s.types for name, s in SOURCE_TABLE.items()}
)

DEFAULT_LIMITS: Mapping[str, ToolLimits] = MappingProxyType(
    {name: s.limits for name, s in SOURCE_TABLE.items()}
)

NOT_CONFIGURED_HELP: Mapping[str, str] = MappingProxyType(
    {name: s.not_configured for name, s in SOURCE_TABLE.items()}
)
