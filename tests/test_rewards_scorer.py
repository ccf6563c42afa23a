"""The batch scorer: options with stricter choices, isolation, deadlines, the shared engine and
its cache, timings, and judges that are not configured."""

from __future__ import annotations

import asyncio

import pytest

from llmi.engine import Engine, ToolLimits
from llmi.errors import ConfigError, NotFound
from llmi.rewards import (
    ExtraInfo,
    JudgeClient,
    JudgeLimits,
    LLMJudge,
    MLLMJudge,
    RewardFactors,
    RewardOptions,
    RewardScorer,
    Sample,
)
from llmi.testing import LatencyTool

from rewards_fixtures import LLM_OK, MLLM_OK, Reply, judge_server, search_tag  # noqa: F401

FAILING = "<imgen>{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'a dragon'}}</imgen>"


def make_engine(search_latency: float = 0.0) -> Engine:
    return Engine({"search": LatencyTool("search", latency=search_latency),
                   "diffusion": LatencyTool("diffusion", latency=0.0, fail_with=NotFound("no generator"))},
                  limits={"search": ToolLimits(concurrency=16)})


def judges(judge_server, name, llm=(LLM_OK,), mllm=(MLLM_OK,), limits=None):
    limits = limits or JudgeLimits(retries=0, timeout=10)
    return dict(
        llm_judge=LLMJudge(JudgeClient(judge_server.script(f"{name}-llm", *llm), limits=limits)),
        mllm_judge=MLLMJudge(JudgeClient(judge_server.script(f"{name}-mllm", *mllm), limits=limits)),
    )


def sample(answer: str, image_num: int = 1, **kw) -> Sample:
    return Sample(answer, ExtraInfo(image_num, "Tell me about owls", **kw.pop("info", {})), **kw)


def score(scorer: RewardScorer, s: Sample):
    return asyncio.run(scorer.ascore(s))


def test_no_images_options(judge_server):
    engine = make_engine()
    answer = "Owls. " + FAILING
    compat = RewardScorer(engine, **judges(judge_server, "noimg-compat"))
    b = score(compat, sample(answer, 99))
    assert b.mllm.status == "skipped" and b.mllm.skip_reason == "no_images"
    assert [f.kind for f in b.fallbacks] == ["no_images"]
    scored = RewardScorer(engine, options=RewardOptions(no_images="score"), **judges(judge_server, "noimg-score"))
    b = score(scored, sample(answer, 0))
    assert b.mllm.status == "ok" and b.mllm_score == pytest.approx(((4 + 3 + 5) / 3 - 1) / 4)
    content = judge_server.bodies("noimg-score-mllm")[0]["messages"][1]["content"]
    assert [p["type"] for p in content] == ["text"] and "<fail_to_generate_image>" in content[0]["text"]
    neutral = RewardScorer(engine, options=RewardOptions(no_images="neutral"), **judges(judge_server, "noimg-neutral"))
    assert score(neutral, sample(answer, 0)).mllm_score == 0.5
    # nothing attempted at all: nothing for the MLLM judge to see, even when failures are scored
    b = score(scored, sample("Owls, no pictures.", -1))
    assert b.mllm.skip_reason == "no_tags" and judge_server.bodies("noimg-score-mllm").__len__() == 1


def test_judge_error_minimum_or_excluded(judge_server):
    engine = make_engine()
    down = (Reply(status=500, body={"error": "down"}),)
    compat = RewardScorer(engine, **judges(judge_server, "err-compat", llm=down))
    b = score(compat, sample("Owls. " + search_tag("owl")))
    assert b.status == "ok" and b.llm.status == "failed" and b.llm.scores == {"text": 1, "image": 1}
    assert "judge_error" in [f.kind for f in b.fallbacks] and b.metrics()["judge_errors"] == 1.0
    strict = RewardScorer(engine, options=RewardOptions(on_error="exclude"), **judges(judge_server, "err-strict", llm=down))
    b = score(strict, sample("Owls. " + search_tag("owl")))
    assert b.status == "excluded" and b.score is None and "llm judge" in b.error
    assert b.metrics()["excluded"] == 1.0 and b.metrics()["img_num_score"] == 1.0


def test_failed_tools_can_be_penalised(judge_server):
    engine = make_engine()
    s = sample("Owls. " + search_tag("owl") + " Dragons. " + FAILING, 2)
    base = score(RewardScorer(engine, **judges(judge_server, "pen-off")), s)
    pen = score(RewardScorer(engine, options=RewardOptions(failed_tools="penalise"), **judges(judge_server, "pen-on")), s)
    assert pen.failed_share == 0.5
    assert pen.score == pytest.approx(base.score - 0.2 * 0.5)


