"""LLM-I's reward under ``llmi-compat``, case by case: the image-count rule for each split, the
judges' parsing, when the MLLM judge is asked, the empty-text rule, the combination and the
logged fields (LLMI-SEMANTICS §6), each outcome written out by hand from the rules.

The judges are scripted in memory (a client that answers with the next reply, or raises), the
tools as in ``test_compat.py``: a tag fails exactly when its text contains ``FAIL``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from llmi.engine import Engine
from llmi.errors import ConfigError, JudgeError
from llmi.image import ImageData
from llmi.rewards import LLMI_METRIC_KEYS, ExtraInfo, LLMJudge, MLLMJudge, RewardFactors, RewardScorer, Sample
from llmi.rewards.judge_client import JudgeReply
from llmi.testing import LatencyTool


class ScriptedClient:
    """A judge endpoint in memory: each call gets the next reply (the last repeats); a reply that
    is an exception is raised instead. ``calls`` keeps each call's messages and sampling."""

    model = "scripted"

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[Any, Any]] = []

    async def complete(self, messages, *, reply=None, sampling=None, lines=False) -> JudgeReply:
        self.calls.append((messages, sampling))
        answer = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(answer, Exception):
            raise answer
        return JudgeReply(answer, self.model, "off", 0.0, 1)

    async def aclose(self) -> None:
        pass


def S(query: str = "owl") -> str:
    return f"<imgen>{{'source': 'search', 'description': 'd', 'params': {{'query': {query!r}}}}}</imgen>"


def E(index: int) -> str:
    return f"<imgen>{{'source': 'edit', 'description': 'd', 'params': {{'img_index': {index}, 'prompt': 'blue'}}}}</imgen>"


LLM_REPLY = "Text: 4\nImage: 3"
MLLM_REPLY = "Image Quality: 5\nTask Relevance: 4\nText-Image Relevance: 2"
DOWN = JudgeError("the judge is down")


def llm(t: float, i: float) -> float:
    return ((1.4 * t + 0.6 * i) / 2.0 - 1) / 4


def mllm(q: float, ti: float, tq: float) -> float:
    return ((q + ti + tq) / 3.0 - 1) / 4


@dataclass(frozen=True)
class RewardCase:
    name: str
    answer: str
    n: float  # the image-count score
    text_image: tuple[int, int]  # the LLM judge's (Text, Image) as R uses them
    mllm_scores: tuple[int, int, int]  # (Image Quality, Task Relevance, Text-Image Relevance) as R uses them
    asked: bool  # whether the MLLM judge is sent a request
    info: dict[str, Any] = field(default_factory=dict)
    llm_reply: str | Exception = LLM_REPLY
    mllm_reply: str | Exception = MLLM_REPLY
    inputs: int = 0
    logged_mllm: bool = True  # False: no <image> in the processed text, so the MLLM fields are logged as 0
    r_tool: float = 1.0


P2 = "Owls. " + S("a") + " More owls. " + S("b")
TEN = "".join(f"Owl {i}. " + S(f"q{i}") for i in range(10))

