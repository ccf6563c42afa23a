"""``llmi train``: GRPO on one machine (TRL) or on a Ray cluster (verl recipes)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["train"]


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group("train")
def train() -> None:
    """Train a writer model with GRPO on llmi's rewards.

    `llmi train grpo` runs on one machine with TRL; `llmi train verl RECIPE` runs LLM-I's
    recipes on a Ray cluster with verl.
    """


@train.command("verl")
@click.argument("recipe", metavar="RECIPE")
@click.option("--check", "check_only", is_flag=True,
              help="Validate everything and compose verl's configuration, without submitting.")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Copy the recipe's YAML to this file (to edit it) and stop.")
@click.option("--print-config", is_flag=True, help="Print the full composed verl configuration.")
@click.option("--offline", is_flag=True, help="Do not contact the judges and image servers.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds for each server check.")
def verl(recipe: str, check_only: bool, export_to: Path | None, print_config: bool, offline: bool,
         timeout: float) -> None:
    """Check a verl RECIPE, then submit it to the Ray cluster at $RAY_ADDRESS.

    RECIPE is a recipe file or one of LLM-I's: grpo-qwen3-4b, gspo-qwen3-30b-a3b,
    grpo-qwen2.5-vl-7b. Every value to edit is in the recipe (export it with --export);
    secrets and addresses come from the environment: RAY_ADDRESS, ARK_API_KEY,
    QWEN_IMAGE_SERVER_URL, QWEN_EDIT_SERVER_URL, SERP_API_KEY, LLM_JUDGE_BASE_URL,
    MLLM_JUDGE_BASE_URL (DIFFUSION_BACKBONE / EDIT_BACKBONE override the recipe's backbones).

    \b
    Examples:
      llmi train verl grpo-qwen3-4b --export my.yaml
      llmi train verl my.yaml --check
      llmi train verl my.yaml
    """
    import os

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..errors import LlmiError
    from ..train.recipe import load_recipe, plan, recipe_text
    from ..train.verl import check, submit

    console = Console(stderr=True, highlight=False)
    try:
        if export_to is not None:
            text, _ = recipe_text(recipe)
            export_to.write_text(text, encoding="utf-8")
            click.echo(f"wrote {export_to}; edit it, then run: llmi train verl {export_to} --check")
            return
        the_plan = plan(load_recipe(recipe), source=recipe)
        with console.status("checking the recipe (data, environment, servers, verl's configuration)"):
            report = check(the_plan, timeout=timeout, servers=not offline)
    except LlmiError as exc:
        _fail(str(exc))
    table = Table("check", "", "detail", header_style="bold", show_lines=False)
    marks = {"ok": "[green]ok[/]", "failed": "[red]FAILED[/]", "skipped": "[dim]skipped[/]"}
    for item in report.checks:
        table.add_row(escape(item.name), marks[item.status], escape(item.detail))
    console.print(table)
    if print_config and report.config is not None:
        from omegaconf import OmegaConf

        click.echo(OmegaConf.to_yaml(report.config))
    if not report.ok:
        _fail(f"{len(report.failures)} check(s) failed; nothing was submitted", code=1)
    if check_only:
        console.print(f"[green]{escape(recipe)} is ready to submit[/] (run it without --check)")
        return
    try:
        job = submit(the_plan, os.environ["RAY_ADDRESS"])
    except LlmiError as exc:
        _fail(str(exc))
    click.echo(job)
    console.print(f"submitted; follow it with: ray job logs --address {os.environ['RAY_ADDRESS']} --follow {job}")
