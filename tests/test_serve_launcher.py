"""The multi-server launcher with two CPU "devices": real subprocesses, real ports."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest
from click.testing import CliRunner
from serve_fixtures import free_port, tiny_models, wait_for  # noqa: F401 - fixtures

from llmi.errors import ConfigError
from llmi.serve.client import ImageServerClient
from llmi.serve.launcher import Launcher, ServerSpec, parse_gpus, urls_line


def test_parse_gpus_and_specs():
    assert parse_gpus("0,1, 2") == ["0", "1", "2"]
    for bad in ("", "0,0", "gpu1", "1,-2"):
        with pytest.raises(ConfigError):
            parse_gpus(bad)
    specs = [ServerSpec(i, d, 8000 + i, "127.0.0.1") for i, d in enumerate(["3", "cpu"])]
    assert urls_line(specs) == "http://127.0.0.1:8000,http://127.0.0.1:8001"
    assert specs[0].env({})["CUDA_VISIBLE_DEVICES"] == "3" and specs[0].device == "cuda"
    assert specs[1].env({})["CUDA_VISIBLE_DEVICES"] == "" and specs[1].device == "cpu"


def test_cli_rejects_bad_gpus():
    from llmi.cli import main

    result = CliRunner().invoke(main, ["serve", "image", "--model", "tiny", "--gpus", "0,0"])
    assert result.exit_code != 0 and "twice" in result.output


@pytest.mark.slow  # three server start-ups in subprocesses: ~35 s on a busy 2-core host
def test_two_cpu_servers_balance_and_crashed_or_hung_ones_are_restarted(tiny_models):
    base = free_port()
    while True:  # two consecutive free ports
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", base + 1))
            break
        except OSError:
            base = free_port()
    specs = [ServerSpec(i, "cpu", base + i, "127.0.0.1") for i in range(2)]
    messages: list[str] = []
    launcher = Launcher(
        specs,
        ["--mode", "generation", "--model", str(tiny_models["generation"]), "--threads", "1",
         "--no-access-log", "--log-level", "warning"],
        ready_timeout=180,
        max_restarts=1,
        stop_grace=10,
        say=messages.append,
        health_interval=0.5,
        health_failures=2,
    )  # fmt: skip
    try:
        assert launcher.start(), messages
        urls = [s.url() for s in specs]

        async def burst():
            async with ImageServerClient(urls, max_concurrency_per_server=1) as c:
                small = {"height": 16, "width": 16, "num_inference_steps": 1, "guidance_scale": 1.0}
                return await asyncio.gather(*(c.generate_result("x", seed=i, **small) for i in range(6)))

        results = asyncio.run(burst())
        assert {r.server for r in results} == set(urls)
        infos = [httpx.get(u + "/info").json() for u in urls]
        assert all(i["counters"]["completed"] >= 1 for i in infos)
        assert sum(i["counters"]["completed"] for i in infos) == 6
        assert {i["cuda_visible_devices"] for i in infos} == {""}

        # One server crashes, the other hangs (stopped: its /health never answers).
        crashed, hung = launcher.children[1], launcher.children[0]
        old_pids = (crashed.proc.pid, hung.proc.pid)
        os.kill(crashed.proc.pid, signal.SIGKILL)
        os.kill(hung.proc.pid, signal.SIGSTOP)
        reports: list[str] = []
        wait_for(lambda: reports.extend(launcher.check()) or (crashed.ready and hung.ready), timeout=240, interval=0.2)
        assert any(f"{crashed.spec.label} exited with code -9; restarting" in r for r in reports), reports
        assert any(f"{hung.spec.label} did not answer /health" in r for r in reports), reports
        assert (crashed.proc.pid, hung.proc.pid) != old_pids and crashed.restarts == hung.restarts == 1
        for url, child in zip(urls, launcher.children):
            assert httpx.get(url + "/info").json()["pid"] == child.proc.pid
    finally:
        launcher.stop()
    assert all(c.proc.poll() is not None for c in launcher.children)
    assert any("all servers stopped" in m for m in messages)


@pytest.mark.slow  # two server start-ups in subprocesses
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_launcher_prints_urls_and_stops_everything(tiny_models, stop_signal):
    import subprocess
    import sys
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmi.cli", "serve", "image", "--model", str(tiny_models["generation"]),
         "--gpus", "cpu,cpu", "--port", str(port), "--threads", "1", "--no-access-log",
         "--log-level", "warning", "--shutdown-grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("export QWEN_IMAGE_SERVER_URL="), line
        urls = line.split("=", 1)[1].split("#")[0].strip().split(",")
        assert len(urls) == 2
        pids = [httpx.get(u.replace("localhost", "127.0.0.1") + "/info").json()["pid"] for u in urls]
        proc.send_signal(stop_signal)
        code = proc.wait(timeout=60)
        assert code in (0, 130)
        time.sleep(0.2)
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
