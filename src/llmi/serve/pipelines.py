"""Loading a diffusers pipeline and running one request on it.

:func:`load_pipeline` opens ``QwenImagePipeline`` / ``QwenImageEditPipeline`` folders (or any
diffusers pipeline folder or Hub id) on a device and dtype; :class:`PipelineRunner` turns a
validated request into the keyword arguments *that* pipeline expects — ``guidance_scale``
becomes Qwen-Image's ``true_cfg_scale`` (with the single-space negative prompt Qwen's own
examples use, so guidance really applies), or ``guidance_scale`` for other pipelines; ``seed``
becomes a ``torch.Generator``; ``num_images_per_prompt`` is passed through.

Everything here is synchronous and runs on the server's inference thread.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependency

__all__ = [
    "Cancelled",
    "EditJob",
    "GenerateJob",
    "LoadedPipeline",
    "PipelineRunner",
    "load_pipeline",
    "resolve_device",
    "resolve_dtype",
]

log = logging.getLogger("llmi.serve")

MODES = ("generation", "edit")


class Cancelled(Exception):
    """The job was interrupted (server shutting down)."""


@dataclass(frozen=True)
class GenerateJob:
    prompt: str
    negative_prompt: str | None
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    num_images_per_prompt: int
    seed: int


@dataclass(frozen=True)
class EditJob:
    image: Any  # PIL.Image.Image, RGB
    prompt: str
    negative_prompt: str | None
    num_inference_steps: int
    guidance_scale: float
    num_images_per_prompt: int
    seed: int
    height: int | None = None
    width: int | None = None


@dataclass(frozen=True)
class LoadedPipeline:
    pipe: Any
    model: str
    mode: str
    device: str
    dtype: str
    pipeline_class: str
    size_multiple: int
    edit_max_pixels: int | None = None


def _torch():
    return MissingDependency.require("torch", "serve")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but torch sees no CUDA device "
            "(check CUDA_VISIBLE_DEVICES and the torch build), or pass --device cpu"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bfloat16 on GPUs (what Qwen-Image is published in), float32 on CPU."""
    torch = _torch()
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    try:
        return table[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(table)}") from None


def _torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install raises all sorts
        return False
    return True


def _extra_components(path: Path) -> dict[str, Any]:
    """Components diffusers cannot load by itself on this host.

    Qwen-Image-Edit's ``Qwen2VLProcessor`` insists on a video processor, which needs
    torchvision; where torchvision is missing we load the same files as an image-only
    processor (the edit pipeline never passes video).
    """
    index_file = path / "model_index.json"
    if not index_file.is_file():
        return {}
    index = json.loads(index_file.read_text())
    entry = index.get("processor")
    if entry and list(entry) == ["transformers", "Qwen2VLProcessor"] and not _torchvision_works():
        from .testing import load_image_only_processor

        log.info("torchvision unavailable: loading the processor as image-only Qwen2-VL")
        return {"processor": load_image_only_processor(path / "processor")}
    return {}


def _cap_edit_condition_area(pipe: Any, max_pixels: int) -> None:
    """Make Qwen-Image-Edit resize its condition image to at most ``max_pixels``.

    The pipeline resizes every input to about 1024×1024 pixels through the module-level
    ``calculate_dimensions(target_area, ratio)``; there is no argument for it, so we replace
    that function in the pipeline's module (this process serves one pipeline). Meant for tests
    and CPU demos: the real model is trained at ~1 MP.
    """
    module = sys.modules.get(type(pipe).__module__)
    if module is None or not hasattr(module, "calculate_dimensions"):
        raise ConfigError(
            f"--edit-max-pixels works with Qwen-Image-Edit pipelines; "
            f"{type(pipe).__name__} has no condition-image size to cap"
        )
    original = getattr(module, "_llmi_original_calculate_dimensions", module.calculate_dimensions)

    def capped(target_area: float, ratio: float):
        if target_area <= max_pixels:
            return original(target_area, ratio)
        width = math.sqrt(max_pixels * ratio)
        height = width / ratio
        # Same rounding as diffusers (multiples of 32), but never below one block.
        return max(32, round(width / 32) * 32), max(32, round(height / 32) * 32), None

    module._llmi_original_calculate_dimensions = original
    module.calculate_dimensions = capped


