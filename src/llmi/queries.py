"""Other queries for a search tag whose own query finds nothing.

A small writer model often writes a whole sentence as its query ("Write a short illustrated
guide to the water cycle"), which matches no picture, while the tag's description or the
sentence that introduces the picture names it plainly. Before a search is given up, the engine
tries, in order and each at most once:

1. the tag's description;
2. the key words of the query itself, when the query is a long sentence;
3. the key words of the sentence just before the tag.

Key words are the content words in their order (no stop words, no filler such as "image of"),
at most four: what a person would type into a search box.

>>> sentence_before("Kangaroos live in Australia. They hop on strong legs.\\n```\\n")
'Kangaroos live in Australia. They hop on strong legs.'
>>> key_words("Write a short illustrated guide to the water cycle, with a chart of yearly rainfall")
'water cycle yearly rainfall'
>>> key_words("The water cycle starts when the sun heats the ocean.")
'water cycle sun heats'
>>> [label for label, _ in alternatives("Write a guide to the water cycle with rain", "clouds and rain",
...                                     "Rain falls from clouds.")]
['description', 'query key words', 'sentence key words']
"""

from __future__ import annotations

import re

__all__ = ["alternatives", "key_words", "sentence_before"]

_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_FENCE_LINE = re.compile(r"\n?[ \t]*(`{3,}|~{3,})[\w+.#-]*[ \t]*\Z")
#: the words a search box does without: function words, and what every picture request says
_STOP = frozenset("""
a an the and or but nor of to in on at for with without from by as into onto over under about
above below between through during before after than then so such very too also just only even
is are was were be been being am do does did done doing have has had having can could will would
shall should may might must not no yes it its it's this that these those there here where when
which who whom whose what why how all any both each every few many more most much other some
same own our ours we us you your yours he him his she her hers they them their theirs i me my
mine one ones thing things way ways lot lots kind kinds sort part parts
image images picture pictures photo photos photograph illustration illustrations drawing
chart charts graph graphs diagram diagrams figure figures visual visuals view views scene
show shows showing shown depict depicts depicting display displays displaying illustrate
illustrates illustrating illustrated represent represents representing feature features
write writing written describe describes describing explain explains explaining tell telling
make makes making made create creates creating use uses using used let lets see seen look
looks looking like likes get gets got give gives given take takes took help helps find finds
short long brief simple quick little big small great good nice beautiful typical example
guide overview introduction detailed detail details style styled version type
become becomes became come comes came go goes went keep keeps kept call called known
start starts started begin begins began turn turns turned move moves moved run runs grow grows
live lives lived stay stays put puts set sets bring brings brought
""".split())
_MAX_WORDS = 4  # MiniLM (and a search box) match a few words best; more dilute them
_PRONOUN = re.compile(r"(they|it|this|these|those|he|she|its|their|there)\b", re.IGNORECASE)
_LONG_QUERY = 5  # words: a query at least this long is probably a sentence


def key_words(text: str, limit: int = _MAX_WORDS) -> str:
    """The content words of ``text``, lower-cased, in order, each once, at most ``limit``."""
    seen: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0).strip("'-").lower()
        if len(word) < 3 or word in _STOP or word in seen:
            continue
        seen.append(word)
        if len(seen) == limit:
            break
    return " ".join(seen)


def sentence_before(text: str, max_chars: int = 300) -> str:
    """The last sentence of ``text`` (the prose before a tag), with the one before it when
    the last is only a few words ("Here it is.") or starts with a pronoun ("They hop ...");
    an opening code fence is ignored."""
    body = _FENCE_LINE.sub("", text.rstrip()).rstrip()
    line = body[body.rfind("\n\n") + 2 :] if "\n\n" in body else body
    parts = [p.strip() for p in _SENTENCE_END.split(line.strip()) if p.strip()]
    if not parts:
        return ""
    chosen = parts[-1]
    if len(parts) > 1 and (len(key_words(chosen).split()) < 3 or _PRONOUN.match(chosen)):
        chosen = f"{parts[-2]} {chosen}"
    return chosen[-max_chars:]


def alternatives(query: str, description: str, sentence: str) -> list[tuple[str, str]]:
    """``(label, query)`` pairs to try after ``query``, in order, none repeating an earlier one."""
    tried = {_norm(query)}
    out: list[tuple[str, str]] = []
    candidates = [("description", description)]
    if len(_WORD.findall(query)) >= _LONG_QUERY:
        candidates.append(("query key words", key_words(query)))
    candidates.append(("sentence key words", key_words(sentence)))
    for label, text in candidates:
        norm = _norm(text)
        if norm and norm not in tried:
            tried.add(norm)
            out.append((label, text.strip()))
    return out


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())
