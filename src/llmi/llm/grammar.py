"""A GBNF grammar that lets a writer's prose run free but makes every ``<imgen>`` tag well formed.

The shape it enforces is simple enough for a 135M-parameter model to follow:
a few lines of prose, then a tag on its own line, then more prose, up to ``max_tags`` times.
Prose may not contain ``<``, so the only tags in the answer are the grammar's, and each one
is LLM-I's Python-literal dict with a known source and exactly that source's params keys.

>>> g = tag_grammar(sources=("search",))
>>> "'query': " in g and "'prompt': " not in g
True
"""

from __future__ import annotations

from typing import Sequence

from ..tags import PARAM_TYPES, SOURCES

__all__ = ["tag_grammar"]

# The key order the LLM-I system prompt shows; params keys follow tags.PARAM_TYPES.
_PARAM_RULE = {str: "str", int: "index"}


def tag_grammar(
    *,
    sources: Sequence[str] = SOURCES,
    min_tags: int = 1,
    max_tags: int = 3,
    max_lines: int = 3,
    line_chars: int = 400,
    text_chars: int = 120,
    code_chars: int = 800,
) -> str:
    """GBNF text for answers with ``min_tags..max_tags`` tags, each followed by prose.

    Lengths are bounded so the model must move on: a prose line ends within ``line_chars``
    characters, a description, query or prompt within ``text_chars``, chart code within
    ``code_chars``.
    """
    unknown = [s for s in sources if s not in PARAM_TYPES]
    if unknown or not sources:
        raise ValueError(f"sources must be a non-empty subset of {SOURCES}, got {list(sources)}")
    if not 0 <= min_tags <= max_tags or max_tags < 1:
        raise ValueError("need 0 <= min_tags <= max_tags and max_tags >= 1")

    rules = {
        "root": f"prose section{{{min_tags},{max_tags}}}",
        "section": 'tag "\\n" prose',
        # Each line is one paragraph; an optional blank line after it keeps Markdown happy.
        "prose": f'line{{1,{max_lines}}}',
        "line": f'[^<\\n \\t] [^<\\n]{{0,{line_chars - 1}}} "\\n" "\\n"?',
        "tag": '"<imgen>{\'source\': " body "}</imgen>"',
        "body": " | ".join(_source_rule_name(s) for s in sources),
        # A string literal in single quotes; no "<" so "</imgen>" cannot appear inside a tag.
        "str": f'"\'" strchar{{1,{text_chars}}} "\'"',
        "strchar": "[^'\\\\\\n<] | \"\\\\'\"",
        "codestr": f'"\'" codechar{{1,{code_chars}}} "\'"',
        "codechar": "[^'\\\\\\n<] | \"\\\\n\" | \"\\\\'\" | \"\\\\\\\\\"",
        "index": "[0-9] | [1-9] [0-9]",
    }
    for source in sources:
        params = ", ".join(
            f"'{key}': \" {('codestr' if source == 'code' else _PARAM_RULE[typ])} \""
            for key, typ in PARAM_TYPES[source].items()
        )
        # The literal pieces between the rule references, e.g.  ", 'params': {'query': " str "}"
        rules[_source_rule_name(source)] = (
            f"\"'{source}', 'description': \" str \", 'params': {{{params}}}\""
        )
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


def _source_rule_name(source: str) -> str:
    return f"src-{source}"
