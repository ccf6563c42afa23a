"""Benchmark judges over HTTP: what they are sent, and flaky, slow, broken or absent judges.

The judge endpoint is scripted at the HTTP boundary (the rewards tests' ``judge_server``), so
every failure a real server shows only rarely can be acted out; the real llama.cpp judge runs
in the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json

from rewards_fixtures import Reply, judge_server  # noqa: F401

from llmi.engine import Engine
from llmi.evaluate.answers import GivenAnswers
from llmi.evaluate.job import aevaluate
from llmi.evaluate.judging import make_judge
from llmi.evaluate.rubric import RubricBenchmark
from llmi.testing import LatencyTool

GOOD = json.dumps({"score": 2, "justification": "it does"})
ANSWER = "Owls hunt.<imgen>{'source': 'search', 'description': 'owl', 'params': {'query': 'owl'}}</imgen> At night."


def _run(tmp_path, base_url, *, items=1, criteria=2, images=True, **judge_kwargs):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"prompt": f"About owls {i}.", **{f"r{j}": f"criterion {j}" for j in range(1, criteria + 1)}}
                                 for i in range(items)]))
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    judge = make_judge(base_url, images=images, **{"backoff": 0.0, **judge_kwargs})

    async def main():
        try:
            return await aevaluate(RubricBenchmark(bench), tmp_path / "run",
                                   answers=GivenAnswers.parse([ANSWER] * items, engine=engine), judge=judge, seed=11)
        finally:
            await judge.aclose()
            await engine.aclose()

    return asyncio.run(main())


def test_what_the_judge_is_sent(tmp_path, judge_server):
    url = judge_server.script("sent", GOOD)
    result = _run(tmp_path, url, max_tokens=77)
    assert result.records[0]["score"] == 1.0 and result.records[0]["judge_model"] == "scripted-judge"
    body = judge_server.bodies("sent")[0]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 77 and body["seed"] == result.records[0]["seed"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["score"]["enum"] == [0, 1, 2] and schema["additionalProperties"] is False
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "image_url", "text"] and user["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["judge"]["base_url"] == url and config["judge"]["temperature"] == 0.0


def test_a_text_only_judge_gets_plain_text(tmp_path, judge_server):
    url = judge_server.script("plain", GOOD)
    _run(tmp_path, url, images=False)
    user = judge_server.bodies("plain")[0]["messages"][1]["content"]
    assert isinstance(user, str) and "Owls hunt.<image> At night." in user


def test_transient_failures_are_retried(tmp_path, judge_server):
    url = judge_server.script("flaky", Reply(status=503, body={"error": {"message": "warming up"}}),
                              Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
                              GOOD)
    result = _run(tmp_path, url, criteria=1)
    assert result.records[0]["score"] == 1.0
    assert len(judge_server.bodies("flaky")) == 3


def test_judge_failures_are_recorded_and_the_run_goes_on(tmp_path, judge_server):
    url = judge_server.script("broken", Reply(status=400, body={"error": {"message": "context length exceeded"}}))
    result = _run(tmp_path, url, items=2)
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    for c in (c for r in result.records for c in r["criteria"]):
        assert c["score"] is None and c["error_type"] == "JudgeError" and "context length exceeded" in c["error"]
    headline = dict(result.summary.headline)
    assert headline["judge failures (excluded)"] == "4 of 4 criteria" and headline["items scored"] == "0 of 2"


def test_replies_that_are_not_scores(tmp_path, judge_server):
    url = judge_server.script("odd", "I would say it is quite good.", json.dumps({"score": 7, "justification": "very"}))
    result = _run(tmp_path, url, criteria=2)
    errors = sorted(c["error"] for c in result.records[0]["criteria"])
    assert errors == ["the judge gave score 7, not 0, 1 or 2", "the judge's reply holds no JSON object"]
    assert any(c.get("reply") == "I would say it is quite good." for c in result.records[0]["criteria"])


def test_a_judge_that_hangs_times_out(tmp_path, judge_server):
    url = judge_server.script("slow", Reply(text=GOOD, delay=3.0))
    result = _run(tmp_path, url, criteria=1, timeout=0.5, retries=0)
    (criterion,) = result.records[0]["criteria"]
    assert criterion["score"] is None and criterion["error_type"] == "JudgeError"
    assert criterion["seconds"] < 2.5


def test_no_judge_there_at_all(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _run(tmp_path, f"http://127.0.0.1:{port}/v1", criteria=1, retries=0)
    (criterion,) = result.records[0]["criteria"]
    assert criterion["error_type"] == "JudgeError" and "cannot reach" in criterion["error"]
