"""What the two Qwen backends (``diffusion_qwen``, ``edit_qwen``) share: their server settings.

Private to those two modules (backends never import each other). Both send one load-balanced
request to llmi's image servers with the same sampling settings, so this holds: the server URLs
and their checks, the lazily created :class:`llmi.serve.client.ImageServerClient`, the seed
choice and the shape of the result.

>>> class Demo(QwenServerTool):
...     _label, _env_var = "Qwen-Image", "QWEN_IMAGE_SERVER_URL"
>>> tool = Demo("h:1", num_inference_steps=2, guidance_scale=None, negative_prompt=None, seed=None)
>>> (tool.urls, tool.seed_for("a cat") == prompt_seed("a cat"))
(['http://h:1'], True)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ToolNotConfigured
from .base import Credit, ToolOutput

__all__ = ["QwenServerTool", "prompt_seed"]


def prompt_seed(prompt: str) -> int:
    """A stable seed for ``prompt`` (0 ≤ seed < 2³¹).

    >>> prompt_seed("a cat") == prompt_seed("a cat") != prompt_seed("a dog")
    True
    """
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big") & 0x7FFFFFFF


class QwenServerTool:
    """Server URLs, sampling settings and a lazy HTTP client; subclasses add ``run``.

    ``_label`` names the model in messages and credits (``"Qwen-Image"``), ``_env_var`` the
    variable that lists its servers.
    """

    _label: ClassVar[str]
    _env_var: ClassVar[str]

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        num_inference_steps: int,
        guidance_scale: float | None,
        negative_prompt: str | None,
        seed: int | None,
        max_concurrency_per_server: int = 2,
    ) -> None:
        from ..serve.client import parse_urls

        self.urls = parse_urls(urls)
        if not self.urls:
            raise ToolNotConfigured(f"no {self._label} server URL: set {self._env_var}")
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.max_concurrency_per_server = max_concurrency_per_server
        self._client: Any = None

    @classmethod
    def env_urls(cls, env: Mapping[str, str]) -> str:
        """The server URLs from ``env`` (required), else ``ToolNotConfigured``."""
        urls = env.get(cls._env_var, "")
        if not urls.strip():
            raise ToolNotConfigured(f"set {cls._env_var} to the {cls._label} server URL(s)")
        return urls

    @property
    def client(self):
        if self._client is None:
            from ..serve.client import ImageServerClient

            self._client = ImageServerClient(
                self.urls, max_concurrency_per_server=self.max_concurrency_per_server
            )
        return self._client

    def seed_for(self, text: str) -> int:
        """The configured seed, else one derived from ``text`` (same request, same picture)."""
        return self.seed if self.seed is not None else prompt_seed(text)

    def output(self, result: Any, prompt: str, seed: int, **details: Any) -> ToolOutput:
        """The first image of a :class:`~llmi.serve.client.ServerImages`, credited, with
        ``server``, ``seed``, ``details`` and the sampling settings in ``info``."""
        info = {
            "server": result.server,
            "seed": seed,
            **details,
            "steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
        }
        return ToolOutput(
            image=result.images[0],
            credit=Credit(source=f"{self._label} (llmi image server)", title=prompt),
            info=info,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