CASES = [
    # -- the image-count rule and the split ------------------------------------------------------
    RewardCase("training, at N", "Owls. " + S(), 1.0, (4, 3), (5, 4, 2), True),
    RewardCase("training, above N", P2, 0.7, (4, 3), (5, 4, 2), True, info={"image_num": 1}),
    RewardCase("training, below N", "Owls. " + S(), 1 / 3, (4, 3), (5, 4, 2), True, info={"image_num": 3}),
    RewardCase("evaluation, above N", P2, 0.0, (4, 3), (5, 4, 2), True, info={"image_num": 1, "split": "test"}),
    RewardCase("an empty split is not training", P2, 0.0, (4, 3), (5, 4, 2), True, info={"image_num": 1, "split": ""}),
    RewardCase("a null split is not training", P2, 0.0, (4, 3), (5, 4, 2), True, info={"image_num": 1, "split": None}),
    RewardCase("TRAIN in capitals is evaluation", "Owls. " + S(), 0.0, (4, 3), (5, 4, 2), True,
               info={"image_num": 3, "split": "TRAIN"}),
    RewardCase("99 in evaluation wants at least one", P2, 1.0, (4, 3), (5, 4, 2), True, info={"image_num": 99, "split": "val"}),
    RewardCase("-1 with an image", "Owls. " + S(), 0.0, (4, 3), (5, 4, 2), True, info={"image_num": -1}),
    RewardCase("0 takes any number", TEN, 1.0, (4, 3), (5, 4, 2), True, info={"image_num": 0, "split": "test"}),
    RewardCase("a typed <image> is counted", "Look <image> here. " + S(), 1.0, (4, 3), (5, 4, 2), True,
               info={"image_num": 2, "split": "test"}),
    RewardCase("an edit of the input is an image", "Bluer: " + E(0), 1.0, (4, 3), (5, 4, 2), True, inputs=1,
               info={"tools": ["edit"]}),
    # -- when the MLLM judge is asked --------------------------------------------------------------
    RewardCase("no <image>: 5/5/5, logged as 0", "Owls. " + S("FAIL"), 0.0, (4, 3), (5, 5, 5), False, logged_mllm=False,
               r_tool=0.5),
    RewardCase("no image wanted and none made", "Just prose.", 1.0, (4, 3), (5, 5, 5), False, logged_mllm=False,
               info={"image_num": -1, "tools": []}, r_tool=0.0),
    # LLM-I's MLLM client answers 5/5/5 itself, without a request, when it is given no picture
    RewardCase("typed <image> markers alone", "A typed <image> only.", 1.0, (4, 3), (5, 5, 5), False,
               info={"image_num": 99, "tools": []}, r_tool=0.0),
    RewardCase("ten images are judged", TEN, 1.0, (4, 3), (5, 4, 2), True, info={"image_num": 10}),
    RewardCase("eleven images score 1/1/1 unasked", TEN + " Last. " + S("z"), 1.0, (4, 3), (1, 1, 1), False,
               info={"image_num": 0}),
    RewardCase("ten images and a typed marker are eleven", TEN + " <image>", 1.0, (4, 3), (1, 1, 1), False,
               info={"image_num": 0}),
    RewardCase("thinking is removed before the tools", "<think>" + S() + "</think>Prose only.", 1.0, (4, 3), (5, 5, 5),
               False, logged_mllm=False, info={"image_num": -1}, r_tool=0.0),
    # -- the empty-text rule -----------------------------------------------------------------------
    RewardCase("images only: Text is 1", S("a") + S("b"), 1.0, (1, 3), (5, 4, 2), True, info={"image_num": 2}),
    RewardCase("whitespace and an image: Text is 1", " \n" + S() + "\t\n", 1.0, (1, 3), (5, 4, 2), True),
    RewardCase("a failure marker is text", S("FAIL"), 1.0, (4, 3), (5, 5, 5), False, logged_mllm=False,
               info={"image_num": 0}, r_tool=0.5),
    RewardCase("an empty answer: Text is 1", "", 1.0, (1, 3), (5, 5, 5), False, logged_mllm=False,
               info={"image_num": -1, "tools": []}, r_tool=0.0),
    RewardCase("an answer of thinking only: Text is 1", "<think>all of it</think>", 1.0, (1, 3), (5, 5, 5), False,
               logged_mllm=False, info={"image_num": -1, "tools": []}, r_tool=0.0),
    # -- reading the judges' replies ---------------------------------------------------------------
    RewardCase("values are not clamped", "Owls. " + S(), 1.0, (-2, 9), (0, 7, -1), True, llm_reply="Text: -2\nImage: 9",
               mllm_reply="Image Quality: 0\nTask Relevance: 7\nText-Image Relevance: -1"),
    RewardCase("the first match wins", "Owls. " + S(), 1.0, (2, 3), (3, 4, 5), True,
               llm_reply="Text: 2\nImage: 3\nText: 5\nImage: 5",
               mllm_reply="Image Quality: 3\nTask Relevance: 4\nText-Image Relevance: 5\nImage Quality: 1"),
    RewardCase("a missing value is 1", "Owls. " + S(), 1.0, (1, 4), (1, 3, 1), True, llm_reply="Image: 4",
               mllm_reply="Task Relevance: 3"),
    RewardCase("an empty reply is all 1s", "Owls. " + S(), 1.0, (1, 1), (1, 1, 1), True, llm_reply="", mllm_reply=""),
    RewardCase("the LLM judge's thinking is dropped", "Owls. " + S(), 1.0, (5, 4), (5, 4, 2), True,
               llm_reply="<think>Text: 1\nImage: 1</think>Text: 5\nImage: 4"),
    RewardCase("an unclosed think in the LLM reply is read", "Owls. " + S(), 1.0, (2, 2), (5, 4, 2), True,
               llm_reply="<think>Text: 2 Image: 2"),
    RewardCase("the MLLM judge's thinking is not dropped", "Owls. " + S(), 1.0, (4, 3), (2, 3, 5), True,
               mllm_reply="<think>Image Quality: 2</think>Image Quality: 4\nTask Relevance: 3\nText-Image Relevance: 5"),
    RewardCase("labels are case-sensitive", "Owls. " + S(), 1.0, (1, 1), (1, 1, 1), True, llm_reply="text: 5\nimage: 5",
               mllm_reply="image quality: 5\ntask relevance: 5\ntext-image relevance: 5"),
    RewardCase("a decimal is read up to its point", "Owls. " + S(), 1.0, (4, 3), (5, 4, 2), True,
               llm_reply="Text: 4.5\nImage: 3.9"),
    RewardCase("a value may follow on the next line", "Owls. " + S(), 1.0, (4, 3), (5, 4, 2), True,
               llm_reply="Text:\n\n4\nImage:3"),
    RewardCase("the naming trap: Task Relevance is ti_rel", "Owls. " + S(), 1.0, (4, 3), (3, 1, 5), True,
               mllm_reply="Text-Image Relevance: 5\nTask Relevance: 1\nImage Quality: 3"),
    RewardCase("an LLM judge error is 1/1", "Owls. " + S(), 1.0, (1, 1), (5, 4, 2), True, llm_reply=DOWN),
    RewardCase("an MLLM judge error is 1/1/1", "Owls. " + S(), 1.0, (4, 3), (1, 1, 1), True, mllm_reply=DOWN),
    RewardCase("both judges down", "Owls. " + S(), 1.0, (1, 1), (1, 1, 1), True, llm_reply=DOWN, mllm_reply=DOWN),
    # -- the tool reward: logged, never added --------------------------------------------------------
    RewardCase("r_tool for a tool not used", "Owls. " + S(), 1.0, (4, 3), (5, 4, 2), True, info={"tools": ["code"]},
               r_tool=0.0),
    RewardCase("r_tool for one of two tools", "Owls. " + S(), 1.0, (4, 3), (5, 4, 2), True,
               info={"tools": ["search", "code"]}, r_tool=1 / 3),
    RewardCase("r_tool for a tool tried and failed", "Owls. " + S("FAIL") + " and " + S(), 1.0, (4, 3), (5, 4, 2), True,
               info={"image_num": 1, "tools": ["search", "search"]}, r_tool=1.0),
]


