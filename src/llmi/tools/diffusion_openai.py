"""Diffusion backend ``openai``: any OpenAI-compatible images API.

``POST {base_url}/images/generations`` with JSON ``{"model", "prompt", "n", "size"}`` (and
``response_format`` only when configured: ``gpt-image-1`` always answers inline and rejects the
field, DALL·E answers with URLs unless asked). Both answer forms are handled: ``b64_json`` is
decoded, ``url`` is downloaded through the safe fetcher.

Works with OpenAI itself and with self-hosted servers speaking the same API (LocalAI, vLLM-Omni,
gateways). Defaults: base URL ``https://api.openai.com/v1``, model ``gpt-image-1``, size
``1024x1024``, ``n = 1``.

>>> OpenAIDiffusion(api_key="k").model
'gpt-image-1'
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from ..fetch import FetchPolicy
from ._images_api import OPENAI_BASE_URL, OpenAIImagesTool, post_json
from .base import Credit, ToolCall, ToolOutput

__all__ = ["OpenAIDiffusion", "IMAGES_MODEL"]

IMAGES_MODEL = "gpt-image-1"


class OpenAIDiffusion(OpenAIImagesTool):
    """Text-to-image through an OpenAI-compatible ``/images/generations``."""

    source: ClassVar[str] = "diffusion"
    backend: str = "openai"
    _api_name: ClassVar[str] = "images API"

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = OPENAI_BASE_URL,
        model: str = IMAGES_MODEL,
        size: str | None = "1024x1024",
        response_format: str | None = None,
        extra: Mapping[str, Any] | None = None,
        fetch_policy: FetchPolicy | None = None,
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, model=model, size=size, response_format=response_format,
            fetch_policy=fetch_policy,
        )
        self.extra = dict(extra or {})  # provider-specific fields sent as they are (quality, style, ...)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "OpenAIDiffusion":
        """``LLMI_IMAGES_BASE_URL`` or ``OPENAI_BASE_URL``; ``LLMI_IMAGES_API_KEY`` or
        ``OPENAI_API_KEY``; ``LLMI_IMAGES_MODEL``, ``LLMI_IMAGES_SIZE``,
        ``LLMI_IMAGES_RESPONSE_FORMAT``."""
        return cls(
            **cls.env_settings(env),
            model=env.get("LLMI_IMAGES_MODEL") or IMAGES_MODEL,
            size=env.get("LLMI_IMAGES_SIZE") or "1024x1024",
        )

    async def run(self, call: ToolCall) -> ToolOutput:
        deadline = time.monotonic() + call.timeout
        # 1. the request
        prompt = call.request.prompt
        payload: dict[str, Any] = {**self.extra, "model": self.model, "prompt": prompt, "n": 1}
        if self.size:
            payload["size"] = self.size
        if self.response_format:
            payload["response_format"] = self.response_format
        # 2. one call
        body = await post_json(
            self._spec, f"{self.base_url}/images/generations", payload, api_key=self._api_key, timeout=call.timeout
        )
        # 3. the image
        image, url, info = await self.collect(body, deadline)
        if self.size:
            info["size"] = self.size
        revised = body["data"][0].get("revised_prompt") if isinstance(body["data"][0], dict) else None
        if revised:
            info["revised_prompt"] = revised
        return ToolOutput(image=image, credit=Credit(source=f"{self.model} (images API)", title=prompt, image_url=url), info=info)
