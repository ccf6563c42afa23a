"""Rubric benchmarks (LLMI-Bench's format): reading items, what the judge is shown, scoring,
judge failures excluded visibly, and the summary tables."""

from __future__ import annotations

import asyncio
import json

import pytest
from eval_fixtures import ScriptedJudge, rubric_reply

from llmi.engine import Engine
from llmi.errors import ConfigError, JudgeError
from llmi.evaluate.answers import GivenAnswers
from llmi.evaluate.job import aevaluate
from llmi.evaluate.rubric import RubricBenchmark, criterion_messages, item_score, load_rubric, parse_rubric, read_reply
from llmi.image import ImageData
from llmi.testing import LatencyTool


CHART = "Sales rose.<imgen>{'source': 'search', 'description': 'a chart', 'params': {'query': 'sales chart'}}</imgen> The end."


def _bench(tmp_path, items):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(items))
    return path


def _engine():
    return Engine({"search": LatencyTool("search", latency=0.0)})


def test_items_criteria_ids_and_problems(tmp_path):
    (tmp_path / "in.png").write_bytes(ImageData.blank(4, 4).data)
    items = parse_rubric([
        {"prompt": "P", "r10": "ten", "r2": "two", "r1": "one", "note": "ignored"},
        {"id": "custom", "prompt": "Q", "r1": "x", "images": ["in.png"]},
        {"prompt": "", "r1": "x"},
        {"prompt": "R"},
        {"prompt": "S", "r1": 5},
        {"prompt": "T", "r1": "x", "images": ["missing.png"]},
        "not an object",
    ], base=tmp_path)
    assert [c.name for c in items[0].criteria] == ["r1", "r2", "r10"]
    assert items[0].key == "1" and items[1].key == "custom"
    assert items[1].images == (tmp_path / "in.png",) and items[1].problem is None
    assert [it.problem is not None for it in items] == [False, False, True, True, True, True, True]
    assert "not found" in items[5].problem
    with pytest.raises(ConfigError, match="share the id"):
        parse_rubric([{"id": "a", "prompt": "x", "r1": "y"}, {"id": "a", "prompt": "x", "r1": "y"}])
    with pytest.raises(ConfigError):
        parse_rubric({"prompt": "x"})


def test_files_as_json_lines_and_one_object(tmp_path):
    lines = tmp_path / "b.jsonl"
    lines.write_text('{"prompt": "a", "r1": "x"}\n\n{"prompt": "b", "r1": "y"}\n')
    assert [it.prompt for it in load_rubric(lines)] == ["a", "b"]
    one = tmp_path / "one.json"
    one.write_text('{"prompt": "a", "r1": "x"}')
    assert len(load_rubric(one)) == 1
    with pytest.raises(ConfigError, match="cannot read"):
        load_rubric(tmp_path / "nope.json")


def test_item_score_and_reply_reading():
    assert item_score([2, 2, 1]) == 5 / 6
    assert item_score([None, 0, 2]) == 0.5  # the failed criterion leaves the denominator
    assert item_score([None, None]) is None
    assert read_reply({"score": 1, "justification": "half"}) == (1, "half", None)
    assert read_reply({"score": 2.0})[0] == 2
    for bad in ({"score": 3}, {"score": -1}, {"score": "two"}, {"score": True}, {"score": 1.5}, {}, None):
        assert read_reply(bad)[0] is None and read_reply(bad)[2]


def test_the_judge_sees_the_answer_with_its_pictures_in_place():
    engine = _engine()
    doc = engine.run(CHART + "<imgen>{'source': 'diffusion', 'description': 'x', 'params': {'prompt': 'p'}}</imgen>",
                     [ImageData.blank(3, 3)])
    item = parse_rubric([{"prompt": "Show sales.", "r1": "Has a chart."}])[0]
    system, user = criterion_messages(item, doc, item.criteria[0], images=True)
    assert "one criterion" in system
    kinds = [p["type"] for p in user]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]  # input image, then the answer's picture
    texts = "".join(p.get("text", "") for p in user)
    assert "Show sales." in texts and "Has a chart." in texts and "<fail_to_generate_image>" in texts
    assert texts.index("Sales rose.") < texts.index(" The end.")
    _, plain = criterion_messages(item, doc, item.criteria[0], images=False)
    assert isinstance(plain, str) and plain.count("<image>") == 1 and "[input image 0]" in plain
    engine.close()


def _run(tmp_path, items, answers, judge, **kwargs):
    engine = _engine()
    bench = RubricBenchmark(_bench(tmp_path, items), **kwargs)
    given = GivenAnswers.parse(answers, engine=engine)
    try:
        return asyncio.run(aevaluate(bench, tmp_path / "run", answers=given, judge=judge, concurrency=2))
    finally:
        engine.close()


