"""Reading ``<imgen>`` bodies that are not valid Python or JSON literals.

Used by ``llmi.tags`` only when the strict readers (a regex, ``ast.literal_eval``,
``json.loads``) fail. ``Reader`` is a backtracking reader that yields every complete reading of a
body, shortest strings first; ``decode_tree`` turns a reading's raw strings into text, decoding
code strings the way a model writing LLM-I's style meant them. See ``docs/tags.md``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["NAMES", "Reader", "decode_code", "decode_tree", "quiet_escape_warnings"]

NAMES = {"True": True, "true": True, "False": False, "false": False, "None": None, "null": None}


def quiet_escape_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: silence "invalid escape sequence" (model-written
    regexes such as ``"\\d+"``). Only these categories: ``catch_warnings`` is not thread-safe, and
    a race between two threads should at worst leave these warnings silenced, not every one."""
    warnings.simplefilter("ignore", SyntaxWarning)
    warnings.simplefilter("ignore", DeprecationWarning)


# --------------------------------------------------------------------------------------------
# The lenient reader


@dataclass(frozen=True)
class _Raw:
    """A string as written between its quotes (``src[start:end]``), decoded once the whole dict
    has been read (not per candidate: a long code string may have thousands of candidates)."""

    start: int
    end: int
    raw: bool  # an r'' string: no escapes


_WS = re.compile(r"\s*")
_EXTRA_BRACES = re.compile(r"[\s}]*")  # a model that miscounted its closing braces
_KEY = re.compile(r"""(?:'([^'\\\n]*)'|"([^"\\\n]*)"|([A-Za-z_]\w*))""")
_STR_OPEN = re.compile(r"""([rRuU]?)('''|\"\"\"|'|")""")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?(?![\w.])")
_NAME = re.compile(r"(True|False|None|true|false|null)(?!\w)")
# After a string that closes a value: '}', a ',' and the next key of the schema (or '}'), or the
# end. Only the schema's keys: chart code is full of dict literals ({'x': ..., 'y': ...}).
_AFTER_VALUE = re.compile(
    r"""\s*(?:\}|,\s*(?:\}|(['"]?)(?:source|description|params|query|prompt|code|img_index)\1\s*:)|\Z)"""
)


class _GiveUp(Exception):
    pass


class Reader:
    """A backtracking reader of one tag body.

    ``lenient``: a string ends at the first unescaped quote that is followed by what can follow a
    value (``}``, or ``,`` and a key), trying later quotes if the rest does not read; missing
    closing braces at the end are supplied. Strict: a string ends at its first unescaped quote.
    Failures are remembered furthest-first, for the error message.
    """

    MAX_TRIES = 10_000
    MAX_READINGS = 64
    MAX_DEPTH = 8
    MAX_KEYS = 64

    def __init__(self, src: str, lenient: bool) -> None:
        self.src, self.n, self.lenient = src, len(src), lenient
        self.tries = 0
        self.err_at, self.err = -1, "the tag cannot be read"

    def readings(self) -> Iterator[Any]:
        """Every complete reading of the body, shortest strings first."""
        try:
            for obj, end in self.value(0, 0):
                rest = self.src[end:]
                if not rest or rest.isspace() or (self.lenient and _EXTRA_BRACES.fullmatch(rest)):
                    yield obj
                    if not self.lenient:
                        return
                else:
                    self.fail(
                        _WS.match(self.src, end).end(), "unexpected text after the closing '}'"
                    )
        except (_GiveUp, RecursionError):
            self.err_at, self.err = (
                0,
                "the tag is too long or ambiguous to read; check its quotes and braces",
            )

    def fail(self, at: int, message: str) -> None:
        if at >= self.err_at:
            self.err_at, self.err = at, message

    def value(self, pos: int, depth: int) -> Iterator[tuple[Any, int]]:
        pos = _WS.match(self.src, pos).end()
        if pos >= self.n:
            self.fail(pos, "the tag ends where a value is expected")
            return
        if self.src[pos] == "{":
            yield from self.entries(pos + 1, pos, {}, depth + 1)
            return
        m = _STR_OPEN.match(self.src, pos)
        if m:
            yield from self.string(m)
            return
        m = _NUMBER.match(self.src, pos)
        if m:
            yield (float(m.group()) if m.group(1) or m.group(2) else int(m.group())), m.end()
            return
        m = _NAME.match(self.src, pos)
        if m:
            yield NAMES[m.group()], m.end()
            return
        self.fail(pos, "expected a value: a string in quotes, a number or a dict")

    def entries(
        self, pos: int, opened: int, acc: dict[Any, Any], depth: int
    ) -> Iterator[tuple[Any, int]]:
        if depth > self.MAX_DEPTH or len(acc) > self.MAX_KEYS:
            self.fail(pos, "the dict is nested too deeply or has too many keys")
            return
        src, n = self.src, self.n
        pos = _WS.match(src, pos).end()
        if pos < n and src[pos] == "}":
            yield acc, pos + 1
            return
        if pos >= n:
            if self.lenient:
                yield acc, pos
            else:
                self.fail(opened, "this '{' is never closed")
            return
        key_m = _KEY.match(src, pos)
        if key_m is None:
            self.fail(pos, "expected a key in quotes, such as 'source', or '}'")
            return
        key = next(g for g in key_m.groups() if g is not None)
        if key in acc:  # in a valid literal the last one wins; here it means a wrong split
            self.fail(pos, f"the key {key!r} appears twice")
            return
        colon = _WS.match(src, key_m.end()).end()
        if colon >= n or src[colon] != ":":
            self.fail(colon, f"expected ':' after the key {key!r}")
            return
        for val, end in self.value(colon + 1, depth):
            end = _WS.match(src, end).end()
            if end < n and src[end] == ",":
                yield from self.entries(end + 1, opened, {**acc, key: val}, depth)
            elif end < n and src[end] == "}":
                yield {**acc, key: val}, end + 1
            elif end >= n and self.lenient:
                yield {**acc, key: val}, end
            elif end >= n:
                self.fail(opened, "this '{' is never closed")
            else:
                self.fail(end, f"expected ',' or '}}' after the value of {key!r}")

    def string(self, m: re.Match[str]) -> Iterator[tuple[_Raw, int]]:
        src, quote, start = self.src, m.group(2), m.end()
        raw = m.group(1) in ("r", "R")
        at = start
        while True:
            j = src.find(quote, at)
            if j < 0:
                break
            at = j + 1
            k = j
            while k > start and src[k - 1] == "\\":
                k -= 1
            if (j - k) % 2:  # an escaped quote
                continue
            end = j + len(quote)
            if not self.lenient:
                yield _Raw(start, j, raw), end
                return
            if _AFTER_VALUE.match(src, end):
                self.tries += 1
                if self.tries > self.MAX_TRIES:
                    raise _GiveUp
                yield _Raw(start, j, raw), end
        self.fail(m.start(), "this string is never closed")


