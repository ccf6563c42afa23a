"""Tables that summarise a run, from its records alone (``results.jsonl`` is the source of truth).

Every benchmark's summary has a headline (its score), tables, the distribution of item scores
and per-criterion means for the report's plots. The tables every kind shares are built here:
tool calls per tool, why images and judge calls failed, and time per stage.

>>> recs = [{"status": "ok", "tools": {"code": {"total": 2, "success": 1}}, "score": 0.5,
...          "image_failures": [{"tool": "code", "error_type": "SandboxError"}],
...          "timing": {"write": 1.0, "tools": 0.5, "judge": 2.0}}]
>>> tools_table(recs).rows
(('code', 2, 1, '50.0%', 1, '0.500'),)
>>> failures_table(recs).rows
(('image', 'code', 'SandboxError', 1),)
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Summary", "Table", "failures_table", "fmt", "ok_records", "stage_latencies", "timing_table", "tools_table"]

TOOLS = ("diffusion", "search", "code", "edit")


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "columns": list(self.columns), "rows": [list(r) for r in self.rows], "note": self.note}


@dataclass(frozen=True)
class Summary:
    """What a run amounts to.

    ``headline`` pairs (label, text) lead the report; ``scores`` are the item scores and
    ``scale`` their range (for the distribution plot); ``bars`` are (name, mean) per criterion
    on ``bar_scale``.
    """

    kind: str
    headline: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...]
    scores: tuple[float, ...] = ()
    scale: tuple[float, float] = (0.0, 1.0)
    bars: tuple[tuple[str, float], ...] = ()
    bar_scale: tuple[float, float] = (0.0, 1.0)
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "headline": [list(h) for h in self.headline],
            "tables": [t.to_dict() for t in self.tables],
            "notes": list(self.notes),
        }


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ok_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def tools_table(records: Iterable[Mapping[str, Any]]) -> Table:
    """Tool calls per tool over the answers: tags, images made, success rate, answers using the
    tool and their mean score."""
    totals: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    users: dict[str, list[float]] = defaultdict(list)
    using: Counter[str] = Counter()
    for r in ok_records(records):
        for tool, row in (r.get("tools") or {}).items():
            total = int(row.get("total", 0))
            if not total:
                continue
            totals[tool] += total
            successes[tool] += int(row.get("success", 0))
            using[tool] += 1
            if isinstance(r.get("score"), (int, float)):
                users[tool].append(float(r["score"]))
    order = {t: i for i, t in enumerate((*TOOLS, "invalid"))}
    rows = tuple(
        (tool, totals[tool], successes[tool], f"{100 * successes[tool] / totals[tool]:.1f}%", using[tool],
         fmt(statistics.fmean(users[tool]) if users[tool] else None))
        for tool in sorted(totals, key=lambda t: order.get(t, len(order)))
    )
    return Table("Tool calls", ("tool", "tags", "images made", "success rate", "answers using it", "their mean score"), rows)


def failures_table(records: Iterable[Mapping[str, Any]]) -> Table:
    """What failed, by stage (item, image, judge), tool or criterion, and error class."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        if r.get("status") != "ok":
            counts[("item", "—", str(r.get("error_type") or "error"))] += 1
            continue
        for f in r.get("image_failures") or ():
            counts[("image", str(f.get("tool") or "invalid"), str(f.get("error_type") or "error"))] += 1
        for c in r.get("criteria") or ():
            if c.get("error"):
                counts[("judge", str(c.get("name")), str(c.get("error_type") or "error"))] += 1
    rows = tuple((stage, where, kind, n) for (stage, where, kind), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return Table("Failures", ("stage", "tool / criterion", "error", "count"), rows,
                 note="Judge failures are excluded from the scores; failed items are excluded from the benchmark score.")


def timing_table(records: Iterable[Mapping[str, Any]]) -> Table:
    """Seconds per stage over the finished items: median, 90th percentile, total."""
    rows = []
    for stage, values in stage_latencies(records).items():
        values.sort()
        p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
        rows.append((stage, fmt(statistics.median(values), 2), fmt(p90, 2), fmt(sum(values), 1)))
    return Table("Time per stage (s)", ("stage", "median", "p90", "total"), tuple(rows))


def stage_latencies(records: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Seconds per stage (write, tools, judge) over the finished items."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in ok_records(records):
        for stage, seconds in (r.get("timing") or {}).items():
            if isinstance(seconds, (int, float)):
                out[stage].append(float(seconds))
    return dict(out)
