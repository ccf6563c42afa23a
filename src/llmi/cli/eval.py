"""``llmi eval``: benchmark runs (rubric, OpenING, pairwise, in-domain), judge agreement,
merging shards and rewriting reports."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .render import default_out_dir


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Typed errors become one line on stderr and exit status 2; Ctrl-C says what was kept."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import LlmiError

        try:
            return fn(*args, **kwargs)
        except LlmiError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; finished items are kept in results.jsonl, run the same command again to resume")

    return wrapper


# -- shared options ------------------------------------------------------------------------------


def _options(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(fn: Any) -> Any:
        for d in reversed(decorators):
            fn = d(fn)
        return fn

    return apply


writer_options = _options(
    click.option("--answers", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Score answers already made (JSON or JSON lines; LLM-I's evaluation_results.json works) "
                      "instead of writing them."),
    click.option("--base-url", envvar="LLMI_BASE_URL", metavar="URL",
                 help="The writer: an OpenAI-compatible endpoint [env LLMI_BASE_URL]; default: the embedded model."),
    click.option("--model", envvar="LLMI_MODEL", metavar="PATH|REPO:FILE", help="Embedded writer weights (.gguf) [env LLMI_MODEL]."),
    click.option("--model-name", envvar="LLMI_MODEL_NAME", metavar="NAME", help="Model served by --base-url [env LLMI_MODEL_NAME]."),
    click.option("--api-key", default=None, metavar="KEY", help="Writer API key [env LLMI_API_KEY, then OPENAI_API_KEY]."),
    click.option("--temperature", type=float, default=0.7, show_default=True, help="Writer sampling temperature."),
    click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True, help="Writer answer length."),
    click.option("--system-prompt", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Replace llmi's writer system prompt with this file."),
    click.option("--no-grammar", is_flag=True, help="Embedded writer: decode without the tag grammar."),
    click.option("--threads", type=click.IntRange(1), default=None, envvar="LLMI_THREADS", help="Embedded writer: CPU threads."),
    click.option("--deadline", type=float, default=600.0, show_default=True, help="Seconds for one answer's tools."),
)

judge_options = _options(
    click.option("--judge-base-url", envvar="LLMI_JUDGE_BASE_URL", metavar="URL",
                 help="The judge: an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 [env LLMI_JUDGE_BASE_URL]."),
    click.option("--judge-model", envvar="LLMI_JUDGE_MODEL", metavar="NAME", help="Judge model (default: the endpoint's only model)."),
    click.option("--judge-api-key", default=None, metavar="KEY", help="Judge API key [env LLMI_JUDGE_API_KEY, then OPENAI_API_KEY]."),
    click.option("--judge-text-only", is_flag=True, help="The judge cannot see pictures: send text with picture markers."),
    click.option("--judge-concurrency", type=click.IntRange(1), default=8, show_default=True, help="Judge requests at once."),
    click.option("--judge-rpm", type=float, default=None, help="Judge requests per minute (default: unlimited)."),
    click.option("--judge-timeout", type=float, default=120.0, show_default=True, help="Seconds per judge request."),
    click.option("--judge-max-tokens", type=click.IntRange(16), default=None, help="Judge reply length (default: per benchmark)."),
)

run_options = _options(
    click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                 help="Run folder (default: out/eval-<kind>-<time>/); an existing run is resumed."),
    click.option("--seed", type=int, default=0, show_default=True, help="Run seed; each item's seed is drawn from it."),
    click.option("--shard", default=None, metavar="I/N", help="Evaluate only shard I of N (1-based); join shards with llmi eval merge."),
    click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N items (before sharding)."),
    click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True, help="Items in flight at once."),
    click.option("--retry-errors", is_flag=True, help="On resume, evaluate failed items again."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only the report's path."),
)


# -- building the parts --------------------------------------------------------------------------


def _engine(deadline: float, profile: str = "llmi"):
    from ..engine import Engine

    return Engine.from_env(deadline=deadline, profile=profile)


def _answers(opts: dict[str, Any], engine):
    from ..llm import Sampling, make_writer
    from ..prompts import system_prompt
    from ..evaluate.answers import GivenAnswers, WriterAnswers

    if opts.get("answers") is not None:
        return GivenAnswers.load(opts["answers"], engine=engine)
    sampling = Sampling(temperature=opts["temperature"], max_tokens=opts["max_tokens"])
    api_key = opts.get("api_key") or os.environ.get("LLMI_API_KEY") or os.environ.get("OPENAI_API_KEY")
    writer = make_writer(base_url=opts.get("base_url"), model=opts.get("model"), model_name=opts.get("model_name"),
                         api_key=api_key, sampling=sampling, grammar=not opts.get("no_grammar"),
                         n_threads=opts.get("threads"))
    custom = system_prompt(opts["system_prompt"]) if opts.get("system_prompt") else None
    return WriterAnswers(writer, engine, sampling=sampling, system_prompt=custom)


def _judge(opts: dict[str, Any], *, max_tokens: int):
    from ..errors import ConfigError
    from ..evaluate.judging import make_judge

    if not opts.get("judge_base_url"):
        raise ConfigError("no judge: pass --judge-base-url URL (an OpenAI-compatible endpoint) or set LLMI_JUDGE_BASE_URL")
    api_key = opts.get("judge_api_key") or os.environ.get("LLMI_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return make_judge(opts["judge_base_url"], model=opts.get("judge_model"), api_key=api_key,
                      images=not opts.get("judge_text_only"), concurrency=opts["judge_concurrency"],
                      rpm=opts.get("judge_rpm"), timeout=opts["judge_timeout"],
                      max_tokens=opts.get("judge_max_tokens") or max_tokens)


class _Bar:
    """The run's progress bar: items done (resumed ones included), time left, the last result."""

    def __init__(self, console) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.progress = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("left"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                 console=console, transient=False)
        self.task = None
        self.failed = 0

    def begin(self, total: int, done: int) -> None:
        self.progress.start()
        if done:
            self.console.print(f"resuming: {done} of {total} items already done")
        self.task = self.progress.add_task("", total=total, completed=done)

    def finished(self, record) -> None:
        score = record.get("score")
        if record.get("status") != "ok":
            self.failed += 1
            text = f"[red]{record['key']} failed: {record.get('error_type')}[/]"
        else:
            text = f"{record['key']}: {score:.3g}" if isinstance(score, (int, float)) else f"{record['key']} done"
        self.progress.update(self.task, advance=1, description=text)

    def end(self) -> None:
        self.progress.stop()