def test_scores_failures_and_tables(tmp_path):
    def reply(system, user, schema):
        text = user if isinstance(user, str) else "".join(p.get("text", "") for p in user)
        if "flaky criterion" in text:
            raise JudgeError("the judge timed out", transient=True)
        if "odd criterion" in text:
            return "I think it is fine."  # no JSON at all
        return rubric_reply(2 if "good" in text else 1)

    judge = ScriptedJudge(reply)
    result = _run(tmp_path, [
        {"prompt": "One", "r1": "good one", "r2": "flaky criterion", "r3": "plain"},
        {"prompt": "Two", "r1": "odd criterion", "r2": "flaky criterion"},
        {"prompt": "Three", "r1": "x", "images": ["missing.png"]},
        {"prompt": "Four", "r1": "plain"},
    ], [CHART, "No pictures.", "unused", "Nothing."], judge)
    by_key = {r["key"]: r for r in result.records}
    one = by_key["1"]
    assert [c["score"] for c in one["criteria"]] == [2, None, 1]
    assert one["score"] == 3 / 4 and one["valid"] == 2
    assert one["criteria"][1]["error_type"] == "JudgeError"
    assert by_key["2"]["score"] is None and by_key["2"]["criteria"][0]["error_type"] == "InvalidReply"
    assert by_key["3"]["status"] == "error" and "not found" in by_key["3"]["error"]
    assert by_key["4"]["score"] == 0.5
    assert one["tools"] == {"search": {"total": 1, "success": 1}}
    assert (tmp_path / "run" / one["doc"]).is_file()
    headline = dict(result.summary.headline)
    assert headline["benchmark score (mean item score, 0-1)"] == f"{(0.75 + 0.5) / 2:.4f}"
    assert headline["judge failures (excluded)"] == "3 of 6 criteria"
    assert headline["failed items (excluded)"] == "1"
    assert headline["items with no valid criterion (excluded)"] == "1"
    tables = {t.title: t for t in result.summary.tables}
    assert tables["Per criterion"].rows[0] == ("r1", "1.50", 2, 0, 1, 1, 1)
    failures = {(r[0], r[1], r[2]): r[3] for r in tables["Failures"].rows}
    assert failures[("judge", "r2", "JudgeError")] == 2 and failures[("item", "—", "ConfigError")] == 1
    assert judge.calls[0]["schema"]["required"] == ["score", "justification"]
    seeds = {c["seed"] for c in judge.calls}
    assert len(seeds) == 3  # one seed per item, drawn from the run's seed


def test_sequential_criteria_judge_one_after_another(tmp_path):
    order = []

    def reply(system, user, schema):
        order.append(user if isinstance(user, str) else "".join(p.get("text", "") for p in user))
        return rubric_reply(2)

    result = _run(tmp_path, [{"prompt": "P", "r1": "first", "r2": "second", "r3": "third"}], ["Text."],
                  ScriptedJudge(reply, images=False), criteria_concurrently=False)
    assert result.records[0]["score"] == 1.0
    assert [("first" in t, "second" in t, "third" in t) for t in order] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]


def test_missing_answers_fail_only_their_item(tmp_path):
    result = _run(tmp_path, [{"prompt": "P", "r1": "x"}, {"prompt": "Q", "r1": "y"}],
                  [{"sample_index": 1, "answer": "only the first"}], ScriptedJudge(lambda *a: rubric_reply(1)))
    assert [r["status"] for r in result.records] == ["ok", "error"]
    assert "no answer" in result.records[1]["error"]


def test_the_shipped_example_runs(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    engine = Engine.from_env({"LLMI_SEARCH_BACKEND": "none"})
    answers = GivenAnswers.load(examples / "rubric-answers.json", engine=engine)
    judge = ScriptedJudge(lambda *a: rubric_reply(2))
    result = asyncio.run(aevaluate(RubricBenchmark(examples / "rubric-bench.json"), tmp_path / "run", answers=answers,
                                   judge=judge))
    engine.close()
    assert [r["key"] for r in result.records] == ["water-cycle", "rainfall-chart", "colosseum"]
    assert all(r["score"] == 1.0 for r in result.records)
    assert result.records[1]["tools"] == {"code": {"total": 1, "success": 1}}
    assert result.records[2]["image_failures"][0]["error_type"] == "ToolNotConfigured"  # no search offline here


def test_the_sync_wrapper(tmp_path):
    from llmi.evaluate import evaluate

    engine = _engine()
    result = evaluate(RubricBenchmark(_bench(tmp_path, [{"prompt": "P", "r1": "x"}])), tmp_path / "run",
                      answers=GivenAnswers.parse(["Text."], engine=engine), judge=ScriptedJudge(lambda *a: rubric_reply(1)))
    engine.close()
    assert result.records[0]["score"] == 0.5 and result.report.is_file()
