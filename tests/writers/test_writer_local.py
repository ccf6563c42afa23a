"""The embedded GGUF writer, run for real on SmolLM2-135M."""

from __future__ import annotations

import asyncio

import pytest

from llmi.errors import ConfigError, WriterError
from llmi.llm import Sampling, build_messages, make_writer, trim_unfinished_tag
from llmi.llm.grammar import tag_grammar
from llmi.prompts import system_prompt
from llmi.tags import PARAM_TYPES, parse
from writer_fixtures import free_port

pytest.importorskip("llama_cpp")

from llmi.llm.local import LocalWriter, resolve_model  # noqa: E402

#: a grammar with short bounds, so a tag comes within a few dozen tokens
QUICK = tag_grammar(max_tags=2, max_lines=1, line_chars=48, text_chars=24, code_chars=48)


def write(writer: LocalWriter, prompt: str, seed: int, max_tokens: int, system: str | None = None,
          images=()) -> tuple[str, list[str]]:
    msgs = build_messages(prompt, system=system, images=images)

    async def go() -> list[str]:
        return [p async for p in writer.stream(msgs, Sampling(seed=seed, max_tokens=max_tokens))]

    pieces = asyncio.run(go())
    return "".join(pieces), pieces


def assert_all_tags_ok(text: str, n_inputs: int = 0) -> int:
    # The writer may run out of tokens inside a tag; the API trims that, as done here.
    text = trim_unfinished_tag(text)
    tags = parse(text).tags
    for tag in tags:
        assert tag.ok, (tag.raw, tag.error)
        assert set(tag.request.params) == set(PARAM_TYPES[tag.request.source])
        if tag.request.source == "edit":
            assert tag.request.img_index < n_inputs + tag.index  # only images that exist
    # The grammar allows no "<" in prose, so no half tag or stray <image> can appear.
    assert text.count("<imgen>") == text.count("</imgen>") == len(tags)
    return len(tags)


@pytest.mark.parametrize("prompt,seed", [("Plot the squares of 1 to 5.", 2)])
def test_quick_grammar_tags_always_parse_and_text_streams(prompt: str, seed: int) -> None:
    w = LocalWriter(grammar=QUICK)
    text, pieces = write(w, prompt, seed, max_tokens=110)
    assert len(pieces) > 10  # streamed token by token
    assert assert_all_tags_ok(text) >= 1


@pytest.mark.slow
def test_default_writer_with_system_prompt_writes_valid_tags() -> None:
    text, _ = write(LocalWriter(), "Explain how bees make honey.", seed=4, max_tokens=220, system=system_prompt(variant="compact"))
    assert_all_tags_ok(text)


def test_same_seed_same_text() -> None:
    w = LocalWriter(grammar=QUICK)
    a, _ = write(w, "Describe a lighthouse.", seed=11, max_tokens=40)
    b, _ = write(w, "Describe a lighthouse.", seed=11, max_tokens=40)
    assert a == b


def test_edit_indices_are_limited_to_existing_images(tmp_path) -> None:
    # With only edit allowed and two inputs, the first tag may use 0 or 1, the second up to 2.
    from llmi.image import ImageData

    g = tag_grammar(sources=("edit",), n_inputs=2, max_tags=2, max_lines=1, line_chars=40, text_chars=20)
    img = ImageData.blank(2, 2)
    text, _ = write(LocalWriter(grammar=g), "Edit my photos.", seed=3, max_tokens=90, images=[img, img])
    assert_all_tags_ok(text, n_inputs=2)
    assert parse(text).tags[0].request.source == "edit"


def test_prompt_too_long_is_a_clear_error() -> None:
    w = LocalWriter(n_ctx=256)
    with pytest.raises(WriterError, match=r"prompt takes \d+ tokens but the model's context holds 256"):
        write(w, "owl " * 400, seed=1, max_tokens=10)


def test_empty_prompt_is_a_clear_error() -> None:
    from llmi.llm import Message

    with pytest.raises(WriterError, match="prompt is empty"):
        asyncio.run(LocalWriter().complete([Message("system", "x"), Message("user", "  ")]))


def test_model_resolution_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(WriterError, match="no model file at"):
        resolve_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(WriterError, match="is a folder"):
        resolve_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WriterError, match="cannot download nobody/nothing:x.gguf.*HF_HUB_OFFLINE.*--model"):
        resolve_model("nobody/nothing:x.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # a hub that is not there
    with pytest.raises(WriterError, match="not reachable from here"):
        resolve_model("nobody/nothing:x.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    with pytest.raises(WriterError, match="could not load the model"):
        LocalWriter(junk).load()


def test_make_writer_rejects_mixed_settings() -> None:
    with pytest.raises(ConfigError, match="--model-name"):
        make_writer(base_url="http://127.0.0.1:1/v1", model="x.gguf")
    with pytest.raises(ConfigError, match="needs --base-url"):
        make_writer(model_name="m")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("prompt", ["Explain the water cycle.", "Compare cats and dogs as pets.",
                                    "Show the growth of world population since 1900.", "Describe Paris at night."])
def test_default_grammar_sweep(prompt: str, seed: int) -> None:
    text, _ = write(LocalWriter(), prompt, seed=seed, max_tokens=500, system=system_prompt(variant="compact"))
    assert assert_all_tags_ok(text) >= 1
