"""Reading settings from environment variables, the one way: at the edges (``from_env``, the
CLI, the server), with a ``ConfigError`` that names the variable when a value is wrong.

>>> env = {"LLMI_ONLINE": "yes", "LLMI_QWEN_IMAGE_STEPS": "30", "LLMI_LIBRARY_THRESHOLD": ""}
>>> env_flag(env, "LLMI_ONLINE", False), env_number(env, "LLMI_QWEN_IMAGE_STEPS", 25, int)
(True, 30)
>>> env_number(env, "LLMI_LIBRARY_THRESHOLD", None, float) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, TypeVar

from .errors import ConfigError

__all__ = ["env_flag", "env_number"]

N = TypeVar("N", int, float)

_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``env[name]`` as on/off: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``
    (any case); unset or empty is ``default``; anything else is a ``ConfigError``.

    >>> env_flag({"X": " Off "}, "X", True), env_flag({}, "X", True), env_flag({"X": ""}, "X", False)
    (False, True, False)
    """
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    word = raw.lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ConfigError(f"{name}={raw!r} is not an on/off setting; use 1/0, true/false, yes/no or on/off")


def env_number(env: Mapping[str, str], name: str, default: N | None, kind: Callable[[str], N]) -> N | None:
    """``env[name]`` as a number of type ``kind`` (``int`` or ``float``); unset or empty is
    ``default``, anything unreadable a ``ConfigError`` naming the variable."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