# --------------------------------------------------------------------------------------------
# Escapes in recovered strings

_ESCAPE = re.compile(
    r"""\\(?:(?P<c>[\\'"abfnrtv/\n])|x(?P<x>[0-9a-fA-F]{2})|u(?P<u>[0-9a-fA-F]{4})|U(?P<U>[0-9a-fA-F]{8})|N\{(?P<N>[^}\n]{1,80})\}|(?P<o>[0-7]{1,3}))"""
)
_CHAR = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "/": "/",
    "\n": "",
}


def _unescape(m: re.Match[str]) -> str:
    kind = m.lastgroup
    text = m.group(kind or 0)
    if kind == "c":
        return _CHAR[text]
    if kind == "N":
        import unicodedata

        try:
            return unicodedata.lookup(text)
        except KeyError:
            return m.group()
    code = int(text, 8 if kind == "o" else 16)
    return chr(code) if code <= 0x10FFFF else m.group()


def _decode(text: str) -> str:
    """Python (and JSON) string escapes; unknown escapes stay as written, like Python's."""
    if "\\" not in text:
        return text
    return _join_surrogates(_ESCAPE.sub(_unescape, text))


def _join_surrogates(text: str) -> str:
    """JSON writes astral characters as surrogate pairs; join them (lone ones stay)."""
    if _SURROGATE.search(text) is None:
        return text
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return text


def decode_code(text: str) -> str:
    """Decode a recovered code string.

    A model writing LLM-I's style escapes line breaks as ``\\n`` and leaves everything else as it
    is, so escapes inside the code's own string literals (``print('a\\nb')``, ``'It\\'s'``)
    belong to the code: they are kept as written and only escapes outside them are decoded.
    If that reading does not compile but decoding every escape does, the latter is used.
    """
    plain = _decode(text)
    if "\\" not in text:
        return plain
    verbatim = _join_surrogates(_decode_outside_strings(text))
    if verbatim == plain or (not _compiles(verbatim) and _compiles(plain)):
        return plain
    return verbatim


_SURROGATE = re.compile("[\ud800-\udfff]")
_EV_TOP = re.compile(r"""'''|\"\"\"|['"#\\]""")
_EV_COMMENT = re.compile(r"[\n\r\\]")
_EV_ONE = {q: re.compile(rf"[{q}\\\n\r]") for q in "'\""}
_EV_THREE = {q * 3: re.compile(rf"{q * 3}|\\") for q in "'\""}


def _decode_outside_strings(text: str) -> str:
    """Decode escapes in ``text`` except inside the Python string literals it contains."""
    out: list[str] = []
    state = ""  # "", "#", a quote, or a triple quote
    i = 0
    while True:
        if not state:
            m = _EV_TOP.search(text, i)
        elif state == "#":
            m = _EV_COMMENT.search(text, i)
        elif len(state) == 1:
            m = _EV_ONE[state].search(text, i)
        else:
            m = _EV_THREE[state].search(text, i)
        if m is None:
            out.append(text[i:])
            return "".join(out)
        token, at = m.group(), m.start()
        if token == "\\":
            if state and state != "#":  # inside the code's string: keep the escape as written
                out.append(text[i : at + 2])
                i = at + 2
                continue
            escape = _ESCAPE.match(text, at)
            if escape is None:
                out.append(text[i : at + 1])
                i = at + 1
                continue
            char = _unescape(escape)
            out += (text[i:at], char)
            i = escape.end()
            if state == "#" and char in ("\n", "\r"):
                state = ""
            continue
        out.append(text[i : m.end()])
        i = m.end()
        if not state:
            state = token
        else:  # the string or comment ends (a real line break also ends a broken string)
            state = ""


def _compiles(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            quiet_escape_warnings()
            compile(code, "<tag>", "exec", dont_inherit=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "does not compile"
        return False


def decode_tree(obj: Any, src: str, key: Any = None) -> Any:
    """A reading with its raw strings decoded (``src`` is the body the reading came from)."""
    if isinstance(obj, dict):
        return {k: decode_tree(v, src, k) for k, v in obj.items()}
    if isinstance(obj, _Raw):
        text = src[obj.start : obj.end]
        if obj.raw:
            return text
        return decode_code(text) if key == "code" else _decode(text)
    return obj
