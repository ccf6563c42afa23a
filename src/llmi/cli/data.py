"""``llmi data``: prepare training data in verl's parquet layout, and inspect it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["data"]

#: errors listed in full before "... and N more"
_SHOWN_ERRORS = 20


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _system_prompt(value: str) -> str | None:
    from ..prompts import VARIANTS, system_prompt

    if value == "none":
        return None
    if value in VARIANTS:
        return system_prompt(variant=value)
    return system_prompt(value)


@click.group("data")
def data() -> None:
    """Prepare and inspect training data (verl's parquet layout, LLM-I's fields)."""


@data.command("prepare")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="Folder for train.parquet and test.parquet.")
@click.option("--test-size", type=float, default=0.0, show_default=True,
              help="Rows without a split that go to test.parquet: a fraction (0.1) or a count (50).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/test draw.")
@click.option("--system-prompt", "system", default="full", show_default=True, metavar="full|compact|none|FILE",
              help="The system turn put in front of every prompt: llmi's shipped prompt (full, LLM-I "
                   "compatible; compact, for small models), none (keep the dataset's own), or a file.")
@click.option("--image-num", type=click.IntRange(-1), default=99, show_default=True,
              help="image_num for rows without one: -1 none, 0 any, 99 at least one, N exactly N.")
@click.option("--dummy-image", is_flag=True,
              help="Give text rows LLM-I's 28x28 white input image (multimodal training on mixed data).")
@click.option("--max-image-pixels", type=click.IntRange(784), default=1024 * 1024, show_default=True,
              help="Largest size (width x height) verl shows an input image to the model at.")
@click.option("--tag", default="", help="File name tag: --tag mm writes train_mm.parquet and test_mm.parquet.")
@click.option("--split", "hf_split", default=None, help="Hugging Face datasets: the split to load (default: all).")
@click.option("--skip-invalid", is_flag=True, help="Write the valid rows and report the invalid ones "
              "(default: write nothing while any row is invalid).")
def prepare(inputs: tuple[str, ...], out_dir: Path, test_size: float, seed: int, system: str, image_num: int,
            dummy_image: bool, max_image_pixels: int, tag: str, hf_split: str | None, skip_invalid: bool) -> None:
    """Check INPUT rows and write them as verl training data.

    INPUT is a .jsonl, .json, .csv or .parquet file, or a Hugging Face dataset id (where the hub
    can be reached). A row has a 'prompt' (text or chat turns) or 'question', and optionally
    'image_num', 'tools' (search, diffusion, code, edit), 'images' (paths relative to the file,
    URLs, or bytes) and 'split' (train or test); rows already in verl's layout (with
    'extra_info') are read too. Every invalid row is reported with its number and reason.

    \b
    Examples:
      llmi data prepare prompts.jsonl --test-size 0.1
      llmi data prepare photos.csv --tag mm --out data/
      llmi data prepare ByteDance-BandAI/LLM-I --out data/llmi
    """
    import asyncio

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..errors import LlmiError
    from ..train.data import prepare as run_prepare
    from ..train.rows import RowRules

    console = Console(stderr=True, highlight=False)
    try:
        rules = RowRules(system_prompt=_system_prompt(system), image_num=image_num, dummy_image=dummy_image,
                         max_pixels=max_image_pixels)
        with Progress(TextColumn("[bold]rows"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("", total=None)
            report = asyncio.run(run_prepare(
                inputs, out_dir, rules, test_size=test_size, seed=seed, skip_invalid=skip_invalid, tag=tag,
                hf_split=hf_split, on_row=lambda: progress.advance(task)))
    except LlmiError as exc:
        _fail(str(exc))
    for error in report.errors[:_SHOWN_ERRORS]:
        console.print(f"[red]invalid[/] {escape(str(error))}", soft_wrap=True)
    if len(report.errors) > _SHOWN_ERRORS:
        console.print(f"... and {len(report.errors) - _SHOWN_ERRORS} more invalid rows")
    if not report.written:
        _fail(f"{len(report.errors)} of {report.total} rows are invalid; nothing was written "
              "(fix them, or pass --skip-invalid to write the valid rows)", code=1)
    for split, path in report.outputs.items():
        n = report.counts[split]
        click.echo(f"{path}: {n} row{'' if n == 1 else 's'} ({split})")
    if "test" not in report.outputs:
        console.print("note: no test split (rows marked split=test, or --test-size); verl recipes validate on one")
    if report.errors:
        console.print(f"{len(report.errors)} invalid rows skipped")


@data.command("inspect")
@click.argument("source", metavar="FILE")
@click.option("--rows", "n_rows", type=click.IntRange(0), default=3, show_default=True, help="First rows to show.")
@click.option("--split", "hf_split", default=None, help="Hugging Face datasets: the split to load.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def inspect(source: str, n_rows: int, hf_split: str | None, as_json: bool) -> None:
    """Count what FILE holds: rows by split, image_num, required tools, modality and input images,
    every invalid row, and the first rows. Exits 1 when a row is invalid."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..errors import LlmiError
    from ..train.data import summarise

    try:
        summary = summarise(source, first=n_rows, hf_split=hf_split)
    except LlmiError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        sys.exit(1 if summary.errors else 0)
    console = Console(highlight=False)
    console.print(f"[bold]{escape(source)}[/]: {summary.rows} rows, {len(summary.errors)} invalid")
    counts = Table(show_header=True, header_style="bold")
    counts.add_column("count of")
    counts.add_column("value")
    counts.add_column("rows", justify="right")
    for title, table in (("split", summary.by_split), ("image_num", summary.by_image_num),
                         ("required tool", summary.by_tool), ("modality", summary.by_modality),
                         ("input images", summary.by_input_images)):
        for i, (value, n) in enumerate(table.items()):
            counts.add_row(title if i == 0 else "", str(value), str(n))
    if summary.dummy_images:
        counts.add_row("dummy image", "28x28 white", str(summary.dummy_images))
    console.print(counts)
    for item in summary.first:
        user = next((t.content for t in reversed(item.prompt) if t.role == "user"), "")
        system = next((t.content for t in item.prompt if t.role == "system"), None)
        console.print(
            f"[bold]row {item.row}[/] {item.split or 'train'} · image_num {item.image_num} · "
            f"tools {', '.join(item.tools) or '-'} · {len(item.images)} input image(s)"
            + (f" · system prompt {len(system)} chars" if system else " · no system prompt"))
        console.print(f"  {user[:300]}", markup=False)
    for error in summary.errors[:_SHOWN_ERRORS]:
        console.print(f"[red]invalid[/] {escape(str(error))}", soft_wrap=True)
    sys.exit(1 if summary.errors else 0)
