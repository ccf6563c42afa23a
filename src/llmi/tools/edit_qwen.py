"""Edit backend ``qwen``: Qwen-Image-Edit through llmi's image servers (``llmi serve image
--mode edit``).

``QWEN_EDIT_SERVER_URL`` lists the servers, comma-separated, as in LLM-I; they are
load-balanced. The image is flattened to RGB on white before upload (a chart with a
transparent background edits as the chart, not as a black square). Defaults: 50 steps (LLM-I's
server default), guidance (``true_cfg_scale``) 4.0, output at the pipeline's working size with
the input's aspect ratio, a seed derived from the instruction and the image.

>>> tool = QwenImageEdit(["http://127.0.0.1:8100"])
>>> (tool.source, tool.backend)
('edit', 'qwen')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import DependencyFailed, ToolNotConfigured
from .base import Credit, ToolCall, ToolOutput

__all__ = ["QwenImageEdit"]

ENV_VAR = "QWEN_EDIT_SERVER_URL"


class QwenImageEdit:
    """Instruction-based editing on Qwen-Image-Edit servers. The HTTP client is created lazily."""

    source: ClassVar[str] = "edit"
    backend: str = "qwen"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float | None = 4.0,
        negative_prompt: str | None = None,
        seed: int | None = None,
        max_concurrency_per_server: int = 2,
    ) -> None:
        from ..serve.client import parse_urls

        self.urls = parse_urls(urls)
        if not self.urls:
            raise ToolNotConfigured(f"no Qwen-Image-Edit server URL: set {ENV_VAR}")
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.max_concurrency_per_server = max_concurrency_per_server
        self._client: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QwenImageEdit:
        """``QWEN_EDIT_SERVER_URL`` (required, comma-separated); optional
        ``LLMI_QWEN_EDIT_STEPS`` (50)."""
        urls = env.get(ENV_VAR, "")
        if not urls.strip():
            raise ToolNotConfigured(f"set {ENV_VAR} to the Qwen-Image-Edit server URL(s)")
        return cls(urls, num_inference_steps=int(env.get("LLMI_QWEN_EDIT_STEPS") or 50))

    @property
    def client(self):
        if self._client is None:
            from ..serve.client import ImageServerClient

            self._client = ImageServerClient(
                self.urls, max_concurrency_per_server=self.max_concurrency_per_server
            )
        return self._client

    async def run(self, call: ToolCall) -> ToolOutput:
        # 1. the request: an instruction and the image it applies to
        if call.input_image is None:
            raise DependencyFailed("edit needs an input image, and none was given")
        prompt = call.request.prompt
        seed = self.seed
        if seed is None:
            digest = hashlib.sha256(prompt.encode() + call.input_image.sha256.encode()).digest()
            seed = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
        # 2. one load-balanced call
        result = await self.client.edit_result(
            call.input_image,
            prompt,
            negative_prompt=self.negative_prompt,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            seed=seed,
            timeout=call.timeout,
        )
        # 3. the edited image
        info = {
            "server": result.server,
            "seed": seed,
            "steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
        }
        return ToolOutput(
            image=result.images[0],
            credit=Credit(source="Qwen-Image-Edit (llmi image server)", title=prompt),
            info=info,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
