"""Scoring a JSONL file of answers, resumably: what ``llmi score`` runs.

Each input line is one answer::

    {"answer": "...", "extra_info": {"image_num": 2, "question": "...", "tools": ["search"], "split": "test"},
     "images": ["photo.jpg"], "id": "item-7"}

(``response`` or ``output`` may stand for ``answer``; image paths are relative to the file.)
Each output line is that row's ``RewardBreakdown.to_dict()`` plus ``row`` (its line number among
the input's rows) and ``answer_sha256``. A line is written, whole, as soon as its row is scored,
so a killed run loses only the rows in flight; a rerun reads the output, skips the rows already
there and never writes a row twice. The settings a run used are kept beside the output
(``<out>.meta.json``): resuming with other settings is refused rather than mixing two rewards in
one file. The summary of the whole output is written beside it too (``<out>.summary.json``).

>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.jsonl").write_text(json.dumps({"answer": "Hi.", "extra_info": {"image_num": -1, "question": "q"}}) + "\\n")
>>> [(i, row.answer) for i, row in read_rows(d / "a.jsonl")]
[(0, 'Hi.')]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, LlmiError
from .breakdown import RewardBreakdown
from .scorer import RewardScorer, Sample

__all__ = ["ScoreRow", "ScoreSummary", "read_rows", "score_file"]


class ScoreRow(BaseModel):
    """One input line."""

    model_config = ConfigDict(extra="ignore")

    answer: str = Field(validation_alias=AliasChoices("answer", "response", "output"))
    extra_info: dict[str, Any]
    images: list[str] = []
    id: str | None = None
    data_source: str = "interleaved"


@dataclass
class ScoreSummary:
    """What a run produced, over every row of the output (earlier runs' rows included)."""

    rows: int = 0
    skipped: int = 0  # rows already in the output when the run started
    statuses: Counter = field(default_factory=Counter)
    means: dict[str, float] = field(default_factory=dict)  # over rows with a score
    fallbacks: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)  # mean seconds per stage
    histogram: list[int] = field(default_factory=lambda: [0] * 10)  # scores in [0, 0.1), ... [0.9, 1]
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "skipped": self.skipped, "statuses": dict(self.statuses), "means": self.means,
                "fallbacks": dict(self.fallbacks), "timings": self.timings, "histogram": self.histogram,
                "out": str(self.out) if self.out else None}