def tools() -> dict[str, LatencyTool]:
    return {s: LatencyTool(source=s, latency=0.0, backend="scripted", fail_if="FAIL") for s in ("search", "diffusion", "code", "edit")}


@pytest.fixture(scope="module")
def engine():
    with Engine(tools(), profile="llmi-compat", cache=False, fallback={}) as eng:
        yield eng


def score(engine, answer, info=None, *, llm_reply=LLM_REPLY, mllm_reply=MLLM_REPLY, inputs=0, factors=None):
    llm_client, mllm_client = ScriptedClient(llm_reply), ScriptedClient(mllm_reply)
    scorer = RewardScorer(engine, llm_judge=LLMJudge(llm_client), mllm_judge=MLLMJudge(mllm_client), factors=factors)
    row = {"image_num": 1, "question": "Tell me about owls", "tools": ["search"], "split": "train", **(info or {})}
    sample = Sample(answer, scorer.extra_info(row), [ImageData.blank(8, 8, "white")] * inputs)
    return asyncio.run(scorer.ascore(sample)), llm_client, mllm_client


def test_there_are_enough_reward_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compat_reward_follows_llmi(case: RewardCase, engine) -> None:
    b, llm_client, mllm_client = score(engine, case.answer, case.info, llm_reply=case.llm_reply,
                                       mllm_reply=case.mllm_reply, inputs=case.inputs)
    t, i = case.text_image
    q, ti, tq = case.mllm_scores
    expected = 0.2 * case.n + 0.3 * mllm(q, ti, tq) * case.n + 0.5 * llm(t, i)
    assert b.status == "ok"
    assert b.score == pytest.approx(expected, abs=1e-12)
    assert len(mllm_client.calls) == int(case.asked)
    assert len(llm_client.calls) == 1
    m = b.metrics()
    logged = {"img_num_score": case.n, "llm_text_score": t, "llm_image_score": i, "llm_score": llm(t, i),
              "img_quality_score": q, "ti_rel_score": ti, "tq_rel_score": tq, "mllm_score": mllm(q, ti, tq),
              "r_tool": case.r_tool, "score": expected}
    if not case.logged_mllm:
        logged.update(img_quality_score=0, ti_rel_score=0, tq_rel_score=0, mllm_score=0)
    assert {k: m[k] for k in logged} == pytest.approx(logged, abs=1e-12)


def test_the_llm_judge_reads_the_raw_answer_without_thinking(engine) -> None:
    answer = "<think>plan " + S("x") + "</think>Owls <b>hunt</b>. " + S("owl") + " <image>"
    _, llm_client, _ = score(engine, answer, {"question": "What do owls do?"})
    (messages, sampling), = llm_client.calls
    assert messages[1] == {"role": "user", "content": "Question: What do owls do?\nAnswer: Owls <b>hunt</b>. " + S("owl") + " <image>"}
    assert sampling.temperature == 0.5 and sampling.extra_body == {"enable_thinking": False}
    assert isinstance(sampling.seed, int) and 0 <= sampling.seed <= 1_000_000


