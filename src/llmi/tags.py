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

That is the ``llmi`` profile's reading. ``parse(text, profile="llmi-compat")`` reads the way
LLM-I does instead (its tag regex, its body reading, its validity and counting rules, from
``llmi._tag_compat``); ``llmi.profiles`` names every option and ``docs/compat.md`` compares them.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
import warnings as _warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._tag_compat import find_slots, index_rule, range_problem, read_body, sanitize_code
from ._tag_recovery import NAMES, Reader, decode_tree, quiet_escape_warnings
from .errors import TagError, TagSyntaxError, TagValidationError
from .profiles import LLMI, Profile, ProfileLike, get_profile
from .sources import PARAM_TYPES, SOURCE_TABLE, SOURCES

__all__ = [
    "PARAM_TYPES",
    "SOURCES",
    "ImageRequest",
    "clean_code",
    "ParseWarning",
    "ParsedText",
    "Tag",
    "parse",
    "parse_tag",
    "serialise",
    "validate",
]

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
        spec = SOURCE_TABLE.get(self.source)
        value = self.params.get(spec.text_param) if spec is not None and spec.text_param else None
        return value if isinstance(value, str) and value else self.description

    def with_source(self, source: str) -> ImageRequest:
        """This request re-addressed to another tool (for fallback routing); a chart's code
        describes no picture, so a chart re-addressed elsewhere uses its description.

        >>> ImageRequest("diffusion", "a cat", {"prompt": "a cat on a sofa"}).with_source("search").params["query"]
        'a cat on a sofa'
        """
        if source == self.source:
            return self
        target, own = SOURCE_TABLE.get(source), SOURCE_TABLE.get(self.source)
        if target is None or not target.takes_text or target.text_param is None:
            raise ValueError(f"cannot re-address a {self.source} request to {source}")
        text = self.description if own is not None and own.runs_code else self.text
        return ImageRequest(source, self.description, {target.text_param: text})

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "description": self.description, "params": dict(self.params)}


