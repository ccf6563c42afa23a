"""The ``<imgen>`` tag language: parse, validate and serialise.

A model writes ``<imgen>{'source': S, 'description': D, 'params': {...}}</imgen>``; this module
turns text into an ordered list of prose chunks and ``Tag`` slots. Parsing never raises: a tag
that cannot be read becomes a ``Tag`` with ``error`` set and still takes its slot (and its
index, which ``edit.img_index`` counts).

>>> parsed = parse("A chart:<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>")
>>> parsed.tags[0].request.query
'owl'
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .errors import TagError, TagSyntaxError, TagValidationError

__all__ = ["SOURCES", "PARAM_TYPES", "ImageRequest", "Tag", "ParsedText", "parse", "parse_tag", "serialise"]

SOURCES = ("search", "diffusion", "code", "edit")

#: the params each source takes, exactly these keys
PARAM_TYPES: Mapping[str, Mapping[str, type]] = MappingProxyType(
    {
        "search": MappingProxyType({"query": str}),
        "diffusion": MappingProxyType({"prompt": str}),
        "code": MappingProxyType({"code": str}),
        "edit": MappingProxyType({"img_index": int, "prompt": str}),
    }
)


@dataclass(frozen=True)
class ImageRequest:
    """One validated tag: which tool, a description, and that tool's params."""

    source: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    @property
    def query(self) -> str:
        return self.params["query"]

    @property
    def prompt(self) -> str:
        return self.params["prompt"]

    @property
    def code(self) -> str:
        return self.params["code"]

    @property
    def img_index(self) -> int:
        return self.params["img_index"]

    @property
    def text(self) -> str:
        """The main text param (query, prompt or code), used when a fallback changes tool."""
        return self.params.get("query") or self.params.get("prompt") or self.params.get("code") or self.description

    def with_source(self, source: str) -> "ImageRequest":
        """This request re-addressed to another tool (for fallback routing).

        >>> ImageRequest("diffusion", "a cat", {"prompt": "a cat on a sofa"}).with_source("search").params["query"]
        'a cat on a sofa'
        """
        if source == self.source:
            return self
        text = self.text if self.source != "code" else self.description
        params = {"search": {"query": text}, "diffusion": {"prompt": text}}.get(source)
        if params is None:
            raise ValueError(f"cannot re-address a {self.source} request to {source}")
        return ImageRequest(source, self.description, params)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "description": self.description, "params": dict(self.params)}


@dataclass(frozen=True)
class Tag:
    """One ``<imgen>...</imgen>`` occurrence: its slot in the text and what it asked for.

    ``index`` counts every tag in the text from 0, failed ones included; exactly one of
    ``request`` and ``error`` is set.
    """

    index: int
    start: int
    end: int
    raw: str
    request: ImageRequest | None = None
    error: TagError | None = None

    @property
    def ok(self) -> bool:
        return self.request is not None


@dataclass(frozen=True)
class ParsedText:
    """Text split into prose chunks (``str``) and ``Tag`` slots, in order."""

    text: str
    parts: tuple[str | Tag, ...]

    @property
    def tags(self) -> tuple[Tag, ...]:
        return tuple(p for p in self.parts if isinstance(p, Tag))


_TAG = re.compile(r"<imgen>(.*?)</imgen>", re.S)


def parse(text: str) -> ParsedText:
    """Split ``text`` into prose and tags. Never raises."""
    parts: list[str | Tag] = []
    pos = 0
    for i, m in enumerate(_TAG.finditer(text)):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        try:
            req, err = parse_tag(m.group(1), m.start()), None
        except TagError as exc:
            req, err = None, exc
        parts.append(Tag(i, m.start(), m.end(), m.group(0), req, err))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return ParsedText(text, tuple(parts))


def parse_tag(body: str, position: int = 0) -> ImageRequest:
    """Read and validate the body of one tag; raises ``TagError`` with ``position``."""
    try:
        obj = ast.literal_eval(body.strip())
    except (ValueError, SyntaxError) as exc:
        raise TagSyntaxError(f"not a dict literal: {exc}", position) from None
    return validate(obj, position)


def validate(obj: Any, position: int = 0) -> ImageRequest:
    if not isinstance(obj, dict):
        raise TagValidationError("the tag must contain a dict", position)
    source = obj.get("source")
    if source not in PARAM_TYPES:
        raise TagValidationError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}", position)
    params = obj.get("params")
    if not isinstance(params, dict):
        raise TagValidationError("'params' must be a dict", position)
    want = PARAM_TYPES[source]
    for key, typ in want.items():
        if key not in params:
            raise TagValidationError(f"{source} params need {key!r}", position)
        val = params[key]
        if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
            raise TagValidationError(f"{key!r} must be {typ.__name__}, got {type(val).__name__}", position)
    extra = set(params) - set(want)
    if extra:
        raise TagValidationError(f"unexpected params {sorted(extra)} for {source}", position)
    desc = obj.get("description", "")
    return ImageRequest(source, str(desc), params)


def serialise(request: ImageRequest) -> str:
    """The tag for ``request`` in LLM-I's Python-literal form."""
    return "<imgen>" + repr(request.to_dict()) + "</imgen>"
