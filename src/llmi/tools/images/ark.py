"""Volcengine Ark's image models: Seedream (diffusion ``seedream``) and SeedEdit (edit ``seededit``).

**Seedream** (text-to-image). ``POST {base_url}/images/generations`` with a Bearer ``ARK_API_KEY`` and a JSON body
``{"model", "prompt", "size", "response_format", "seed", "guidance_scale", "watermark"}``; the
answer is ``{"created", "data": [{"url"} | {"b64_json"}], "model", "usage"}``, errors are
``{"error": {"code", "message"}}`` (safety refusals carry codes such as
``OutputImageSensitiveContentDetected``).

Defaults: model ``doubao-seedream-3-0-t2i-250415`` (Seedream 3.0 text-to-image; newer models
such as ``doubao-seedream-4-0-250828`` or an ``ep-...`` endpoint id take the same request), base
URL ``https://ark.cn-beijing.volces.com/api/v3``, size ``1024x1024``, guidance 2.5, images
returned inline (``b64_json``, no second download and no expiring URL), a seed derived from the
prompt, and Ark's own default of a visible "AI generated" watermark.

>>> tool = SeedreamDiffusion(api_key="k")
>>> (tool.source, tool.backend, tool.model)
('diffusion', 'seedream', 'doubao-seedream-3-0-t2i-250415')

**SeedEdit** (editing). ``POST {base_url}/images/generations`` with a Bearer ``ARK_API_KEY`` and a JSON body
``{"model", "prompt", "image", "response_format", "size": "adaptive", "seed", "guidance_scale",
"watermark"}``, where ``image`` is the picture to edit as a ``data:image/png;base64,...`` URL.
Ark accepts JPEG or PNG up to 10 MB, sides over 14 px and an aspect ratio within 1:3..3:1, so
the input is prepared first: transparency composited onto white (RGBA charts), sides kept within
4096 px, tiny pictures enlarged, extreme ratios padded with white; JPEG only if PNG is too big.
The answer has the same shape as Seedream's.

Defaults: model ``doubao-seededit-3-0-i2i-250628``, guidance 5.5, inline (``b64_json``)
results, a seed derived from the prompt, Ark's default watermark.

>>> SeedEdit(api_key="k").model
'doubao-seededit-3-0-i2i-250628'
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from ...errors import ToolError
from ..base import Credit, ToolCall, ToolOutput
from ._hosted import ARK_BASE_URL, ArkImagesTool, prepare_upload

__all__ = ["SeedreamDiffusion", "SeedEdit", "ARK_BASE_URL", "SEEDREAM_MODEL", "SEEDEDIT_MODEL"]

SEEDREAM_MODEL = "doubao-seedream-3-0-t2i-250415"


class SeedreamDiffusion(ArkImagesTool):
    """Text-to-image with Seedream on Volcengine Ark. No request is made until ``run``."""

    source: ClassVar[str] = "diffusion"
    backend: str = "seedream"
    _name: ClassVar[str] = "Seedream"
    _model: ClassVar[str] = SEEDREAM_MODEL
    _guidance: ClassVar[float] = 2.5

    def __init__(self, api_key: str, *, size: str = "1024x1024", **settings: Any) -> None:
        """``size`` (``"1024x1024"``) and :class:`ArkImagesTool`'s settings."""
        super().__init__(api_key, **settings)
        self.size = size

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SeedreamDiffusion":
        """``ARK_API_KEY`` (required); optional ``ARK_BASE_URL``, ``LLMI_SEEDREAM_MODEL``,
        ``LLMI_SEEDREAM_SIZE``, ``LLMI_ARK_WATERMARK`` (0/1)."""
        return cls(
            **cls.env_settings(env),
            model=env.get("LLMI_SEEDREAM_MODEL") or SEEDREAM_MODEL,
            size=env.get("LLMI_SEEDREAM_SIZE") or "1024x1024",
        )

    async def run(self, call: ToolCall) -> ToolOutput:
        # 1. the request, in Ark's format; 2. one call (errors are classified by llmi.http);
        # 3. the image, inline or downloaded through the safe fetcher
        fields = {"size": self.size, "response_format": self.response_format}
        image, url, info = await self.generate(call, fields, size=self.size)
        return ToolOutput(
            image=image,
            credit=Credit(source="Seedream (Volcengine Ark)", title=call.request.prompt, image_url=url),
            info=info,
        )


SEEDEDIT_MODEL = "doubao-seededit-3-0-i2i-250628"


class SeedEdit(ArkImagesTool):
    """Instruction-based editing with SeedEdit on Ark. No request is made until ``run``."""

    source: ClassVar[str] = "edit"
    backend: str = "seededit"
    _name: ClassVar[str] = "SeedEdit"
    _model: ClassVar[str] = SEEDEDIT_MODEL
    _guidance: ClassVar[float] = 5.5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SeedEdit":
        """``ARK_API_KEY`` (required); optional ``ARK_BASE_URL``, ``LLMI_SEEDEDIT_MODEL``,
        ``LLMI_ARK_WATERMARK`` (0/1)."""
        return cls(**cls.env_settings(env), model=env.get("LLMI_SEEDEDIT_MODEL") or SEEDEDIT_MODEL)

    async def run(self, call: ToolCall) -> ToolOutput:
        deadline = time.monotonic() + call.timeout
        # 1. the picture, in a form Ark accepts
        if call.input_image is None:
            raise ToolError("SeedEdit needs an input image to edit")
        upload, changes = prepare_upload(call.input_image, max_side=4096, max_bytes=10 * 1024 * 1024, max_aspect=3.0)
        # 2. the request
        fields = {"image": upload.data_url, "response_format": self.response_format, "size": "adaptive"}
        image, url, info = await self.generate(call, fields, deadline=deadline)
        # 3. the edited image
        if changes:
            info["upload"] = changes
        return ToolOutput(image=image, credit=Credit(source="SeedEdit (Volcengine Ark)", image_url=url), info=info)
