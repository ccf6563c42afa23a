"""A GBNF grammar that lets a writer's prose run free but makes every ``<imgen>`` tag well formed.

The shape it enforces is simple enough for a 135M-parameter model to follow:
a few lines of prose, then a tag on its own line, then more prose, up to ``max_tags`` times.
Prose may not contain ``<``, so the only tags in the answer are the grammar's, and each one
is LLM-I's Python-literal dict with a known source and exactly that source's params keys.
Prose holds no backticks either (a small model otherwise wraps its tags in code fences, which
judges punish), and every line of it ends a sentence (``.``, ``!``, ``?``, or ``:`` before a
picture), so no paragraph stops mid-sentence.

>>> g = tag_grammar(sources=("search",))
>>> "'query': " in g and "'prompt': " not in g
True
"""

from __future__ import annotations

from typing import Sequence

from ..tags import PARAM_TYPES, SOURCES

__all__ = ["tag_grammar"]

def tag_grammar(
    *,
    sources: Sequence[str] = SOURCES,
    n_inputs: int = 0,
    min_tags: int = 1,
    max_tags: int = 3,
    max_lines: int = 2,
    line_chars: int = 480,
    text_chars: int = 120,
    code_chars: int = 800,
    whole_sentences: bool = True,
) -> str:
    """GBNF text for answers with ``min_tags..max_tags`` tags, each followed by prose.

    An ``edit`` tag may only name an image that exists when it is written: one of the
    ``n_inputs`` input images or an earlier tag's image, so the k-th tag (from 0) gets
    ``img_index`` below ``n_inputs + k`` (and cannot be an edit when that is 0).
    Lengths are bounded so the model must move on: a prose line ends within ``line_chars``
    characters (at a sentence end), a description, query or prompt within ``text_chars``,
    chart code within ``code_chars``. ``whole_sentences=False`` lets a prose line end anywhere
    and hold backticks (llmi's grammar before sentence ends were enforced; for comparisons).
    """
    unknown = [s for s in sources if s not in PARAM_TYPES]
    if unknown or not sources:
        raise ValueError(f"sources must be a non-empty subset of {SOURCES}, got {list(sources)}")
    if not 0 <= min_tags <= max_tags or max_tags < 1:
        raise ValueError("need 0 <= min_tags <= max_tags and max_tags >= 1")
    if sources == ("edit",) and n_inputs == 0:
        raise ValueError("with only 'edit' allowed the first tag needs an input image")

    rules: dict[str, str] = {"root": "prose " + _sections(0, min_tags, max_tags)}
    for k in range(max_tags):
        # Section k: the k-th tag, then prose; each knows how many images exist before it.
        choices = [s for s in sources if s != "edit" or n_inputs + k > 0]
        rules[f"section{k}"] = f'"<imgen>{{\'source\': " ({" | ".join(_source_rule_name(s, k) for s in choices)}) "}}</imgen>\\n" prose'
        for source in choices:
            params = ", ".join(
                f"'{key}': \" {_value_rule(source, key, typ, k)} \""
                for key, typ in PARAM_TYPES[source].items()
            )
            # The literal pieces between rule references, e.g.  ", 'params': {'query': " str "}"
            rules[_source_rule_name(source, k)] = (
                f"\"'{source}', 'description': \" str \", 'params': {{{params}}}\""
            )
        if "edit" in choices:
            rules[f"index{k}"] = " | ".join(f'"{i}"' for i in range(n_inputs + k))
    rules.update({
        # Each line is one paragraph that ends a sentence; an optional blank line after it keeps
        # Markdown happy.
        "prose": f"line{{1,{max_lines}}}",
        "line": (f'[^<`\\n \\t] [^<`\\n]{{0,{line_chars - 3}}} [.!?:] ["\')]? "\\n" "\\n"?' if whole_sentences
                 else f'[^<\\n \\t] [^<\\n]{{0,{line_chars - 1}}} "\\n" "\\n"?'),
        # A string literal in single quotes; no "<" so "</imgen>" cannot appear inside a tag.
        "str": f'"\'" strchar{{1,{text_chars}}} "\'"',
        "strchar": "[^'\\\\\\n<] | \"\\\\'\"",
        "codestr": f'"\'" codechar{{1,{code_chars}}} "\'"',
        "codechar": "[^'\\\\\\n<] | \"\\\\n\" | \"\\\\'\" | \"\\\\\\\\\"",
    })
    return "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"


def _sections(k: int, min_tags: int, max_tags: int) -> str:
    """``section0 (section1 (section2)?)?`` with the first ``min_tags`` required."""
    if k >= max_tags:
        return ""
    rest = _sections(k + 1, min_tags, max_tags)
    inner = f"section{k}" + (f" {rest}" if rest else "")
    return inner if k < min_tags else f"({inner})?"


def _value_rule(source: str, key: str, typ: type, k: int) -> str:
    if typ is int:
        return f"index{k}"
    return "codestr" if source == "code" else "str"


def _source_rule_name(source: str, k: int) -> str:
    return f"{source}{k}"
