"""The load-balanced client, the CLI and the Qwen tool backends against real servers."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from click.testing import CliRunner
from PIL import Image
from serve_fixtures import (  # noqa: F401 - fixtures
    edit_server,
    free_port,
    gen_server,
    gen_server_b,
    slow_server,
    tiny_models,
    wait_for,
)

from llmi.errors import BackendError, ConfigError, DependencyFailed, ToolNotConfigured, ToolTimeout
from llmi.image import ImageData
from llmi.serve.client import ImageServerClient, parse_urls

SMALL = {"height": 16, "width": 16, "num_inference_steps": 2, "guidance_scale": 1.0}


def served(server) -> int:
    return server.info()["counters"]["completed"]


def test_parse_urls():
    assert parse_urls(" a:1, http://b:2/ ,a:1") == ["http://a:1", "http://b:2"]
    with pytest.raises(ConfigError):
        parse_urls("ftp://x")
    with pytest.raises(ConfigError):
        ImageServerClient.from_env({}, "QWEN_IMAGE_SERVER_URL")


def test_generate_and_edit_return_image_data(gen_server, edit_server):
    async def main():
        async with ImageServerClient(gen_server.url) as gen, ImageServerClient(edit_server.url) as ed:
            images = await gen.generate("a fox", num_images_per_prompt=2, seed=5, **SMALL)
            edited = await ed.edit(images[0], "make it blue", num_inference_steps=2, seed=1)
            return images, edited

    images, edited = asyncio.run(main())
    assert [(i.width, i.height, i.format) for i in images] == [(16, 16, "png")] * 2
    assert len(edited) == 1 and edited[0].format == "png"


def test_load_balances_across_servers(gen_server, gen_server_b):
    before = (served(gen_server), served(gen_server_b))

    async def main():
        async with ImageServerClient([gen_server.url, gen_server_b.url], max_concurrency_per_server=1) as c:
            results = await asyncio.gather(*(c.generate_result("x", seed=i, **SMALL) for i in range(8)))
            return [r.server for r in results], c.served_counts()

    servers, counts = asyncio.run(main())
    assert set(servers) == {gen_server.url, gen_server_b.url}
    assert sum(counts.values()) == 8
    gained = (served(gen_server) - before[0], served(gen_server_b) - before[1])
    assert min(gained) >= 2 and sum(gained) == 8  # both servers did real work


def test_bounded_concurrency_per_server(slow_server):
    # One slot: the second call waits in the client instead of filling the server's queue.
    async def main():
        async with ImageServerClient(slow_server.url, max_concurrency_per_server=1) as c:
            first = asyncio.ensure_future(c.generate("a", seed=1, **SMALL))
            second = asyncio.ensure_future(c.generate("b", seed=2, **SMALL))
            await asyncio.to_thread(wait_for, lambda: slow_server.worker.in_flight == 1)
            depth_while_first_runs = slow_server.worker.queue_depth
            await asyncio.gather(first, second)
            return depth_while_first_runs

    assert asyncio.run(main()) == 0


def test_a_dead_server_fails_one_call_and_is_then_skipped(gen_server):
    # One POST per call, no retries inside the client: the failure is the caller's to retry,
    # and the server it came from is marked down so the next call goes elsewhere.
    dead = f"http://127.0.0.1:{free_port()}"

    async def main():
        async with ImageServerClient([dead, gen_server.url], max_concurrency_per_server=1) as c:
            with pytest.raises(BackendError) as first:
                await c.generate_result("x", seed=0, **SMALL)
            results = [await c.generate_result("x", seed=i, **SMALL) for i in range(3)]
            health = await c.health()
            return first.value, [r.server for r in results], health

    first, servers, health = asyncio.run(main())
    assert first.transient and first.status is None and dead in str(first)
    assert servers == [gen_server.url] * 3
    assert [(h.url, h.alive, h.ready) for h in health] == [(dead, False, False), (gen_server.url, True, True)]


def test_all_servers_down_is_transient_backend_error():
    async def main():
        async with ImageServerClient([f"http://127.0.0.1:{free_port()}"], timeout=5, cooldown=0.05) as c:
            await c.generate("x", **SMALL)

    with pytest.raises(BackendError) as info:
        asyncio.run(main())
    assert info.value.transient


def test_503_queue_full_marks_the_server_down_and_the_retry_goes_elsewhere(slow_server, gen_server):
    # Fill the slow server (one running, one waiting), then ask a client that prefers it.
    import httpx

    from llmi.http import Retry

    body = {"prompt": "x", **SMALL, "seed": 1}
    pool = [threading.Thread(target=httpx.post, args=(slow_server.url + "/generate/",), kwargs={"json": body, "timeout": 30}) for _ in range(2)]
    pool[0].start()
    wait_for(lambda: slow_server.worker.in_flight == 1)
    pool[1].start()
    wait_for(lambda: slow_server.worker.queue_depth == 1)
    retried: list[BaseException] = []

    async def main():
        async with ImageServerClient([slow_server.url, gen_server.url]) as c:
            return await Retry(backoff=0.01).run(
                c.generate_result, "y", seed=2, **SMALL, on_retry=lambda a, e, d: retried.append(e)
            )

    result = asyncio.run(main())
    for t in pool:
        t.join()
    assert result.server == gen_server.url
    # the full server's Retry-After marks it down; with another server up, the retry need not wait it out
    assert len(retried) == 1 and retried[0].status == 503 and retried[0].retry_after is None
    assert slow_server.info()["counters"]["rejected_queue_full"] == 1


def test_one_qwen_image_costs_at_most_three_posts_and_a_failed_server_is_avoided(gen_server):
    from http_fixtures import ScriptedServer, Step

    from llmi.engine import Engine, ToolLimits
    from llmi.tools.images.qwen import QwenImageDiffusion

    text = "<imgen>{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'a fox'}}</imgen>"
    limits = {"diffusion": ToolLimits(timeout=30, retries=2, backoff=0.01)}
    with ScriptedServer() as failing:
        # 1. a server that always fails: the engine's three attempts are the only three POSTs
        # ("Retry-After: 0" so that the test does not wait out the cool-downs)
        failing.script(*[Step(503, {"detail": "overloaded"}, headers={"Retry-After": "0"}) for _ in range(3)])
        tool = QwenImageDiffusion(failing.url, width=16, height=16, num_inference_steps=2)
        engine = Engine({"diffusion": tool}, limits=limits, cache=False)
        try:
            [seg] = engine.run(text).image_segments
        finally:
            engine.close()
        assert seg.status == "failed" and seg.attempts == 3
        assert [r.path for r in failing.seen] == ["/generate/"] * 3
        # 2. beside a healthy one: the failure marks it down and the retry goes to the other
        failing.seen.clear()
        # (its Retry-After of an hour is that server's: the engine's retry does not wait it out)
        failing.script(*[Step(503, {"detail": "overloaded"}, headers={"Retry-After": "3600"}) for _ in range(3)])
        tool = QwenImageDiffusion([failing.url, gen_server.url], width=16, height=16, num_inference_steps=2)
        engine = Engine({"diffusion": tool}, limits=limits, cache=False)
        try:
            [seg] = engine.run(text, deadline=10).image_segments  # waiting 30 s would give up
        finally:
            engine.close()
        assert seg.status == "ok" and seg.attempts == 2 and seg.info["server"] == gen_server.url
        assert len(failing.seen) == 1


def test_4xx_is_not_transient_and_not_retried(gen_server):
    async def main():
        async with ImageServerClient(gen_server.url) as c:
            await c.generate("x", height=8, width=16, num_inference_steps=2)

    with pytest.raises(BackendError) as info:
        asyncio.run(main())
    assert not info.value.transient
    assert "multiple of 16" in str(info.value)


def test_timeout_is_tool_timeout(slow_server):
    async def main():
        async with ImageServerClient(slow_server.url) as c:
            await c.generate("x", timeout=0.3, **SMALL)

    with pytest.raises(ToolTimeout):
        asyncio.run(main())


def test_client_works_from_several_event_loops(gen_server):
    client = ImageServerClient(gen_server.url)
    first = asyncio.run(client.generate("x", seed=3, **SMALL))
    second = asyncio.run(client.generate("x", seed=3, **SMALL))  # a new loop, same client
    assert first[0].data == second[0].data


def test_rgba_is_flattened_on_white_before_upload():
    buf = io.BytesIO()
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0, 255))
    im.save(buf, "PNG")
    flat = ImageData.from_bytes(buf.getvalue()).flattened().to_pil()
    assert flat.mode == "RGB"
    assert flat.getpixel((1, 1)) == (255, 255, 255)  # transparent → white, not black
    assert flat.getpixel((0, 0)) == (255, 0, 0)


# --- CLI -------------------------------------------------------------------------------------


def test_cli_generate_edit_health_info(gen_server, edit_server, tmp_path):
    from llmi.cli import main

    runner = CliRunner()
    out = tmp_path / "fox.png"
    result = runner.invoke(
        main,
        ["image", "generate", "a fox", "--url", gen_server.url, "--height", "16", "--width", "16",
         "--steps", "2", "--seed", "1", "-n", "2", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fox-1.png").exists() and (tmp_path / "fox-2.png").exists()

    edited = tmp_path / "edited.png"
    result = runner.invoke(
        main,
        ["image", "edit", "make it blue", "--image", str(tmp_path / "fox-1.png"), "--url",
         edit_server.url, "--steps", "2", "--out", str(edited)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(edited).format == "PNG"

    result = runner.invoke(main, ["image", "health"], env={"QWEN_IMAGE_SERVER_URL": gen_server.url})
    assert result.exit_code == 0 and "ready" in result.output
    dead = f"http://127.0.0.1:{free_port()}"
    assert runner.invoke(main, ["image", "health", "--url", dead]).exit_code == 1
    result = runner.invoke(main, ["image", "info", "--url", gen_server.url])
    assert '"pipeline_class": "QwenImagePipeline"' in result.output


# --- the tool backends -----------------------------------------------------------------------


def _chart_rgba() -> ImageData:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1), dpi=40)
    ax.bar([1, 2], [3, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", transparent=True)
    plt.close(fig)
    image = ImageData.from_bytes(buf.getvalue())
    assert image.to_pil().mode == "RGBA"
    return image


def test_tools_from_env():
    from llmi.tools.images.qwen import QwenImageDiffusion
    from llmi.tools.images.qwen import QwenImageEdit

    with pytest.raises(ToolNotConfigured):
        QwenImageDiffusion.from_env({})
    with pytest.raises(ToolNotConfigured):
        QwenImageEdit.from_env({})
    tool = QwenImageDiffusion.from_env({"QWEN_IMAGE_SERVER_URL": "h:1,h:2", "LLMI_QWEN_IMAGE_SIZE": "512x256"})
    assert tool.urls == ["http://h:1", "http://h:2"] and (tool.width, tool.height) == (512, 256)
    assert QwenImageEdit.from_env({"QWEN_EDIT_SERVER_URL": "h:3"}).urls == ["http://h:3"]


def test_tools_run_through_the_servers(gen_server, edit_server):
    from llmi.tags import ImageRequest
    from llmi.tools import ToolCall, load_backend

    Diffusion = load_backend("diffusion", "qwen")
    Edit = load_backend("edit", "qwen")
    diffusion = Diffusion(gen_server.url, width=16, height=16, num_inference_steps=2, guidance_scale=1.0)
    edit = Edit(edit_server.url, num_inference_steps=2)

    async def main():
        made = await diffusion.run(ToolCall(ImageRequest("diffusion", "d", {"prompt": "a fox"}), timeout=60))
        again = await diffusion.run(ToolCall(ImageRequest("diffusion", "d", {"prompt": "a fox"}), timeout=60))
        chart = await edit.run(
            ToolCall(ImageRequest("edit", "e", {"img_index": 0, "prompt": "make it red"}), input_image=_chart_rgba(), timeout=60)
        )
        with pytest.raises(DependencyFailed):
            await edit.run(ToolCall(ImageRequest("edit", "e", {"img_index": 0, "prompt": "x"})))
        await diffusion.aclose()
        await edit.aclose()
        return made, again, chart

    made, again, chart = asyncio.run(main())
    assert made.image.data == again.image.data  # the seed comes from the prompt
    assert made.info["server"] == gen_server.url and (made.image.width, made.image.height) == (16, 16)
    assert chart.image.format == "png" and chart.info["server"] == edit_server.url


def test_engine_fulfils_diffusion_and_edit_tags(gen_server, edit_server):
    from llmi.engine import Engine
    from llmi.tools.images.qwen import QwenImageDiffusion
    from llmi.tools.images.qwen import QwenImageEdit

    text = (
        "A fox:<imgen>{'source': 'diffusion', 'description': 'a fox', 'params': {'prompt': 'a red fox'}}</imgen>"
        " The same fox in blue:<imgen>{'source': 'edit', 'description': 'blue fox', "
        "'params': {'img_index': 0, 'prompt': 'make the fox blue'}}</imgen>"
    )
    tools = {
        "diffusion": QwenImageDiffusion(gen_server.url, width=16, height=16, num_inference_steps=2),
        "edit": QwenImageEdit(edit_server.url, num_inference_steps=2),
    }
    with Engine(tools) as engine:
        doc = engine.run(text)
    segs = doc.image_segments
    assert [s.status for s in segs] == ["ok", "ok"], [s.error for s in segs]
    assert [s.backend for s in segs] == ["qwen", "qwen"]
    assert segs[1].info["server"] == edit_server.url


def test_engine_configured_from_env_uses_the_servers(gen_server, gen_server_b, edit_server):
    from llmi.engine import Engine
    from llmi.tools.images.routing import diffusion_from_env, edit_from_env

    env = {
        "QWEN_IMAGE_SERVER_URL": f"{gen_server.url},{gen_server_b.url}",
        "QWEN_EDIT_SERVER_URL": edit_server.url,
        "DIFFUSION_BACKBONE": "qwen",  # LLM-I's switch
        "EDIT_BACKBONE": "qwen",
        "LLMI_QWEN_IMAGE_SIZE": "16x16",
        "LLMI_QWEN_IMAGE_STEPS": "2",
        "LLMI_QWEN_EDIT_STEPS": "2",
    }
    tools = {"diffusion": diffusion_from_env(env), "edit": edit_from_env(env)}
    assert [(t.source, t.backend) for t in tools.values()] == [("diffusion", "qwen"), ("edit", "qwen")]
    tags = "".join(
        f"<imgen>{{'source': 'diffusion', 'description': 'd', 'params': {{'prompt': 'scene {i}'}}}}</imgen>"
        for i in range(4)
    )
    tags += "<imgen>{'source': 'edit', 'description': 'e', 'params': {'img_index': 3, 'prompt': 'night'}}</imgen>"
    with Engine(tools) as engine:
        doc = engine.run(tags)
    segs = doc.image_segments
    assert all(s.ok for s in segs), [s.error for s in segs]
    assert {s.info["server"] for s in segs[:4]} == {gen_server.url, gen_server_b.url}  # balanced
    assert segs[4].info["server"] == edit_server.url
