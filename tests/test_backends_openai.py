"""OpenAI-compatible generations and edits against a real loopback server."""

from __future__ import annotations

import asyncio
import io

import pytest
from backend_fixtures import ImagesApiServer, Reply, api_fixture, port_fixture
from PIL import Image

from llmi.errors import BackendError, ConfigError, ToolError, ToolTimeout
from llmi.fetch import FetchPolicy
from llmi.image import ImageData
from llmi.tags import ImageRequest
from llmi.tools import ToolCall, load_backend
from llmi.errors import ContentRefused
from llmi.tools.images._hosted import prepare_upload
from llmi.tools.images.openai import OpenAIDiffusion
from llmi.tools.images.openai import OpenAIEdit

LOOPBACK = FetchPolicy.allowing_loopback()


def gen_call(prompt: str = "a watercolour fox", timeout: float = 10.0) -> ToolCall:
    return ToolCall(ImageRequest("diffusion", "d", {"prompt": prompt}), timeout=timeout)


def edit_call(image: ImageData | None, prompt: str = "add a rainbow") -> ToolCall:
    return ToolCall(ImageRequest("edit", "d", {"img_index": 0, "prompt": prompt}), input_image=image, timeout=10.0)


def test_registry_names_these_classes() -> None:
    assert load_backend("diffusion", "openai") is OpenAIDiffusion
    assert load_backend("edit", "openai") is OpenAIEdit


def test_generation_inline_answer(images_api: ImagesApiServer) -> None:
    tool = OpenAIDiffusion("sk-test", base_url=images_api.url + "/v1", size="48x32", fetch_policy=LOOPBACK)
    assert images_api.requests == []
    out = asyncio.run(tool.run(gen_call()))
    [req] = images_api.posts
    assert req.path == "/v1/images/generations"
    assert req.headers["authorization"] == "Bearer sk-test"
    # gpt-image-1 rejects response_format, so it is not sent unless configured
    assert req.json == {"model": "gpt-image-1", "prompt": "a watercolour fox", "n": 1, "size": "48x32"}
    assert (out.image.width, out.image.height) == (48, 32)
    assert out.info["model"] == "gpt-image-1"


def test_generation_url_answer_goes_through_the_safe_fetcher() -> None:
    with ImagesApiServer(default_format="url") as api:  # like DALL-E: URLs unless asked otherwise
        tool = OpenAIDiffusion(None, base_url=api.url + "/v1", model="dall-e-3", fetch_policy=LOOPBACK)
        out = asyncio.run(tool.run(gen_call()))
        assert "authorization" not in api.posts[0].headers  # a keyless local server is fine
        assert [r.path for r in api.requests if r.method == "GET"] == ["/files/0.png"]
        assert out.credit is not None and out.credit.image_url == api.url + "/files/0.png"
        assert out.image.width == 1024


def test_response_format_is_sent_when_configured(images_api: ImagesApiServer) -> None:
    tool = OpenAIDiffusion("k", base_url=images_api.url + "/v1", response_format="url", fetch_policy=LOOPBACK)
    asyncio.run(tool.run(gen_call()))
    assert images_api.posts[0].json["response_format"] == "url"


def test_configuration_errors_and_from_env() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIDiffusion()  # the real OpenAI endpoint needs a key
    with pytest.raises(ConfigError, match="response_format"):
        OpenAIDiffusion("k", response_format="png")
    tool = OpenAIDiffusion.from_env({"OPENAI_API_KEY": "a", "OPENAI_BASE_URL": "http://o/v1",
                                     "LLMI_IMAGES_BASE_URL": "http://i/v1/", "LLMI_IMAGES_MODEL": "m"})
    assert (tool.base_url, tool.model, tool._api_key) == ("http://i/v1", "m", "a")
    edit = OpenAIEdit.from_env({"LLMI_IMAGES_API_KEY": "b", "OPENAI_API_KEY": "a",
                                "LLMI_IMAGES_MODEL": "m", "LLMI_IMAGES_EDIT_MODEL": "e"})
    assert (edit.base_url, edit.model, edit._api_key) == ("https://api.openai.com/v1", "e", "b")


@pytest.mark.parametrize(
    "reply, kind, transient, words",
    [
        (Reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                               "code": "invalid_api_key"}}), BackendError, False, "OPENAI_API_KEY"),
        (Reply(400, {"error": {"message": "Your request was rejected by our safety system",
                               "type": "image_generation_user_error", "code": "content_policy_violation"}}),
         ContentRefused, False, "content filter"),
        (Reply(429, {"error": {"message": "Rate limit reached", "type": "requests"}}), BackendError, True, "429"),
        (Reply(503, b"upstream unavailable"), BackendError, True, "503"),
        (Reply(400, {"error": {"message": "Invalid size", "type": "invalid_request_error"}}), BackendError, False,
         "Invalid size"),
        (Reply(200, {"error": {"message": "quota exceeded", "code": "insufficient_quota"}}), BackendError, False,
         "quota"),
        (Reply(200, {"created": 1, "data": "nope"}), BackendError, False, "malformed"),
    ],
)
def test_errors_are_classified(images_api: ImagesApiServer, reply: Reply, kind: type, transient: bool, words: str) -> None:
    images_api.script(reply)
    tool = OpenAIDiffusion("k", base_url=images_api.url + "/v1", fetch_policy=LOOPBACK)
    with pytest.raises(kind) as info:
        asyncio.run(tool.run(gen_call()))
    assert info.value.transient is transient and words in str(info.value)


