"""Benchmark evaluation: rubric benchmarks, OpenING, judge agreement and in-domain rewards.

The pipeline of one run (``job.aevaluate``)::

    benchmark items ─► shard / limit ─► answer (a writer, or --answers) ─► tools (the engine)
                    ─► judge (rubric criteria, OpenING's seven criteria, the LLM-I reward)
                    ─► results.jsonl (append-only) ─► summary tables ─► report.html

Modules, in that order:

- ``runs``: the run folder (configuration, append-only results, shards, merging);
- ``runner``: items run concurrently within a limit, resumable, with progress;
- ``answers``: where answers come from (a writer now, or a file of answers made elsewhere);
- ``judging``: the conversation a benchmark judge is sent, and reading its JSON reply;
- ``rubric``, ``opening``, ``indomain``: the benchmarks; ``agreement``: judge vs human verdicts;
- ``summary``, ``report``, ``plots``: the tables, the HTML report and its charts.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RunDir", "Shard", "aevaluate", "agreement", "evaluate", "merge_runs", "reference_lines"]

_LAZY = {
    "RunDir": "llmi.evaluate.runs:RunDir",
    "Shard": "llmi.evaluate.runs:Shard",
    "merge_runs": "llmi.evaluate.runs:merge_runs",
    "aevaluate": "llmi.evaluate.job:aevaluate",
    "evaluate": "llmi.evaluate.job:evaluate",
    "agreement": "llmi.evaluate.agreement:agreement",
    "reference_lines": "llmi.evaluate.agreement:reference_lines",
}


def __getattr__(name: str) -> Any:
    try:
        module, _, attr = _LAZY[name].partition(":")
    except KeyError:
        raise AttributeError(f"module 'llmi.evaluate' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)
