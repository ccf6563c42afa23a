"""What the one HTTP layer costs per call, against a real server on 127.0.0.1.

The same small JSON request (a judge-sized answer, ~2 KB), three ways, interleaved in rounds:

1. raw httpx with one pooled ``AsyncClient`` (the floor: no classification, no bounds);
2. ``llmi.http.request`` with that pooled client passed as ``client=`` (what a caller that
   keeps connections pays for classification, the size bound and the whole-call timeout);
3. ``llmi.http.request`` without a client (a fresh client and connection per call: what the
   backends do so that nothing outlives its event loop; the TLS context is shared);
4. a fresh ``httpx.AsyncClient`` per call as httpx builds it by default (what llmi's backends
   and writer did before the shared TLS context: each client loads the CA bundle).

Sequential calls show per-call latency; ``--concurrency`` calls at once (a GRPO step's judges
arrive together) show throughput.

    python bench/bench_http.py            # ~20 s
    python bench/bench_http.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from llmi.http import Service, request

BODY = json.dumps({"choices": [{"message": {"content": "Text: 4\nImage: 5\n" + "x" * 2000}}]}).encode()
SERVICE = Service("the bench server")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


async def raw(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post(url, json={"q": 1})
    response.raise_for_status()
    response.json()


async def fresh(url: str) -> None:
    async with httpx.AsyncClient() as client:
        await raw(client, url)


async def layered(client: httpx.AsyncClient | None, url: str) -> None:
    (await request(SERVICE, "POST", url, json={"q": 1}, timeout=30, client=client)).json()


async def timed(make, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await make()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start


async def main(n: int, rounds: int, concurrency: int) -> None:
    ThreadingHTTPServer.request_queue_size = 256  # the default backlog of 5 resets a burst
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    ways = ["raw httpx, pooled", "llmi.http, pooled client", "llmi.http, fresh client", "httpx, fresh default client"]
    try:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as pooled:
            calls = [lambda: raw(pooled, url), lambda: layered(pooled, url), lambda: layered(None, url), lambda: fresh(url)]
            for label, conc in (("sequential", 1), (f"{concurrency} at once", concurrency)):
                times: dict[str, list[float]] = {w: [] for w in ways}
                for _ in range(rounds):  # interleaved, so that a noisy machine hits all three alike
                    for way, call in zip(ways, calls):
                        times[way].append(await timed(call, n, conc))
                base = statistics.median(times[ways[0]])
                print(f"{label}: {n} calls, median of {rounds} rounds")
                for way in ways:
                    t = statistics.median(times[way])
                    print(f"   {way:<28}: {t * 1000 / n:7.2f} ms/call  {n / t:7.0f} calls/s  {t / base:5.2f}x raw")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="100 calls, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 100, 3
    asyncio.run(main(args.calls, args.rounds, args.concurrency))
