"""The shipped system prompts and the user's own."""

from __future__ import annotations

import pytest

from llmi.errors import ConfigError
from llmi.llm.grammar import tag_grammar
from llmi.prompts import VARIANTS, system_prompt
from llmi.tags import parse


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_shipped_prompts_teach_tags_that_parse(variant: str) -> None:
    text = system_prompt(variant=variant)
    example = text[text.index("Example"):]
    tags = parse(example).tags
    assert tags and all(t.ok for t in tags)
    for source in ("search", "diffusion"):
        assert source in {t.request.source for t in tags}
    for word in ("'search'", "'diffusion'", "'code'", "'edit'", "'query'", "'prompt'", "'img_index'"):
        assert word in text


def test_full_prompt_shows_every_tool_in_its_example() -> None:
    example = system_prompt()[system_prompt().index("Example"):]
    assert [t.request.source for t in parse(example).tags] == ["search", "code", "diffusion", "edit"]
    edit = parse(example).tags[3].request
    assert edit.img_index == 2  # refers to the diffusion image, the third tag


def test_prompt_is_llmis_own_words() -> None:
    # The LLM-I fixture's example (sine wave) is not reproduced.
    assert "Sine Wave" not in system_prompt() and "sine" not in system_prompt().lower()


def test_user_prompt_file_replaces_it(tmp_path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("Write like a pirate.", encoding="utf-8")
    assert system_prompt(mine) == "Write like a pirate."
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        system_prompt(tmp_path / "empty.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        system_prompt(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="unknown system prompt variant"):
        system_prompt(variant="tiny")


def test_grammar_shapes() -> None:
    g = tag_grammar()
    assert "edit0" not in g and "edit1 ::=" in g  # no image exists before the first tag
    assert 'index1 ::= "0"' in g
    assert 'index0 ::= "0" | "1"' in tag_grammar(n_inputs=2)
    with pytest.raises(ValueError):
        tag_grammar(sources=("painting",))
    with pytest.raises(ValueError):
        tag_grammar(sources=("edit",))