def read_rows(path: Path) -> Iterator[tuple[int, ScoreRow | str]]:
    """``(row number, row)`` for each non-empty line; a line that is not a valid row gives its
    error message instead (it is scored as a failed row, not a reason to stop)."""
    with open(path, encoding="utf-8") as fh:
        n = 0
        for line in fh:
            if not line.strip():
                continue
            try:
                yield n, ScoreRow.model_validate_json(line)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()[:3])
                yield n, f"line {n + 1} is not an answer row ({problems})"
            n += 1


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _resume(out: Path, meta: Path, settings: Mapping[str, Any], restart: bool, retry: frozenset[str]) -> dict[int, dict]:
    """The rows already scored (row -> line), after making the output safe to append to."""
    if restart:
        out.unlink(missing_ok=True)
    if out.exists() and meta.exists():
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("settings")
        if recorded != json.loads(json.dumps(settings)):
            raise ConfigError(f"{out} was scored with other settings (see {meta}); "
                              "rerun with --restart, or write to another --out")
    done: dict[int, dict] = {}
    if out.exists():
        raw = out.read_bytes()
        keep = raw[: raw.rfind(b"\n") + 1]  # a line cut short by a killed run is dropped
        lines = []
        for line in keep.splitlines():
            try:
                record = json.loads(line)
                row = int(record["row"])
            except (ValueError, KeyError, TypeError):
                continue
            if record.get("status") in retry or row in done:
                continue
            done[row] = record
            lines.append(line)
        if len(lines) != len(keep.splitlines()) or len(keep) != len(raw):
            tmp = out.with_suffix(out.suffix + ".tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in lines))
            os.replace(tmp, out)
    meta.write_text(json.dumps({"settings": settings}, indent=2), encoding="utf-8")
    return done


async def score_file(
    scorer: RewardScorer,
    path: Path,
    out: Path,
    *,
    settings: Mapping[str, Any] | None = None,
    restart: bool = False,
    retry: frozenset[str] = frozenset(),
    concurrency: int = 64,
    on_row: Callable[[int, RewardBreakdown | None], None] | None = None,
) -> ScoreSummary:
    """Score every row of ``path`` not yet in ``out`` and return the summary of ``out``.

    ``retry`` names statuses (``failed``, ``incomplete``, ``excluded``) whose rows are scored
    again (their old lines are removed first). ``concurrency`` bounds the rows in flight (the
    scorer's tools and judges have their own limits). ``on_row(total, breakdown)`` is called
    once with ``breakdown=None`` and the number of rows to score, then after each row.
    """
    from ..api import load_inputs

    meta = out.with_name(out.name + ".meta.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _resume(out, meta, dict(settings or {}), restart, retry)
    every = list(read_rows(path))
    for i, row in every:
        if i in done and isinstance(row, ScoreRow) and done[i].get("answer_sha256") not in (None, _sha(row.answer)):
            raise ConfigError(f"{out} holds a row {i} scored from another input; rerun with --restart or another --out")
    rows = [(i, row) for i, row in every if i not in done]
    summary = ScoreSummary(skipped=len(done), out=out)
    if on_row is not None:
        on_row(len(rows), None)
    gate = asyncio.Semaphore(max(1, concurrency))
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def one(i: int, row: ScoreRow | str) -> None:
        async with gate:
            breakdown = await _score_row(scorer, row, path.parent, load_inputs)
        record = {"row": i, "answer_sha256": _sha(row.answer) if isinstance(row, ScoreRow) else None,
                  **breakdown.to_dict()}
        os.write(fd, (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8"))  # one write per line
        if on_row is not None:
            on_row(len(rows), breakdown)

    try:
        await asyncio.gather(*(one(i, row) for i, row in rows))
    finally:
        os.close(fd)
    return _summarise(out, summary)


async def _score_row(scorer: RewardScorer, row: ScoreRow | str, base: Path, load_inputs: Any) -> RewardBreakdown:
    """One row's breakdown; a row that cannot even become a sample is a failed (or excluded) one."""
    try:
        if isinstance(row, str):
            raise ConfigError(row)
        images = [img if img.startswith(("http://", "https://")) else str(base / img) for img in row.images]
        sample = Sample(row.answer, scorer.extra_info(row.extra_info), await load_inputs(images), row.id,
                        row.data_source)
    except LlmiError as exc:
        return RewardBreakdown.failure(str(exc), type(exc).__name__, excluded=scorer.options.on_error == "exclude",
                                       id=getattr(row, "id", None), profile=scorer.profile)
    return await scorer.ascore(sample)


def _summarise(out: Path, summary: ScoreSummary) -> ScoreSummary:
    sums: Counter = Counter()
    times: Counter = Counter()
    scored = 0
    with open(out, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            summary.rows += 1
            summary.statuses[record["status"]] += 1
            summary.fallbacks.update(f["kind"] for f in record.get("fallbacks", []))
            times.update(record.get("timings", {}))
            if record.get("score") is not None:
                scored += 1
                summary.histogram[min(9, max(0, int(record["score"] * 10)))] += 1
                sums.update({k: record[k] for k in ("score", "img_num_score", "llm_score", "mllm_score", "r_tool")})
    summary.means = {k: sums[k] / scored for k in ("score", "img_num_score", "llm_score", "mllm_score", "r_tool")} if scored else {}
    summary.timings = {k: v / summary.rows for k, v in times.items()} if summary.rows else {}
    out.with_name(out.name + ".summary.json").write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    return summary
