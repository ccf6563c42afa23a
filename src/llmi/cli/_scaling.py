"""``llmi generate --scale N``: the options of test-time scaling, its progress lines and its report."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import click

__all__ = ["scale_options", "scale_config", "scale_judges", "print_scaling"]


def scale_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--scale`` family of options (added to ``llmi generate``)."""
    from ..scaling.config import SELECT_METHODS

    options = [
        click.option("--scale", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Test-time scaling: write N candidates at once, keep the valid ones, choose with a judge, "
                          "improve its tool calls and polish its prose (docs/scaling.md)."),
        click.option("--select", "select_method", type=click.Choice(SELECT_METHODS), default="scores", show_default=True,
                     help="--scale: choose by the reward's judges, a pairwise tournament, or one list-wise comparison."),
        click.option("--images", "image_num", type=int, default=None, metavar="K",
                     help="--scale: prefer candidates with this many images (LLM-I's convention: -1 none, 99 at least one)."),
        click.option("--no-validate", is_flag=True, help="--scale: keep candidates whose tags cannot work."),
        click.option("--no-enhance", is_flag=True, help="--scale: leave failed searches, broken charts and vague prompts as they are."),
        click.option("--no-polish", is_flag=True, help="--scale: leave the prose as the writer wrote it."),
        click.option("--sampled-scores", is_flag=True,
                     help="--scale: judge candidates by the scores the judge writes, not their expected values "
                          "under its token probabilities."),
        click.option("--max-repairs", type=click.IntRange(0, 10), default=2, show_default=True,
                     help="--scale: writer attempts at one failed search or chart."),
        click.option("--judge-base-url", envvar="LLM_JUDGE_BASE_URL", metavar="URL",
                     help="--scale: the LLM judge, an OpenAI-compatible endpoint [env LLM_JUDGE_BASE_URL]."),
        click.option("--mllm-judge-base-url", envvar="MLLM_JUDGE_BASE_URL", metavar="URL",
                     help="--scale: the MLLM judge, which sees the pictures [env MLLM_JUDGE_BASE_URL]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def scale_config(settings: Mapping[str, Any]) -> Any:
    """The ``ScaleConfig`` the options ask for (``None`` for a plain single answer)."""
    from ..scaling import ScaleConfig

    if settings["scale"] <= 1:
        return None
    return ScaleConfig(n=settings["scale"], select=settings["select_method"], image_num=settings["image_num"],
                       validate=not settings["no_validate"], enhance=not settings["no_enhance"],
                       polish=not settings["no_polish"], max_repairs=settings["max_repairs"],
                       expected_scores=not settings.get("sampled_scores", False))


def scale_judges(settings: Mapping[str, Any]) -> Any:
    """The judges the options (or LLM-I's variables) name; none is fine: the rules decide."""
    import os

    from ..scaling.judges import Judges

    return Judges.from_urls(settings.get("judge_base_url"), settings.get("mllm_judge_base_url"),
                            llm_model=os.environ.get("LLM_JUDGE_MODEL_NAME") or None,
                            mllm_model=os.environ.get("MLLM_JUDGE_MODEL_NAME") or None,
                            llm_key=os.environ.get("LLM_JUDGE_API_KEY") or None,
                            mllm_key=os.environ.get("MLLM_JUDGE_API_KEY") or None)


def print_scaling(console: Any, record: Mapping[str, Any]) -> None:
    """The candidates, the choice, the changes, and what each stage cost."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("candidate", "seed", "images", "problems", "score", ""):
        table.add_column(col, justify="left" if col in ("problems", "") else "right")
    chosen = record["selection"]["chosen"]
    for c in record["candidates"]:
        images = c.get("images") or []
        made = f"{sum(i['status'] == 'ok' for i in images)}/{len(images)}" if c["status"] != "failed" else "-"
        problems = c["error"] or "; ".join(c["problems"]) or ("" if c["satisfies_image_num"] else "image count")
        score = "" if c["score"] is None else f"{c['score']:.3f}"
        table.add_row(str(c["index"]), str(c["seed"]), made, problems[:60], score, "[bold]chosen[/]" if c["index"] == chosen else "")
    console.print(table)
    sel = record["selection"]
    console.print(f"selection: {sel['method']}: {sel['reason']}")
    for ch in record["enhancements"]:
        mark = "[green]✓[/]" if ch["kept"] else "[yellow]·[/]"
        console.print(f"  {mark} tag {ch['tag']} {ch['kind']} (attempt {ch['attempt']}): {ch['outcome']}: "
                      f"{_short(ch['before'])} → {_short(ch['after'])}", highlight=False)
    console.print(f"polish: {record['polish']['status']}")
    costs = Table(show_edge=False, header_style="bold")
    for col in ("stage", "seconds", "writer calls", "writer tokens", "tool calls", "judge calls"):
        costs.add_column(col, justify="left" if col == "stage" else "right")
    for stage in [*record["stages"], {"name": "total", "cost": record["cost"]}]:
        c = stage["cost"]
        costs.add_row(stage["name"], f"{c['seconds']:.1f}", str(c["writer_calls"]), str(c["writer_tokens"]),
                      str(c["tool_calls"]), str(c["judge_calls"]))
    console.print(costs)


def _short(value: Any, n: int = 50) -> str:
    text = " ".join(str(value).split()) if value is not None else "nothing"
    return text if len(text) <= n else text[: n - 1] + "…"
