"""Stage 1: write N candidate answers at once, each with its own seed, tools running as they go.

Each candidate is one ``llmi.agenerate`` call (the writer's answer streamed into the engine, so a
tag's tool starts as soon as the tag is written); all N run concurrently and share one engine,
so an identical tool call in two candidates runs once (the engine's cache). A candidate whose
writer fails is kept as a failed candidate with the reason; only when every one fails does the
stage raise.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import WriterError
from .costs import Meter, MeteredWriter
from .record import Candidate

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine
    from ..image import ImageData
    from ..llm.base import Sampling, Writer

__all__ = ["sample_candidates"]


async def sample_candidates(
    prompt: str,
    inputs: "Sequence[ImageData]",
    *,
    n: int,
    seed: int,
    writer: "Writer",
    engine: "Engine",
    sampling: "Sampling",
    system_prompt: str | None = None,
    meta: Mapping[str, Any] | None = None,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> list[Candidate]:
    """``n`` candidates with seeds ``seed .. seed + n - 1``, in seed order."""
    from ..api import agenerate

    async def one(i: int) -> Candidate:
        meter = Meter()
        try:
            doc = await agenerate(prompt, images=inputs, writer=MeteredWriter(writer, meter), engine=engine,
                                  system_prompt=system_prompt, sampling=replace(sampling, seed=seed + i),
                                  meta={**(meta or {}), "seed": seed + i, "candidate": i})
        except WriterError as exc:
            cand = Candidate(i, seed + i, None, meter.cost(), error=str(exc))
        else:
            meter.tools(doc)
            cand = Candidate(i, seed + i, doc, meter.cost())
        if on_candidate is not None:
            on_candidate(cand)
        return cand

    candidates = list(await asyncio.gather(*(one(i) for i in range(n))))
    if not any(c.ok for c in candidates):
        first = candidates[0].error or "no text"
        raise WriterError(f"none of the {n} candidates could be written: {first}")
    return candidates
