"""Engine scheduling overhead against a backend with a fixed latency L.

Targets (issue 2): 8 independent tags finish in <= 1.2 L; an edit chain of depth d in
<= (d + 0.2) L. Run: python bench/bench_engine.py [--latency 0.2] [--depth 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from llmi.engine import Engine, ToolLimits
from llmi.tags import ImageRequest, serialise
from llmi.testing import LatencyTool


def tag(source: str, **params) -> str:
    return serialise(ImageRequest(source, "bench", params))


def timed(engine: Engine, text: str) -> float:
    t0 = time.perf_counter()
    doc = engine.run(text)
    elapsed = time.perf_counter() - t0
    assert all(s.ok for s in doc.image_segments), [s.error for s in doc.image_segments]
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    L = args.latency
    tools = {"search": LatencyTool("search", latency=L), "edit": LatencyTool("edit", latency=L)}
    limits = {"search": ToolLimits(concurrency=8), "edit": ToolLimits(concurrency=8)}
    with Engine(tools, limits=limits, cache=False) as engine:
        engine.run(tag("search", query="warm-up"))
        wide = "".join(f"text {i} " + tag("search", query=f"q{i}") for i in range(8))
        chain = tag("search", query="root") + "".join(tag("edit", img_index=k, prompt=f"step {k}") for k in range(args.depth - 1))
        fan = [timed(engine, wide) for _ in range(args.repeats)]
        deep = [timed(engine, chain) for _ in range(args.repeats)]
    f, d = statistics.median(fan), statistics.median(deep)
    print(f"latency L = {L * 1000:.0f} ms, median of {args.repeats} runs")
    print(f"8 independent tags:        {f * 1000:7.1f} ms = {f / L:.3f} L   (target <= 1.2 L)")
    print(f"edit chain of depth {args.depth}:     {d * 1000:7.1f} ms = {d / L:.3f} L   (target <= {args.depth + 0.2:.1f} L)")


if __name__ == "__main__":
    main()
