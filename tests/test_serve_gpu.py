"""The image server on a real GPU (opt in: ``pytest -m gpu tests/test_serve_gpu.py``).

The tiny pipelines again, on ``cuda`` in bfloat16, in-process and through the launcher with
``--gpus 0`` (one child seeing only GPU 0 as ``cuda``).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from serve_fixtures import free_port, png_b64, start_server, tiny_models  # noqa: F401

from llmi.serve.client import ImageServerClient
from llmi.serve.launcher import Launcher, ServerSpec

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="session", autouse=True)  # before the session-scoped tiny_models
def _needs_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_generate_and_edit_on_cuda_bf16(tiny_models):
    gen = start_server(tiny_models, "generation", device="cuda", dtype="bfloat16", threads=None)
    edit = start_server(tiny_models, "edit", device="cuda", dtype="bfloat16", threads=None)
    try:
        info = gen.info()
        assert (info["device"], info["dtype"]) == ("cuda", "bfloat16")
        body = {"prompt": "a fox", "height": 64, "width": 64, "num_inference_steps": 4, "seed": 3}
        a = httpx.post(gen.url + "/generate/", json=body, timeout=120)
        b = httpx.post(gen.url + "/generate/", json=body, timeout=120)
        assert a.status_code == 200 and a.json()["images"] == b.json()["images"]
        r = httpx.post(
            edit.url + "/edit/",
            json={"image_b64": png_b64(40, 30, "RGBA", (0, 0, 0, 0)), "prompt": "blue", "num_inference_steps": 2},
            timeout=120,
        )
        assert r.status_code == 200, r.text
    finally:
        gen.stop()
        edit.stop()


def test_launcher_one_server_per_gpu(tiny_models):
    port = free_port()
    launcher = Launcher(
        [ServerSpec(0, "0", port, "127.0.0.1")],
        ["--model", str(tiny_models["generation"]), "--no-access-log"],
        ready_timeout=300,
        say=print,
    )
    try:
        assert launcher.start()
        url = f"http://127.0.0.1:{port}"
        info = httpx.get(url + "/info").json()
        assert info["device"] == "cuda" and info["cuda_visible_devices"] == "0"

        async def go():
            async with ImageServerClient(url) as c:
                return await c.generate("x", height=64, width=64, num_inference_steps=2, seed=1)

        assert len(asyncio.run(go())) == 1
    finally:
        launcher.stop()
