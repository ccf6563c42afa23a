"""One evaluation run, start to finish: configuration, items, answers, judges, report.

A benchmark (``RubricBenchmark``, ``OpeningBenchmark``, ``InDomainBenchmark``) knows its
items, how to evaluate one and how to summarise records. ``aevaluate`` does the rest, the same
way for every kind:

1. **select** the items: the first ``limit``, then the shard's share;
2. **record** the configuration (``config.json``), or check it against the run being resumed;
3. **run** the items not yet in ``results.jsonl``, ``concurrency`` at a time, each with a seed
   drawn from the run's seed and its key;
4. **report**: ``report.html`` from every record.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from .runner import Item, Progress, run_items
from .runs import RunDir, Shard, item_seed

if TYPE_CHECKING:  # pragma: no cover
    from .answers import Answered, AnswerSource
    from .judging import BenchJudge
    from .summary import Summary

__all__ = [
    "KINDS", "Benchmark", "Context", "EvalResult", "aevaluate", "document_facts", "evaluate", "finish_run", "run_config",
]


@dataclass(frozen=True)
class Context:
    """What evaluating one item may use."""

    run: RunDir
    seed: int  # this item's seed
    answers: "AnswerSource | None"
    judge: "BenchJudge | None"


class Benchmark(Protocol):
    kind: str

    def items(self) -> Sequence[Item]: ...

    def describe(self) -> dict[str, Any]: ...

    def prompt_hashes(self) -> dict[str, str]: ...

    async def evaluate(self, item: Item, ctx: Context) -> Mapping[str, Any]: ...


#: kind -> the module whose ``summarise(records, config)`` (and optional ``write_files``) finish a run
KINDS: Mapping[str, str] = {
    "rubric": "llmi.evaluate.rubric",
    "opening": "llmi.evaluate.opening_score",
    "pairwise": "llmi.evaluate.pairwise",
    "indomain": "llmi.evaluate.indomain",
}


@dataclass(frozen=True)
class EvalResult:
    run: RunDir
    records: list[dict[str, Any]]
    summary: "Summary"
    report: Path | None


def document_facts(ctx: Context, item: Item, answered: "Answered") -> dict[str, Any]:
    """Save the item's document into the run and return what its record says about it."""
    doc = answered.doc
    folder = ctx.run.item_dir(item.key)
    doc.save(folder, ("json",))
    failures = [
        {"index": s.index, "tool": s.tool, "error_type": s.error_type, "error": s.error}
        for s in doc.image_segments
        if not s.ok
    ]
    return {
        "doc": (folder / "document.json").relative_to(ctx.run.path).as_posix(),
        "images": {"tags": len(doc.image_segments), "made": len(doc.images)},
        "tools": {tool: {"total": row["total"], "success": row["success"]}
                  for tool, row in doc.stats().items() if row["total"]},
        "image_failures": failures,
        "timing": {"write": round(answered.write_seconds, 4), "tools": round(answered.tool_seconds, 4)},
    }


def run_config(bench: Benchmark, *, answers: "AnswerSource | None", judge: "BenchJudge | None", seed: int,
               shard: Shard, limit: int | None, concurrency: int) -> dict[str, Any]:
    """The configuration recorded in ``config.json``."""
    from .. import __version__
    from .answers import engine_facts

    engine = getattr(answers, "engine", None)
    return {
        "kind": bench.kind,
        "llmi_version": __version__,
        "benchmark": {**bench.describe(), "limit": limit},
        "answers": answers.describe() if answers is not None else None,
        "engine": engine_facts(engine) if engine is not None else None,
        "judge": judge.describe() if judge is not None else None,
        "prompts": bench.prompt_hashes(),
        "seed": seed,
        "shard": str(shard) if shard.count > 1 else None,
        "runtime": {"concurrency": concurrency, "python": sys.version.split()[0], "host": platform.node()},
    }


def select(items: Sequence[Item], shard: Shard, limit: int | None) -> list[Item]:
    chosen = list(items)[: limit if limit is not None else None]
    return [it for it in chosen if shard.owns(it.index)]


async def aevaluate(
    bench: Benchmark,
    out: str | Path,
    *,
    answers: "AnswerSource | None" = None,
    judge: "BenchJudge | None" = None,
    seed: int = 0,
    shard: Shard = Shard(),
    limit: int | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
    report: bool = True,
) -> EvalResult:
    """Evaluate ``bench`` into the run folder ``out`` (resuming it if it exists)."""
    items = select(bench.items(), shard, limit)  # 1. select
    run = RunDir(out)
    run.start(run_config(bench, answers=answers, judge=judge, seed=seed, shard=shard, limit=limit,  # 2. record
                         concurrency=concurrency))
    try:
        async def work(item: Item) -> Mapping[str, Any]:
            s = item_seed(seed, item.key)
            record = dict(await bench.evaluate(item, Context(run, s, answers, judge)))
            record.setdefault("seed", s)
            served = getattr(judge, "served_model", None)
            if served:
                record.setdefault("judge_model", served)
            return record

        records = await run_items(run, items, work, concurrency=concurrency, progress=progress,  # 3. run
                                  retry_errors=retry_errors)
    finally:
        run.close()
    summary, path = finish_run(run, report=report)  # 4. report
    return EvalResult(run, records, summary, path)


def evaluate(bench: Benchmark, out: str | Path, **kwargs: Any) -> EvalResult:
    """Synchronous ``aevaluate`` (same arguments), also from a notebook's running loop."""
    from ..api import _run_sync

    return _run_sync(lambda: aevaluate(bench, out, **kwargs))


def finish_run(run: RunDir, *, report: bool = True) -> tuple["Summary", Path | None]:
    """Summarise every record of ``run`` (earlier sessions' and merged shards' too), write the
    benchmark's own files and ``report.html``."""
    import importlib

    from ..errors import ConfigError

    config = run.config()
    kind = str(config.get("kind"))
    if kind not in KINDS:
        raise ConfigError(f"{run.path} holds a run of unknown kind {kind!r}")
    module = importlib.import_module(KINDS[kind])
    records = run.records()
    summary = module.summarise(records, config)
    write_files = getattr(module, "write_files", None)
    if write_files is not None:
        write_files(run, records, config)
    path = None
    if report:
        from .report import write_report

        path = write_report(run, summary, records=records)
    return summary, path
