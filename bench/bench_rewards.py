"""Scoring a GRPO-sized batch: llmi's batch scorer against the bound its limits allow and
against LLM-I's structure, in the same run, on the same local servers.

A batch of N answers (default 256) with T diffusion tags each (default 4). A local server
process answers an OpenAI-compatible images API (``POST /v1/images/generations``, or
Qwen-Image's ``POST /generate/``) after a fixed tool latency, and an OpenAI-compatible
``/v1/chat/completions`` (an LLM judge and an MLLM judge) after a fixed judge latency. The
judges are llmi's ``JudgeClient``; the diffusion tool is by default a minimal HTTP tool over
small connection pools (``--tool-backend bench``), so that the figures measure the scorer's
scheduling rather than one image client; ``--tool-backend openai`` (llmi's ``OpenAIDiffusion``)
or ``qwen`` (its Qwen-Image client) run llmi's own clients instead.

* **llmi**: ``RewardScorer.ascore_batch``: one engine, the tool calls under a concurrency limit
  of C_tool, each judge under C_judge.
* **bound**: no schedule can beat ``max(ceil(N·T / C_tool)·L_tool + L_judge,
  L_tool + ceil(N / C_judge)·L_judge)``: the tools take their waves, and the last judge call
  starts after the last tool call, or the judges take theirs after the first tools.
* **LLM-I's structure**: its reward manager's: a pool of 6 threads runs the answers' tools, each
  answer in a new pool of 8 threads; as answers finish, a pool of 8 threads scores them, each
  score in a new pool of 2 threads (LLM and MLLM judge).

Targets (issue 10): llmi within 1.3× of the bound and at least 5× faster than LLM-I's structure.

Run: python bench/bench_rewards.py [--answers 256] [--tags 4] [--tool-latency 2]
     [--judge-latency 4] [--tool-concurrency 128] [--judge-concurrency 64] [--group 8 --shared 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import multiprocessing
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

LLM_REPLY = "Text: 4\nImage: 5"
MLLM_REPLY = "Image Quality: 4\nTask Relevance: 3\nText-Image Relevance: 5"


# -- the servers --------------------------------------------------------------------------------


def _png_b64() -> str:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def serve(port: int, tool_latency: float, judge_latency: float) -> None:
    """The fixed-latency servers (run in their own process)."""
    import uvicorn

    image = _png_b64()
    running = {"tool": 0, "judge": 0}
    stats = {"tool_calls": 0, "judge_calls": 0, "tool_peak": 0, "judge_peak": 0}

    async def reply(send, obj, status=200):
        body = json.dumps(obj).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/stats":
            return await reply(send, stats)
        if path.endswith("/v1/models"):
            return await reply(send, {"object": "list", "data": [{"id": "judge", "object": "model"}]})
        kind = "tool" if path in ("/generate/", "/v1/images/generations") else "judge"
        running[kind] += 1
        stats[f"{kind}_calls"] += 1
        stats[f"{kind}_peak"] = max(stats[f"{kind}_peak"], running[kind])
        try:
            if kind == "tool":
                await asyncio.sleep(tool_latency)
                if path == "/generate/":
                    return await reply(send, {"status": "success", "images": [image]})
                return await reply(send, {"created": 0, "data": [{"b64_json": image}]})
            await asyncio.sleep(judge_latency)
            text = MLLM_REPLY if b"Image Quality" in body else LLM_REPLY
            return await reply(send, {"id": "x", "object": "chat.completion", "model": "judge",
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                   "finish_reason": "stop"}]})
        finally:
            running[kind] -= 1

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", backlog=4096, timeout_keep_alive=30)


def start_servers(tool_latency: float, judge_latency: float) -> tuple[multiprocessing.Process, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(port, tool_latency, judge_latency), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/stats", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the bench servers did not start")


def server_stats(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/stats", timeout=5).json()


# -- the workload -------------------------------------------------------------------------------


def answers(n: int, tags: int, group: int, shared: int) -> list[tuple[str, list[str]]]:
    """``n`` answers of ``tags`` diffusion tags; within each GRPO group of ``group`` answers,
    the first ``shared`` tags are the same (rollouts of one prompt asking for the same picture)."""
    out = []
    for i in range(n):
        prompts = [f"group {i // group} picture {j}" if j < shared else f"answer {i} picture {j}" for j in range(tags)]
        text = "".join(
            f"Paragraph {j} of answer {i}, about its subject. "
            f"<imgen>{{'source': 'diffusion', 'description': 'picture {j}', 'params': {{'prompt': '{p}'}}}}</imgen>\n"
            for j, p in enumerate(prompts)
        )
        out.append((text, prompts))
    return out


def bound(n: int, calls: int, tool_latency: float, judge_latency: float, c_tool: int, c_judge: int) -> float:
    tools_then_judge = math.ceil(calls / c_tool) * tool_latency + judge_latency
    tool_then_judges = tool_latency + math.ceil(n / c_judge) * judge_latency
    return max(tools_then_judge, tool_then_judges)


# -- llmi ---------------------------------------------------------------------------------------


class BenchImageTool:
    """``diffusion`` through the images API, over small connection pools (one set per loop)."""

    source = "diffusion"
    backend = "bench-http"

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.pools = max(1, concurrency // 4)
        self._clients: dict = {}
        self._turn = 0

    async def run(self, call):
        import httpx

        from llmi.image import ImageData
        from llmi.tools.base import ToolOutput

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            from llmi.http import ssl_context

            self._clients[loop] = [httpx.AsyncClient(limits=httpx.Limits(max_connections=5), verify=ssl_context())
                                   for _ in range(self.pools)]
        self._turn += 1
        client = self._clients[loop][self._turn % self.pools]
        body = (await client.post(f"{self.url}/v1/images/generations",
                                  json={"model": "bench", "prompt": call.request.prompt, "size": "64x64"},
                                  timeout=call.timeout)).json()
        return ToolOutput(ImageData.from_bytes(base64.b64decode(body["data"][0]["b64_json"])))

    async def aclose(self) -> None:
        for client in self._clients.pop(asyncio.get_running_loop(), []):
            await client.aclose()



async def run_llmi(url: str, batch, args) -> tuple[float, list]:
    from llmi.engine import Engine, ToolLimits
    from llmi.rewards import ExtraInfo, JudgeClient, JudgeLimits, LLMJudge, MLLMJudge, RewardScorer, Sample
    if args.tool_backend == "bench":
        tool = BenchImageTool(url, args.tool_concurrency)
    elif args.tool_backend == "qwen":
        from llmi.tools.images.qwen import QwenImageDiffusion

        tool = QwenImageDiffusion(url, width=64, height=64, max_concurrency_per_server=args.tool_concurrency)
    else:
        from llmi.tools.images.openai import OpenAIDiffusion

        tool = OpenAIDiffusion(base_url=f"{url}/v1", model="bench", size="64x64")
    engine = Engine({"diffusion": tool}, limits={"diffusion": ToolLimits(concurrency=args.tool_concurrency, timeout=120)})
    limits = JudgeLimits(concurrency=args.judge_concurrency, timeout=120)
    scorer = RewardScorer(
        engine,
        llm_judge=LLMJudge(JudgeClient(f"{url}/llm/v1", model="judge", limits=limits, label="LLM judge")),
        mllm_judge=MLLMJudge(JudgeClient(f"{url}/mllm/v1", model="judge", limits=limits, label="MLLM judge")),
        sample_timeout=None,
    )
    samples = [Sample(text, ExtraInfo(args.tags, f"Question {i}")) for i, (text, _) in enumerate(batch)]
    started, cpu = time.perf_counter(), time.process_time()
    results = await scorer.ascore_batch(samples)
    elapsed = time.perf_counter() - started
    args.cpu = time.process_time() - cpu
    await scorer.aclose()
    await engine.aclose()
    return elapsed, results


# -- LLM-I's structure ------------------------------------------------------------------------------


def run_llmi_structure(url: str, batch, args) -> float:
    """LLM-I's reward manager's threads around the same HTTP calls (sync, as it makes them)."""
    import httpx
    from PIL import Image

    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))

    def generate(prompt: str):
        if args.tool_backend == "qwen":
            body = client.post(f"{url}/generate/", json={"prompt": prompt, "height": 64, "width": 64}).json()
            encoded = body["images"][0]
        else:
            body = client.post(f"{url}/v1/images/generations", json={"model": "bench", "prompt": prompt, "size": "64x64"}).json()
            encoded = body["data"][0]["b64_json"]
        return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")

    def interleaved(text: str, prompts: list[str]):
        with ThreadPoolExecutor(max_workers=8) as pool:  # a new pool per answer, as LLM-I makes it
            images = list(pool.map(generate, prompts))
        return text, images

    def judge(base: str, content) -> str:
        body = {"model": "judge", "messages": [{"role": "system", "content": base}, {"role": "user", "content": content}]}
        return client.post(f"{url}/{'mllm' if 'Image Quality' in base else 'llm'}/v1/chat/completions", json=body).json()

    def jpeg_url(img) -> str:
        buf = io.BytesIO()
        img.save(buf, format="JPEG")
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()

    def score(text: str, images) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:  # LLM and MLLM judge, a new pool per score
            llm = pool.submit(judge, "Text: Image:", f"Question: q\nAnswer: {text}")
            content = [{"type": "text", "text": "Question: q\nAnswer: "}] + [
                {"type": "image_url", "image_url": {"url": jpeg_url(img), "max_pixels": 784_000}} for img in images
            ]
            mllm = pool.submit(judge, "Image Quality:", content)
            llm.result(), mllm.result()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=6) as vlm, ThreadPoolExecutor(max_workers=8) as scoring:
        tool_runs = [vlm.submit(interleaved, text, prompts) for text, prompts in batch]
        scores = [scoring.submit(score, *f.result()) for f in as_completed(tool_runs)]
        for f in as_completed(scores):
            f.result()
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=256)
    ap.add_argument("--tags", type=int, default=4)
    ap.add_argument("--tool-latency", type=float, default=2.0, help="seconds per image (a diffusion call)")
    ap.add_argument("--judge-latency", type=float, default=4.0, help="seconds per judge reply")
    ap.add_argument("--tool-concurrency", type=int, default=128)
    ap.add_argument("--judge-concurrency", type=int, default=64)
    ap.add_argument("--group", type=int, default=8, help="answers per GRPO group")
    ap.add_argument("--shared", type=int, default=0, help="tags shared by a group's answers (the engine's cache)")
    ap.add_argument("--tool-backend", choices=("bench", "openai", "qwen"), default="bench",
                    help="the diffusion client: the bench's, llmi's images API client, or llmi's Qwen-Image client")
    ap.add_argument("--skip-baseline", action="store_true", help="do not run LLM-I's structure")
    args = ap.parse_args()

    proc, url = start_servers(args.tool_latency, args.judge_latency)
    try:
        batch = answers(args.answers, args.tags, args.group, args.shared)
        unique = len({p for _, prompts in batch for p in prompts})
        # a short warm-up (connections, imports) that is not measured
        asyncio.run(run_llmi(url, answers(4, 1, 1, 0), argparse.Namespace(**{**vars(args), "tags": 1})))
        before = server_stats(url)
        elapsed, results = asyncio.run(run_llmi(url, batch, args))
        after = server_stats(url)
        bad = [r for r in results if r.status != "ok"]
        if bad:
            raise SystemExit(f"{len(bad)} answers were not scored: {bad[0].error}")
        lower = bound(args.answers, unique, args.tool_latency, args.judge_latency, args.tool_concurrency,
                      args.judge_concurrency)
        tools = sum(r.timings["tools"] for r in results) / len(results)
        judges = sum(r.timings["judges"] for r in results) / len(results)
        print(f"{args.answers} answers x {args.tags} {args.tool_backend} diffusion tags ({unique} distinct tool calls), tool latency "
              f"{args.tool_latency:g} s, judge latency {args.judge_latency:g} s, limits: tools {args.tool_concurrency}, "
              f"each judge {args.judge_concurrency}")
        print(f"llmi batch scorer:        {elapsed:7.2f} s   ({after['tool_calls'] - before['tool_calls']} tool calls, "
              f"{after['judge_calls'] - before['judge_calls']} judge calls; peak at the server: tools "
              f"{after['tool_peak']}, judges {after['judge_peak']}; mean per answer: tools {tools:.2f} s, judges {judges:.2f} s)")
        print(f"bound from the limits:    {lower:7.2f} s   -> llmi at {elapsed / lower:.2f}x the bound (target <= 1.3x); "
              f"the scorer used {args.cpu:.1f} s of CPU (load average {os.getloadavg()[0]:.1f})")
        if not args.skip_baseline:
            baseline = run_llmi_structure(url, batch, args)
            print(f"LLM-I's structure:        {baseline:7.2f} s   -> llmi {baseline / elapsed:.1f}x faster (target >= 5x)")
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
