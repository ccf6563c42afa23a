"""Edit backend ``seededit``: SeedEdit image editing through Volcengine Ark.

``POST {base_url}/images/generations`` with a Bearer ``ARK_API_KEY`` and a JSON body
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
from typing import ClassVar, Mapping

from ..errors import ToolError
from ..fetch import FetchPolicy
from ._images_api import ARK_BASE_URL, ArkImagesTool, data_url, prepare_upload
from .base import Credit, ToolCall, ToolOutput

__all__ = ["SeedEdit", "SEEDEDIT_MODEL"]

SEEDEDIT_MODEL = "doubao-seededit-3-0-i2i-250628"


class SeedEdit(ArkImagesTool):
    """Instruction-based editing with SeedEdit on Ark. No request is made until ``run``."""

    source: ClassVar[str] = "edit"
    backend: str = "seededit"
    _name: ClassVar[str] = "SeedEdit"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = SEEDEDIT_MODEL,
        base_url: str = ARK_BASE_URL,
        guidance_scale: float | None = 5.5,
        seed: int | None = None,
        watermark: bool = True,
        response_format: str = "b64_json",
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        super().__init__(
            api_key, model=model, base_url=base_url, guidance_scale=guidance_scale, seed=seed,
            watermark=watermark, response_format=response_format, fetch_policy=fetch_policy,
        )

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
        fields = {"image": data_url(upload), "response_format": self.response_format, "size": "adaptive"}
        image, url, info = await self.generate(call, fields, deadline=deadline)
        # 3. the edited image
        if changes:
            info["upload"] = changes
        return ToolOutput(image=image, credit=Credit(source="SeedEdit (Volcengine Ark)", image_url=url), info=info)
