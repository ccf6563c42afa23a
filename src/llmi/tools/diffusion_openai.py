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

from ..errors import ConfigError
from ..fetch import FetchPolicy, SafeFetcher
from ._images_api import OPENAI_BASE_URL, ApiSpec, collect_images, post_json
from .base import Credit, ToolCall, ToolOutput

__all__ = ["OpenAIDiffusion", "IMAGES_MODEL"]

IMAGES_MODEL = "gpt-image-1"


class OpenAIDiffusion:
    """Text-to-image through an OpenAI-compatible ``/images/generations``."""

    source: ClassVar[str] = "diffusion"
    backend: str = "openai"

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
        base_url = base_url.rstrip("/")
        if not api_key and base_url == OPENAI_BASE_URL:
            raise ConfigError("the OpenAI images API needs a key: set OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")
        if response_format not in (None, "url", "b64_json"):
            raise ConfigError(f"response_format must be 'url', 'b64_json' or unset, not {response_format!r}")
        self._api_key = api_key or None
        self.base_url = base_url
        self.model = model
        self.size = size
        self.response_format = response_format
        self.extra = dict(extra or {})  # provider-specific fields sent as they are (quality, style, ...)
        self._fetcher = SafeFetcher(fetch_policy)
        self._spec = ApiSpec(f"the images API at {self.base_url}", "OPENAI_API_KEY (or LLMI_IMAGES_API_KEY)")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "OpenAIDiffusion":
        """``LLMI_IMAGES_BASE_URL`` or ``OPENAI_BASE_URL``; ``LLMI_IMAGES_API_KEY`` or
        ``OPENAI_API_KEY``; ``LLMI_IMAGES_MODEL``, ``LLMI_IMAGES_SIZE``,
        ``LLMI_IMAGES_RESPONSE_FORMAT``."""
        return cls(
            env.get("LLMI_IMAGES_API_KEY") or env.get("OPENAI_API_KEY"),
            base_url=env.get("LLMI_IMAGES_BASE_URL") or env.get("OPENAI_BASE_URL") or OPENAI_BASE_URL,
            model=env.get("LLMI_IMAGES_MODEL") or IMAGES_MODEL,
            size=env.get("LLMI_IMAGES_SIZE") or "1024x1024",
            response_format=env.get("LLMI_IMAGES_RESPONSE_FORMAT") or None,
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
        [(image, url)] = await collect_images(self._spec, body, fetcher=self._fetcher, deadline=deadline)
        info: dict[str, Any] = {"model": self.model, "base_url": self.base_url}
        if self.size:
            info["size"] = self.size
        revised = body["data"][0].get("revised_prompt") if isinstance(body["data"][0], dict) else None
        if revised:
            info["revised_prompt"] = revised
        return ToolOutput(image=image, credit=Credit(source=f"{self.model} (images API)", title=prompt, image_url=url), info=info)

    async def aclose(self) -> None:
        return None
