"""The two profiles as users meet them: the ``llmi`` profile's fixed bugs, the compat profile's
named options with their stricter choices, the API (``Engine``, ``render``, ``Document``,
``document.json``, ``llmi render --profile``), and the real sandbox where a profile changes
what runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import llmi
from llmi.document import Document, load
from llmi.engine import Engine
from llmi.errors import ConfigError, EmptyFigure
from llmi.image import ImageData
from llmi.profiles import LLMI, LLMI_COMPAT, PROFILES, Profile, get_profile, remove_thinking
from llmi.sources import PARAM_TYPES, SOURCE_TABLE, SOURCES, STATS_ORDER
from llmi.tags import ImageRequest, parse, parse_tag
from llmi.testing import LatencyTool

IMG, FAIL = "<image>", "<fail_to_generate_image>"


def scripted(profile="llmi", **kw) -> Engine:
    tools = {s: LatencyTool(source=s, latency=0.0, fail_if="FAIL") for s in SOURCES}
    return Engine(tools, profile=profile, cache=False, **kw)


def search(query: str = "owl") -> str:
    return f"<imgen>{{'source': 'search', 'description': 'd', 'params': {{'query': {query!r}}}}}</imgen>"


# -- the llmi profile: bugs fixed ---------------------------------------------------------------


@pytest.mark.parametrize("mark", ["</imgen>", "<imgen>", "<imgen>x</imgen>"])
def test_tag_marks_inside_a_string_do_not_end_the_tag(mark: str) -> None:
    text = f"A {search(f'the {mark} tag')} and {search('b')} z"
    parsed = parse(text)
    assert [t.request.query for t in parsed.tags] == [f"the {mark} tag", "b"]
    assert parsed.warnings == ()
    assert "".join(p if isinstance(p, str) else p.raw for p in parsed.parts) == text


def test_a_closer_inside_chart_code_read_leniently() -> None:
    body = "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title('a </imgen> b')\\nplt.plot([1])'}}"
    (tag,) = parse(f"x <imgen>{body}</imgen> y").tags
    assert tag.request.code == "plt.title('a </imgen> b')\nplt.plot([1])"


def test_a_broken_tag_is_not_widened_into_prose() -> None:
    text = "<imgen>{'source': 'nope'}</imgen> and later </imgen> text"
    parsed = parse(text)
    (tag,) = parsed.tags
    assert tag.raw == "<imgen>{'source': 'nope'}</imgen>" and tag.error is not None
    assert [w.kind for w in parsed.warnings] == ["stray_close"]


def test_widening_never_reaches_into_the_next_tag() -> None:
    text = f"<imgen>{{'source': 'search', 'q': 'a </imgen>{search('b')}"
    tags = parse(text).tags
    assert [t.ok for t in tags] == [False, True] and tags[1].request.query == "b"


@pytest.mark.parametrize(
    "written, runs",
    [
        ("    x = [1, 2]\\n    plt.plot(x)", "x = [1, 2]\nplt.plot(x)"),
        ("  for i in range(2):\\n      plt.plot([i])", "for i in range(2):\n    plt.plot([i])"),
        ("  x = 1\\nplt.plot([x])", "x = 1\nplt.plot([x])"),
        ("\\n\\n    plt.plot([1])\\n", "plt.plot([1])\n"),
        ("x = 1\\n    # a comment", "x = 1\n    # a comment"),  # starts at column 0: kept exactly
    ],
)
def test_leading_indentation_in_code_is_removed(written: str, runs: str) -> None:
    body = f"{{'source': 'code', 'description': 'd', 'params': {{'code': '{written}'}}}}"
    assert parse_tag(body).code == runs


def test_blank_params_are_rejected_with_a_reason_by_llmi_and_accepted_by_compat() -> None:
    body = "{'source': 'search', 'description': 'd', 'params': {'query': '  '}}"
    (tag,) = parse(f"<imgen>{body}</imgen>").tags
    assert tag.error.reason == "'query' is empty; say what to search for" and tag.counted
    assert parse_tag(body, profile="llmi-compat").query == "  "


def test_bools_are_rejected_by_llmi_and_read_as_ints_by_compat() -> None:
    body = "{'source': 'edit', 'description': 'd', 'params': {'img_index': True, 'prompt': 'p'}}"
    assert "not bool" in parse(f"<imgen>{body}</imgen>").tags[0].error.reason
    request = parse_tag(body, profile="llmi-compat")
    assert request.img_index == 1 and type(request.img_index) is int


def test_llmi_profile_removes_thinking_also_when_the_reply_starts_inside_it() -> None:
    with scripted() as engine:
        doc = engine.run(f"I should search.{search('x')}</think>Here: {search()}")
    assert doc.judge_view() == f"Here: {IMG}"
    assert [s.request.query for s in doc.image_segments] == ["owl"]
    assert doc.meta["thinking"] == [f"I should search.{search('x')}</think>"]


def test_remove_thinking_modes() -> None:
    text = "a<think>b</think>c</think>d"
    assert remove_thinking(text, "keep") == (text, ())
    assert remove_thinking(text, "blocks") == ("ac</think>d", ("<think>b</think>",))
    assert remove_thinking(text, "all") == ("ac</think>d", ("<think>b</think>",))
    assert remove_thinking("x</think>y<think>z</think>w", "all") == ("yw", ("x</think>", "<think>z</think>"))


def test_typed_markers_are_defused_by_llmi_and_kept_by_compat() -> None:
    text = f"typed <image> and <Fail_To_Generate_Image>, made {search()}"
    with scripted() as engine:
        assert engine.run(text).judge_view() == f"typed [image] and [Fail_To_Generate_Image], made {IMG}"
        kept = engine.run(text, profile="llmi-compat").judge_view()
    assert kept == f"typed <image> and <Fail_To_Generate_Image>, made {IMG}"


# -- statistics -------------------------------------------------------------------------------


def test_statistics_of_an_answer_without_tags_list_every_tool() -> None:
    with scripted() as engine:
        compat = engine.run("No tags.", profile=LLMI_COMPAT).stats()
        own = engine.run("No tags.").stats()
    one = {"total": 0, "success": 0, "success_rate": 1.0}
    assert compat == {name: one for name in ("diffusion", "search", "code", "edit")}
    assert list(compat) == ["diffusion", "search", "code", "edit"]
    assert own == {**compat, "invalid": one} and list(own)[-1] == "invalid"


def test_llmi_counts_every_tag_and_compat_only_what_llmi_counts() -> None:
    text = (
        search() + search("FAIL")
        + "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'q', 'n': 1}}</imgen>"
        + "<imgen>{'source': 'paint', 'description': 'd', 'params': {}}</imgen>"
        + "<imgen>{not a dict}</imgen>"
        + "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 9, 'prompt': 'p'}}</imgen>"
    )
    with scripted() as engine:
        own, compat = engine.run(text).stats(), engine.run(text, profile="llmi-compat").stats()
    assert own["search"] == {"total": 3, "success": 1, "success_rate": 0.3333}
    assert own["invalid"] == {"total": 2, "success": 0, "success_rate": 0.0}
    assert own["edit"] == {"total": 1, "success": 0, "success_rate": 0.0}
    assert compat["search"] == {"total": 2, "success": 1, "success_rate": 0.5}
    assert compat["edit"] == {"total": 1, "success": 0, "success_rate": 0.0}
    assert sum(r["total"] for r in compat.values()) == 3


# -- the profile API --------------------------------------------------------------------------


def test_profiles_are_named_frozen_and_derivable() -> None:
    assert PROFILES == {"llmi": LLMI, "llmi-compat": LLMI_COMPAT}
    assert get_profile(None) is LLMI and get_profile("llmi-compat") is LLMI_COMPAT
    with pytest.raises(dataclasses.FrozenInstanceError):
        LLMI.counting = "llmi"  # type: ignore[misc]
    strict = dataclasses.replace(LLMI_COMPAT, name="strict", code_cleaning="exact", blank_figure="fails",
                                 typed_markers="defused")
    assert strict.tag_finding == "llmi" and get_profile(strict) is strict
    for bad in ("compat", 3):
        with pytest.raises(ConfigError, match="unknown profile"):
            get_profile(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"counting": "most"}, "counting='most' is not one of 'all', 'llmi'"),
        ({"bool_index": 1}, "bool_index=1 is not one of False, True"),
        ({"name": ""}, "a profile needs a name"),
    ],
)
def test_a_bad_option_is_a_config_error(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(LLMI, **options)


def test_profile_round_trips_through_its_dict() -> None:
    custom = dataclasses.replace(LLMI_COMPAT, name="mine", thinking="all")
    assert Profile.from_dict(custom.to_dict()) == custom
    assert Profile.from_dict(LLMI_COMPAT.to_dict()) is LLMI_COMPAT
    assert Profile.from_dict({**LLMI.to_dict(), "from_the_future": 1}) is LLMI
    with pytest.raises(ConfigError):
        Profile.from_dict({"name": "x", "tag_finding": "greedy"})
    for hostile in (["not", "a", "mapping"], {"tag_finding": "llmi"}, {"name": 7}):
        with pytest.raises(ConfigError):
            Profile.from_dict(hostile)  # type: ignore[arg-type]


def test_engine_default_profile_and_per_call_override() -> None:
    text = f"<imgen> {{'source': 'search', 'description': 'd', 'params': {{'query': 'owl'}}}} </imgen>"
    with scripted() as engine:
        assert engine.profile is LLMI
        assert engine.run(text).judge_view() == IMG
        doc = engine.run(text, profile="llmi-compat")
    assert doc.profile is LLMI_COMPAT and doc.judge_view() == text and doc.image_segments == ()
    with scripted(profile="llmi-compat") as engine:
        assert engine.run(text).judge_view() == text
        assert engine.run(text, profile=LLMI).judge_view() == IMG
        assert [d.judge_view() for d in engine.run_many([text, search()], profile="llmi")] == [IMG, IMG]


def test_render_takes_a_profile() -> None:
    text = "<think>x</think>Typed <image>."
    assert llmi.render(text).judge_view() == "Typed [image]."
    doc = llmi.render(text, profile="llmi-compat")
    assert doc.judge_view() == "Typed <image>." and doc.profile is LLMI_COMPAT


def test_the_document_json_records_the_profile(tmp_path) -> None:
    custom = dataclasses.replace(LLMI_COMPAT, name="compat-exact-code", code_cleaning="exact")
    text = search("FAIL") + "<imgen>{'source': 'paint', 'description': 'd', 'params': {}}</imgen> <image>"
    with scripted() as engine:
        doc = engine.run(text, profile=custom)
    doc.save(tmp_path, ["json"])
    data = json.loads((tmp_path / "document.json").read_text())
    assert data["profile"] == custom.to_dict()
    assert [s["counted"] for s in data["segments"] if s["type"] == "image"] == [True, False]
    back = load(tmp_path)
    assert back.profile == custom and back.stats() == doc.stats() and back.judge_view() == doc.judge_view()
    assert Document.from_dict(doc.to_dict()).judge_view() == f"{FAIL}{FAIL} <image>"
    page = doc.save(tmp_path, ["html"])["html"].read_text()
    assert "<dt>profile</dt><dd>compat-exact-code</dd>" in page  # the page says how it was read
    old = {k: v for k, v in data.items() if k != "profile"}
    assert Document.from_dict(old).profile is LLMI  # files from before profiles were llmi's


def test_compat_validity_needs_the_number_of_inputs() -> None:
    text = "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 1, 'prompt': 'p'}}</imgen>"
    (tag,) = parse(text, "llmi-compat").tags
    assert tag.error.reason == "img_index 1 is outside 0..0 (the input images, then the answer's tags)"
    assert tag.counted  # LLM-I counts it as a failed edit
    assert parse(text, "llmi-compat", inputs=2).tags[0].ok


def test_a_valid_edit_that_cannot_run_fails_in_the_engine() -> None:
    """LLM-I's validity allows an index naming the edit itself or a later tag (below M + T);
    its scheduler never runs such an edit, and counts it as a failed edit."""
    text = "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 1, 'prompt': 'p'}}</imgen>" + search()
    assert [t.ok for t in parse(text, "llmi-compat").tags] == [True, True]
    with scripted("llmi-compat") as engine:
        doc = engine.run(text)
    edit = doc.image_segments[0]
    assert (edit.status, edit.error_type, edit.counted) == ("failed", "DependencyFailed", True)
    assert "only earlier tags can be edited" in edit.error or "k-th earlier tag" in edit.error


# -- the named options that fix LLM-I's mistakes -----------------------------------------------


CHINESE_RAW = "{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title(\"温度\")\\nplt.plot([1])'}}"
CHINESE_LITERAL = '{"source": "code", "description": "d", "params": {"code": "plt.title(\'温度\')\\nplt.plot([1])"}}'
DOUBLE = '{"source": "code", "description": "d", "params": {"code": "print(\'a\\\\nb\')"}}'


def test_code_cleaning_llmi_garbles_non_ascii_and_exact_does_not() -> None:
    exact = dataclasses.replace(LLMI_COMPAT, name="exact-code", code_cleaning="exact")
    assert parse_tag(CHINESE_RAW, profile=LLMI_COMPAT).code == 'plt.title("æ¸©åº¦")\nplt.plot([1])'
    assert parse_tag(CHINESE_RAW, profile=exact).code == 'plt.title("温度")\nplt.plot([1])'
    assert parse_tag(CHINESE_LITERAL, profile=LLMI_COMPAT).code == "plt.title('æ¸©åº¦')\nplt.plot([1])"
    assert parse_tag(CHINESE_LITERAL, profile=exact).code == "plt.title('温度')\nplt.plot([1])"
    # a literal's code is decoded by literal_eval; LLM-I decodes it a second time
    assert parse_tag(DOUBLE, profile=LLMI_COMPAT).code == "print('a\nb')"
    assert parse_tag(DOUBLE, profile=exact).code == "print('a\\nb')"
    assert parse_tag(DOUBLE).code == "print('a\\nb')"


@pytest.fixture(scope="module")
def sandboxed():
    from llmi.tools.sandbox.tool import CodeSandboxTool

    tool = CodeSandboxTool(workers=1)
    engine = Engine({"code": tool}, cache=False)
    yield engine
    engine.close()


def chart(code: str) -> str:
    return f"<imgen>{{'source': 'code', 'description': 'd', 'params': {{'code': '{code}'}}}}</imgen>"


def test_in_the_sandbox_blank_figures_and_indentation_follow_the_profile(sandboxed: Engine) -> None:
    text = (
        chart("x = 1")  # draws nothing
        + chart("    xs = [1, 3, 2]\\n    plt.plot(xs)")  # indented: runs under llmi only
        + chart("plt.title(\"温度\")\\nplt.plot([1, 2])")  # non-ASCII title
        + chart("")  # empty code
    )
    own = sandboxed.run(text)
    compat = sandboxed.run(text, profile="llmi-compat")
    exact = sandboxed.run(text, profile=dataclasses.replace(LLMI_COMPAT, name="x", code_cleaning="exact",
                                                              blank_figure="fails"))
    assert [s.ok for s in own.image_segments] == [False, True, True, False]
    assert own.image_segments[0].error_type == "EmptyFigure" and "drew nothing" in own.image_segments[0].error
    assert own.image_segments[3].error_type == "TagValidationError"  # blank code: rejected with a reason
    # LLM-I: a blank figure is an image; first-line-only stripping leaves an indented line
    assert [s.ok for s in compat.image_segments] == [True, False, True, True]
    blank = compat.image_segments[0]
    assert (blank.image.width, blank.image.height) == (660, 500) and "drew nothing" in blank.info["blank"]
    assert "indent" in compat.image_segments[1].error
    assert compat.image_segments[2].request.code.startswith('plt.title("æ¸©')
    assert compat.stats()["code"] == {"total": 4, "success": 3, "success_rate": 0.75}
    assert [s.ok for s in exact.image_segments] == [False, True, True, False]  # exact cleaning dedents
    assert exact.image_segments[2].request.code.startswith('plt.title("温度")')


def test_empty_figure_carries_the_blank_png() -> None:
    err = EmptyFigure("nothing drawn", ImageData.blank(4, 4))
    assert err.image.format == "png" and not err.transient


# -- the sources table ----------------------------------------------------------------------


def test_every_reader_takes_its_facts_from_the_sources_table() -> None:
    from llmi.cache import normalise_params
    from llmi.engine import DEFAULT_LIMITS, NOT_CONFIGURED_HELP

    assert SOURCES == tuple(SOURCE_TABLE) and set(STATS_ORDER) == set(SOURCES)
    for name, source in SOURCE_TABLE.items():
        assert PARAM_TYPES[name] == {p.name: p.type for p in source.params}
        assert DEFAULT_LIMITS[name] is source.limits and NOT_CONFIGURED_HELP[name] == source.not_configured
        for param in source.params:
            if param.type is str:
                body = {"source": name, "description": "d",
                        "params": {p.name: ("" if p is param else 0 if p.type is int else "x") for p in source.params}}
                with pytest.raises(llmi.errors.TagValidationError, match=param.blank_hint):
                    parse_tag(repr(body))
    assert normalise_params("search", {"query": " Eiffel  TOWER "}) == {"query": "eiffel tower"}
    assert normalise_params("edit", {"img_index": 3, "prompt": "a  b"}) == {"prompt": "a b"}
    assert ImageRequest("code", "a chart", {"code": "plt.plot()"}).with_source("search").query == "a chart"
    with pytest.raises(ValueError):
        ImageRequest("search", "d", {"query": "q"}).with_source("code")


# -- the command line -------------------------------------------------------------------------


def test_llmi_render_profile_prints_the_processed_text_and_statistics(tmp_path) -> None:
    answer = tmp_path / "answer.txt"
    answer.write_text(
        "<think>plan</think>Typed <image>. " + chart("x = 1")
        + " <imgen> {'source': 'search', 'description': 'd', 'params': {'query': 'q'}} </imgen>"
        + "<imgen>{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'p'}}</imgen>",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMI_", "QWEN_"))}
    env["LLMI_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "llmi.cli", "render", str(answer), "--out", str(tmp_path / "out"),
         "--profile", "llmi-compat", "--judge-view", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["judge_view"] == (
        "Typed <image>. <image> <imgen> {'source': 'search', 'description': 'd', 'params': {'query': 'q'}} </imgen>"
        "<fail_to_generate_image>"
    )
    assert shown["stats"]["diffusion"] == {"total": 1, "success": 0, "success_rate": 0.0}  # no fallback
    assert shown["stats"]["code"] == {"total": 1, "success": 1, "success_rate": 1.0}
    assert list(shown["stats"]) == ["diffusion", "search", "code", "edit"]
    saved = json.loads((tmp_path / "out" / "document.json").read_text())
    assert saved["profile"]["name"] == "llmi-compat" and saved["judge_view"] == shown["judge_view"]
    assert saved["segments"][-1]["error_type"] == "ToolNotConfigured" and saved["segments"][-1]["fallback"] is None
