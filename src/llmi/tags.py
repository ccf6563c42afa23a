"""The ``<imgen>`` tag language: parse, validate and serialise.

A model writes ``<imgen>{'source': S, 'description': D, 'params': {...}}</imgen>``; this module
turns text into an ordered list of prose chunks and ``Tag`` slots. Parsing never raises: a tag
that cannot be read becomes a ``Tag`` with ``error`` set and still takes its slot (and its
index, which ``edit.img_index`` counts).

>>> parsed = parse("A chart:<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>")
>>> parsed.tags[0].request.query
'owl'

Reading a tag body goes through four readers, fastest and strictest first:

1. one regex match for the shape models write (keys in LLM-I's order, strings with at most
   ``\\n \\t \\\\ \\' \\"`` escapes, integers), giving exactly what ``ast.literal_eval`` gives;
2. ``ast.literal_eval`` (Python literal semantics, LLM-I's own format);
3. ``json.loads`` (tried first when the dict's first key is double-quoted);
4. a lenient backtracking reader for bodies that are not valid literals: strings may hold
   unescaped inner quotes and real newlines, missing or surplus closing braces are tolerated,
   and in code strings only the escapes outside the code's own string literals are decoded
   (LLM-I's prompt example writes line breaks as ``\\n`` and leaves quotes unescaped).

The lenient reader lives in ``llmi._tag_recovery``. The grammar and every message a user can
see are listed in ``docs/tags.md``.
"""

from __future__ import annotations

import ast
import json
import re
import warnings as _warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._tag_recovery import NAMES, Reader, decode_tree, quiet_escape_warnings
from .errors import TagError, TagSyntaxError, TagValidationError

__all__ = [
    "PARAM_TYPES",
    "SOURCES",
    "ImageRequest",
    "ParseWarning",
    "ParsedText",
    "Tag",
    "parse",
    "parse_tag",
    "serialise",
    "validate",
]

SOURCES = ("search", "diffusion", "code", "edit")

#: the params each source takes, exactly these keys, in LLM-I's order
PARAM_TYPES: Mapping[str, Mapping[str, type]] = MappingProxyType(
    {
        "search": MappingProxyType({"query": str}),
        "diffusion": MappingProxyType({"prompt": str}),
        "code": MappingProxyType({"code": str}),
        "edit": MappingProxyType({"img_index": int, "prompt": str}),
    }
)

_TOP_KEYS = ("source", "description", "params")


@dataclass(frozen=True)
class ImageRequest:
    """One validated tag: which tool, a description, and that tool's params."""

    source: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __hash__(self) -> int:
        return hash((self.source, self.description, frozenset(self.params.items())))

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
        return (
            self.params.get("query")
            or self.params.get("prompt")
            or self.params.get("code")
            or self.description
        )

    def with_source(self, source: str) -> ImageRequest:
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
    ``request`` and ``error`` is set. ``start``/``end``/``raw`` cover the slot, which includes a
    code fence wrapped around the tag (so the fence does not linger as prose); ``position`` is
    the offset of the ``<`` of ``<imgen>`` itself, the one error messages quote.
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

    @property
    def position(self) -> int:
        return self.start + self.raw.find("<imgen>")

    @property
    def source(self) -> str | None:
        """The tool this tag asked for, also for a failed tag whose ``'source'`` is readable
        (LLM-I counts a failed tag under its source in the per-tool statistics).

        >>> parse("<imgen>{'source': 'code', 'description': 'd', 'params': {}}</imgen>").tags[0].source
        'code'
        """
        if self.request is not None:
            return self.request.source
        m = _DECLARED_SOURCE.search(self.raw)
        return m.group(3) if m else None


@dataclass(frozen=True)
class ParseWarning:
    """Something in the text worth knowing that is not a tag error.

    ``kind`` is one of ``unterminated`` (an ``<imgen>`` never closed, or superseded by a later
    ``<imgen>``: kept as prose, no slot), ``stray_close`` (a ``</imgen>`` without an opener: kept
    as prose), ``recovered`` (a tag that was not a valid literal, read leniently) and ``fenced``
    (a tag wrapped in a code fence, whose fence lines were folded into the tag's slot).
    """

    kind: str
    position: int
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ParsedText:
    """Text split into prose chunks (``str``) and ``Tag`` slots, in order.

    ``"".join(p if isinstance(p, str) else p.raw for p in parts) == text`` always holds.
    """

    text: str
    parts: tuple[str | Tag, ...]
    warnings: tuple[ParseWarning, ...] = ()

    @property
    def tags(self) -> tuple[Tag, ...]:
        return tuple(p for p in self.parts if isinstance(p, Tag))


