"""The ``llmi`` command. Subcommands live in their own modules and load only when used."""

from __future__ import annotations

import importlib

import click

#: subcommand name -> "module:attribute" (a click command or group), in help order
COMMANDS: dict[str, str] = {
    "render": "llmi.cli.render:render",
    "generate": "llmi.cli.generate:generate",
    "library": "llmi.cli.library:library",
    "serve": "llmi.cli.serve:serve",
    "image": "llmi.cli.image:image",
    "score": "llmi.cli.score:score",
    "eval": "llmi.cli.eval:eval",
    "view": "llmi.cli.view:view",
    "data": "llmi.cli.data:data",
    "train": "llmi.cli.train:train",
}

_SUMMARIES = {
    "render": "Run the tools for a model's answer and write the illustrated document.",
    "generate": "Write an illustrated document for a prompt with a writer model.",
    "library": "Manage the local image library used by offline search.",
    "serve": "Run llmi servers (the image generation/editing server).",
    "image": "Talk to image servers: health, info, generate, edit.",
    "score": "Score answers (JSONL) with LLM-I's reward: rules, LLM and MLLM judges.",
    "eval": "Evaluate on benchmarks (rubric, OpenING, in-domain) and judges against humans.",
    "view": "Browse documents, evaluation runs and training runs in a local web page.",
    "data": "Prepare and inspect training data (verl's parquet layout).",
    "train": "Train a writer with GRPO: on one machine (TRL) or a Ray cluster (verl).",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Summaries come from a table so that `llmi --help` imports no subcommand.
        with formatter.section("Commands"):
            formatter.write_dl([(n, _SUMMARIES.get(n, "")) for n in COMMANDS])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmi")
def main() -> None:
    """llmi turns a language model into an author of illustrated documents.

    The model writes prose with <imgen> tags; llmi runs the tools behind them (image search,
    diffusion, sandboxed chart code, image editing) and assembles the document.
    """
