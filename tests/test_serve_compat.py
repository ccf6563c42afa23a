"""The image server answers LLM-I's clients as LLM-I's server does (LLMI-SEMANTICS §9), for real:
tiny Qwen-Image pipelines behind uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image
from serve_fixtures import edit_server, gen_body, gen_server, png_b64, tiny_models  # noqa: F401 - fixtures


def post(server, path: str, body) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def llmi_client_image(server, path: str, payload: dict) -> Image.Image:
    """What LLM-I's QwenImageClient / QwenEditClient do with an answer: raise on an error
    status, require status "success" and images, decode the first one."""
    response = httpx.post(server.url + path, json=payload, timeout=60)
    response.raise_for_status()
    data = response.json()
    assert data.get("status") == "success" and data.get("images")
    return Image.open(io.BytesIO(base64.b64decode(data["images"][0])))


def test_llmi_generation_client_payload_works(gen_server):
    # LLM-I's client sends {"prompt": ..., **kwargs}; unknown keys are ignored, not refused
    image = llmi_client_image(gen_server, "/generate/", {"prompt": "a fox", "height": 16, "width": 16,
                                                         "num_inference_steps": 2, "client_extra": 1})
    assert image.size == (16, 16)


def test_llmi_edit_client_payload_works(edit_server):
    buf = io.BytesIO()
    Image.new("RGB", (20, 12), (10, 200, 10)).save(buf, format="PNG")
    payload = {"image_b64": base64.b64encode(buf.getvalue()).decode("utf-8"), "prompt": "make it blue",
               "num_inference_steps": 2}
    assert llmi_client_image(edit_server, "/edit/", payload).format == "PNG"


def test_numbers_sent_as_strings_are_read_as_numbers(gen_server):
    body = {"prompt": "a fox", "height": "16", "width": "32", "num_inference_steps": "2",
            "guidance_scale": "1.0", "num_images_per_prompt": "2", "seed": "3"}
    response = post(gen_server, "/generate/", body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["width"], data["height"], data["seed"], len(data["images"])) == (32, 16, 3, 2)
    same = post(gen_server, "/generate/", {**body, "height": 16, "width": 32, "num_inference_steps": 2,
                                           "guidance_scale": 1.0, "num_images_per_prompt": 2, "seed": 3})
    assert same.json()["images"] == data["images"]  # the same request, however it was spelt


def test_integral_floats_are_read_as_integers(gen_server):
    response = post(gen_server, "/generate/", gen_body(height=16.0, width=32.0, num_inference_steps=2.0))
    assert response.status_code == 200 and response.json()["width"] == 32


@pytest.mark.parametrize(("height", "width", "real"), [(40, 24, (16, 32)), (31, 17, (16, 16)), (1000, 16, (16, 992))])
def test_sizes_not_divisible_by_16_are_rounded_down_and_the_real_size_reported(gen_server, height, width, real):
    response = post(gen_server, "/generate/", gen_body(height=height, width=width, num_inference_steps=1))
    assert response.status_code == 200, response.text
    data = response.json()
    [image] = [Image.open(io.BytesIO(base64.b64decode(b))) for b in data["images"]]
    assert image.size == real and (data["width"], data["height"]) == real


def test_a_size_below_the_multiple_is_a_4xx_not_a_500(gen_server):
    response = post(gen_server, "/generate/", gen_body(height=15))
    assert response.status_code == 422 and "multiple of 16" in str(response.json()["detail"])


def test_empty_prompts_and_null_negative_prompts_are_accepted(gen_server, edit_server):
    assert post(gen_server, "/generate/", gen_body(prompt="", negative_prompt=None)).status_code == 200
    body = {"image_b64": png_b64(16, 16), "prompt": "", "negative_prompt": None, "num_inference_steps": 2}
    assert post(edit_server, "/edit/", body).status_code == 200


def test_edit_sizes_are_rounded_too(edit_server):
    body = {"image_b64": png_b64(16, 16), "prompt": "x", "num_inference_steps": 2, "height": 20, "width": 40}
    data = post(edit_server, "/edit/", body).json()
    assert (data["width"], data["height"]) == (32, 16)


def test_wrong_mode_endpoints_answer_400(gen_server, edit_server):
    on_gen = post(gen_server, "/edit/", {"image_b64": png_b64(8, 8), "prompt": "x"})
    on_edit = post(edit_server, "/generate/", gen_body())
    assert (on_gen.status_code, on_edit.status_code) == (400, 400)
    assert "only available in generation mode" in on_edit.json()["detail"]


def test_info_has_llmis_fields(gen_server, edit_server, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    info = gen_server.info()
    assert info["mode"] == "generation" and info["model_path"] == gen_server.config.model
    assert info["cuda_visible_devices"] == "N/A"
    assert info["available_endpoints"] == ["/generate/"]
    assert edit_server.info()["available_endpoints"] == ["/edit/"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gen_server.info()["cuda_visible_devices"] == "3"
    health = httpx.get(gen_server.url + "/health", timeout=10).json()
    assert (health["status"], health["mode"]) == ("ok", "generation")


@pytest.mark.parametrize(
    "image_b64",
    [
        "not base64 at all!!",  # LLM-I: 500
        "",  # LLM-I: 500
        base64.b64encode(b"plain text, not an image").decode(),  # LLM-I: 500
    ],
)
def test_where_llmi_answered_500_llmi_answers_4xx(edit_server, image_b64):
    response = post(edit_server, "/edit/", {"image_b64": image_b64, "prompt": "x", "num_inference_steps": 2})
    assert 400 <= response.status_code < 500 and response.json()["status"] == "error"
