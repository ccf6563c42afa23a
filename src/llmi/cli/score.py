"""``llmi score``: score a JSONL file of answers with LLM-I's reward (rules and judges)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

_OPTION_FLAGS = {  # flag -> (RewardOptions field, choices)
    "no_images": ("perfect", "score", "neutral"),
    "on_error": ("minimum", "exclude"),
    "failed_tools": ("ignore", "penalise"),
    "typed_image": ("count", "ignore"),
    "lenient_tags": ("accept", "invalid"),
}


def _factor(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            out[name.strip().replace("-", "_")] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: write NAME=NUMBER, e.g. llm_factor=0.5") from None
        if not sep:
            raise click.BadParameter(f"{item!r}: write NAME=NUMBER, e.g. llm_factor=0.5")
    return out


def _option_flags(func):
    for name, choices in reversed(_OPTION_FLAGS.items()):
        func = click.option(f"--{name.replace('_', '-')}", name, type=click.Choice(choices),
                            help=f"Override the profile's {name} behaviour ({' / '.join(choices)}; see docs/rewards.md).")(func)
    return func


@click.command()
@click.argument("answers", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-answer breakdowns, JSONL (default: ANSWERS with .scores.jsonl).")
@click.option("--profile", type=click.Choice(["llmi-compat", "llmi"]), default="llmi-compat", show_default=True,
              help="How answers are read and judged: LLM-I's exact behaviour, or llmi's stricter defaults.")
@click.option("--recipe", type=click.Choice(["llmi", "mllmi"]), default="llmi", show_default=True,
              help="LLM-I's factors: the text recipe (1.4/0.6) or the multimodal one (1.5/0.5).")
@click.option("--factor", "factors", multiple=True, callback=_factor, metavar="NAME=VALUE",
              help="Change one factor, e.g. --factor tool_factor=0.1 (repeatable; LLM-I's names).")
@_option_flags
@click.option("--max-images", type=click.IntRange(1), help="More images than this score the MLLM minimum (LLM-I: 10).")
@click.option("--llm-judge", metavar="URL", envvar="LLM_JUDGE_BASE_URL", help="The LLM judge [env: LLM_JUDGE_BASE_URL].")
@click.option("--mllm-judge", metavar="URL", envvar="MLLM_JUDGE_BASE_URL", help="The MLLM judge [env: MLLM_JUDGE_BASE_URL].")
@click.option("--judge-concurrency", type=click.IntRange(1), default=16, show_default=True, help="Requests at once, per judge.")
@click.option("--judge-rpm", type=click.FloatRange(min=0, min_open=True), help="Requests per minute, per judge.")
@click.option("--judge-tpm", type=click.FloatRange(min=0, min_open=True), help="Tokens per minute, per judge.")
@click.option("--judge-timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds per judge attempt.")
@click.option("--sample-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds for one answer, tools and judges together.")
@click.option("--concurrency", type=click.IntRange(1), default=64, show_default=True, help="Answers in flight.")
@click.option("--restart", is_flag=True, help="Ignore what an earlier run wrote to --out and start again.")
@click.option("--retry", "retry", multiple=True, type=click.Choice(["failed", "incomplete", "excluded"]),
              help="Score again the rows an earlier run left with this status (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only the summary.")
def score(answers: Path, out: Path | None, profile: str, recipe: str, factors: dict[str, float], max_images: int | None,
          llm_judge: str | None, mllm_judge: str | None, judge_concurrency: int, judge_rpm: float | None,
          judge_tpm: float | None, judge_timeout: float, sample_timeout: float, concurrency: int, restart: bool,
          retry: tuple[str, ...], quiet: bool, **option_flags: str | None) -> None:
    """Score ANSWERS (JSONL: answer, extra_info, optional images and id) with LLM-I's reward.

    The tools run with the backends the environment configures (as for `llmi render`); the
    judges are LLM_JUDGE_BASE_URL and MLLM_JUDGE_BASE_URL (with optional *_MODEL_NAME and
    *_API_KEY). Without a judge the rule parts are still computed, and the judge parts are
    marked "not configured" (never scored as a minimum). A rerun continues where the last one
    stopped.

    \b
    Example:
      llmi score answers.jsonl --profile llmi --no-images score --factor tool_factor=0.1
    """
    from rich.console import Console

    from ..engine import Engine
    from ..errors import ConfigError
    from ..rewards import JudgeLimits, LLMJudge, MLLMJudge, RewardFactors, RewardOptions, RewardScorer

    console = Console(stderr=True)
    try:
        fac = RewardFactors.preset(recipe).with_values(factors)
        changes = {k: v for k, v in option_flags.items() if v is not None}
        if max_images is not None:
            changes["max_images"] = max_images
        opts = RewardOptions.preset(profile).with_values(changes)
        limits = JudgeLimits(concurrency=judge_concurrency, rpm=judge_rpm, tpm=judge_tpm, timeout=judge_timeout)
        judges = {
            "llm_judge": _judge("LLM_JUDGE", llm_judge, LLMJudge, limits, profile),
            "mllm_judge": _judge("MLLM_JUDGE", mllm_judge, MLLMJudge, limits, profile),
        }
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    out = out or answers.with_name(answers.name.removesuffix(".jsonl") + ".scores.jsonl")
    settings = {
        "profile": profile, "factors": fac.to_dict(), "options": opts.to_dict(),
        "judges": {k: (j.client.base_url, j.client.model) if j else None for k, j in judges.items()},
    }
    for key, judge in judges.items():
        if judge is None:
            console.print(f"[yellow]no {key.replace('_', ' ')} configured[/]: its part is marked 'not configured'")
    engine = Engine.from_env(profile=profile)
    scorer = RewardScorer(engine, factors=fac, options=opts, profile=profile, sample_timeout=sample_timeout,
                          keep_documents=False, **judges)
    try:
        summary = asyncio.run(_run(scorer, answers, out, settings, restart, frozenset(retry), concurrency, console, quiet))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _print_summary(console, summary)


def _judge(prefix: str, url: str | None, cls, limits, profile: str):
    """The judge ``{prefix}_*`` configures, ``url`` (the flag, or the variable) as its endpoint."""
    import os

    from ..rewards import JudgeClient

    env = {**os.environ, f"{prefix}_BASE_URL": url or ""}
    label = "LLM judge" if prefix == "LLM_JUDGE" else "MLLM judge"
    client = JudgeClient.from_env(prefix, env, label=label, limits=limits)
    return cls(client, profile=profile) if client else None


async def _run(scorer, answers, out, settings, restart, retry, concurrency, console, quiet):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..rewards.score_file import score_file

    progress = Progress(TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), TextColumn("{task.description}"), console=console, transient=True,
                        disable=quiet)
    task = progress.add_task("", total=None)

    def on_row(total, breakdown):
        if breakdown is None:
            progress.update(task, total=total)
            return
        progress.advance(task)
        if breakdown.score is not None:
            progress.update(task, description=f"last R = {breakdown.score:.3f}")

    try:
        with progress:
            return await score_file(scorer, answers, out, settings=settings, restart=restart, retry=retry,
                                    concurrency=concurrency, on_row=on_row)
    finally:
        await scorer.aclose()
        await scorer.engine.aclose()


def _print_summary(console, summary) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    table.add_column("")
    table.add_column("value", justify="right")
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
    table.add_row("rows", f"{summary.rows} ({statuses})" if statuses else "0")
    if summary.skipped:
        table.add_row("already scored", str(summary.skipped))
    for key, value in summary.means.items():
        table.add_row(f"mean {key}", f"{value:.4f}")
    for kind, n in summary.fallbacks.most_common():
        table.add_row(f"fallback {kind}", str(n))
    for stage in ("tools", "llm_judge", "mllm_judge", "total"):
        if stage in summary.timings:
            table.add_row(f"mean {stage} s", f"{summary.timings[stage]:.3f}")
    console.print(table)
    if any(summary.histogram):
        console.print("R:")
        peak = max(summary.histogram)
        for i, n in enumerate(summary.histogram):
            bar = "█" * round(30 * n / peak)
            console.print(f"  {i / 10:.1f}–{(i + 1) / 10:.1f} {bar} {n}", highlight=False)
    click.echo(str(summary.out))
