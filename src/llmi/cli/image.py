"""``llmi image health|info|generate|edit``: talk to image servers from the shell."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

from ..errors import LlmiError

__all__ = ["image"]

_VARS = {"generation": "QWEN_IMAGE_SERVER_URL", "edit": "QWEN_EDIT_SERVER_URL"}


def _urls(url: tuple[str, ...], modes: tuple[str, ...]) -> list[str]:
    from ..serve.client import parse_urls

    if url:
        return parse_urls(",".join(url))
    found: list[str] = []
    for mode in modes:
        for u in parse_urls(os.environ.get(_VARS[mode], "")):
            if u not in found:
                found.append(u)
    if not found:
        names = " or ".join(_VARS[m] for m in modes)
        raise click.UsageError(f"give --url, or set {names}")
    return found


def _run(coro):
    try:
        return asyncio.run(coro)
    except LlmiError as exc:
        raise click.ClickException(str(exc)) from exc


_url_option = click.option(
    "--url",
    multiple=True,
    help="Server URL(s), repeatable or comma-separated. Default: $QWEN_IMAGE_SERVER_URL "
    "(generate), $QWEN_EDIT_SERVER_URL (edit), both (health, info).",
)


def _sampling_options(steps: int):
    """The options ``generate`` and ``edit`` share, in this order; ``steps`` is the default."""
    options = [
        click.option(
            "--steps", default=steps, show_default=True, type=int, help="num_inference_steps"
        ),
        click.option(
            "--guidance", default=None, type=float, help="guidance_scale (server default 4.0)."
        ),
        click.option("--negative", default=None, help="negative_prompt"),
        click.option("--seed", default=None, type=int),
        click.option("-n", "--num-images", default=1, show_default=True, type=int, help="1-4"),
        click.option("--timeout", default=600.0, show_default=True, type=float),
    ]

    def apply(command):
        for option in reversed(options):  # decorators apply bottom-up; keep the listed order
            command = option(command)
        return command

    return apply


def _out_paths(out: str, count: int) -> list[Path]:
    path = Path(out)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix or '.png'}") for i in range(count)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def image() -> None:
    """Talk to llmi image servers (llmi serve image)."""


@image.command()
@_url_option
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per probe.")
def health(url: tuple[str, ...], timeout: float) -> None:
    """Liveness and readiness of every server. Exit code 1 if any is not ready."""
    from ..serve.client import ImageServerClient

    async def main():
        async with ImageServerClient(_urls(url, ("generation", "edit"))) as client:
            return await client.health(timeout=timeout)

    statuses = _run(main())
    for s in statuses:
        state = "ready" if s.ready else ("alive, not ready" if s.alive else "down")
        click.echo(f"{s.url}  {state}" + (f"  ({s.detail})" if not s.ready and s.detail else ""))
    if not all(s.ready for s in statuses):
        raise SystemExit(1)


@image.command()
@_url_option
def info(url: tuple[str, ...]) -> None:
    """Every server's /info as JSON: model, mode, device, queue, counters."""
    from ..serve.client import ImageServerClient

    async def main():
        async with ImageServerClient(_urls(url, ("generation", "edit"))) as client:
            return await client.info()

    click.echo(json.dumps(_run(main()), indent=2))


@image.command()
@click.argument("prompt")
@_url_option
@click.option("--out", "-o", default="image.png", show_default=True, help="Output PNG (numbered when -n > 1).")
@click.option("--height", default=1024, show_default=True, type=int)
@click.option("--width", default=1024, show_default=True, type=int)
@_sampling_options(steps=25)
def generate(prompt: str, url: tuple[str, ...], out: str, height: int, width: int, **options) -> None:
    """Generate image(s) for PROMPT and write them as PNG."""
    timeout, sampling = _sampling(**options)
    result = _call(url, ("generation",), timeout, lambda c: c.generate_result(prompt, height=height, width=width, **sampling))
    _write(result, out)


@image.command()
@click.argument("prompt")
@click.option("--image", "image_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Image to edit.")
@_url_option
@click.option("--out", "-o", default="edited.png", show_default=True, help="Output PNG.")
@_sampling_options(steps=50)
def edit(prompt: str, image_path: str, url: tuple[str, ...], out: str, **options) -> None:
    """Edit an image following PROMPT (e.g. "make it black and white")."""
    from ..image import ImageData

    try:
        source = ImageData.from_path(image_path)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--image") from exc
    timeout, sampling = _sampling(**options)
    _write(_call(url, ("edit",), timeout, lambda c: c.edit_result(source, prompt, **sampling)), out)


def _sampling(
    steps: int, guidance: float | None, negative: str | None, seed: int | None, num_images: int, timeout: float
) -> tuple[float, dict]:
    """The options of :func:`_sampling_options`: the timeout, and the rest as the client's keywords."""
    return timeout, {"num_inference_steps": steps, "guidance_scale": guidance, "negative_prompt": negative,
                     "seed": seed, "num_images_per_prompt": num_images}


def _call(url: tuple[str, ...], modes: tuple[str, ...], timeout: float, request):
    """``request(client)`` against the servers, retried on transient failures (the client makes
    one POST per call; a failed server is marked down, so a retry goes to another)."""
    from ..http import Retry
    from ..serve.client import ImageServerClient

    async def main():
        async with ImageServerClient(_urls(url, modes), timeout=timeout) as client:
            return await Retry().run(request, client)

    return _run(main())


def _write(result, out: str) -> None:
    paths = _out_paths(out, len(result.images))
    for path, img in zip(paths, result.images):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(img.to_png().data)
        click.echo(f"{path}  {img.width}x{img.height}")
    click.echo(f"server {result.server}, seed {result.seed}, {result.elapsed_s} s", err=True)