@dataclass(frozen=True)
class Tag:
    """One ``<imgen>...</imgen>`` occurrence: its slot in the text and what it asked for.

    ``index`` counts every tag in the text from 0, failed ones included; exactly one of
    ``request`` and ``error`` is set. ``start``/``end``/``raw`` cover the slot, which includes a
    code fence wrapped around the tag under the ``llmi`` profile (so the fence does not linger
    as prose); ``position`` is the offset of the ``<`` of ``<imgen>`` itself, the one error
    messages quote. ``counted`` says whether the per-tool statistics count this tag (under the
    ``llmi-compat`` profile, LLM-I's rule leaves most invalid tags out); ``declared`` is the
    source a readable body named, even when the tag is invalid.
    """

    index: int
    start: int
    end: int
    raw: str
    request: ImageRequest | None = None
    error: TagError | None = None
    counted: bool = True
    declared: str | None = None

    @property
    def ok(self) -> bool:
        return self.request is not None

    @property
    def position(self) -> int:
        return self.start + self.raw.find("<imgen>")

    @property
    def source(self) -> str | None:
        """The tool this tag asked for, also for a failed tag: the source its body names, or
        for a body that cannot be read, a ``'source': ...`` written in it.

        >>> parse("<imgen>{'source': 'code', 'description': 'd', 'params': {}}</imgen>").tags[0].source
        'code'
        """
        if self.request is not None:
            return self.request.source
        if self.declared is not None:
            return self.declared
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
    ``profile`` is the profile the text was read with.
    """

    text: str
    parts: tuple[str | Tag, ...]
    warnings: tuple[ParseWarning, ...] = ()
    profile: Profile = field(default=LLMI, repr=False)

    @property
    def tags(self) -> tuple[Tag, ...]:
        return tuple(p for p in self.parts if isinstance(p, Tag))


# --------------------------------------------------------------------------------------------
# parse: find the slots

_MARK = re.compile(r"<(/?)imgen>")
_DECLARED_SOURCE = re.compile(rf"""(['"]?)source\1\s*:\s*(['"])({'|'.join(SOURCES)})\2""")
_OPEN_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})[\w+.#-]*[ \t]*\Z")
_CLOSE_FENCE = re.compile(r"\s*(`{3,}|~{3,})[ \t]*(?=\n|\Z)")
_OPEN_LEN = len("<imgen>")
_CLOSE_LEN = len("</imgen>")


def parse(text: str, profile: ProfileLike = None, *, inputs: int = 0) -> ParsedText:
    """Split ``text`` into prose and tags, read as ``profile`` says (``"llmi"`` by default).
    Never raises. ``inputs`` is the number of input images, which the ``llmi-compat``
    profile needs to number edits the way LLM-I does.

    >>> p = parse("a <imgen>{'source': 'nope'}</imgen> b <imgen>{'source'")
    >>> [t.index for t in p.tags], p.tags[0].error.reason, p.warnings[0].kind
    ([0], "missing key 'description'; a tag has exactly the keys 'source', 'description' and 'params'", 'unterminated')
    >>> parse("<imgen> {'source': 'search', 'description': '', 'params': {'query': 'owl'}} </imgen>", "llmi-compat").tags
    ()
    """
    prof = get_profile(profile)
    if "imgen>" not in text:
        return ParsedText(text, (text,) if text else (), (), prof)
    warns: list[ParseWarning] = []
    if prof.tag_finding == "llmi":
        pairs = find_slots(text)
        reads = [_attempt(text, o, c, prof) for o, c in pairs]
        slots = pairs
    else:
        pairs, reads = _tolerant_pairs(text, prof, warns)
        slots = _absorb_fences(text, pairs, warns)
    llmi_rules = prof.counting == "llmi"
    never_run = index_rule([r.obj for r in reads], inputs) if llmi_rules else [None] * len(reads)
    images = inputs + len(reads)  # what img_index can name: the inputs, then every tag
    parts: list[str | Tag] = []
    pos = 0
    for index, ((start, end), (open_at, _), read, unrun) in enumerate(zip(slots, pairs, reads, never_run)):
        if start > pos:
            parts.append(text[pos:start])
        request, error = read.request, read.error
        if llmi_rules and request is not None and request.source == "edit" and request.img_index >= images:
            request, error = None, TagValidationError(range_problem(request.img_index, images), open_at)
        elif request is None and unrun is not None and error is not None:
            error = TagValidationError(f"{error.reason} (LLM-I counts it as a failed edit: {unrun})", open_at)
        # LLM-I counts a valid tag, and an edit its scheduler never runs, valid or not
        counted = not llmi_rules or request is not None or unrun is not None
        if read.recovered and request is not None:
            warns.append(
                ParseWarning(
                    "recovered",
                    open_at,
                    f"tag {index} at character {open_at} is not a valid Python or JSON dict; it was read leniently",
                )
            )
        parts.append(
            Tag(index, start, end, text[start:end], request, error, counted=counted, declared=_declared(read.obj))
        )
        pos = end
    if pos < len(text):
        parts.append(text[pos:])
    warns.sort(key=lambda w: w.position)
    return ParsedText(text, tuple(parts), tuple(warns), prof)


@dataclass(frozen=True)
class _Read:
    """One slot's body: the dict read from it (``_UNREADABLE`` if none), and the request or
    the error validation gave."""

    obj: Any
    request: ImageRequest | None
    error: TagError | None
    recovered: bool = False


_UNREADABLE: Any = object()


def _attempt(text: str, open_at: int, close_end: int, prof: Profile) -> _Read:
    body = text[open_at + _OPEN_LEN : close_end - _CLOSE_LEN]
    try:
        obj, recovered = _read(body, open_at, prof)
    except TagError as exc:
        return _Read(_UNREADABLE, None, exc)
    except Exception as exc:  # noqa: BLE001 - a bug here must cost one image, never a training run
        return _Read(_UNREADABLE, None, _internal(exc, open_at))
    try:
        return _Read(obj, validate(obj, open_at, prof), None, recovered)
    except TagError as exc:
        return _Read(obj, None, exc, recovered)
    except Exception as exc:  # noqa: BLE001
        return _Read(obj, None, _internal(exc, open_at), recovered)


def _internal(exc: Exception, position: int) -> TagSyntaxError:
    return TagSyntaxError(f"internal error while reading the tag ({type(exc).__name__}: {exc})", position)


def _declared(obj: Any) -> str | None:
    source = obj.get("source") if isinstance(obj, dict) else None
    return source if isinstance(source, str) and source in SOURCE_TABLE else None


@dataclass
class _Pair:
    """An ``<imgen>`` and the ``</imgen>`` closing it, with the marks around it that were
    left as prose: earlier openers it superseded, and later closers with no opener."""

    open_at: int
    close_end: int
    openers: list[int] = field(default_factory=list)
    closers: list[int] = field(default_factory=list)


def _find_pairs(text: str) -> tuple[list[_Pair], list[ParseWarning]]:
    """Each ``</imgen>`` closes the nearest unclosed ``<imgen>`` before it; earlier openers die."""
    pairs: list[_Pair] = []
    warns: list[ParseWarning] = []
    open_at = -1
    superseded: list[int] = []
    opened_since_pair = False
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
                if pairs and not opened_since_pair:
                    pairs[-1].closers.append(m.end())
            else:
                pairs.append(_Pair(open_at, m.end(), superseded))
                open_at, superseded, opened_since_pair = -1, [], False
        else:
            if open_at >= 0:
                warns.append(
                    ParseWarning(
                        "unterminated",
                        open_at,
                        f"<imgen> at character {open_at} is followed by another <imgen> before any </imgen>; it is kept as text and gets no image slot",
                    )
                )
                superseded.append(open_at)
            open_at, opened_since_pair = m.start(), True
    if open_at >= 0:
        warns.append(
            ParseWarning(
                "unterminated",
                open_at,
                f"<imgen> at character {open_at} is never closed with </imgen>; it is kept as text and gets no image slot",
            )
        )
    return pairs, warns


_MAX_WIDENINGS = 4  # openers and closers tried on each side of a tag that does not read
_WIDENING_BUDGET = 64  # wider readings tried per answer, so a hostile one stays cheap


def _tolerant_pairs(
    text: str, prof: Profile, warns: list[ParseWarning]
) -> tuple[list[tuple[int, int]], list[_Read]]:
    """The pairs and their reads. A tag that does not read is widened to an earlier superseded
    ``<imgen>`` or a later stray ``</imgen>`` when that makes it valid: the mark it skipped
    sat inside a string (``'query': 'a </imgen> b'``)."""
    found, marks = _find_pairs(text)
    warns += marks
    spans: list[tuple[int, int]] = []
    reads: list[_Read] = []
    budget = _WIDENING_BUDGET
    for pair in found:
        read = _attempt(text, pair.open_at, pair.close_end, prof)
        span = (pair.open_at, pair.close_end)
        # only a body that does not read at all can be one cut short by a mark in a string
        if isinstance(read.error, TagSyntaxError) and (pair.openers or pair.closers):
            for open_at, close_end in _widenings(pair):
                if budget <= 0:
                    break
                budget -= 1
                wider = _attempt(text, open_at, close_end, prof)
                if wider.request is not None:
                    read, span = wider, (open_at, close_end)
                    warns[:] = [w for w in warns if not _inside(w, span)]
                    break
        spans.append(span)
        reads.append(read)
    return spans, reads


def _widenings(pair: _Pair) -> list[tuple[int, int]]:
    """Wider spans for a tag, the fewest marks taken in first."""
    ends = (pair.close_end, *pair.closers[:_MAX_WIDENINGS])
    starts = (pair.open_at, *pair.openers[::-1][:_MAX_WIDENINGS])
    spans = [(o, c) for i, c in enumerate(ends) for j, o in enumerate(starts) if i or j]
    return sorted(spans, key=lambda s: (ends.index(s[1]) + starts.index(s[0])))


def _inside(w: ParseWarning, span: tuple[int, int]) -> bool:
    """A mark warning about a mark that a widened tag now holds."""
    return w.kind in ("unterminated", "stray_close") and span[0] <= w.position < span[1]


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


def parse_tag(body: str, position: int = 0, profile: ProfileLike = None) -> ImageRequest:
    """Read and validate the body of one tag (the text between ``<imgen>`` and ``</imgen>``).

    Raises ``TagSyntaxError`` or ``TagValidationError`` whose ``position`` is ``position``.

    >>> parse_tag("{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}", 40)
    Traceback (most recent call last):
    ...
    llmi.errors.TagValidationError: tag at character 40: 'img_index' must be an integer, not bool
    >>> parse_tag("{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}", 40, "llmi-compat").img_index
    1
    """
    prof = get_profile(profile)
    return validate(_read(body, position, prof)[0], position, prof)


def _read(body: str, position: int, prof: Profile) -> tuple[Any, bool]:
    """The value in ``body`` (a dict, unless validation is to complain) and whether the lenient
    reader was needed; ``TagSyntaxError`` for a body no reader can read."""
    if prof.body_reading == "llmi":
        return read_body(body, position, exact_code=prof.code_cleaning == "exact"), False
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
        return obj, False
    return _recover(body, position, written, offset, prof), True


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


def _recover(body: str, position: int, written: str, offset: int, prof: Profile) -> Any:
    """The lenient reader's dict, or the most useful error for a body no reader could read."""
    complaint: Any = _NOTHING
    for n, reading in enumerate(Reader(body, lenient=True).readings()):
        obj = decode_tree(reading, body)
        try:
            validate(obj, position, prof)
            return obj
        except TagValidationError:
            # A reading is a guess: a later one may split the strings elsewhere and fit the
            # schema. Keep the first complaint, and trust it only if it found the tag's shape.
            if complaint is _NOTHING and isinstance(obj, dict) and set(obj) == set(_TOP_KEYS):
                complaint = obj
        if n >= Reader.MAX_READINGS:
            break
    if complaint is not _NOTHING:
        return complaint
    strict = Reader(body, lenient=False)
    for obj in strict.readings():
        return decode_tree(obj, body)
    at = offset + max(strict.err_at, 0)  # an offset in the body as written, fence included
    line = written.count("\n", 0, at) + 1
    column = at - (written.rfind("\n", 0, at) + 1) + 1
    raise TagSyntaxError(
        f"cannot read the tag as a Python or JSON dict: {strict.err} (line {line}, column {column} of the tag)",
        position,
    )


# --------------------------------------------------------------------------------------------
# chart code as written -> chart code to run

_CODE_FENCE_HEAD = re.compile(r"\A\s*(`{3,}|~{3,})[\w+.#-]*[ \t]*\n")
_CODE_FENCE_TAIL = re.compile(r"\n[ \t]*(`{3,}|~{3,})\s*\Z")


def clean_code(code: str) -> str:
    """Chart code as the ``llmi`` profile runs it: a Markdown fence around it dropped, and
    leading indentation removed (LLM-I strips it too, but from the first line only, so
    indented code of several lines still fails there). Code that starts at its first column is
    kept exactly; escapes are left alone, the reader decoded them exactly once.

    >>> clean_code("```python\\n    x = 1\\n    if x:\\n        y = 2\\n```")
    'x = 1\\nif x:\\n    y = 2'
    """
    if "`" in code or "~" in code:
        m = _CODE_FENCE_HEAD.match(code)
        if m:
            code = code[m.end() :]
            tail = _CODE_FENCE_TAIL.search(code)
            if tail:
                code = code[: tail.start()]
            elif code.rstrip().endswith(m.group(1)):
                code = code.rstrip()[: -len(m.group(1))]
    if code[:1].isspace():  # as written it may not run: "unexpected indent"
        code = textwrap.dedent(code).lstrip()
    return code


# --------------------------------------------------------------------------------------------
# validate

_NOUN = {str: "a string", int: "an integer"}
_TOP_SHAPE = "a tag has exactly the keys 'source', 'description' and 'params'"
_SOURCE_LIST = ", ".join(map(repr, SOURCES[:-1])) + f" or {SOURCES[-1]!r}"


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


def validate(obj: Any, position: int = 0, profile: ProfileLike = None) -> ImageRequest:
    """Check a parsed tag dict against the schema and build its request; chart code is
    cleaned as ``profile`` says (``llmi.profiles``), and so are bools and blank strings.

    >>> validate({'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}).query
    'owl'
    >>> validate({'source': 'search', 'description': 'd', 'params': {'query': ''}}, profile="llmi-compat").query
    ''
    """
    prof = get_profile(profile)

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
    if not isinstance(source, str) or source not in SOURCE_TABLE:
        raise bad(f"unknown source {source!r}{_suggest(source, SOURCES)}; use one of {_SOURCE_LIST}")
    spec = SOURCE_TABLE[source]
    description = obj["description"]
    if not isinstance(description, str):
        raise bad(f"'description' must be a string, not {_type_name(description)}")
    params = obj["params"]
    if not isinstance(params, dict):
        raise bad(f"'params' must be a dict such as {spec.shape}, not {_type_name(params)}")
    for key in params:
        if key not in spec.types:
            raise bad(
                f"unexpected key {key!r}{_suggest(key, spec.types)} in the params of {_a(source)} tag; {source} takes {spec.shape}"
            )
    clean: dict[str, Any] = {}
    for param in spec.params:
        key = param.name
        if key not in params:
            raise bad(f"missing key {key!r} in the params of {_a(source)} tag; {source} takes {spec.shape}")
        val = params[key]
        if param.type is int:
            if isinstance(val, bool) and prof.bool_index:
                val = int(val)  # LLM-I: True is 1
            elif not isinstance(val, int) or isinstance(val, bool):
                raise bad(f"{key!r} must be {_NOUN[int]}, not {_type_name(val)}")
            if val < 0:
                raise bad(f"{key!r} must be 0 or more, not {val}")
        else:
            if not isinstance(val, str):
                raise bad(f"{key!r} must be {_NOUN[str]}, not {_type_name(val)}")
            if param.key == "code":
                val = sanitize_code(val) if prof.code_cleaning == "llmi" else clean_code(val)
            if not val.strip() and not prof.blank_params:
                raise bad(f"{key!r} is empty; {param.blank_hint}")
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
