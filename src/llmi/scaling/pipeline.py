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
from dataclasses import dataclass, field, replace
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
        scorers = selection_scorers(engine, self.judges, range(cfg.judge_samples), expected=cfg.expected_scores)
        run = _Run(prompt, inputs, writer, engine, sampling, seed, scorers)
        candidates = await self._sample(run, meta)  # 1.
        if cfg.validate:  # 2.
            meter = Meter()
            candidates, summary = validate(candidates, cfg.image_num)
            run.stage("validate", meter, summary, self._say)
        selection, candidates = await self._select(run, candidates, pool(candidates))  # 3.
        chosen = next(c for c in candidates if c.index == selection.chosen)
        assert chosen.doc is not None
        run.scores["selected"] = run.current = chosen.score
        run.answers["selected"] = answer_of(chosen.doc)
        doc, changes = await self._enhance(run, chosen.doc) if cfg.enhance else (chosen.doc, [])  # 4.
        doc, edits, status = await self._polish(run, doc) if cfg.polish else (doc, [], "off")  # 5.
        run.scores["final"] = run.current
        run.answers["final"] = answer_of(doc)
        report = ScalingReport(cfg.to_dict() | {"seed": seed}, tuple(candidates), selection, tuple(changes),
                               tuple(edits), status, tuple(run.stages), run.scores, run.answers, tuple(run.notes))
        return replace(doc, meta={**doc.meta, "scaling": report.to_dict()})

    async def _sample(self, run: "_Run", meta: Mapping[str, Any] | None) -> list[Candidate]:
        n = self.config.n
        self._say("sample", f"writing {n} candidate{'s' if n > 1 else ''} (seeds {run.seed}..{run.seed + n - 1})")
        meter = Meter()
        candidates = await sample_candidates(
            run.prompt, run.inputs, n=n, seed=run.seed, writer=run.writer, engine=run.engine, sampling=run.sampling,
            system_prompt=self.system_prompt, meta=meta, on_candidate=lambda c: self._say("sample", _candidate_line(c)))
        spent = sum((replace(c.cost, seconds=0.0) for c in candidates), Cost())
        run.stages.append(StageReport("sample", replace(spent, seconds=meter.cost().seconds),
                                      f"{sum(c.ok for c in candidates)} of {n} candidates written"))
        return candidates

    async def _enhance(self, run: "_Run", doc: "Document") -> tuple["Document", list]:
        self._say("enhance", "improving the chosen answer's tool calls")
        meter = Meter()
        doc, changes = await enhance(doc, writer=MeteredWriter(run.writer, meter), engine=run.engine,
                                     question=run.prompt, config=self.config, sampling=run.sampling, seed=run.seed,
                                     meter=meter)
        kept = sum(c.kept for c in changes)
        run.answers["enhanced"] = answer_of(doc)
        if kept:
            run.current = None  # a changed document has not been judged
        run.stage("enhance", meter, f"{kept} of {len(changes)} changes kept", self._say)
        return doc, changes

    async def _polish(self, run: "_Run", doc: "Document") -> tuple["Document", list, str]:
        self._say("polish", "revising the prose around the images")
        meter = Meter()
        polished, edits, status = await polish(doc, writer=MeteredWriter(run.writer, meter), engine=run.engine,
                                               question=run.prompt, sampling=run.sampling, seed=run.seed, meter=meter)
        if polished is not None and self.config.polish_guard and run.scorers:
            before = run.current if run.current is not None else await self._score(run, doc, meter)
            after = await self._score(run, polished, meter)
            run.scores.update(before_polish=before, polished=after)
            run.current = after
            # prose is a matter of taste: the judges must like the new text better, not as well
            if before is not None and (after is None or after <= before):
                status, polished, run.current = "reverted", None, before
                run.notes.append(f"the polished text scored {_fmt(after)} against {_fmt(before)}: kept the text as it was")
        elif polished is not None:
            run.current = None
            if self.config.polish_guard:
                run.notes.append("no judge to guard the polish: the polished text was kept unjudged")
        revised = sum(e.status == "revised" for e in edits)
        run.stage("polish", meter, f"{status}: {revised} of {len(edits)} paragraphs revised", self._say)
        return polished or doc, edits, status

    async def _select(self, run: "_Run", candidates: list[Candidate], choices: list[Candidate]
                      ) -> tuple[Selection, list[Candidate]]:
        cfg = self.config
        if "select" not in cfg.stages():
            return await select(choices, None, question=run.prompt, judge=None, both_orders=False, meter=Meter(),
                                seed=run.seed), candidates
        self._say("select", f"choosing among {len(choices)} candidates ({cfg.select})")
        meter = Meter()
        if cfg.select == "scores" and run.scorers and len(choices) > 1:
            scored = {c.index: c for c in await score_candidates(choices, run.scorers, run.prompt, cfg.image_num, meter)}
            candidates = [scored.get(c.index, c) for c in candidates]
            choices = [scored[c.index] for c in choices]
        selection = await select(choices, cfg.select, question=run.prompt, judge=self.judges.compare,
                                 both_orders=cfg.both_orders, meter=meter, seed=run.seed)
        run.stage("select", meter, f"candidate {selection.chosen} ({selection.method}): {selection.reason}", self._say)
        return selection, candidates

    async def _score(self, run: "_Run", doc: "Document", meter: Meter) -> float | None:
        scored = await score_candidates([Candidate(0, 0, doc)], run.scorers, run.prompt, self.config.image_num, meter)
        return scored[0].score

    def _say(self, stage: str, message: str) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, message)

    async def aclose(self) -> None:
        """Close the judges' connections and the engine if the scaler made it."""
        await self.judges.aclose()
        if self._own_engine and self.engine is not None:
            await self.engine.aclose()


@dataclass
class _Run:
    """One run's settings and what it has found so far."""

    prompt: str
    inputs: tuple
    writer: "Writer"
    engine: "Engine"
    sampling: "Sampling"
    seed: int
    scorers: "list[RewardScorer]"
    stages: list[StageReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    current: float | None = None  # the judged score of the document as it stands (None: not judged)

    def stage(self, name: str, meter: Meter, summary: str, say: Callable[[str, str], None]) -> None:
        self.stages.append(StageReport(name, meter.cost(), summary))
        say(name, summary)


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
