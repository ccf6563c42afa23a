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

from collections.abc import Mapping, Sequence
from typing import ClassVar

from ..errors import DependencyFailed
from ._qwen_common import QwenServerTool
from .base import ToolCall, ToolOutput

__all__ = ["QwenImageEdit"]

ENV_VAR = "QWEN_EDIT_SERVER_URL"


class QwenImageEdit(QwenServerTool):
    """Instruction-based editing on Qwen-Image-Edit servers. The HTTP client is created lazily."""

    source: ClassVar[str] = "edit"
    backend: str = "qwen"
    _label: ClassVar[str] = "Qwen-Image-Edit"
    _env_var: ClassVar[str] = ENV_VAR

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
        super().__init__(
            urls, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            negative_prompt=negative_prompt, seed=seed,
            max_concurrency_per_server=max_concurrency_per_server,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QwenImageEdit:
        """``QWEN_EDIT_SERVER_URL`` (required, comma-separated); optional
        ``LLMI_QWEN_EDIT_STEPS`` (50)."""
        steps = int(env.get("LLMI_QWEN_EDIT_STEPS") or 50)
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
