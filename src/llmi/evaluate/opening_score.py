"""``llmi eval opening``: answer OpenING's items (or take answers in its layout) and score them
on its seven criteria, next to the published systems.

Besides ``results.jsonl`` and ``report.html`` the run folder gets OpenING's own files:
``gen_outputs/<NAME>_output/`` (the answers, as its scripts read them), ``score_results.json``
(the judge's scores in the shape of ``arena/gpt-score_results.json``) and
``model_score_summaries.csv`` (the published table with this system's row added).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError
from .answers import Answered
from .opening import (
    CRITERIA,
    TABLE_CRITERIA,
    OpeningItem,
    data_file,
    load_opening,
    model_folder_name,
    overall_row,
    published_rows,
    read_output,
    score_answer,
    steps_document,
    steps_of,
    write_output,
)
from .runner import Item
from .runs import RunDir, atomic_write, file_sha256, text_sha256

if TYPE_CHECKING:  # pragma: no cover
    from .job import Context
    from .summary import Summary, Table

__all__ = ["OpeningBenchmark", "ranked_table", "summarise", "system_row", "write_files"]

TABLE_COLUMNS = ("Rank", "Model_ID", "Model_Name", *TABLE_CRITERIA, "Overall")


class OpeningBenchmark:
    """OpenING's items for one system called ``name``.

    ``outputs`` scores an existing ``<MODEL>_output`` folder instead of writing answers.
    """

    kind = "opening"

    def __init__(self, data: str | Path, *, name: str, with_images: bool = False, outputs: str | Path | None = None) -> None:
        self.data = Path(data)
        self.file = data_file(self.data)
        self.name = name
        self.with_images = with_images
        self.outputs = Path(outputs) if outputs is not None else None
        if self.outputs is not None and not self.outputs.is_dir():
            raise ConfigError(f"--outputs {self.outputs} is not a folder of OpenING answers (<MODEL>_output)")
        self.opening, self.skipped = load_opening(self.data, with_images=with_images)
        if not self.opening:
            raise ConfigError(f"{self.file} has no items to evaluate with these settings")

    def items(self) -> list[Item]:
        return [Item(it.uid, i, it) for i, it in enumerate(self.opening)]

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.file), "sha256": file_sha256(self.file), "items": len(self.opening),
            "with_images": self.with_images, "skipped_without_images": self.skipped, "name": self.name,
            "outputs": str(self.outputs) if self.outputs is not None else None,
        }

    def prompt_hashes(self) -> dict[str, str]:
        from .judging import prompt_text

        return {"opening_score_system": text_sha256(prompt_text("opening_score_system.txt"))}

    def output_folder(self, run: RunDir) -> Path:
        return run.path / "gen_outputs" / model_folder_name(self.name)

    async def evaluate(self, item: Item, ctx: "Context") -> dict[str, Any]:
        from .job import document_facts

        it: OpeningItem = item.data
        if ctx.judge is None:
            raise ConfigError("an OpenING run needs a judge")
        files: list[Path] = []
        if self.outputs is not None:  # 1. the answer: given in OpenING's layout, or written now
            steps = read_output(self.outputs, it.uid)
            facts = document_facts(ctx, item, Answered(steps_document(steps, it), 0.0, 0.0))
            facts.update(tools={}, image_failures=[])
        else:
            if ctx.answers is None:
                raise ConfigError("an OpenING run needs a writer, --answers or --outputs")
            answered = await ctx.answers.answer(item, it.prompt, it.images, ctx.seed)
            facts = document_facts(ctx, item, answered)
            steps = steps_of(answered.doc)
            files = write_output(self.output_folder(ctx.run), it, steps)
        started = time.monotonic()  # 2. the seven scores
        criteria = await score_answer(ctx.judge, it, steps, seed=ctx.seed)
        facts["timing"]["judge"] = round(time.monotonic() - started, 4)
        complete = all(c["score"] is not None for c in criteria)
        return {
            "uid": it.uid,
            "title": f"{it.meta.get('subtask_name', '')}: {it.prompt[:80]}",
            "prompt": it.prompt,
            **facts,
            "files": [p.relative_to(ctx.run.path).as_posix() for p in files],
            "criteria": criteria,
            "score": round(sum(c["score"] for c in criteria) / len(criteria), 4) if complete else None,
        }


# -- summaries (from the records and the run's configuration alone) ------------------------------


def _facts(config: Mapping[str, Any]) -> tuple[Path, str, int]:
    bench = config.get("benchmark") or {}
    return Path(str(bench.get("path", "."))).parent, str(bench.get("name") or "new"), int(bench.get("skipped_without_images") or 0)


def system_row(records: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any] | None:
    """This system's row of the table, from its complete items."""
    lists: dict[str, list[int]] = {c: [] for c in CRITERIA}
    for r in records:
        if r.get("status") == "ok" and r.get("score") is not None:
            for c in r.get("criteria") or ():
                lists[c["name"]].append(int(c["score"]))
    return overall_row(lists, name=name)


