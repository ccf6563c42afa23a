"""Test-time scaling: the judged score of ``--scale N`` against one sample, and what each stage costs.

Two parts, in one run:

1. **Quality** on a fixed prompt set (the first ``--items`` text-only OpenING items, in file
   order): for each item, one sample (``llmi.agenerate``, seed s) and the scaled document
   (``Scaler``, N candidates with seeds s..s+N-1, so candidate 0 *is* that sample), both with the
   embedded SmolLM2 writer and the offline tools. Every one of these prompts asks for a
   picture, so the image count asked for is LLM-I's 99 ("at least one"; ``--image-num none``:
   any number), given to the scaled run and to every reward. The selection judge is SmolLM2
   behind llama.cpp's OpenAI-compatible server (the LLM judge of ``llmi.rewards``, seeds 0 and 1,
   read as expected scores from its token probabilities). Both documents are then scored by a
   **held-out** judging: LLM-I's reward as it is (image count + LLM judge, LLM-I's weights and
   options, the judge's written scores; no MLLM judge offline) with three other judge seeds,
   averaged, so the selection cannot simply have picked the judge's lucky draw; and the same with
   failed tags penalised as the selection's reward does (offline no MLLM judge sees a failed
   picture). The chosen candidate before enhancement and polish is scored too, so each stage's
   share of the gain shows. ``--rows FILE`` appends each finished item and resumes from it.
   Reported: mean held-out reward,
   mean selection reward, share of tags that made an image, wins/ties/losses, and each stage's
   cost (wall time, writer tokens, tool calls, judge calls) as a multiple of one sample.
2. **Concurrency**: the same pipeline against a writer endpoint that serves requests in
   parallel (``llmi.testing.LatencyChatServer``, ``--latency`` seconds per answer, as vLLM or
   SGLang would with free capacity) and tools of fixed latency: the wall time of ``--scale N``
   against one sample. The embedded writer decodes one answer at a time, so on this machine part
   1's ratio is bounded by its token rate; part 2 is what candidates writing at once cost.

Run: python bench/bench_scaling.py [--items 20] [--n 4] [--max-tokens 200] [--skip-quality] [--json out.json] [--rows rows.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

from llmi.api import agenerate
from llmi.engine import Engine, ToolLimits
from llmi.errors import WriterError
from llmi.llm import Sampling
from llmi.llm.openai_compat import OpenAIWriter
from llmi.rewards.config import RewardOptions
from llmi.scaling import ScaleConfig, Scaler
from llmi.scaling.costs import Meter, MeteredWriter, tool_calls
from llmi.scaling.judges import Judges, selection_scorers
from llmi.scaling.selection import score_candidates
from llmi.scaling.record import Candidate
from llmi.testing import LatencyChatServer, LatencyTool

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT_SEEDS = (101, 202, 303)
STAGES = ("sample", "validate", "select", "enhance", "polish")


# -- part 1: quality with the real small model ---------------------------------------------------


def start_judge(port: int) -> tuple[subprocess.Popen, str]:
    from llmi.llm.local import default_model_path

    cmd = [sys.executable, str(ROOT / "tests" / "writers" / "_llama_server.py"), "--model", str(default_model_path()),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
           "--n_threads", "1", "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the judge server (llama_cpp.server) exited; is llama-cpp-python[server] installed?")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the judge server did not start within 180 s")


def opening_prompts(limit: int) -> list[str]:
    from llmi.evaluate.opening import load_opening

    for candidate in (ROOT / "shared" / "data" / "opening", ROOT.parent.parent / "shared" / "data" / "opening",
                      Path("/work/shared/data/opening")):
        if (candidate / "test_data.jsonl").is_file():
            items, _ = load_opening(candidate)
            return [it.prompt for it in items if it.text_only][:limit]
    raise SystemExit("OpenING's test_data.jsonl not found (shared/data/opening)")


_ASKS_FOR_A_PICTURE = re.compile(r"\b(image|picture|photo|diagram|illustrat\w*|draw|chart|map|figure|sketch|visual\w*)s?\b", re.I)


def asked_images(prompt: str) -> int | None:
    """The image count a prompt asks for, in LLM-I's convention: 99 (at least one) when it asks
    for a picture at all, else ``None`` (any number)."""
    return 99 if _ASKS_FOR_A_PICTURE.search(prompt) else None


async def held_out(doc, prompt: str, judges: Judges, engine: Engine, image_num: int | None) -> float | None:
    """The mean reward over the held-out judge seeds: LLM-I's reward as it is (its options: no
    penalty for failed tags; the judges' written scores, sampled at temperature 0.5)."""
    scorers = selection_scorers(engine, judges, HELD_OUT_SEEDS, options=RewardOptions.preset("llmi"))
    scored = await score_candidates([Candidate(0, 0, doc)], scorers, prompt, image_num, Meter())
    return scored[0].score


