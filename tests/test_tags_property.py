"""Property tests for the tag parser: it never raises, counts exactly, and round-trips."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmi.errors import TagError
from llmi.tags import ImageRequest, Tag, parse, parse_tag, serialise

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A complete pair: an <imgen>, no other <imgen>, then the first </imgen> (an independent oracle
# for the parser's pairing rule, which is written as a scan).
PAIR = re.compile(r"<imgen>(?:(?!<imgen>).)*?</imgen>", re.DOTALL)

FRAGMENTS = [
    "<imgen>",
    "</imgen>",
    "<image>",
    "<fail_to_generate_image>",
    "<imgen",
    "imgen>",
    "{",
    "}",
    "'",
    '"',
    "'''",
    "\\",
    "\\n",
    "\n",
    "```",
    "```python\n",
    "`",
    ":",
    ",",
    "'source'",
    "'code'",
    "'params'",
    "{'query': 'x'}",
    "True",
    "-1",
    "中文",
    "{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}",
    "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title('a')\\nx=1'}}",
    '{"source": "edit", "description": "d", "params": {"img_index": 0, "prompt": "p"}}',
]
MARKERS = st.sampled_from(
    [
        "<imgen>",
        "</imgen>",
        "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'q'}}</imgen>",
    ]
)
texty = st.lists(
    st.one_of(MARKERS, st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=24
).map("".join)


def check(text: str) -> None:
    parsed = parse(text)
    tags = parsed.tags
    pairs = list(PAIR.finditer(text))
    assert len(tags) == len(pairs)
    for t, m in zip(tags, pairs):
        assert t.position == m.start() and t.start <= m.start() and m.end() <= t.end
    assert [t.index for t in tags] == list(range(len(tags)))
    assert "".join(p if isinstance(p, str) else p.raw for p in parsed.parts) == text
    for t in tags:
        assert (t.request is None) != (t.error is None)
        assert text[t.start : t.end] == t.raw
        assert text.startswith("<imgen>", t.position)
        if t.error is not None:
            assert t.error.position == t.position and t.error.reason
    for w in parsed.warnings:
        assert w.kind in ("unterminated", "stray_close", "recovered", "fenced") and w.message


@FAST
@given(texty)
def test_parse_never_raises_on_tag_fragments(text: str) -> None:
    check(text)


@FAST
@given(st.text(max_size=200))
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    check(text)
    check(f"<imgen>{text}</imgen>")


@FAST
@given(
    st.lists(st.one_of(st.sampled_from(FRAGMENTS[6:]), st.text(max_size=6)), max_size=20).map(
        "".join
    )
)
def test_parse_tag_raises_only_tag_errors(body: str) -> None:
    for candidate in (
        body,
        "{" + body,
        "{'source': 'code', 'description': 'd', 'params': {'code': '" + body + "'}}",
    ):
        try:
            parse_tag(candidate, 5)
        except TagError as exc:
            assert exc.position == 5 and exc.reason


# strings with quotes, backslashes, newlines, braces and any unicode, not only whitespace
PIECES = [
    "<imgen>",
    "</imgen>",
    "'",
    '"',
    "'''",
    "\\",
    "\\n",
    "\n",
    "\r",
    "\t",
    "'}}",
    "{",
    ":",
    ",",
    "```",
    "#",
    "\x00",
    "中文",
]
ANY = st.lists(st.one_of(st.sampled_from(PIECES), st.characters()), min_size=1, max_size=24).map(
    "".join
)
SOME = ANY.filter(lambda s: s.strip() != "")
CODE = SOME.filter(
    lambda s: not re.match(r"\s*(`{3,}|~{3,})", s) and not s[:1].isspace()
)  # fenced or indented code is unwrapped or dedented by design

requests = st.one_of(
    st.builds(lambda d, q: ImageRequest("search", d, {"query": q}), st.text(max_size=40), SOME),
    st.builds(lambda d, p: ImageRequest("diffusion", d, {"prompt": p}), ANY, SOME),
    st.builds(lambda d, c: ImageRequest("code", d, {"code": c}), ANY, CODE),
    st.builds(
        lambda d, i, p: ImageRequest("edit", d, {"img_index": i, "prompt": p}),
        ANY,
        st.integers(0, 10**12),
        SOME,
    ),
)


@FAST
@given(requests, st.sampled_from(["python", "json"]), st.sampled_from(["", "prose ", "```\n"]))
def test_serialise_parse_round_trip(request: ImageRequest, style: str, before: str) -> None:
    tag = serialise(request, style=style)
    after = "\n```" if before == "```\n" else " more prose"
    parsed = parse(f"{before}{tag}{after}")
    (found,) = parsed.tags
    assert isinstance(found, Tag) and found.error is None, found.error
    assert found.request == request
    assert [w.kind for w in parsed.warnings if w.kind != "fenced"] == []


# The fast reader must give exactly what literal_eval (and json.loads) give, whenever it answers.
ESCAPED = st.lists(
    st.sampled_from(["\\n", "\\t", "\\\\", "\\'", '\\"', "'", '"', "a", "中", " ", "\\\\n"]),
    max_size=12,
).map("".join)


def quoted(content: str, quote: str) -> str:
    # drop bare quotes of the delimiting kind so the literal stays valid
    return (
        quote
        + re.sub(r"(?<!\\)" + quote, "", content.replace("\\\\", "\x01")).replace("\x01", "\\\\")
        + quote
    )


@FAST
@given(
    ESCAPED,
    ESCAPED,
    st.sampled_from(["'", '"']),
    st.sampled_from(["search", "edit"]),
    st.integers(-5, 10**6),
)
def test_fast_reader_agrees_with_literal_eval(
    desc: str, text: str, quote: str, source: str, index: int
) -> None:
    import ast
    import json

    from llmi import tags

    d, t = quoted(desc, quote), quoted(text, quote)
    if source == "search":
        params = f"{quote}query{quote}: {t}"
    else:
        params = f"{quote}img_index{quote}: {index}, {quote}prompt{quote}: {t}"
    body = f"{{{quote}source{quote}: {quote}{source}{quote}, {quote}description{quote}: {d}, {quote}params{quote}: {{{params}}}}}"
    try:
        expected = ast.literal_eval(body)
    except SyntaxError:
        return  # e.g. a string ending in a lone backslash: not a literal, and not the fast reader's
    fast = tags._fast(body)
    assert fast is not tags._NOTHING, body
    assert fast == expected
    if quote == '"' and "\\'" not in body:
        assert fast == json.loads(body)


# Chart code written the way LLM-I's prompt example writes it: line breaks as \n, every other
# character (quotes included) left as is. Such a tag is usually not a valid literal; the lenient
# reader must give back exactly the code, including a \n escape inside the code's own strings.
CHART_LINES = [
    "x = np.linspace(0, 10, 50)",
    "plt.plot(x, np.sin(x), label='sin', color='#1f77b4')",
    'plt.title("销售额（万元）")',
    "df = pd.DataFrame({'year': [2020, 2021], 'sales': [3, 4]})",
    "sns.barplot(data=df, x='year', y='sales')",
    "# it's a comment with a quote",
    "plt.xlabel('Month')  # month's axis",
    "labels = ['A', 'B', 'C']",
    "plt.text(0.5, 0.5, 'line one\\nline two')",
    'plt.ylabel("two\\nlines")',
    "for i in range(3):\n    plt.bar(i, i + 1)",
    "s = f'{len(labels)} items'",
    "d = {'code': 'x', 'prompt': 'y'}",
    "t = '}'",
    "u = '}}'",
    'plt.legend(loc="upper left")',
    "plt.axhline(y=0, color='k', linestyle='--')",
    '"""a docstring"""',
    "title = 'It\\'s here'",
]


@FAST
@given(
    st.lists(st.sampled_from(CHART_LINES), min_size=1, max_size=8),
    st.sampled_from(["d", "the 'best' chart", "中文"]),
)
def test_llmi_style_code_is_recovered_exactly(lines: list[str], description: str) -> None:
    import ast

    code = "\n".join(lines)
    written = code.replace("\n", "\\n")
    body = (
        f"{{'source': 'code', 'description': '{description}', 'params': {{'code': '{written}'}}}}"
    )
    try:
        expected = ast.literal_eval(body)["params"]["code"]  # a valid literal keeps its meaning
    except SyntaxError:
        expected = code
    got = parse_tag(body).code
    assert got == expected
    if expected == code:
        compile(got, "<chart>", "exec")