def summarise(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> "Summary":
    from .summary import Summary, failures_table, fmt, ok_records, timing_table, tools_table

    data, name, skipped = _facts(config)
    done = ok_records(records)
    scored = [r for r in done if r.get("score") is not None]
    row = system_row(records, name)
    table = ranked_table(published_rows(data), row)
    headline = (
        (f"Overall ({name}, 0-10)", fmt(row["Overall"] if row else None, 2)),
        ("items scored", f"{len(scored)} of {len(records)}"),
        ("judge failures (items excluded)", str(len(done) - len(scored))),
        ("failed items (excluded)", str(len(records) - len(done))),
    )
    notes = ["Overall is the mean of the seven criterion means (each rounded to 2 decimals), as OpenING's "
             "summary script computes it; an item whose judge reply misses a criterion is left out."]
    if skipped:
        notes.append(f"{skipped} items with input images were left out: their images are not in the data folder.")
    if len(table.rows) > 1:
        notes.append("The published rows were scored by GPT-4o on the arena's sampled items; a row scored by "
                     "another judge or on other items is comparable only roughly.")
    bars = tuple((c, row[c]) for c in CRITERIA) if row else ()
    return Summary("opening", headline, (table, tools_table(done), failures_table(records), timing_table(done)),
                   scores=tuple(float(r["score"]) for r in scored), scale=(0.0, 10.0), bars=bars,
                   bar_scale=(0.0, 10.0), notes=tuple(notes))


def write_files(run: RunDir, records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> list[Path]:
    """``score_results.json`` and ``model_score_summaries.csv`` in OpenING's shapes."""
    data, name, _ = _facts(config)
    scores = [
        {"data_id": r["uid"], "model": {"id": "new", "name": name},
         "score": {c["name"]: {"Score": c["score"], "Justification": c.get("justification", "")}
                   for c in r.get("criteria") or ()}}
        for r in records if r.get("status") == "ok" and r.get("score") is not None
    ]
    atomic_write(run.path / "score_results.json", json.dumps(scores, ensure_ascii=False, indent=4) + "\n")
    table = ranked_table(published_rows(data), system_row(records, name))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    atomic_write(run.path / "model_score_summaries.csv", buf.getvalue())
    return [run.path / "score_results.json", run.path / "model_score_summaries.csv"]


def ranked_table(published: Sequence[Mapping[str, Any]], row: Mapping[str, Any] | None) -> "Table":
    """The published rows and ``row`` ranked by Overall, in ``model_score_summaries.csv``'s columns."""
    from .summary import Table

    rows = [dict(r) for r in published] + ([dict(row)] if row else [])
    rows.sort(key=lambda r: -float(r["Overall"]))
    out = tuple(
        (rank, r.get("Model_ID", ""), r.get("Model_Name", ""), *(r[c] for c in TABLE_CRITERIA), r["Overall"])
        for rank, r in enumerate(rows, 1)
    )
    return Table("OpenING scores (0-10)", TABLE_COLUMNS, out)
