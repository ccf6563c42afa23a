"""Rule rewards, options, the reward view and the breakdown's logged fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmi.document import Document, ImageSegment, TextSegment
from llmi.engine import Engine
from llmi.errors import ConfigError, NotFound
from llmi.image import ImageData
from llmi.rewards import (
    LLMI_METRIC_KEYS,
    METRIC_KEYS,
    JudgeVerdict,
    RewardBreakdown,
    RewardFactors,
    RewardOptions,
    check_image_num,
    image_count,
    image_count_score,
    image_num_score,
    r_tool,
    tag_validity,
    view_of,
)
from llmi.testing import LatencyTool

from rewards_fixtures import search_tag


@pytest.mark.parametrize(
    "k, n, train, expected",
    [
        (0, -1, True, 1.0), (1, -1, True, 0.0), (3, -1, False, 0.0),
        (0, 0, True, 1.0), (9, 0, False, 1.0),
        (0, 99, True, 0.0), (1, 99, True, 1.0), (12, 99, False, 1.0),
        (0, 3, True, 0.0), (1, 3, True, 1 / 3), (3, 3, True, 1.0), (4, 3, True, 0.7), (5, 3, True, 0.4),
        (6, 3, True, 0.1), (7, 3, True, 0.0), (20, 3, True, 0.0),
        (2, 3, False, 0.0), (3, 3, False, 1.0), (4, 3, False, 0.0),
        (1, 1, True, 1.0), (2, 1, True, 0.7),
        (0, 1, False, 0.0), (0, 99, False, 0.0), (1, -1, False, 0.0), (0, -1, False, 1.0),
        (50, 100, True, 0.5), (99, 98, True, 0.7), (101, 98, True, 0.1), (102, 98, True, 0.0),
        (1, 2, True, 0.5), (4, 2, True, 0.4),
    ],
)
def test_image_num_score_matches_llmi(k, n, train, expected):
    assert math.isclose(image_num_score(k, n, train=train), expected, abs_tol=1e-12)


@pytest.mark.parametrize("bad", [True, "3", 2.5, None, -2, -100, [1]])
def test_image_num_must_be_meaningful(bad):
    with pytest.raises(ConfigError, match="image_num"):
        check_image_num(bad)


def test_image_num_accepts_dataset_integers():
    assert check_image_num(np.int64(4)) == 4
    assert check_image_num(2.0) == 2


def test_r_tool_weights_attempts_and_successes():
    stats = {"search": {"total": 1, "success": 0}, "edit": {"total": 2, "success": 2},
             "code": {"total": 0, "success": 0}, "diffusion": {"total": 3, "success": 3}}
    # required code (0.4), edit (0.3), search (0.2): attempted edit + search, succeeded edit
    assert math.isclose(r_tool(stats, ["code", "edit", "search"]), 0.5 * 0.3 / 0.9 + 0.5 * 0.5 / 0.9)
    assert r_tool(stats, ["diffusion"]) == 1.0
    assert r_tool(stats, None) == 0.0
    assert r_tool(stats, ["teleport"]) == 0.0  # weightless required tools: 1.0 only if nothing was attempted
    assert r_tool({"invalid": {"total": 3, "success": 0}}, ["teleport"]) == 1.0


def _row(total: int, success: int) -> dict[str, float]:
    return {"total": total, "success": success, "success_rate": round(success / total, 4) if total else 1.0}


@pytest.mark.parametrize(
    "used, required, expected",
    [
        ({"code": (1, 0), "edit": (1, 1)}, ["code", "edit"], 0.5 * 0.3 / 0.7 + 0.5 * 0.7 / 0.7),
        ({"search": (2, 1)}, ["search", "search"], 1.0),  # R_req is a set
        ({"search": (1, 1)}, ["diffusion"], 0.0),  # a tool used but not required does not count
        ({"diffusion": (1, 0)}, ["diffusion"], 0.5),  # attempted, never succeeded
        ({t: (1, 1) for t in ("code", "edit", "search", "diffusion")}, ["code", "edit", "search", "diffusion"], 1.0),
        ({"code": (3, 3)}, [], 0.0),  # nothing required: 0.0 whatever was used
        ({}, ["code", "search"], 0.0),
        ({"search": (1, 1)}, ["search", "code"], 0.5 * 0.2 / 0.6 + 0.5 * 0.2 / 0.6),
    ],
)
def test_r_tool_follows_llmi(used, required, expected):
    stats = {t: _row(*used.get(t, (0, 0))) for t in ("diffusion", "search", "code", "edit")}
    assert math.isclose(r_tool(stats, required), expected, abs_tol=1e-12)


def _doc(*segments) -> Document:
    return Document(tuple(segments))


def _image(index: int, ok: bool = True, raw: str = "<imgen>{}</imgen>") -> ImageSegment:
    return ImageSegment(index=index, raw=raw, tool="search", status="ok" if ok else "failed",
                        image=ImageData.blank(4, 4) if ok else None, error=None if ok else "nothing found")


def test_image_count_counts_produced_images():
    doc = _doc(TextSegment("a "), _image(0), TextSegment(" b "), _image(1, ok=False), _image(2))
    assert image_count(doc) == image_count(doc, typed_image="ignore") == 2
    assert image_count_score(doc, 2) == 1.0
    assert image_count_score(doc, 3, split="test") == 0.0


def test_tag_validity_counts_readable_tags_only():
    tools = {"search": LatencyTool("search", latency=0.0, fail_with=NotFound("nothing"))}
    with Engine(tools) as engine:
        doc = engine.run(search_tag("owl") + "<imgen>{'source': 'search'}</imgen>" + search_tag("cat"))
    assert tag_validity(doc) == pytest.approx(2 / 3)  # a tool failure is still a valid tag
    assert tag_validity(_doc(TextSegment("no tags"))) == 1.0


LENIENT = ("<imgen>{'source': 'code', 'description': 'd', 'params': {'code': 'plt.title('Sales')\\nplt.plot([1, 2])'}}"
           "</imgen>")


def test_lenient_tags_can_be_refused():
    with Engine({"code": LatencyTool("code", latency=0.0)}) as engine:
        doc = engine.run("Chart: " + LENIENT)
    assert doc.image_segments[0].ok
    assert tag_validity(doc) == 1.0
    assert tag_validity(doc, lenient="invalid") == 0.0
    view = view_of(doc, RewardOptions(lenient_tags="invalid"))
    assert (view.text, view.images, view.image_count, view.failed) == ("Chart: <fail_to_generate_image>", (), 0, 1)
    assert view_of(doc).image_count == 1


def test_view_typed_placeholders_are_defused_when_ignored():
    doc = _doc(TextSegment("Look <image> here "), _image(0))
    strict = view_of(doc, RewardOptions(typed_image="ignore"))
    assert strict.text == "Look [image] here <image>"
    assert strict.image_count == 1 and len(strict.images) == 1


def test_view_answer_and_empty_text():
    doc = _doc(_image(0), TextSegment("\n "), _image(1, ok=False))
    view = view_of(doc)
    assert view.answer == "<imgen>{}</imgen>\n <imgen>{}</imgen>"
    assert not view.text_is_empty  # a failure marker is text to LLM-I
    assert view_of(_doc(_image(0), TextSegment("\n"))).text_is_empty
    assert view.failed_share == 0.5


def test_options_and_factors_are_validated():
    with pytest.raises(ConfigError, match="no_images"):
        RewardOptions(no_images="maybe")
    with pytest.raises(ConfigError, match="llm_factor"):
        RewardFactors(llm_factor=-1)
    with pytest.raises(ConfigError, match="unknown reward factor"):
        RewardFactors().with_values({"llm_factr": 1})
    with pytest.raises(ConfigError, match="cannot both be 0"):
        RewardFactors(llm_text_factor=0, llm_image_factor=0)
    assert RewardFactors.preset("mllmi").llm_image_factor == 0.5
    assert RewardOptions().is_compat and not RewardOptions.preset("llmi").is_compat


def test_metrics_have_the_same_keys_whatever_happened():
    ok = RewardBreakdown(
        score=0.9, img_num_score=1.0, llm=JudgeVerdict("llm", "ok", scores={"text": 4, "image": 5}),
        mllm=JudgeVerdict("mllm", "skipped", scores={"quality": 5, "task": 5, "text_image": 5}, skip_reason="no_images"),
        llm_score=0.8, mllm_score=1.0, stats={"search": {"total": 2, "success": 1, "success_rate": 0.5}},
    )
    failed = RewardBreakdown.failure("boom", "ToolError")
    excluded = RewardBreakdown.failure("judge down", "JudgeError", excluded=True)
    keys = [list(b.metrics()) for b in (ok, failed, excluded)]
    assert keys[0] == keys[1] == keys[2] == list(METRIC_KEYS)
    assert list(METRIC_KEYS[: len(LLMI_METRIC_KEYS)]) == list(LLMI_METRIC_KEYS)
    m = ok.metrics()
    # LLM-I logs the MLLM fields as 0 when there was no image, after R used 5/5/5
    assert (m["img_quality_score"], m["mllm_score"], m["llm_text_score"]) == (0.0, 0.0, 4.0)
    assert (m["stats/search_total"], m["stats/search_success_rate"], m["stats/code_success_rate"]) == (2.0, 0.5, 1.0)
    assert all(isinstance(v, float) for v in m.values())
    assert set(failed.metrics().values()) <= {0.0, 1.0} and failed.metrics()["failed"] == 1.0
    assert excluded.score is None and excluded.metrics()["excluded"] == 1.0
