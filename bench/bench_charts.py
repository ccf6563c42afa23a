"""Charts through llmi's sandbox against LLM-I's way (a fresh interpreter per chart), in one run.

Four figures, each against a baseline measured in the same run:

* **cold, one chart** — ``llmi render`` of a one-chart answer from a cold process, against one
  fresh ``python -c`` rendering the same chart (LLM-I's way: import numpy, pandas, matplotlib
  and seaborn, run the code, save the PNG). Alternated, ``--cold-rounds`` times. Target <= 1.0x.
* **cold, many charts** — ``llmi render`` of a ``--charts``-chart answer (default 48) from a
  cold process, against the throughput of fresh interpreters, two at a time (one per core,
  the parallelism the pool gets), start-up included: the figure a one-off command gets, which
  on 2 cores the ~1 s start-up keeps near 8-9x quiet (bench/README.md says why; the throughput
  target is the warm figure below). Also in CPU time (a second cold run, every process of
  llmi's sampled from /proc, against each fresh interpreter's own): the ratio an idle machine
  allows at most, which a busy one does not show.
* **warm** — the same answer through an already-started ``Engine`` (throughput, the figure the
  earlier benchmark reported: target >= 15x), and one-chart documents one at a time against
  the same chart in this already-warm interpreter (the floor for latency), alternated.
  Target: median latency <= 1.5x.
* **clean start** — what giving every job a fresh start costs: the job process's own set-up
  (namespaces, tmpfs, uid, limits, seccomp; ``setup_ms``) and the supervisor's clearing-away
  after it (``clear_ms``), medians over the warm run, in wall time and in CPU time (on a busy
  machine wall time mostly measures the wait for a core). Target: a few milliseconds.

    python bench/bench_charts.py                 # about a minute on 2 busy cores
    python bench/bench_charts.py --fresh 16      # more fresh interpreters (the slow part)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def charts(n: int) -> list[str]:
    """``n`` chart codes cycling through CHARTS, each distinct (so the engine's cache stays out)."""
    return [f"{CHARTS[i % len(CHARTS)]}\n# chart {i}" for i in range(n)]


def answer(codes: list[str]) -> str:
    from llmi.tags import ImageRequest, serialise

    return "\n".join(f"Chart {i}: " + serialise(ImageRequest("code", f"chart {i}", {"code": c}))
                     for i, c in enumerate(codes))  # fmt: skip


# --- baselines ----------------------------------------------------------------------------------


def fresh(code: str, cpu: list[float] | None = None) -> float:
    """LLM-I's way: one fresh interpreter renders one chart. Its wall time (its CPU time is
    appended to ``cpu``)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + code + SAVE], env={**os.environ, "MPLBACKEND": "Agg"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.returncode
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return time.perf_counter() - t


def fresh_batch(codes: list[str], parallel: int, cpu: list[float]) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda code: fresh(code, cpu), codes))
    return time.perf_counter() - t


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


# --- llmi ---------------------------------------------------------------------------------------


def llmi_render(text: str, folder: Path, sample_cpu: bool = False) -> float:
    """``llmi render`` of ``text`` from a cold process; its wall time (the document must be whole),
    or with ``sample_cpu`` the CPU seconds of its whole process tree (sandboxes and jobs too)."""
    import json

    source = folder / "answer.txt"
    source.write_text(text, encoding="utf-8")
    out = folder / f"out-{time.monotonic_ns()}"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "llmi", "render", str(source), "--out", str(out), "--format", "json", "-q"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    cpu = _tree_cpu(proc) if sample_cpu else 0.0
    assert proc.wait() == 0, proc.returncode
    wall = time.perf_counter() - t
    doc = json.loads((out / "document.json").read_text(encoding="utf-8"))
    failed = [s for s in doc["segments"] if s.get("type") == "image" and s.get("status") != "ok"]
    assert not failed, failed[:2]
    return cpu if sample_cpu else wall


def _tree_cpu(proc: subprocess.Popen, every: float = 0.005) -> float:
    """CPU seconds used by ``proc`` and every descendant, sampled from /proc until it exits.

    Each process counts with the last figure seen, so this is a lower bound (short of at most
    ``every`` seconds per process); job processes of a sandbox are children of its zygote."""
    tick = os.sysconf("SC_CLK_TCK")
    tree, last = {proc.pid}, {}
    while proc.poll() is None:
        stats = {}
        for name in os.listdir("/proc"):
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                stats[int(name)] = (int(fields[1]), fields[19], (int(fields[11]) + int(fields[12])) / tick)
            except (OSError, ValueError, IndexError):
                continue  # not a process, or it just exited
        grew = True
        while grew:  # parents are not always listed before their children
            new = {pid for pid, (ppid, _, _) in stats.items() if ppid in tree} - tree
            tree |= new
            grew = bool(new)
        for pid in tree & stats.keys():
            _, started, used = stats[pid]
            last[(pid, started)] = used
        time.sleep(every)
    return sum(last.values())


def warm_engine(codes: list[str], workers: int, rounds: int) -> dict:
    """Throughput of one document with every chart, latency of one-chart documents, clean-start costs."""
    from llmi.engine import Engine
    from llmi.tools.sandbox.tool import CodeSandboxTool

    warm_one = warm_renderer()
    tool = CodeSandboxTool(workers=workers)
    tool.warm_up()
    engine = Engine({"code": tool}, cache=False)
    try:
        for code in codes[:3]:
            engine.run(answer([code]))
            warm_one(code)
        latencies, warm_latencies = [], []
        costs: dict[str, list[float]] = {k: [] for k in ("setup_ms", "setup_cpu_ms", "clear_ms", "clear_cpu_ms")}
        for _ in range(rounds):
            for code in codes[: len(CHARTS)]:
                seg = engine.run(answer([code])).image_segments[0]
                assert seg.status == "ok", seg.error
                latencies.append(seg.elapsed)
                for key, values in costs.items():
                    values.append(seg.info[key])
                warm_latencies.append(warm_one(code))
        t = time.perf_counter()
        doc = engine.run(answer(codes))
        wall = time.perf_counter() - t
        failed = [s.error for s in doc.image_segments if s.status != "ok"]
        assert not failed, failed
        level = tool.sandbox_level
    finally:
        engine.close()
    return {"latencies": latencies, "warm": warm_latencies, "wall": wall, "level": level, **costs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charts", type=int, default=48, help="charts in the many-chart answer")
    parser.add_argument("--fresh", type=int, default=8, help="fresh interpreters for the throughput baseline")
    parser.add_argument("--cold-rounds", type=int, default=3, help="one-chart cold renders (and fresh ones)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="latency rounds over the charts")
    args = parser.parse_args()
    med = statistics.median
    codes = charts(args.charts)

    with tempfile.TemporaryDirectory(prefix="llmi-bench-charts-") as tmp:
        folder = Path(tmp)
        # 1. cold, one chart: alternated with a fresh interpreter rendering the same chart
        cold_one, fresh_one = [], []
        for _ in range(args.cold_rounds):
            cold_one.append(llmi_render(answer(codes[:1]), folder))
            fresh_one.append(fresh(codes[0]))
        # 2. cold, many charts, against fresh interpreters two at a time
        cold_many = llmi_render(answer(codes), folder)
        # 2b. the same in CPU time, a run of its own (sampling would slow the timed one)
        cold_many_cpu = llmi_render(answer(codes), folder, sample_cpu=True)
    fresh_codes = codes[: max(1, min(args.fresh, len(codes)))]
    fresh_cpu: list[float] = []
    fresh_rate = len(fresh_codes) / fresh_batch(fresh_codes, parallel=args.workers, cpu=fresh_cpu)
    # 3. warm engine, 4. clean-start costs
    warm = warm_engine(codes, args.workers, args.rounds)

    n = len(codes)
    print(f"charts: {n}  cores: {os.cpu_count()}  workers: {args.workers}  sandbox: {warm['level']}")
    print(f"fresh interpreter per chart (LLM-I's way): median {med(fresh_one) * 1000:.0f} ms for one chart; "
          f"{fresh_rate:.2f} charts/s over {len(fresh_codes)}, {args.workers} at a time")  # fmt: skip
    ratio_one = med(cold_one) / med(fresh_one)
    print(f"llmi render, one chart, cold process: median {med(cold_one) * 1000:.0f} ms = {ratio_one:.2f}x "
          f"the fresh interpreter (target <= 1.0x) {'OK' if ratio_one <= 1.0 else 'MISSED'}")  # fmt: skip
    many_rate = n / cold_many
    ratio_many = many_rate / fresh_rate
    print(f"llmi render, {n} charts, cold process: {cold_many:.2f} s = {many_rate:.2f} charts/s = "
          f"{ratio_many:.1f}x the fresh interpreters (start-up included)")  # fmt: skip
    cpu_ratio = med(fresh_cpu) / (cold_many_cpu / n)
    print(f"  in CPU time: {cold_many_cpu:.1f} s for all {n} (every process of llmi's, sampled) = "
          f"{cold_many_cpu / n:.2f} s a chart vs {med(fresh_cpu):.2f} s a fresh interpreter = {cpu_ratio:.1f}x "
          f"(what an idle machine allows at most)")  # fmt: skip
    warm_rate = n / warm["wall"]
    ratio_warm = warm_rate / fresh_rate
    print(f"warm engine: {warm_rate:.2f} charts/s ({n} in {warm['wall']:.2f} s) = {ratio_warm:.1f}x "
          f"the fresh interpreters (target >= 15x) {'OK' if ratio_warm >= 15 else 'MISSED'}")  # fmt: skip
    lat = med(warm["latencies"]) / med(warm["warm"])
    print(f"warm engine latency: median {med(warm['latencies']) * 1000:.0f} ms vs {med(warm['warm']) * 1000:.0f} ms "
          f"in this interpreter = {lat:.2f}x (target <= 1.5x) {'OK' if lat <= 1.5 else 'MISSED'}")  # fmt: skip
    cost = {key: med(values) for key, values in warm.items() if key.endswith("_ms")}
    cpu = cost["setup_cpu_ms"] + cost["clear_cpu_ms"]
    print(f"clean start per job: set-up {cost['setup_ms']:.2f} ms ({cost['setup_cpu_ms']:.2f} ms CPU) in the job "
          f"process before its job arrives + clearing away {cost['clear_ms']:.2f} ms ({cost['clear_cpu_ms']:.2f} ms "
          f"CPU) after the answer = {cpu:.2f} ms of CPU (target: a few ms) {'OK' if cpu <= 5 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
