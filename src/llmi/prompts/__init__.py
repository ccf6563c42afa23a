"""Prompts shipped as package data: the writer's system prompt and the judges' rubrics.

>>> "<imgen>" in system_prompt()
True
>>> "Text-Image Relevance" in judge_prompt("mllm")
True
"""

from __future__ import annotations

from importlib import resources
from os import PathLike

__all__ = ["JUDGES", "VARIANTS", "judge_prompt", "system_prompt"]


#: the shipped variants: the full prompt (LLM-I compatible) and a short one for small models
VARIANTS = {"full": "system.txt", "compact": "system_compact.txt"}

#: the judges' rubrics (llmi's words for LLM-I's criteria; the reply format is added by the judge)
JUDGES = {"llm": "judge_llm.txt", "mllm": "judge_mllm.txt"}


def system_prompt(path: str | PathLike[str] | None = None, *, variant: str = "full") -> str:
    """The system prompt that teaches a writer the ``<imgen>`` tag format.

    ``variant="full"`` teaches the format, the four tools and when to use each, with a worked
    example, for any capable model (and checkpoints trained on LLM-I's format).
    ``variant="compact"`` says the same in a third of the tokens, for small embedded models
    whose tags a grammar already keeps well formed (the prompt is most of their run time).
    With ``path`` (the user's own prompt, ``--system-prompt FILE``) that file is read instead.
    """
    from ..errors import ConfigError

    if path is None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown system prompt variant {variant!r}; choose {', '.join(VARIANTS)}")
        return resources.files(__name__).joinpath(VARIANTS[variant]).read_text(encoding="utf-8")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the system prompt file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the system prompt file {str(path)!r} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"the system prompt file {str(path)!r} is empty")
    return text


def judge_prompt(judge: str) -> str:
    """The rubric a judge is given as its system prompt: ``llm`` (text and tags) or ``mllm``
    (the pictures in context)."""
    from ..errors import ConfigError

    if judge not in JUDGES:
        raise ConfigError(f"unknown judge {judge!r}; choose {', '.join(JUDGES)}")
    return resources.files(__name__).joinpath(JUDGES[judge]).read_text(encoding="utf-8")
