"""Charts: 16 simple charts through the engine's sandboxed code tool, against two baselines.

* **cold** — LLM-I's approach: a fresh ``python -c`` interpreter per chart (imports numpy,
  pandas, matplotlib, seaborn, runs the code, saves the PNG). Run two at a time, one per core,
  so the baseline gets the same parallelism as the pool.
* **warm** — the same charts rendered in this already-warm interpreter (no sandbox, no
  process boundary): the floor for per-chart latency. Measured alternately with llmi's
  one-chart documents, so both see the same load on a shared machine.
* **llmi** — ``Engine(tools={"code": CodeSandboxTool(workers=2)})``: throughput of one document
  with 16 code tags, and per-chart latency of one-tag documents run one at a time.

Targets (issue 2): llmi throughput >= 8x cold; llmi median latency <= 1.5x warm.

    python bench/bench_charts.py             # about 30 s on 2 busy cores
    python bench/bench_charts.py --cold 16   # every chart cold too (the slow part)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CHARTS = [
    "plt.plot([1, 3, 2, 4])\nplt.title('line')",
    "plt.bar(['a', 'b', 'c'], [3, 5, 2])\nplt.title('bars')",
    "x = np.random.default_rng(0).normal(size=200)\nplt.hist(x, bins=20)",
    "plt.scatter(np.arange(30), np.arange(30) ** 0.5)\nplt.xlabel('x')",
    "plt.pie([30, 45, 25], labels=['A', 'B', 'C'], autopct='%1.0f%%')",
    "x = np.linspace(0, 2 * np.pi, 100)\nplt.plot(x, np.sin(x), label='sin')\nplt.plot(x, np.cos(x), label='cos')\nplt.legend()",
    "df = pd.DataFrame({'k': list('abcd'), 'v': [4, 2, 5, 1]})\nsns.barplot(data=df, x='k', y='v')",
    "df = pd.DataFrame({'year': range(2015, 2025), 'sales': [3, 4, 4, 5, 7, 6, 8, 9, 11, 12]})\ndf.plot(x='year', y='sales', marker='o')",
    "plt.barh(['north', 'south', 'east'], [10, 7, 4])\nplt.title('regions')",
    "plt.fill_between(range(10), [i * i for i in range(10)], alpha=0.4)",
    "plt.step(range(8), [1, 3, 2, 5, 4, 6, 5, 7])\nplt.grid(True)",
    "sns.heatmap(np.arange(16).reshape(4, 4), annot=True)",
    "plt.boxplot([np.arange(10), np.arange(5, 25)])\nplt.title('box')",
    "fig, ax = plt.subplots()\nax.errorbar(range(5), [2, 3, 5, 4, 6], yerr=0.5, fmt='o-')",
    "plt.plot([1, 2, 3], [3, 1, 2], 'r--')\nplt.title('销售额 (万元)')",
    "plt.stackplot(range(5), [1, 2, 3, 2, 1], [2, 2, 1, 3, 2])\nplt.title('stack')",
]

PRELUDE = (
    "import io, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "import numpy as np\nimport pandas as pd\nimport seaborn as sns\n"
)
SAVE = "\nbuf = io.BytesIO()\nplt.gcf().savefig(buf, format='png', bbox_inches='tight')\n"


def cold(codes: list[str], parallel: int) -> tuple[float, list[float]]:
    """Wall time for the batch and each chart's latency, one fresh interpreter per chart."""
    env = {**os.environ, "MPLBACKEND": "Agg"}

    def one(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", PRELUDE + code + SAVE], env=env, check=True)
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        latencies = list(pool.map(one, codes))
    return time.perf_counter() - t0, latencies


def warm_renderer():
    """A function rendering one chart in this interpreter, imports already done."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import seaborn as sns

    warnings.simplefilter("ignore")  # the warm baseline has no CJK fallback font configured

    def one(code: str) -> float:
        t = time.perf_counter()
        exec(code, {"plt": plt, "np": np, "pd": pd, "sns": sns})  # noqa: S102 - the baseline
        plt.gcf().savefig(io.BytesIO(), format="png", bbox_inches="tight")
        plt.close("all")
        return time.perf_counter() - t

    return one


def llmi(codes: list[str], workers: int, rounds: int) -> dict:
    """Throughput of a 16-tag document, and per-chart latency of one-tag documents.

    Latency is measured chart by chart, alternating with the warm in-process render of the
    same chart, so both see the same load on a shared machine.
    """
    from llmi.engine import Engine
    from llmi.tags import ImageRequest, serialise
    from llmi.tools.sandbox.tool import CodeSandboxTool

    warm_one = warm_renderer()
    tags = [serialise(ImageRequest("code", f"chart {i}", {"code": c})) for i, c in enumerate(codes)]
    tool = CodeSandboxTool(workers=workers)
    t = time.perf_counter()
    tool.warm_up()
    startup = time.perf_counter() - t
    engine = Engine({"code": tool}, cache=False)
    try:
        for tag, code in zip(tags[:3], codes[:3]):
            engine.run("warm-up " + tag)
            warm_one(code)
        latencies, warm_latencies = [], []
        for _ in range(rounds):
            for tag, code in zip(tags, codes):
                doc = engine.run(f"A chart: {tag}")
                seg = doc.image_segments[0]
                assert seg.status == "ok", seg.error
                latencies.append(seg.elapsed)
                warm_latencies.append(warm_one(code))
        text = "\n".join(f"Chart {i}: {tag}" for i, tag in enumerate(tags))
        t = time.perf_counter()
        doc = engine.run(text)
        wall = time.perf_counter() - t
        failed = [s.error for s in doc.image_segments if s.status != "ok"]
        assert not failed, failed
        level = tool.sandbox_level
    finally:
        engine.close()
    return {
        "startup": startup,
        "latencies": latencies,
        "warm": warm_latencies,
        "wall": wall,
        "level": level,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=8, help="charts for the cold baseline")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="latency rounds over the charts")
    args = parser.parse_args()
    n = len(CHARTS)

    result = llmi(CHARTS, args.workers, args.rounds)
    warm_lat = result["warm"]
    cold_codes = CHARTS[: max(1, min(args.cold, n))]
    cold_wall, cold_lat = cold(cold_codes, parallel=args.workers)

    cold_rate = len(cold_codes) / cold_wall
    llmi_rate = n / result["wall"]
    med = statistics.median
    print(
        f"charts: {n}  cores: {os.cpu_count()}  workers: {args.workers}  sandbox: {result['level']}"
    )
    print(
        f"cold python -c per chart ({len(cold_codes)} charts, {args.workers} at a time): "
        f"{cold_rate:.2f} charts/s, median {med(cold_lat) * 1000:.0f} ms/chart"
    )
    print(
        f"warm in-process:  median {med(warm_lat) * 1000:.0f} ms/chart "
        f"({1 / med(warm_lat):.1f} charts/s on one core)"
    )
    print(
        f"llmi engine + sandbox pool: {llmi_rate:.2f} charts/s (batch of {n} in "
        f"{result['wall']:.2f} s), median {med(result['latencies']) * 1000:.0f} ms/chart "
        f"(pool start-up {result['startup']:.1f} s, once)"
    )
    ratio = llmi_rate / cold_rate
    lat_ratio = med(result["latencies"]) / med(warm_lat)
    print(f"throughput vs cold: {ratio:.1f}x (target >= 8x) {'OK' if ratio >= 8 else 'MISSED'}")
    print(
        f"median latency vs warm: {lat_ratio:.2f}x (target <= 1.5x) "
        f"{'OK' if lat_ratio <= 1.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
