"""The image server: a FastAPI app around one diffusers pipeline.

Endpoints (LLM-I's, kept compatible, plus readiness):

=================  ===========================================================================
``POST /generate/`` text → images (``mode=generation``)
``POST /edit/``     image + instruction → images (``mode=edit``)
``GET /health``     liveness: answers at once, whatever the model is doing
``GET /ready``      readiness: 503 until the pipeline is loaded (and after it failed to load)
``GET /info``       model, mode, device, dtype, limits, queue depth, counters
=================  ===========================================================================

Inference runs on one worker thread behind a bounded queue (:mod:`llmi.serve.worker`); a full
queue answers 503 with ``Retry-After``. Requests are validated before they are queued: sizes
within limits (a size that is not a multiple of the pipeline's is rounded down to one, as the
pipeline itself would, and the answer reports the real size), steps bounded, the image valid
base64 of a readable, not-too-large picture — anything else is a 4xx and the server carries on.
What LLM-I's server accepts is accepted (numbers as strings, empty prompts); where it answered
500 (bad base64, a size below the pipeline's multiple) llmi answers 4xx; a wrong-mode endpoint
is 400, as in LLM-I.

>>> app = create_app(ServerConfig(model="tiny", mode="generation", device="cpu"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import MissingDependency
from .imaging import ImageTooLarge, InvalidImage, decode_b64_image
from .pipelines import Cancelled, EditJob, GenerateJob
from .schemas import EditRequest, GenerateRequest, Limits
from .worker import InferenceWorker, NotReady, QueueFull, ShuttingDown

try:  # at module level so FastAPI can resolve the handlers' annotations
    from fastapi import Request
except ImportError:  # pragma: no cover - create_app raises MissingDependency
    Request = Any  # type: ignore[assignment,misc]

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger("llmi.serve")


@dataclass(frozen=True)
class ServerConfig:
    """Everything one server process needs; the CLI builds it from flags."""

    model: str
    mode: str = "generation"  # "generation" | "edit"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    dtype: str = "auto"  # "auto" | "bfloat16" | "float16" | "float32"
    queue_size: int = 16
    limits: Limits = field(default_factory=Limits)
    #: cap Qwen-Image-Edit's condition image (pixels); None keeps the model's ~1 MP
    edit_max_pixels: int | None = None
    #: torch CPU threads (None: torch's default)
    threads: int | None = None
    #: seconds to let queued/running jobs finish on shutdown before cancelling them
    shutdown_grace: float = 30.0
    cpu_offload: bool = False
    #: testing aid: seconds each job sleeps on the worker before running (simulates a slow model)
    debug_job_delay: float = 0.0


def _load_runner(config: ServerConfig):
    from .pipelines import PipelineRunner, load_pipeline, set_threads

    set_threads(config.threads)
    loaded = load_pipeline(
        config.model,
        config.mode,
        device=config.device,
        dtype=config.dtype,
        edit_max_pixels=config.edit_max_pixels,
        cpu_offload=config.cpu_offload,
    )
    return PipelineRunner(loaded)


def _run_job(config: ServerConfig):
    def run(runner, job):
        if config.debug_job_delay:
            time.sleep(config.debug_job_delay)
        return runner.run(job)

    return run


def create_app(
    config: ServerConfig | str, *, worker: InferenceWorker | None = None, **options: Any
):
    """The FastAPI application serving ``config``; the pipeline loads when the app starts.

    ``config`` may also be a model path, with :class:`ServerConfig` fields as keywords:
    ``create_app("Qwen/Qwen-Image-Edit", mode="edit", device="cuda")``.
    """
    if isinstance(config, str):
        config = ServerConfig(model=config, **options)
    elif options:
        config = replace(config, **options)
    MissingDependency.require("fastapi", "serve")
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    worker = worker or InferenceWorker(
        lambda: _load_runner(config), _run_job(config), queue_size=config.queue_size
    )
    started = time.time()
    state: dict[str, Any] = {"limits": config.limits, "loaded": None, "invalid": 0}

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            runner = worker.runner
            cancel = runner.cancel if runner is not None else None
            await asyncio.to_thread(worker.stop, grace=config.shutdown_grace, cancel=cancel)

    app = FastAPI(
        title="llmi image server",
        description="Qwen-Image / Qwen-Image-Edit (or any diffusers pipeline) over HTTP.",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.state.config = config
    app.add_middleware(_BodyLimit, max_bytes=config.limits.max_body_bytes)

    def error(status: int, detail: Any, headers: dict[str, str] | None = None):
        if 400 <= status < 500 and status not in (429, 499):
            state["invalid"] += 1
        return JSONResponse({"status": "error", "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # Malformed JSON and schema violations: 422 with pydantic's itemised reasons.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return error(422, errors)

    def limits() -> Limits:
        if state["loaded"] is None and worker.runner is not None:
            multiple = worker.runner.loaded.size_multiple
            state["limits"] = replace(config.limits, size_multiple=multiple)
            state["loaded"] = worker.runner.loaded
        return state["limits"]

    def check_size(name: str, value: int, lim: Limits) -> str | None:
        if value > lim.max_side:
            return f"{name}={value} is larger than this server's limit of {lim.max_side}"
        if value < lim.size_multiple:
            return (
                f"{name}={value} is smaller than {lim.size_multiple}: sizes are rounded down to a "
                f"multiple of {lim.size_multiple}, and this one would round to nothing"
            )
        return None

    def rounded(value: int | None, lim: Limits) -> int | None:
        # what the pipeline does itself (with a warning): round down to its multiple
        return None if value is None else value - value % lim.size_multiple

    def check_common(req: GenerateRequest | EditRequest, lim: Limits) -> list[str]:
        problems = []
        if req.num_inference_steps > lim.max_steps:
            problems.append(
                f"num_inference_steps={req.num_inference_steps} exceeds this server's limit "
                f"of {lim.max_steps}"
            )
        if req.num_images_per_prompt > lim.max_images:
            problems.append(f"num_images_per_prompt must be at most {lim.max_images}")
        for name in ("height", "width"):
            value = getattr(req, name)
            if value is not None and (p := check_size(name, value, lim)):
                problems.append(p)
        return problems

    def refuse_unless_ready(expected_mode: str):
        if config.mode != expected_mode:
            # 400, as LLM-I's server answers: the route exists, the server's mode is wrong
            other = "/edit/" if config.mode == "edit" else "/generate/"
            return error(
                400, f"this endpoint is only available in {expected_mode} mode; this server runs "
                f"in {config.mode} mode: use {other}, or start a server with --mode {expected_mode}"
            )
        if worker.load_error is not None:
            return error(503, f"pipeline failed to load: {worker.load_error}")
        if not worker.ready.is_set():
            return error(503, "pipeline is still loading", {"Retry-After": "5"})
        return None

    async def run(kind: str, job: GenerateJob | EditJob, request: Request):
        try:
            future = worker.submit(kind, job)
        except QueueFull as exc:
            return error(503, str(exc), {"Retry-After": str(worker.retry_after())})
        except (NotReady, ShuttingDown) as exc:
            return error(503, str(exc), {"Retry-After": "5"})
        t0 = time.monotonic()
        waiter = asyncio.wrap_future(future)
        # A client that gives up (a timeout, Ctrl-C) closes its connection: drop its job if
        # it is still queued rather than spend the GPU on an answer nobody reads.
        watching = True
        while watching and not waiter.done():
            await asyncio.wait({waiter}, timeout=0.25)
            if not waiter.done() and await request.is_disconnected():
                watching = False
                if future.cancel():
                    return error(499, "client disconnected before its job started")
        try:
            images = await waiter
        except (Cancelled, ShuttingDown) as exc:
            return error(503, str(exc), {"Retry-After": "5"})
        except ValueError as exc:  # the pipeline refused the parameters
            return error(422, str(exc))
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                _free_cuda_cache()
                return error(503, f"out of GPU memory: {exc}", {"Retry-After": "10"})
            log.exception("inference failed")
            return error(500, f"inference failed: {type(exc).__name__}: {exc}")
        encoded, (width, height) = await asyncio.to_thread(_encode, images)
        return {
            "status": "success",
            "images": encoded,
            "seed": job.seed,
            "width": width,
            "height": height,
            "elapsed_s": round(time.monotonic() - t0, 4),
        }

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "ready": worker.ready.is_set(),
            "mode": config.mode,
            "worker_alive": worker.alive,
        }

    @app.get("/ready")
    async def ready():
        if worker.load_error is not None:
            return error(503, f"pipeline failed to load: {worker.load_error}")
        if not worker.ready.is_set():
            return error(503, "pipeline is still loading", {"Retry-After": "5"})
        if not worker.alive:
            return error(503, "inference worker has stopped")
        return {"status": "ready", "mode": config.mode}

    @app.get("/info")
    async def info():
        lim = limits()
        loaded = state["loaded"]
        return {
            "status": "ok",
            "model": config.model if loaded is None else loaded.model,
            "mode": config.mode,
            "pipeline_class": loaded.pipeline_class if loaded else None,
            "device": loaded.device if loaded else config.device,
            "dtype": loaded.dtype if loaded else config.dtype,
            "ready": worker.ready.is_set(),
            "load_error": str(worker.load_error) if worker.load_error else None,
            "load_seconds": worker.load_seconds,
            "queue_depth": worker.queue_depth,
            "queue_size": worker.queue_size,
            "in_flight": worker.in_flight,
            "counters": {**worker.counters.snapshot(), "invalid_requests": state["invalid"]},
            "limits": asdict(lim),
            "edit_max_pixels": loaded.edit_max_pixels if loaded else config.edit_max_pixels,
            "pid": os.getpid(),
            # LLM-I's three: its clients and scripts read them
            "model_path": config.model,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "N/A"),
            "available_endpoints": ["/edit/"] if config.mode == "edit" else ["/generate/"],
            "uptime_s": round(time.time() - started, 1),
        }

    async def generate(req: GenerateRequest, request: Request):
        if (refusal := refuse_unless_ready("generation")) is not None:
            return refusal
        lim = limits()
        if problems := check_common(req, lim):
            return error(422, problems)
        job = GenerateJob(
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            height=rounded(req.height, lim),
            width=rounded(req.width, lim),
            num_inference_steps=req.num_inference_steps,
            guidance_scale=req.guidance_scale,
            num_images_per_prompt=req.num_images_per_prompt,
            seed=req.seed if req.seed is not None else secrets.randbelow(2**31),
        )
        return await run("generate", job, request)

    async def edit(req: EditRequest, request: Request):
        if (refusal := refuse_unless_ready("edit")) is not None:
            return refusal
        lim = limits()
        if problems := check_common(req, lim):
            return error(422, problems)
        try:
            image = await asyncio.to_thread(
                decode_b64_image,
                req.image_b64,
                max_pixels=lim.max_input_pixels,
                max_bytes=lim.max_body_bytes,
            )
        except ImageTooLarge as exc:
            return error(413, str(exc))
        except InvalidImage as exc:
            return error(422, str(exc))
        job = EditJob(
            image=image,
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            num_inference_steps=req.num_inference_steps,
            guidance_scale=req.guidance_scale,
            num_images_per_prompt=req.num_images_per_prompt,
            seed=req.seed if req.seed is not None else secrets.randbelow(2**31),
            height=rounded(req.height, lim),
            width=rounded(req.width, lim),
        )
        return await run("edit", job, request)

    # LLM-I's clients post to the slashed paths; accept both rather than redirect a POST.
    for path in ("/generate/", "/generate"):
        app.add_api_route(path, generate, methods=["POST"], include_in_schema=path.endswith("/"))
    for path in ("/edit/", "/edit"):
        app.add_api_route(path, edit, methods=["POST"], include_in_schema=path.endswith("/"))
    return app


def _encode(images: list[bytes]) -> tuple[list[str], tuple[int | None, int | None]]:
    """The PNGs as base64, and the first one's (width, height), read from its header."""
    import io

    from PIL import Image

    size: tuple[int | None, int | None] = (None, None)
    if images:
        with Image.open(io.BytesIO(images[0])) as im:
            size = im.size
    return [base64.b64encode(b).decode() for b in images], size


def _free_cuda_cache() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


class _BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 before parsing."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    return await _send_413(send, self.max_bytes)
        seen = 0
        responded = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not responded:
                await _send_413(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _send_413(send, max_bytes: int) -> None:
    import json

    body = json.dumps(
        {"status": "error", "detail": f"request body larger than {max_bytes} bytes"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
