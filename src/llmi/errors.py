"""The one error hierarchy of llmi.

::

    LlmiError
    ├── ConfigError                 a setting is missing or wrong (says which one to set)
    │   └── MissingDependency       an optional extra is not installed (names the extra)
    ├── TagError                    an <imgen> tag could not be read; has .position and .reason
    │   ├── TagSyntaxError          the text inside the tag is not a dict we can recover
    │   └── TagValidationError      the dict has the wrong source, keys or types
    ├── ToolError                   an image could not be produced
    │   ├── ToolNotConfigured       no backend for this tool (says how to configure one)
    │   ├── ToolTimeout             the call, or the document's deadline, ran out
    │   ├── BackendError            the backend answered with an error (HTTP, SDK, server)
    │   │   └── ContentRefused      the provider's content filter refused the prompt or image
    │   ├── NotFound                a search found nothing good enough
    │   ├── FetchError              downloading an image was refused or failed
    │   ├── SandboxError            chart code failed, was killed, or drew nothing
    │   │   └── EmptyFigure         the code drew nothing (carries the blank figure)
    │   ├── UnsupportedEdit         the offline editor cannot do this instruction honestly
    │   └── DependencyFailed        an edit refers to an image that failed or does not exist
    ├── WriterError                 the writer model could not produce text
    ├── JudgeError                  a judge could not score an answer; has .transient
    └── DataError                   a training dataset row or file is unusable; has .row and .reason

Every error has ``transient`` (worth retrying: a 503, a reset connection), ``status`` (the
HTTP status a remote service answered with, if any) and ``retry_after`` (the seconds it asked
to wait, if it did); :mod:`llmi.http` sets all three. The engine retries tools' transient
errors; callers outside it use :class:`llmi.http.Retry`.

Tool failures never escape the engine: they become failed images in the ``Document``,
with the error's class name and message recorded.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .image import ImageData

__all__ = [
    "LlmiError",
    "ConfigError",
    "MissingDependency",
    "TagError",
    "TagSyntaxError",
    "TagValidationError",
    "ToolError",
    "ToolNotConfigured",
    "ToolTimeout",
    "BackendError",
    "ContentRefused",
    "NotFound",
    "FetchError",
    "SandboxError",
    "EmptyFigure",
    "UnsupportedEdit",
    "DependencyFailed",
    "WriterError",
    "JudgeError",
    "DataError",
]


class LlmiError(Exception):
    """Base of every error llmi raises on purpose."""

    #: worth retrying: the same call may succeed later
    transient: bool = False
    #: the HTTP status a remote service answered with (``None``: no answer, or not HTTP)
    status: int | None = None
    #: seconds the service asked to wait before trying again (its ``Retry-After``)
    retry_after: float | None = None


class ConfigError(LlmiError):
    """A setting is missing or invalid; the message says what to set."""


class MissingDependency(ConfigError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{module!r} is not installed; install it with: pip install 'llmi[{extra}]'"
        )

    @classmethod
    def require(cls, module: str, extra: str, package: str | None = None) -> ModuleType:
        """``module``, imported now (heavy imports wait until they are needed), or this error
        naming ``package`` (default: the module) and the extra that brings it.

        >>> MissingDependency.require("json", "serve").__name__
        'json'
        >>> MissingDependency.require("no_such_module", "serve", "no-such-package")
        Traceback (most recent call last):
        llmi.errors.MissingDependency: 'no-such-package' is not installed; install it with: pip install 'llmi[serve]'
        """
        try:
            return importlib.import_module(module)
        except ImportError:
            raise cls(package or module, extra) from None


class TagError(LlmiError):
    """An ``<imgen>`` tag that cannot be used.

    ``position`` is the character offset of the tag's ``<`` in the text it was parsed from,
    ``reason`` a short human explanation.
    """

    def __init__(self, reason: str, position: int = 0) -> None:
        self.reason = reason
        self.position = position
        super().__init__(f"tag at character {position}: {reason}")


class TagSyntaxError(TagError):
    """The tag's body is not a dict llmi can recover."""


class TagValidationError(TagError):
    """The tag's dict has an unknown source, missing or extra keys, or wrong types."""


class ToolError(LlmiError):
    """A tool could not produce an image.

    ``transient`` marks errors worth retrying (a 503, a reset connection); the engine retries
    only those.
    """

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class ToolNotConfigured(ToolError):
    """No backend is configured for the tool a tag asks for."""


class ToolTimeout(ToolError):
    """A tool call, or the whole document, ran out of time."""

    transient = True


class BackendError(ToolError):
    """A backend (HTTP API, server, SDK) reported an error."""


class ContentRefused(BackendError):
    """The provider's content filter refused the prompt, the input image or its own output.

    Not transient: the same request will be refused again; change the prompt or the image.
    """


class NotFound(ToolError):
    """A search found no image good enough to use."""


class FetchError(ToolError):
    """Downloading an image was refused by the safety rules or failed."""


class SandboxError(ToolError):
    """Chart code raised, was killed by a limit, or drew nothing."""


class EmptyFigure(SandboxError):
    """Chart code ran but drew nothing. ``image`` is the blank figure, which a profile that
    counts blank figures as images (LLM-I's rule, ``llmi-compat``) uses instead."""

    def __init__(self, message: str, image: "ImageData") -> None:
        super().__init__(message)
        self.image = image


class UnsupportedEdit(ToolError):
    """The offline editor cannot carry out this instruction honestly."""


class DependencyFailed(ToolError):
    """An edit refers to an image that failed or does not exist."""


class WriterError(LlmiError):
    """The writer model could not produce text (unreachable, wrong model, prompt too long)."""


class JudgeError(LlmiError):
    """A judge (an LLM or MLLM scoring answers) could not give a score: unreachable, refused
    the request, timed out, or replied with something that is not a score.

    ``transient`` marks errors worth retrying (a 429, a 503, a timeout); the judge client
    retries only those.
    """

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class DataError(LlmiError):
    """A training dataset file or row cannot be used.

    ``row`` is the 1-based row number in the input (``None`` for the whole file), ``reason``
    what is wrong with it, ``source`` the file or dataset it came from.
    """

    def __init__(self, reason: str, *, row: int | None = None, source: str | None = None) -> None:
        self.reason = reason
        self.row = row
        self.source = source
        where = ", ".join(p for p in (source, f"row {row}" if row is not None else None) if p)
        super().__init__(f"{where}: {reason}" if where else reason)
