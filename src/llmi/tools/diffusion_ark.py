"""Diffusion backend ``seedream``: Seedream text-to-image through Volcengine Ark.

``POST {base_url}/images/generations`` with a Bearer ``ARK_API_KEY`` and a JSON body
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
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError
from ..fetch import FetchPolicy, SafeFetcher
from ._images_api import ARK_BASE_URL, ApiSpec, collect_images, default_seed, env_flag, post_json
from .base import Credit, ToolCall, ToolOutput

__all__ = ["SeedreamDiffusion", "ARK_BASE_URL", "SEEDREAM_MODEL"]

SEEDREAM_MODEL = "doubao-seedream-3-0-t2i-250415"


class SeedreamDiffusion:
    """Text-to-image with Seedream on Volcengine Ark. No request is made until ``run``."""

    source: ClassVar[str] = "diffusion"
    backend: str = "seedream"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = SEEDREAM_MODEL,
        base_url: str = ARK_BASE_URL,
        size: str = "1024x1024",
        guidance_scale: float | None = 2.5,
        seed: int | None = None,
        watermark: bool = True,
        response_format: str = "b64_json",
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("Seedream needs an API key: set ARK_API_KEY")
        if response_format not in ("url", "b64_json"):
            raise ConfigError(f"response_format must be 'url' or 'b64_json', not {response_format!r}")
        self._api_key = api_key
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.size = size
        self.guidance_scale = guidance_scale
        self.seed = seed
        self.watermark = watermark
        self.response_format = response_format
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = ApiSpec("Volcengine Ark (Seedream)", "ARK_API_KEY")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SeedreamDiffusion":
        """``ARK_API_KEY`` (required); optional ``ARK_BASE_URL``, ``LLMI_SEEDREAM_MODEL``,
        ``LLMI_SEEDREAM_SIZE``, ``LLMI_ARK_WATERMARK`` (0/1)."""
        return cls(
            env.get("ARK_API_KEY", ""),
            model=env.get("LLMI_SEEDREAM_MODEL") or SEEDREAM_MODEL,
            base_url=env.get("ARK_BASE_URL") or ARK_BASE_URL,
            size=env.get("LLMI_SEEDREAM_SIZE") or "1024x1024",
            watermark=env_flag(env.get("LLMI_ARK_WATERMARK"), True),
        )

    async def run(self, call: ToolCall) -> ToolOutput:
        deadline = time.monotonic() + call.timeout
        # 1. the request, in Ark's format
        prompt = call.request.prompt
        seed = self.seed if self.seed is not None else default_seed(prompt)
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "size": self.size,
            "response_format": self.response_format,
            "seed": seed,
            "watermark": self.watermark,
        }
        if self.guidance_scale is not None:
            payload["guidance_scale"] = self.guidance_scale
        # 2. one call; errors are classified in _images_api
        body = await post_json(
            self._spec, f"{self.base_url}/images/generations", payload, api_key=self._api_key, timeout=call.timeout
        )
        # 3. the image, inline or downloaded through the safe fetcher
        [(image, url)] = await collect_images(self._spec, body, fetcher=self._fetcher, deadline=deadline)
        info = {"model": str(body.get("model") or self.model), "seed": seed, "size": self.size}
        if self.guidance_scale is not None:
            info["guidance_scale"] = self.guidance_scale
        return ToolOutput(
            image=image,
            credit=Credit(source="Seedream (Volcengine Ark)", title=prompt, image_url=url),
            info=info,
        )

    async def aclose(self) -> None:
        return None  # nothing is held between calls

