"""The viewer's speed: listing a folder of many documents, opening and filtering a large
evaluation run, through ``llmi view`` itself (a separate process, on loopback) as a browser asks.

1. a folder of ``--docs`` documents (each written by ``Document.save``: prose, a chart, a
   failed search, a fallback): the list page cold (the first request reads every
   ``document.json``) and warm (nothing changed: one ``stat`` per folder and file), after
   ``--touch`` documents changed, and a search by prompt;
2. an evaluation run of ``--items`` items (ten criteria each, documents saved as ``llmi eval``
   saves them): the run's page cold and warm, the item table filtered by criterion score, by a
   tool's failures, by a failure reason and by text, sorted by score, an item's page, and two
   such runs compared item by item;
3. a training run of ``--steps`` logged steps (``metrics.jsonl`` as ``llmi train grpo`` writes it,
   samples every 50 steps): its page cold (the curves drawn) and warm, another step's samples,
   and the page after the run logged one more step.

The baselines, measured in the same run, are what a viewer without the lazy, cached index
would pay: every ``document.json`` read (``Index(root).entries()`` in this process), and a
run read again on every request (``load_run``, ``load_training``).

Run: python bench/bench_view.py [--docs 2000] [--items 2160] [--steps 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmi.document import Document, Fallback, ImageSegment, TextSegment
from llmi.evaluate.runs import RunDir
from llmi.image import ImageData
from llmi.tags import ImageRequest
from llmi.view.evals import load_run
from llmi.view.index import Index
from llmi.view.training import load_training

TOPICS = ("kangaroos", "the water cycle", "volcanoes", "the Colosseum", "rainfall in London", "owls", "tides",
          "the Parthenon", "photosynthesis", "comets")


def document(i: int, picture: ImageData) -> Document:
    topic = TOPICS[i % len(TOPICS)]
    prose = f"# About {topic} ({i})\n\n" + f"{topic.capitalize()} are a fine subject. " * 30 + "\n\n"
    return Document((
        TextSegment(prose),
        ImageSegment(0, "<imgen>{'source': 'code', ...}</imgen>", "code", "ok",
                     ImageRequest("code", f"chart {i}", {"code": "plt.bar([1, 2, 3], [3, 1, 2])\nplt.title('x')"}),
                     image=picture, backend="sandbox", elapsed=0.08, attempts=1),
        TextSegment("\n\nA photo:\n\n"),
        ImageSegment(1, "<imgen>{'source': 'search', ...}</imgen>", "search", "failed",
                     ImageRequest("search", f"a photo of {topic}", {"query": topic}), error="no search backend",
                     error_type="ToolNotConfigured"),
        ImageSegment(2, "<imgen>{'source': 'diffusion', ...}</imgen>", "diffusion", "ok",
                     ImageRequest("diffusion", f"a painting of {topic}", {"prompt": f"a painting of {topic}"}),
                     image=picture, backend="library", fallback=Fallback("diffusion", "search", "no generator")),
    ), meta={"prompt": f"Tell me about {topic}, please (number {i})", "writer": "bench"})


def make_folder(root: Path, n: int) -> Path:
    picture = ImageData.blank(64, 48, color="#3b6fb6")
    for i in range(n):
        document(i, picture).save(root / "docs" / f"doc-{i:05d}", ("json",))
    return root


def make_run(path: Path, n: int, criteria: int, *, shift: int = 0) -> Path:
    picture = ImageData.blank(64, 48, color="#3b6fb6")
    run = RunDir(path)
    run.start({"kind": "rubric", "benchmark": {"path": "bench.json", "sha256": "a" * 64, "items": n},
               "judge": {"model": "bench-judge"}, "seed": 0})
    for i in range(n):
        key = f"{i:05d}"
        doc = document(i, picture)
        doc.save(run.item_dir(key), ("json",))
        scores = [(i * 7 + j * 3 + shift) % 3 for j in range(criteria)]
        crit = [{"name": f"r{j + 1}", "text": f"Criterion {j + 1} of item {i}.", "max": 2, "score": s,
                 "justification": f"The answer {'meets' if s == 2 else 'misses'} criterion {j + 1}. " * 6}
                for j, s in enumerate(scores)]
        if i % 17 == 0:
            crit[3] = {**crit[3], "score": None, "error": "no JSON", "error_type": "InvalidReply"}
        valid = [c["score"] for c in crit if c["score"] is not None]
        run.append({"key": key, "index": i, "status": "ok", "prompt": doc.meta["prompt"],
                    "doc": f"items/{key}/document.json", "images": {"tags": 3, "made": 2},
                    "tools": {"code": {"total": 1, "success": 1}, "search": {"total": 1, "success": 0},
                              "diffusion": {"total": 1, "success": 1}},
                    "image_failures": [{"index": 1, "tool": "search", "error_type": "ToolNotConfigured",
                                        "error": "no search backend"}],
                    "timing": {"write": 1.2, "tools": 0.4, "judge": 2.5}, "criteria": crit, "valid": len(valid),
                    "total": sum(valid), "score": sum(valid) / (2 * len(valid)), "seconds": 4.1})
    run.close()
    return path


def make_training(path: Path, steps: int) -> Path:
    """A GRPO run's logs: a ``metrics.jsonl`` line per step (TRL's figures, ``tags/*``,
    ``time/*``), an evaluation every 500 steps, two sample documents every 50."""
    picture = ImageData.blank(64, 48, color="#3b6fb6")
    path.mkdir(parents=True)
    (path / "llmi-train.json").write_text(json.dumps({"model": "bench-model", "loss": "dapo", "num_generations": 8}))
    with open(path / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for step in range(1, steps + 1):
            row = {"step": step, "loss": 1 / step, "reward": 0.2 + 0.6 * step / steps + 0.05 * (step % 7) / 7,
                   "reward_std": 0.1, "rewards/combined/mean": 0.2 + 0.6 * step / steps, "learning_rate": 1e-6,
                   "completions/mean_length": 300.0, "grad_norm": 0.4, **{f"tags/{k}": 0.5 + 0.4 * step / steps
                   for k in ("well_formed", "answers_with_tags", "answers_well_formed", "images_ok")},
                   **{f"time/{k}": 10.0 + step % 5 for k in ("step", "generation", "tools", "judges", "optimisation")}}
            fh.write(json.dumps(row) + "\n")
            if step % 500 == 0:
                fh.write(json.dumps({"step": step, "eval_reward": 0.5, "eval_loss": 0.3}) + "\n")
            if step % 50 == 0:
                for i in (0, 7):
                    document(step + i, picture).save(path / "samples" / f"step-{step:06d}" / f"sample-{i}", ("json",))
    return path


class Served:
    """``llmi view ROOT`` in its own process."""

    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "llmi", "view", str(root), "--port", "0"],
                                     stdout=subprocess.PIPE, text=True, env=env)
        printed = ""
        for line in self.proc.stdout:  # type: ignore[union-attr]
            printed += line
            if "Ctrl-C" in line:
                break
        match = re.search(r"http://127\.0\.0\.1:\d+", printed)
        if match is None:
            raise SystemExit(f"llmi view did not start:\n{printed}")
        self.http = httpx.Client(base_url=match.group(0), timeout=120)

    def time(self, path: str) -> float:
        started = time.perf_counter()
        r = self.http.get(path)
        elapsed = time.perf_counter() - started
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code}")
        return elapsed

    def close(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median_of(repeat: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--items", type=int, default=2160)
    ap.add_argument("--criteria", type=int, default=10)
    ap.add_argument("--touch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmi-bench-view-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_folder(root, args.docs)
        make_run(root / "runs" / "a", args.items, args.criteria)
        make_run(root / "runs" / "b", args.items, args.criteria, shift=1)
        make_training(root / "train" / "grpo", args.steps)
        print(f"made {args.docs} documents, two runs of {args.items} items and a training run of {args.steps} steps "
              f"in {time.perf_counter() - t:.1f} s")

        started = time.perf_counter()
        served = Served(root)  # as it starts it walks the folder (names and stat only) to say what it found
        start = time.perf_counter() - started
        try:
            print(f"\n1. a folder of {args.docs} documents (and two runs)")
            first = served.time("/")
            warm = median_of(args.repeat, lambda: served.time("/"))
            cold = median_of(args.repeat, lambda: _fresh_index(root, shown=200))
            everything = median_of(args.repeat, lambda: _fresh_index(root))
            print(f"  llmi view started in {start:.2f} s (a Python process, the walk included)")
            print(f"  list page, the first request (the 200 newest entries read): {ms(first)}")
            print(f"  list page, warm (nothing changed: a stat per folder and file): {ms(warm)} median of {args.repeat}")
            print(f"  cold listing in process (walk + read the 200 shown): {ms(cold)}; "
                  f"reading every document.json, as a viewer without the lazy index would: {ms(everything)} "
                  f"-> {everything / cold:.1f}x")
            for i in range(args.touch):
                path = root / "docs" / f"doc-{i * 7 % args.docs:05d}" / "document.json"
                path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
            print(f"  list page after {args.touch} documents changed: {ms(served.time('/'))}")
            print(f"  search by prompt ('volcanoes number 1'): {ms(median_of(args.repeat, lambda: served.time('/?q=volcanoes+number+1')))}")
            print(f"  a document with its panels: {ms(median_of(args.repeat, lambda: served.time(f'/doc/docs/doc-{min(42, args.docs - 1):05d}')))}")

            print(f"\n2. an evaluation run of {args.items} items, {args.criteria} criteria each")
            cold = served.time("/eval/runs/a")
            print(f"  open, cold (records read, summary, plots, first 200 rows): {ms(cold)}")
            print(f"  open, warm: {ms(median_of(args.repeat, lambda: served.time('/eval/runs/a')))}")
            for label, query in (("criterion r4 scored 0", "criterion=r4&cscore=0"),
                                 ("judge failed on r4", "criterion=r4&cscore=failed"),
                                 ("search failed", "tool=search:failed"),
                                 ("failure reason", "failure=judge+%C2%B7+r4+%C2%B7+InvalidReply"),
                                 ("text 'volcanoes'", "q=volcanoes"),
                                 ("sorted by score, highest first", "sort=score&desc=true"),
                                 ("score 0.4-0.6, sorted by r2, page 3", "min=0.4&max=0.6&sort=crit:r2&page=3")):
                print(f"  filter: {label}: {ms(median_of(args.repeat, lambda: served.time('/eval/runs/a?' + query)))}")
            baseline = median_of(args.repeat, lambda: _reload(root / "runs" / "a"))
            print(f"  baseline, the run read again on every request (in process): {ms(baseline)}")
            print(f"  an item's page: {ms(median_of(args.repeat, lambda: served.time(f'/item/runs/a?key={min(1234, args.items - 1):05d}')))}")
            served.time("/eval/runs/b")
            print(f"  two runs compared, warm: {ms(median_of(args.repeat, lambda: served.time('/compare?a=runs/a&b=runs/b')))}"
                  f"; only changed items, by difference: "
                  f"{ms(median_of(args.repeat, lambda: served.time('/compare?a=runs/a&b=runs/b&show=changed&sort=delta')))}")

            print(f"\n3. a training run of {args.steps} logged steps")
            print(f"  open, cold (metrics read, four curves drawn, the latest step's samples): {ms(served.time('/train/train/grpo'))}")
            print(f"  open, warm: {ms(median_of(args.repeat, lambda: served.time('/train/train/grpo')))}")
            print(f"  another step's samples: {ms(median_of(args.repeat, lambda: served.time('/train/train/grpo?step=50')))}")
            baseline = median_of(args.repeat, lambda: _timed(lambda: load_training(root / "train" / "grpo", "train/grpo")))
            print(f"  baseline, the run read again on every request (in process): {ms(baseline)}")
            with open(root / "train" / "grpo" / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": args.steps + 1, "reward": 0.9}) + "\n")
            print(f"  after one more step was logged: {ms(served.time('/train/train/grpo'))}")
        finally:
            served.close()


def _fresh_index(root: Path, shown: int | None = None) -> float:
    started = time.perf_counter()
    index = Index(root)
    for found in index.found()[:shown]:
        index.describe(found)
    return time.perf_counter() - started


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _reload(path: Path) -> float:
    return _timed(lambda: load_run(path, "runs/a"))


if __name__ == "__main__":
    main()
