"""``llmi library``: build, inspect and query the local image library used by offline search."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["library"]


def _open(home: str | None, threshold: float | None = None):
    from ..library import Library, default_home

    lib = Library(Path(home) if home else default_home())
    if threshold is not None:
        lib.threshold = threshold
    return lib


def _report(report) -> None:
    rate = report.embedded / report.seconds if report.seconds > 0 and report.embedded else 0.0
    click.echo(
        f"{report.scanned} images scanned: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.removed} removed, {len(report.failed)} failed "
        f"in {report.seconds:.1f} s" + (f" ({rate:.0f} captions/s)" if rate else "")
    )
    for line in report.failed[:10]:
        click.echo(f"  skipped {line}", err=True)


_home = click.option(
    "--home", type=click.Path(file_okay=False), envvar="LLMI_LIBRARY_HOME",
    help="Library folder (default: $LLMI_HOME/library or ~/.local/share/llmi/library).",
)


@click.group("library")
def library() -> None:
    """Manage the local image library used by offline search.

    Images are indexed with captions from sidecar .txt files, SVG metadata, image metadata
    (PNG text, EXIF, XMP) and file and folder names, embedded with MiniLM (offline).
    """


@library.command("add")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--defaults", is_flag=True, help="Also index the clip art Debian installs (openclipart-svg, tuxpaint-stamps-default).")
@click.option("--licence", default=None, help="Licence to record for these images when a file does not state one.")
@click.option("--licence-url", default=None, help="URL of that licence.")
@_home
def add(paths: tuple[str, ...], defaults: bool, licence: str | None, licence_url: str | None, home: str | None) -> None:
    """Index image files and folders (re-running it updates only what changed)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..library import DEFAULT_SOURCES

    lib = _open(home)
    jobs: list[tuple[list[str], str | None, str | None]] = []
    if defaults:
        present = [(p, lic, url) for p, lic, url in DEFAULT_SOURCES if Path(p).is_dir()]
        if not present:
            click.echo("no default library on this system (apt install openclipart-svg tuxpaint-stamps-default)", err=True)
        jobs += [([p], lic, url) for p, lic, url in present]
    if paths:
        jobs.append((list(paths), licence, licence_url))
    if not jobs:
        raise click.UsageError("give folders or files to index, or --defaults")
    for job_paths, lic, url in jobs:
        label = ", ".join(job_paths)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task(f"embedding {label}", total=None)

            def tick(done: int, total: int, bar: Progress = bar, task: int = task) -> None:
                bar.update(task, completed=done, total=total)

            report = lib.add(job_paths, licence=lic, licence_url=url, progress=tick)
        click.echo(f"{label}: ", nl=False)
        _report(report)
    click.echo(f"library: {lib.home}")


@library.command("update")
@_home
def update(home: str | None) -> None:
    """Re-scan every folder added before: index new and changed images, drop deleted ones."""
    _report(_open(home).update())


@library.command("remove")
@click.argument("paths", nargs=-1, required=True)
@_home
def remove(paths: tuple[str, ...], home: str | None) -> None:
    """Forget files or folders (the files themselves are not touched)."""
    click.echo(f"removed {_open(home).remove(paths)} images from the library")


@library.command("stats")
@_home
def stats(home: str | None) -> None:
    """How many images, from where, with which caption sources."""
    lib = _open(home)
    if not lib.db_path.is_file():
        click.echo(f"no library at {lib.home}; create one with: llmi library add --defaults")
        return
    s = lib.stats()
    click.echo(f"library:  {s.home}")
    click.echo(f"images:   {s.items} ({s.svg} SVG)")
    click.echo("captions: " + ", ".join(f"{k} {v}" for k, v in sorted(s.origins.items())))
    click.echo(f"model:    {s.model}")
    click.echo(f"on disk:  {s.bytes_on_disk / 1e6:.1f} MB")
    for root, count in s.roots:
        click.echo(f"  {count:6d}  {root}")


@library.command("search")
@click.argument("query")
@click.option("-k", "--top", default=5, show_default=True, help="How many matches to list.")
@click.option("--threshold", type=float, default=None, help="Similarity a match needs (default 0.5).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Write the best match's image here.")
@_home
def search(query: str, top: int, threshold: float | None, save: str | None, home: str | None) -> None:
    """Show the best matches for QUERY with their similarity scores."""
    from ..errors import NotFound

    lib = _open(home, threshold)
    if not lib.exists():
        raise click.ClickException(f"the library at {lib.home} is empty: run `llmi library add --defaults`")
    hits = lib.search(query, k=top)
    for hit in hits:
        mark = "*" if hit.score >= lib.threshold else " "
        click.echo(f"{mark} {hit.score:.3f}  {hit.item.caption[:70]:70s}  {hit.item.path}")
    try:
        best = lib.best(query)
    except NotFound as exc:
        click.echo(f"not found: {exc}")
        return
    if save:
        image = lib.image(best.item)
        Path(save).write_bytes(image.data)
        click.echo(f"saved {image.width}x{image.height} {image.format} to {save}")
