"""The <imgen> tag language: every accepted form, every malformed kind with its exact message."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from llmi.errors import TagError, TagSyntaxError, TagValidationError
from llmi.tags import ImageRequest, ParsedText, Tag, parse, parse_tag, serialise, validate

# The LLM-I prompt's example is inlined below (SINE_TEXT); where the shared fixture is present,
# the test also checks that the two are identical.
FIXTURE = Path(__file__).resolve().parents[2] / "shared/data/llmi-format/system-prompt-example.txt"
SINE_CODE = "\n".join(
    [
        "x = np.linspace(0, 4 * np.pi, 200)",
        "y = np.sin(x)",
        "plt.figure(figsize=(10, 4))",
        "plt.plot(x, y)",
        'plt.title("Sine Wave from 0 to 4pi")',
        'plt.xlabel("Angle [rad]")',
        'plt.ylabel("sin(x)")',
        "plt.grid(True)",
        "plt.axhline(y=0, color='k', linestyle='--')",
    ]
)
SINE_TEXT = (
    "Here is the sine wave from 0 to 4 pi.\n"
    "<imgen>{'source': 'code', 'description': 'Sine Wave from 0 to 4pi', 'params': {'code': "
    "'x = np.linspace(0, 4 * np.pi, 200)\\ny = np.sin(x)\\nplt.figure(figsize=(10, 4))\\nplt.plot(x, y)"
    '\\nplt.title("Sine Wave from 0 to 4pi")\\nplt.xlabel("Angle [rad]")\\nplt.ylabel("sin(x)")'
    "\\nplt.grid(True)\\nplt.axhline(y=0, color='k', linestyle='--')'}}</imgen>\n"
    "Different from the cosine wave, the sine wave....\n"
)
EXAMPLE = "{'source': 'search', 'description': '...', 'params': {'query': '...'}}"
TOP = "a tag has exactly the keys 'source', 'description' and 'params'"


def one(text: str) -> Tag:
    tags = parse(text).tags
    assert len(tags) == 1
    return tags[0]


def req(body: str) -> ImageRequest:
    return parse_tag(body)


def joined(parsed: ParsedText) -> str:
    return "".join(p if isinstance(p, str) else p.raw for p in parsed.parts)


# ------------------------------------------------------------------------------------------
# accepted forms


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "{'source': 'search', 'description': 'an owl', 'params': {'query': 'snowy owl'}}",
            ImageRequest("search", "an owl", {"query": "snowy owl"}),
        ),
        (
            "{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'a cat'}}",
            ImageRequest("diffusion", "d", {"prompt": "a cat"}),
        ),
        (
            "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.plot([1, 2])'}}",
            ImageRequest("code", "d", {"code": "plt.plot([1, 2])"}),
        ),
        (
            "{'source': 'edit', 'description': 'd', 'params': {'img_index': 0, 'prompt': 'make it blue'}}",
            ImageRequest("edit", "d", {"img_index": 0, "prompt": "make it blue"}),
        ),
        # JSON, any key order
        (
            '{"params": {"prompt": "p", "img_index": 3}, "source": "edit", "description": "d"}',
            ImageRequest("edit", "d", {"img_index": 3, "prompt": "p"}),
        ),
        # whitespace and newlines around and inside the braces, trailing commas
        (
            "\n  {\n    'source' : 'search',\n    'description': 'd',\n    'params': { 'query': 'owl', },\n  }\n",
            ImageRequest("search", "d", {"query": "owl"}),
        ),
        # mixed quotes, the way repr() writes strings holding a single quote
        (
            "{'source': 'search', 'description': \"it's\", 'params': {'query': 'owl'}}",
            ImageRequest("search", "it's", {"query": "owl"}),
        ),
        # escaped quotes
        (
            "{'source': 'search', 'description': 'it\\'s', 'params': {'query': \"say \\\"hi\\\"\"}}",
            ImageRequest("search", "it's", {"query": 'say "hi"'}),
        ),
    ],
)
def test_accepted_forms(body: str, expected: ImageRequest) -> None:
    assert req(body) == expected


def test_fence_inside_the_tag_body() -> None:
    text = '<imgen>\n```json\n{"source": "search", "description": "d", "params": {"query": "owl"}}\n```\n</imgen>'
    assert one(text).request == ImageRequest("search", "d", {"query": "owl"})
    assert one(
        "<imgen>`{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}`</imgen>"
    ).ok


def test_fence_around_the_code_string_is_removed() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': '```python\\nplt.plot([1])\\n```'}}"
    assert req(body).code == "plt.plot([1])"


def test_fence_around_the_whole_tag_joins_the_slot() -> None:
    tag = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
    text = f"Look:\n```python\n{tag}\n```\nDone."
    parsed = parse(text)
    assert parsed.parts[0] == "Look:\n"
    assert parsed.parts[2] == "\nDone."
    t = parsed.tags[0]
    assert t.ok and t.raw == f"```python\n{tag}\n```"
    assert t.position == text.index("<imgen>") and text[t.start : t.end] == t.raw
    assert [(w.kind, w.position) for w in parsed.warnings] == [("fenced", 16)]
    assert (
        parsed.warnings[0].message
        == "tag at character 16 is wrapped in a code fence; the fence was folded into the tag's slot"
    )


def test_one_fence_around_two_tags() -> None:
    a = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'a'}}</imgen>"
    b = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'b'}}</imgen>"
    parsed = parse(f"x\n```\n{a}\n{b}\n```\ny")
    assert parsed.parts == ("x\n", parsed.tags[0], "\n", parsed.tags[1], "\ny")
    assert parsed.tags[0].raw == f"```\n{a}" and parsed.tags[1].raw == f"{b}\n```"


def test_inline_backticks_and_unbalanced_fences() -> None:
    tag = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
    assert parse(f"see `{tag}` here").parts[0] == "see "
    # an opening fence with no closing fence is prose: nothing is folded in
    parsed = parse(f"```\n{tag}\nmore")
    assert parsed.parts[0] == "```\n" and parsed.tags[0].raw == tag and parsed.warnings == ()


def test_sine_wave_example_from_the_llmi_prompt() -> None:
    if FIXTURE.exists():
        assert FIXTURE.read_text(encoding="utf-8") == SINE_TEXT
    parsed = parse(SINE_TEXT)
    tag = parsed.tags[0]
    assert tag.error is None
    assert tag.request == ImageRequest("code", "Sine Wave from 0 to 4pi", {"code": SINE_CODE})
    compile(tag.request.code, "<sine>", "exec")
    assert parsed.parts[0] == "Here is the sine wave from 0 to 4 pi.\n"
    assert parsed.parts[2] == "\nDifferent from the cosine wave, the sine wave....\n"
    assert [w.kind for w in parsed.warnings] == ["recovered"]
    assert (
        parsed.warnings[0].message
        == "tag 0 at character 38 is not a valid Python or JSON dict; it was read leniently"
    )


def test_valid_literal_keeps_literal_eval_semantics() -> None:
    # \\n inside the literal is a backslash-n in the code: a newline escape in the code's own string
    body = (
        "{'source': 'code', 'description': 'd', 'params': {'code': 'print(\"a\\\\nb\")\\nx = 1'}}"
    )
    assert req(body).code == 'print("a\\nb")\nx = 1'
    # a single \n inside the code's string in a *valid* literal is a real newline, as literal_eval says
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'print(\"a\\nb\")'}}"
    assert req(body).code == 'print("a\nb")'


def test_recovered_code_keeps_newline_escapes_inside_its_own_strings() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title('a\\nb')\\nx = 1  # it's\\ny = 2'}}"
    code = req(body).code
    assert code == "plt.title('a\\nb')\nx = 1  # it's\ny = 2"
    compile(code, "<t>", "exec")


def test_real_newlines_inside_quoted_strings() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'x = [1, 2]\nplt.plot(x)\n'}}"
    assert req(body).code == "x = [1, 2]\nplt.plot(x)\n"
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title('two\nlines')'}}"
    assert req(body).code == "plt.title('two\nlines')"


def test_triple_quoted_code() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': '''x = 'a'\nplt.title(\"b\")'''}}"
    assert req(body).code == "x = 'a'\nplt.title(\"b\")"
    # not a valid literal (''' inside), recovered
    body = "{'source': 'code', 'description': 'd', 'params': {'code': '''s = '''q'''\nplt.plot([1])'''}}"
    assert req(body).code == "s = '''q'''\nplt.plot([1])"


def test_unescaped_quotes_in_a_description_and_a_json_code_string() -> None:
    body = "{'source': 'search', 'description': 'the 'best' owl', 'params': {'query': 'owl'}}"
    assert req(body).description == "the 'best' owl"
    body = '{"source": "code", "description": "d", "params": {"code": "plt.title("Hi")\\nplt.plot([1])"}}'
    assert req(body).code == 'plt.title("Hi")\nplt.plot([1])'


def test_code_with_quote_and_brace_that_look_like_the_end() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'd = {'k': 'v'}\\ns = '}'\\nplt.plot([1])'}}"
    assert req(body).code == "d = {'k': 'v'}\ns = '}'\nplt.plot([1])"


def test_missing_closing_braces_are_supplied() -> None:
    assert req("{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}").query == "owl"
    assert req("{'source': 'search', 'description': 'd', 'params': {'query': 'owl'").query == "owl"


def test_bare_keys_are_read() -> None:
    assert req("{source: 'search', description: 'd', params: {query: 'owl'}}").query == "owl"


@pytest.mark.parametrize(
    "body",
    [
        "{'source': 'code', 'description': '中文图表', 'params': {'code': 'plt.title(\"销售额（万元）\")'}}",
        '{"source": "code", "description": "中文图表", "params": {"code": "plt.title(\\"销售额（万元）\\")"}}',
        # not a valid literal: recovered, still exact
        "{'source': 'code', 'description': '中文图表', 'params': {'code': 'plt.title('销售额（万元）')'}}",
        # \u escapes, Python literal and JSON
        "{'source': 'code', 'description': '\\u4e2d\\u6587\\u56fe\\u8868', 'params': {'code': 'plt.title(\"\\u9500\\u552e\\u989d\\uff08\\u4e07\\u5143\\uff09\")'}}",
        '{"source": "code", "description": "\\u4e2d\\u6587\\u56fe\\u8868", "params": {"code": "plt.title(\\"\\u9500\\u552e\\u989d\\uff08\\u4e07\\u5143\\uff09\\")"}}',
    ],
)
def test_chinese_survives_exactly(body: str) -> None:
    r = req(body)
    assert r.description == "中文图表"
    assert r.code.replace("'", '"') == 'plt.title("销售额（万元）")'


def test_escapes_in_recovered_strings() -> None:
    body = "{'source': 'code', 'description': '\\u4e2d \\ud83d\\ude00 \\N{BLACK STAR}', 'params': {'code': 'plt.title('x')\\tplt.plot([1])'}}"
    r = req(body)
    assert r.description == "中 😀 ★"
    assert r.code == "plt.title('x')\tplt.plot([1])"


def test_json_surrogate_pairs_and_slash() -> None:
    r = req('{"source": "search", "description": "\\ud83d\\ude00", "params": {"query": "a\\/b"}}')
    assert (r.description, r.query) == ("😀", "a/b")


def test_invalid_escape_in_code_is_kept_without_warnings() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 're.findall(\"\\d+\", s)'}}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert req(body).code == 're.findall("\\d+", s)'


# ------------------------------------------------------------------------------------------
# malformed tags: the exact message a user sees

V, S = TagValidationError, TagSyntaxError
MALFORMED = [
    ("", S, f"the tag is empty; it must hold a dict such as {EXAMPLE}"),
    ("   \n ", S, f"the tag is empty; it must hold a dict such as {EXAMPLE}"),
    (
        "search: owl",
        S,
        f"the tag must hold a dict in braces, such as {EXAMPLE}; it starts with 'search: owl'",
    ),
    (
        "['search', 'owl']",
        S,
        f"the tag must hold a dict in braces, such as {EXAMPLE}; it starts with \"['search', 'owl']\"",
    ),
    (
        "{'source': 'search' 'description': 'd', 'params': {'query': 'owl'}}",
        S,
        "cannot read the tag as a Python or JSON dict: expected ',' or '}' after the value of 'source' (line 1, column 21 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': 'owl}}",
        S,
        "cannot read the tag as a Python or JSON dict: this string is never closed (line 1, column 62 of the tag)",
    ),
    (
        "{'source': 'search',\n 'description' 'd'}",
        S,
        "cannot read the tag as a Python or JSON dict: expected ':' after the key 'description' (line 2, column 16 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd'",
        S,
        "cannot read the tag as a Python or JSON dict: this '{' is never closed (line 1, column 1 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}} and more",
        S,
        "cannot read the tag as a Python or JSON dict: unexpected text after the closing '}' (line 1, column 70 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': [owl]}}",
        S,
        "cannot read the tag as a Python or JSON dict: expected a value: a string in quotes, a number or a dict (line 1, column 62 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {, 'query': 'owl'}}",
        S,
        "cannot read the tag as a Python or JSON dict: expected a key in quotes, such as 'source', or '}' (line 1, column 53 of the tag)",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}, 'size': 3}",
        V,
        f"unexpected key 'size'; {TOP}",
    ),
    (
        "{'sorce': 'search', 'description': 'd', 'params': {'query': 'owl'}}",
        V,
        f"unexpected key 'sorce' (did you mean 'source'?); {TOP}",
    ),
    ("{'description': 'd', 'params': {'query': 'owl'}}", V, f"missing key 'source'; {TOP}"),
    ("{'source': 'search', 'params': {'query': 'owl'}}", V, f"missing key 'description'; {TOP}"),
    ("{'source': 'search', 'description': 'd'}", V, f"missing key 'params'; {TOP}"),
    (
        "{'source': 'image', 'description': 'd', 'params': {'query': 'owl'}}",
        V,
        "unknown source 'image'; use one of 'search', 'diffusion', 'code' or 'edit'",
    ),
    (
        "{'source': 'serch', 'description': 'd', 'params': {'query': 'owl'}}",
        V,
        "unknown source 'serch' (did you mean 'search'?); use one of 'search', 'diffusion', 'code' or 'edit'",
    ),
    (
        "{'source': 1, 'description': 'd', 'params': {'query': 'owl'}}",
        V,
        "unknown source 1; use one of 'search', 'diffusion', 'code' or 'edit'",
    ),
    (
        "{'source': 'Search', 'description': 'd', 'params': {'query': 'owl'}}",
        V,
        "unknown source 'Search' (did you mean 'search'?); use one of 'search', 'diffusion', 'code' or 'edit'",
    ),
    (
        "{'source': 'search', 'description': None, 'params': {'query': 'owl'}}",
        V,
        "'description' must be a string, not NoneType",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': 'owl'}",
        V,
        "'params' must be a dict such as {'query': '...'}, not str",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': ['p']}",
        V,
        "'params' must be a dict such as {'img_index': 0, 'prompt': '...'}, not list",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'prompt': 'owl'}}",
        V,
        "unexpected key 'prompt' in the params of a search tag; search takes {'query': '...'}",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'querry': 'owl'}}",
        V,
        "unexpected key 'querry' (did you mean 'query'?) in the params of a search tag; search takes {'query': '...'}",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': 'owl', 'num': 2}}",
        V,
        "unexpected key 'num' in the params of a search tag; search takes {'query': '...'}",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'prompt': 'p'}}",
        V,
        "missing key 'img_index' in the params of an edit tag; edit takes {'img_index': 0, 'prompt': '...'}",
    ),
    (
        "{'source': 'code', 'description': 'd', 'params': {}}",
        V,
        "missing key 'code' in the params of a code tag; code takes {'code': '...'}",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}",
        V,
        "'img_index' must be an integer, not bool",
    ),
    (
        '{"source": "edit", "description": "d", "params": {"img_index": false, "prompt": "p"}}',
        V,
        "'img_index' must be an integer, not bool",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'img_index': '1', 'prompt': 'p'}}",
        V,
        "'img_index' must be an integer, not str",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'img_index': 1.0, 'prompt': 'p'}}",
        V,
        "'img_index' must be an integer, not float",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'img_index': -1, 'prompt': 'p'}}",
        V,
        "'img_index' must be 0 or more, not -1",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': 42}}",
        V,
        "'query' must be a string, not int",
    ),
    (
        "{'source': 'diffusion', 'description': 'd', 'params': {'prompt': b'x'}}",
        V,
        "'prompt' must be a string, not bytes",
    ),
    (
        "{'source': 'search', 'description': 'd', 'params': {'query': ''}}",
        V,
        "'query' is empty; say what to search for",
    ),
    (
        "{'source': 'diffusion', 'description': 'd', 'params': {'prompt': '  '}}",
        V,
        "'prompt' is empty; describe the picture to generate",
    ),
    (
        "{'source': 'edit', 'description': 'd', 'params': {'img_index': 0, 'prompt': ''}}",
        V,
        "'prompt' is empty; say how to change the image",
    ),
    (
        "{'source': 'code', 'description': 'd', 'params': {'code': '\\n'}}",
        V,
        "'code' is empty; write the Python code that draws the chart",
    ),
    (
        "{'source': 'code', 'description': 'd', 'params': {'code': '```python\\n```'}}",
        V,
        "'code' is empty; write the Python code that draws the chart",
    ),
    # recovered (not a valid literal) but the shape is right: the schema complaint is the useful one
    (
        "{'source': 'chart', 'description': 'd', 'params': {'code': 'plt.title('x')'}}",
        V,
        "unknown source 'chart'; use one of 'search', 'diffusion', 'code' or 'edit'",
    ),
]


@pytest.mark.parametrize("body, kind, reason", MALFORMED)
def test_malformed_tag_message(body: str, kind: type[TagError], reason: str) -> None:
    with pytest.raises(TagError) as info:
        parse_tag(body, 123)
    assert type(info.value) is kind
    assert info.value.reason == reason
    assert info.value.position == 123
    assert str(info.value) == f"tag at character 123: {reason}"


def test_failed_tag_keeps_its_slot_and_position() -> None:
    good = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
    text = (
        f"a {good} b <imgen>{{'source': 'nope'}}</imgen> c\n```\n<imgen>oops</imgen>\n```\n{good}"
    )
    parsed = parse(text)
    assert [t.index for t in parsed.tags] == [0, 1, 2, 3]
    assert [t.ok for t in parsed.tags] == [True, False, False, True]
    bad = parsed.tags[1]
    assert isinstance(bad.error, TagValidationError) and bad.request is None
    assert bad.error.position == text.index("<imgen>{'source': 'nope'")
    fenced = parsed.tags[2]
    assert fenced.error.position == fenced.position == text.index("<imgen>oops")
    assert fenced.raw.startswith("```") and isinstance(fenced.error, TagSyntaxError)
    assert joined(parsed) == text


def test_validate_rejects_non_dicts() -> None:
    with pytest.raises(TagValidationError) as info:
        validate(["source"], 7)
    assert info.value.reason == f"the tag holds a list, not a dict; write {EXAMPLE}"


# ------------------------------------------------------------------------------------------
# slots: numbering, unterminated tags, stray markers

GOOD = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"


def test_no_tags() -> None:
    assert parse("") == ParsedText("", ())
    assert parse("just prose").parts == ("just prose",)


def test_unterminated_tag_is_prose_and_does_not_shift_numbering() -> None:
    text = f"{GOOD} middle <imgen>{{'source': 'code', 'description': 'truncat"
    parsed = parse(text)
    assert len(parsed.tags) == 1 and parsed.tags[0].index == 0
    assert parsed.parts[-1] == " middle <imgen>{'source': 'code', 'description': 'truncat"
    (w,) = parsed.warnings
    at = text.index("<imgen>{'source': 'code'")
    assert (w.kind, w.position) == ("unterminated", at)
    assert (
        str(w)
        == f"<imgen> at character {at} is never closed with </imgen>; it is kept as text and gets no image slot"
    )


def test_unterminated_tag_before_a_complete_one() -> None:
    text = f"x <imgen>{{'source': 'search' {GOOD} y {GOOD}"
    parsed = parse(text)
    assert [t.index for t in parsed.tags] == [0, 1] and all(t.ok for t in parsed.tags)
    assert parsed.parts[0] == "x <imgen>{'source': 'search' "
    (w,) = parsed.warnings
    assert (
        w.message
        == "<imgen> at character 2 is followed by another <imgen> before any </imgen>; it is kept as text and gets no image slot"
    )


def test_duplicated_opener() -> None:
    text = "<imgen>" + GOOD
    parsed = parse(text)
    assert parsed.parts[0] == "<imgen>" and parsed.tags[0].ok and parsed.tags[0].start == 7
    assert [w.kind for w in parsed.warnings] == ["unterminated"]


def test_stray_closer_is_prose() -> None:
    text = f"a </imgen> b {GOOD}</imgen>"
    parsed = parse(text)
    assert len(parsed.tags) == 1
    assert [(w.kind, w.position) for w in parsed.warnings] == [
        ("stray_close", 2),
        ("stray_close", len(text) - 8),
    ]
    assert (
        parsed.warnings[0].message
        == "</imgen> at character 2 has no matching <imgen>; it is kept as text"
    )
    assert joined(parsed) == text


def test_literal_image_markers_are_prose() -> None:
    text = f"<image> here <fail_to_generate_image> and <image>{GOOD}<image>"
    parsed = parse(text)
    assert len(parsed.tags) == 1 and parsed.warnings == ()
    assert parsed.parts[0] == "<image> here <fail_to_generate_image> and <image>"
    assert parse("only <image> and <image>").parts == ("only <image> and <image>",)


# ------------------------------------------------------------------------------------------
# serialise


@pytest.mark.parametrize(
    "request_, python, json_",
    [
        (
            ImageRequest("code", "销售", {"code": "plt.title('a')\nplt.plot([1])"}),
            """<imgen>{'source': 'code', 'description': '销售', 'params': {'code': "plt.title('a')\\nplt.plot([1])"}}</imgen>""",
            """<imgen>{"source": "code", "description": "销售", "params": {"code": "plt.title('a')\\nplt.plot([1])"}}</imgen>""",
        ),
        (
            ImageRequest("edit", "d", {"prompt": "p", "img_index": 2}),
            "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 2, 'prompt': 'p'}}</imgen>",
            '<imgen>{"source": "edit", "description": "d", "params": {"img_index": 2, "prompt": "p"}}</imgen>',
        ),
        (
            ImageRequest("search", "</imgen>", {"query": "<imgen>x"}),
            "<imgen>{'source': 'search', 'description': '\\x3c/imgen>', 'params': {'query': '\\x3cimgen>x'}}</imgen>",
            '<imgen>{"source": "search", "description": "\\u003c/imgen>", "params": {"query": "\\u003cimgen>x"}}</imgen>',
        ),
    ],
)
def test_serialise(request_: ImageRequest, python: str, json_: str) -> None:
    assert serialise(request_) == serialise(request_, style="python") == python
    assert serialise(request_, style="json") == json_
    for text in (python, json_):
        assert one(text).request == request_


def test_serialise_rejects_unknown_style() -> None:
    with pytest.raises(ValueError, match="unknown style 'yaml'"):
        serialise(ImageRequest("search", "d", {"query": "q"}), style="yaml")


def test_requests_hash_by_value() -> None:
    a = ImageRequest("edit", "d", {"img_index": 1, "prompt": "p"})
    b = ImageRequest("edit", "d", {"prompt": "p", "img_index": 1})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


def test_broken_code_full_of_dict_literals() -> None:
    line = "d = {'a': 'b', 'code': 'd'}"
    body = (
        "{'source': 'code', 'description': 'd', 'params': {'code': '"
        + (line + "\\n") * 300
        + "plt.plot([1])'}}"
    )
    assert req(body).code == (line + "\n") * 300 + "plt.plot([1])"


def test_pathological_bodies_fail_cleanly() -> None:
    with pytest.raises(TagSyntaxError) as info:
        parse_tag("{'a': " * 3000 + "1" + "}" * 3000)
    assert info.value.reason.startswith(
        "cannot read the tag as a Python or JSON dict: the dict is nested too deeply"
    )
    with pytest.raises(TagSyntaxError):
        parse_tag(
            "{'source': 'code', 'description': 'd', 'params': {'code': '" + "\\" * 10001 + "'}}"
        )
    parsed = parse("<imgen>" * 5000 + GOOD)
    assert len(parsed.tags) == 1 and parsed.tags[0].ok and len(parsed.warnings) == 5000


def test_extra_closing_braces_are_tolerated() -> None:
    parsed = parse(
        "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}}</imgen>"
    )
    assert parsed.tags[0].request == ImageRequest("search", "d", {"query": "owl"})
    assert [w.kind for w in parsed.warnings] == ["recovered"]


def test_tag_source_is_known_for_failed_tags_when_readable() -> None:
    parsed = parse(
        "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}</imgen>"
        '<imgen>{"source": "search", "description": 1}</imgen>'
        "<imgen>{'source': 'image', 'description': 'd', 'params': {}}</imgen>"
        "<imgen>garbage</imgen>" + GOOD
    )
    assert [t.source for t in parsed.tags] == ["edit", "search", None, None, "search"]