def _evaluate(bench, opts: dict[str, Any], *, answers, judge, kind: str, close: tuple = (), summary: bool = True):
    from rich.console import Console

    from ..evaluate.job import aevaluate
    from ..evaluate.runs import Shard

    console = Console(stderr=True, quiet=opts["quiet"], highlight=False)
    out = opts.get("out_dir") or default_out_dir(f"eval-{kind}")
    shard = Shard.parse(opts.get("shard"))
    bar = None if opts["quiet"] else _Bar(console)

    async def main():
        try:
            return await aevaluate(bench, out, answers=answers, judge=judge, seed=opts["seed"], shard=shard,
                                   limit=opts.get("limit"), concurrency=opts["concurrency"], progress=bar,
                                   retry_errors=opts["retry_errors"])
        finally:
            engine = getattr(answers, "engine", None)
            if engine is not None:
                await engine.aclose()
            for thing in (judge, *close):
                if thing is not None:
                    await thing.aclose()

    result = asyncio.run(main())
    if summary:
        _print_summary(console, result.summary)
    console.print(f"run: {result.run.path}")
    if result.report is not None:
        console.print(f"report: {result.report}")
        if opts["quiet"] and summary:
            click.echo(result.report)
    return result


def _print_summary(console, summary) -> None:
    from rich.table import Table as RichTable

    for label, value in summary.headline:
        console.print(f"{label}: [bold]{value}[/]")
    for table in summary.tables:
        if not table.rows:
            continue
        t = RichTable(title=table.title, show_edge=False, header_style="bold")
        for col in table.columns:
            t.add_column(str(col))
        for row in table.rows:
            t.add_row(*(str(v) for v in row))
        console.print(t)
    for note in summary.notes:
        console.print(f"[dim]{note}[/]")


# -- the commands --------------------------------------------------------------------------------


@click.group()
def eval() -> None:  # noqa: A001 - the command is called "eval"
    """Evaluate writers on benchmarks and judges against human verdicts.

    Each run is a folder: config.json (what ran), results.jsonl (one line per finished item,
    the source of truth), report.html (one self-contained page). Running the same command
    again resumes it; --shard I/N splits a benchmark over machines and `llmi eval merge` joins
    the shards.
    """


@eval.command()
@click.option("--bench", "bench_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The benchmark: a JSON list of {prompt, r1..r10, images?} (LLMI-Bench's format).")
@click.option("--sequential-criteria", is_flag=True, help="Judge one criterion after another (as LLM-I's scripts do).")
@writer_options
@judge_options
@run_options
@_handled
def rubric(bench_file: Path, sequential_criteria: bool, **opts: Any) -> None:
    """Score answers on a rubric benchmark: each criterion 0, 1 or 2 with a justification.

    \b
    Examples:
      llmi eval rubric --bench llmi_bench.json --judge-base-url http://127.0.0.1:8000/v1
      llmi eval rubric --bench mm.json --answers evaluation_results.json --judge-base-url URL --shard 1/4
    """
    from ..evaluate.rubric import RubricBenchmark

    bench = RubricBenchmark(bench_file, criteria_concurrently=not sequential_criteria)
    judge = _judge(opts, max_tokens=400)
    answers = _answers(opts, _engine(opts["deadline"]))
    _evaluate(bench, opts, answers=answers, judge=judge, kind="rubric")


