"""Evaluation throughput: items per minute of a rubric benchmark as a function of ``--concurrency``,
against sequential evaluation (LLM-I's scripts: one item, then one criterion, at a time).

Everything is real except the models: the writer and the judge are OpenAI-compatible servers on
loopback that answer after a fixed latency (``llmi.testing.LatencyChatServer``), the answer's one
search tag runs through the engine against a backend of fixed latency, and every item goes through
``llmi.evaluate`` as ``llmi eval rubric`` runs it (run folder, results.jsonl, documents, report).

Run: python bench/bench_eval.py [--items 16] [--criteria 5] [--writer-latency 0.2] [--judge-latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from llmi.engine import Engine, ToolLimits
from llmi.evaluate.answers import WriterAnswers
from llmi.evaluate.job import aevaluate
from llmi.evaluate.judging import make_judge
from llmi.evaluate.rubric import RubricBenchmark
from llmi.llm import Sampling
from llmi.llm.openai_compat import OpenAIWriter
from llmi.testing import LatencyChatServer, LatencyTool

ANSWER = ("Kangaroos live in Australia.\n<imgen>{'source': 'search', 'description': 'a kangaroo', "
          "'params': {'query': 'red kangaroo'}}</imgen>\nThey hop.")


def bench_file(folder: Path, items: int, criteria: int) -> Path:
    path = folder / "bench.json"
    path.write_text(json.dumps([
        {"prompt": f"Tell me about animal {i}.", **{f"r{j}": f"Criterion {j} of item {i}." for j in range(1, criteria + 1)}}
        for i in range(items)
    ]))
    return path


async def one_run(bench: Path, out: Path, writer_url: str, judge_url: str, *, concurrency: int, sequential: bool,
                  tool_latency: float) -> float:
    engine = Engine({"search": LatencyTool("search", latency=tool_latency)}, limits={"search": ToolLimits(concurrency=64)},
                    cache=False)
    writer = OpenAIWriter(writer_url, model="latency-model")
    answers = WriterAnswers(writer, engine, sampling=Sampling(max_tokens=200))
    judge = make_judge(judge_url, model="latency-model", concurrency=256, max_tokens=100)
    started = time.perf_counter()
    result = await aevaluate(RubricBenchmark(bench, criteria_concurrently=not sequential), out, answers=answers,
                             judge=judge, concurrency=concurrency)
    elapsed = time.perf_counter() - started
    await engine.aclose()
    await judge.aclose()
    assert all(r["status"] == "ok" and r["score"] == 1.0 for r in result.records), result.records[:1]
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--criteria", type=int, default=5)
    ap.add_argument("--writer-latency", type=float, default=0.2)
    ap.add_argument("--judge-latency", type=float, default=0.2)
    ap.add_argument("--tool-latency", type=float, default=0.05)
    ap.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated settings to measure")
    args = ap.parse_args()
    settings = [int(c) for c in args.concurrency.split(",")]
    judge_reply = json.dumps({"score": 2, "justification": "meets it"})
    with tempfile.TemporaryDirectory() as tmp, \
            LatencyChatServer(args.writer_latency, respond=lambda body: ANSWER) as writer, \
            LatencyChatServer(args.judge_latency, respond=lambda body: judge_reply) as judge:
        folder = Path(tmp)
        bench = bench_file(folder, args.items, args.criteria)
        ideal = args.writer_latency + args.tool_latency + args.criteria * args.judge_latency
        print(f"{args.items} items x {args.criteria} criteria; writer {args.writer_latency * 1000:.0f} ms, "
              f"judge {args.judge_latency * 1000:.0f} ms, search tag {args.tool_latency * 1000:.0f} ms per call")
        print(f"sequential floor: {ideal:.2f} s per item = {60 / ideal:.1f} items/min\n")
        warm = folder / "warm"
        warm.mkdir()
        asyncio.run(one_run(bench_file(warm, 1, 1), warm / "run", writer.base_url, judge.base_url, concurrency=1,
                            sequential=True, tool_latency=0.0))  # imports and first connections, not measured
        print(f"{'mode':<34}{'seconds':>9}{'items/min':>11}{'vs sequential':>15}")
        runs = [("sequential (LLM-I's scripts)", 1, True)] + [(f"llmi, --concurrency {c}", c, False) for c in settings]
        baseline = None
        for n, (label, concurrency, sequential) in enumerate(runs):
            elapsed = asyncio.run(one_run(bench, folder / f"run{n}", writer.base_url, judge.base_url,
                                          concurrency=concurrency, sequential=sequential,
                                          tool_latency=args.tool_latency))
            per_min = 60 * args.items / elapsed
            baseline = baseline or per_min
            print(f"{label:<34}{elapsed:>9.2f}{per_min:>11.1f}{per_min / baseline:>14.1f}x")


if __name__ == "__main__":
    main()
