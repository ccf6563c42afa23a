"""HTTP schemas of the image server (pydantic, at the edge only).

The request bodies keep LLM-I's field names and defaults, so its clients work unchanged;
``seed`` (and, for edits, ``guidance_scale``, ``num_images_per_prompt``, ``height``, ``width``)
are additions. They read what LLM-I's server reads: numbers sent as strings (``"1024"``) and
integral floats (``1024.0``), an empty prompt, ``null`` for the negative prompt. They refuse
what LLM-I's would only have failed on later: booleans where a number is meant, fractions,
negative seeds. Bounds that depend on the server's configuration (largest side, size
multiple, most steps) are checked by the server against :class:`Limits`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "DEFAULT_GUIDANCE",
    "EditRequest",
    "ErrorResponse",
    "GenerateRequest",
    "ImagesResponse",
    "Limits",
]

#: Qwen-Image's recommended classifier-free guidance scale (its ``true_cfg_scale``)
DEFAULT_GUIDANCE = 4.0

def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a size or a step count of "true" is a client bug
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


_Int = Annotated[int, BeforeValidator(_not_bool)]
_Seed = Annotated[int, BeforeValidator(_not_bool), Field(ge=0, lt=2**63)]


class _Request(BaseModel):
    # Unknown keys are ignored rather than refused: LLM-I's clients may send their own extras.
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(max_length=20_000)  # empty is allowed, as in LLM-I
    negative_prompt: str | None = Field(default=None, max_length=20_000)
    guidance_scale: float = Field(default=DEFAULT_GUIDANCE, ge=0.0, le=100.0)
    num_images_per_prompt: _Int = Field(default=1, ge=1, le=4)
    seed: _Seed | None = None


class GenerateRequest(_Request):
    """``POST /generate/`` — text to image."""

    height: _Int = Field(default=1024, ge=1)
    width: _Int = Field(default=1024, ge=1)
    num_inference_steps: _Int = Field(default=25, ge=1)


class EditRequest(_Request):
    """``POST /edit/`` — edit one image (base64 PNG/JPEG/WebP) following ``prompt``.

    Without ``height``/``width`` the output keeps the input's aspect ratio at the pipeline's
    working size (about 1 megapixel for Qwen-Image-Edit).
    """

    image_b64: str = Field(min_length=1)
    num_inference_steps: _Int = Field(default=50, ge=1)
    height: _Int | None = Field(default=None, ge=1)
    width: _Int | None = Field(default=None, ge=1)


class ImagesResponse(BaseModel):
    """LLM-I's answer (``status``, ``images``) plus what llmi adds: the seed used, the real
    size of the images (a requested size is rounded down to the pipeline's multiple, as the
    pipeline itself would) and the time taken."""

    status: str = "success"
    images: list[str]
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    elapsed_s: float | None = None


class ErrorResponse(BaseModel):
    status: str = "error"
    detail: Any


@dataclass(frozen=True)
class Limits:
    """What the server accepts; reported by ``GET /info``."""

    size_multiple: int = 16
    max_side: int = 2048
    max_steps: int = 200
    max_images: int = 4
    #: decoded input image, in pixels (width × height)
    max_input_pixels: int = 4096 * 4096
    #: request body, in bytes (a base64 image is 4/3 of its file)
    max_body_bytes: int = 64 * 1024 * 1024
