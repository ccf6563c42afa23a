"""Stage 3: choose the best candidate with a judge.

Three methods (``ScaleConfig.select``):

- ``scores``: each candidate gets the reward of ``llmi.rewards`` (the rule parts, the LLM judge
  on the answer with its tags, the MLLM judge on its pictures where one is configured), all
  candidates at once; the highest wins.
- ``tournament``: a knockout of pairwise comparisons (N - 1 matches, each round's matches at
  once). With ``both_orders`` each match is asked both ways round; a judge that contradicts
  itself, or gives no verdict, is overruled by the rules.
- ``listwise``: one call shows the judge every candidate and asks for the best.

Pairwise and list-wise judges read each candidate as text, each tag shown as the picture it made
or failed to make (``judged_text``). Whenever a judge cannot decide (none configured, an error,
a tie, a reply without a verdict) the rules decide: the images asked for, then the share of
tags that made an image, then the candidate's order. Every decision says which it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import LlmiError
from .costs import Meter
from .record import Candidate, Match, Selection

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..evaluate.judging import BenchJudge
    from ..rewards.scorer import RewardScorer

__all__ = ["judged_text", "rule_key", "score_candidates", "select"]

_PAIR_SCHEMA: Mapping[str, Any] = {
    "title": "pairwise_choice", "type": "object",
    "properties": {"reason": {"type": "string"}, "better": {"type": "string", "enum": ["A", "B"]}},
    "required": ["reason", "better"], "additionalProperties": False,
}


def judged_text(doc: "Document") -> str:
    """A candidate as a text judge reads it: prose, each tag as the picture it became.

    >>> from llmi.document import Document, ImageSegment, TextSegment
    >>> judged_text(Document((TextSegment("Owls. "), ImageSegment(0, "<imgen>..</imgen>", "search", "failed"))))
    'Owls. [missing picture: search - ]'
    """
    from ..document import TextSegment

    parts = []
    for seg in doc.segments:
        if isinstance(seg, TextSegment):
            parts.append(seg.text)
        else:
            label = "picture" if seg.ok else "missing picture"
            parts.append(f"[{label}: {seg.tool or 'unreadable tag'} - {seg.description}]")
    return "".join(parts)


def rule_key(c: Candidate) -> tuple[Any, ...]:
    """What the rules prefer, as a sort key (larger is better)."""
    segs = c.doc.image_segments if c.doc is not None else ()
    made = sum(s.ok for s in segs) / len(segs) if segs else 1.0
    return (not c.problems, c.satisfies, made, -c.index)


def _by_rules(pool: Sequence[Candidate]) -> Candidate:
    return max(pool, key=rule_key)


async def score_candidates(
    candidates: Sequence[Candidate], scorers: "Sequence[RewardScorer]", question: str, image_num: int | None,
    meter: Meter,
) -> list[Candidate]:
    """Each written candidate with its reward (``score``: the mean over ``scorers``, one per
    judge seed) and the parts of each (``scores``)."""
    from ..rewards.scorer import ExtraInfo, Sample

    info = ExtraInfo(image_num=0 if image_num is None else image_num, question=question, split="test")

    async def once(c: Candidate, scorer: "RewardScorer") -> dict[str, Any]:
        assert c.doc is not None
        b = await scorer.ascore_document(c.doc, Sample("", info, c.doc.inputs, id=str(c.index)))
        meter.judged(b)
        parts: dict[str, Any] = {"score": b.score, "status": b.status, "img_num_score": b.img_num_score,
                                 "llm_score": b.llm_score, "mllm_score": b.mllm_score}
        for verdict in (b.llm, b.mllm):
            if verdict is not None and verdict.scores:
                parts[f"{verdict.judge}_judge"] = dict(verdict.scores)
                if verdict.expected:  # these fields are expected values, not the ones written
                    parts[f"{verdict.judge}_expected"] = list(verdict.expected)
        if b.error:
            parts["error"] = b.error
        return parts

    async def one(c: Candidate) -> Candidate:
        if c.doc is None:
            return c
        runs = await asyncio.gather(*(once(c, s) for s in scorers))
        values = [r["score"] for r in runs if r["score"] is not None]
        return replace(c, score=sum(values) / len(values) if values else None, scores={"judgings": runs})

    return list(await asyncio.gather(*(one(c) for c in candidates)))


async def select(
    pool: Sequence[Candidate],
    method: str | None,
    *,
    question: str,
    judge: "BenchJudge | None",
    both_orders: bool,
    meter: Meter,
    seed: int,
) -> Selection:
    """Choose among ``pool`` (already scored for ``scores``)."""
    ids = tuple(c.index for c in pool)
    if len(pool) == 1:
        return Selection(pool[0].index, "only", "the only candidate left to choose from", ids)
    if method is None:
        return Selection(pool[0].index, "first", "selection is off: the first valid candidate", ids)
    if method == "scores":
        scored = [c for c in pool if c.score is not None]
        if not scored:
            best = _by_rules(pool)
            return Selection(best.index, "rules", "no candidate has a judged score: chosen by the rules", ids)
        best = max(scored, key=lambda c: (c.score, rule_key(c)))
        return Selection(best.index, "scores", f"the highest reward, {best.score:.3f}", ids)
    if judge is None:
        best = _by_rules(pool)
        return Selection(best.index, "rules", f"no judge configured for {method}: chosen by the rules", ids)
    if method == "tournament":
        return await _tournament(pool, question, judge, both_orders, meter, seed)
    return await _listwise(pool, question, judge, meter, seed)


# -- pairwise knockout ------------------------------------------------------------------------


async def _tournament(pool: Sequence[Candidate], question: str, judge: "BenchJudge", both_orders: bool,
                      meter: Meter, seed: int) -> Selection:
    system = _prompt("pairwise.txt")
    alive = list(pool)
    matches: list[Match] = []
    while len(alive) > 1:
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        played = await asyncio.gather(*(_match(a, b, question, judge, system, both_orders, meter, seed)
                                        for a, b in pairs))
        matches += played
        by_index = {c.index: c for c in alive}
        winners = [by_index[m.winner] for m in played]
        alive = winners + ([alive[-1]] if len(alive) % 2 else [])  # an odd one out goes through
    champion = alive[0]
    lost = [m for m in matches if m.decided_by == "rules"]
    why = f"won {sum(m.winner == champion.index for m in matches)} of {len(matches)} matches"
    if lost:
        why += f" ({len(lost)} decided by the rules)"
    return Selection(champion.index, "tournament", why, tuple(c.index for c in pool), tuple(matches))


async def _match(a: Candidate, b: Candidate, question: str, judge: "BenchJudge", system: str, both_orders: bool,
                 meter: Meter, seed: int) -> Match:
    orders = [(a, b), (b, a)] if both_orders else [(a, b)]
    asked = await asyncio.gather(*(_prefer(x, y, question, judge, system, meter, seed) for x, y in orders))
    # each verdict as the winner's index, whichever way round it was asked
    picks = [None if v is None else (x.index if v == "A" else y.index) for v, (x, y) in zip(asked, orders)]
    verdicts = tuple(None if p is None else ("a" if p == a.index else "b") for p in picks)
    if picks[0] is not None and all(p == picks[0] for p in picks):
        return Match(a.index, b.index, picks[0], verdicts, "judge")
    winner = max((a, b), key=rule_key)
    why = "the judge gave no verdict" if all(p is None for p in picks) else "the judge contradicted itself"
    return Match(a.index, b.index, winner.index, verdicts, "rules", why)


async def _prefer(x: Candidate, y: Candidate, question: str, judge: "BenchJudge", system: str, meter: Meter,
                  seed: int) -> str | None:
    assert x.doc is not None and y.doc is not None
    user = f"Request: {question}\n\n[Answer A]\n{judged_text(x.doc)}\n\n[Answer B]\n{judged_text(y.doc)}"
    data = await _ask(judge, system, user, _PAIR_SCHEMA, meter, seed)
    better = data.get("better") if data else None
    return better.strip().upper() if isinstance(better, str) and better.strip().upper() in ("A", "B") else None


# -- one list-wise comparison -----------------------------------------------------------------


async def _listwise(pool: Sequence[Candidate], question: str, judge: "BenchJudge", meter: Meter, seed: int) -> Selection:
    schema = {"title": "listwise_choice", "type": "object",
              "properties": {"reason": {"type": "string"}, "best": {"type": "integer", "minimum": 1, "maximum": len(pool)}},
              "required": ["reason", "best"], "additionalProperties": False}
    shown = "\n\n".join(f"[Answer {i}]\n{judged_text(c.doc)}" for i, c in enumerate(pool, 1) if c.doc is not None)
    data = await _ask(judge, _prompt("listwise.txt"), f"Request: {question}\n\n{shown}", schema, meter, seed)
    ids = tuple(c.index for c in pool)
    best = data.get("best") if data else None
    if isinstance(best, int) and not isinstance(best, bool) and 1 <= best <= len(pool):
        reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
        return Selection(pool[best - 1].index, "listwise", f"the judge's choice: {reason}".strip(), ids)
    fallback = _by_rules(pool)
    return Selection(fallback.index, "rules", "the list-wise judge gave no valid choice: chosen by the rules", ids)


async def _ask(judge: "BenchJudge", system: str, user: str, schema: Mapping[str, Any], meter: Meter,
               seed: int) -> dict[str, Any] | None:
    meter.judge_calls += 1
    try:
        answer = await judge.ask(system, user, schema=schema, seed=seed)
    except LlmiError:  # a judge that cannot answer leaves the decision to the rules
        return None
    return answer.data


def _prompt(name: str) -> str:
    from importlib import resources

    return resources.files(__package__).joinpath("prompts", name).read_text(encoding="utf-8")
