"""The OpenAI-compatible writer against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest

from llmi.errors import WriterError
from llmi.image import ImageData
from llmi.llm import OpenAIWriter, Sampling, build_messages
from llmi.tags import parse

from writer_fixtures import ANSWER, free_port

MSGS = build_messages("Write one sentence about owls.", system="You are brief.")


def run(coro):
    return asyncio.run(coro)


async def collect(writer: OpenAIWriter, msgs=MSGS, sampling=None) -> list[str]:
    return [p async for p in writer.stream(msgs, sampling)]


# -- against llama.cpp's server running SmolLM2 -------------------------------------------------


def test_real_server_discovers_its_model_and_completes(llama_server: str) -> None:
    w = OpenAIWriter(llama_server, sampling=Sampling(max_tokens=12, seed=1, temperature=0.0))
    assert run(w.list_models()) == ["smollm2"]
    text = run(w.complete(MSGS))
    assert w.model == "smollm2"  # discovered from /models
    assert isinstance(text, str) and text.strip()


def test_real_server_streams_in_pieces_matching_the_completion(llama_server: str) -> None:
    s = Sampling(max_tokens=16, seed=7, temperature=0.0)
    w = OpenAIWriter(llama_server, model="smollm2", sampling=s)
    pieces = run(collect(w))
    assert len(pieces) > 3  # token by token, not one blob
    assert "".join(pieces) == run(w.complete(MSGS))  # greedy: the same text either way


def test_real_server_seed_makes_sampling_reproducible(llama_server: str) -> None:
    w = OpenAIWriter(llama_server, model="smollm2")
    hot = Sampling(max_tokens=20, temperature=1.5, top_p=1.0, seed=123)
    a, b = run(w.complete(MSGS, hot)), run(w.complete(MSGS, hot))
    assert a == b
    others = {run(w.complete(MSGS, Sampling(max_tokens=20, temperature=1.5, top_p=1.0, seed=s))) for s in (1, 2, 3)}
    assert len(others | {a}) > 1  # the seed does steer the sampling


# -- against the scripted server ----------------------------------------------------------------


def test_streaming_parses_sse_and_tags(scripted) -> None:
    w = OpenAIWriter(scripted.base("ok"), sampling=Sampling(seed=5, max_tokens=99, temperature=0.3, top_p=0.8))
    pieces = run(collect(w))
    assert "".join(pieces) == ANSWER and len(pieces) > 3
    assert parse("".join(pieces)).tags[0].request.query == "barn owl"
    body = scripted.posts("ok")[-1]["body"]
    assert body["model"] == "scripted" and body["stream"] is True
    assert (body["seed"], body["max_tokens"], body["temperature"], body["top_p"]) == (5, 99, 0.3, 0.8)


def test_server_that_ignores_stream_flag_still_works(scripted) -> None:
    w = OpenAIWriter(scripted.base("nostream"), model="m")
    assert "".join(run(collect(w))) == ANSWER


def test_images_are_sent_as_image_parts(scripted, tmp_path) -> None:
    path = tmp_path / "red.png"
    img = ImageData.blank(3, 2, "red")
    path.write_bytes(img.data)
    msgs = build_messages("Describe these.", images=[str(path), "https://example.org/cat.jpg"])
    w = OpenAIWriter(scripted.base("ok"), model="m")
    run(w.complete(msgs))
    content = scripted.posts("ok")[-1]["body"]["messages"][-1]["content"]
    assert content[0]["type"] == "text" and "img_index 0 to 1" in content[0]["text"]
    local, remote = content[1]["image_url"]["url"], content[2]["image_url"]["url"]
    assert local.startswith("data:image/png;base64,")
    assert base64.b64decode(local.split(",", 1)[1]) == img.data
    assert remote == "https://example.org/cat.jpg"


def test_broken_image_input_is_a_clear_error(scripted, tmp_path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    w = OpenAIWriter(scripted.base("ok"), model="m")
    with pytest.raises(WriterError, match="not a readable image"):
        run(w.complete(build_messages("x", images=[str(bad)])))
    with pytest.raises(WriterError, match="cannot read the image"):
        run(w.complete(build_messages("x", images=[str(tmp_path / "missing.png")])))


def test_transient_500s_are_retried_then_succeed(scripted) -> None:
    w = OpenAIWriter(scripted.base("flaky-complete"), model="m", backoff=0.01)
    assert run(w.complete(MSGS)) == ANSWER
    assert len(scripted.posts("flaky-complete")) == 3
    w = OpenAIWriter(scripted.base("flaky-stream"), model="m", backoff=0.01)
    assert "".join(run(collect(w))) == ANSWER
    assert len(scripted.posts("flaky-stream")) == 3


def test_persistent_failures_give_up_after_the_retries(scripted) -> None:
    w = OpenAIWriter(scripted.base("broken-a"), model="m", retries=2, backoff=0.01)
    with pytest.raises(WriterError, match=r"HTTP 500.*boom.*kept failing after 3 attempts"):
        run(w.complete(MSGS))
    assert len(scripted.posts("broken-a")) == 3
    w = OpenAIWriter(scripted.base("busy-a"), model="m", retries=1, backoff=0.01)
    with pytest.raises(WriterError, match="429"):
        run(w.complete(MSGS))
    assert len(scripted.posts("busy-a")) == 2


def test_client_errors_are_not_retried(scripted) -> None:
    w = OpenAIWriter(scripted.base("badrequest"), model="m", backoff=0.01)
    with pytest.raises(WriterError, match="HTTP 400.*max_tokens is too large"):
        run(w.complete(MSGS))
    assert len(scripted.posts("badrequest")) == 1


def test_timeout_is_a_clear_error(scripted) -> None:
    w = OpenAIWriter(scripted.base("slow"), model="m", timeout=0.3)
    with pytest.raises(WriterError, match="did not answer within 0.3 s"):
        run(w.complete(MSGS))


def test_malformed_json_is_a_clear_error(scripted) -> None:
    w = OpenAIWriter(scripted.base("malformed"), model="m")
    with pytest.raises(WriterError, match="malformed stream chunk"):
        run(collect(w))
    with pytest.raises(WriterError, match="malformed response.*not JSON"):
        run(w.complete(MSGS))


def test_truncated_stream_is_a_clear_error(scripted) -> None:
    w = OpenAIWriter(scripted.base("truncated"), model="m")
    with pytest.raises(WriterError, match="ended before it was complete"):
        run(collect(w))
    w = OpenAIWriter(scripted.base("cut"), model="m")
    with pytest.raises(WriterError, match="cut off"):
        run(collect(w))


def test_unauthorised_names_the_api_key_setting(scripted) -> None:
    w = OpenAIWriter(scripted.base("auth"), model="m")
    with pytest.raises(WriterError, match=r"401.*Incorrect API key.*--api-key or LLMI_API_KEY"):
        run(w.complete(MSGS))
    ok = OpenAIWriter(scripted.base("auth"), model="m", api_key="sekrit")
    assert run(ok.complete(MSGS)) == ANSWER


def test_wrong_model_name_lists_the_served_models(scripted) -> None:
    w = OpenAIWriter(scripted.base("wrongmodel"), model="gpt-nope")
    with pytest.raises(WriterError, match=r"does not serve the model 'gpt-nope'.*alpha, beta.*--model-name"):
        run(w.complete(MSGS))


def test_model_discovery_needs_exactly_one_model(scripted) -> None:
    with pytest.raises(WriterError, match=r"serves 2 models \(alpha, beta\).*--model-name"):
        run(OpenAIWriter(scripted.base("two")).complete(MSGS))
    with pytest.raises(WriterError, match="could not list the models.*--model-name"):
        run(OpenAIWriter(scripted.base("nomodels")).complete(MSGS))


def test_unreachable_endpoint_is_retried_then_reported() -> None:
    port = free_port()  # nothing listens there now
    w = OpenAIWriter(f"http://127.0.0.1:{port}/v1", model="m", retries=1, backoff=0.01)
    with pytest.raises(WriterError, match=r"cannot reach the writer endpoint.*--base-url"):
        run(w.complete(MSGS))


def test_bad_base_url_and_empty_prompt() -> None:
    with pytest.raises(WriterError, match="must start with http"):
        OpenAIWriter("localhost:8000")
    with pytest.raises(WriterError, match="prompt is empty"):
        build_messages("   ")


def test_a_runaway_stream_is_cut_off(monkeypatch) -> None:
    from http_fixtures import ScriptedServer, Step

    import llmi.llm.openai_compat as compat

    monkeypatch.setattr(compat, "MAX_STREAM_BYTES", 2000)
    chunk = b'data: {"choices": [{"delta": {"content": "' + b"x" * 200 + b'"}}]}\n\n'
    with ScriptedServer() as server:
        server.script(Step(body=[chunk] * 50, action="stream"))
        w = OpenAIWriter(server.url + "/v1", model="m")
        with pytest.raises(WriterError, match="streamed more than 2000 bytes"):
            run(collect(w))
