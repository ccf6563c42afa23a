"""LLM-I's combined reward on hand-computed cases, through the whole scorer (real engine, real
HTTP judges), in the compat profile, to 1e-9."""

from __future__ import annotations

import asyncio

import pytest

from llmi.engine import Engine
from llmi.errors import NotFound
from llmi.rewards import (
    ExtraInfo,
    JudgeClient,
    JudgeLimits,
    LLMJudge,
    MLLMJudge,
    RewardFactors,
    RewardScorer,
    Sample,
    combine,
    llm_part,
    mllm_part,
)
from llmi.testing import LatencyTool

from rewards_fixtures import LLM_OK, MLLM_OK, Reply, judge_server, search_tag  # noqa: F401


def fail_tag(query: str) -> str:
    return f"<imgen>{{'source': 'diffusion', 'description': 'd', 'params': {{'prompt': '{query}'}}}}</imgen>"


def llm(t: float, i: float, ft: float = 1.4, fi: float = 0.6) -> float:
    return ((ft * t + fi * i) / (ft + fi) - 1) / 4


def mllm(q: float, ti: float, tq: float) -> float:
    return ((q + ti + tq) / 3 - 1) / 4


def R(n: float, l: float, m: float) -> float:  # noqa: E741 - LLM-I's default factors
    return 0.2 * n + 0.3 * m * n + 0.5 * l


MANY = "".join(f"Part {i}. " + search_tag(f"q{i}") for i in range(11))

# name: (answer, extra_info, LLM replies, MLLM replies, expected R, expected logged fields)
CASES = {
    "one-image": ("Owls hunt at night. " + search_tag("owl"), dict(image_num=1), [LLM_OK], [MLLM_OK],
                  R(1, llm(4, 5), mllm(4, 3, 5)), {"img_num_score": 1.0, "ti_rel_score": 3.0, "tq_rel_score": 5.0}),
    "no-image-wanted": ("Owls hunt at night.", dict(image_num=-1), ["Text: 5\nImage: 5"], [],
                        1.0, {"img_quality_score": 0.0, "mllm_score": 0.0}),
    "half": ("Owls. " + search_tag("owl") + " Cats. " + fail_tag("cat"), dict(image_num=2), ["Text: 3\nImage: 2"],
             ["Image Quality: 5\nTask Relevance: 4\nText-Image Relevance: 4"], R(0.5, llm(3, 2), mllm(5, 4, 4)),
             {"img_num_score": 0.5, "stats/diffusion_total": 1.0, "stats/diffusion_success": 0.0}),
    "too-many-train": ("A " + search_tag("a") + " B " + search_tag("b") + " C " + search_tag("c") + " D " + search_tag("d"),
                       dict(image_num=2), [LLM_OK], [MLLM_OK], R(0.4, llm(4, 5), mllm(4, 3, 5)), {}),
    "too-many-eval": ("A " + search_tag("a") + " B " + search_tag("b") + " C " + search_tag("c"),
                      dict(image_num=2, split="test"), [LLM_OK], [MLLM_OK], R(0.0, llm(4, 5), mllm(4, 3, 5)), {}),
    "all-failed": ("Owls. " + fail_tag("owl"), dict(image_num=99), ["Text: 4\nImage: 4"], [],
                   R(0, llm(4, 4), 1.0), {"img_num_score": 0.0, "mllm_score": 0.0}),
    "llm-error": ("Owls. " + search_tag("owl"), dict(image_num=1), [Reply(status=401, body={"error": "bad key"})],
                  [MLLM_OK], R(1, 0.0, mllm(4, 3, 5)), {"llm_text_score": 1.0, "llm_score": 0.0}),
    "mllm-missing-line": ("Owls. " + search_tag("owl"), dict(image_num=1), [LLM_OK],
                          ["Image Quality: 2\nText-Image Relevance: 3"], R(1, llm(4, 5), mllm(2, 1, 3)), {"ti_rel_score": 1.0}),
    "unclamped": ("Owls. " + search_tag("owl"), dict(image_num=0), ["Text: 7\nImage: -2"], [MLLM_OK],
                  R(1, llm(7, -2), mllm(4, 3, 5)), {"llm_text_score": 7.0, "llm_image_score": -2.0}),
    "eleven-images": (MANY, dict(image_num=11), [LLM_OK], [], R(1, llm(4, 5), 0.0), {"img_quality_score": 1.0}),
    "tags-only": (search_tag("owl") + "\n" + search_tag("cat"), dict(image_num=2), ["Text: 5\nImage: 3"], [MLLM_OK],
                  R(1, llm(1, 3), mllm(4, 3, 5)), {"llm_text_score": 1.0}),
    "think-removed": ("<think>maybe " + search_tag("hidden") + "</think>Owls. " + search_tag("owl"), dict(image_num=1),
                      [LLM_OK], [MLLM_OK], R(1, llm(4, 5), mllm(4, 3, 5)), {"stats/search_total": 1.0}),
    "garbage-llm": ("Owls. " + search_tag("owl"), dict(image_num=1), ["I think it is fine."], [MLLM_OK],
                    R(1, 0.0, mllm(4, 3, 5)), {"llm_text_score": 1.0, "llm_image_score": 1.0}),
    # LLM-I's reading: a typed <image> counts as an image and takes the first picture's place
    "typed-image": ("Owls <image> hunt. " + search_tag("owl") + " More.", dict(image_num=2), [LLM_OK], [MLLM_OK],
                    R(1, llm(4, 5), mllm(4, 3, 5)), {"img_num_score": 1.0, "stats/search_success": 1.0}),
    # whitespace inside the tag's braces' edges: no tag at all for LLM-I, the text stays as written
    "not-a-tag": ("Owls. <imgen> {'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>",
                  dict(image_num=-1), [LLM_OK], [], R(1, llm(4, 5), 1.0), {"stats/search_total": 0.0}),
    # an invalid tag is not counted in LLM-I's statistics, and shows as a failure
    "invalid-not-counted": ("Owls. <imgen>{'source': 'photo', 'description': 'd', 'params': {'query': 'owl'}}</imgen>",
                            dict(image_num=1), [LLM_OK], [], R(0, llm(4, 5), 1.0),
                            {"stats/search_total": 0.0, "stats/diffusion_success_rate": 1.0}),
}


