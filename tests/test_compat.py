"""The ``llmi-compat`` profile against LLM-I's rules, case by case.

Each case is an answer and what LLM-I's released code makes of it, written out by hand from the
rules (``docs/compat.md``; the shared LLMI-SEMANTICS notes §1-5): the processed text a judge
sees, the statistics dict, and for every matched tag whether it was valid, counted, and made an
image. Tool outcomes are scripted: a tool fails exactly when its query, prompt or code contains
``FAIL`` (``llmi.testing.LatencyTool(fail_if=...)``), so every outcome is known in advance.

Per-tag codes: ``+`` valid and made; ``-`` valid (LLM-I's validity rules, ``0 <= img_index <
M + T`` included), counted, failed: the tool failed, or an edit of a failed image, of itself,
of a later tag or of a tag that never ran; ``x`` invalid or unreadable, not counted; ``!``
invalid but counted as a failed edit (LLM-I's scheduler never runs it: an ``img_index``
``int()`` cannot read or out of range, or an image that never ran).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from llmi.engine import Engine
from llmi.image import ImageData
from llmi.profiles import LLMI_COMPAT, remove_thinking
from llmi.tags import parse
from llmi.testing import LatencyTool

IMG, FAIL = "<image>", "<fail_to_generate_image>"


def T(body: str) -> str:
    return f"<imgen>{body}</imgen>"


def B(source: str, params: str, description: str = "'d'") -> str:
    """A body as models write it: LLM-I's key order, single spaces."""
    return f"{{'source': '{source}', 'description': {description}, 'params': {{{params}}}}}"


def S(query: str = "owl", d: str = "d") -> str:
    return T(B("search", f"'query': {query!r}", repr(d)))


def D(prompt: str = "a fox") -> str:
    return T(B("diffusion", f"'prompt': {prompt!r}"))


def C(code: str = "plt.plot([1, 2])") -> str:
    """A code tag whose code is written raw between single quotes (``\\n`` as two characters)."""
    return T(B("code", f"'code': '{code}'"))


def E(index: object = 0, prompt: str = "make it blue") -> str:
    return T(B("edit", f"'img_index': {index}, 'prompt': {prompt!r}"))


@dataclass(frozen=True)
class Case:
    name: str
    answer: str
    judge: str  # LLM-I's processed text
    stats: str = ""  # "search 1/2 edit 0/1": success/total of the tools used
    tags: str = ""  # one code per matched tag (see the module docstring)
    inputs: int = 0  # input images (M)
    code: tuple[str, ...] = ()  # the code each valid code tag runs, in order
    slots: tuple[str, ...] = ()  # the matched tags' text, where the boundaries are the point


SINE = (
    "x = np.linspace(0, 4 * np.pi, 200)\\ny = np.sin(x)\\nplt.plot(x, y)\\n"
    "plt.title(\"Sine\")\\nplt.axhline(y=0, color='k', linestyle='--')"
)
SINE_RUN = (
    "x = np.linspace(0, 4 * np.pi, 200)\ny = np.sin(x)\nplt.plot(x, y)\n"
    "plt.title(\"Sine\")\nplt.axhline(y=0, color='k', linestyle='--')"
)
SQ = T("{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}")

