"""Prompts shipped as package data: the writer's system prompt.

>>> "<imgen>" in system_prompt()
True
"""

from __future__ import annotations

from importlib import resources
from os import PathLike

__all__ = ["system_prompt"]


def system_prompt(path: str | PathLike[str] | None = None) -> str:
    """The system prompt that teaches a writer the ``<imgen>`` tag format.

    With ``path`` (the user's own prompt, ``--system-prompt FILE``) that file is read instead.
    """
    from ..errors import ConfigError

    if path is None:
        return resources.files(__name__).joinpath("system.txt").read_text(encoding="utf-8")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the system prompt file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the system prompt file {str(path)!r} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"the system prompt file {str(path)!r} is empty")
    return text
