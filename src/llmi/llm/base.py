"""What every writer model shares: messages, sampling settings, the ``Writer`` protocol.

A writer turns a conversation into text with ``<imgen>`` tags. It streams (``stream``) so a
user sees the text arrive, and ``complete`` is the same call gathered into one string.

>>> msgs = build_messages("Tell me about owls.", system="Be brief.")
>>> [m.role for m in msgs]
['system', 'user']
>>> trim_unfinished_tag("Owls hunt at night.\\n<imgen>{'source': 'sea")
'Owls hunt at night.\\n'
>>> trim_unfinished("Owls hunt at night. They fly without a so")
'Owls hunt at night.'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, Sequence, Union, runtime_checkable

from ..errors import WriterError
from ..image import ImageData

__all__ = [
    "ImageInput",
    "Message",
    "Sampling",
    "Writer",
    "build_messages",
    "is_url",
    "load_image",
    "trim_unfinished",
    "trim_unfinished_tag",
]

#: an image given to a writer: a file path, an http(s) URL, or decoded bytes
ImageInput = Union[str, "os.PathLike[str]", ImageData]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by every writer.

    ``seed=None`` lets the backend choose; a fixed seed makes a local writer reproducible
    (remote servers honour it as far as they can).
    """

    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 1024
    seed: int | None = None

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be between 0 and 2, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")


@dataclass(frozen=True)
class Message:
    """One chat turn. ``images`` ride along with a user turn (for vision-language writers)."""

    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[ImageInput, ...] = field(default=())


@runtime_checkable
class Writer(Protocol):
    """A model that writes text with ``<imgen>`` tags.

    ``name`` says which model wrote a document (it goes into the document's metadata).
    """

    name: str

    def stream(self, messages: Sequence[Message], sampling: Sampling | None = None) -> AsyncIterator[str]:
        """Yield the answer's text in pieces as the model produces them."""
        ...

    async def complete(self, messages: Sequence[Message], sampling: Sampling | None = None) -> str:
        """The whole answer at once."""
        ...


def build_messages(
    prompt: str, *, system: str | None = None, images: Sequence[ImageInput] = ()
) -> tuple[Message, ...]:
    """The conversation for one prompt: the system prompt, then the user's turn with images.

    When images are attached the user turn says how many, so the writer knows which
    ``img_index`` values refer to them.
    """
    if not prompt or not prompt.strip():
        raise WriterError("the prompt is empty; give the writer something to write about")
    content = prompt.strip()
    if images:
        n = len(images)
        note = (
            f"[{n} image{'s are' if n > 1 else ' is'} attached; "
            f"edit them with img_index {'0' if n == 1 else f'0 to {n - 1}'}.]"
        )
        content = f"{content}\n\n{note}"
    msgs = []
    if system:
        msgs.append(Message("system", system))
    msgs.append(Message("user", content, tuple(images)))
    return tuple(msgs)


def trim_unfinished_tag(text: str) -> str:
    """Drop a trailing ``<imgen>`` that never closed (the writer ran out of tokens inside it)."""
    start = text.rfind("<imgen>")
    if start >= 0 and text.find("</imgen>", start) < 0:
        return text[:start]
    return text


#: a sentence ends at . ! ? … before a space (or at the end), possibly inside closing quotes or
#: brackets; CJK full stops need no space after them
_SENTENCE_END = re.compile(r"""[.!?…]["'”’)\]*_]*(?=\s|$)|[。！？]["'”’）」』]*""")


def trim_unfinished(text: str) -> str:
    """The answer without what the writer left unfinished when it ran out of tokens: a last
    tag that never closed, then a last sentence that never ended (back to the last sentence
    end after the last tag, or to the last line break; a closing code fence stays).

    >>> trim_unfinished("A.\\n<imgen>{...}</imgen>\\nThe tower is 330 m tall. It was bu")
    'A.\\n<imgen>{...}</imgen>\\nThe tower is 330 m tall.'
    >>> trim_unfinished("Done!\\n")
    'Done!\\n'
    """
    text = trim_unfinished_tag(text)
    closed = text.rfind("</imgen>")
    start = closed + len("</imgen>") if closed >= 0 else 0
    body = text[start:].rstrip()
    if not body.strip() or body.endswith(("```", "~~~")):
        return text
    ends = list(_SENTENCE_END.finditer(body))
    if ends and ends[-1].end() == len(body):
        return text
    if ends:
        trimmed = text[: start + ends[-1].end()]
    else:
        line = body.rfind("\n")
        trimmed = text[: start + line + 1] if line >= 0 else text[:start]
    return trimmed if trimmed.strip() else text  # a one-phrase answer stays as it is


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def load_image(value: ImageInput) -> ImageData:
    """Decode a local image; a clear ``WriterError`` says which input is broken."""
    if isinstance(value, ImageData):
        return value
    path = os.fspath(value)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise WriterError(f"cannot read the image {path!r}: {exc.strerror}; check the path") from None
    try:
        return ImageData.from_bytes(data)
    except ValueError:
        raise WriterError(f"{path!r} is not a readable image (PNG, JPEG, WebP, GIF...)") from None
