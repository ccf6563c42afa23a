"""Seedream and SeedEdit backends against a real loopback server speaking Ark's format."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from backend_fixtures import ImagesApiServer, Reply, api_fixture, png_bytes, port_fixture
from PIL import Image

from llmi.errors import BackendError, ConfigError, FetchError, ToolError, ToolTimeout
from llmi.fetch import FetchPolicy
from llmi.image import ImageData
from llmi.tags import ImageRequest
from llmi.tools import ToolCall, load_backend
from llmi.errors import ContentRefused
from llmi.tools.base import prompt_seed
from llmi.tools.images.ark import SEEDREAM_MODEL, SeedreamDiffusion
from llmi.tools.images.ark import SEEDEDIT_MODEL, SeedEdit

LOOPBACK = FetchPolicy.allowing_loopback()


def gen_call(prompt: str = "a lighthouse at dusk", timeout: float = 10.0) -> ToolCall:
    return ToolCall(ImageRequest("diffusion", "d", {"prompt": prompt}), timeout=timeout)


def edit_call(image: ImageData, prompt: str = "make it snow", timeout: float = 10.0) -> ToolCall:
    return ToolCall(ImageRequest("edit", "d", {"img_index": 0, "prompt": prompt}), input_image=image, timeout=timeout)


def seedream(api: ImagesApiServer, **kw: object) -> SeedreamDiffusion:
    return SeedreamDiffusion("test-key", base_url=api.base, fetch_policy=LOOPBACK, **kw)  # type: ignore[arg-type]


def test_registry_names_these_classes() -> None:
    assert load_backend("diffusion", "seedream") is SeedreamDiffusion
    assert load_backend("edit", "seededit") is SeedEdit


def test_seedream_sends_arks_request_and_decodes_inline_image(images_api: ImagesApiServer) -> None:
    tool = seedream(images_api, size="64x48")
    assert images_api.requests == []  # nothing happens at construction
    out = asyncio.run(tool.run(gen_call()))
    [req] = images_api.posts
    assert req.path == "/api/v3/images/generations"
    assert req.headers["authorization"] == "Bearer test-key"
    assert req.json == {
        "model": SEEDREAM_MODEL, "prompt": "a lighthouse at dusk", "size": "64x48",
        "response_format": "b64_json", "seed": prompt_seed("a lighthouse at dusk"),
        "watermark": True, "guidance_scale": 2.5,
    }
    assert (out.image.width, out.image.height, out.image.format) == (64, 48, "png")
    assert out.image.to_pil().convert("RGB").getpixel((5, 5)) == (200, 40, 40)
    assert out.info["seed"] == prompt_seed("a lighthouse at dusk")
    assert out.credit is not None and out.credit.source.startswith("Seedream")


def test_seedream_url_answer_is_downloaded_through_the_safe_fetcher(images_api: ImagesApiServer) -> None:
    out = asyncio.run(seedream(images_api, response_format="url", seed=7).run(gen_call()))
    assert images_api.posts[0].json["response_format"] == "url"
    assert images_api.posts[0].json["seed"] == 7
    gets = [r for r in images_api.requests if r.method == "GET"]
    assert [g.path for g in gets] == ["/files/0.png"]
    assert out.credit is not None and out.credit.image_url == images_api.url + "/files/0.png"
    assert (out.image.width, out.image.height) == (1024, 1024)


def test_seedream_url_pointing_at_a_private_address_is_refused(images_api: ImagesApiServer) -> None:
    # default policy: the provider may not make llmi download from loopback
    tool = SeedreamDiffusion("k", base_url=images_api.base, response_format="url")
    with pytest.raises(FetchError):
        asyncio.run(tool.run(gen_call()))
    assert not [r for r in images_api.requests if r.method == "GET"]


def test_401_says_check_ark_api_key_and_is_not_transient(images_api: ImagesApiServer) -> None:
    images_api.script(Reply(401, {"error": {"code": "AuthenticationError", "message": "the API key is invalid"}}))
    with pytest.raises(BackendError) as info:
        asyncio.run(seedream(images_api).run(gen_call()))
    assert "ARK_API_KEY" in str(info.value) and "invalid" in str(info.value)
    assert not info.value.transient


def test_429_is_transient_and_the_next_attempt_succeeds(images_api: ImagesApiServer) -> None:
    images_api.script(Reply(429, {"error": {"code": "RateLimitExceeded", "message": "slow down"}}, {"Retry-After": "2"}))
    tool = seedream(images_api)
    with pytest.raises(BackendError) as info:
        asyncio.run(tool.run(gen_call()))
    assert info.value.transient and "retry after 2" in str(info.value)
    # the engine retries transient errors; the same tool, from a new event loop, then succeeds
    assert asyncio.run(tool.run(gen_call())).image.width == 1024
    assert len(images_api.posts) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(images_api: ImagesApiServer, status: int) -> None:
    images_api.script(Reply(status, b"<html>bad gateway</html>", {"Content-Type": "text/html"}))
    with pytest.raises(BackendError) as info:
        asyncio.run(seedream(images_api).run(gen_call()))
    assert info.value.transient and str(status) in str(info.value)


@pytest.mark.parametrize(
    "code", ["OutputImageSensitiveContentDetected", "InputTextSensitiveContentDetected", "InputTextRiskDetection"]
)
def test_content_filter_refusal_is_clear_and_not_transient(images_api: ImagesApiServer, code: str) -> None:
    images_api.script(Reply(400, {"error": {"code": code, "message": "may contain sensitive information"}}))
    with pytest.raises(ContentRefused) as info:
        asyncio.run(seedream(images_api).run(gen_call()))
    assert not info.value.transient and "content filter" in str(info.value) and code in str(info.value)


def test_other_400_is_permanent_with_the_apis_message(images_api: ImagesApiServer) -> None:
    images_api.script(Reply(400, {"error": {"code": "InvalidParameter", "message": "size is not valid"}}))
    with pytest.raises(BackendError) as info:
        asyncio.run(seedream(images_api).run(gen_call()))
    assert not info.value.transient and "size is not valid" in str(info.value)
    assert not isinstance(info.value, ContentRefused)


@pytest.mark.parametrize(
    "body, words",
    [
        (b"<html>hello</html>", "not JSON"),
        ({"data": []}, "no 'data'"),
        ({"data": [{"revised_prompt": "x"}]}, "neither"),
        ({"data": [{"b64_json": "%%% not base64 %%%"}]}, "not valid base64"),
        ({"data": [{"b64_json": base64.b64encode(b"plain text, no image").decode()}]}, "not an image"),
    ],
)
def test_malformed_answers_are_reported(images_api: ImagesApiServer, body: object, words: str) -> None:
    images_api.script(Reply(200, body))
    with pytest.raises(BackendError) as info:
        asyncio.run(seedream(images_api).run(gen_call()))
    assert "malformed" in str(info.value) and words in str(info.value)


def test_a_slow_api_is_a_timeout(images_api: ImagesApiServer) -> None:
    images_api.script(Reply(delay=2.0))
    with pytest.raises(ToolTimeout):
        asyncio.run(seedream(images_api).run(gen_call(timeout=0.3)))


def test_a_slow_image_download_counts_against_the_call_timeout(images_api: ImagesApiServer) -> None:
    images_api.file_delay = 2.0
    with pytest.raises(ToolTimeout, match="downloading"):
        asyncio.run(seedream(images_api, response_format="url").run(gen_call(timeout=0.5)))


def test_unreachable_api_is_transient(closed_port: int) -> None:
    tool = SeedreamDiffusion("k", base_url=f"http://127.0.0.1:{closed_port}/api/v3")
    with pytest.raises(BackendError) as info:
        asyncio.run(tool.run(gen_call()))
    assert info.value.transient and "cannot reach" in str(info.value)


def test_from_env_reads_llmi_names() -> None:
    with pytest.raises(ConfigError, match="ARK_API_KEY"):
        SeedreamDiffusion.from_env({})
    tool = SeedreamDiffusion.from_env(
        {"ARK_API_KEY": "k", "ARK_BASE_URL": "http://x/api/v3/", "LLMI_SEEDREAM_MODEL": "ep-1",
         "LLMI_ARK_WATERMARK": "0", "LLMI_SEEDREAM_SIZE": "512x512"}
    )
    assert (tool.base_url, tool.model, tool.watermark, tool.size) == ("http://x/api/v3", "ep-1", False, "512x512")
    edit = SeedEdit.from_env({"ARK_API_KEY": "k", "LLMI_SEEDEDIT_MODEL": "ep-2"})
    assert (edit.model, edit.watermark) == ("ep-2", True)
    with pytest.raises(ConfigError, match="ARK_API_KEY"):
        SeedEdit.from_env({"ARK_API_KEY": ""})


# -- SeedEdit ----------------------------------------------------------------------------------


def _received_image(data_url: str) -> Image.Image:
    head, _, b64 = data_url.partition(",")
    assert head == "data:image/png;base64"
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im


def test_seededit_uploads_an_rgba_chart_flattened_on_white(images_api: ImagesApiServer) -> None:
    chart = Image.new("RGBA", (80, 60), (0, 0, 0, 0))  # transparent background...
    chart.paste((30, 90, 200, 255), (20, 10, 60, 50))  # ...with an opaque blue bar
    tool = SeedEdit("test-key", base_url=images_api.base, fetch_policy=LOOPBACK)
    out = asyncio.run(tool.run(edit_call(ImageData.from_pil(chart), "make the bar red")))
    [req] = images_api.posts
    body = req.json
    assert (body["model"], body["prompt"], body["size"], body["response_format"]) == (
        SEEDEDIT_MODEL, "make the bar red", "adaptive", "b64_json")
    assert body["guidance_scale"] == 5.5 and body["seed"] == prompt_seed("make the bar red")
    sent = _received_image(body["image"])
    assert (sent.format, sent.mode, sent.size) == ("PNG", "RGB", (80, 60))
    assert sent.getpixel((2, 2)) == (255, 255, 255)  # transparency became white, not black
    assert sent.getpixel((40, 30)) == (30, 90, 200)
    assert out.info["upload"] == {"flattened": True}
    assert out.image.width == 32  # the server's answer (no size for adaptive)


def test_seededit_pads_extreme_ratios_and_enlarges_tiny_images(images_api: ImagesApiServer) -> None:
    tool = SeedEdit("k", base_url=images_api.base, fetch_policy=LOOPBACK)
    asyncio.run(tool.run(edit_call(ImageData.from_pil(Image.new("RGB", (400, 40), "red")))))
    asyncio.run(tool.run(edit_call(ImageData.from_pil(Image.new("RGB", (8, 8), "red")))))
    wide, tiny = (_received_image(r.json["image"]) for r in images_api.posts)
    assert wide.width / wide.height <= 3 and wide.getpixel((200, 0)) == (255, 255, 255)
    assert min(tiny.size) >= 16


def test_seededit_url_answer_and_errors(images_api: ImagesApiServer) -> None:
    tool = SeedEdit("k", base_url=images_api.base, response_format="url", fetch_policy=LOOPBACK)
    out = asyncio.run(tool.run(edit_call(ImageData.blank(40, 30))))
    assert out.credit is not None and out.credit.image_url and out.credit.image_url.endswith(".png")
    images_api.script(Reply(403, {"error": {"code": "AccessDenied", "message": "no access to model"}}))
    with pytest.raises(BackendError, match="ARK_API_KEY"):
        asyncio.run(tool.run(edit_call(ImageData.blank(40, 30))))
    images_api.script(Reply(400, {"error": {"code": "InputImageSensitiveContentDetected", "message": "x"}}))
    with pytest.raises(ContentRefused):
        asyncio.run(tool.run(edit_call(ImageData.blank(40, 30))))
    with pytest.raises(ToolError, match="input image"):
        asyncio.run(tool.run(ToolCall(ImageRequest("edit", "d", {"img_index": 0, "prompt": "x"}))))


def test_png_fixture_is_a_real_png() -> None:
    assert ImageData.from_bytes(png_bytes(3, 2)).format == "png"


def test_engine_generates_then_edits_through_ark_with_a_retry(images_api: ImagesApiServer) -> None:
    from llmi.engine import Engine, ToolLimits

    images_api.script(Reply(), Reply(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}))
    tools = {
        "diffusion": SeedreamDiffusion("k", base_url=images_api.base, size="40x30", fetch_policy=LOOPBACK),
        "edit": SeedEdit("k", base_url=images_api.base, response_format="url", fetch_policy=LOOPBACK),
    }
    limits = {s: ToolLimits(timeout=10.0, retries=2, backoff=0.01) for s in tools}
    text = (
        "<imgen>{'source': 'diffusion', 'description': 'a', 'params': {'prompt': 'a red square'}}</imgen>"
        "<imgen>{'source': 'edit', 'description': 'b', 'params': {'img_index': 0, 'prompt': 'make it blue'}}</imgen>"
    )
    doc = Engine(tools, limits=limits, cache=False).run(text)
    first, second = doc.image_segments
    assert (first.status, second.status) == ("ok", "ok")
    assert second.attempts == 2  # the 503 was transient, the engine retried
    edits = [r for r in images_api.posts if r.json and r.json["model"] == SEEDEDIT_MODEL]
    sent = _received_image(edits[-1].json["image"])
    assert sent.size == (40, 30) and sent.getpixel((3, 3)) == (200, 40, 40)  # the generated image was edited
