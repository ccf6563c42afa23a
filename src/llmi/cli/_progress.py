"""Shared terminal output for commands that run the engine: live progress and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..document import Document
from ..engine import EngineEvent

__all__ = ["ToolProgress", "print_summary"]


class _Live(Progress):
    """The progress display: an optional line of text (the writer's unfinished line), then the
    bar once there is a tag to count."""

    def __init__(self, *columns: object, above: Callable[[], str] | None, **kwargs: object) -> None:
        self.above = above  # before super(): Progress renders once while it is made
        super().__init__(*columns, **kwargs)  # type: ignore[arg-type]

    def get_renderables(self) -> Iterable[RenderableType]:
        line = self.above() if self.above else ""
        if line:
            yield Text(line, overflow="fold")
        if any(task.total for task in self.tasks):
            yield self.make_tasks_table(self.tasks)


class ToolProgress:
    """A progress bar over a document's tags, with one line per finished image.

    Use as the engine's ``on_event`` callback inside ``with ToolProgress(console):``.
    ``above`` returns a line to show over the bar (``llmi generate``: the text being written);
    ``say`` prints a finished image's line (default: at once, above the bar).
    """

    def __init__(self, console: Console, *, above: Callable[[], str] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.console = console
        self.progress = _Live(
            TextColumn("[bold]tools"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), above=above, console=console, transient=True,
        )
        self.task = self.progress.add_task("", total=0)
        self.say = say or self.progress.console.print

    def __enter__(self) -> "ToolProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: EngineEvent) -> None:
        if event.kind == "planned":
            total = self.progress.tasks[0].total or 0
            self.progress.update(self.task, total=total + 1)
        elif event.kind == "start":
            self.progress.update(self.task, description=f"#{event.index} {event.tool} via {event.backend}")
        elif event.kind == "retry":
            self.say(f"  [yellow]↻[/] #{event.index} {event.tool}: retrying after {escape(event.message)}")
        elif event.kind in ("done", "failed"):
            self.progress.advance(self.task)
            seg = event.segment
            if seg is None:
                return
            if seg.ok:
                extra = " (cached)" if seg.cache_hit else f" {seg.elapsed:.2f} s"
                via = f"{seg.fallback.used} via {seg.backend} (fallback)" if seg.fallback else seg.backend
                self.say(f"  [green]✓[/] #{seg.index} {seg.tool} → {via}{extra}")
            else:
                self.say(f"  [red]✗[/] #{seg.index} {seg.tool or 'invalid tag'}: {seg.error_type}: {escape(seg.error or '')}")


def print_summary(console: Console, doc: Document, paths: Mapping[str, Path]) -> None:
    """Per-tool table, then where each format was written."""
    table = Table(title=None, show_edge=False, header_style="bold")
    for col in ("tool", "total", "success", "rate"):
        table.add_column(col, justify="left" if col == "tool" else "right")
    for tool, row in doc.stats().items():
        if not row["total"]:
            continue  # the statistics list every tool; show the ones used
        table.add_row(tool, str(row["total"]), str(row["success"]), f"{row['success_rate']:.0%}")
    n, ok = len(doc.image_segments), len(doc.images)
    if n:
        console.print(table)
    after = doc.meta.get("tools_after_text")  # a streamed answer: the tools ran while it was written
    console.print(f"{ok} of {n} image{'s' if n != 1 else ''} made in {doc.meta.get('elapsed', 0):.2f} s"
                  + (f", {after:.2f} s of it after the text was complete" if n and after is not None else ""))
    for fmt, path in paths.items():
        console.print(f"  {fmt:<5} {path}")