def made_share(doc) -> float:
    segs = doc.image_segments
    return sum(s.ok for s in segs) / len(segs) if segs else 1.0


def penalised(value: float | None, doc) -> float | None:
    """The reward with llmi's ``failed_tools="penalise"``: 0.2 x the share of tags that made no
    image (what the selection optimises; offline no MLLM judge sees a failed picture)."""
    return None if value is None else value - 0.2 * (1.0 - made_share(doc))


async def quality(args: argparse.Namespace) -> dict:
    from llmi.llm.local import LocalWriter

    proc, judge_url = start_judge(args.judge_port)
    rows = _done_rows(args.rows)
    try:
        prompts = opening_prompts(args.items)
        if rows:
            print(f"resuming: {len(rows)} of {len(prompts)} items already in {args.rows}", flush=True)
        writer = LocalWriter()
        sampling = Sampling(max_tokens=args.max_tokens, seed=None)
        judges = Judges.from_urls(judge_url)
        base_engine, scaled_engine = Engine.from_env(), Engine.from_env()
        try:  # loads the model and starts the chart workers outside the measurements
            await agenerate("Warm up.", writer=writer, engine=base_engine, sampling=replace(sampling, seed=0, max_tokens=60))
        except WriterError:
            pass
        done = {r["item"] for r in rows}
        for i, prompt in enumerate(prompts):
            if i in done:
                continue
            seed = 1000 + 17 * i
            image_num = asked_images(prompt) if args.image_num == "auto" else None
            meter = Meter()
            started = time.perf_counter()
            one = await agenerate(prompt, writer=MeteredWriter(writer, meter), engine=base_engine,
                                  sampling=replace(sampling, seed=seed))
            single = time.perf_counter() - started
            meter.tools(one)
            config = ScaleConfig(n=args.n, image_num=image_num, expected_scores=not args.sampled_scores)
            scaler = Scaler(writer, scaled_engine, config=config, judges=judges)
            started = time.perf_counter()
            best = await scaler.arun(prompt, sampling=replace(sampling, seed=seed))
            scaled = time.perf_counter() - started
            record = best.meta["scaling"]
            # the chosen candidate as it was before enhancement and polish (its tools: the cache)
            selected = await scaled_engine.arun(record["answers"]["selected"], meta=best.meta)
            row = {
                "item": i, "prompt": prompt[:80], "seed": seed, "image_num": image_num, "single_seconds": single, "scaled_seconds": scaled,
                "single_cost": meter.cost().to_dict() | {"seconds": single},
                "stages": {s["name"]: s["cost"] for s in record["stages"]},
                "chosen": record["selection"]["chosen"], "method": record["selection"]["method"],
                "kept_changes": sum(c["kept"] for c in record["enhancements"]), "changes": len(record["enhancements"]),
                "polish": record["polish"]["status"],
                "selection_single": next((c["score"] for c in record["candidates"] if c["index"] == 0), None),
                "selection_final": record["scores"].get("final"),
                "made_single": made_share(one), "made_scaled": made_share(best),
                "made_selected": made_share(selected),
            }
            for name, doc in (("single", one), ("selected", selected), ("scaled", best)):
                row[f"held_out_{name}"] = value = await held_out(doc, prompt, judges, base_engine, image_num)
                row[f"penalised_{name}"] = penalised(value, doc)
            rows.append(row)
            if args.rows:  # one line per finished item: an interrupted run resumes where it stopped
                with args.rows.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
            print(f"item {i + 1}/{len(prompts)}: held-out {row['held_out_single']:.3f} -> selected "
                  f"{row['held_out_selected']:.3f} -> final {row['held_out_scaled']:.3f} (penalised "
                  f"{row['penalised_single']:.3f} -> {row['penalised_selected']:.3f} -> {row['penalised_scaled']:.3f}), "
                  f"{single:.1f} s -> {scaled:.1f} s, chose {row['chosen']} ({row['method']}), "
                  f"changes {row['kept_changes']}/{row['changes']}, polish {row['polish']}", flush=True)
        await judges.aclose()
        await base_engine.aclose()
        await scaled_engine.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return summarise(rows, args.n)


