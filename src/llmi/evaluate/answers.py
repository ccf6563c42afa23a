"""Where a benchmark item's answer comes from: a writer model now, or answers made elsewhere.

Either way the answer's tags are run by the engine, so every benchmark scores an illustrated
``Document``, and the seconds spent writing and running tools are kept.

``--answers FILE`` takes JSON or JSON lines; each entry is an answer string or an object with
the answer under ``answer`` (LLM-I's ``evaluation_results.json``), ``response``, ``output`` or
``text``, and its item under ``key``, ``id``, ``uid``, ``total_uid`` or LLM-I's 1-based
``sample_index``. Entries without any of these are matched to the items by position.

>>> answers = GivenAnswers.parse([{"sample_index": 1, "answer": "Owls hunt at night."}])
>>> answers.text_for(Item("item-0", 0)), answers.text_for(Item("item-1", 1))
('Owls hunt at night.', None)
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, WriterError
from ..image import ImageData
from .runner import Item
from .runs import file_sha256, text_sha256

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..engine import Engine
    from ..llm.base import Sampling, Writer

__all__ = ["Answered", "AnswerSource", "GivenAnswers", "WriterAnswers", "engine_facts"]

_TEXT_FIELDS = ("answer", "response", "output", "text")
_KEY_FIELDS = ("key", "id", "uid", "total_uid")


@dataclass(frozen=True)
class Answered:
    """An item's answer as a document, and what it cost."""

    doc: "Document"
    write_seconds: float
    tool_seconds: float


def engine_facts(engine: "Engine") -> dict[str, Any]:
    """The engine settings that shape a document (for the run's configuration)."""
    profile = getattr(engine, "profile", None)
    return {
        "profile": getattr(profile, "name", profile),
        "tools": {s: t.backend for s, t in sorted(engine.tools.items())},
        "fallback": dict(sorted(engine.fallback.items())),
        "deadline": engine.deadline,
    }


