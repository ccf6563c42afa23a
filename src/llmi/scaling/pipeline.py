"""``Scaler``: the five stages of test-time scaling in order, one ``Document`` at the end.

>>> from llmi.scaling import ScaleConfig
>>> Scaler(config=ScaleConfig(n=4, polish=False)).config.stages()
('sample', 'validate', 'select', 'enhance')

``await Scaler(writer, engine, judges=...).arun(prompt)`` (or ``llmi.scaling.ascale`` /
``scale`` with settings from the environment, or ``llmi.generate(prompt, scale=4)``) returns
the final document; its ``meta["scaling"]`` records every candidate, the selection, each change
and each stage's cost.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .config import ScaleConfig
from .costs import Cost, Meter, MeteredWriter
from .enhance import enhance
from .judges import Judges, selection_scorers
from .polish import polish
from .record import Candidate, ScalingReport, Selection, StageReport, answer_of
from .sample import sample_candidates
from .selection import score_candidates, select
from .validate import pool, validate

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..engine import Engine
    from ..llm.base import ImageInput, Sampling, Writer
    from ..rewards.scorer import RewardScorer

__all__ = ["Scaler", "ascale", "scale"]


class Scaler:
    """Runs a scaling ``config`` with a ``writer`` (default: ``writer_from_env()``), an
    ``engine`` (default: ``Engine.from_env()``, closed by ``aclose``) and ``judges``
    (default: none; ``Judges.from_env()`` reads LLM-I's judge variables).

    ``on_stage(stage, message)`` hears what each stage is doing, for progress displays.
    """

    def __init__(
        self,
        writer: "Writer | None" = None,
        engine: "Engine | None" = None,
        *,
        config: ScaleConfig | None = None,
        judges: Judges | None = None,
        system_prompt: str | None = None,
        on_stage: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config or ScaleConfig()
        self.writer = writer
        self._own_engine = engine is None
        self.engine = engine
        self.judges = judges or Judges()
        self.system_prompt = system_prompt
        self.on_stage = on_stage

    async def arun(self, prompt: str, images: "Sequence[ImageInput]" = (), *, sampling: "Sampling | None" = None,
                   meta: Mapping[str, Any] | None = None) -> "Document":
        """The best document the configuration can make for ``prompt``."""
        from ..api import load_inputs
        from ..engine import Engine
        from ..llm import writer_from_env
        from ..llm.base import Sampling, build_messages

        cfg = self.config
        build_messages(prompt)  # an empty prompt fails before any model loads
        inputs = await load_inputs(images)
        writer = self.writer = self.writer or writer_from_env()
        engine = self.engine = self.engine or Engine.from_env()
        sampling = sampling or getattr(writer, "sampling", None) or Sampling()
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**31 - cfg.n)
        scorers = selection_scorers(engine, self.judges, range(cfg.judge_samples))
        stages: list[StageReport] = []
        notes: list[str] = []

        # 1. sample
        self._say("sample", f"writing {cfg.n} candidate{'s' if cfg.n > 1 else ''} (seeds {seed}..{seed + cfg.n - 1})")
        started = time.monotonic()
        candidates = await sample_candidates(
            prompt, inputs, n=cfg.n, seed=seed, writer=writer, engine=engine, sampling=sampling,
            system_prompt=self.system_prompt, meta=meta,
            on_candidate=lambda c: self._say("sample", _candidate_line(c)))
        spent = sum((replace(c.cost, seconds=0.0) for c in candidates), Cost())
        written = sum(c.ok for c in candidates)
        stages.append(StageReport("sample", replace(spent, seconds=time.monotonic() - started),
                                  f"{written} of {cfg.n} candidates written"))

        # 2. validate
        if cfg.validate:
            meter = Meter()
            candidates, summary = validate(candidates, cfg.image_num)
            stages.append(StageReport("validate", meter.cost(), summary))
            self._say("validate", summary)
        choices = pool(candidates)

        # 3. select
        selection, candidates = await self._select(candidates, choices, prompt, scorers, seed, stages)
        chosen = next(c for c in candidates if c.index == selection.chosen)
        doc = chosen.doc
        assert doc is not None
        scores: dict[str, float | None] = {"selected": chosen.score}
        answers = {"selected": answer_of(doc)}
        current = chosen.score  # the judged score of the document as it stands (None: not judged)

        # 4. enhance
        changes: list = []
        if cfg.enhance:
            self._say("enhance", "improving the chosen answer's tool calls")
            meter = Meter()
            doc, changes = await enhance(doc, writer=MeteredWriter(writer, meter), engine=engine, question=prompt,
                                         config=cfg, sampling=sampling, seed=seed, meter=meter)
            kept = sum(c.kept for c in changes)
            answers["enhanced"] = answer_of(doc)
            if kept:
                current = None
            stages.append(StageReport("enhance", meter.cost(), f"{kept} of {len(changes)} changes kept"))
            self._say("enhance", stages[-1].summary)

        # 5. polish
        edits: list = []
        status = "off"
        if cfg.polish:
            self._say("polish", "revising the prose around the images")
            meter = Meter()
            polished, edits, status = await polish(doc, writer=MeteredWriter(writer, meter), engine=engine,
                                                   question=prompt, sampling=sampling, seed=seed, meter=meter)
            if polished is not None and cfg.polish_guard and scorers:
                before = current if current is not None else await self._score(doc, prompt, scorers, meter)
                after = await self._score(polished, prompt, scorers, meter)
                scores.update(before_polish=before, polished=after)
                current = after
                # prose is a matter of taste: the judges must like the new text better, not as well
                if before is not None and (after is None or after <= before):
                    status, polished, current = "reverted", None, before
                    notes.append(f"the polished text scored {_fmt(after)} against {_fmt(before)}: kept the text as it was")
            elif polished is not None and cfg.polish_guard:
                notes.append("no judge to guard the polish: the polished text was kept unjudged")
            elif polished is not None:
                current = None
            doc = polished or doc
            revised = sum(e.status == "revised" for e in edits)
            stages.append(StageReport("polish", meter.cost(), f"{status}: {revised} of {len(edits)} paragraphs revised"))
            self._say("polish", stages[-1].summary)

        scores["final"] = current
        answers["final"] = answer_of(doc)
        report = ScalingReport(cfg.to_dict() | {"seed": seed}, tuple(candidates), selection, tuple(changes),
                               tuple(edits), status, tuple(stages), scores, answers, tuple(notes))
        return replace(doc, meta={**doc.meta, "scaling": report.to_dict()})

    async def _select(self, candidates: list[Candidate], choices: list[Candidate], prompt: str,
                      scorers: "Sequence[RewardScorer]", seed: int, stages: list[StageReport]
                      ) -> tuple[Selection, list[Candidate]]:
        cfg = self.config
        if "select" not in cfg.stages():
            return await select(choices, None, question=prompt, judge=None, both_orders=False, meter=Meter(),
                                seed=seed), candidates
        method = cfg.select
        self._say("select", f"choosing among {len(choices)} candidates ({method})")
        meter = Meter()
        if method == "scores" and scorers and len(choices) > 1:
            scored = {c.index: c for c in await score_candidates(choices, scorers, prompt, cfg.image_num, meter)}
            candidates = [scored.get(c.index, c) for c in candidates]
            choices = [scored[c.index] for c in choices]
        selection = await select(choices, method, question=prompt, judge=self.judges.compare,
                                 both_orders=cfg.both_orders, meter=meter, seed=seed)
        stages.append(StageReport("select", meter.cost(), f"candidate {selection.chosen} ({selection.method}): "
                                  f"{selection.reason}"))
        self._say("select", stages[-1].summary)
        return selection, candidates

    async def _score(self, doc: "Document", prompt: str, scorers: "Sequence[RewardScorer]", meter: Meter) -> float | None:
        scored = await score_candidates([Candidate(0, 0, doc)], scorers, prompt, self.config.image_num, meter)
        return scored[0].score

    def _say(self, stage: str, message: str) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, message)

    async def aclose(self) -> None:
        """Close the judges' connections and the engine if the scaler made it."""
        await self.judges.aclose()
        if self._own_engine and self.engine is not None:
            await self.engine.aclose()


def _candidate_line(c: Candidate) -> str:
    if c.doc is None:
        return f"candidate {c.index} (seed {c.seed}): failed: {c.error}"
    segs = c.doc.image_segments
    return (f"candidate {c.index} (seed {c.seed}): {sum(s.ok for s in segs)} of {len(segs)} images made, "
            f"{c.cost.writer_tokens} tokens, {c.cost.seconds:.1f} s")


def _fmt(value: float | None) -> str:
    return "nothing" if value is None else f"{value:.3f}"


async def ascale(prompt: str, *, n: int = 4, images: "Sequence[ImageInput]" = (), writer: "Writer | None" = None,
                 engine: "Engine | None" = None, judges: Judges | None = None, sampling: "Sampling | None" = None,
                 config: ScaleConfig | None = None, system_prompt: str | None = None,
                 meta: Mapping[str, Any] | None = None, on_stage: Callable[[str, str], None] | None = None,
                 **settings: Any) -> "Document":
    """Scale one prompt: ``n`` candidates (or a whole ``config``; other keyword arguments are
    ``ScaleConfig`` fields). Judges default to LLM-I's variables (``Judges.from_env``); what
    this call makes (judges, engine) it also closes.

    >>> scale("Owls?", n=0)
    Traceback (most recent call last):
      ...
    llmi.errors.ConfigError: --scale needs at least 1 candidate, not 0
    """
    config = config or ScaleConfig(n=n, **settings)
    scaler = Scaler(writer, engine, config=config, judges=judges if judges is not None else Judges.from_env(),
                    system_prompt=system_prompt, on_stage=on_stage)
    try:
        return await scaler.arun(prompt, images, sampling=sampling, meta=meta)
    finally:
        if judges is None:
            await scaler.judges.aclose()
        if engine is None and scaler.engine is not None:
            await scaler.engine.aclose()


def scale(prompt: str, **kwargs: Any) -> "Document":
    """Synchronous ``ascale`` (same arguments)."""
    from ..api import _run_sync

    return _run_sync(lambda: ascale(prompt, **kwargs))
