"""The values a scaling run passes between its stages, and the record it leaves in the document.

The final ``Document``'s ``meta["scaling"]`` is ``ScalingReport.to_dict()``: every candidate
(its seed, answer, images, problems, scores and cost), how the selection went, every change made
to a tool call, the polish, and the cost of each stage (``docs/scaling.md`` lists the fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .costs import Cost

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document

__all__ = ["Candidate", "Change", "Match", "PolishEdit", "ScalingReport", "Selection", "StageReport",
           "answer_of", "images_of"]

#: the version of ``meta["scaling"]``; bumped when a field changes meaning or disappears
RECORD_VERSION = "llmi.scaling/1"


def answer_of(doc: "Document") -> str:
    """The answer a document was read from: its prose with each tag as written."""
    from ..document import TextSegment

    return "".join(s.text if isinstance(s, TextSegment) else s.raw for s in doc.segments)


def images_of(doc: "Document") -> list[dict[str, Any]]:
    """One line per tag: what it asked for and what came of it."""
    return [{"tag": s.index, "tool": s.tool, "status": s.status, "description": s.description,
             **({"error_type": s.error_type, "error": s.error} if not s.ok else {}),
             **({"fallback": s.fallback.used} if s.fallback is not None else {})}
            for s in doc.image_segments]


@dataclass(frozen=True)
class Candidate:
    """One sampled answer and what the stages found out about it.

    ``doc`` is ``None`` when the writer failed (``error`` says why). ``problems`` are the
    validation's reasons to drop it; ``kept`` that it was kept anyway (every candidate had a
    problem, so none was dropped); ``satisfies`` whether it has the number of images asked
    for; ``score`` the selection judges' reward (``None`` when not scored).

    >>> from llmi.document import Document
    >>> [Candidate(0, 1, Document(()), problems=("p",), kept=k).status for k in (False, True)]
    ['dropped', 'kept']
    """

    index: int
    seed: int
    doc: "Document | None"
    cost: Cost = Cost()
    error: str | None = None
    problems: tuple[str, ...] = ()
    satisfies: bool = True
    kept: bool = False
    score: float | None = None
    scores: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.doc is not None

    @property
    def status(self) -> str:
        if self.doc is None:
            return "failed"
        return ("kept" if self.kept else "dropped") if self.problems else "valid"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "seed": self.seed, "status": self.status, "error": self.error,
                               "problems": list(self.problems), "satisfies_image_num": self.satisfies,
                               "score": self.score, "scores": dict(self.scores), "cost": self.cost.to_dict()}
        if self.doc is not None:
            out["answer"] = answer_of(self.doc)
            out["images"] = images_of(self.doc)
        return out


@dataclass(frozen=True)
class Match:
    """One pairwise comparison of a tournament: ``winner`` is a candidate index."""

    a: int
    b: int
    winner: int
    verdicts: tuple[str | None, ...]  # what the judge said each way round ("a", "b" or None)
    decided_by: Literal["judge", "rules"]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "winner": self.winner, "verdicts": list(self.verdicts),
                "decided_by": self.decided_by, "reason": self.reason}


@dataclass(frozen=True)
class Selection:
    """Which candidate was chosen, how, and why."""

    chosen: int
    method: str  # scores | tournament | listwise | rules | first | only
    reason: str
    pool: tuple[int, ...] = ()  # the candidates it chose among
    matches: tuple[Match, ...] = ()
    ranking: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "method": self.method, "reason": self.reason, "pool": list(self.pool),
                "matches": [m.to_dict() for m in self.matches], "ranking": list(self.ranking)}


@dataclass(frozen=True)
class Change:
    """One attempt at improving one tool call of the chosen answer.

    ``kind``: ``search_query`` (a search that found nothing, with a rewritten query),
    ``code_repair`` (chart code that failed, repaired given the error) or ``diffusion_prompt``
    (a vague generation prompt made specific). ``outcome``: ``fixed`` (the tag now makes its
    image), ``failed`` (still no image: the original tag is kept), ``specific`` (the new
    prompt made an image), ``no_answer`` (the writer gave nothing usable) or ``unchanged``
    (the writer repeated the old value).
    """

    tag: int
    kind: Literal["search_query", "code_repair", "diffusion_prompt"]
    attempt: int
    before: str
    after: str | None
    outcome: Literal["fixed", "failed", "specific", "no_answer", "unchanged"]
    error_before: str | None = None
    error_after: str | None = None

    @property
    def kept(self) -> bool:
        return self.outcome in ("fixed", "specific")

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "kind": self.kind, "attempt": self.attempt, "before": self.before,
                "after": self.after, "outcome": self.outcome, "kept": self.kept,
                "error_before": self.error_before, "error_after": self.error_after}


@dataclass(frozen=True)
class PolishEdit:
    """The writer's revision of one prose segment (``segment`` counts the document's segments).
    ``status``: ``revised``, or why the revision was refused (``empty``, ``markers``, ``length``;
    ``tags`` when the revised answer's tags did not read back the same)."""

    segment: int
    before: str
    after: str | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "before": self.before, "after": self.after, "status": self.status}


@dataclass(frozen=True)
class StageReport:
    """What one stage did (``summary``, in words) and cost."""

    name: str
    cost: Cost
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "cost": self.cost.to_dict()}


@dataclass(frozen=True)
class ScalingReport:
    """Everything a scaling run decided, for ``meta["scaling"]``."""

    config: Mapping[str, Any]
    candidates: tuple[Candidate, ...]
    selection: Selection
    changes: tuple[Change, ...] = ()
    polish: tuple[PolishEdit, ...] = ()
    polish_status: str = "off"  # off | applied | unchanged | rejected | reverted
    stages: tuple[StageReport, ...] = ()
    scores: Mapping[str, float | None] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)  # the answer after selection, enhancement, polish
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Cost:
        out = Cost()
        for stage in self.stages:
            out = out + stage.cost
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "config": dict(self.config),
            "candidates": [c.to_dict() for c in self.candidates],
            "selection": self.selection.to_dict(),
            "enhancements": [c.to_dict() for c in self.changes],
            "polish": {"status": self.polish_status, "segments": [p.to_dict() for p in self.polish]},
            "stages": [s.to_dict() for s in self.stages],
            "cost": self.total.to_dict(),
            "scores": dict(self.scores),
            "answers": dict(self.answers),
            "notes": list(self.notes),
        }
