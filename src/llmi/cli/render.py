"""``llmi render``: run the tools for a model's answer and write the document."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click


def parse_formats(value: str) -> tuple[str, ...]:
    from ..errors import ConfigError
    from ..renderers import normalise_formats

    try:
        return normalise_formats(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def default_out_dir(stem: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40].strip("-") or "document"
    return Path("out") / f"{safe}-{stamp}"


def load_inputs(paths: tuple[str, ...]) -> tuple:
    from ..image import ImageData

    images = []
    for path in paths:
        try:
            images.append(ImageData.from_path(path))
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"cannot read input image {path}: {exc}") from None
    return tuple(images)


@click.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: out/<name>-<time>/).")
@click.option("--format", "formats", default="html,md,json", show_default=True, callback=lambda c, p, v: parse_formats(v),
              help="Comma-separated output formats: html, md, json.")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="An input image (repeatable); edit tags address them as img_index 0, 1, ...")
@click.option("--deadline", type=float, default=600.0, show_default=True, help="Seconds for the whole document.")
@click.option("--no-fallback", is_flag=True,
              help="Do not fall back from diffusion to search (never done with --profile llmi-compat: LLM-I has no fallback).")
@click.option("--profile", type=click.Choice(["llmi", "llmi-compat"]), default="llmi", show_default=True,
              help="How the answer is read: llmi's tolerant reading, or LLM-I's exact one (its processed "
                   "text and statistics, as rewards see them; see docs/compat.md).")
@click.option("--judge-view", is_flag=True,
              help="Also print the processed text a judge sees and the statistics (JSON) to stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the output paths.")
def render(file, out_dir: Path | None, formats: tuple[str, ...], images: tuple[str, ...], deadline: float,
           no_fallback: bool, profile: str, judge_view: bool, quiet: bool) -> None:
    """Render FILE (a model's answer with <imgen> tags; '-' for stdin) into a document.

    Each tag is run with the backend the environment configures: charts in the sandbox, search
    via SerpAPI (SERP_API_KEY), Wikimedia Commons (LLMI_ONLINE=1) or the local library,
    generation and editing via Qwen-Image servers (QWEN_IMAGE_SERVER_URL, QWEN_EDIT_SERVER_URL),
    Ark (ARK_API_KEY) or an OpenAI-compatible images API. Failed images keep their place and
    say why.

    \b
    Example:
      llmi render answer.txt --out out/answer --format html,json
      llmi render answer.txt --profile llmi-compat --judge-view
    """
    from rich.console import Console

    from ..engine import Engine
    from ._progress import ToolProgress, print_summary

    text = file.read()
    inputs = load_inputs(images)
    console = Console(stderr=True, quiet=quiet)
    out_dir = out_dir or default_out_dir(Path(file.name).stem if file.name != "<stdin>" else "stdin")
    progress = ToolProgress(console)
    engine = Engine.from_env(on_event=progress, deadline=deadline, profile=profile,
                             fallback={} if no_fallback else None)
    try:
        with progress:
            doc = engine.run(text, inputs, meta={"source_file": file.name})
    finally:
        engine.close()
    paths = doc.save(out_dir, formats)
    print_summary(console, doc, paths)
    if judge_view:
        import json

        click.echo(json.dumps({"judge_view": doc.judge_view(), "stats": doc.stats()}, ensure_ascii=False, indent=2))
    if quiet:
        for path in paths.values():
            click.echo(path)