def _done_rows(path: Path | None) -> list[dict]:
    """The items an earlier, interrupted run of the same settings finished (``--rows``)."""
    if path is None or not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short when the run was stopped: that item runs again
    return rows


def summarise(rows: list[dict], n: int) -> dict:
    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.mean(values) if values else None

    def pairs_of(kind: str) -> list[tuple[float, float]]:
        return [(r[f"{kind}_single"], r[f"{kind}_scaled"]) for r in rows
                if r[f"{kind}_single"] is not None and r[f"{kind}_scaled"] is not None]

    pairs, llmi_pairs = pairs_of("penalised"), pairs_of("held_out")
    single_wall = statistics.mean(r["single_seconds"] for r in rows)
    single_tokens = statistics.mean(r["single_cost"]["writer_tokens"] for r in rows) or 1
    stages = {}
    for stage in STAGES:
        costs = [r["stages"][stage] for r in rows if stage in r["stages"]]
        if costs:
            stages[stage] = {
                "wall_x": statistics.mean(c["seconds"] for c in costs) / single_wall,
                "writer_tokens_x": statistics.mean(c["writer_tokens"] for c in costs) / single_tokens,
                "tool_calls": statistics.mean(c["tool_calls"] for c in costs),
                "judge_calls": statistics.mean(c["judge_calls"] for c in costs),
            }
    return {
        "items": len(rows), "n": n,
        "held_out_single": mean("held_out_single"), "held_out_selected": mean("held_out_selected"),
        "held_out_scaled": mean("held_out_scaled"), "penalised_single": mean("penalised_single"),
        "penalised_selected": mean("penalised_selected"), "penalised_scaled": mean("penalised_scaled"),
        "made_selected": mean("made_selected"),
        "selection_single": mean("selection_single"), "selection_final": mean("selection_final"),
        "made_single": mean("made_single"), "made_scaled": mean("made_scaled"),
        "wins": sum(b > a for a, b in pairs), "ties": sum(b == a for a, b in pairs), "losses": sum(b < a for a, b in pairs),
        "llmi_wins": sum(b > a for a, b in llmi_pairs), "llmi_ties": sum(b == a for a, b in llmi_pairs),
        "llmi_losses": sum(b < a for a, b in llmi_pairs),
        "single_seconds": single_wall, "scaled_seconds": statistics.mean(r["scaled_seconds"] for r in rows),
        "wall_x": statistics.mean(r["scaled_seconds"] for r in rows) / single_wall,
        "stages": stages, "rows": rows,
    }


# -- part 2: candidates written at once ----------------------------------------------------------

CHART = ("Squares grow fast.\n<imgen>{'source': 'code', 'description': 'squares of 1 to 5', "
         "'params': {'code': 'plt.bar(range(1, 6), [1, 4, 9, 16, 25])'}}</imgen>\n")


def scripted(body: dict) -> str:
    """A writer that answers every request sensibly: an answer with a search and a chart, or a
    judge's JSON, or a revised paragraph."""
    system = body["messages"][0]["content"] if body.get("messages") else ""
    seed = body.get("seed") or 0
    if "compare" in system and "answers" in system:
        return json.dumps({"reason": "clearer", "better": "A", "best": 1})
    if "Text:" in system or "text" in str(body.get("response_format", "")):
        return json.dumps({"text": 3 + seed % 2, "image": 4})
    if "revise the prose" in system:
        return "Kangaroos are marsupials that live in Australia and move by hopping."
    return (f"Kangaroos live in Australia (draft {seed}).\n<imgen>{{'source': 'search', 'description': 'a kangaroo', "
            f"'params': {{'query': 'red kangaroo {seed % 3}'}}}}</imgen>\n" + CHART)