def test_the_mllm_judge_sees_the_processed_text_cut_at_each_image(engine) -> None:
    answer = "Input, bluer: " + E(0) + " then " + S("FAIL") + " typed <image> end " + S("owl")
    _, _, mllm_client = score(engine, answer, {"question": "Q?", "image_num": 0}, inputs=1)
    (messages, sampling), = mllm_client.calls
    parts = messages[1]["content"]
    # three <image> markers (two made, one typed): the two pictures go to the first two cuts, and
    # the input image is never shown
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert [p["text"] for p in parts if p["type"] == "text"] == [
        "Question: Q?\nAnswer: Input, bluer: ", " then <fail_to_generate_image> typed ", " end "]
    urls = [p["image_url"] for p in parts if p["type"] == "image_url"]
    assert all(u["url"].startswith("data:image/jpeg;base64,") and u["max_pixels"] == 784_000 for u in urls)
    assert sampling.temperature is None and sampling.seed is None and not sampling.extra_body


def test_a_sample_that_fails_scores_zero_everywhere() -> None:
    slow = {**tools(), "search": LatencyTool(source="search", latency=5.0, backend="scripted")}
    with Engine(slow, profile="llmi-compat", cache=False, fallback={}) as eng:
        scorer = RewardScorer(eng, llm_judge=LLMJudge(ScriptedClient(LLM_REPLY)),
                              mllm_judge=MLLMJudge(ScriptedClient(MLLM_REPLY)), sample_timeout=0.05)
        b = asyncio.run(scorer.ascore(Sample("Owls. " + S(), ExtraInfo(1, "q", ("search",)))))
    assert b.status == "failed" and b.score == 0.0
    m = b.metrics()
    assert all(m[k] == 0.0 for k in LLMI_METRIC_KEYS)


@pytest.mark.parametrize("key", ["image_num", "question", "tools", "split"])
def test_compat_rows_need_all_four_fields(engine, key) -> None:
    scorer = RewardScorer(engine, llm_judge=None, mllm_judge=None)
    row = {"image_num": 1, "question": "q", "tools": ["search"], "split": "train"}
    del row[key]
    with pytest.raises(Exception, match=key):
        scorer.extra_info(row)


def test_the_split_is_kept_as_written_under_compat_only() -> None:
    row = {"image_num": 1, "question": "q", "tools": [], "split": ""}
    assert ExtraInfo.from_mapping(row, strict=True).split == ""
    assert ExtraInfo.from_mapping({**row, "split": None}, strict=True).split == "None"
    assert ExtraInfo.from_mapping(row).split == "train"  # llmi's own reading: no split means training


@pytest.mark.parametrize("key, value", [("image_num", None), ("tools", None), ("tools", 5), ("image_num", {"n": 1})])
def test_a_row_llmi_cannot_read_fails_with_a_config_error(engine, key, value) -> None:
    """LLM-I's reward raises on these rows (R = 0); llmi's entry points turn a ConfigError into
    that 0, so it must be one (not a TypeError that would stop the batch)."""
    scorer = RewardScorer(engine, llm_judge=None, mllm_judge=None)
    with pytest.raises(ConfigError, match=key):
        scorer.extra_info({"image_num": 1, "question": "q", "tools": [], "split": "train", key: value})


def test_a_null_question_is_asked_as_none(engine) -> None:
    _, llm_client, _ = score(engine, "Owls.", {"question": None, "image_num": -1})
    assert llm_client.calls[0][0][1]["content"] == "Question: None\nAnswer: Owls."


def test_the_multimodal_recipe_weights_text_and_image(engine) -> None:
    b, _, _ = score(engine, "Owls. " + S(), factors=RewardFactors.preset("mllmi"))
    llm_mm = ((1.5 * 4 + 0.5 * 3) / 2.0 - 1) / 4
    assert b.score == pytest.approx(0.2 + 0.3 * mllm(5, 4, 2) + 0.5 * llm_mm, abs=1e-12)


def test_a_compat_scorer_runs_each_tag_as_llmi_does() -> None:
    """LLM-I has no fallback from diffusion to search, no search retries and no replacing of a
    repeated picture: the engine llmi-compat gets from the environment, which a scorer without
    one makes, has none either."""
    from llmi.engine import Engine

    env: dict[str, str] = {}
    compat, own = Engine.from_env(env, profile="llmi-compat"), Engine.from_env(env, profile="llmi")
    try:
        assert (compat.fallback, compat.search_retries, compat.distinct) == ({}, False, False)
        assert (own.fallback, own.search_retries, own.distinct) == ({"diffusion": "search"}, True, True)
        assert compat.profile.name == "llmi-compat"
    finally:
        compat.close()
        own.close()
    scorer = RewardScorer.from_env(env)
    try:
        assert (scorer.engine.fallback, scorer.engine.search_retries, scorer.engine.distinct) == ({}, False, False)
    finally:
        scorer.close()