def load_pipeline(
    model: str,
    mode: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    edit_max_pixels: int | None = None,
    cpu_offload: bool = False,
) -> LoadedPipeline:
    """Load the pipeline at ``model`` (a folder, a Hub id, or ``tiny``) for ``mode``.

    Raises :class:`llmi.errors.ConfigError` when the folder does not fit the mode.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, not {mode!r}")
    diffusers = MissingDependency.require("diffusers", "serve")
    _torch()

    from .testing import TINY_MODEL_NAME, tiny_pipeline_path

    if model == TINY_MODEL_NAME:
        model = str(tiny_pipeline_path(mode))
        if mode == "edit" and not edit_max_pixels:
            edit_max_pixels = 64 * 64  # noise at any size: keep the demo instant on a CPU
    if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().exists():
        raise ConfigError(f"no pipeline folder at {model!r} (give a diffusers folder or a Hub id)")
    model = str(Path(model).expanduser()) if model.startswith("~") else model
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(model)
    extra = _extra_components(path) if path.is_dir() else {}
    extra[_dtype_keyword()] = torch_dtype
    pipe = diffusers.DiffusionPipeline.from_pretrained(model, **extra)
    if cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    takes_image = "image" in inspect.signature(pipe.__call__).parameters
    if mode == "edit" and not takes_image:
        raise ConfigError(
            f"{type(pipe).__name__} takes no input image; serve it with --mode generation"
        )
    if mode == "generation" and takes_image and _requires_image(pipe):
        raise ConfigError(f"{type(pipe).__name__} needs an input image; serve it with --mode edit")
    if edit_max_pixels:
        _cap_edit_condition_area(pipe, edit_max_pixels)
    vae_scale = getattr(pipe, "vae_scale_factor", 8)
    # Qwen-Image packs latents in 2×2 patches: sizes must be multiples of 2 × the VAE scale.
    multiple = vae_scale * 2 if "QwenImage" in type(pipe).__name__ else vae_scale
    return LoadedPipeline(
        pipe=pipe,
        model=model,
        mode=mode,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        pipeline_class=type(pipe).__name__,
        size_multiple=int(multiple),
        edit_max_pixels=edit_max_pixels,
    )


def _dtype_keyword() -> str:
    # diffusers renamed ``torch_dtype`` to ``dtype`` (0.42) and warns on the old name.
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def _requires_image(pipe: Any) -> bool:
    param = inspect.signature(pipe.__call__).parameters["image"]
    return param.default is inspect.Parameter.empty


class PipelineRunner:
    """Runs jobs on one loaded pipeline, one at a time (call from one thread)."""

    def __init__(self, loaded: LoadedPipeline) -> None:
        self.loaded = loaded
        self.pipe = loaded.pipe
        self._params = inspect.signature(self.pipe.__call__).parameters
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Interrupt the running job at its next denoising step, and every later one."""
        self._cancel.set()

    def _guidance_kwargs(self, scale: float, negative: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if "true_cfg_scale" in self._params:
            # Qwen-Image: real classifier-free guidance needs a negative prompt; Qwen's own
            # examples use " " for "no particular negative".
            kwargs["true_cfg_scale"] = scale
            if scale > 1.0 and negative is None:
                negative = " "
            transformer = getattr(self.pipe, "transformer", None)
            if getattr(getattr(transformer, "config", None), "guidance_embeds", False):
                kwargs["guidance_scale"] = scale  # guidance-distilled variants take both
        elif "guidance_scale" in self._params:
            kwargs["guidance_scale"] = scale
        if negative is not None and "negative_prompt" in self._params:
            kwargs["negative_prompt"] = negative
        return kwargs

    def _common_kwargs(self, job: GenerateJob | EditJob) -> dict[str, Any]:
        torch = _torch()
        # A CPU generator gives the same noise for a seed on any device.
        generator = torch.Generator(device="cpu").manual_seed(job.seed)
        kwargs = {
            "prompt": job.prompt,
            "num_inference_steps": job.num_inference_steps,
            "num_images_per_prompt": job.num_images_per_prompt,
            "generator": generator,
            "output_type": "pil",
        }
        kwargs.update(self._guidance_kwargs(job.guidance_scale, job.negative_prompt))
        if "callback_on_step_end" in self._params:
            kwargs["callback_on_step_end"] = self._on_step_end
        return {k: v for k, v in kwargs.items() if k in self._params}

    def _on_step_end(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        if self._cancel.is_set():
            pipe._interrupt = True  # diffusers pipelines skip the remaining steps
        return callback_kwargs

    def run(self, job: GenerateJob | EditJob) -> list[bytes]:
        """Run ``job``; returns PNG bytes, one per image."""
        if self._cancel.is_set():
            raise Cancelled("server is shutting down")
        torch = _torch()
        kwargs = self._common_kwargs(job)
        if isinstance(job, EditJob):
            kwargs["image"] = job.image
            if job.height is not None:
                kwargs["height"] = job.height
            if job.width is not None:
                kwargs["width"] = job.width
        else:
            kwargs["height"] = job.height
            kwargs["width"] = job.width
        with torch.inference_mode():
            result = self.pipe(**kwargs)
        if self._cancel.is_set():
            raise Cancelled("server is shutting down; the job was interrupted")
        images = result.images if hasattr(result, "images") else result[0]
        return [_png(im) for im in images]


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def set_threads(threads: int | None) -> None:
    """Bound torch's CPU threads (several CPU servers on one host otherwise oversubscribe)."""
    if threads:
        _torch().set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