async def concurrency(args: argparse.Namespace) -> dict:
    out = {}
    with LatencyChatServer(args.latency, respond=scripted) as writer_srv, LatencyChatServer(0.2, respond=scripted) as judge_srv:
        def engine() -> Engine:
            return Engine({"search": LatencyTool("search", latency=0.3), "code": LatencyTool("code", latency=0.1)},
                          limits={"search": ToolLimits(concurrency=16), "code": ToolLimits(concurrency=16)})

        writer = OpenAIWriter(writer_srv.base_url, model="latency-model")
        judges = Judges.from_urls(judge_srv.base_url)
        singles, scaled, sampling_stage = [], [], []
        for rep in range(args.reps):
            eng = engine()
            t = time.perf_counter()
            await agenerate("Tell me about kangaroos.", writer=writer, engine=eng, sampling=Sampling(seed=rep * 10))
            singles.append(time.perf_counter() - t)
            await eng.aclose()
            eng = engine()
            scaler = Scaler(writer, eng, config=ScaleConfig(n=args.n), judges=judges)
            t = time.perf_counter()
            doc = await scaler.arun("Tell me about kangaroos.", sampling=Sampling(seed=rep * 10))
            scaled.append(time.perf_counter() - t)
            sampling_stage.append(doc.meta["scaling"]["stages"][0]["cost"]["seconds"])
            await eng.aclose()
        await judges.aclose()
        one = statistics.median(singles)
        out = {"latency": args.latency, "n": args.n, "single_seconds": one,
               "scaled_seconds": statistics.median(scaled), "sample_stage_seconds": statistics.median(sampling_stage),
               "wall_x": statistics.median(scaled) / one, "sample_x": statistics.median(sampling_stage) / one,
               "writer_peak": writer_srv.peak}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--judge-port", type=int, default=18931)
    parser.add_argument("--latency", type=float, default=1.0, help="part 2: seconds per writer answer")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every figure and row here")
    parser.add_argument("--rows", type=Path, help="append each finished item here, and resume from it")
    parser.add_argument("--image-num", choices=("auto", "none"), default="auto",
                        help="auto: 99 (at least one image, LLM-I's convention) for prompts that ask for a picture")
    parser.add_argument("--sampled-scores", action="store_true", help="select by written judge scores, not expected values")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the judge server is stopped too

    conc = asyncio.run(concurrency(args))
    print(f"\nconcurrency (writer endpoint {args.latency:g} s per answer, serving in parallel):")
    print(f"  one sample {conc['single_seconds']:.2f} s; --scale {args.n} {conc['scaled_seconds']:.2f} s = "
          f"{conc['wall_x']:.2f}x (sampling stage alone {conc['sample_x']:.2f}x; {conc['writer_peak']} answers at once)")
    result = {"concurrency": conc}
    if not args.skip_quality:
        q = asyncio.run(quality(args))
        result["quality"] = q
        print(f"\nquality over {q['items']} OpenING text-only items, --scale {q['n']} vs one sample (SmolLM2 writer and judge):")
        print(f"  held-out reward, failed tags penalised  {q['penalised_single']:.3f} one sample -> "
              f"{q['penalised_selected']:.3f} selected -> {q['penalised_scaled']:.3f} final "
              f"(final vs one sample: wins {q['wins']}, ties {q['ties']}, losses {q['losses']})")
        print(f"  held-out reward, LLM-I's options        {q['held_out_single']:.3f} one sample -> "
              f"{q['held_out_selected']:.3f} selected -> {q['held_out_scaled']:.3f} final "
              f"(wins {q['llmi_wins']}, ties {q['llmi_ties']}, losses {q['llmi_losses']})")
        sel_single, sel_final = q["selection_single"], q["selection_final"]
        if sel_single is not None and sel_final is not None:
            print(f"  selection reward  {sel_single:.3f} -> {sel_final:.3f}")
        print(f"  tags that made an image {q['made_single']:.1%} one sample -> {q['made_selected']:.1%} selected "
              f"-> {q['made_scaled']:.1%} final")
        print(f"  wall time {q['single_seconds']:.1f} s -> {q['scaled_seconds']:.1f} s = {q['wall_x']:.2f}x one sample")
        print("  stage      wall (x one sample)  writer tokens (x)  tool calls  judge calls")
        for name, s in q["stages"].items():
            print(f"  {name:<10} {s['wall_x']:>10.2f}x {s['writer_tokens_x']:>18.2f}x {s['tool_calls']:>11.1f} "
                  f"{s['judge_calls']:>12.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