def test_typed_placeholders_do_not_count_when_ignored(judge_server):
    engine = make_engine()
    s = sample("Owls <image> hunt. " + search_tag("owl"), 2)
    b = score(RewardScorer(engine, options=RewardOptions(typed_image="ignore"), **judges(judge_server, "typed")), s)
    assert b.image_count == 1 and b.img_num_score == 0.5
    assert "[image]" in judge_server.bodies("typed-mllm")[0]["messages"][1]["content"][0]["text"]


def test_judges_not_configured_are_marked_never_scored_as_minimum():
    engine = make_engine()
    scorer = RewardScorer(engine)
    b = score(scorer, sample("Owls. " + search_tag("owl")))
    assert b.status == "incomplete" and b.score is None
    assert (b.llm.status, b.mllm.status) == ("not_configured", "not_configured")
    assert b.img_num_score == 1.0 and b.stats["search"]["success"] == 1
    assert scorer.missing_judges == ("LLM_JUDGE", "MLLM_JUDGE")
    with pytest.raises(ConfigError, match="LLM_JUDGE_BASE_URL and MLLM_JUDGE_BASE_URL"):
        scorer.require_judges()
    # no image: the MLLM judge is not needed, only the LLM judge is missing
    assert score(scorer, sample("No pictures.", -1)).error == "no LLM judge configured"
    rules_only = RewardScorer(engine, factors=RewardFactors(llm_factor=0, mllm_factor=0))
    assert score(rules_only, sample("Owls. " + search_tag("owl"))).score == pytest.approx(0.2)


def test_one_bad_sample_never_fails_the_batch(judge_server):
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    hung = judges(judge_server, "hung", llm=(Reply(LLM_OK, delay=2),), limits=JudgeLimits(retries=0, timeout=30))
    scorer = RewardScorer(engine, sample_timeout=0.5, **hung)
    fine = RewardScorer(engine, **judges(judge_server, "fine"))

    async def both():
        return await asyncio.gather(scorer.ascore(sample("Owls. " + search_tag("owl"))),
                                    fine.ascore(sample("Owls. " + search_tag("owl"))))

    timed_out, ok = asyncio.run(both())
    assert timed_out.status == "failed" and timed_out.score == 0.0 and "0.5 s" in timed_out.error
    assert ok.status == "ok"
    assert timed_out.metrics().keys() == ok.metrics().keys()


def test_batch_shares_the_engine_cache_and_keeps_order(judge_server):
    tool = LatencyTool("search", latency=0.05)
    engine = Engine({"search": tool}, limits={"search": ToolLimits(concurrency=8)})
    scorer = RewardScorer(engine, **judges(judge_server, "group"))
    group = [sample(f"Owls, take {i}. " + search_tag("barn owl") + search_tag(f"owl {i % 2}"), 2, id=str(i)) for i in range(8)]
    seen = []
    results = asyncio.run(scorer.ascore_batch(group, on_result=lambda i, b: seen.append(i)))
    assert [b.id for b in results] == [str(i) for i in range(8)] and sorted(seen) == list(range(8))
    assert tool.calls == 3  # 16 tags, 3 distinct searches: the rest came from the cache
    assert all(b.status == "ok" and b.score is not None for b in results)
    assert all({"tools", "judges", "llm_judge", "mllm_judge", "total"} <= set(b.timings) for b in results)
    assert results[0].document is not None and len(results[0].document.images) == 2


def test_batch_deadline_marks_what_did_not_finish(judge_server):
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    slow = judges(judge_server, "slowbatch", llm=(Reply(LLM_OK, delay=1.5),))
    scorer = RewardScorer(engine, options=RewardOptions(on_error="exclude"), **slow)
    quick = sample("Nothing to draw.", -1)
    results = asyncio.run(scorer.ascore_batch([quick, quick], batch_timeout=0.3))
    assert [b.status for b in results] == ["excluded", "excluded"] and "deadline" in results[0].error


def test_sync_api(judge_server):
    scorer = RewardScorer(make_engine(), **judges(judge_server, "sync"))
    try:
        results = scorer.score_batch([sample("Owls. " + search_tag("owl"))])
        assert results[0].status == "ok"
        assert scorer.score(sample("Owls.", -1)).img_num_score == 1.0
    finally:
        scorer.close()


def test_bad_rows_are_typed_errors():
    with pytest.raises(ConfigError, match="question"):
        ExtraInfo.from_mapping({"image_num": 1})
    with pytest.raises(ConfigError, match="tools"):
        ExtraInfo(1, "q", tools="search")
    info = ExtraInfo.from_mapping({"image_num": 2.0, "question": "q", "tools": ["code"], "split": None, "index": 4})
    assert (info.image_num, info.tools, info.split) == (2, ("code",), "train")
    with pytest.raises(ConfigError, match="profile"):
        RewardScorer(make_engine(), profile="llmx")