@eval.command()
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="OpenING's data: the folder holding test_data.jsonl (and arena/ for the published table).")
@click.option("--name", default=None, help="The system's name in the table and in gen_outputs/<NAME>_output "
                                           "(default: the writer's).")
@click.option("--with-images", is_flag=True, help="Also the items with input images (when their images are present).")
@click.option("--outputs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score answers already in OpenING's layout (a <MODEL>_output folder) instead of writing them.")
@writer_options
@judge_options
@run_options
@_handled
def opening(data: Path, name: str | None, with_images: bool, outputs: Path | None, **opts: Any) -> None:
    """Answer OpenING's items and score them on its seven 0-10 criteria, beside the published systems.

    \b
    Examples:
      llmi eval opening --data OpenING/ --judge-base-url http://127.0.0.1:8000/v1 --limit 50
      llmi eval opening --data OpenING/ --outputs gen_outputs/MyModel_output --judge-base-url URL
    """
    from ..evaluate.opening_score import OpeningBenchmark

    answers = None
    if outputs is None:
        answers = _answers(opts, _engine(opts["deadline"]))
        name = name or (Path(opts["answers"]).stem if opts.get("answers") else answers.writer.name)
    else:
        name = name or outputs.name.removesuffix("_output")
    bench = OpeningBenchmark(data, name=name, with_images=with_images, outputs=outputs)
    judge = _judge(opts, max_tokens=1200)
    _evaluate(bench, opts, answers=answers, judge=judge, kind="opening")