# --------------------------------------------------------------------------------------------
# parse: find the slots

_MARK = re.compile(r"<(/?)imgen>")
_DECLARED_SOURCE = re.compile(r"""(['"]?)source\1\s*:\s*(['"])(search|diffusion|code|edit)\2""")
_OPEN_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})[\w+.#-]*[ \t]*\Z")
_CLOSE_FENCE = re.compile(r"\s*(`{3,}|~{3,})[ \t]*(?=\n|\Z)")
_OPEN_LEN = len("<imgen>")
_CLOSE_LEN = len("</imgen>")


def parse(text: str) -> ParsedText:
    """Split ``text`` into prose and tags. Never raises.

    >>> p = parse("a <imgen>{'source': 'nope'}</imgen> b <imgen>{'source'")
    >>> [t.index for t in p.tags], p.tags[0].error.reason, p.warnings[0].kind
    ([0], "missing key 'description'; a tag has exactly the keys 'source', 'description' and 'params'", 'unterminated')
    """
    if "imgen>" not in text:
        return ParsedText(text, (text,) if text else ())
    pairs, warns = _find_pairs(text)
    slots = _absorb_fences(text, pairs, warns)
    parts: list[str | Tag] = []
    pos = 0
    for index, ((start, end), (open_at, close_end)) in enumerate(zip(slots, pairs)):
        if start > pos:
            parts.append(text[pos:start])
        body_at = open_at + _OPEN_LEN
        request: ImageRequest | None = None
        error: TagError | None = None
        try:
            request, recovered = _read(text[body_at : close_end - _CLOSE_LEN], open_at)
            if recovered:
                warns.append(
                    ParseWarning(
                        "recovered",
                        open_at,
                        f"tag {index} at character {open_at} is not a valid Python or JSON dict; it was read leniently",
                    )
                )
        except TagError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a bug here must cost one image, never a training run
            error = TagSyntaxError(
                f"internal error while reading the tag ({type(exc).__name__}: {exc})", open_at
            )
        parts.append(Tag(index, start, end, text[start:end], request, error))
        pos = end
    if pos < len(text):
        parts.append(text[pos:])
    warns.sort(key=lambda w: w.position)
    return ParsedText(text, tuple(parts), tuple(warns))


def _find_pairs(text: str) -> tuple[list[tuple[int, int]], list[ParseWarning]]:
    """Each ``</imgen>`` closes the nearest unclosed ``<imgen>`` before it; earlier openers die."""
    pairs: list[tuple[int, int]] = []
    warns: list[ParseWarning] = []
    open_at = -1
    for m in _MARK.finditer(text):
        if m.group(1):
            if open_at < 0:
                warns.append(
                    ParseWarning(
                        "stray_close",
                        m.start(),
                        f"</imgen> at character {m.start()} has no matching <imgen>; it is kept as text",
                    )
                )
            else:
                pairs.append((open_at, m.end()))
                open_at = -1
        else:
            if open_at >= 0:
                warns.append(
                    ParseWarning(
                        "unterminated",
                        open_at,
                        f"<imgen> at character {open_at} is followed by another <imgen> before any </imgen>; it is kept as text and gets no image slot",
                    )
                )
            open_at = m.start()
    if open_at >= 0:
        warns.append(
            ParseWarning(
                "unterminated",
                open_at,
                f"<imgen> at character {open_at} is never closed with </imgen>; it is kept as text and gets no image slot",
            )
        )
    return pairs, warns


def _absorb_fences(
    text: str, pairs: list[tuple[int, int]], warns: list[ParseWarning]
) -> list[tuple[int, int]]:
    """Slot spans: a run of tags wrapped in a code fence (or inline backticks) takes the fence."""
    slots = [list(p) for p in pairs]
    prev_end = 0
    i = 0
    while i < len(pairs):
        j = i  # the run i..j is separated by whitespace only
        while j + 1 < len(pairs) and text[pairs[j][1] : pairs[j + 1][0]].isspace():
            j += 1
        start, end = pairs[i][0], pairs[j][1]
        limit = pairs[j + 1][0] if j + 1 < len(pairs) else len(text)
        before = text[prev_end:start].rstrip()
        line_at = before.rfind("\n") + 1
        opener = _OPEN_FENCE.match(before, line_at)
        closer = _CLOSE_FENCE.match(text[end:limit]) if opener else None
        new_start = new_end = -1
        if (
            opener
            and closer
            and closer.group(1)[0] == opener.group(1)[0]
            and len(closer.group(1)) >= len(opener.group(1))
        ):
            new_start, new_end = prev_end + opener.start(1), end + closer.end(1)
        elif (
            start > prev_end
            and text[start - 1] == "`"
            and text[end : end + 1] == "`"
            and text[start - 2 : start] != "``"
        ):
            new_start, new_end = start - 1, end + 1
        if new_start >= 0:
            slots[i][0], slots[j][1] = new_start, new_end
            warns.append(
                ParseWarning(
                    "fenced",
                    start,
                    f"tag at character {start} is wrapped in a code fence; the fence was folded into the tag's slot",
                )
            )
        prev_end = slots[j][1]
        i = j + 1
    return [(s, e) for s, e in slots]


# --------------------------------------------------------------------------------------------
# parse_tag: read one body

_BODY_FENCE = re.compile(r"\A\s*(`{3,}|~{3,})[\w+.#-]*[ \t]*\n(.*?)\n?[ \t]*\1\s*\Z", re.DOTALL)
_BODY_TICKS = re.compile(r"\A\s*`(\{.*\})`\s*\Z", re.DOTALL)
_EXAMPLE = "{'source': 'search', 'description': '...', 'params': {'query': '...'}}"


def parse_tag(body: str, position: int = 0) -> ImageRequest:
    """Read and validate the body of one tag (the text between ``<imgen>`` and ``</imgen>``).

    Raises ``TagSyntaxError`` or ``TagValidationError`` whose ``position`` is ``position``.

    >>> parse_tag("{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}", 40)
    Traceback (most recent call last):
    ...
    llmi.errors.TagValidationError: tag at character 40: 'img_index' must be an integer, not bool
    """
    return _read(body, position)[0]


def _read(body: str, position: int) -> tuple[ImageRequest, bool]:
    """The request in ``body`` and whether the lenient reader was needed."""
    written, offset = body, 0
    m = _BODY_FENCE.match(body) or _BODY_TICKS.match(body)
    if m:
        offset, body = m.start(m.lastindex or 1), m.group(m.lastindex or 1)
    stripped = body.strip()
    if not stripped:
        raise TagSyntaxError(f"the tag is empty; it must hold a dict such as {_EXAMPLE}", position)
    if stripped[0] != "{":
        head = stripped[:24] + ("..." if len(stripped) > 24 else "")
        raise TagSyntaxError(
            f"the tag must hold a dict in braces, such as {_EXAMPLE}; it starts with {head!r}",
            position,
        )
    obj = _fast(body)
    if obj is _NOTHING:
        obj = _literal(body)
    if obj is not _NOTHING:
        return validate(obj, position), False
    return _recover(body, position, written, offset), True


# The fast reader: exactly literal_eval's (and json.loads's) result for the shape models write,
# in one regex match: the keys in LLM-I's order, strings with at most \n \t \\ \' \" escapes.
_S = r"""'(?:[^'\\\r\n\x00]++|\\[nt\\'"])*+'|"(?:[^"\\\r\n\x00]++|\\[nt\\'"])*+\""""
_V = rf"""{_S}|-?(?:0|[1-9][0-9]*)(?![\w.])|(?:True|False|None|true|false|null)(?!\w)"""
_CANONICAL = re.compile(
    rf"""\s*\{{\s*(['"])source\1\s*:\s*({_S})\s*,\s*(['"])description\3\s*:\s*({_S})\s*,"""
    rf"""\s*(['"])params\5\s*:\s*\{{\s*({_S})\s*:\s*({_V})\s*(?:,\s*({_S})\s*:\s*({_V})\s*)?\}}\s*\}}\s*"""
)
_NOTHING: Any = object()


def _fast(body: str) -> Any:
    m = _CANONICAL.fullmatch(body)
    if m is None:
        return _NOTHING
    g = m.groups()
    params = {_fast_value(g[5]): _fast_value(g[6])}
    if g[7] is not None:
        params[_fast_value(g[7])] = _fast_value(g[8])
    return {"source": _fast_value(g[1]), "description": _fast_value(g[3]), "params": params}


def _fast_value(text: str) -> Any:
    if text[0] in "'\"":
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        # every backslash here starts one of five escapes, so splitting on \\ first is exact
        return "\\".join(
            part.replace("\\n", "\n").replace("\\t", "\t").replace("\\'", "'").replace('\\"', '"')
            for part in inner.split("\\\\")
        )
    if text in NAMES:
        return NAMES[text]
    return int(text)


def _literal(body: str) -> Any:
    """``ast.literal_eval`` or ``json.loads``, whichever reads the body; ``_NOTHING`` if neither."""
    readers = (_json, _python) if body.lstrip()[1:].lstrip()[:1] == '"' else (_python, _json)
    for reader in readers:
        try:
            return reader(body)
        except Exception:  # noqa: BLE001, S112 - SyntaxError, ValueError, RecursionError, UnicodeError ...
            continue
    return _NOTHING


def _python(body: str) -> Any:
    if "\\" not in body:
        return ast.literal_eval(body.strip())
    with _warnings.catch_warnings():  # "invalid escape sequence" in model-written regexes
        quiet_escape_warnings()
        return ast.literal_eval(body.strip())


def _json(body: str) -> Any:
    return json.loads(body)


def _recover(body: str, position: int, written: str, offset: int) -> ImageRequest:
    """The lenient reader's request, or the most useful error for a body no reader could read."""
    first_error: TagValidationError | None = None
    for n, reading in enumerate(Reader(body, lenient=True).readings()):
        obj = decode_tree(reading, body)
        try:
            return validate(obj, position)
        except TagValidationError as exc:
            # A reading is a guess: a later one may split the strings elsewhere and fit the
            # schema. Keep the first complaint, and trust it only if it found the tag's shape.
            if first_error is None and isinstance(obj, dict) and set(obj) == set(_TOP_KEYS):
                first_error = exc
        if n >= Reader.MAX_READINGS:
            break
    if first_error is not None:
        raise first_error
    strict = Reader(body, lenient=False)
    for obj in strict.readings():
        return validate(decode_tree(obj, body), position)
    at = offset + max(strict.err_at, 0)  # an offset in the body as written, fence included
    line = written.count("\n", 0, at) + 1
    column = at - (written.rfind("\n", 0, at) + 1) + 1
    raise TagSyntaxError(
        f"cannot read the tag as a Python or JSON dict: {strict.err} (line {line}, column {column} of the tag)",
        position,
    )


# --------------------------------------------------------------------------------------------
# code fences inside code strings

_CODE_FENCE_HEAD = re.compile(r"\A\s*(`{3,}|~{3,})[\w+.#-]*[ \t]*\n")
_CODE_FENCE_TAIL = re.compile(r"\n[ \t]*(`{3,}|~{3,})\s*\Z")


def _unfence_code(code: str) -> str:
    """Code wrapped in a Markdown fence inside the string: drop the fence lines."""
    if "`" not in code and "~" not in code:
        return code
    m = _CODE_FENCE_HEAD.match(code)
    if m:
        code = code[m.end() :]
        tail = _CODE_FENCE_TAIL.search(code)
        if tail:
            code = code[: tail.start()]
        elif code.rstrip().endswith(m.group(1)):
            code = code.rstrip()[: -len(m.group(1))]
    return code


# --------------------------------------------------------------------------------------------
# validate

_NOUN = {str: "a string", int: "an integer"}
_SHAPE = {
    "search": "{'query': '...'}",
    "diffusion": "{'prompt': '...'}",
    "code": "{'code': '...'}",
    "edit": "{'img_index': 0, 'prompt': '...'}",
}
_EMPTY_HINT = {
    ("search", "query"): "say what to search for",
    ("diffusion", "prompt"): "describe the picture to generate",
    ("edit", "prompt"): "say how to change the image",
    ("code", "code"): "write the Python code that draws the chart",
}
_TOP_SHAPE = "a tag has exactly the keys 'source', 'description' and 'params'"


def _suggest(word: Any, choices: tuple[str, ...] | Mapping[str, Any]) -> str:
    if not isinstance(word, str):
        return ""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _type_name(obj: Any) -> str:
    return type(obj).__name__


def validate(obj: Any, position: int = 0) -> ImageRequest:
    """Check a parsed tag dict against the schema and build its request.

    >>> validate({'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}).query
    'owl'
    """

    def bad(reason: str) -> TagValidationError:
        return TagValidationError(reason, position)

    if not isinstance(obj, dict):
        raise bad(f"the tag holds a {_type_name(obj)}, not a dict; write {_EXAMPLE}")
    for key in obj:
        if key not in _TOP_KEYS:
            raise bad(f"unexpected key {key!r}{_suggest(key, _TOP_KEYS)}; {_TOP_SHAPE}")
    for key in _TOP_KEYS:
        if key not in obj:
            raise bad(f"missing key {key!r}; {_TOP_SHAPE}")
    source = obj["source"]
    if not isinstance(source, str) or source not in PARAM_TYPES:
        raise bad(
            f"unknown source {source!r}{_suggest(source, SOURCES)}; use one of 'search', 'diffusion', 'code' or 'edit'"
        )
    description = obj["description"]
    if not isinstance(description, str):
        raise bad(f"'description' must be a string, not {_type_name(description)}")
    params = obj["params"]
    want = PARAM_TYPES[source]
    if not isinstance(params, dict):
        raise bad(f"'params' must be a dict such as {_SHAPE[source]}, not {_type_name(params)}")
    for key in params:
        if key not in want:
            raise bad(
                f"unexpected key {key!r}{_suggest(key, want)} in the params of {_a(source)} tag; {source} takes {_SHAPE[source]}"
            )
    clean: dict[str, Any] = {}
    for key, typ in want.items():
        if key not in params:
            raise bad(
                f"missing key {key!r} in the params of {_a(source)} tag; {source} takes {_SHAPE[source]}"
            )
        val = params[key]
        if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
            raise bad(f"{key!r} must be {_NOUN[typ]}, not {_type_name(val)}")
        if typ is int and val < 0:
            raise bad(f"{key!r} must be 0 or more, not {val}")
        if typ is str:
            if key == "code":
                val = _unfence_code(val)
            if not val.strip():
                raise bad(f"{key!r} is empty; {_EMPTY_HINT[source, key]}")
        clean[key] = val
    return ImageRequest(source, description, clean)


# --------------------------------------------------------------------------------------------
# serialise

_TAG_IN_STRING = re.compile(r"<(?=/?imgen>)")


def serialise(request: ImageRequest, style: str = "python") -> str:
    """The tag for ``request``: LLM-I's Python-literal form (``style="python"``) or JSON.

    A ``<imgen>`` or ``</imgen>`` inside a string is escaped (``\\x3c`` / ``\\u003c``) so the tag
    cannot end early.

    >>> serialise(ImageRequest("search", "an owl", {"query": "snowy owl"}))
    "<imgen>{'source': 'search', 'description': 'an owl', 'params': {'query': 'snowy owl'}}</imgen>"
    >>> serialise(ImageRequest("edit", "d", {"prompt": "p", "img_index": 1}), style="json")
    '<imgen>{"source": "edit", "description": "d", "params": {"img_index": 1, "prompt": "p"}}</imgen>'
    """
    want = PARAM_TYPES.get(request.source, {})
    params = {k: request.params[k] for k in want if k in request.params}
    params.update((k, v) for k, v in request.params.items() if k not in params)
    if style == "python":
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in params.items())
        body = f"{{'source': {request.source!r}, 'description': {request.description!r}, 'params': {{{inner}}}}}"
        body = _TAG_IN_STRING.sub(r"\\x3c", body)
    elif style == "json":
        body = json.dumps(
            {"source": request.source, "description": request.description, "params": params},
            ensure_ascii=False,
        )
        body = _TAG_IN_STRING.sub(r"\\u003c", body)
    else:
        raise ValueError(f"unknown style {style!r}; use 'python' or 'json'")
    return f"<imgen>{body}</imgen>"