CASES: list[Case] = [
    # -- no tags, one tag per source ------------------------------------------------------
    Case("empty answer", "", ""),
    Case("plain prose", "Just words.\n\nTwo paragraphs.", "Just words.\n\nTwo paragraphs."),
    Case("prose with angle brackets", "a < b and <b>bold</b>", "a < b and <b>bold</b>"),
    Case("one search", f"An owl: {S()} done.", f"An owl: {IMG} done.", "search 1/1", "+"),
    Case("one failed search", f"An owl: {S('FAIL')} done.", f"An owl: {FAIL} done.", "search 0/1", "-"),
    Case("one diffusion", f"{D()}", IMG, "diffusion 1/1", "+"),
    Case("one failed diffusion", f"x {D('FAIL fox')}", f"x {FAIL}", "diffusion 0/1", "-"),
    Case("one chart", f"Chart:\n{C()}\n", f"Chart:\n{IMG}\n", "code 1/1", "+", code=("plt.plot([1, 2])",)),
    Case("one failed chart", f"{C('FAIL()')}", FAIL, "code 0/1", "-", code=("FAIL()",)),
    Case("edit of the input", f"{E(0)}", IMG, "edit 1/1", "+", inputs=1),
    Case("failed edit of the input", f"{E(0, 'FAIL')}", FAIL, "edit 0/1", "-", inputs=1),
    Case(
        "all four tools",
        f"# Owls\n{S()}\n{D()}\n{C()}\n{E(1)}\nEnd.",
        f"# Owls\n{IMG}\n{IMG}\n{IMG}\n{IMG}\nEnd.",
        "search 1/1 diffusion 1/1 code 1/1 edit 1/1",
        "++++",
    ),
    Case(
        "all four tools, two failing",
        f"{S('FAIL')} {D()} {C('FAIL')} {E(0)}",
        f"{FAIL} {IMG} {FAIL} {IMG}",
        "search 0/1 diffusion 1/1 code 0/1 edit 1/1",
        "-+-+",
        inputs=1,
        code=("FAIL",),
    ),
    Case(
        "a third of the searches",
        f"{S('FAIL a')}{S('b')}{S('FAIL c')}",
        f"{FAIL}{IMG}{FAIL}",
        "search 1/3",
        "-+-",
    ),
    Case("two thirds of the searches", f"{S('a')}{S('b')}{S('FAIL c')}", f"{IMG}{IMG}{FAIL}", "search 2/3", "++-"),
    Case(
        "one of six diagrams",
        "".join(C("FAIL" if i else "plt.plot([0])") for i in range(6)),
        IMG + FAIL * 5,
        "code 1/6",
        "+-----",
        code=("plt.plot([0])",) + ("FAIL",) * 5,
    ),
    Case(
        "five of seven prompts",
        "".join(D("FAIL" if i in (2, 5) else f"p{i}") for i in range(7)),
        IMG * 2 + FAIL + IMG * 2 + FAIL + IMG,
        "diffusion 5/7",
        "++-++-+",
    ),
    Case("the same search twice", f"{S()} and {S()}", f"{IMG} and {IMG}", "search 2/2", "++"),
    Case("a tag alone", SQ, IMG, "search 1/1", "+"),
    Case("tags back to back", SQ + SQ + SQ, IMG * 3, "search 3/3", "+++"),
    # -- finding tags -----------------------------------------------------------------------
    Case("padding on both sides is no tag", f"a <imgen> {SQ[7:-8]} </imgen> b", f"a <imgen> {SQ[7:-8]} </imgen> b"),
    Case("padding before the brace is no tag", "<imgen> {'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>",
         "<imgen> {'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"),
    Case("padding after the brace is no tag", "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}} </imgen>",
         "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}} </imgen>"),
    Case("a newline inside the tag is no tag", "<imgen>\n{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}\n</imgen>",
         "<imgen>\n{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}\n</imgen>"),
    Case("a padded tag does not take an index", f"<imgen> {{}} </imgen>{S()}{E(0)}", f"<imgen> {{}} </imgen>{IMG}{IMG}",
         "search 1/1 edit 1/1", "++"),
    Case("a closer inside a string is read whole", T(B("search", "'query': 'a </imgen> b'")), IMG, "search 1/1", "+",
         slots=(T(B("search", "'query': 'a </imgen> b'")),)),
    Case("an opener inside a string is read whole", T(B("search", "'query': 'a <imgen> b'")), IMG, "search 1/1", "+"),
    Case(
        "a brace and closer inside a string end the tag early",
        T(B("search", "'query': 'a}</imgen>b'")),
        FAIL + "b'}}</imgen>",
        "",
        "x",
        slots=("<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'a}</imgen>",),
    ),
    Case(
        "a padded closer swallows the next tag",
        "A " + "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}} </imgen> and " + SQ + " end",
        f"A {FAIL} end",
        "",
        "x",
        slots=("<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}} </imgen> and " + SQ,),
    ),
    Case(
        "a closer on its own line swallows the next tag",
        "<imgen>{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'p'}}\n</imgen>\ntext\n" + S(),
        FAIL,
        "",
        "x",
    ),
    Case(
        "the swallowed tags do not take indices",
        "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'a'}} </imgen>" + SQ + S("b") + E(1),
        FAIL + IMG + IMG,
        "search 1/1 edit 1/1",
        "x++",
    ),
    Case("an unterminated tag at the end is text", f"A {SQ[:-8]}", f"A {SQ[:-8]}"),
    Case("an opener without a body is text", "A <imgen> and more", "A <imgen> and more"),
    Case(
        "an unterminated tag swallows the next one",
        "<imgen>{'source': 'search', 'description': 'd' and then " + SQ + " end",
        FAIL + " end",
        "",
        "x",
    ),
    Case("a doubled opener", "<imgen>" + SQ, "<imgen>" + IMG, "search 1/1", "+"),
    Case("a stray closer is text", "done </imgen> here " + SQ, "done </imgen> here " + IMG, "search 1/1", "+"),
    Case("an empty tag is text", "<imgen></imgen>", "<imgen></imgen>"),
    Case("an empty dict is an uncounted failure", "<imgen>{}</imgen>", FAIL, "", "x"),
    Case("a blank dict is an uncounted failure", "<imgen>{ }</imgen>", FAIL, "", "x"),
    Case("upper-case tags are text", SQ.replace("imgen", "IMGEN"), SQ.replace("imgen", "IMGEN")),
    Case("an attribute in the opener is text", SQ.replace("<imgen>", '<imgen id="1">'), SQ.replace("<imgen>", '<imgen id="1">')),
    Case("a fence around the tag stays", f"```\n{SQ}\n```", f"```\n{IMG}\n```", "search 1/1", "+"),
    Case("a python fence around a chart stays", f"```python\n{C()}\n```\nok", f"```python\n{IMG}\n```\nok", "code 1/1", "+"),
    Case("backticks around the tag stay", f"see `{SQ}`", f"see `{IMG}`", "search 1/1", "+"),
    Case("a fence inside the tag is no tag", "<imgen>```" + SQ[7:-8] + "```</imgen>", "<imgen>```" + SQ[7:-8] + "```</imgen>"),
    Case("a fence around two tags stays", f"~~~\n{SQ}\n{S('b')}\n~~~", f"~~~\n{IMG}\n{IMG}\n~~~", "search 2/2", "++"),
    # -- thinking ---------------------------------------------------------------------------
    Case("a think block is removed", f"<think>plan {SQ}</think>Answer {D()}", f"Answer {IMG}", "diffusion 1/1", "+"),
    Case("several think blocks are removed", "<think>a</think>x<think>b\nc</think>y", "xy"),
    Case("an unclosed think block stays", f"<think>plan {SQ}", f"<think>plan {IMG}", "search 1/1", "+"),
    Case("a closer without think stays", f"plan {SQ}</think>answer", f"plan {IMG}</think>answer", "search 1/1", "+"),
    Case("tags after thinking are numbered from 0", f"<think>{SQ}</think>{D()}{E(0)}", f"{IMG}{IMG}",
         "diffusion 1/1 edit 1/1", "++"),
    Case("nested think blocks end at the first closer", "<think><think>a</think>b</think>c", "b</think>c"),
    Case("upper-case think stays", "<THINK>a</THINK>b", "<THINK>a</THINK>b"),
    Case("an answer that is only thinking", "<think>all of it</think>", ""),
    Case("text around the thinking stays", "Intro <think>x</think> outro", "Intro  outro"),
    # -- reading the body ---------------------------------------------------------------------
    Case("double quotes are a Python literal too",
         T('{"source": "search", "description": "d", "params": {"query": "owl"}}'), IMG, "search 1/1", "+"),
    Case("JSON true is unreadable",
         T('{"source": "edit", "description": "d", "params": {"img_index": true, "prompt": "p"}}'), FAIL, "", "x", inputs=1),
    Case("JSON null is unreadable", T('{"source": "search", "description": null, "params": {"query": "q"}}'), FAIL, "", "x"),
    Case("keys in another order", T("{'params': {'query': 'owl'}, 'description': 'd', 'source': 'search'}"), IMG,
         "search 1/1", "+"),
    Case("a trailing comma", T("{'source': 'search', 'description': 'd', 'params': {'query': 'owl',},}"), IMG,
         "search 1/1", "+"),
    Case("escaped quotes in a query", T(B("search", "'query': 'owl\\'s nest'")), IMG, "search 1/1", "+"),
    Case("an unescaped quote in a query is unreadable", T(B("search", "'query': 'owl's nest'")), FAIL, "", "x"),
    Case("a comment inside the dict", T("{'source': 'search', # a comment\n 'description': 'd', 'params': {'query': 'q'}}"),
         IMG, "search 1/1", "+"),
    Case("a call inside the dict is unreadable", T(B("search", "'query': str(1)")), FAIL, "", "x"),
    Case("a set is unreadable", "<imgen>{'search', 'owl'}</imgen>", FAIL, "", "x"),
    Case("duplicate keys: the last wins", T("{'source': 'image', 'source': 'search', 'description': 'd', 'params': {'query': 'q'}}"),
         IMG, "search 1/1", "+"),
    Case("a unicode escape in a query", T(B("search", "'query': '\\u732b'")), IMG, "search 1/1", "+"),
    Case("Chinese prose and query", f"猫头鹰：{S('猫头鹰')}。", f"猫头鹰：{IMG}。", "search 1/1", "+"),
    Case("emoji in a prompt", f"🦉 {D('an owl 🦉')}", f"🦉 {IMG}", "diffusion 1/1", "+"),
    Case("CRLF line endings", f"a\r\n{SQ}\r\nb", f"a\r\n{IMG}\r\nb", "search 1/1", "+"),
    Case("a body across lines", T("{'source': 'search',\r\n 'description': 'd',\n 'params': {'query': 'q'}}"), IMG,
         "search 1/1", "+"),
    # -- chart code -------------------------------------------------------------------------
    Case("the prompt's sine example is read raw", f"Sine:\n{C(SINE)}\n", f"Sine:\n{IMG}\n", "code 1/1", "+", code=(SINE_RUN,)),
    Case("nested braces in code", C("d = {\\'a\\': {\\'b\\': 1}}\\nplt.bar([1], [2])"), IMG, "code 1/1", "+",
         code=("d = {'a': {'b': 1}}\nplt.bar([1], [2])",)),
    Case("dict literals in raw code", C("d = {'a': 1}\\nplt.bar(list(d), list(d.values()))"), IMG, "code 1/1", "+",
         code=("d = {'a': 1}\nplt.bar(list(d), list(d.values()))",)),
    Case("raw code with a closing quote-brace inside", C("plt.title('}}')\\nplt.plot([1])"), IMG, "code 1/1", "+",
         code=("plt.title('}}')\nplt.plot([1])",)),
    Case("an apostrophe in the description breaks the raw reading",
         T(B("code", f"'code': '{SINE}'", "'the sine's wave'")), FAIL, "", "x"),
    Case("raw code needs LLM-I's key order",
         T(f"{{'description': 'd', 'source': 'code', 'params': {{'code': '{SINE}'}}}}"), FAIL, "", "x"),
    Case("raw code needs single spaces",
         T(f"{{'source': 'code',  'description': 'd', 'params': {{'code': '{SINE}'}}}}"), FAIL, "", "x"),
    Case("a valid literal needs no raw reading",
         T("{'source': 'code',  'description': 'd', 'params': {'code': 'plt.plot([3])'}}"), IMG, "code 1/1", "+",
         code=("plt.plot([3])",)),
    Case("double-quoted code is a literal, unescaped twice",
         T('{"source": "code", "description": "d", "params": {"code": "plt.title(\\"a\\\\nb\\")"}}'), IMG, "code 1/1", "+",
         code=('plt.title("a\nb")',)),
    Case("an escaped backslash in raw code is decoded once", C('print("a\\\\nb")\\nplt.plot([1])'), IMG, "code 1/1", "+",
         code=('print("a\\nb")\nplt.plot([1])',)),
    Case("Chinese in literal code becomes mojibake",
         T('{"source": "code", "description": "d", "params": {"code": "plt.title(\'温度\')"}}'), IMG, "code 1/1", "+",
         code=("plt.title('æ¸©åº¦')",)),
    Case("a fence inside the code string", T(B("code", "'code': '```python\\nplt.plot([1])\\n```'")), IMG, "code 1/1", "+",
         code=("\nplt.plot([1])\n",)),
    Case("a Python fence of any case", T(B("code", "'code': '```PYTHON\\nplt.plot([1])```'")), IMG, "code 1/1", "+",
         code=("\nplt.plot([1])",)),
    Case("a py fence leaves its word", T(B("code", "'code': '```py\\nplt.plot([1])\\n```'")), IMG, "code 1/1", "+",
         code=("py\nplt.plot([1])\n",)),
    Case("leading indentation is stripped", C("    plt.plot([1])"), IMG, "code 1/1", "+", code=("plt.plot([1])",)),
    Case("only the first line loses its indentation", C("  x = 1\\n  plt.plot([x])"), IMG, "code 1/1", "+",
         code=("x = 1\n  plt.plot([x])",)),
    Case("Chinese in raw code becomes mojibake", C("plt.title(\"温度\")"), IMG, "code 1/1", "+",
         code=("plt.title(\"æ¸©åº¦\")",)),
    Case("Chinese in a description and in raw code", T(B("code", "'code': 'plt.title(\"温度\")'", "'温度'")), IMG,
         "code 1/1", "+", code=("plt.title(\"æ¸©åº¦\")",)),
    Case("a tab escape in raw code", C("for i in [1]:\\n\\tplt.plot([i])"), IMG, "code 1/1", "+",
         code=("for i in [1]:\n\tplt.plot([i])",)),
    Case("an unknown escape in raw code stays", C("import re\\nre.compile(\"\\d+\")\\nplt.plot([1])"), IMG, "code 1/1", "+",
         code=("import re\nre.compile(\"\\d+\")\nplt.plot([1])",)),
    Case("a named escape in raw code", C("plt.title(\"30\\N{DEGREE SIGN}\")"), IMG, "code 1/1", "+",
         code=("plt.title(\"30°\")",)),
    Case("a truncated hex escape falls back to four replacements", C("s = \"\\x4\"\\nplt.plot([1])"), IMG, "code 1/1", "+",
         code=("s = \"\\x4\"\nplt.plot([1])",)),
    Case("empty code is valid", C(""), IMG, "code 1/1", "+", code=("",)),
    Case("blank code is valid", C("   "), IMG, "code 1/1", "+", code=("",)),
    Case("one brace too many is unreadable", T(B("code", "'code': 'plt.plot([1])'") + "}"), FAIL, "", "x"),
    Case("code that names a closer ends early", C("plt.title(\"}</imgen>\")"), FAIL + "\")'}}</imgen>", "", "x"),
    # -- validity -----------------------------------------------------------------------------
    Case("an empty query is valid", S(""), IMG, "search 1/1", "+"),
    Case("a blank prompt is valid", D("   "), IMG, "diffusion 1/1", "+"),
    Case("an empty edit prompt is valid", E(0, ""), IMG, "edit 1/1", "+", inputs=1),
    Case("an empty description is valid", S("q", ""), IMG, "search 1/1", "+"),
    Case("a numeric description is not counted", T(B("search", "'query': 'q'", "3")), FAIL, "", "x"),
    Case("a missing description is not counted", T("{'source': 'search', 'params': {'query': 'q'}}"), FAIL, "", "x"),
    Case("an extra top-level key is not counted",
         T("{'source': 'search', 'description': 'd', 'params': {'query': 'q'}, 'style': 'x'}"), FAIL, "", "x"),
    Case("missing params are not counted", T("{'source': 'diffusion', 'description': 'd'}"), FAIL, "", "x"),
    Case("params as a list are not counted", T("{'source': 'search', 'description': 'd', 'params': ['q']}"), FAIL, "", "x"),
    Case("an extra param is not counted", T(B("search", "'query': 'q', 'n': 3")), FAIL, "", "x"),
    Case("a misspelt param is not counted", T(B("search", "'querry': 'q'")), FAIL, "", "x"),
    Case("a numeric query is not counted", T(B("search", "'query': 7")), FAIL, "", "x"),
    Case("a bytes prompt is not counted", T(B("diffusion", "'prompt': b'p'")), FAIL, "", "x"),
    Case("a float prompt is not counted", T(B("diffusion", "'prompt': 1.5")), FAIL, "", "x"),
    Case("code as a list is not counted", T(B("code", "'code': ['plt.plot()']")), FAIL, "", "x"),
    Case("an unknown source is not counted", T(B("image", "'query': 'q'")), FAIL, "", "x"),
    Case("a capitalised source is not counted", T(B("Search", "'query': 'q'")), FAIL, "", "x"),
    Case("a numeric source is not counted", T("{'source': 1, 'description': 'd', 'params': {'query': 'q'}}"), FAIL, "", "x"),
    Case("no source is not counted", T("{'description': 'd', 'params': {'query': 'q'}}"), FAIL, "", "x"),
    Case("a diffusion tag with a query is not counted", T(B("diffusion", "'query': 'q'")), FAIL, "", "x"),
    Case("a search with two params is not counted", T(B("search", "'query': 'q', 'prompt': 'p'")), FAIL, "", "x"),
    Case("invalid tags still take their index",
         T(B("image", "'query': 'q'")) + S() + E(1), FAIL + IMG + IMG, "search 1/1 edit 1/1", "x++"),
    Case("unreadable tags still take their index", "<imgen>{bad}</imgen>" + S() + E(1), FAIL + IMG + IMG,
         "search 1/1 edit 1/1", "x++"),
    # -- edits and their indices ------------------------------------------------------------
    Case("edit of an earlier tag", f"{S()} then {E(0)}", f"{IMG} then {IMG}", "search 1/1 edit 1/1", "++"),
    Case("edit of itself", E(0), FAIL, "edit 0/1", "-"),
    Case("edit of a later tag", f"{E(1)}{S()}", f"{FAIL}{IMG}", "search 1/1 edit 0/1", "-+"),
    Case("edit of itself after inputs", f"{E(1)}", FAIL, "edit 0/1", "-", inputs=1),
    Case("edit of the first tag after one input", f"{S()}{E(1)}", IMG * 2, "search 1/1 edit 1/1", "++", inputs=1),
    Case("edit of the second input", E(1), IMG, "edit 1/1", "+", inputs=2),
    Case("edit of an input after tags", f"{S()}{D()}{E(0)}", IMG * 3, "search 1/1 diffusion 1/1 edit 1/1", "+++", inputs=1),
    Case("a negative index", E(-1), FAIL, "edit 0/1", "!", inputs=1),
    Case("an index past the end", f"{S()}{E(99)}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("the last index points at itself", f"{S()}{E(2)}", IMG + FAIL, "search 1/1 edit 0/1", "+-", inputs=1),
    Case("a huge index", f"{S()}{E(10**20)}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("True is index 1", f"{S('a')}{S('b')}{E(True)}", IMG * 3, "search 2/2 edit 1/1", "+++"),
    Case("False is index 0", E(False), IMG, "edit 1/1", "+", inputs=1),
    Case("True pointing at itself", f"{S()}{E(True)}", IMG + FAIL, "search 1/1 edit 0/1", "+-"),
    Case("a numeric string index runs but is not counted", f"{S()}{E(repr('0'))}", IMG + FAIL, "search 1/1", "+x"),
    Case("a padded numeric string index", E(repr(" 0 ")), FAIL, "", "x", inputs=1),
    Case("a word as index is a counted failure", f"{S()}{E(repr('first'))}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("a float index runs but is not counted", f"{S()}{E(0.0)}", IMG + FAIL, "search 1/1", "+x"),
    Case("an out-of-range float index is a counted failure", f"{S()}{E(99.5)}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("a None index is a counted failure", E(None), FAIL, "edit 0/1", "!", inputs=1),
    Case("a missing index is a counted failure", T(B("edit", "'prompt': 'p'")), FAIL, "edit 0/1", "!", inputs=1),
    Case("missing edit params are a counted failure", T("{'source': 'edit', 'description': 'd'}"), FAIL, "edit 0/1", "!",
         inputs=1),
    Case("edit params as a list are a counted failure", T("{'source': 'edit', 'description': 'd', 'params': [0]}"), FAIL,
         "edit 0/1", "!", inputs=1),
    Case("an extra edit param with a good index is not counted", T(B("edit", "'img_index': 0, 'prompt': 'p', 'n': 1")), FAIL,
         "", "x", inputs=1),
    Case("an extra edit param with a bad index is counted", T(B("edit", "'img_index': 5, 'prompt': 'p', 'n': 1")), FAIL,
         "edit 0/1", "!", inputs=1),
    Case("a bad description with a bad index is counted", T(B("edit", "'img_index': 3, 'prompt': 'p'", "None")), FAIL,
         "edit 0/1", "!"),
    Case("an edit with a numeric prompt is not counted", T(B("edit", "'img_index': 0, 'prompt': 5")), FAIL, "", "x", inputs=1),
    Case("edit of a failed search", f"{S('FAIL')}{E(0)}", FAIL * 2, "search 0/1 edit 0/1", "--"),
    Case("edit of an invalid tag", T(B("chart", "'code': 'x'")) + E(0), FAIL * 2, "edit 0/1", "x-"),
    Case("edit of an unreadable tag", "<imgen>{nope}</imgen>" + E(0), FAIL * 2, "edit 0/1", "x-"),
    Case("an invalid edit of an unreadable tag is counted", "<imgen>{nope}</imgen>" + T(B("edit", "'img_index': 0, 'prompt': 5")),
         FAIL * 2, "edit 0/1", "x!"),
    Case("an invalid edit of a readable tag is not counted", S() + T(B("edit", "'img_index': 0, 'prompt': 5")),
         IMG + FAIL, "search 1/1", "+x"),
    Case("a chain of edits", f"{S()}{E(0)}{E(1)}", IMG * 3, "search 1/1 edit 2/2", "+++"),
    Case("a chain after a failed edit", f"{S()}{E(0, 'FAIL')}{E(1)}", IMG + FAIL * 2, "search 1/1 edit 0/2", "+--"),
    Case("a chain after an index failure", f"{E(5)}{E(0)}{E(1)}", FAIL * 3, "edit 0/3", "!--"),
    Case("edit of an uncounted edit", f"{S()}" + T(B("edit", "'img_index': 0, 'prompt': 'p', 'x': 1")) + E(1),
         IMG + FAIL * 2, "search 1/1 edit 0/1", "+x-"),
    Case("edit of an edit of an input", f"{E(0)}{E(1)}", IMG * 2, "edit 2/2", "++", inputs=1),
    Case("edits of one image, twice", f"{D()}{E(0, 'blue')}{E(0, 'red')}", IMG * 3, "diffusion 1/1 edit 2/2", "+++"),
    Case("edit of a fenced tag", f"```\n{S()}\n```\n{E(0)}", f"```\n{IMG}\n```\n{IMG}", "search 1/1 edit 1/1", "++"),
    Case("edit with the index written as a sum is unreadable", T(B("edit", "'img_index': 0+1, 'prompt': 'p'")), FAIL, "", "x",
         inputs=2),
    Case("edit with a negative zero", E("-0"), IMG, "edit 1/1", "+", inputs=1),
    Case("edit without inputs or tags before", E(0), FAIL, "edit 0/1", "-"),
    # -- what the model typed -------------------------------------------------------------------
    Case("a typed image marker stays", f"Look <image> here {S()}", f"Look <image> here {IMG}", "search 1/1", "+"),
    Case("a typed failure marker stays", "<fail_to_generate_image>", "<fail_to_generate_image>"),
    Case("upper-case markers stay", "<IMAGE> and <Image>", "<IMAGE> and <Image>"),
    Case("a typed marker beside a failed tag", f"<image>{S('FAIL')}", f"<image>{FAIL}", "search 0/1", "-"),
    Case("markdown around tags stays", f"**Bold** _it_\n\n- item {S()}\n\n| a | b |", f"**Bold** _it_\n\n- item {IMG}\n\n| a | b |",
         "search 1/1", "+"),
    Case("an HTML image typed by the model", '<img src="x.png"> ' + S(), '<img src="x.png"> ' + IMG, "search 1/1", "+"),
    Case(
        "a long answer",
        "\n".join(f"Part {i}: " + (S(f"q{i}"), D(f"p{i}"), C(f"plt.plot([{i}])"), E(i - 2))[i % 4] for i in range(1, 11)),
        "\n".join(f"Part {i}: {IMG}" for i in range(1, 11)),
        "search 2/2 diffusion 3/3 code 3/3 edit 2/2",
        "+" * 10,
        code=("plt.plot([2])", "plt.plot([6])", "plt.plot([10])"),
    ),
    # -- corner cases of an independent review, each written out from the rules ----------------
    Case("think removal can make a tag", "<imgen><think>plan</think>" + SQ[7:], IMG, "search 1/1", "+"),
    Case("a tag opened inside thinking is text",
         "<think><imgen>{'source': 'search'</think>, 'description': 'd', 'params': {'query': 'q'}}</imgen>",
         ", 'description': 'd', 'params': {'query': 'q'}}</imgen>"),
    Case("tags between think blocks", f"<think>a</think>{S()}<think>b {D()}</think>!", f"{IMG}!", "search 1/1", "+"),
    Case("a think closer before an opener stays", "a</think>b<think>c</think>d", "a</think>bd"),
    Case("an unclosed think after a closed one stays", f"<think>x</think>A<think>{S()}", f"A<think>{IMG}", "search 1/1", "+"),
    Case("a nested opener is swallowed into one slot", "<imgen>{" + SQ + " tail", FAIL + " tail", "", "x"),
    Case("a second closing brace stays inside the slot", T(B("search", "'query': 'a'") + "}"), FAIL, "", "x"),
    Case("a null character is unreadable", T(B("search", "'query': 'a\x00b'")), FAIL, "", "x"),
    Case("an f-string is unreadable", T(B("search", "'query': f'owl'")), FAIL, "", "x"),
    Case("implicitly joined strings are one literal", T(B("search", "'query': 'snowy' ' owl'")), IMG, "search 1/1", "+"),
    Case("a parenthesised string is a string", T(B("search", "'query': ('owl')")), IMG, "search 1/1", "+"),
    Case("a one-string tuple is not a string", T(B("search", "'query': ('owl',)")), FAIL, "", "x"),
    Case("a triple-quoted query across lines", T(B("search", "'query': '''snowy\nowl'''")), IMG, "search 1/1", "+"),
    Case("a raw-string query", T(B("search", "'query': r'owl\\d'")), IMG, "search 1/1", "+"),
    Case("the code hint inside another tool's string", T(B("search", "'query': \"'source': 'code'\"")), IMG,
         "search 1/1", "+"),
    Case("a newline in a raw-code description", T(B("code", f"'code': '{SINE}'", "'two\nlines'")), IMG, "code 1/1", "+",
         code=(SINE_RUN,)),
    Case("an unknown named escape falls back to four replacements", C('plt.title("\\N{NOPE}")\\nplt.plot([1])'), IMG,
         "code 1/1", "+", code=('plt.title("\\N{NOPE}")\nplt.plot([1])',)),
    Case("a trailing backslash in raw code falls back", C("plt.plot([1])\\"), IMG, "code 1/1", "+",
         code=("plt.plot([1])\\",)),
    Case("the fallback unescapes quotes", C("print(\\'a\\')\\nplt.plot([1])\\x"), IMG, "code 1/1", "+",
         code=("print('a')\nplt.plot([1])\\x",)),
    Case("a python3 fence leaves its 3", T(B("code", "'code': '```python3\\nplt.plot([2])\\n```'")), IMG, "code 1/1", "+",
         code=("3\nplt.plot([2])\n",)),
    Case("whitespace before the closing fence is kept",
         T('{"source": "code", "description": "d", "params": {"code": "```python\\nplt.plot([3])\\n```"}}'), IMG,
         "code 1/1", "+", code=("plt.plot([3])\n",)),
    Case("a fence in the middle of the code stays", C("x = 1\\n```\\nplt.plot([x])"), IMG, "code 1/1", "+",
         code=("x = 1\n```\nplt.plot([x])",)),
    Case("a float index pointing at itself is a counted failure", f"{S()}{E(1.5)}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("a float index pointing back runs but is not counted", f"{S()}{S('b')}{E(1.5)}", IMG * 2 + FAIL, "search 2/2",
         "++x"),
    Case("a numeric string pointing at itself is a counted failure", f"{S()}{E(repr('1'))}", IMG + FAIL,
         "search 1/1 edit 0/1", "+!"),
    Case("a complex index is a counted failure", f"{S()}{E('1j')}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("an inverted index is unreadable and not counted", f"{S()}{E('~0')}", IMG + FAIL, "search 1/1", "+x"),
    Case("a hexadecimal index", f"{S()}{E('0x0')}", IMG * 2, "search 1/1 edit 1/1", "++"),
    Case("an index with an underscore past the end", f"{S()}{E('1_0')}", IMG + FAIL, "search 1/1 edit 0/1", "+!"),
    Case("True names the second input", E(True), IMG, "edit 1/1", "+", inputs=2),
    Case("False pointing at a failed tag", f"{S('FAIL')}{E(False)}", FAIL * 2, "search 0/1 edit 0/1", "--"),
    Case("the first tag after two inputs", f"{D()}{E(2)}", IMG * 2, "diffusion 1/1 edit 1/1", "++", inputs=2),
    Case("an index one past inputs and tags", f"{D()}{E(3)}", IMG + FAIL, "diffusion 1/1 edit 0/1", "+!", inputs=1),
    Case("an edit of an edit whose index int() cannot read", f"{E(repr('x'))}{E(0)}{E(1)}", FAIL * 3, "edit 0/3", "!--"),
    Case("an edit of a tag without a source", "<imgen>{'description': 'd'}</imgen>" + E(0), FAIL * 2, "edit 0/1", "x-"),
    Case("an edit of a set", "<imgen>{'edit'}</imgen>" + E(0), FAIL * 2, "edit 0/1", "x-"),
    Case("one of seven searches", "".join(S("FAIL" if i else "a") for i in range(7)), IMG + FAIL * 6, "search 1/7",
         "+------"),
    Case("five of six prompts", "".join(D("FAIL" if i == 3 else f"p{i}") for i in range(6)), IMG * 3 + FAIL + IMG * 2,
         "diffusion 5/6", "+++-++"),
    Case("uncounted tags leave the rates alone", f"{S()}{T(B('search', 'query: 1'))}{S('FAIL')}{T(B('paint', ''))}",
         IMG + FAIL * 3, "search 1/2", "+x-x"),
    Case("typed markers around a failed edit", f"<image>{E(5)}<fail_to_generate_image>",
         f"<image>{FAIL}<fail_to_generate_image>", "edit 0/1", "!"),
]


# -- the harness --------------------------------------------------------------------------------

_STATS = re.compile(r"(diffusion|search|code|edit) (\d+)/(\d+)")


def expected_stats(spec: str) -> dict[str, dict[str, float | int]]:
    """The full statistics dict from "search 1/2 ...": LLM-I's four tools, in its order."""
    used = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _STATS.finditer(spec)}
    assert _STATS.sub("", spec).strip() == "", f"bad stats spec {spec!r}"
    out = {}
    for tool in ("diffusion", "search", "code", "edit"):
        ok, total = used.get(tool, (0, 0))
        out[tool] = {"total": total, "success": ok, "success_rate": round(ok / total, 4) if total else 1.0}
    return out


def tag_code(seg) -> str:
    if seg.ok:
        return "+"
    if not seg.counted:
        return "x"
    return "-" if seg.request is not None else "!"


@pytest.fixture(scope="module")
def engine():
    tools = {s: LatencyTool(source=s, latency=0.0, backend="scripted", fail_if="FAIL") for s in ("search", "diffusion", "code", "edit")}
    with Engine(tools, profile="llmi-compat", cache=False) as eng:
        yield eng


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES), "case names are unique"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compat_reading_matches_llmi(case: Case, engine: Engine) -> None:
    inputs = [ImageData.blank(8, 8, "white")] * case.inputs
    doc = engine.run(case.answer, inputs)
    assert doc.profile is LLMI_COMPAT
    assert doc.judge_view() == case.judge
    assert doc.stats() == expected_stats(case.stats)
    assert "".join(tag_code(s) for s in doc.image_segments) == case.tags
    assert len(doc.images) == case.tags.count("+")
    parsed = parse(remove_thinking(case.answer, "blocks")[0], LLMI_COMPAT, inputs=case.inputs)
    assert [t.ok for t in parsed.tags] == [code in "+-" for code in case.tags]  # LLM-I's validity
    assert [t.counted for t in parsed.tags] == [code != "x" for code in case.tags]
    if case.code:
        codes = [t.request.code for t in parsed.tags if t.request is not None and t.request.source == "code"]
        assert codes == list(case.code)
    if case.slots:
        assert [t.raw for t in parsed.tags] == list(case.slots)