@eval.command()
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="OpenING's data folder.")
@click.option("--outputs", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of <MODEL>_output folders (OpenING's gen_outputs), one per system.")
@click.option("--a", "system_a", default=None, help="Compare this system ...")
@click.option("--b", "system_b", default=None, help="... with this one on every item both answered "
                                                   "(default: the arena's pairs).")
@judge_options
@run_options
@_handled
def pairwise(data: Path, outputs: Path, system_a: str | None, system_b: str | None, **opts: Any) -> None:
    """Judge pairs of systems' OpenING answers: A, B, Tie(A) or Tie(B); win rates and agreement.

    \b
    Example:
      llmi eval pairwise --data OpenING/ --outputs gen_outputs/ --judge-base-url http://127.0.0.1:8000/v1
    """
    from ..evaluate.pairwise import PairwiseBenchmark

    bench = PairwiseBenchmark(data, outputs, a=system_a, b=system_b)
    judge = _judge(opts, max_tokens=400)
    _evaluate(bench, opts, answers=None, judge=judge, kind="pairwise")


@eval.command()
@click.option("--data", "data_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The held-out rows: a parquet file in verl's layout (prompt, images, extra_info), or JSON lines.")
@click.option("--split", default=None, help="Only rows whose extra_info.split is this (default: every row).")
@click.option("--llm-judge-base-url", envvar="LLM_JUDGE_BASE_URL", metavar="URL",
              help="The reward's LLM judge [env LLM_JUDGE_BASE_URL, as in LLM-I].")
@click.option("--llm-judge-model", envvar="LLM_JUDGE_MODEL_NAME", metavar="NAME", help="[env LLM_JUDGE_MODEL_NAME]")
@click.option("--mllm-judge-base-url", envvar="MLLM_JUDGE_BASE_URL", metavar="URL",
              help="The reward's MLLM judge [env MLLM_JUDGE_BASE_URL, as in LLM-I].")
@click.option("--mllm-judge-model", envvar="MLLM_JUDGE_MODEL_NAME", metavar="NAME", help="[env MLLM_JUDGE_MODEL_NAME]")
@click.option("--factors", "factor_preset", type=click.Choice(["llmi", "mllmi"]), default="llmi", show_default=True,
              help="Reward weights: LLM-I's text recipe or its multimodal one.")
@writer_options
@run_options
@_handled
def indomain(data_file: Path, split: str | None, llm_judge_base_url: str | None, llm_judge_model: str | None,
             mllm_judge_base_url: str | None, mllm_judge_model: str | None, factor_preset: str, **opts: Any) -> None:
    """Score a writer with the training reward on held-out rows, in evaluation mode (exact image
    counts), broken down per image_num and per required tool.

    \b
    Example:
      llmi eval indomain --data test.parquet --base-url http://127.0.0.1:8000/v1 \\
          --llm-judge-base-url http://127.0.0.1:18901/v1 --mllm-judge-base-url http://127.0.0.1:18902/v1
    """
    from ..evaluate.indomain import InDomainBenchmark
    from ..rewards.config import RewardFactors
    from ..rewards.scorer import RewardScorer

    env = dict(os.environ)
    for name, value in (("LLM_JUDGE_BASE_URL", llm_judge_base_url), ("LLM_JUDGE_MODEL_NAME", llm_judge_model),
                        ("MLLM_JUDGE_BASE_URL", mllm_judge_base_url), ("MLLM_JUDGE_MODEL_NAME", mllm_judge_model)):
        if value:
            env[name] = value
    engine = _engine(opts["deadline"], profile="llmi-compat")  # answers read exactly as LLM-I's reward reads them
    scorer = RewardScorer.from_env(env, engine=engine, factors=RewardFactors.preset(factor_preset))
    scorer.require_judges()
    bench = InDomainBenchmark(data_file, scorer, split=split)
    answers = _answers(opts, engine)
    _evaluate(bench, opts, answers=answers, judge=None, kind="indomain", close=(scorer,))


@eval.command("judge-agreement")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="OpenING's data folder.")
@click.option("--verdicts", "verdict_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A judge's verdicts in the arena files' shape (repeatable).")
@click.option("--run", "runs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A pairwise run folder (repeatable).")
@click.option("--outputs", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Judge the arena's pairs now: a folder of <MODEL>_output folders (the systems' answers), "
                   "with the --judge-* options; the pairwise run goes to --out.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@judge_options
@run_options
@_handled
def judge_agreement(data: Path, verdict_files: tuple[Path, ...], runs: tuple[Path, ...], outputs: Path | None,
                    as_json: bool, **opts: Any) -> None:
    """Agreement with OpenING's human verdicts: ties force-divided, kept and excluded.

    The published IntJudge and GPT-4o verdicts are always shown as reference lines (82.42% and
    71.08% with ties force-divided, as the OpenING paper reports); add a judge's verdicts from a
    file (--verdicts), a pairwise run (--run), or by judging the arena's pairs now (--outputs).

    \b
    Examples:
      llmi eval judge-agreement --data OpenING/
      llmi eval judge-agreement --data OpenING/ --outputs gen_outputs/ --judge-base-url http://127.0.0.1:8000/v1
    """
    import json

    from rich.console import Console

    from ..evaluate.agreement import ARENA_FILES, agreement, arena_dir, load_verdicts, reference_lines
    from ..evaluate.pairwise import PairwiseBenchmark, agreement_table, judge_label, verdicts_of
    from ..evaluate.runs import RunDir
    from ..evaluate.summary import Summary

    human = load_verdicts(arena_dir(data) / ARENA_FILES["human"])
    lines = reference_lines(data)
    for path in verdict_files:
        lines.append(agreement(load_verdicts(path), human, name=path.name))
    folders = list(runs)
    if outputs is not None:  # judge the pairs first (a resumable pairwise run), then compare
        bench = PairwiseBenchmark(data, outputs)
        result = _evaluate(bench, opts, answers=None, judge=_judge(opts, max_tokens=400), kind="pairwise", summary=False)
        folders.append(result.run.path)
    for folder in folders:
        run = RunDir(folder)
        records = run.records()
        lines.append(agreement(verdicts_of(records), human, name=judge_label(run.config(), records, folder.name)))
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in lines], indent=2))
        return
    _print_summary(Console(), Summary("agreement", (), (agreement_table(lines),)))


@eval.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The merged run's folder (new).")
@_handled
def merge(runs: tuple[Path, ...], out_dir: Path) -> None:
    """Join the shard runs RUNS of one benchmark into one run, with its report."""
    from rich.console import Console

    from ..evaluate.job import finish_run
    from ..evaluate.runs import merge_runs

    console = Console(stderr=True, highlight=False)
    merged, warnings = merge_runs(runs, out_dir)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
    summary, report = finish_run(merged)
    _print_summary(console, summary)
    console.print(f"run: {merged.path}\nreport: {report}")


@eval.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (headline, tables, notes).")
@_handled
def report(run_dir: Path, as_json: bool) -> None:
    """Print a run's summary and write its report.html again from results.jsonl."""
    import json

    from rich.console import Console

    from ..evaluate.job import finish_run
    from ..evaluate.runs import RunDir

    console = Console(stderr=True, highlight=False)
    summary, path = finish_run(RunDir(run_dir))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_summary(console, summary)
    console.print(f"report: {path}")
