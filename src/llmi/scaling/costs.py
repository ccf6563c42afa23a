"""What each stage of a scaling run cost: writer calls and tokens, tool calls, judge calls, time.

A ``Meter`` collects one stage's counts while it runs (its calls may run concurrently);
``Meter.cost()`` freezes them into a ``Cost``. The writer's tokens are counted by wrapping the
writer (``MeteredWriter``): written tokens are the pieces it streams (llama.cpp, vLLM and
SGLang stream one token per piece), read tokens are exact where the writer can count them (the
embedded model) and estimated at four characters a token otherwise.

>>> total = Cost(seconds=1.5, writer_calls=1, writer_tokens=200) + Cost(seconds=0.5, judge_calls=2)
>>> total.seconds, total.writer_tokens, total.judge_calls
(2.0, 200, 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..llm.base import Message, Sampling, Writer
    from ..rewards.breakdown import RewardBreakdown

__all__ = ["Cost", "Meter", "MeteredWriter", "tool_calls"]


@dataclass(frozen=True)
class Cost:
    """Resources one stage (or a whole run) used. ``seconds`` is wall time."""

    seconds: float = 0.0
    writer_calls: int = 0
    writer_tokens: int = 0
    prompt_tokens: int = 0
    tool_calls: int = 0
    judge_calls: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["seconds"] = round(self.seconds, 3)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Cost":
        return cls(**{f.name: data.get(f.name, 0) for f in fields(cls)}) if isinstance(data, dict) else cls()


def tool_calls(doc: "Document") -> int:
    """Backend calls a document's images took (retries and fallbacks included, cache hits free)."""
    return sum(s.attempts for s in doc.image_segments if not s.cache_hit)


class Meter:
    """Counts one stage's calls; started when made, read with ``cost()``."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.writer_calls = self.writer_tokens = self.prompt_tokens = 0
        self.tool_calls = self.judge_calls = 0

    def tools(self, doc: "Document") -> None:
        self.tool_calls += tool_calls(doc)

    def judged(self, breakdown: "RewardBreakdown") -> None:
        """The judge calls behind one reward breakdown (a skipped judge was not asked)."""
        for verdict in (breakdown.llm, breakdown.mllm):
            if verdict is not None and verdict.status in ("ok", "failed"):
                self.judge_calls += max(1, verdict.attempts)

    def cost(self) -> Cost:
        return Cost(time.monotonic() - self.started, self.writer_calls, self.writer_tokens, self.prompt_tokens,
                    self.tool_calls, self.judge_calls)


class MeteredWriter:
    """``writer`` with every call counted on ``meter``; anything else is the writer's own."""

    def __init__(self, writer: "Writer", meter: Meter) -> None:
        self._writer = writer
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    @property
    def name(self) -> str:
        return self._writer.name

    async def stream(self, messages: "Sequence[Message]", sampling: "Sampling | None" = None) -> AsyncIterator[str]:
        meter = self._meter
        meter.writer_calls += 1
        meter.prompt_tokens += self._read_tokens(messages)
        async for piece in self._writer.stream(messages, sampling):
            meter.writer_tokens += 1
            yield piece

    async def complete(self, messages: "Sequence[Message]", sampling: "Sampling | None" = None) -> str:
        return "".join([piece async for piece in self.stream(messages, sampling)])

    def _read_tokens(self, messages: "Sequence[Message]") -> int:
        count = getattr(self._writer, "count_tokens", None)
        if callable(count):
            try:
                return int(count(messages))
            except Exception:  # counting is bookkeeping: the writer reports its own errors when it writes
                pass
        return sum(len(m.content) for m in messages) // 4
