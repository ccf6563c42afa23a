"""A test-time-scaling record (``llmi generate --scale``; ``meta["scaling"]``, docs/scaling.md)
as the viewer shows it: the candidates side by side with their scores, how one was chosen,
and what each later stage changed and cost.

The record is read defensively: it was written by another llmi (fields may be added within
``llmi.scaling/1``), and every value in it is shown as text.

>>> view = scaling_view({"version": "llmi.scaling/1", "candidates": [
...     {"index": 0, "seed": 7, "status": "valid", "score": 0.61}, {"index": 1, "seed": 8, "status": "dropped",
...     "problems": ["tag 0 cannot be read"]}], "selection": {"chosen": 0, "method": "scores", "reason": "best"}})
>>> [(c.index, c.chosen, c.status) for c in view.candidates], view.selection
([(0, True, 'valid'), (1, False, 'dropped')], ('scores', 'best'))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import pages

__all__ = ["CandidateView", "ChangeView", "ScalingView", "scaling_view"]

def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def cost_text(cost: Any) -> str:
    """A cost in words: ``1.20 s · 2 writer calls · 310 tokens ...`` (zero counts left out).

    >>> cost_text({"seconds": 1.2, "writer_calls": 2, "writer_tokens": 310, "judge_calls": 0})
    '1.20 s · 2 writer calls · 310 tokens written'
    """
    cost = _map(cost)
    labels = {"writer_calls": "writer calls", "writer_tokens": "tokens written", "prompt_tokens": "tokens read",
              "tool_calls": "tool calls", "judge_calls": "judge calls"}
    seconds = cost.get("seconds")
    parts = [f"{float(seconds):.2f} s"] if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else []
    parts += [f"{cost[k]} {label}" for k, label in labels.items() if isinstance(cost.get(k), int) and cost[k]]
    return " · ".join(parts) or "—"


@dataclass(frozen=True)
class CandidateView:
    index: int
    seed: Any
    status: str  # valid | dropped | kept | failed
    chosen: bool
    score: Any
    judgings: tuple[tuple[str, str], ...]  # (label, reward and parts)
    problems: tuple[str, ...]
    satisfies: Any
    error: str
    cost: str
    answer: str
    images: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class ChangeView:
    tag: Any
    kind: str
    attempt: Any
    before: str
    after: str
    outcome: str
    kept: bool
    error_before: str
    error_after: str
    before_code: Any = None  # a chart repair's code, highlighted
    after_code: Any = None


@dataclass(frozen=True)
class ScalingView:
    version: str
    candidates: tuple[CandidateView, ...]
    selection: tuple[str, str]  # method, reason
    matches: tuple[tuple[str, str, str, str], ...]  # the pair, the winner, the verdicts each way round, by what
    ranking: tuple[Any, ...]
    changes: tuple[ChangeView, ...]
    polish_status: str
    polish: tuple[Mapping[str, Any], ...]
    stages: tuple[tuple[str, str, str], ...]  # name, summary, cost
    cost: str
    scores: tuple[tuple[str, Any], ...]
    answers: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    config: Mapping[str, Any]


def _numbers(values: Mapping[str, Any]) -> list[str]:
    return [f"{k} {pages.number(v)}" for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _judgings(scores: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """One line per judging: the reward and its parts, each judge's criterion scores
    (``llm_judge: {...}``), and the status and error when it did not go through.

    >>> _judgings({"judgings": [{"score": 0.5, "status": "ok", "llm_judge": {"fluency": 4}},
    ...                         {"score": None, "status": "judge_error", "error": "timed out"}]})
    (('judging 1', 'score 0.500; llm_judge: fluency 4'), ('judging 2', 'judge_error: timed out'))
    """
    out = []
    for i, judging in enumerate(_rows(scores.get("judgings"))):
        parts = [", ".join(_numbers(judging))] if _numbers(judging) else []
        parts += [f"{k}: {', '.join(_numbers(v))}" for k, v in judging.items() if isinstance(v, Mapping) and _numbers(v)]
        status = _text(judging.get("status"))
        if status and status != "ok":
            parts.append(status + (f": {_text(judging.get('error'))}" if judging.get("error") else ""))
        out.append((f"judging {i + 1}", "; ".join(parts) or "—"))
    return tuple(out)


def _candidate(c: Mapping[str, Any], chosen: Any) -> CandidateView:
    index = c.get("index")
    return CandidateView(
        index=index if isinstance(index, int) else -1, seed=c.get("seed"), status=_text(c.get("status") or "?"),
        chosen=index == chosen, score=c.get("score"), judgings=_judgings(_map(c.get("scores"))),
        problems=tuple(_text(p) for p in c.get("problems") or () if p is not None) if isinstance(c.get("problems"), list) else (),
        satisfies=c.get("satisfies_image_num"), error=_text(c.get("error")), cost=cost_text(c.get("cost")),
        answer=_text(c.get("answer")), images=tuple(_rows(c.get("images"))),
    )


def _change(c: Mapping[str, Any]) -> ChangeView:
    kind, before, after = _text(c.get("kind")), _text(c.get("before")), _text(c.get("after"))
    code = kind == "code_repair"
    return ChangeView(tag=c.get("tag"), kind=kind, attempt=c.get("attempt"), before=before, after=after,
                      outcome=_text(c.get("outcome")), kept=c.get("kept") is True,
                      error_before=_text(c.get("error_before")), error_after=_text(c.get("error_after")),
                      before_code=pages.highlight(before) if code and before else None,
                      after_code=pages.highlight(after) if code and after else None)


def _match(m: Mapping[str, Any]) -> tuple[str, str, str, str]:
    verdicts = m.get("verdicts")
    verdicts_text = ", ".join(_text(v) or "none" for v in verdicts) if isinstance(verdicts, list) else _text(verdicts)
    decided = _text(m.get("decided_by")) + (f": {m['reason']}" if m.get("reason") else "")
    return f"{_text(m.get('a'))} vs {_text(m.get('b'))}", _text(m.get("winner")), verdicts_text, decided


def scaling_view(record: Mapping[str, Any]) -> ScalingView:
    """The view of one ``meta["scaling"]`` record."""
    selection = _map(record.get("selection"))
    chosen = selection.get("chosen")
    polish = _map(record.get("polish"))
    scores = _map(record.get("scores"))
    return ScalingView(
        version=_text(record.get("version")),
        candidates=tuple(_candidate(c, chosen) for c in _rows(record.get("candidates"))),
        selection=(_text(selection.get("method")), _text(selection.get("reason"))),
        matches=tuple(_match(m) for m in _rows(selection.get("matches"))),
        ranking=tuple(selection.get("ranking") or ()) if isinstance(selection.get("ranking"), list) else (),
        changes=tuple(_change(c) for c in _rows(record.get("enhancements"))),
        polish_status=_text(polish.get("status") or "off"),
        polish=tuple(_rows(polish.get("segments"))),
        stages=tuple((_text(s.get("name")), _text(s.get("summary")), cost_text(s.get("cost")))
                     for s in _rows(record.get("stages"))),
        cost=cost_text(record.get("cost")),
        scores=tuple((str(k), v) for k, v in scores.items()),
        answers=tuple((str(k), _text(v)) for k, v in _map(record.get("answers")).items()),
        notes=tuple(_text(n) for n in record.get("notes") or () if n is not None) if isinstance(record.get("notes"), list) else (),
        config=_map(record.get("config")),
    )
