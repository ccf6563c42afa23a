"""Running a benchmark's items as a job: concurrent within a limit, resumable, with progress.

``run_items`` skips every item whose record is already in the run's ``results.jsonl``, runs the
rest with at most ``concurrency`` items in flight, and appends each record the moment its item
finishes. An item that fails (the writer is unreachable, an input image is missing) is a record
with ``status: "error"`` and the run goes on; ``retry_errors`` runs such items again.

>>> import asyncio, tempfile
>>> from llmi.evaluate.runs import RunDir
>>> run = RunDir(tempfile.mkdtemp()); run.start({"kind": "demo"})
>>> async def work(item):
...     return {"score": item.data * 2}
>>> records = asyncio.run(run_items(run, [Item("a", 0, 1), Item("b", 1, 2)], work))
>>> [(r["key"], r["score"], r["status"]) for r in records]
[('a', 2, 'ok'), ('b', 4, 'ok')]
>>> run.close()
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

from ..errors import LlmiError
from .runs import RunDir

__all__ = ["Item", "Progress", "run_items", "error_record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One benchmark item: its stable ``key``, its ``index`` in the benchmark file and the
    benchmark's own ``data`` for it."""

    key: str
    index: int
    data: Any = None


class Progress(Protocol):
    """What a progress display is told (``llmi eval`` shows a bar with time left)."""

    def begin(self, total: int, done: int) -> None: ...

    def finished(self, record: Mapping[str, Any]) -> None: ...

    def end(self) -> None: ...


def error_record(exc: BaseException) -> dict[str, Any]:
    """The record of an item that could not be evaluated."""
    message = str(exc) or type(exc).__name__
    return {"status": "error", "error": message, "error_type": type(exc).__name__}


async def _one(item: Item, work: Callable[[Item], Awaitable[Mapping[str, Any]]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        record = dict(await work(item))
        record.setdefault("status", "ok")
    except LlmiError as exc:
        record = error_record(exc)
    except Exception as exc:  # a bug in a benchmark or backend must not end the whole run
        log.exception("item %s failed unexpectedly", item.key)
        record = error_record(exc)
    record["key"] = item.key
    record["index"] = item.index
    record["seconds"] = round(time.monotonic() - started, 4)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


async def run_items(
    run: RunDir,
    items: Sequence[Item],
    work: Callable[[Item], Awaitable[Mapping[str, Any]]],
    *,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate ``items`` into ``run``; returns their records in benchmark order."""
    if concurrency < 1:
        from ..errors import ConfigError

        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    done = {r["key"]: r for r in run.records()}
    wanted = {it.key for it in items}
    todo = [it for it in items if it.key not in done or (retry_errors and done[it.key].get("status") == "error")]
    if progress is not None:
        progress.begin(len(items), len(items) - len(todo))
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for it in todo:
        queue.put_nowait(it)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = await _one(item, work)
            run.append(record)  # appended before anything else: a kill right after loses nothing
            done[item.key] = record
            if progress is not None:
                progress.finished(record)

    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)))))
    finally:
        if progress is not None:
            progress.end()
    order = {it.key: it.index for it in items}
    return sorted((r for k, r in done.items() if k in wanted), key=lambda r: order[r["key"]])