def test_timeout_and_unreachable(images_api: ImagesApiServer, closed_port: int) -> None:
    images_api.script(Reply(delay=2.0))
    with pytest.raises(ToolTimeout):
        asyncio.run(OpenAIDiffusion("k", base_url=images_api.url).run(gen_call(timeout=0.3)))
    with pytest.raises(BackendError) as info:
        asyncio.run(OpenAIDiffusion("k", base_url=f"http://127.0.0.1:{closed_port}/v1").run(gen_call()))
    assert info.value.transient


# -- edits -------------------------------------------------------------------------------------


def _rgba_chart() -> ImageData:
    chart = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    chart.paste((220, 60, 20, 255), (10, 30, 50, 85))
    chart.paste((40, 120, 220, 128), (60, 10, 100, 85))  # half-transparent bar
    return ImageData.from_pil(chart)


def test_edit_uploads_multipart_png_flattened_on_white(images_api: ImagesApiServer) -> None:
    tool = OpenAIEdit("sk-test", base_url=images_api.url + "/v1", fetch_policy=LOOPBACK)
    out = asyncio.run(tool.run(edit_call(_rgba_chart(), "make the bars green")))
    [req] = images_api.posts
    assert req.path == "/v1/images/edits" and req.headers["content-type"].startswith("multipart/form-data")
    assert req.form == {"prompt": "make the bars green", "model": "gpt-image-1", "n": "1"}
    filename, data, mime = req.files["image"]
    assert (filename, mime) == ("image.png", "image/png")
    sent = Image.open(io.BytesIO(data))
    assert (sent.format, sent.mode, sent.size) == ("PNG", "RGB", (120, 90))
    assert sent.getpixel((110, 5)) == (255, 255, 255)  # transparent -> white, not a mask
    assert sent.getpixel((20, 50)) == (220, 60, 20)
    r, g, b = sent.getpixel((80, 50))  # half-transparent blue over white
    assert b > 200 and 140 < r < 160
    assert out.info["upload"] == {"flattened": True}
    assert out.image.format == "png"


def test_edit_url_answer_size_and_refusal(images_api: ImagesApiServer) -> None:
    tool = OpenAIEdit("k", base_url=images_api.url + "/v1", size="64x64", response_format="url",
                      model="dall-e-2", fetch_policy=LOOPBACK)
    out = asyncio.run(tool.run(edit_call(ImageData.blank(50, 50))))
    assert images_api.posts[0].form["size"] == "64x64" and images_api.posts[0].form["response_format"] == "url"
    assert (out.image.width, out.image.height) == (64, 64) and out.credit and out.credit.image_url
    images_api.script(Reply(400, {"error": {"code": "moderation_blocked", "message": "blocked"}}))
    with pytest.raises(ContentRefused):
        asyncio.run(tool.run(edit_call(ImageData.blank(50, 50))))
    with pytest.raises(ToolError, match="input image"):
        asyncio.run(tool.run(edit_call(None)))


def test_prepare_upload_shrinks_big_and_falls_back_to_jpeg() -> None:
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    big = ImageData.from_pil(Image.fromarray(noise))
    up, changes = prepare_upload(big, max_side=600, max_bytes=200_000)
    assert max(up.width, up.height) == 600 and changes["downscaled_to"] == [600, 450]
    assert up.format == "jpeg" and len(up.data) <= 200_000 and changes["encoded_as"].startswith("jpeg")


def test_a_transparent_matplotlib_chart_uploads_as_white_backed_rgb(images_api: ImagesApiServer) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.bar([1, 2, 3], [3, 1, 2], color="tab:blue")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", transparent=True)
    plt.close(fig)
    chart = ImageData.from_bytes(buf.getvalue())
    assert chart.to_pil().mode == "RGBA" and chart.to_pil().getpixel((0, 0))[3] == 0
    asyncio.run(OpenAIEdit("k", base_url=images_api.url + "/v1", fetch_policy=LOOPBACK).run(edit_call(chart)))
    sent = Image.open(io.BytesIO(images_api.posts[0].files["image"][1]))
    assert sent.mode == "RGB" and sent.size == (150, 100) and sent.getpixel((0, 0)) == (255, 255, 255)
    import numpy as np

    px = np.asarray(sent).astype(int)
    assert ((px[..., 2] > 150) & (px[..., 0] < 80)).sum() > 200  # the bars arrived intact
