"""Diffusion backend ``qwen``: Qwen-Image through llmi's image servers (``llmi serve image``).

Several servers (one per GPU) are load-balanced by :class:`llmi.serve.client.ImageServerClient`;
``QWEN_IMAGE_SERVER_URL`` lists them, comma-separated, as in LLM-I. Defaults follow Qwen-Image's
recommendations and LLM-I's server: 1024×1024, 25 steps, guidance (``true_cfg_scale``) 4.0, and
a seed derived from the prompt so the same document renders the same picture twice.

>>> tool = QwenImageDiffusion("http://127.0.0.1:8000,http://127.0.0.1:8001")
>>> (tool.source, tool.backend, len(tool.urls))
('diffusion', 'qwen', 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..errors import ConfigError
from ._qwen_common import QwenServerTool, prompt_seed
from .base import ToolCall, ToolOutput

__all__ = ["QwenImageDiffusion", "parse_size", "prompt_seed"]

ENV_VAR = "QWEN_IMAGE_SERVER_URL"


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x768"`` → ``(1024, 768)`` (width, height).

    >>> parse_size("1328x1328")
    (1328, 1328)
    """
    try:
        w, h = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ConfigError(f"image size {text!r} must look like 1024x1024") from None
    return w, h


class QwenImageDiffusion(QwenServerTool):
    """Text-to-image on Qwen-Image servers. The HTTP client is created lazily."""

    source: ClassVar[str] = "diffusion"
    backend: str = "qwen"
    _label: ClassVar[str] = "Qwen-Image"
    _env_var: ClassVar[str] = ENV_VAR

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        width: int = 1024,
        height: int = 1024,
        num_inference_steps: int = 25,
        guidance_scale: float | None = 4.0,
        negative_prompt: str | None = None,
        seed: int | None = None,
        max_concurrency_per_server: int = 2,
    ) -> None:
        super().__init__(
            urls, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            negative_prompt=negative_prompt, seed=seed,
            max_concurrency_per_server=max_concurrency_per_server,
        )
        self.width = width
        self.height = height

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QwenImageDiffusion:
        """``QWEN_IMAGE_SERVER_URL`` (required, comma-separated); optional
        ``LLMI_QWEN_IMAGE_SIZE`` (``1024x1024``) and ``LLMI_QWEN_IMAGE_STEPS`` (25)."""
        urls = cls.env_urls(env)
        width, height = parse_size(env.get("LLMI_QWEN_IMAGE_SIZE") or "1024x1024")
        steps = int(env.get("LLMI_QWEN_IMAGE_STEPS") or 25)
        return cls(urls, width=width, height=height, num_inference_steps=steps)

    async def run(self, call: ToolCall) -> ToolOutput:
        # 1. the request
        prompt = call.request.prompt
        seed = self.seed_for(prompt)
        # 2. one load-balanced call (retried on another server for transient errors)
        result = await self.client.generate_result(
            prompt,
            negative_prompt=self.negative_prompt,
            height=self.height,
            width=self.width,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            seed=seed,
            timeout=call.timeout,
        )
        # 3. the image and where it came from
        return self.output(result, prompt, seed, size=f"{self.width}x{self.height}")
