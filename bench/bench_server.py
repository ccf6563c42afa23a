"""Image server benchmark, on the tiny random Qwen-Image pipeline (CPU).

1. Throughput: the load-balanced client against two server processes vs one server process
   (both started by the real launcher, ``--threads 1`` each so one server cannot use both
   cores by itself), the same burst of requests.
2. Liveness under load: ``GET /health`` latency while generations run, llmi's server
   (inference on a worker thread) vs the blocking design (inference inside the ``async``
   handler, on the event loop — how a naive FastAPI server is written), each server in its
   own process, loaded by two clients generating back to back.

    python bench/bench_server.py            # ~1-2 minutes on 2 cores
    python bench/bench_server.py --quick    # fewer requests

Figures on a shared machine are noisy; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time

import httpx

from llmi.serve.schemas import GenerateRequest  # module level: FastAPI resolves the annotation


def free_ports(n: int) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        try:
            for i in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue


# --- 1. throughput ---------------------------------------------------------------------------


def throughput(model: str, requests: int, size: int, steps: int, rounds: int) -> None:
    from llmi.serve.client import ImageServerClient
    from llmi.serve.launcher import Launcher, ServerSpec

    base = free_ports(2)
    specs = [ServerSpec(i, "cpu", base + i, "127.0.0.1") for i in range(2)]
    launcher = Launcher(
        specs,
        ["--model", model, "--threads", "1", "--no-access-log", "--log-level", "warning",
         "--queue-size", "256"],
        say=lambda m: None,
    )  # fmt: skip
    params = {"height": size, "width": size, "num_inference_steps": steps, "guidance_scale": 1.0}

    async def burst(urls: list[str]) -> tuple[float, dict[str, int]]:
        async with ImageServerClient(urls, max_concurrency_per_server=2) as client:
            await client.generate("warm-up", seed=0, **params)  # first call pays lazy set-up
            if len(urls) > 1:
                await asyncio.gather(*(client.generate("warm-up", seed=0, **params) for _ in urls))
            t0 = time.perf_counter()
            await asyncio.gather(*(client.generate(f"p{i}", seed=i, **params) for i in range(requests)))
            return time.perf_counter() - t0, client.served_counts()

    try:
        if not launcher.start():
            sys.exit("servers failed to start")
        urls = [s.url() for s in specs]
        ones, twos = [], []
        for _ in range(rounds):  # alternate, so a change in the host's load hits both alike
            ones.append(asyncio.run(burst(urls[:1]))[0])
            seconds, counts = asyncio.run(burst(urls))
            twos.append(seconds)
    finally:
        launcher.stop()
    one_s, two_s = statistics.median(ones), statistics.median(twos)
    single = requests / one_s
    double = requests / two_s
    print(f"\n1. throughput, {requests} requests of {size}x{size}, {steps} steps (tiny pipeline, CPU), "
          f"median of {rounds} alternating rounds")  # fmt: skip
    print(f"   one server       : {one_s:6.2f} s  {single:6.1f} req/s  ({1000 * one_s / requests:.0f} ms/request)")
    print(f"   two, balanced    : {two_s:6.2f} s  {double:6.1f} req/s  split {sorted(counts.values())}")
    print(f"   speed-up         : {double / single:.2f}x  (rounds: "
          f"{', '.join(f'{o / t:.2f}x' for o, t in zip(ones, twos))})")  # fmt: skip


# --- 2. /health under load -------------------------------------------------------------------


def blocking_app(runner):
    """The baseline: inference runs inside the async handler, blocking the event loop."""
    from fastapi import FastAPI

    from llmi.serve.pipelines import GenerateJob

    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/generate/")
    async def generate(req: GenerateRequest):
        job = GenerateJob(req.prompt, req.negative_prompt, req.height, req.width,
                          req.num_inference_steps, req.guidance_scale, req.num_images_per_prompt,
                          req.seed or 0)  # fmt: skip
        runner.run(job)  # blocks the loop for the whole generation
        return {"status": "success", "images": []}

    return app


def start_server_process(args: list[str], port: int):
    """A server in its own process (its own GIL, as deployed); returns a stop function."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            sys.exit(f"server {args} exited with {proc.returncode}")
        try:
            ok = httpx.get(url + "/health", timeout=1).status_code == 200
            if ok and httpx.get(url + "/ready", timeout=1).status_code in (200, 404):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)

    def stop():
        proc.terminate()
        proc.wait(timeout=60)

    return url, stop


def serve_blocking(model: str, port: int) -> None:
    """``--serve-blocking``: run the baseline server (this process) until terminated."""
    import uvicorn

    from llmi.serve.pipelines import PipelineRunner, load_pipeline, set_threads

    set_threads(1)
    runner = PipelineRunner(load_pipeline(model, "generation", device="cpu"))
    uvicorn.run(blocking_app(runner), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def health_under_load(url: str, body: dict, probes: int) -> list[float]:
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                response = http.post(url + "/generate/", json=body)
                assert response.status_code == 200, response.text

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for t in loaders:
        t.start()
    time.sleep(0.5)  # let generations get going
    latencies = []
    with httpx.Client(timeout=120) as http:
        for _ in range(probes):
            t0 = time.perf_counter()
            assert http.get(url + "/health").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
    stop.set()
    for t in loaders:
        t.join()
    return latencies


def liveness(model: str, probes: int, size: int, steps: int) -> None:
    body = {"prompt": "a fox", "height": size, "width": size, "num_inference_steps": steps,
            "guidance_scale": 1.0, "seed": 1}  # fmt: skip
    port = free_ports(1)
    url, stop = start_server_process(
        ["-m", "llmi.serve", "image", "--model", model, "--device", "cpu", "--threads", "1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        port,
    )  # fmt: skip
    t0 = time.perf_counter()
    httpx.post(url + "/generate/", json=body, timeout=120)
    gen_ms = 1000 * (time.perf_counter() - t0)
    ours = health_under_load(url, body, probes)
    stop()

    port = free_ports(1)
    url, stop = start_server_process([__file__, "--serve-blocking", str(port), "--model", model], port)
    base = health_under_load(url, body, probes)
    stop()

    def row(name: str, xs: list[float]) -> str:
        xs = sorted(1000 * x for x in xs)
        p95 = xs[int(0.95 * (len(xs) - 1))]
        return f"   {name:<22}: median {statistics.median(xs):7.1f} ms  p95 {p95:7.1f} ms  max {xs[-1]:7.1f} ms"

    print(f"\n2. GET /health latency during back-to-back generations ({size}x{size}, {steps} steps, "
          f"~{gen_ms:.0f} ms each), {probes} probes")  # fmt: skip
    print(row("llmi (worker thread)", ours))
    print(row("blocking (on the loop)", base))
    print(f"   median ratio     : {statistics.median(base) / statistics.median(ours):.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the tiny one)")
    parser.add_argument("--serve-blocking", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from llmi.serve.testing import tiny_pipeline_path

    model = args.model or str(tiny_pipeline_path("generation"))
    if args.serve_blocking:
        serve_blocking(model, args.serve_blocking)
        return
    requests = 24 if args.quick else 60
    import os

    print(f"tiny Qwen-Image pipeline at {model}")
    print(f"host: {os.cpu_count()} CPUs, load average before the run {os.getloadavg()[0]:.1f}")
    throughput(model, requests, args.size, args.steps, 1 if args.quick else 3)
    liveness(model, 20 if args.quick else 50, 128, 10)


if __name__ == "__main__":
    main()
