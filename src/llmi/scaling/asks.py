"""Asking the writer for one small thing: a search query, repaired code, a specific prompt, a
revised paragraph.

The writer that wrote the answer is asked again, with one of the prompts in
``llmi/scaling/prompts/``. An endpoint writer answers freely and its reply is cleaned (a code
fence, a "Query:" label, quotes around a phrase are removed). The embedded writer's tag grammar
would make it write tags, so it is asked through a sibling ``LocalWriter`` that shares the
loaded model but decodes under a grammar for the kind of reply wanted: one line, lines of code,
or paragraphs of prose without tags.

>>> clean("line", 'Query: "red kangaroo"\\n')
'red kangaroo'
>>> clean("code", "```python\\nplt.plot([1, 2])\\n```")
'plt.plot([1, 2])'
>>> clean("prose", "Owls hunt <imgen>{}</imgen>at night.") is None
True
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Literal

from ..errors import WriterError
from ..llm.base import Message

if TYPE_CHECKING:  # pragma: no cover
    from ..llm.base import Sampling, Writer

__all__ = ["Kind", "ask", "clean", "prompt"]

Kind = Literal["line", "code", "prose"]

_MAX_TOKENS = {"line": 64, "code": 700, "prose": 400}
# GBNF for the embedded writer: replies of each kind, bounded so the model must stop
_GRAMMARS = {
    "line": 'root ::= [^<\\n\\t ] [^<\\n]{1,200} "\\n"?\n',
    "code": 'root ::= cline{1,40}\ncline ::= [^`\\n] [^`\\n]{0,160} "\\n"\n',
    "prose": 'root ::= pline{1,4}\npline ::= [^<\\n\\t ] [^<\\n`]{0,600} "\\n" "\\n"?\n',
}
_FENCED = re.compile(r"```[\w+.-]*[ \t]*\n(.*?)(?:```|\Z)", re.S)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:new |better |revised |rewritten |specific )?(?:search )?"
                    r"(?:query|prompt|paragraph|answer)(?:\*\*)?\s*:\s*", re.I)
_MARKUP = re.compile(r"<\s*/?\s*(imgen|image|fail_to_generate_image)\b", re.I)


def prompt(name: str) -> str:
    """One of the shipped ask prompts (``search_query``, ``code_repair``, ...)."""
    return resources.files(__package__).joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


def clean(kind: Kind, reply: str) -> str | None:
    """The usable part of a reply of ``kind``; ``None`` when nothing usable is left."""
    text = (reply or "").replace("\r\n", "\n")
    text = re.sub(r"<think>.*?(</think>|\Z)", "", text, flags=re.S)
    if kind == "code":
        fenced = _FENCED.search(text)
        code = (fenced.group(1) if fenced else text).strip("\n")
        return code if code.strip() else None
    if _MARKUP.search(text):
        return None  # a reply that writes tags or markers would change the document's pictures
    if kind == "line":
        line = next((ln for ln in text.split("\n") if ln.strip()), "")
        line = _LABEL.sub("", line).strip().strip("`'\"").strip()
        return line[:300] or None
    prose = _LABEL.sub("", text.strip()).strip()
    return prose or None


def _helper(writer: "Writer", kind: Kind) -> "Writer":
    """The writer to ask for ``kind``: an embedded one decodes under that kind's grammar."""
    from ..llm.local import LocalWriter

    inner = getattr(writer, "_writer", writer)  # a MeteredWriter counts; the model is the inner one's
    if not isinstance(inner, LocalWriter) or not inner.grammar:
        return writer
    # a copy keeps every setting (weights, context, threads, penalties), so it shares the loaded model
    sibling = copy.copy(inner)
    sibling.grammar, sibling._grammars = _GRAMMARS[kind], {}
    if writer is inner:
        return sibling
    from .costs import MeteredWriter

    return MeteredWriter(sibling, writer._meter)  # type: ignore[attr-defined]


async def ask(writer: "Writer", kind: Kind, system: str, user: str, sampling: "Sampling") -> str | None:
    """The writer's cleaned reply of ``kind``, or ``None`` (a writer error counts as no reply:
    the stage records it and goes on)."""
    helper = _helper(writer, kind)
    settings = replace(sampling, max_tokens=min(sampling.max_tokens, _MAX_TOKENS[kind]) if kind != "code"
                       else max(sampling.max_tokens, _MAX_TOKENS[kind]), temperature=min(sampling.temperature, 0.3))
    try:
        reply = await helper.complete((Message("system", system), Message("user", user)), settings)
    except WriterError:
        return None
    return clean(kind, reply)
