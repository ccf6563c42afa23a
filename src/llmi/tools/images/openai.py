"""Any OpenAI-compatible images API: generations (diffusion ``openai``) and edits (edit ``openai``).

**Generations.** ``POST {base_url}/images/generations`` with JSON ``{"model", "prompt", "n", "size"}`` (and
``response_format`` only when configured: ``gpt-image-1`` always answers inline and rejects the
field, DALL·E answers with URLs unless asked). Both answer forms are handled: ``b64_json`` is
decoded, ``url`` is downloaded through the safe fetcher.

Works with OpenAI itself and with self-hosted servers speaking the same API (LocalAI, vLLM-Omni,
gateways). Defaults: base URL ``https://api.openai.com/v1``, model ``gpt-image-1``, size
``1024x1024``, ``n = 1``.

>>> OpenAIDiffusion(api_key="k").model
'gpt-image-1'

**Edits.** ``POST {base_url}/images/edits`` as ``multipart/form-data``: an ``image`` file (PNG) and the
fields ``prompt``, ``model``, ``n``, and ``size`` / ``response_format`` when configured. The
input is prepared first: transparency is composited onto white (in DALL·E 2's edits API a
transparent area *is* the mask, so an RGBA chart would otherwise be repainted where it is
transparent), sides kept within 2048 px and the file under 4 MB (JPEG only if PNG cannot be).

Defaults: base URL ``https://api.openai.com/v1``, model ``gpt-image-1``, ``n = 1``, no size
(the API keeps the input's aspect).

>>> OpenAIEdit(api_key="k").model
'gpt-image-1'
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from ...errors import ToolError
from ..base import Credit, ToolCall, ToolOutput
from ._hosted import OpenAIImagesTool, post_json, post_multipart, prepare_upload

__all__ = ["OpenAIDiffusion", "OpenAIEdit", "IMAGES_MODEL", "EDIT_MODEL"]

IMAGES_MODEL = "gpt-image-1"


class OpenAIDiffusion(OpenAIImagesTool):
    """Text-to-image through an OpenAI-compatible ``/images/generations``."""

    source: ClassVar[str] = "diffusion"
    backend: str = "openai"
    _api_name: ClassVar[str] = "images API"
    _model: ClassVar[str] = IMAGES_MODEL
    _size: ClassVar[str | None] = "1024x1024"

    def __init__(self, api_key: str | None = None, *, extra: Mapping[str, Any] | None = None, **settings: Any) -> None:
        """``extra``: provider-specific fields sent as they are (``quality``, ``style``, ...),
        beside :class:`OpenAIImagesTool`'s settings."""
        super().__init__(api_key, **settings)
        self.extra = dict(extra or {})

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


EDIT_MODEL = "gpt-image-1"


class OpenAIEdit(OpenAIImagesTool):
    """Instruction-based editing through an OpenAI-compatible ``/images/edits``."""

    source: ClassVar[str] = "edit"
    backend: str = "openai"
    _api_name: ClassVar[str] = "image edits API"
    _model: ClassVar[str] = EDIT_MODEL
    _size: ClassVar[str | None] = None  # the API keeps the input's aspect

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "OpenAIEdit":
        """As ``OpenAIDiffusion.from_env``, with ``LLMI_IMAGES_EDIT_MODEL`` (else
        ``LLMI_IMAGES_MODEL``) and ``LLMI_IMAGES_EDIT_SIZE``."""
        return cls(
            **cls.env_settings(env),
            model=env.get("LLMI_IMAGES_EDIT_MODEL") or env.get("LLMI_IMAGES_MODEL") or EDIT_MODEL,
            size=env.get("LLMI_IMAGES_EDIT_SIZE") or None,
        )

    async def run(self, call: ToolCall) -> ToolOutput:
        deadline = time.monotonic() + call.timeout
        # 1. the picture as an uploadable file
        if call.input_image is None:
            raise ToolError("image edits need an input image to edit")
        upload, changes = prepare_upload(call.input_image, max_side=2048, max_bytes=4 * 1024 * 1024)
        # 2. the multipart request
        fields: dict[str, Any] = {"prompt": call.request.prompt, "model": self.model, "n": 1,
                                  "size": self.size, "response_format": self.response_format}
        files = {"image": (f"image.{upload.extension}", upload.data, upload.mime)}
        body = await post_multipart(
            self._spec, f"{self.base_url}/images/edits", fields, files, api_key=self._api_key, timeout=call.timeout
        )
        # 3. the edited image
        image, url, info = await self.collect(body, deadline)
        if changes:
            info["upload"] = changes
        return ToolOutput(image=image, credit=Credit(source=f"{self.model} (image edits API)", image_url=url), info=info)
