"""The image server, for real: tiny Qwen-Image pipelines behind uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import threading

import httpx
import pytest
from PIL import Image
from serve_fixtures import (  # noqa: F401 - fixtures
    ThreadServer,
    edit_server,
    gen_body,
    gen_server,
    png_b64,
    slow_server,
    start_server,
    tiny_models,
    wait_for,
)


def post(server: ThreadServer, path: str, body=None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def decode(response: httpx.Response) -> list[Image.Image]:
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["status"] == "success"
    return [Image.open(io.BytesIO(base64.b64decode(s))) for s in data["images"]]


def digests(response: httpx.Response) -> list[str]:
    return [hashlib.sha256(base64.b64decode(s)).hexdigest() for s in response.json()["images"]]


# --- generation ------------------------------------------------------------------------------


def test_generate_returns_png_of_requested_size(gen_server):
    [image] = decode(post(gen_server, "/generate/", gen_body(height=32, width=16)))
    assert image.format == "PNG"
    assert image.size == (16, 32)


def test_unslashed_path_also_works(gen_server):
    assert len(decode(post(gen_server, "/generate", gen_body()))) == 1


def test_num_images_per_prompt(gen_server):
    response = post(gen_server, "/generate/", gen_body(num_images_per_prompt=2))
    assert len(decode(response)) == 2
    assert len(set(digests(response))) == 2


def test_seed_is_honoured(gen_server):
    a = digests(post(gen_server, "/generate/", gen_body(seed=7)))
    b = digests(post(gen_server, "/generate/", gen_body(seed=7)))
    c = digests(post(gen_server, "/generate/", gen_body(seed=8)))
    assert a == b
    assert a != c


def test_seed_is_reported_when_server_picks_it(gen_server):
    body = gen_body()
    del body["seed"]
    first = post(gen_server, "/generate/", body).json()
    again = post(gen_server, "/generate/", gen_body(seed=first["seed"]))
    assert digests(again) == [hashlib.sha256(base64.b64decode(first["images"][0])).hexdigest()]


def test_guidance_and_negative_prompt_are_honoured(gen_server):
    # guidance 1 disables classifier-free guidance; 4 enables it (with Qwen's " " negative).
    plain = digests(post(gen_server, "/generate/", gen_body(guidance_scale=1.0)))
    guided = digests(post(gen_server, "/generate/", gen_body(guidance_scale=4.0)))
    negative = digests(post(gen_server, "/generate/", gen_body(guidance_scale=4.0, negative_prompt="blurry")))
    assert len({plain[0], guided[0], negative[0]}) == 3


def test_prompt_changes_the_image(gen_server):
    a = digests(post(gen_server, "/generate/", gen_body(prompt="a red fox")))
    b = digests(post(gen_server, "/generate/", gen_body(prompt="a blue whale")))
    assert a != b


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status",
    [
        ({"height": 16}, 422),  # no prompt
        (gen_body(width=100000), 422),
        (gen_body(height=8), 422),  # rounds down to nothing
        (gen_body(height=True), 422),  # a boolean is not a size
        (gen_body(height=16.5), 422),
        (gen_body(num_inference_steps=10000), 422),
        (gen_body(num_inference_steps=0), 422),
        (gen_body(num_images_per_prompt=5), 422),
        (gen_body(num_inference_steps="many"), 422),
        (gen_body(seed=-1), 422),
        (gen_body(prompt=None), 422),
        ([1, 2, 3], 422),
    ],
)
def test_invalid_generate_requests_are_4xx(gen_server, body, status):
    response = post(gen_server, "/generate/", body)
    assert response.status_code == status, response.text
    assert response.json()["status"] == "error"


def test_malformed_json_is_422_and_server_stays_up(gen_server):
    response = httpx.post(
        gen_server.url + "/generate/",
        content=b'{"prompt": "a cat", "height": ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert len(decode(post(gen_server, "/generate/", gen_body()))) == 1


def test_edit_on_a_generation_server_is_400(gen_server):
    response = post(gen_server, "/edit/", {"image_b64": png_b64(8, 8), "prompt": "x"})
    assert response.status_code == 400
    assert "only available in edit mode" in response.json()["detail"]


# --- edit ------------------------------------------------------------------------------------


def test_edit_end_to_end_and_seed(edit_server):
    body = {"image_b64": png_b64(40, 30), "prompt": "make it blue", "num_inference_steps": 2, "seed": 3}
    first = post(edit_server, "/edit/", body)
    [image] = decode(first)
    assert image.format == "PNG"
    assert digests(post(edit_server, "/edit/", body)) == digests(first)
    assert digests(post(edit_server, "/edit/", {**body, "seed": 4})) != digests(first)


def test_edit_honours_size_count_and_transparent_input(edit_server):
    body = {
        "image_b64": png_b64(20, 20, "RGBA", (0, 0, 0, 0)),
        "prompt": "add a hat",
        "num_inference_steps": 2,
        "num_images_per_prompt": 2,
        "height": 32,
        "width": 48,
        "seed": 1,
    }
    images = decode(post(edit_server, "/edit/", body))
    assert [im.size for im in images] == [(48, 32), (48, 32)]


def test_edit_accepts_data_url(edit_server):
    body = {"image_b64": "data:image/png;base64," + png_b64(16, 16), "prompt": "x", "num_inference_steps": 1}
    assert len(decode(post(edit_server, "/edit/", body))) == 1


def _huge_png() -> str:
    # 300×300 > the test server's 256×256 limit; a real deployment's limit is 4096×4096.
    return png_b64(300, 300)


@pytest.mark.parametrize(
    "image_b64, status",
    [
        ("not base64 at all!!", 422),
        (base64.b64encode(b"plain text, not an image").decode(), 422),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode(), 422),  # truncated PNG
        ("", 422),
        ("HUGE", 413),
    ],
)
def test_invalid_edit_images_are_4xx(edit_server, image_b64, status):
    if image_b64 == "HUGE":
        image_b64 = _huge_png()
    response = post(edit_server, "/edit/", {"image_b64": image_b64, "prompt": "x", "num_inference_steps": 1})
    assert response.status_code == status, response.text
    assert edit_server.info()["ready"] is True


def test_oversized_body_is_413(edit_server):
    blob = "A" * (3 * 1024 * 1024)  # over the test server's 2 MB body limit
    response = post(edit_server, "/edit/", {"image_b64": blob, "prompt": "x"})
    assert response.status_code == 413
    assert httpx.get(edit_server.url + "/health").status_code == 200


def test_missing_image_is_422(edit_server):
    assert post(edit_server, "/edit/", {"prompt": "x"}).status_code == 422


# --- load, liveness, queue -------------------------------------------------------------------


def test_100_concurrent_requests_none_lost_or_duplicated(gen_server):
    before = gen_server.info()["counters"]
    seeds = list(range(1000, 1100))

    def one(seed: int):
        response = post(gen_server, "/generate/", gen_body(seed=seed, guidance_scale=1.0))
        return seed, response

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, seeds))
    assert all(r.status_code == 200 for _, r in results), [r.text for _, r in results if r.status_code != 200][:3]
    assert [r.json()["seed"] for _, r in results] == seeds  # each answer is for its own request
    images = [digests(r)[0] for _, r in results]
    assert len(set(images)) == 100  # 100 different seeds, 100 different pictures
    after = gen_server.info()["counters"]
    assert after["completed"] - before["completed"] == 100
    assert after["accepted"] - before["accepted"] == 100


def test_health_answers_while_generation_is_in_flight(gen_server):
    # A real, long generation (128x128, 50 steps: seconds of CPU work on the worker thread).
    results = {}
    busy_before = gen_server.worker.counters.busy_seconds

    def generate():
        results["gen"] = post(gen_server, "/generate/", gen_body(height=128, width=128, num_inference_steps=50))

    worker = threading.Thread(target=generate)
    worker.start()
    wait_for(lambda: gen_server.worker.in_flight == 1)
    health = httpx.get(gen_server.url + "/health", timeout=30)
    info = httpx.get(gen_server.url + "/info", timeout=30).json()
    still_running = gen_server.worker.in_flight == 1 and "gen" not in results
    worker.join()
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert info["in_flight"] == 1
    assert still_running  # /health and /info answered before the generation finished
    assert results["gen"].status_code == 200
    assert gen_server.worker.counters.busy_seconds > busy_before


def test_queue_full_is_503_with_retry_after(slow_server):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    running = pool.submit(post, slow_server, "/generate/", gen_body(seed=1))
    wait_for(lambda: slow_server.worker.in_flight == 1)
    queued = pool.submit(post, slow_server, "/generate/", gen_body(seed=2))
    wait_for(lambda: slow_server.worker.queue_depth == 1)
    refused = post(slow_server, "/generate/", gen_body(seed=3))
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "queue full" in refused.json()["detail"]
    assert running.result().status_code == 200
    assert queued.result().status_code == 200
    pool.shutdown()
    assert slow_server.info()["counters"]["rejected_queue_full"] == 1


def test_graceful_shutdown_finishes_in_flight_request(slow_server):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    running = pool.submit(post, slow_server, "/generate/", gen_body())
    wait_for(lambda: slow_server.worker.in_flight == 1)
    slow_server.server.should_exit = True  # what SIGTERM does
    assert running.result().status_code == 200
    slow_server.thread.join(timeout=30)
    assert not slow_server.thread.is_alive()
    assert not slow_server.worker.alive  # the inference thread stopped too
    pool.shutdown()


def test_ready_is_503_until_loaded_and_after_a_failed_load(tmp_path):
    from llmi.serve.app import ServerConfig

    server = ThreadServer(ServerConfig(model=str(tmp_path / "nothing-here"), mode="generation", device="cpu"))
    server.thread.start()
    try:
        wait_for(lambda: server.worker.load_error is not None, timeout=60)
        assert httpx.get(server.url + "/health").status_code == 200  # alive
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503 and "failed to load" in ready.json()["detail"]
        assert post(server, "/generate/", gen_body()).status_code == 503
    finally:
        server.stop()


def test_info_reports_model_and_counters(gen_server):
    info = gen_server.info()
    assert info["mode"] == "generation"
    assert info["pipeline_class"] == "QwenImagePipeline"
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["limits"]["size_multiple"] == 16
    assert info["counters"]["completed"] >= 0 and "queue_depth" in info


def test_stop_cancels_queued_jobs_and_interrupts_the_running_one(tiny_models):
    from llmi.serve.pipelines import Cancelled, GenerateJob, PipelineRunner, load_pipeline
    from llmi.serve.worker import InferenceWorker, ShuttingDown

    loaded = load_pipeline(str(tiny_models["generation"]), "generation", device="cpu")
    runner = PipelineRunner(loaded)
    steps_seen = []
    original = runner._on_step_end

    def counting(pipe, step, timestep, kwargs):
        steps_seen.append(step)
        return original(pipe, step, timestep, kwargs)

    runner._on_step_end = counting
    worker = InferenceWorker(lambda: runner, lambda r, job: r.run(job), queue_size=4)
    worker.start()
    worker.ready.wait(30)
    long_job = GenerateJob("a fox", None, 64, 64, 200, 1.0, 1, 0)
    running = worker.submit("generate", long_job)
    wait_for(lambda: worker.in_flight == 1 and steps_seen)
    queued = [worker.submit("generate", long_job) for _ in range(2)]
    worker.stop(grace=0.0, cancel=runner.cancel)
    with pytest.raises(Cancelled):
        running.result(timeout=30)
    for future in queued:
        with pytest.raises(ShuttingDown):
            future.result(timeout=5)
    assert len(steps_seen) < 200  # interrupted, not run to the end
    assert worker.counters.cancelled == 3 and not worker.alive
    with pytest.raises(ShuttingDown):
        worker.submit("generate", long_job)


def test_queued_job_of_a_client_that_gave_up_is_dropped(slow_server):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    running = pool.submit(post, slow_server, "/generate/", gen_body(seed=1))
    wait_for(lambda: slow_server.worker.in_flight == 1)
    with pytest.raises(httpx.ReadTimeout):  # queued behind the running job, then gives up
        httpx.post(slow_server.url + "/generate/", json=gen_body(seed=2), timeout=0.3)
    assert running.result().status_code == 200
    wait_for(lambda: slow_server.worker.counters.cancelled == 1)
    counters = slow_server.info()["counters"]
    assert counters["completed"] == 1 and counters["accepted"] == 2
    pool.shutdown()
