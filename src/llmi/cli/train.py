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
        console.print(f"[green]{escape(recipe)} is ready to submit[/] (run it without --check)", soft_wrap=True)
        return
    try:
        job = submit(the_plan, os.environ["RAY_ADDRESS"])
    except LlmiError as exc:
        _fail(str(exc))
    click.echo(job)
    console.print(f"submitted; follow it with: ray job logs --address {os.environ['RAY_ADDRESS']} --follow {job}",
                  soft_wrap=True)


def _pairs(values: tuple[str, ...], what: str, number: bool) -> list[tuple[str, object]]:
    """``NAME=VALUE`` options (``NAME`` alone means weight 1 for rewards)."""
    import json

    out = []
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep:
            if not number:
                raise click.BadParameter(f"{value!r}: give {what} as KEY=VALUE")
            raw = "1"
        try:
            parsed = float(raw) if number else json.loads(raw)
        except ValueError:
            if number:
                raise click.BadParameter(f"{value!r}: the weight must be a number") from None
            parsed = raw  # a plain word, such as no_images=score
        out.append((name.strip(), parsed))
    return out


@train.command("grpo")
@click.argument("train_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                metavar="TRAIN.parquet...")
@click.option("--out", "output_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: checkpoints, final/, metrics.jsonl, curve.png, samples/.")
@click.option("--test", "test_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out parquet for TRL's evaluation (with --eval-steps).")
@click.option("--model", default=None, metavar="PATH|GGUF|HUB_ID",
              help="The model to train: a Hugging Face folder or hub id, or a .gguf file (converted once). "
                   "Default: the packaged SmolLM2-135M-Instruct.")
@click.option("--loss", type=click.Choice(["dapo", "grpo", "dr_grpo", "gspo"]), default="dapo", show_default=True,
              help="dapo: token-mean (LLM-I's); grpo: per-sequence mean; dr_grpo: constant normaliser, no std "
                   "scaling; gspo: sequence-level importance sampling.")
@click.option("--reward", "rewards", multiple=True, metavar="NAME[=WEIGHT]",
              help="A reward function and its weight (repeatable): combined (LLM-I's R, the default), "
                   "img_num, llm, mllm, r_tool, tag_validity.")
@click.option("--reward-setting", "reward_settings", multiple=True, metavar="KEY=VALUE",
              help="A reward setting (repeatable): factors (llm_text_factor=1.4 ...), recipe=mllmi, "
                   "profile=llmi, no_images=score ... (see docs/rewards.md).")
@click.option("--without-judges", is_flag=True,
              help="Train on the rule parts only (the judges' factors set to 0): for runs with no judge endpoint.")
@click.option("--num-generations", type=click.IntRange(2), default=8, show_default=True, help="Completions per prompt.")
@click.option("--prompts-per-step", type=click.IntRange(1), default=8, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after this many steps (-1: --epochs).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--learning-rate", type=float, default=None, help="Default: LLM-I's 1e-6; 1e-5 with --lora.")
@click.option("--warmup-steps", type=click.IntRange(0), default=5, show_default=True)
@click.option("--max-completion-length", type=click.IntRange(8), default=1024, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--lora", is_flag=True, help="Train a LoRA adapter (peft) instead of every weight.")
@click.option("--lora-rank", type=click.IntRange(1), default=16, show_default=True)
@click.option("--generation", type=click.Choice(["auto", "transformers", "vllm", "llama-cpp"]), default="auto",
              show_default=True, help="How completions are sampled: vLLM (a CUDA GPU), llama.cpp (CPU, every weight "
                                      "trained; the policy is written to GGUF after each step), or transformers. "
                                      "auto: vLLM on a GPU, llama.cpp on a CPU where it can, else transformers.")
@click.option("--threads", type=click.IntRange(1), default=None, envvar="LLMI_THREADS",
              help="CPU threads for training and llama.cpp (default: half the cores) [env LLMI_THREADS].")
@click.option("--save-steps", type=click.IntRange(1), default=50, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--samples-every", type=click.IntRange(0), default=10, show_default=True,
              help="Write a page of scored sample documents every N steps (0: never).")
@click.option("--samples-per-log", type=click.IntRange(1), default=4, show_default=True)
@click.option("--eval-steps", type=click.IntRange(1), default=None, help="Evaluate on --test every N steps.")
@click.option("--seed", type=int, default=0, show_default=True)
def grpo(train_files: tuple[Path, ...], output_dir: Path, test_files: tuple[Path, ...], model: str | None, loss: str,
         rewards: tuple[str, ...], reward_settings: tuple[str, ...], without_judges: bool, num_generations: int,
         prompts_per_step: int, max_steps: int, epochs: float, learning_rate: float | None, warmup_steps: int,
         max_completion_length: int, temperature: float, lora: bool, lora_rank: int, generation: str, threads: int | None,
         save_steps: int, resume: bool, samples_every: int, samples_per_log: int, eval_steps: int | None,
         seed: int) -> None:
    """GRPO on this machine (TRL) with llmi's rewards: tools run while scoring, once per completion.

    TRAIN.parquet comes from `llmi data prepare`. The judges come from LLM_JUDGE_BASE_URL and
    MLLM_JUDGE_BASE_URL (or pass --without-judges); the tools from the usual variables.

    \b
    Examples:
      llmi data prepare prompts.jsonl --test-size 0.1 --out data
      llmi train grpo data/train.parquet --out runs/first
      llmi train grpo data/train.parquet --out runs/tiny --without-judges --reward tag_validity --reward img_num
      llmi generate --model runs/first/final "Tell me about kangaroos"
    """
    from ..errors import LlmiError
    from ..train.grpo import GRPOSettings, train as run

    try:
        settings = GRPOSettings(
            train_files=train_files, output_dir=output_dir, model=model, test_files=test_files, loss=loss,
            rewards=tuple(_pairs(rewards, "rewards", True)) or (("combined", 1.0),),
            reward_settings=dict(_pairs(reward_settings, "reward settings", False)), without_judges=without_judges,
            num_generations=num_generations, prompts_per_step=prompts_per_step, max_steps=max_steps, epochs=epochs,
            learning_rate=learning_rate, warmup_steps=warmup_steps, max_completion_length=max_completion_length,
            temperature=temperature, lora=lora, lora_rank=lora_rank, lora_alpha=2 * lora_rank, generation=generation, threads=threads,
            save_steps=save_steps, resume=resume, samples_every=samples_every, samples_per_log=samples_per_log,
            eval_steps=eval_steps, seed=seed,
        )
        result = run(settings)
    except LlmiError as exc:
        _fail(str(exc))
    click.echo(f"trained {result.steps} steps; model: {result.final_dir}")
    click.echo(f"metrics: {result.metrics}" + (f", curve: {result.curve}" if result.curve else ""))
    click.echo(f"sample documents: {result.samples / 'index.html'}")
    click.echo(f'try it: llmi generate --model {result.final_dir} "YOUR PROMPT"')
