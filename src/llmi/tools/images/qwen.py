"""Qwen-Image (diffusion ``qwen``) and Qwen-Image-Edit (edit ``qwen``) through llmi's image servers
(``llmi serve image``).

Both send one load-balanced request to the servers with the same sampling settings;
:class:`QwenServerTool` holds what they share: the server URLs and their checks, the lazily
created :class:`llmi.serve.client.ImageServerClient`, the seed choice and the result's shape.

**Generation.** Several servers (one per GPU) are load-balanced by :class:`llmi.serve.client.ImageServerClient`;
``QWEN_IMAGE_SERVER_URL`` lists them, comma-separated, as in LLM-I. Defaults follow Qwen-Image's
recommendations and LLM-I's server: 1024×1024, 25 steps, guidance (``true_cfg_scale``) 4.0, and
a seed derived from the prompt so the same document renders the same picture twice.

>>> tool = QwenImageDiffusion("http://127.0.0.1:8000,http://127.0.0.1:8001")
>>> (tool.source, tool.backend, len(tool.urls))
('diffusion', 'qwen', 2)

**Editing.** ``QWEN_EDIT_SERVER_URL`` lists the servers, comma-separated, as in LLM-I; they are
load-balanced. The image is flattened to RGB on white before upload (a chart with a
transparent background edits as the chart, not as a black square). Defaults: 50 steps (LLM-I's
server default), guidance (``true_cfg_scale``) 4.0, output at the pipeline's working size with
the input's aspect ratio, a seed derived from the instruction and the image.

>>> tool = QwenImageEdit(["http://127.0.0.1:8100"])
>>> (tool.source, tool.backend)
('edit', 'qwen')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ...env import env_number
from ...errors import ConfigError, DependencyFailed, ToolNotConfigured
from ..base import Credit, ToolCall, ToolOutput, prompt_seed

__all__ = ["QwenServerTool", "QwenImageDiffusion", "QwenImageEdit", "parse_size", "prompt_seed"]


class QwenServerTool:
    """Server URLs, sampling settings and a lazy HTTP client; subclasses add ``run``.

    ``_label`` names the model in messages and credits (``"Qwen-Image"``), ``_env_var`` the
    variable that lists its servers, ``_steps`` the default number of steps. Guidance is
    ``true_cfg_scale`` (4.0); ``seed=None`` derives one from the request.
    """

    _label: ClassVar[str]
    _env_var: ClassVar[str]
    _steps: ClassVar[int]

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = 4.0,
        negative_prompt: str | None = None,
        seed: int | None = None,
        max_concurrency_per_server: int = 2,
    ) -> None:
        from ...serve.client import parse_urls

        self.urls = parse_urls(urls)
        if not self.urls:
            raise ToolNotConfigured(f"no {self._label} server URL: set {self._env_var}")
        self.num_inference_steps = num_inference_steps or self._steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.seed = seed
        self.max_concurrency_per_server = max_concurrency_per_server
        self._client: Any = None

    @classmethod
    def configured(cls, env: Mapping[str, str]) -> str | None:
        return f"{cls._env_var} is set" if (env.get(cls._env_var) or "").strip() else None

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
            from ...serve.client import ImageServerClient

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


IMAGE_ENV_VAR = "QWEN_IMAGE_SERVER_URL"


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
    _env_var: ClassVar[str] = IMAGE_ENV_VAR

    _steps: ClassVar[int] = 25

    def __init__(self, urls: str | Sequence[str], *, width: int = 1024, height: int = 1024, **settings: Any) -> None:
        """``width`` × ``height`` (1024×1024) and :class:`QwenServerTool`'s settings."""
        super().__init__(urls, **settings)
        self.width = width
        self.height = height

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QwenImageDiffusion:
        """``QWEN_IMAGE_SERVER_URL`` (required, comma-separated); optional
        ``LLMI_QWEN_IMAGE_SIZE`` (``1024x1024``) and ``LLMI_QWEN_IMAGE_STEPS`` (25)."""
        urls = cls.env_urls(env)
        width, height = parse_size(env.get("LLMI_QWEN_IMAGE_SIZE") or "1024x1024")
        steps = env_number(env, "LLMI_QWEN_IMAGE_STEPS", 25, int)
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


EDIT_ENV_VAR = "QWEN_EDIT_SERVER_URL"


class QwenImageEdit(QwenServerTool):
    """Instruction-based editing on Qwen-Image-Edit servers. The HTTP client is created lazily."""

    source: ClassVar[str] = "edit"
    backend: str = "qwen"
    _label: ClassVar[str] = "Qwen-Image-Edit"
    _env_var: ClassVar[str] = EDIT_ENV_VAR

    _steps: ClassVar[int] = 50  # LLM-I's server default

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QwenImageEdit:
        """``QWEN_EDIT_SERVER_URL`` (required, comma-separated); optional
        ``LLMI_QWEN_EDIT_STEPS`` (50)."""
        steps = env_number(env, "LLMI_QWEN_EDIT_STEPS", 50, int)
        return cls(cls.env_urls(env), num_inference_steps=steps)

    async def run(self, call: ToolCall) -> ToolOutput:
        # 1. the request: an instruction and the image it applies to
        if call.input_image is None:
            raise DependencyFailed("edit needs an input image, and none was given")
        prompt = call.request.prompt
        seed = self.seed_for(prompt + call.input_image.sha256)  # the same edit of the same image
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
        return self.output(result, prompt, seed)
