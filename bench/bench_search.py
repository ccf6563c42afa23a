"""Benchmark the search tool: the local library, and candidate fetching.

1. Library indexing throughput (captions/s) over Debian's clip art (openclipart-svg and
   tuxpaint-stamps-default: about 8,400 captioned images), with caption reading and embedding
   timed apart, then an unchanged re-index (the incremental path) against it.
2. Query latency (median, p99) over a few hundred queries, present and absent concepts, warm
   model; the cold first query (model load) separately.
3. Cold ``llmi library search``: a fresh process per query (20 of them, interleaved), today's
   code against the code before the numpy encoder (``--baseline-ref``, taken from git: it
   loads sentence-transformers and torch), with bare ``python -c pass`` as the floor.
4. Candidate fetching through ``SafeFetcher.first_valid`` on a loopback server whose top-ranked
   candidates are slow or broken: time to the first valid image, concurrent (4 at once)
   against one after another.

    python bench/bench_search.py                     # everything (indexing takes minutes on 2 cores)
    python bench/bench_search.py --home DIR          # reuse (or build once into) a library at DIR
    python bench/bench_search.py --only-cold --home DIR
    python bench/bench_search.py --skip-library      # fetching only
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: the last commit whose library query loaded sentence-transformers (the cold-start baseline)
BASELINE_REF = "45b5257"

QUERIES_PRESENT = [
    "a red kangaroo", "the Eiffel tower", "a sleeping cat", "a sailing boat", "the flag of France",
    "a bicycle", "a christmas tree", "a laptop computer", "a pizza", "the planet Jupiter",
    "a fire truck", "a castle", "a birthday cake", "an owl", "a guitar", "a lighthouse",
    "a school bus", "a butterfly", "an apple", "a rocket", "a snowman", "a dinosaur", "a horse",
    "a world map", "a telephone", "a tree in autumn", "a soccer ball", "a penguin", "a train", "a house",
]
QUERIES_ABSENT = [
    "quantum chromodynamics", "a portrait of Albert Einstein", "a bar chart of GDP growth",
    "the Golden Gate Bridge at dusk", "a protein folding diagram", "a screenshot of a spreadsheet",
    "the Mona Lisa", "a satellite photo of Tokyo", "an MRI scan of the brain", "the Sydney Opera House",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- 1 and 2: the library ----------------------------------------------------------------------------


def bench_library(home: Path, rounds: int) -> None:
    from llmi.library import DEFAULT_SOURCES, Library
    from llmi.library.captions import read_caption
    from llmi.library.store import _image_files

    sources = [(p, lic, url) for p, lic, url in DEFAULT_SOURCES if Path(p).is_dir()]
    if not sources:
        print("library: skipped (install openclipart-svg and tuxpaint-stamps-default)")
        return
    lib = Library(home)
    print(f"library home: {home}   (cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f})")

    # caption reading alone, over every file
    files = list({f: Path(p) for p, _, _ in sources for f in _image_files(Path(p))}.items())  # symlinks once
    t0 = time.perf_counter()
    captions = [read_caption(f, root).text for f, root in files]
    t_caption = time.perf_counter() - t0
    print(f"captions read: {len(captions)} files in {t_caption:.1f} s = {len(captions) / t_caption:,.0f} files/s")

    t0 = time.perf_counter()
    lib.embedder.encode(["warm up"])
    t_load = time.perf_counter() - t0
    print(f"model load (MiniLM, cold): {t_load:.1f} s")

    if not lib.exists():
        total = 0
        t0 = time.perf_counter()
        for path, lic, url in sources:
            report = lib.add([path], licence=lic, licence_url=url)
            total += report.embedded
            print(f"  indexed {path}: {report.embedded} in {report.seconds:.1f} s")
        t_index = time.perf_counter() - t0
        print(f"INDEXING: {total} captions in {t_index:.1f} s = {total / t_index:.1f} captions/s "
              f"(caption reading {t_caption / t_index:.0%} of it; the rest is embedding and storing)")
    else:
        print(f"INDEXING: skipped, {lib.stats().items} images already indexed at {home}")
    t0 = time.perf_counter()
    again = lib.add([p for p, _, _ in sources])
    t_again = time.perf_counter() - t0
    print(f"re-index, nothing changed: {again.unchanged} unchanged in {t_again:.2f} s")

    # query latency
    fresh = Library(home)  # vectors from disk (the model is already loaded in this process)
    t0 = time.perf_counter()
    fresh.search("warm up")
    print(f"first query on a newly opened library (vectors loaded from disk): {time.perf_counter() - t0:.2f} s")
    queries = (QUERIES_PRESENT + QUERIES_ABSENT) * rounds
    latencies, found, wrong = [], 0, {}
    for q in queries:
        fresh._recent.clear()  # measure embedding every time, not the recent-query memory
        t0 = time.perf_counter()
        hits = fresh.search(q, k=5)
        latencies.append(time.perf_counter() - t0)
        above = bool(hits and hits[0].score >= fresh.threshold)
        found += above
        if above != (q in QUERIES_PRESENT):
            wrong[q] = (hits[0].item.title, hits[0].score) if hits else None
    ms = [x * 1000 for x in latencies]
    print(f"QUERY LATENCY over {len(ms)} queries on {fresh.stats().items} images: median {statistics.median(ms):.1f} ms, "
          f"p99 {percentile(ms, 99):.1f} ms  ({found}/{len(queries)} above the threshold; "
          f"{len(QUERIES_PRESENT)} of every {len(QUERIES_PRESENT) + len(QUERIES_ABSENT)} queries name a concept the library has)")
    for q, best in wrong.items():
        print(f"  threshold misses: {q!r} -> {best}")
    import numpy as np

    _ids, matrix = fresh._vectors()
    q = fresh.embedder.encode(["a red kangaroo"])[0]
    t0 = time.perf_counter()
    for _ in range(100):
        np.argpartition(-(matrix @ q), 5)[:5]
    print(f"  of which ranking {matrix.shape[0]} vectors: {(time.perf_counter() - t0) * 10:.2f} ms; the rest is embedding the query")


# -- 3: cold processes ------------------------------------------------------------------------------


def _baseline_source(ref: str, into: Path) -> Path | None:
    """``src/`` of the llmi at git ``ref``, or None when this checkout has no such commit."""
    repo = Path(__file__).resolve().parents[1]
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "src"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def bench_cold(home: Path, runs: int, ref: str) -> None:
    from llmi.library import Library

    if not Library(home).exists():
        print("cold queries: skipped (no library; build one with --home DIR or `llmi library add --defaults`)")
        return
    queries = (QUERIES_PRESENT + QUERIES_ABSENT)[: max(runs, 1)]
    here = Path(__file__).resolve().parents[1] / "src"
    with tempfile.TemporaryDirectory(prefix="llmi-bench-baseline-") as tmp:
        old = _baseline_source(ref, Path(tmp))
        variants = {"python -c pass (floor)": None, "llmi library search, now": here}
        if old is not None:
            variants[f"llmi library search at {ref} (sentence-transformers)"] = old
        else:
            print(f"  (no git commit {ref} here: the baseline is skipped)")
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(runs):
            query = queries[i % len(queries)]
            for label, src in variants.items():
                env = {**os.environ, "PYTHONPATH": str(src or here), "HF_HUB_OFFLINE": "1"}
                argv = ([sys.executable, "-c", "pass"] if src is None else
                        [sys.executable, "-m", "llmi", "library", "search", query, "--home", str(home)])
                t0 = time.perf_counter()
                proc = subprocess.run(argv, env=env, capture_output=True, text=True)
                times[label].append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise SystemExit(f"{label} failed:\n{proc.stderr[-2000:]}")
    print(f"COLD QUERIES, a fresh process each, {runs} queries interleaved (load average {os.getloadavg()[0]:.1f}):")
    for label, values in times.items():
        print(f"  {label:<58} median {statistics.median(values):.2f} s, p99 {percentile(values, 99):.2f} s")
    now = statistics.median(times["llmi library search, now"])
    for label, values in times.items():
        if "sentence-transformers" in label:
            print(f"  now / before: {now / statistics.median(values):.2f} (median), "
                  f"{percentile(times['llmi library search, now'], 99) / percentile(values, 99):.2f} (p99)")


# -- 4: candidate fetching ---------------------------------------------------------------------------


def _png(size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), "teal").save(buf, "PNG")
    return buf.getvalue()


def _serve(routes: dict[str, tuple[float, int, bytes, str]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            delay, status, body, ctype = routes.get(self.path, (0.0, 404, b"", "text/plain"))
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bench_fetch(repeats: int) -> None:
    from llmi.fetch import FetchPolicy, SafeFetcher

    good, small = _png(512), _png(100)
    jpeg_head = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
    routes = {
        "/1-slow-404": (0.8, 404, b"", "text/plain"),
        "/2-slow-html": (0.8, 200, b"<!DOCTYPE html><html>blocked</html>", "image/jpeg"),
        "/3-hangs": (5.0, 200, good, "image/png"),
        "/4-truncated": (0.5, 200, jpeg_head, "image/jpeg"),
        "/5-too-small": (0.3, 200, small, "image/png"),
        "/6-valid": (0.4, 200, good, "image/png"),
        "/7-valid": (0.1, 200, good, "image/png"),
    }
    server = _serve(routes)
    urls = [f"http://127.0.0.1:{server.server_address[1]}{p}" for p in routes]
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(min_width=400, min_height=400, read_timeout=2.0, total_timeout=4.0))
    print(f"\ncandidates in rank order: {', '.join(routes)} (read timeout 2 s, minimum 400x400)")
    results = {}
    for label, concurrency in (("one after another", 1), ("concurrent, 4 at once", 4), ("concurrent, 8 at once", 8)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _image, url = asyncio.run(fetcher.first_valid(urls, concurrency=concurrency))
            times.append(time.perf_counter() - t0)
            assert url.endswith("/6-valid"), url
        results[label] = statistics.median(times)
        print(f"  {label:24s} first valid image (/6-valid) after {results[label]:.2f} s (median of {repeats})")
    base = results["one after another"]
    print(f"FETCH: concurrent (4) is {base / results['concurrent, 4 at once']:.1f}x faster to the first valid image "
          f"than one after another ({base:.2f} s -> {results['concurrent, 4 at once']:.2f} s)")
    server.shutdown()


def _default_home() -> Path:
    from llmi.library import default_home

    return default_home()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="library folder to build or reuse (default: a temporary one)")
    parser.add_argument("--rounds", type=int, default=5, help="query rounds (40 queries each)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each fetching scenario")
    parser.add_argument("--cold", type=int, default=20, help="cold-process queries (0 to skip)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git commit of the cold-start baseline")
    parser.add_argument("--only-cold", action="store_true", help="only the cold-process queries")
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--skip-fetch", action="store_true")
    args = parser.parse_args()
    if args.only_cold:
        bench_cold(args.home or _default_home(), args.cold, args.baseline_ref)
        return
    if not args.skip_library:
        with tempfile.TemporaryDirectory(prefix="llmi-bench-library-") as tmp:
            home = args.home or Path(tmp)
            bench_library(home, args.rounds)
            if args.cold:
                print()
                bench_cold(home, args.cold, args.baseline_ref)
    if not args.skip_fetch:
        bench_fetch(args.repeats)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