@pytest.fixture(scope="module")
def engine():
    tools = {"search": LatencyTool("search", latency=0.0),
             "diffusion": LatencyTool("diffusion", latency=0.0, fail_with=NotFound("no generator"))}
    eng = Engine(tools)
    yield eng
    eng.close()


def scorer_for(judge_server, engine, name, llm_replies, mllm_replies, **kwargs):
    limits = JudgeLimits(retries=0, timeout=10)
    llm_url = judge_server.script(f"{name}-llm", *llm_replies)
    mllm_url = judge_server.script(f"{name}-mllm", *(mllm_replies or [Reply(status=500, body={"error": "must not be called"})]))
    return RewardScorer(
        engine,
        llm_judge=LLMJudge(JudgeClient(llm_url, limits=limits, label="LLM judge")),
        mllm_judge=MLLMJudge(JudgeClient(mllm_url, limits=limits, label="MLLM judge")),
        **kwargs,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_compat_reward_matches_llmi_formula(judge_server, engine, name):
    answer, info, llm_replies, mllm_replies, expected, logged = CASES[name]
    scorer = scorer_for(judge_server, engine, name, llm_replies, mllm_replies)
    info = {"question": "Tell me about owls", **info}
    b = asyncio.run(scorer.ascore(Sample(answer, ExtraInfo(**info))))
    assert b.status == "ok", b.error
    assert b.score == pytest.approx(expected, abs=1e-9)
    metrics = b.metrics()
    assert metrics["score"] == pytest.approx(expected, abs=1e-9)
    for key, value in logged.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    if not mllm_replies:
        assert judge_server.bodies(f"{name}-mllm") == []  # skipped, never asked


def test_multimodal_recipe_factors(judge_server, engine):
    scorer = scorer_for(judge_server, engine, "mm", [LLM_OK], [MLLM_OK], factors=RewardFactors.preset("mllmi"))
    b = asyncio.run(scorer.ascore(Sample("Owls. " + search_tag("owl"), ExtraInfo(1, "Owls?"))))
    assert b.score == pytest.approx(R(1, llm(4, 5, 1.5, 0.5), mllm(4, 3, 5)), abs=1e-9)


def test_tool_factor_adds_r_tool(judge_server, engine):
    scorer = scorer_for(judge_server, engine, "tool", [LLM_OK], [MLLM_OK], factors=RewardFactors(tool_factor=0.5))
    b = asyncio.run(scorer.ascore(Sample("Owls. " + search_tag("owl"), ExtraInfo(1, "Owls?", tools=("search", "code")))))
    r_tool = 0.5 * (0.2 / 0.6) + 0.5 * (0.2 / 0.6)
    assert b.r_tool == pytest.approx(r_tool)
    assert b.score == pytest.approx(R(1, llm(4, 5), mllm(4, 3, 5)) + 0.5 * r_tool, abs=1e-9)


def test_formula_helpers_agree_with_the_cases():
    f = RewardFactors()
    value = combine(0.5, llm_part({"text": 3, "image": 2}, f), mllm_part({"quality": 5, "task": 4, "text_image": 4}, f), 0.7, f)
    assert value == pytest.approx(CASES["half"][4], abs=1e-12)


def test_compat_mllm_images_follow_llmis_split(judge_server, engine):
    answer, info, llm_replies, mllm_replies, _, _ = CASES["typed-image"]
    scorer = scorer_for(judge_server, engine, "typed-shape", llm_replies, mllm_replies)
    asyncio.run(scorer.ascore(Sample(answer, ExtraInfo(question="Owls?", **info))))
    content = judge_server.bodies("typed-shape-mllm")[0]["messages"][1]["content"]
    # "<image>" typed after "Owls " takes the only picture; the real tag's marker gets none
    assert [p.get("text", "IMG") for p in content] == ["Question: Owls?\nAnswer: Owls ", "IMG", " hunt. ", " More."]
    llm_body = judge_server.bodies("typed-shape-llm")[0]["messages"][1]["content"]
    assert llm_body == "Question: Owls?\nAnswer: " + answer  # the raw answer, tags included
