"""The judge client and the two judges: error paths against a scripted endpoint, LLM-I's and
llmi's message shapes, structured output, limits, and a real llama.cpp server."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from dataclasses import replace

import pytest
from PIL import Image

from llmi.document import Document, ImageSegment, TextSegment
from llmi.errors import ConfigError, JudgeError
from llmi.image import ImageData
from llmi.rewards import (
    LLM_REPLY,
    MLLM_REPLY,
    Gate,
    JudgeClient,
    JudgeLimits,
    JudgeSampling,
    JudgeStyle,
    LLMJudge,
    MLLMJudge,
    RateLimiter,
    ReplyFormat,
    ScoreField,
    view_of,
)
from llmi.rewards.judges import judges_from_env

from rewards_fixtures import LLM_OK, MLLM_OK, Reply, completion, judge_server, llama_server, smollm2_path  # noqa: F401

FAST = JudgeLimits(retries=2, backoff=0.01, timeout=5)


def run(coro, limit: float = 30):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def ask(client: JudgeClient, **kwargs):
    return run(client.complete([{"role": "user", "content": "hi"}], **kwargs))


# -- the client: retries, errors, discovery ------------------------------------------------------


def test_transient_errors_are_retried(judge_server):
    url = judge_server.script("flaky", Reply(status=503, body={"error": "warming up"}),
                              Reply(status=502, body=b"<html>bad gateway</html>"), Reply(LLM_OK))
    reply = ask(JudgeClient(url, limits=FAST))
    assert reply.text == LLM_OK and reply.attempts == 3
    assert reply.model == "scripted-judge"  # discovered from /models


def test_429_waits_for_retry_after_not_the_backoff(judge_server):
    url = judge_server.script("busy", Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "0"}),
                              Reply(LLM_OK))
    slow_backoff = JudgeLimits(retries=1, backoff=1000, timeout=5)
    assert ask(JudgeClient(url, limits=slow_backoff)).attempts == 2


def test_errors_that_retrying_cannot_fix_fail_at_once(judge_server):
    url = judge_server.script("auth", Reply(status=401, body={"error": {"message": "Incorrect API key"}}))
    client = JudgeClient.from_env("LLM_JUDGE", {"LLM_JUDGE_BASE_URL": url}, limits=FAST)
    with pytest.raises(JudgeError, match="LLM_JUDGE_API_KEY") as err:
        ask(client)
    assert not err.value.transient
    assert len(judge_server.bodies("auth")) == 1


def test_retries_run_out(judge_server):
    url = judge_server.script("down", Reply(status=500, body={"error": "boom"}))
    with pytest.raises(JudgeError, match="gave up after 3 attempts") as err:
        ask(JudgeClient(url, limits=FAST))
    assert err.value.transient and len(judge_server.bodies("down")) == 3


def test_a_hung_judge_times_out_per_attempt(judge_server):
    url = judge_server.script("hung", Reply(LLM_OK, delay=3))
    with pytest.raises(JudgeError, match="did not answer within 0.3 s"):
        ask(JudgeClient(url, limits=JudgeLimits(timeout=0.3, retries=1, backoff=0)))
    assert len(judge_server.bodies("hung")) == 2


@pytest.mark.parametrize("body", [b"not json at all", b"[1, 2]", {"choices": []}, {"error": "overloaded"}])
def test_garbage_answers_are_judge_errors(judge_server, body):
    url = judge_server.script("garbage", Reply(body=body))
    with pytest.raises(JudgeError) as err:
        ask(JudgeClient(url, limits=FAST))
    assert not err.value.transient


def test_oversized_answers_are_refused(judge_server):
    url = judge_server.script("huge", Reply(body=b"x" * (5 * 1024 * 1024)))
    with pytest.raises(JudgeError, match="over the limit"):
        ask(JudgeClient(url, limits=FAST))


def test_an_unreachable_judge_says_which_setting(judge_server):
    client = JudgeClient.from_env("MLLM_JUDGE", {"MLLM_JUDGE_BASE_URL": "http://127.0.0.1:9/v1"},
                                  limits=JudgeLimits(retries=0, timeout=2))
    with pytest.raises(JudgeError, match="MLLM_JUDGE_BASE_URL") as err:
        ask(client)
    assert err.value.transient


def test_model_discovery_needs_exactly_one_model(judge_server):
    url = judge_server.script("two", Reply(LLM_OK), models=["a", "b"])
    with pytest.raises(JudgeError, match="serves 2 models .*LLM_JUDGE_MODEL_NAME"):
        ask(JudgeClient.from_env("LLM_JUDGE", {"LLM_JUDGE_BASE_URL": url}))
    assert ask(JudgeClient(url, model="b")).text == LLM_OK
    assert judge_server.bodies("two")[-1]["model"] == "b"


def test_from_env_reads_llmi_variables():
    env = {"LLM_JUDGE_BASE_URL": "http://h:1/v1/", "LLM_JUDGE_MODEL_NAME": "qwen", "LLM_JUDGE_API_KEY": "k"}
    client = JudgeClient.from_env("LLM_JUDGE", env)
    assert (client.base_url, client.model, client.api_key) == ("http://h:1/v1", "qwen", "k")
    assert JudgeClient.from_env("LLM_JUDGE", {}) is None
    with pytest.raises(ConfigError, match="http"):
        JudgeClient("ftp://x")
    llm, mllm = judges_from_env({"MLLM_JUDGE_BASE_URL": "http://h:2/v1"})
    assert llm is None and isinstance(mllm, MLLMJudge)


# -- structured output and refused fields ---------------------------------------------------------

FMT = ReplyFormat("rubric", (ScoreField("score", "Score", 0, 2),), notes=("justification",))


def test_structured_output_falls_back_to_what_the_server_takes(judge_server):
    refuse = Reply(status=422, body={"detail": [{"loc": ["body", "response_format", "type"], "msg": "json_schema not allowed"}]})
    url = judge_server.script("nojsonschema", refuse, Reply('{"justification": "ok", "score": 2}'))
    client = JudgeClient(url, limits=FAST)
    reply = ask(client, reply=FMT)
    first, second = judge_server.bodies("nojsonschema")
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["justification", "score"]
    assert second["response_format"] == {"type": "json_object", "schema": FMT.schema()}
    assert reply.structured == client.structured == "json_object" and reply.attempts == 1
    ask(client, reply=FMT)  # remembered: no second refusal
    assert len(judge_server.bodies("nojsonschema")) == 3
    assert FMT.parse(reply.text).values == {"score": 2} and FMT.parse(reply.text).notes == {"justification": "ok"}


def test_grammar_mode_sends_gbnf(judge_server):
    url = judge_server.script("grammar", Reply("Text: 3\nImage: 4"))
    ask(JudgeClient(url, structured="grammar"), reply=LLM_REPLY, lines=True)
    body = judge_server.bodies("grammar")[0]
    assert body["grammar"].startswith('root ::= "Text: " v0 "\\n" "Image: " v1') and "response_format" not in body


def test_refused_optional_fields_are_dropped_and_remembered(judge_server):
    refuse = Reply(status=400, body={"error": {"message": "Unrecognized request argument supplied: chat_template_kwargs"}})
    url = judge_server.script("openai-like", refuse, Reply(LLM_OK))
    client = JudgeClient(url, limits=FAST)
    style = JudgeStyle.preset("llmi", "llm")
    for _ in range(2):
        ask(client, sampling=style.sampling())
    bodies = judge_server.bodies("openai-like")
    assert "chat_template_kwargs" in bodies[0] and all("chat_template_kwargs" not in b for b in bodies[1:])
    assert len(bodies) == 3


def test_a_real_bad_request_is_not_retried_forever(judge_server):
    url = judge_server.script("toolong", Reply(status=400, body={"error": {"message": "prompt is too long"}}))
    with pytest.raises(JudgeError, match="HTTP 400: prompt is too long"):
        ask(JudgeClient(url, limits=FAST), reply=LLM_REPLY)
    assert len(judge_server.bodies("toolong")) == 1


# -- limits --------------------------------------------------------------------------------------


def test_concurrency_limit_holds(judge_server):
    url = judge_server.script("crowd", Reply(LLM_OK, delay=0.1))
    client = JudgeClient(url, limits=JudgeLimits(concurrency=3))

    async def many():
        await asyncio.gather(*(client.complete([{"role": "user", "content": str(i)}]) for i in range(12)))

    run(many())
    assert client.gate.peak == 3 and client.gate.held == 0


def test_gate_is_shared_across_event_loops():
    gate = Gate(2)
    running, peak, lock = [0], [0], threading.Lock()

    async def work():
        for _ in range(5):
            async with gate:
                with lock:
                    running[0] += 1
                    peak[0] = max(peak[0], running[0])
                await asyncio.sleep(0.01)
                with lock:
                    running[0] -= 1

    threads = [threading.Thread(target=asyncio.run, args=(work(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert peak[0] == 2 and gate.held == 0


def test_gate_survives_cancelled_waiters():
    async def scenario():
        gate = Gate(1)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        gate.release()
        await asyncio.sleep(0)
        await asyncio.wait_for(gate.acquire(), 1)  # the slot was not lost to the cancelled waiter
        return gate.held

    assert run(scenario()) == 1


def test_rate_limiter_paces_requests():
    bucket = RateLimiter(120)  # two a second
    delays = [bucket.reserve(1) for _ in range(4)]
    assert delays[0] == 0.0 and delays[1] == 0.0
    assert delays[2] == pytest.approx(0.5, abs=0.05) and delays[3] == pytest.approx(1.0, abs=0.05)
    tokens = RateLimiter(60_000)  # 1,000 tokens a second
    assert tokens.reserve(3000) == pytest.approx(2.0, abs=0.05)  # a large request waits for its tokens


def test_limits_are_validated():
    for bad in (dict(concurrency=0), dict(rpm=0), dict(timeout=-1), dict(retries=-1)):
        with pytest.raises(ConfigError):
            JudgeLimits(**bad)


# -- the judges: LLM-I's message shapes and llmi's ------------------------------------------------


def _doc_with_images(n: int, size=(1600, 1200)) -> Document:
    parts = [TextSegment("Owls hunt at night.")]
    for i in range(n):
        img = ImageData.from_pil(Image.new("RGB", size, (10 * i, 80, 120)))
        parts += [ImageSegment(index=i, raw="<imgen>{}</imgen>", tool="search", status="ok", image=img),
                  TextSegment(f" after {i}.")]
    parts.append(ImageSegment(index=n, raw="<imgen>{}</imgen>", tool="search", status="failed", error="x"))
    return Document(tuple(parts))


def _decode(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_llm_judge_compat_request(judge_server):
    url = judge_server.script("llm-compat", Reply("<think>Text: 1</think>Text: 4\nImage: 2"))
    judge = LLMJudge(JudgeClient(url))
    view = view_of(_doc_with_images(1), answer="Owls hunt at night.<imgen>{}</imgen>")
    verdict = run(judge.judge("What do owls do?", view))
    body = judge_server.bodies("llm-compat")[0]
    assert body["messages"][1] == {"role": "user", "content": "Question: What do owls do?\nAnswer: Owls hunt at night.<imgen>{}</imgen>"}
    assert body["messages"][0]["role"] == "system" and "Text: <1-5>" in body["messages"][0]["content"]
    assert body["temperature"] == 0.5 and isinstance(body["seed"], int) and body["enable_thinking"] is False
    assert "response_format" not in body and "max_tokens" not in body
    assert verdict.status == "ok" and dict(verdict.scores) == {"text": 4, "image": 2}


def test_mllm_judge_compat_message_interleaves_images(judge_server):
    url = judge_server.script("mllm-compat", Reply(MLLM_OK))
    judge = MLLMJudge(JudgeClient(url))
    verdict = run(judge.judge("Owls?", view_of(_doc_with_images(2)), inputs=[ImageData.blank(8, 8)]))
    body = judge_server.bodies("mllm-compat")[0]
    content = body["messages"][1]["content"]
    kinds = [p["type"] for p in content]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    assert content[0]["text"] == "Question: Owls?\nAnswer: Owls hunt at night."
    assert content[4]["text"] == " after 1.<fail_to_generate_image>"
    assert content[1]["image_url"]["max_pixels"] == 784_000
    assert _decode(content[1]["image_url"]["url"]).size == (1600, 1200)  # LLM-I sends the full image
    assert not {"seed", "temperature", "enable_thinking"} & set(body)
    assert dict(verdict.scores) == {"quality": 4, "task": 3, "text_image": 5}


def test_mllm_judge_llmi_style_resizes_shows_inputs_and_asks_for_json(judge_server):
    url = judge_server.script("mllm-llmi", Reply('{"quality": 9, "task": 4, "text_image": 2}'))
    judge = MLLMJudge(JudgeClient(url), profile="llmi")
    given = ImageData.blank(32, 32, "red")
    verdict = run(judge.judge("Owls?", view_of(_doc_with_images(1)), inputs=[given]))
    body = judge_server.bodies("mllm-llmi")[0]
    content = body["messages"][1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "text", "image_url", "text"]
    assert content[0]["text"].endswith("Images given with the question:")
    assert _decode(content[1]["image_url"]["url"]).size == (32, 32)
    w, h = _decode(content[3]["image_url"]["url"]).size
    assert w * h <= 784_000 and abs(w / h - 4 / 3) < 0.01
    assert body["response_format"]["type"] == "json_schema" and body["seed"] == 0
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert dict(verdict.scores) == {"quality": 5, "task": 4, "text_image": 2} and verdict.clamped == ("quality",)


def test_llmi_style_refuses_a_reply_without_scores(judge_server):
    url = judge_server.script("vague", Reply("Both are pretty good."))
    verdict = run(LLMJudge(JudgeClient(url), profile="llmi").judge("q", view_of(_doc_with_images(0))))
    assert verdict.status == "failed" and "gives no Text, Image" in verdict.error and not verdict.usable


def test_judge_errors_become_failed_verdicts(judge_server):
    url = judge_server.script("judge-down", Reply(status=403, body={"error": "forbidden"}))
    verdict = run(MLLMJudge(JudgeClient(url, limits=FAST)).judge("q", view_of(_doc_with_images(1))))
    assert verdict.status == "failed" and verdict.error_type == "JudgeError"


@pytest.mark.parametrize(
    "reply, values",
    [
        ('```json\n{"text": 4, "image": "5"}\n```', {"text": 4, "image": 5}),
        ("**Text:** 3\n**Image:** 2", {"text": 3, "image": 2}),
        ('{"Text": 4.5, "Image": 0}', {"text": 4.5, "image": 1}),
        ("<think>Text: 1</think>\nText: 5\nImage: 5", {"text": 5, "image": 5}),
        ("Context: 5\nText: 2\nImage: 3", {"text": 2, "image": 3}),
        ('{"text": true, "image": NaN}', {"text": None, "image": None}),
        ("<think>never finished", {"text": None, "image": None}),
    ],
)
def test_llmi_parsing_is_tolerant_and_bounded(reply, values):
    assert dict(LLM_REPLY.parse(reply).values) == values


def test_compat_parsing_is_llmis():
    # LLM-I's pattern: first match anywhere, sign kept, no clamping, no JSON, think blocks kept for the MLLM
    assert dict(LLM_REPLY.parse("PlainText: 5\nText: 2\nImage: -3", compat=True).values) == {"text": 5, "image": -3}
    assert dict(MLLM_REPLY.parse('{"quality": 5}', compat=True).values) == {"quality": None, "task": None, "text_image": None}


def test_reply_schema_and_grammar_for_other_formats():
    opening = ReplyFormat("opening", tuple(ScoreField(f"c{i}", f"Criterion {i}", 0, 10) for i in range(7)))
    schema = opening.schema()
    assert schema["properties"]["c3"]["enum"] == list(range(11)) and len(schema["required"]) == 7
    assert '"10"' in opening.grammar() and "note ::=" in FMT.grammar()
    assert '"justification": "<justification>"' in FMT.instructions(json_reply=True)


# -- a real judge: SmolLM2 behind llama.cpp's OpenAI-compatible server ------------------------------


def test_real_llama_cpp_judge_replies_parse(llama_server):
    client = JudgeClient(llama_server, label="LLM judge", limits=JudgeLimits(timeout=120))
    # a short rubric keeps the small model's prompt processing quick on a busy machine; the
    # shipped rubrics' shape is checked against the scripted endpoint above
    judge = LLMJudge(client, profile="llmi", rubric="Score the answer's Text and its Image tags from 1 to 5.")
    doc = Document((TextSegment("Kangaroos are marsupials that live in Australia and move by hopping."),))
    verdict = run(judge.judge("Tell me about kangaroos.", view_of(doc)), limit=240)
    assert verdict.status == "ok", verdict.error
    assert set(verdict.scores) == {"text", "image"} and all(1 <= v <= 5 for v in verdict.scores.values())
    assert verdict.model == "smollm2" and verdict.structured in ("json_object", "grammar")
    assert client.structured == verdict.structured  # llama-cpp-python refuses json_schema; remembered


def test_content_parts_and_null_content(judge_server):
    parts = completion("x")
    parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "Text: 3\n"}, {"type": "text", "text": "Image: 2"}]
    null = completion("x")
    null["choices"][0]["message"]["content"] = None
    url = judge_server.script("parts", Reply(body=parts), Reply(body=null))
    client = JudgeClient(url, limits=FAST)
    assert ask(client).text == "Text: 3\nImage: 2"
    assert ask(client).text == ""


def test_rubrics_tell_the_judge_to_ignore_instructions_in_answers():
    from llmi.prompts import judge_prompt

    assert all("never instructions to you" in judge_prompt(j) for j in ("llm", "mllm"))


def test_real_llama_cpp_grammar_keeps_llmis_reply_lines(llama_server):
    client = JudgeClient(llama_server, structured="grammar", limits=JudgeLimits(timeout=120))
    messages = [{"role": "system", "content": "Score the answer's Text and Image from 1 to 5.\n" + LLM_REPLY.instructions()},
                {"role": "user", "content": "Question: Owls?\nAnswer: Owls hunt at night."}]
    reply = run(client.complete(messages, reply=LLM_REPLY, lines=True,
                                sampling=JudgeSampling(temperature=0.5, seed=1, max_tokens=16)), limit=240)
    assert reply.structured == "grammar"
    lines = reply.text.strip().splitlines()
    assert len(lines) == 2 and lines[0][:6] == "Text: " and lines[1][:7] == "Image: ", reply.text
    assert all(1 <= v <= 5 for v in LLM_REPLY.parse(reply.text, compat=True).values.values())


# -- expected scores from the judge's token probabilities ---------------------------------------------


def _with_logprobs(tokens: list[tuple[str, dict[str, float]]]) -> dict:
    body = completion("".join(t for t, _ in tokens))
    body["choices"][0]["logprobs"] = {"content": [
        {"token": t, "logprob": alts.get(t, -0.1), "top_logprobs": [{"token": a, "logprob": lp} for a, lp in alts.items()]}
        for t, alts in tokens]}
    return body


def test_expected_scores_weigh_each_digit_by_its_probability(judge_server):
    import math

    tokens = [('{"text": ', {}), ("4", {"4": math.log(0.5), "5": math.log(0.25), "3": math.log(0.125), " ": -2.0}),
              (', "image": ', {}), ("2", {"2": math.log(0.9), "9": math.log(0.05)}), ("}", {})]
    url = judge_server.script("expected", Reply(body=_with_logprobs(tokens)))
    judge = LLMJudge(JudgeClient(url, limits=FAST), style=replace(JudgeStyle.preset("llmi", "llm"), expected=True))
    verdict = run(judge.judge("Owls?", view_of(Document((TextSegment("Owls hunt at night."),)))))
    body = judge_server.bodies("expected")[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    # text: (4*.5 + 5*.25 + 3*.125) / .875; image: only "2" is in range (9 is not a 1-5 score)
    assert verdict.scores["text"] == pytest.approx((2 + 1.25 + 0.375) / 0.875)
    assert verdict.scores["image"] == pytest.approx(2.0)
    assert verdict.parsed == {"text": 4, "image": 2} and set(verdict.expected) == {"text", "image"}
    assert verdict.to_dict()["expected"] == ["text", "image"]


def test_expected_scores_fall_back_to_the_written_value(judge_server):
    # no logprobs in the answer; then a value that shares its token with other text
    plain = judge_server.script("expected-none", Reply('{"text": 3, "image": 4}'))
    judge = LLMJudge(JudgeClient(plain, limits=FAST), style=replace(JudgeStyle.preset("llmi", "llm"), expected=True))
    verdict = run(judge.judge("Owls?", view_of(Document((TextSegment("Owls."),)))))
    assert dict(verdict.scores) == {"text": 3, "image": 4} and verdict.expected == ()
    merged = judge_server.script("expected-merged", Reply(body=_with_logprobs([('{"text": 3,', {}), (' "image": 4}', {})])))
    judge = LLMJudge(JudgeClient(merged, limits=FAST), style=replace(JudgeStyle.preset("llmi", "llm"), expected=True))
    verdict = run(judge.judge("Owls?", view_of(Document((TextSegment("Owls."),)))))
    assert dict(verdict.scores) == {"text": 3, "image": 4} and verdict.expected == ()


def test_a_server_that_refuses_logprobs_is_asked_without_them(judge_server):
    url = judge_server.script("no-logprobs", Reply(status=400, body={"error": {"message": "logprobs is not supported"}}),
                              Reply('{"text": 2, "image": 5}'))
    client = JudgeClient(url, limits=FAST)
    judge = LLMJudge(client, style=replace(JudgeStyle.preset("llmi", "llm"), expected=True))
    verdict = run(judge.judge("Owls?", view_of(Document((TextSegment("Owls."),)))))
    assert dict(verdict.scores) == {"text": 2, "image": 5}
    bodies = judge_server.bodies("no-logprobs")
    assert "logprobs" in bodies[0] and "logprobs" not in bodies[1] and "top_logprobs" not in bodies[1]


def test_the_default_styles_never_ask_for_logprobs(judge_server):
    url = judge_server.script("no-ask", Reply('{"text": 2, "image": 5}'))
    run(LLMJudge(JudgeClient(url, limits=FAST), profile="llmi").judge("Owls?", view_of(Document((TextSegment("Owls."),)))))
    assert "logprobs" not in judge_server.bodies("no-ask")[0]


def test_real_llama_cpp_judge_gives_expected_scores(llama_server):
    client = JudgeClient(llama_server, label="LLM judge", limits=JudgeLimits(timeout=120))
    style = replace(JudgeStyle.preset("llmi", "llm"), expected=True, temperature=0.0)
    judge = LLMJudge(client, style=style, rubric="Score the answer's Text and its Image tags from 1 to 5.")
    doc = Document((TextSegment("Kangaroos are marsupials that live in Australia and move by hopping."),))
    verdict = run(judge.judge("Tell me about kangaroos.", view_of(doc)), limit=240)
    assert verdict.status == "ok", verdict.error
    assert set(verdict.expected) == {"text", "image"}, verdict.reply
    assert all(1.0 <= v <= 5.0 for v in verdict.scores.values())