class AnswerSource(ABC):
    """The answers of one run. ``answer`` never raises for tool failures (they become failed
    images); a writer that cannot answer raises ``WriterError``, which fails that item only."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine

    @abstractmethod
    async def answer(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> Answered:
        """The item's answer as a document (its tools run)."""

    @abstractmethod
    async def text(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> tuple[str, float]:
        """The item's answer as written (no tool runs), and the seconds writing took."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What goes into the run's configuration."""


class WriterAnswers(AnswerSource):
    """Answers written now by ``writer`` with each item's own seed (``llmi.agenerate``).

    ``system_prompt=None`` uses the shipped prompt that suits the writer, as ``llmi generate``
    does.
    """

    def __init__(self, writer: "Writer", engine: "Engine", *, sampling: "Sampling | None" = None,
                 system_prompt: str | None = None) -> None:
        from ..llm.base import Sampling

        super().__init__(engine)
        self.writer = writer
        self.sampling = sampling or getattr(writer, "sampling", None) or Sampling()
        self.system_prompt = system_prompt

    async def answer(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> Answered:
        from ..api import agenerate

        doc = await agenerate(prompt, images=images, writer=self.writer, engine=self.engine,
                              system_prompt=self.system_prompt, sampling=replace(self.sampling, seed=seed),
                              meta={"seed": seed})
        return Answered(doc, float(doc.meta.get("writer_seconds", 0.0)), float(doc.meta.get("elapsed", 0.0)))

    async def text(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> tuple[str, float]:
        from ..llm.base import build_messages, trim_unfinished_tag
        from ..prompts import system_prompt

        system = self.system_prompt or system_prompt(variant=getattr(self.writer, "prompt_variant", "full"))
        started = time.monotonic()
        text = await self.writer.complete(build_messages(prompt, system=system, images=images),
                                          replace(self.sampling, seed=seed))
        text = trim_unfinished_tag(text)
        if not text.strip():
            raise WriterError(f"the writer {self.writer.name} returned no text; try another seed")
        return text, time.monotonic() - started

    def describe(self) -> dict[str, Any]:
        from ..prompts import system_prompt

        w = self.writer
        prompt = self.system_prompt
        label = "custom"
        if prompt is None:
            label = getattr(w, "prompt_variant", "full")
            prompt = system_prompt(variant=label)
        facts: dict[str, Any] = {
            "source": "writer",
            "name": w.name,
            "type": type(w).__name__,
            "sampling": {k: getattr(self.sampling, k) for k in ("temperature", "top_p", "max_tokens")},
            "system_prompt": {"variant": label, "sha256": text_sha256(prompt)},
        }
        for attr in ("base_url", "grammar", "n_ctx"):
            value = getattr(w, attr, None)
            if value is not None:
                facts[attr] = value if isinstance(value, (str, int, bool)) else "custom"
        return facts


class GivenAnswers(AnswerSource):
    """Answers already made (``--answers FILE``); their tags are run now."""

    def __init__(self, by_key: Mapping[str, str], by_position: Mapping[int, str], *, engine: "Engine | None" = None,
                 path: str | None = None, sha256: str | None = None) -> None:
        super().__init__(engine)  # type: ignore[arg-type]
        self.by_key = dict(by_key)
        self.by_position = dict(by_position)
        self.path = path
        self.sha256 = sha256

    @classmethod
    def load(cls, path: str | Path, *, engine: "Engine | None" = None) -> "GivenAnswers":
        from .runs import read_json_list

        path = Path(path)
        data = read_json_list(path, "answers")
        if len(data) == 1 and isinstance(data[0], dict) and not any(f in data[0] for f in _TEXT_FIELDS):
            data = data[0]  # a {key: answer} object
        return cls.parse(data, engine=engine, path=str(path), sha256=file_sha256(path))

    @classmethod
    def parse(cls, data: Any, **kwargs: Any) -> "GivenAnswers":
        if isinstance(data, dict) and not any(f in data for f in _TEXT_FIELDS):
            data = [{"key": k, "answer": v} for k, v in data.items()]  # {"key": "answer", ...}
        if not isinstance(data, list):
            raise ConfigError("the answers must be a list (or a {key: answer} object)")
        by_key: dict[str, str] = {}
        by_position: dict[int, str] = {}
        for i, entry in enumerate(data):
            text, key, position = _entry(entry, i)
            if key is not None:
                by_key[key] = text
            else:
                by_position[position] = text
        return cls(by_key, by_position, **kwargs)

    def text_for(self, item: Item) -> str | None:
        if item.key in self.by_key:
            return self.by_key[item.key]
        return self.by_position.get(item.index)

    async def text(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> tuple[str, float]:
        text = self.text_for(item)
        if text is None:
            raise WriterError(f"--answers has no answer for item {item.key} (position {item.index + 1})")
        return text, 0.0

    async def answer(self, item: Item, prompt: str, images: Sequence[ImageData], seed: int) -> Answered:
        from ..api import arender

        text, _ = await self.text(item, prompt, images, seed)
        started = time.monotonic()
        doc = await arender(text, inputs=images, engine=self.engine, meta={"prompt": prompt, "writer": "given answers"})
        return Answered(doc, 0.0, time.monotonic() - started)

    def describe(self) -> dict[str, Any]:
        return {"source": "answers", "path": self.path, "sha256": self.sha256,
                "answers": len(self.by_key) + len(self.by_position)}


def _entry(entry: Any, position: int) -> tuple[str, str | None, int]:
    if isinstance(entry, str):
        return entry, None, position
    if not isinstance(entry, dict):
        raise ConfigError(f"answer {position} is neither a string nor an object")
    text = next((entry[f] for f in _TEXT_FIELDS if isinstance(entry.get(f), str)), None)
    if text is None:
        raise ConfigError(f"answer {position} has no text under {', '.join(_TEXT_FIELDS)}")
    for f in _KEY_FIELDS:
        if entry.get(f) is not None and not isinstance(entry[f], (dict, list)):
            return text, str(entry[f]), position
    if isinstance(entry.get("sample_index"), int) and not isinstance(entry["sample_index"], bool):
        return text, None, entry["sample_index"] - 1  # LLM-I counts its samples from 1
    return text, None, position
