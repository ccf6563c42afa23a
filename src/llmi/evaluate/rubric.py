"""Rubric benchmarks in LLMI-Bench's format: a judge scores each criterion 0, 1 or 2.

A benchmark file is a JSON list (or JSON lines) of items::

    {"prompt": "...", "r1": "criterion", ..., "r10": "criterion", "images": ["in.jpg"]}

``images`` (optional) are input images, paths relative to the benchmark file (or absolute);
an optional ``id`` names the item (otherwise its 1-based position does). Criteria are the
``r<N>`` keys in number order, as LLM-I's scripts read ``r1``..``r10``.

For each criterion the judge sees the request (and its input images), the answer's text with
its pictures where they appear (``<fail_to_generate_image>`` where one failed) and the
criterion, at temperature 0, and answers ``{"score": 0|1|2, "justification": "..."}``.
A reply that is not that, or a judge error, gives no score: the criterion is excluded from the
item's denominator and counted as a judge failure. An item scores ``total / (2 × valid
criteria)``; LLM-I's scripts stop there, llmi's benchmark score is the mean of the item scores
(items with no valid criterion left out, and counted).

>>> items = parse_rubric([{"prompt": "Draw a cat.", "r2": "Has a cat.", "r1": "Is kind."}])
>>> [c.name for c in items[0].criteria], items[0].key
(['r1', 'r2'], '1')
>>> item_score([2, 1, None])
0.75
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, LlmiError
from .judging import BenchJudge, content, fill, prompt_text, split_at_images
from .runner import Item
from .runs import file_sha256, text_sha256

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from .job import Context
    from .summary import Summary

__all__ = [
    "Criterion", "RubricBenchmark", "RubricItem", "RUBRIC_SCHEMA", "item_score", "judge_criteria", "load_rubric",
    "parse_rubric", "summarise",
]

_CRITERION_KEY = re.compile(r"r([1-9][0-9]*)")
#: characters of a justification kept (a runaway judge must not bloat results.jsonl)
MAX_JUSTIFICATION = 4000

#: the reply each criterion asks for (plain enough for OpenAI's strict structured outputs)
RUBRIC_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "enum": [0, 1, 2]},
        "justification": {"type": "string"},
    },
    "required": ["score", "justification"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Criterion:
    name: str  # "r1".."r10"
    text: str


@dataclass(frozen=True)
class RubricItem:
    """One benchmark item; ``problem`` says why it cannot be evaluated (the run records it)."""

    key: str
    prompt: str
    criteria: tuple[Criterion, ...]
    images: tuple[Path, ...] = ()
    problem: str | None = None


def _item(entry: Any, position: int, base: Path | None) -> RubricItem:
    key = str(position + 1)
    if not isinstance(entry, dict):
        return RubricItem(key, "", (), problem=f"item {position + 1} is not an object")
    if entry.get("id") is not None and not isinstance(entry["id"], (dict, list)):
        key = str(entry["id"])
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return RubricItem(key, "", (), problem="the item has no prompt")
    found = []
    for k, v in entry.items():
        m = _CRITERION_KEY.fullmatch(str(k))
        if m and isinstance(v, str) and v.strip():
            found.append((int(m.group(1)), Criterion(str(k), v.strip())))
        elif m:
            return RubricItem(key, prompt, (), problem=f"criterion {k} is not a non-empty string")
    criteria = tuple(c for _, c in sorted(found, key=lambda t: t[0]))
    if not criteria:
        return RubricItem(key, prompt, (), problem="the item has no criteria (r1, r2, ...)")
    raw_images = entry.get("images") or []
    if isinstance(raw_images, str):
        raw_images = [raw_images]
    if not isinstance(raw_images, list) or not all(isinstance(p, str) for p in raw_images):
        return RubricItem(key, prompt, criteria, problem="images must be a list of paths")
    images = tuple(_resolve(p, base) for p in raw_images)
    missing = [str(p) for p in images if not p.is_file()]
    problem = f"input image not found: {', '.join(missing)}" if missing else None
    return RubricItem(key, prompt, criteria, images, problem)


def _resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or base is None:
        return p
    beside = base / p
    return beside if beside.exists() or not p.exists() else p


def parse_rubric(data: Any, base: Path | None = None) -> tuple[RubricItem, ...]:
    """Items from the parsed benchmark (a list); keys must be unique."""
    if not isinstance(data, list):
        raise ConfigError("a rubric benchmark is a JSON list of items {prompt, r1, r2, ...}")
    items = tuple(_item(entry, i, base) for i, entry in enumerate(data))
    seen: set[str] = set()
    for it in items:
        if it.key in seen:
            raise ConfigError(f"two items share the id {it.key!r}; ids must be unique")
        seen.add(it.key)
    if not items:
        raise ConfigError("the benchmark has no items")
    return items


def load_rubric(path: str | Path) -> tuple[RubricItem, ...]:
    """Read a benchmark file (JSON list or JSON lines)."""
    from .runs import read_json_list

    path = Path(path)
    data = read_json_list(path, "benchmark")
    return parse_rubric(data, path.parent)


def item_score(scores: Sequence[int | None]) -> float | None:
    """``total / (2 × valid criteria)``; ``None`` when no criterion was scored."""
    valid = [s for s in scores if s is not None]
    return sum(valid) / (2 * len(valid)) if valid else None


# -- judging -----------------------------------------------------------------------------------


def prompts() -> dict[str, str]:
    """The rubric judge's prompt texts (their hashes go into the run's configuration)."""
    return {"rubric_system": prompt_text("rubric_system.txt"), "rubric_user": prompt_text("rubric_user.txt")}


def criterion_messages(item: RubricItem, doc: "Document", criterion: Criterion, *, images: bool) -> tuple[str, Any]:
    """(system, user content) for one criterion: the request with its input images, the answer
    with its pictures in place, the criterion."""
    texts = prompts()
    request: list[Any] = [item.prompt]
    for i, img in enumerate(doc.inputs):  # a judge that cannot see pictures reads only their labels
        request += [f"\n[input image {i}]\n", img] if images else [f"\n[input image {i}]"]
    answer = split_at_images(doc.judge_view(), doc.images)
    pieces = fill(texts["rubric_user"], prompt=request, answer=answer, criterion=criterion.text)
    return texts["rubric_system"], content(pieces, images=images)


def read_reply(data: Mapping[str, Any] | None) -> tuple[int | None, str, str | None]:
    """(score, justification, error) from a reply object; a score outside 0-2 is an error.

    >>> read_reply({"score": "2", "justification": "fine"}), read_reply({"score": 3})[2]
    ((2, 'fine', None), 'the judge gave score 3, not 0, 1 or 2')
    """
    if data is None:
        return None, "", "the judge's reply holds no JSON object"
    raw = data.get("score")
    justification = data.get("justification")
    justification = justification[:MAX_JUSTIFICATION] if isinstance(justification, str) else ""
    try:
        score = int(raw) if not isinstance(raw, bool) and float(raw) == int(float(raw)) else None
    except (TypeError, ValueError, OverflowError):
        score = None
    if score is None:
        return None, justification, f"the judge's reply has no integer score ({raw!r})"
    if score not in (0, 1, 2):
        return None, justification, f"the judge gave score {score}, not 0, 1 or 2"
    return score, justification, None


async def judge_criteria(judge: BenchJudge, item: RubricItem, doc: "Document", *, seed: int,
                         concurrently: bool = True) -> list[dict[str, Any]]:
    """One result per criterion: ``{name, text, score, max, justification, error, seconds}``."""

    async def one(criterion: Criterion) -> dict[str, Any]:
        system, user = criterion_messages(item, doc, criterion, images=judge.images)
        started = time.monotonic()
        result: dict[str, Any] = {"name": criterion.name, "text": criterion.text, "max": 2}
        try:
            answer = await judge.ask(system, user, schema=RUBRIC_SCHEMA, seed=seed)
        except LlmiError as exc:
            result.update(score=None, justification="", error=str(exc), error_type=type(exc).__name__)
        else:
            score, justification, error = read_reply(answer.data)
            result.update(score=score, justification=justification)
            if error:
                result.update(error=error, error_type="InvalidReply", reply=answer.text[:2000])
        result["seconds"] = round(time.monotonic() - started, 4)
        return result

    if concurrently:
        return list(await asyncio.gather(*(one(c) for c in item.criteria)))
    return [await one(c) for c in item.criteria]


class RubricBenchmark:
    """An LLMI-Bench-style rubric file as a benchmark (``llmi eval rubric --bench FILE``).

    ``criteria_concurrently=False`` judges one criterion after another, as LLM-I's scripts do.
    """

    kind = "rubric"

    def __init__(self, path: str | Path, *, criteria_concurrently: bool = True) -> None:
        self.path = Path(path)
        self.rubric = load_rubric(self.path)
        self.sha256 = file_sha256(self.path)
        self.criteria_concurrently = criteria_concurrently

    def items(self) -> list[Item]:
        return [Item(it.key, i, it) for i, it in enumerate(self.rubric)]

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "items": len(self.rubric)}

    def prompt_hashes(self) -> dict[str, str]:
        return {name: text_sha256(text) for name, text in prompts().items()}

    async def evaluate(self, item: Item, ctx: "Context") -> dict[str, Any]:
        from ..llm.base import load_image
        from .job import document_facts

        rubric: RubricItem = item.data
        if rubric.problem:
            raise ConfigError(rubric.problem)
        if ctx.answers is None or ctx.judge is None:
            raise ConfigError("a rubric run needs answers (a writer or --answers) and a judge")
        images = [load_image(p) for p in rubric.images]
        answered = await ctx.answers.answer(item, rubric.prompt, images, ctx.seed)
        facts = document_facts(ctx, item, answered)
        started = time.monotonic()
        criteria = await judge_criteria(ctx.judge, rubric, answered.doc, seed=ctx.seed,
                                        concurrently=self.criteria_concurrently)
        facts["timing"]["judge"] = round(time.monotonic() - started, 4)
        scores = [c["score"] for c in criteria]
        return {
            "prompt": rubric.prompt,
            **facts,
            "criteria": criteria,
            "valid": sum(s is not None for s in scores),
            "total": sum(s for s in scores if s is not None),
            "score": item_score(scores),
        }



def summarise(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any] | None = None) -> "Summary":
    """The benchmark score (mean item score), then per-criterion, per-tool, failure and time tables."""
    from collections import Counter, defaultdict

    from .summary import Summary, Table, failures_table, fmt, ok_records, timing_table, tools_table

    done = ok_records(records)
    scored = [float(r["score"]) for r in done if isinstance(r.get("score"), (int, float))]
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in done:
        for c in r.get("criteria") or ():
            by_name[str(c.get("name"))].append(c)
    rows = []
    bars = []
    for name in sorted(by_name, key=lambda n: int(n[1:]) if n[1:].isdigit() else 10**9):
        results = by_name[name]
        values = [c["score"] for c in results if c.get("score") is not None]
        counts = Counter(values)
        mean = sum(values) / len(values) if values else None
        rows.append((name, fmt(mean, 2), len(values), counts[0], counts[1], counts[2], len(results) - len(values)))
        if mean is not None:
            bars.append((name, mean))
    criteria_total = sum(len(v) for v in by_name.values())
    judge_failures = sum(1 for v in by_name.values() for c in v if c.get("score") is None)
    mean = sum(scored) / len(scored) if scored else None
    headline = (
        ("benchmark score (mean item score, 0-1)", fmt(mean, 4)),
        ("items scored", f"{len(scored)} of {len(records)}"),
        ("judge failures (excluded)", f"{judge_failures} of {criteria_total} criteria"),
        ("failed items (excluded)", str(len(records) - len(done))),
        ("items with no valid criterion (excluded)", str(len(done) - len(scored))),
    )
    per_criterion = Table("Per criterion", ("criterion", "mean (0-2)", "scored", "0", "1", "2", "judge failures"),
                          tuple(rows))
    return Summary("rubric", headline, (per_criterion, tools_table(done), failures_table(records), timing_table(done)),
                   scores=tuple(scored), scale=(0.0, 1.0), bars=tuple(bars), bar_scale=(0.0, 2.0),
                   notes=("An item scores total / (2 x valid criteria); the benchmark score is the mean over "
                          "the items that have a score (LLM-I's scripts define no aggregate).",))
